"""`cinn.summarize_dataset`: the catalog as a lazy xarray Dataset (map_blocks over the survey's chunks of stars).

Building it loads no model and computes nothing; computed, it holds the bytes `infer` writes for the same seed (the
two share one per-chunk function), with the same variables and attrs; `cinn.write_catalog` (and a plain `to_zarr`)
give a store `catalogs.open` accepts; on a cluster with a GPU worker the blocks carry resources={"GPU": 1} through
Dask's graph optimisation and run on that worker only."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import catalogs
import cinn
from cinn import survey
from gridkit.errors import ConfigError, GridError

from survey_fakes import SAMPLES, WAVE, CountingLoader, load_fake, make_survey, write_fake_model


def _assert_same_values(lazy: xr.Dataset, cat: xr.Dataset, rows=slice(None)):
    for name in lazy.data_vars:
        a, b = np.asarray(lazy[name].values), np.asarray(cat[name].values)[rows]
        if a.dtype.kind in "fbiu":
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)  # bitwise: NaN where NaN, same float32 bits elsewhere
        else:
            assert [str(x) for x in a.tolist()] == [str(x) for x in b.tolist()], name


def test_nothing_loaded_or_computed_until_asked_then_equal_to_infer_bitwise(fake_setup, tmp_path):
    model_dir, survey_path = fake_setup
    loader = CountingLoader()
    lazy = cinn.summarize_dataset(model_dir, survey.open_survey(survey_path), samples=64, seed=3, loader=loader)
    assert loader.calls == 0  # no model loaded while building it
    assert all(lazy[name].chunks is not None for name in ("teff", "teff_quantiles", "f_reject", "n_imputed"))
    assert lazy["teff"].chunks == ((16, 16, 16, 12),)  # the survey's chunks along star
    computed = lazy.compute()
    assert loader.calls == 1  # once for this process, whatever the number of blocks
    out = survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=64, seed=3, loader=load_fake, progress=False)
    cat = catalogs.open(out)
    assert sorted(map(str, lazy.variables)) == sorted(map(str, xr.open_zarr(out, consolidated=False).variables))
    assert sorted(lazy.attrs) == sorted(cat.attrs)
    for key in ("model_id", "model_hash", "samples", "seed", "chunk", "label_names", "interval_calibration", "survey"):
        assert lazy.attrs[key] == cat.attrs[key], key
    for name in lazy.variables:
        assert lazy[name].attrs == xr.open_zarr(out, consolidated=False)[name].attrs, name
    _assert_same_values(computed, cat)


def test_a_few_stars_and_another_chunking_give_the_same_values(fake_setup, tmp_path):
    model_dir, survey_path = fake_setup
    cat = catalogs.open(survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=32, loader=load_fake, progress=False))
    lazy = cinn.summarize_dataset(model_dir, survey_path, samples=32, chunk=7, loader=load_fake)  # a path works too
    assert lazy["feh"].chunks[0][:2] == (7, 7)
    few = lazy.isel(star=[3, 40, 59]).compute()
    _assert_same_values(few, cat, rows=[3, 40, 59])


def test_missing_pixels_are_handled_as_infer_does(tmp_path):
    model_dir = write_fake_model(tmp_path / "model", WAVE)
    path = make_survey(tmp_path / "survey.zarr", n=20, chunk=8)
    ds = xr.open_zarr(path, consolidated=False).load()
    ds["flux"][[2, 11], 5:9] = np.nan
    from gridkit import store

    store.write_dataset(ds.chunk({"star": 8}), tmp_path / "holes.zarr", dim="star", region_size=8, progress=False)
    for missing in ("flag", "impute"):
        cat = catalogs.open(survey.infer(model_dir, tmp_path / "holes.zarr", tmp_path / f"cat-{missing}.zarr", samples=16,
                                         loader=load_fake, progress=False, missing=missing))
        lazy = cinn.summarize_dataset(model_dir, tmp_path / "holes.zarr", samples=16, loader=load_fake, missing=missing).compute()
        _assert_same_values(lazy, cat)
        assert lazy.flag_missing_flux.values[[2, 11]].tolist() == ([True, True] if missing == "flag" else [False, False])


def test_write_catalog_round_trip_resumes_and_plain_to_zarr_opens(fake_setup, tmp_path):
    model_dir, survey_path = fake_setup
    cat = catalogs.open(survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=16, loader=load_fake, progress=False))
    lazy = cinn.summarize_dataset(model_dir, survey_path, samples=16, loader=load_fake)
    out = cinn.write_catalog(lazy, tmp_path / "lazy.zarr")
    written = catalogs.open(out)  # completion record checked
    _assert_same_values(written[list(lazy.data_vars)].load(), cat)
    done = {p.name: p.stat().st_mtime_ns for p in (out / "_gridkit" / "done").glob("*.json")}
    assert len(done) == 4
    again = cinn.summarize_dataset(model_dir, survey_path, samples=16, loader=load_fake)  # a new session, same job
    cinn.write_catalog(again, out)  # resumes: nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in (out / "_gridkit" / "done").glob("*.json")} == done
    other = cinn.summarize_dataset(model_dir, survey_path, samples=16, seed=1, loader=load_fake)
    with pytest.raises(Exception, match="different job"):
        cinn.write_catalog(other, out)
    lazy.to_zarr(tmp_path / "plain.zarr", consolidated=False)  # the docs' other way: no completion record
    _assert_same_values(catalogs.open(tmp_path / "plain.zarr")[list(lazy.data_vars)].load(), cat)


def test_bad_arguments_refused_before_anything(fake_setup, tmp_path):
    model_dir, survey_path = fake_setup
    with pytest.raises(ConfigError, match="samples"):
        cinn.summarize_dataset(model_dir, survey_path, samples=0, loader=load_fake)
    with pytest.raises(ConfigError, match="missing"):
        cinn.summarize_dataset(model_dir, survey_path, missing="drop", loader=load_fake)
    with pytest.raises(ConfigError, match="device"):
        cinn.summarize_dataset(model_dir, survey_path, device="tpu", loader=load_fake)
    other = write_fake_model(tmp_path / "other", np.linspace(6000, 6010, 41))
    with pytest.raises(GridError, match="wavelength grid"):
        cinn.summarize_dataset(other, survey_path, loader=load_fake)


def _in_process_cluster(spec):
    from distributed import Scheduler, SpecCluster

    return SpecCluster(workers=spec, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}, silence_logs=logging.ERROR)


def _record_restrictions(scheduler, marker: str):
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Record(SchedulerPlugin):
        def __init__(self):
            self.seen = {}

        def transition(self, key, start, finish, *args, **kwargs):
            ts = scheduler.tasks.get(key)
            if ts is not None and isinstance(key, tuple) and key[0] == marker:
                self.seen[key] = dict(ts.resource_restrictions or {})

    record = Record()
    scheduler.add_plugin(record, name="record-lazy")
    return record


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_blocks_ask_for_the_gpu_and_run_on_the_gpu_worker_only(fake_setup, fuse):
    import dask
    from distributed import Client, Worker, get_task_stream

    model_dir, survey_path = fake_setup
    spec = {"gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
            "cpu": {"cls": Worker, "options": {"nthreads": 1}}}
    with _in_process_cluster(spec) as cluster, Client(cluster) as client, dask.config.set({"optimization.fuse.active": fuse}):
        client.wait_for_workers(2)
        lazy = cinn.summarize_dataset(model_dir, survey_path, samples=16, chunk=4, loader=load_fake)  # the default client
        name = lazy["teff"].data.name.removeprefix("teff-")  # the map_blocks layer
        layers = lazy["teff"].data.__dask_graph__().layers
        assert layers[name].annotations == {"resources": {"GPU": 1}}  # dask.annotate on the layer
        record = _record_restrictions(cluster.scheduler, name)
        gpu = next(a for a, w in client.scheduler_info()["workers"].items() if (w.get("resources") or {}).get("GPU"))
        with get_task_stream(client) as ts:
            computed = lazy.compute()  # default optimisation: low-level fusion flattens the layers
        ran = {t["worker"] for t in ts.data if isinstance(t["key"], tuple) and t["key"][0] == name}
        assert ran == {gpu}  # 15 blocks, all on the worker with the GPU resource
        assert len(record.seen) == 15 and all(r == {"GPU": 1} for r in record.seen.values()), record.seen
    direct = cinn.summarize_dataset(model_dir, survey_path, samples=16, chunk=4, loader=load_fake).compute(scheduler="sync")
    _assert_same_values(computed, direct)


def test_no_resource_without_gpu_workers(fake_setup):
    from distributed import Client, Worker

    model_dir, survey_path = fake_setup
    spec = {"a": {"cls": Worker, "options": {"nthreads": 1}}}
    with _in_process_cluster(spec) as cluster, Client(cluster) as client:
        client.wait_for_workers(1)
        lazy = cinn.summarize_dataset(model_dir, survey_path, samples=16, chunk=8, loader=load_fake)
        name = lazy["teff"].data.name.removeprefix("teff-")
        assert lazy["teff"].data.__dask_graph__().layers[name].annotations is None
        record = _record_restrictions(cluster.scheduler, name)
        lazy.compute()
        assert len(record.seen) == 8 and all(r == {} for r in record.seen.values())


# -- the real (tiny) cINN ------------------------------------------------------------------------------
def test_real_model_metadata_without_loading_and_values_equal_the_catalog(analytic_model, real_catalog, monkeypatch):
    model_dir, _, survey_path = analytic_model
    calls = []
    monkeypatch.setattr(survey, "default_loader", lambda d: calls.append(d) or cinn.load(d))
    lazy = cinn.summarize_dataset(model_dir, xr.open_zarr(survey_path, consolidated=False), samples=SAMPLES, seed=0, chunk=16)
    assert calls == []  # model.json and the wavelength tensor only
    cat = catalogs.open(real_catalog)
    for key in ("model_id", "model_hash", "label_names", "interval_calibration", "survey", "model_dir"):
        assert lazy.attrs[key] == cat.attrs[key], key
    _assert_same_values(lazy.isel(star=slice(16, 32)).compute(), cat, rows=slice(16, 32))


def test_on_spawned_workers_each_loads_the_model_once(fake_setup, two_workers):
    model_dir, survey_path = fake_setup
    lazy = cinn.summarize_dataset(model_dir, survey_path, samples=16, chunk=4, loader=load_fake, client=two_workers)
    computed = two_workers.compute(lazy).result()  # 15 blocks over 2 worker processes
    key = str(Path(model_dir).resolve())
    loads = two_workers.run(lambda: survey.LOADS.get(key, 0))
    assert sum(loads.values()) >= 1 and all(n <= 1 for n in loads.values()), loads
    _assert_same_values(computed, cinn.summarize_dataset(model_dir, survey_path, samples=16, chunk=4, loader=load_fake).compute())
