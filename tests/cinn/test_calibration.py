"""Interval calibration (cinn.calibration): fitted on the validation split, the 68 % intervals hold the truth 68 % of
the time there by construction, and closer to 68 % than before on the untouched test split; stored with the model,
checked on load, applied identically by summarize, infer and evaluate, and switchable off."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import cinn
from cinn import calibration
from cinn.checkpoint import ModelDirError
from cinn.evaluate.report import evaluate, fit_interval_calibration


@pytest.fixture(scope="module")
def calibrated(trained, toy_cube, tmp_path_factory):
    model_dir, cube = trained, toy_cube
    copy = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(model_dir, copy)
    cal = fit_interval_calibration(copy, cube, split="validation", samples=128)
    return copy, cube, cal


def _coverage68(post, cube, split, calibrated_):
    import xarray as xr

    ds = xr.open_zarr(cube, consolidated=False)
    ids = cinn.read_split(post.model_dir)[split][:300]
    sub = ds.sel(model=ids).isel(snr=1)
    summ = post.summarize(sub.flux.values, np.full(ids.size, float(sub.snr)), n=128, keys=ids, calibrated=calibrated_)
    out = {}
    for lab in post.label_names:
        q = summ[f"{lab}_quantiles"].values
        t = sub[lab].values
        out[lab] = float(np.mean((q[:, 1] <= t) & (t <= q[:, 3])))
    return out


def test_the_fit_makes_the_68_interval_exact_where_fitted_and_better_on_the_test_split(calibrated):
    model_dir, cube, cal = calibrated
    post = cinn.load(model_dir)
    assert post.calibration is not None and post.calibration.labels == post.label_names
    fitted = _coverage68(post, cube, "validation", True)
    assert all(abs(v - 0.68) <= 0.05 for v in fitted.values()), fitted  # by construction (up to ties and the S/N interpolation)
    raw, cal_test = _coverage68(post, cube, "test", False), _coverage68(post, cube, "test", True)
    err_raw = np.mean([abs(v - 0.68) for v in raw.values()])
    err_cal = np.mean([abs(v - 0.68) for v in cal_test.values()])
    print(f"test split, mean |coverage68 - 0.68| over labels: {err_raw:.3f} uncalibrated -> {err_cal:.3f} calibrated")
    assert err_cal < err_raw


def test_calibration_rescales_only_the_quantiles_around_the_median(calibrated):
    model_dir, cube, cal = calibrated
    post = cinn.load(model_dir)
    import xarray as xr

    sub = xr.open_zarr(cube, consolidated=False).isel(model=slice(0, 5), snr=0)
    a = post.summarize(sub.flux.values, np.full(5, float(sub.snr)), n=128, calibrated=True)
    b = post.summarize(sub.flux.values, np.full(5, float(sub.snr)), n=128, calibrated=False)
    f = cal.factors(np.full(5, float(sub.snr)))
    for j, lab in enumerate(post.label_names):
        np.testing.assert_array_equal(a[lab].values, b[lab].values)  # the MAP stays
        qa, qb = a[f"{lab}_quantiles"].values, b[f"{lab}_quantiles"].values
        np.testing.assert_allclose(qa, qb[:, 2:3] + f[:, j:j + 1] * (qb - qb[:, 2:3]), rtol=1e-12)
    np.testing.assert_array_equal(a.f_reject.values, b.f_reject.values)


def test_infer_and_evaluate_apply_it_and_record_it(calibrated, tmp_path):
    import catalogs
    from cinn.survey import infer, mock_survey

    model_dir, cube, cal = calibrated
    survey = mock_survey(cube, tmp_path / "s.zarr", snr=60.0, models=cinn.read_split(model_dir)["test"][:80])
    on = catalogs.open(infer(model_dir, survey, tmp_path / "on.zarr", samples=64, chunk=200, progress=False))
    off = catalogs.open(infer(model_dir, survey, tmp_path / "off.zarr", samples=64, chunk=200, progress=False, calibrated=False))
    assert json.loads(on.attrs["interval_calibration"])["n_spectra"] == cal.n_spectra and off.attrs["interval_calibration"] == "none"
    post = cinn.load(model_dir)
    direct = post.summarize(catalogs_flux(survey), np.full(on.sizes["star"], 60.0), n=64, keys=np.arange(on.sizes["star"]))
    np.testing.assert_allclose(on.teff_quantiles.values, direct.teff_quantiles.values.astype(np.float32))
    paths = evaluate(model_dir, cube, tmp_path / "report", samples=64, split="test", snr=[60.0], saliency=False, max_spectra=40)
    assert "coverage_uncalibrated_ecsv" in paths and "sbc_uncalibrated_csv" in paths


def catalogs_flux(survey):
    import xarray as xr

    return xr.open_zarr(survey, consolidated=False).flux.values


def test_a_tampered_or_foreign_calibration_is_refused(calibrated, tmp_path):
    model_dir, _, cal = calibrated
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    doc = json.loads((copy / calibration.FILE).read_text())
    doc["scale"][0][0] *= 2
    (copy / calibration.FILE).write_text(json.dumps(doc))
    with pytest.raises(ModelDirError, match="calibration.json does not match its recorded sha256"):
        cinn.load(copy)
    calibration.write(copy, calibration.Calibration(cal.labels, cal.snr, cal.scale, "another-model", cal.n_spectra))
    with pytest.raises(ModelDirError, match="fitted for model another-model"):
        cinn.load(copy)


def test_an_existing_calibration_is_replaced_only_with_overwrite(calibrated):
    from gridkit.errors import ConfigError

    model_dir, cube, cal = calibrated
    before = (model_dir / calibration.FILE).read_bytes()
    with pytest.raises(ConfigError, match="calibration.json exists: pass overwrite=True"):
        fit_interval_calibration(model_dir, cube, samples=16, max_spectra=10)
    assert (model_dir / calibration.FILE).read_bytes() == before
    again = fit_interval_calibration(model_dir, cube, samples=128, overwrite=True)
    np.testing.assert_array_equal(again.scale, cal.scale)  # same draws, same fit: deterministic
