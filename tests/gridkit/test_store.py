"""The restartable writer: template, regions, completion record, resume = uninterrupted, refusal to mix."""
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from gridkit import store
from gridkit.errors import StoreError


def _template(n=10, w=7):
    import dask.array as da

    return xr.Dataset(
        {"flux": (("model", "wavelength"), da.zeros((n, w), dtype="f4", chunks=(3, w))), "teff": ("model", np.linspace(4000, 6000, n))},
        coords={"model": np.arange(n), "wavelength": np.arange(w, dtype=float) + 5000},
    )


class Noisy:
    """A region maker whose values depend only on (seed, model id): deterministic by construction."""

    def __init__(self, fail_on=()):
        self.fail_on = set(fail_on)

    def __call__(self, i, sl):
        if i in self.fail_on:
            raise RuntimeError(f"boom in region {i}")
        ids = np.arange(sl.start, sl.stop)
        flux = np.stack([store.rng_for(42, m).normal(size=7).astype("f4") for m in ids])
        return xr.Dataset({"flux": (("model", "wavelength"), flux)}, coords={"model": ids})


def _read(path):
    return xr.open_zarr(path, consolidated=False).flux.values


def test_resume_equals_uninterrupted(tmp_path):
    full, _ = store.create(tmp_path / "a.zarr", _template(), dim="model", region_size=3, fingerprint="x")
    assert store.write_regions(full, Noisy(), progress=False) == {}
    assert full.complete

    part, resumed = store.create(tmp_path / "b.zarr", _template(), dim="model", region_size=3, fingerprint="x")
    assert not resumed
    failures = store.write_regions(part, Noisy(fail_on={1, 3}), on_error="record", progress=False)
    assert set(failures) == {1, 3} and set(part.failed()) == {1, 3} and not part.complete
    again, resumed = store.create(tmp_path / "b.zarr", _template(), dim="model", region_size=3, fingerprint="x")
    assert resumed and again.done() == {0, 2}
    calls = []

    class Counting(Noisy):
        def __call__(self, i, sl):
            calls.append(i)
            return super().__call__(i, sl)

    assert store.write_regions(again, Counting(), progress=False) == {}
    assert sorted(calls) == [1, 3]  # finished regions are not recomputed
    assert again.complete and again.failed() == {}
    np.testing.assert_array_equal(_read(tmp_path / "a.zarr"), _read(tmp_path / "b.zarr"))
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "b.zarr", consolidated=False).teff.values, np.linspace(4000, 6000, 10))


def test_other_job_refused_and_overwrite(tmp_path):
    path = tmp_path / "c.zarr"
    store.create(path, _template(), dim="model", region_size=3, fingerprint="x")
    with pytest.raises(StoreError, match="different job"):
        store.create(path, _template(), dim="model", region_size=3, fingerprint="y")
    _, resumed = store.create(path, _template(), dim="model", region_size=3, fingerprint="y", overwrite=True)
    assert not resumed


def test_foreign_path_refused(tmp_path):
    path = tmp_path / "d.zarr"
    path.mkdir()
    (path / "something").write_text("x")
    with pytest.raises(StoreError, match="not a resumable gridkit store"):
        store.create(path, _template(), dim="model", region_size=3, fingerprint="x")
    assert (path / "something").exists()  # nothing of the user's is touched


def test_failed_template_leaves_nothing(tmp_path):
    bad = _template().assign_attrs(unserialisable=object())
    with pytest.raises(Exception):
        store.create(tmp_path / "e.zarr", bad, dim="model", region_size=3, fingerprint="x")
    assert not (tmp_path / "e.zarr").exists()


def test_write_dataset_with_distributed_client(tmp_path):
    from distributed import Client, LocalCluster

    ds = _template().assign(flux=lambda d: d.flux + d.teff.astype("f4"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        store.write_dataset(ds, tmp_path / "f.zarr", dim="model", region_size=4, client=client, progress=False)
    out = xr.open_zarr(tmp_path / "f.zarr", consolidated=False)
    np.testing.assert_allclose(out.flux.values, np.repeat(np.linspace(4000, 6000, 10)[:, None], 7, axis=1).astype("f4"))


_PICKLED = {"count": 0}


class _CountedRegion:
    """make_region that counts how often it is pickled (a stand-in for one carrying a big label table or graph)."""

    def __init__(self, ds):
        self.ds = ds

    def __getstate__(self):
        _PICKLED["count"] += 1
        return self.__dict__

    def __call__(self, i, sl):
        return self.ds.isel(model=sl).compute()


def test_a_distributed_job_ships_make_region_once_not_with_every_task(tmp_path):
    from distributed import Client, LocalCluster

    ds = _template(n=24).assign(flux=lambda d: d.flux + d.teff.astype("f4"))
    rs, _ = store.create(tmp_path / "g.zarr", ds, dim="model", region_size=2, fingerprint="once")
    _PICKLED["count"] = 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        assert store.write_regions(rs, _CountedRegion(ds), client=client, progress=False) == {}
        # every task of the job is released when it ends: nothing left on the workers (the release reaches the
        # scheduler asynchronously, so allow it a few seconds)
        deadline = time.monotonic() + 10
        while client.who_has() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.who_has()
    assert 1 <= _PICKLED["count"] <= 2 < len(rs.regions)  # 12 regions; one copy (at most one more in transit), not 12
    out = xr.open_zarr(tmp_path / "g.zarr", consolidated=False)
    xr.testing.assert_allclose(out.flux.load(), ds.flux.load())


def test_rng_depends_only_on_keys():
    a = store.rng_for(1, 5, 2).normal(size=4)
    assert np.array_equal(a, store.rng_for(1, 5, 2).normal(size=4))
    assert not np.array_equal(a, store.rng_for(1, 5, 3).normal(size=4))


def test_a_store_is_the_same_job_however_its_path_is_spelt(tmp_path, monkeypatch):
    """Rerunning `gridkit degrade base.zarr` as `gridkit degrade /abs/base.zarr --out ./cube.zarr` resumes (the dask
    names of a lazily opened store depend on the path's spelling; the fingerprint must not)."""
    from gridkit import instruments
    from gridkit.degradation import degrade_store
    from gridkit.synth import AnalyticSynthesizer, sample_labels, synthesize

    monkeypatch.chdir(tmp_path)
    synthesize(sample_labels(4, seed=3), AnalyticSynthesizer(wavelength_range=((6100.0, 6140.0),), step=0.02), "base.zarr", progress=False)
    inst = instruments.register(instruments.constant_r(20000, 6110.0, 6130.0, name="test-path-spelling"))
    first = degrade_store("base.zarr", "cube.zarr", inst, snr=[50.0], progress=False)
    done = sorted((tmp_path / "cube.zarr" / "_gridkit" / "done").iterdir())
    again = degrade_store(str(tmp_path / "base.zarr"), "./cube.zarr", inst, snr=[50.0], progress=False)
    assert Path(again).resolve() == Path(first).resolve()
    assert sorted((tmp_path / "cube.zarr" / "_gridkit" / "done").iterdir()) == done
    with pytest.raises(StoreError, match="different job"):  # another job is still refused
        degrade_store("base.zarr", "cube.zarr", inst, snr=[60.0], progress=False)


def test_finished_store_opens_plainly_and_changes_drop_the_stale_copy(tmp_path):
    """A complete store opens with plain `xr.open_zarr(path)` without a warning; a job that resumes it (and may change
    it) first drops the consolidated copy, so zarr and xarray never see metadata older than the arrays (an overwrite
    leaves the old store untouched until the swap: tests/gridkit/test_store_safety.py)."""
    import json
    import warnings

    import zarr

    path = tmp_path / "a.zarr"
    rs, _ = store.create(path, _template(), dim="model", region_size=3, fingerprint="x")
    store.write_regions(rs, Noisy(fail_on={2}), on_error="record", progress=False)
    assert "consolidated_metadata" not in json.loads((path / "zarr.json").read_text())  # incomplete: not consolidated
    rs, _ = store.create(path, _template(), dim="model", region_size=3, fingerprint="x")
    store.write_regions(rs, Noisy(), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(path)
    assert set(ds.data_vars) == {"flux", "teff"}
    np.testing.assert_array_equal(ds.flux.values, _read(path))

    rs, resumed = store.create(path, _template(), dim="model", region_size=3, fingerprint="x")  # resumed: it may change
    try:
        assert resumed and "consolidated_metadata" not in json.loads((path / "zarr.json").read_text())
        zarr.open_group(str(path), mode="r+")["flux"].resize((12, 7))
        assert zarr.open_group(str(path), mode="r")["flux"].shape == (12, 7)  # no stale shape from a consolidated copy
    finally:
        store.release(path)
