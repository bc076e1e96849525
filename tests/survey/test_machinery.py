"""The survey machinery on a fake model (fast, torch-free): chunking-independent results, a killed worker does
not break the run, the model is loaded once per
worker and never shipped, GPU tasks go to GPU workers only, and bad input is refused before anything is written."""
from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import catalogs
from cinn import survey
from gridkit.errors import ConfigError, GridError, StoreError

from survey_fakes import WAVE, load_fake, make_survey, write_fake_model



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
            assert [str(x) for x in va[k].tolist()] == [str(x) for x in vb[k].tolist()], k


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
    key = str(Path(model_dir).resolve())
    loads = client.run(lambda: __import__("cinn.survey").survey.LOADS.get(key, 0))
    assert all(v <= 1 for v in loads.values())  # the model is loaded at most once per worker process
    reference = survey.infer(model_dir, survey_path, tmp_path / "ref.zarr", samples=64, chunk=4, loader=load_fake, progress=False)
    _assert_same_catalog(out, reference)


def _capture(errors, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        errors.append(exc)


def _record_restrictions(scheduler):
    """A scheduler plugin recording the resource restrictions each `infer-` task carries on the scheduler."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Record(SchedulerPlugin):
        name = "record-restrictions"

        def __init__(self, scheduler):
            self.scheduler, self.seen = scheduler, {}

        def transition(self, key, start, finish, *args, **kwargs):
            ts = self.scheduler.tasks.get(key)
            if ts is not None and str(key).startswith("infer-"):
                self.seen[str(key)] = dict(ts.resource_restrictions or {})

    return Record(scheduler)


def _in_process_cluster(spec):
    from distributed import Scheduler, SpecCluster

    return SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}})


def test_gpu_tasks_run_only_on_workers_with_the_gpu_resource(fake_setup, tmp_path):
    from distributed import Client, Worker, get_task_stream

    model_dir, survey_path = fake_setup
    spec = {"gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
            "cpu": {"cls": Worker, "options": {"nthreads": 1}}}
    with _in_process_cluster(spec) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        assert survey.gpu_resources(client) == {"GPU": 1}
        record = _record_restrictions(cluster.scheduler)
        cluster.scheduler.add_plugin(record)
        gpu_addr = next(a for a, w in client.scheduler_info()["workers"].items() if w.get("resources", {}).get("GPU"))
        with get_task_stream(client) as ts:
            survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=16, chunk=4, loader=load_fake, client=client, progress=False)
        workers = {t["worker"] for t in ts.data if str(t["key"]).startswith("infer-")}
        assert workers == {gpu_addr}  # the worker lacking the resource got none of the 15 tasks
        # the annotation reached the scheduler on every task (tasks are submitted one by one: no graph fusion drops it)
        assert len(record.seen) == 15 and all(r == {"GPU": 1} for r in record.seen.values()), record.seen
        key = str(Path(model_dir).resolve())
        devices = sorted(str(k[2]) for k in survey._POSTERIORS if k[0] == key)  # in-process workers share this process's cache
        assert devices == ["cpu"]  # no CUDA here: the GPU worker falls back to CPU (torch reports no device)
    assert catalogs.open(tmp_path / "cat.zarr").sizes["star"] == 60


def test_cpu_workers_get_tasks_without_resource_restrictions(fake_setup, tmp_path):
    from distributed import Client, Worker

    model_dir, survey_path = fake_setup
    spec = {"a": {"cls": Worker, "options": {"nthreads": 1}}, "b": {"cls": Worker, "options": {"nthreads": 1}}}
    with _in_process_cluster(spec) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        record = _record_restrictions(cluster.scheduler)
        cluster.scheduler.add_plugin(record)
        survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=16, chunk=8, loader=load_fake, client=client, progress=False)
        assert len(record.seen) == 8 and all(r == {} for r in record.seen.values())
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


def test_stars_with_missing_pixels_are_flagged_on_request_and_the_rest_inferred(tmp_path):
    """missing='flag': `gridkit fourmostify` leaves NaN where a spectrum does not cover the instrument: such a star gets NaN
    labels, f_reject 1 and flag_missing_flux; its chunk-mates are inferred as usual."""
    model_dir = write_fake_model(tmp_path / "model", WAVE)
    path = make_survey(tmp_path / "s.zarr", n=20, chunk=8)
    ds = xr.open_zarr(path, consolidated=False).load()
    flux = ds.flux.values.copy()
    flux[5, 10:20] = np.nan
    ds["flux"] = (("star", "wavelength"), flux, ds.flux.attrs)
    ds.to_zarr(tmp_path / "gap.zarr", consolidated=False, zarr_format=3)
    cat = catalogs.open(survey.infer(model_dir, tmp_path / "gap.zarr", tmp_path / "cat.zarr", samples=32, chunk=8, loader=load_fake, progress=False,
                                      missing="flag"))
    assert cat.flag_missing_flux.values.tolist() == [i == 5 for i in range(20)]
    assert np.isnan(cat.teff.values[5]) and np.isnan(cat.feh_quantiles.values[5]).all() and cat.f_reject.values[5] == 1
    good = np.r_[0:5, 6:20]
    direct = load_fake(model_dir).summarize(flux[good], ds.snr.values[good], n=32, seed=0, keys=good)
    np.testing.assert_array_equal(cat.teff.values[good], direct.teff.values.astype("f4"))
    assert catalogs.query_mask(cat, "not flag_missing_flux").sum() == 19
