"""Hostile uses of the command line that must fail safe: an output that is, contains or lies inside an input
(with --overwrite too), an output where nothing can be written, two jobs on one output. Each call exits 2 with a
message naming the problem, and every input is byte for byte what it was."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridkit.cli import main


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """data/: a label table, two spectrum files in spec/, a small base grid and its cube."""
    from gridkit import synth
    from gridkit.degradation import degrade_store

    root = tmp_path_factory.mktemp("safety")
    data = root / "data"
    (data / "spec").mkdir(parents=True)
    labels = synth.sample_labels(6, seed=2)
    synth.synthesize(labels, synth.AnalyticSynthesizer(wavelength_range=("green",), step=0.05), data / "base.zarr", progress=False)
    degrade_store(data / "base.zarr", data / "cube.zarr", arms="green", snr=[100], region_size=3, progress=False)
    wl = np.arange(5150.0, 5740.0, 0.02)
    for name in ("a", "b"):
        np.savetxt(data / "spec" / f"{name}.txt", np.column_stack([wl, 1 - 0.3 * np.exp(-0.5 * ((wl - 5400) / 0.1) ** 2)]))
    header = "file," + ",".join(labels)
    rows = [f"{n}.txt," + ",".join(str(labels[k][i]) for k in labels) for i, n in enumerate("ab")]
    (data / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return data


CASES = {
    "synth over its label table": lambda d: ["synth", "--labels", f"{d}/labels.csv", "--out", f"{d}/labels.csv", "--overwrite"],
    "ingest into the folder of its inputs": lambda d: ["ingest", f"{d}/spec", "--labels", f"{d}/labels.csv", "--out", f"{d}", "--overwrite"],
    "ingest inside its spectrum folder": lambda d: ["ingest", f"{d}/spec", "--labels", f"{d}/labels.csv", "--out", f"{d}/spec/g.zarr", "--overwrite"],
    "degrade over its input": lambda d: ["degrade", f"{d}/base.zarr", "--out", f"{d}/base.zarr", "--overwrite", "--workers", "0"],
    "degrade into the parent of its input": lambda d: ["degrade", f"{d}/base.zarr", "--out", f"{d}", "--overwrite", "--workers", "0"],
    "degrade inside its input": lambda d: ["degrade", f"{d}/base.zarr", "--out", f"{d}/base.zarr/c.zarr", "--overwrite", "--workers", "0"],
    "fourmostify into the folder of its spectra": lambda d: ["fourmostify", f"{d}/spec/a.txt", "--out", f"{d}/spec", "--overwrite",
                                                             "--input-resolving-power", "80000", "--arms", "green"],
    "fourmostify report over a spectrum": lambda d: ["fourmostify", f"{d}/spec/a.txt", "--out", f"{d}/../s.zarr", "--report", f"{d}/spec/a.txt",
                                                     "--input-resolving-power", "80000", "--arms", "green"],
    "mock-survey over its cube": lambda d: ["mock-survey", f"{d}/cube.zarr", "--snr", "100", "--out", f"{d}/cube.zarr", "--overwrite"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_output_never_replaces_an_input(workspace, case, capsys):
    before = _snapshot(workspace)
    assert main(CASES[case](workspace)) == 2
    err = capsys.readouterr().err
    assert "error:" in err and ("is the input" in err or "contains the input" in err or "lies inside the input" in err), err
    assert "Traceback" not in err
    assert _snapshot(workspace) == before


@pytest.mark.parametrize("where", ["/proc/gridkit-test.zarr", "FILE/inside.zarr"])
def test_an_output_where_nothing_can_be_written_is_a_message(workspace, tmp_path, where, capsys):
    (tmp_path / "file").write_text("x")
    out = where.replace("FILE", str(tmp_path / "file"))
    assert main(["degrade", f"{workspace}/base.zarr", "--out", out, "--arms", "green", "--snr", "100", "--workers", "0", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and "Traceback" not in err


HOLD = """
import sys, time
from pathlib import Path
from gridkit import store
store._lock(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_job_on_one_output_gets_in_use(workspace, tmp_path, capsys):
    out = tmp_path / "c.zarr"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = ["degrade", f"{workspace}/base.zarr", "--out", str(out), "--arms", "green", "--snr", "100", "--workers", "0", "--no-progress"]
        assert main(args) == 2
        assert "in use by another job" in capsys.readouterr().err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(args) == 0  # once the other job has ended
