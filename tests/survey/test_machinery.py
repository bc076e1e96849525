"""The survey machinery on a fake model (fast, torch-free): resume after SIGKILL equals an uninterrupted run
without recomputing finished chunks, a killed worker does not break the run, the model is loaded once per
worker and never shipped, GPU tasks go to GPU workers only, and bad input is refused before anything is written."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import catalogs
from cinn import survey
from gridkit.errors import ConfigError, GridError, StoreError

from conftest import WAVE, make_survey
from fakes import load_fake, write_fake_model

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _values(path) -> dict[str, np.ndarray]:
    ds = xr.open_zarr(path, consolidated=False)
    return {k: np.asarray(v.values) for k, v in ds.variables.items()}


def _assert_same_catalog(a, b):
    va, vb = _values(a), _values(b)
    assert sorted(va) == sorted(vb)
    for k in va:
        if va[k].dtype.kind in "fc":
            np.testing.assert_array_equal(va[k], vb[k], err_msg=k)
        else:
            assert va[k].astype(str).tolist() == vb[k].astype(str).tolist(), k


def _done_markers(path) -> dict[str, int]:
    folder = Path(path) / "_gridkit" / "done"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")} if folder.exists() else {}


def test_fake_catalog_layout_and_passthrough(fake_setup, tmp_path):
    model_dir, survey_path = fake_setup
    out = survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=64, chunk=16, loader=load_fake, progress=False)
    cat = catalogs.open(out)
    src = xr.open_zarr(survey_path, consolidated=False)
    assert cat.sizes["star"] == 60
    assert list(cat.star_id.values) == [str(s) for s in src.star_id.values]
    np.testing.assert_array_equal(cat.snr.values, src.snr.values)
    np.testing.assert_array_equal(cat.ra.values, src.ra.values)
    assert list(cat.field.values) == [str(s) for s in src.field.values]
    for name, var in cat.variables.items():
        if name not in ("star",):
            assert "units" in var.attrs and "long_name" in var.attrs, name
    assert cat.attrs["model_id"] == "fake-model-1" and cat.attrs["samples"] == 64 and "gridkit_version" in cat.attrs
    # the summaries are those of the model, star by star, with per-star keys: independent of the chunking
    direct = load_fake(model_dir).summarize(src.flux.values, src.snr.values, n=64, seed=0, keys=np.arange(60))
    np.testing.assert_array_equal(cat.teff_quantiles.values, direct.teff_quantiles.values.astype("f4"))
    out2 = survey.infer(model_dir, survey_path, tmp_path / "cat2.zarr", samples=64, chunk=7, loader=load_fake, progress=False)
    np.testing.assert_array_equal(catalogs.open(out2).feh.values, cat.feh.values)


def test_task_is_small_and_carries_no_model(fake_setup):
    model_dir, survey_path = fake_setup
    task = survey.InferChunk(model_dir, "fake-model-1", survey_path, 64, 0, ("teff",), loader=load_fake)
    blob = pickle.dumps(task)
    assert len(blob) < 1000 and b"FakePosterior" not in blob


_SCRIPT = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {here!r}]
    from cinn import survey
    from fakes import load_fake
    survey.infer({model!r}, {survey_path!r}, {out!r}, samples=64, chunk=4, loader=load_fake, progress=False)
""")


def test_sigkill_mid_run_then_rerun_resumes_and_equals_uninterrupted(tmp_path):
    model_dir = write_fake_model(tmp_path / "model", WAVE, delay=0.04)  # 60 stars -> ~2.4 s of "inference"
    survey_path = make_survey(tmp_path / "survey.zarr")
    out = tmp_path / "cat.zarr"
    script = _SCRIPT.format(root=str(ROOT), here=str(HERE), model=str(model_dir), survey_path=str(survey_path), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while len(_done_markers(out)) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, mid-way
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    before = _done_markers(out)
    assert 3 <= len(before) < 15, f"{len(before)} chunks done when killed"
    with pytest.raises(StoreError, match="incomplete"):
        catalogs.open(out)

    survey.infer(model_dir, survey_path, out, samples=64, chunk=4, loader=load_fake, progress=False)  # the same command again
    after = _done_markers(out)
    assert len(after) == 15
    assert {k: after[k] for k in before} == before  # finished chunks were not recomputed
    reference = survey.infer(model_dir, survey_path, tmp_path / "ref.zarr", samples=64, chunk=4, loader=load_fake, progress=False)
    _assert_same_catalog(out, reference)


@pytest.fixture
def two_workers():
    from gridkit.cluster import dask_client

    with dask_client(n_workers=2, threads_per_worker=1, quiet=True, memory_limit="1GiB") as client:
        client.run(lambda: sys.path.insert(0, str(HERE)))
        yield client


def test_killing_a_worker_mid_run_still_completes_correctly(tmp_path, two_workers):
    client = two_workers
    model_dir = write_fake_model(tmp_path / "model", WAVE, delay=0.03)
    survey_path = make_survey(tmp_path / "survey.zarr")
    out = tmp_path / "cat.zarr"
    errors = []
    run = threading.Thread(target=lambda: _capture(errors, survey.infer, model_dir, survey_path, out, samples=64, chunk=4, loader=load_fake,
                                                   client=client, progress=False))
    pids = client.run(os.getpid)
    run.start()
    deadline = time.time() + 60
    while len(_done_markers(out)) < 3 and time.time() < deadline:
        time.sleep(0.02)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    run.join(120)
    assert not run.is_alive() and errors == []
    assert len(_done_markers(out)) == 15
    assert victim not in client.run(os.getpid).values()  # the worker really died (and its nanny replaced it)
    loads = client.run(lambda: __import__("cinn.survey").survey.LOADS["count"])
    assert all(v <= 1 for v in loads.values())  # the model is loaded at most once per worker process
    reference = survey.infer(model_dir, survey_path, tmp_path / "ref.zarr", samples=64, chunk=4, loader=load_fake, progress=False)
    _assert_same_catalog(out, reference)


def _capture(errors, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        errors.append(exc)


def test_gpu_tasks_run_only_on_workers_with_the_gpu_resource(fake_setup, tmp_path):
    from distributed import Client, Scheduler, SpecCluster, Worker, get_task_stream

    model_dir, survey_path = fake_setup
    spec = {"gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
            "cpu": {"cls": Worker, "options": {"nthreads": 1}}}
    with SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        assert survey.gpu_resources(client) == {"GPU": 1}
        gpu_addr = next(a for a, w in client.scheduler_info()["workers"].items() if w.get("resources", {}).get("GPU"))
        with get_task_stream(client) as ts:
            survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=16, chunk=4, loader=load_fake, client=client, progress=False)
        workers = {t["worker"] for t in ts.data if str(t["key"]).startswith("infer-")}
        assert workers == {gpu_addr}  # the worker lacking the resource got none of the 15 tasks
    assert catalogs.open(tmp_path / "cat.zarr").sizes["star"] == 60


def test_cpu_only_cluster_asks_for_no_resource():
    class FakeClient:
        def scheduler_info(self, n_workers=-1):
            return {"workers": {"a": {"resources": {}}, "b": {}}}

    assert survey.gpu_resources(FakeClient()) is None
    assert survey.gpu_resources(None) is None


# -- bad input: clear errors, nothing written or overwritten -----------------------------------------
def test_survey_off_the_model_grid_refused(tmp_path):
    model_dir = write_fake_model(tmp_path / "model", WAVE)
    off = make_survey(tmp_path / "off.zarr", wave=WAVE + 0.1)
    with pytest.raises(GridError, match="not on the wavelength grid of model_dir"):
        survey.infer(model_dir, off, tmp_path / "cat.zarr", loader=load_fake, progress=False)
    assert not (tmp_path / "cat.zarr").exists()


def test_missing_snr_refused(tmp_path):
    model_dir = write_fake_model(tmp_path / "model", WAVE)
    path = make_survey(tmp_path / "s.zarr")
    ds = xr.open_zarr(path, consolidated=False).drop_vars("snr").load()
    ds.to_zarr(tmp_path / "nosnr.zarr", consolidated=False, zarr_format=3)
    with pytest.raises(GridError, match="needs a 'snr' variable"):
        survey.infer(model_dir, tmp_path / "nosnr.zarr", tmp_path / "cat.zarr", loader=load_fake, progress=False)
    assert not (tmp_path / "cat.zarr").exists()


def test_duplicate_star_ids_refused(tmp_path):
    model_dir = write_fake_model(tmp_path / "model", WAVE)
    ids = [f"S{i}" for i in range(59)] + ["S7"]
    path = make_survey(tmp_path / "dup.zarr", ids=ids)
    with pytest.raises(GridError, match="star_id must be unique; duplicated: S7"):
        survey.infer(model_dir, path, tmp_path / "cat.zarr", loader=load_fake, progress=False)
    assert not (tmp_path / "cat.zarr").exists()


def test_catalog_of_another_model_refused_and_kept(fake_setup, tmp_path):
    model_dir, survey_path = fake_setup
    out = survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=16, chunk=16, loader=load_fake, progress=False)
    before = _values(out)
    other = write_fake_model(tmp_path / "other", WAVE, model_id="fake-model-2")
    with pytest.raises(StoreError, match="made by model fake-model-1.*refusing to mix"):
        survey.infer(other, survey_path, out, samples=16, chunk=16, loader=load_fake, progress=False)
    with pytest.raises(StoreError, match="different job"):  # same model, other parameters
        survey.infer(model_dir, survey_path, out, samples=32, chunk=16, loader=load_fake, progress=False)
    after = _values(out)
    assert all(np.array_equal(before[k], after[k]) for k in before if before[k].dtype.kind == "f")
    survey.infer(other, survey_path, out, samples=16, chunk=16, loader=load_fake, progress=False, overwrite=True)
    assert catalogs.open(out).attrs["model_id"] == "fake-model-2"


def test_bad_arguments_refused(fake_setup, tmp_path):
    model_dir, survey_path = fake_setup
    for kwargs, match in [({"samples": 0}, "samples must be an integer >= 1, got 0"), ({"chunk": -3}, "chunk must be an integer >= 1, got -3"),
                          ({"device": "tpu"}, "device must be"), ({"seed": 1.5}, "seed must be an integer")]:
        with pytest.raises(ConfigError, match=match):
            survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", loader=load_fake, progress=False, **kwargs)
    with pytest.raises(StoreError, match="model_dir .* does not exist"):
        survey.infer(tmp_path / "nope", survey_path, tmp_path / "cat.zarr", loader=load_fake, progress=False)
    with pytest.raises(GridError, match="does not exist"):
        survey.infer(model_dir, tmp_path / "nope.zarr", tmp_path / "cat.zarr", loader=load_fake, progress=False)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a resumable gridkit store"):
        survey.infer(model_dir, survey_path, tmp_path / "foreign", loader=load_fake, progress=False)
    assert (tmp_path / "foreign" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "cat.zarr").exists()
