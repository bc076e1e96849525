"""Resume checks content, not paths (gridkit.store): a catalog resumed after its survey was rebuilt from changed
spectra equals a fresh one (its chunks are inferred again), and a catalog's writer never deletes its inputs."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cinn import survey
from gridkit.errors import StoreError
from gridkit.testing import assert_stores_identical, failing_regions

from survey_fakes import load_fake, make_survey


def test_infer_resumed_after_the_survey_changed_equals_a_fresh_run(fake_setup, tmp_path, monkeypatch):
    model_dir, survey_path = fake_setup
    out = tmp_path / "cat.zarr"
    with failing_regions(survey.InferChunk, [2]), pytest.raises(StoreError, match="1 of 4 chunk"):
        survey.infer(model_dir, survey_path, out, samples=32, chunk=16, loader=load_fake, progress=False)
    make_survey(survey_path, seed=1, overwrite=True)  # the survey rebuilt from changed spectra, same stars
    survey.infer(model_dir, survey_path, out, samples=32, chunk=16, loader=load_fake, progress=False)
    fresh = survey.infer(model_dir, survey_path, tmp_path / "fresh.zarr", samples=32, chunk=16, loader=load_fake, progress=False)
    assert_stores_identical(out, fresh)
    teff = xr.open_zarr(out, consolidated=False).teff.values
    before = teff.copy()
    survey.infer(model_dir, survey_path, out, samples=32, chunk=16, loader=load_fake, progress=False)  # unchanged: nothing redone
    np.testing.assert_array_equal(xr.open_zarr(out, consolidated=False).teff.values, before)


@pytest.mark.parametrize("where", ["survey", "model", "inside-model"])
def test_infer_never_writes_over_its_inputs(fake_setup, tmp_path, where):
    model_dir, survey_path = fake_setup
    out = {"survey": survey_path, "model": model_dir, "inside-model": model_dir / "catalog.zarr"}[where]
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(StoreError, match="is the input|lies inside the input"):
        survey.infer(model_dir, survey_path, out, samples=32, chunk=16, loader=load_fake, progress=False, overwrite=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == files


def _flip(chunk):
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_survey_and_catalog_are_named_with_the_chunk(fake_setup, tmp_path, capsys, how):
    from gridkit.cli import main

    model_dir, survey_path = fake_setup
    cat = survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=32, chunk=16, loader=load_fake, progress=False)
    for path, key in ((survey_path / "flux" / "c" / "1" / "0", "flux/c/1/0"), (cat / "teff" / "c" / "2", "teff/c/2")):
        if how == "flip":
            _flip(path)
        elif how == "truncate":
            path.write_bytes(path.read_bytes()[:7])
        else:
            path.unlink()
    with pytest.raises(StoreError, match=r"survey.zarr is damaged: chunk flux/c/1/0"):
        survey.infer(model_dir, survey_path, tmp_path / "cat2.zarr", samples=32, chunk=16, loader=load_fake, progress=False)
    assert main(["catalog", "export", str(cat), str(tmp_path / "all.parquet")]) == 2
    err = capsys.readouterr().err
    assert "cat.zarr is damaged: chunk teff/c/2" in err and "Traceback" not in err
    assert not (tmp_path / "all.parquet").exists()


def test_a_survey_normalised_otherwise_than_the_training_data_is_refused_naming_both(fake_setup, tmp_path):
    from gridkit.errors import GridError

    model_dir, survey_path = fake_setup
    ds = xr.open_zarr(survey_path, consolidated=False).load()
    ds.attrs["normalisation"] = 'continuum {"knot_spacing": 50.0}'
    ds.to_zarr(tmp_path / "normed.zarr", consolidated=False, zarr_format=3)
    with pytest.raises(GridError, match=r"normalised with 'continuum .*trained on flux normalised with 'none'.*--normalise none"):
        survey.infer(model_dir, tmp_path / "normed.zarr", tmp_path / "cat.zarr", samples=32, loader=load_fake, progress=False)
    assert not (tmp_path / "cat.zarr").exists()
