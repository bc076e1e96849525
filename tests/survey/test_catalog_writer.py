"""The catalog writer of `infer` (`cinn.survey.CatalogStore`: regions written straight into the Zarr arrays, opened
once per process) writes what xarray's region write (`RegionStore.write_region`) writes: the same chunk files, byte
for byte, and the same completion record; it reopens a catalog that was replaced at the same path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import xarray as xr

from cinn import survey
from gridkit import store as _store
from gridkit.testing import assert_stores_identical

from survey_fakes import load_fake, make_survey


def _chunk_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and "_gridkit" not in p.parts and p.name != "zarr.json"}


def _contents(path: Path) -> dict[int, str]:
    return {int(p.stem): json.loads(p.read_text())["content"] for p in (path / "_gridkit" / "done").glob("*.json")}


def test_direct_region_writes_equal_xarrays_byte_for_byte(fake_setup, tmp_path, monkeypatch):
    model_dir, survey_path = fake_setup
    plans, plan = [], survey.CatalogStore._plan
    monkeypatch.setattr(survey.CatalogStore, "_plan", lambda self, part, sl: plans.append(plan(self, part, sl)) or plans[-1])
    direct = survey.infer(model_dir, survey_path, tmp_path / "direct.zarr", samples=32, chunk=16, loader=load_fake, progress=False)
    assert len(plans) == 4 and all(p is not None for p in plans)  # every region written directly, none by xarray
    calls = []
    monkeypatch.setattr(survey.CatalogStore, "_plan", lambda self, part, sl: calls.append(sl) or None)  # always xarray's path
    by_xarray = survey.infer(model_dir, survey_path, tmp_path / "xarray.zarr", samples=32, chunk=16, loader=load_fake, progress=False)
    assert len(calls) == 4
    assert_stores_identical(direct, by_xarray)
    assert _chunk_files(direct) == _chunk_files(by_xarray)
    assert _contents(direct) == _contents(by_xarray)


def test_a_catalog_replaced_at_the_same_path_is_reopened(fake_setup, tmp_path):
    model_dir, survey_path = fake_setup
    out = tmp_path / "cat.zarr"
    survey.infer(model_dir, survey_path, out, samples=32, chunk=16, loader=load_fake, progress=False)
    first = xr.open_zarr(out, consolidated=False).teff.values
    shutil.rmtree(out)  # the same job again at the same path: this process's opened arrays belong to the old store
    survey.infer(model_dir, survey_path, out, samples=32, chunk=16, loader=load_fake, progress=False, overwrite=True)
    np.testing.assert_array_equal(xr.open_zarr(out, consolidated=False).teff.values, first)
    assert _store.open_region_store(out).complete
    _store.open_complete(out, "catalog")  # every chunk the record says was written is there


def test_a_survey_rebuilt_at_the_same_path_is_read_afresh_in_the_same_process(fake_setup, tmp_path):
    """The survey is opened once per process and job input (its content digest in the key): a survey rebuilt at the
    same path with other stars and another chunking is not read through the handle of the old one."""
    model_dir, survey_path = fake_setup
    survey.infer(model_dir, survey_path, tmp_path / "old.zarr", samples=32, chunk=16, loader=load_fake, progress=False)
    make_survey(survey_path, n=90, seed=3, chunk=10, overwrite=True)
    again = survey.infer(model_dir, survey_path, tmp_path / "new.zarr", samples=32, chunk=16, loader=load_fake, progress=False)
    copy = make_survey(tmp_path / "copy.zarr", n=90, seed=3, chunk=10)  # the same content at a path never opened before
    fresh = survey.infer(model_dir, copy, tmp_path / "fresh.zarr", samples=32, chunk=16, loader=load_fake, progress=False)
    a, b = xr.open_zarr(again, consolidated=False), xr.open_zarr(fresh, consolidated=False)
    assert a.sizes["star"] == 90
    for name in ("teff", "teff_quantiles", "f_reject", "star_id", "snr"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
