"""`python -m benchmarks gpu`: skips cleanly (exit 0, says so) where there is no CUDA device, and its whole code path
(throughput variants, one training epoch, `gridkit infer` on a GPU worker) runs end to end at toy sizes on the CPU
(`--device cpu --tiny`), writing every figure to one JSON. The GPU figures themselves need a GPU machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    return subprocess.run([sys.executable, "-m", "benchmarks", "gpu", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_without_cuda_it_says_it_skips_and_exits_0(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the benchmark would run")
    from benchmarks.bench_gpu import SKIP_MESSAGE

    done = _run("--out", str(tmp_path / "gpu.json"), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert SKIP_MESSAGE in done.stdout
    assert not (tmp_path / "gpu.json").exists()


@pytest.mark.slow  # every step of the GPU benchmark on CPU (~25 s on 2 cores); CI checks the clean skip above
def test_tiny_cpu_run_exercises_every_step_and_writes_one_json(tmp_path):
    out = tmp_path / "gpu.json"
    done = _run("--device", "cpu", "--tiny", "--out", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["tiny"] is True and result["environment"]["device"] == "cpu"
    variants = result["inference"]["variants"]
    assert set(variants) == {"float32", "tf32", "bf16"}
    for kind, row in variants.items():
        assert row["spectra_per_s"] > 0 and row["finite_fraction"] == 1.0, kind
        if kind != "float32":
            assert 0.0 <= row["map_differs_fraction"] <= 1.0 and 0.0 <= row["map_other_sample_fraction"] <= 1.0
    assert variants["tf32"]["map_max_abs_difference"] == 0.0  # TF32 is a CUDA matmul mode: no effect on the CPU
    assert result["train"]["seconds"] > 0 and result["train"]["batches_per_epoch"] == 4
    survey = result["survey"]
    assert survey["stars"] == 64 and survey["finite_teff_fraction"] == 1.0 and "--gpu-workers" in survey["command"]
    assert "train one epoch" in done.stdout and "gridkit infer, 1 GPU worker" in done.stdout
