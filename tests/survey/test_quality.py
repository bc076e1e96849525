"""Per-star quality columns of a catalog (flag_snr_outside, <label>_unconstrained), kept posterior draws
(`keep_samples`), and labelled samples (`Posterior.sample(labelled=True)`).

The rules are checked against values computed here independently: the training split's label quantiles from the cube
and split.json, the S/N range from the model, the catalog's quantiles from the kept draws."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import catalogs
import cinn
from catalogs.schema import QUANTILES
from cinn import survey
from gridkit.errors import ConfigError, StoreError

from survey_fakes import SAMPLES, WAVE, load_fake, make_survey, write_fake_model


def _width(q):
    return q[..., QUANTILES.index(0.84)].astype(np.float64) - q[..., QUANTILES.index(0.16)]


# -- fast: the machinery with the fake model ------------------------------------------------------
class QualityFake:
    """The fake model with a training S/N range and prior widths (what the real Posterior records)."""

    def __call__(self, model_dir):
        post = load_fake(model_dir)
        post.snr_range = (50.0, 250.0)
        post.prior_width68 = np.array([150.0, 0.5, 0.05])  # teff, logg, feh: the fake posteriors are 200 K, 0.2, 0.2 wide
        return post

    def __dask_tokenize__(self):
        return "QualityFake"

    @staticmethod
    def info(model_dir):
        from survey_fakes import fake_info

        return fake_info(model_dir)


def test_flags_follow_the_rules_and_the_lazy_path_gives_the_same_values(tmp_path):
    model_dir = write_fake_model(tmp_path / "model", WAVE, model_id="fake-quality")
    snr = np.array([20.0, 50.0, 100.0, 250.0, 251.0, 1000.0] * 4)
    path = make_survey(tmp_path / "survey.zarr", n=snr.size, snr=snr, chunk=8)
    loader = QualityFake()
    with pytest.warns(Warning, match="outside the model's training range"):
        cat = catalogs.open(survey.infer(model_dir, path, tmp_path / "cat.zarr", samples=64, loader=loader, progress=False))
    np.testing.assert_array_equal(cat.flag_snr_outside.values, (snr < 50) | (snr > 250))
    for name, prior in zip(("teff", "logg", "feh"), loader(model_dir).prior_width68):
        want = _width(cat[f"{name}_quantiles"].values) >= survey.UNCONSTRAINED_FRACTION * prior
        np.testing.assert_array_equal(cat[f"{name}_unconstrained"].values, want, err_msg=name)
        assert cat[f"{name}_unconstrained"].attrs["units"] == "1" and "unconstrained" in cat[f"{name}_unconstrained"].attrs["long_name"]
    assert cat.teff_unconstrained.values.all() and not cat.logg_unconstrained.values.any()  # 200 K >= 120 K; 0.2 < 0.4
    assert cat.flag_snr_outside.attrs["long_name"] and cat.attrs["unconstrained_fraction"] == survey.UNCONSTRAINED_FRACTION
    assert catalogs.label_names(cat) == ["teff", "logg", "feh"]  # <label>_unconstrained is no label
    lazy = cinn.summarize_dataset(model_dir, path, samples=64, loader=loader).compute()  # (the fake's info has no S/N range: no warning)
    for name in ("flag_snr_outside", "teff_unconstrained", "logg_unconstrained", "feh_unconstrained"):
        np.testing.assert_array_equal(lazy[name].values, cat[name].values, err_msg=name)
    text = catalogs.info(cat)
    assert f"flagged flag_snr_outside: {int(((snr < 50) | (snr > 250)).sum())} " in text
    assert "flagged teff_unconstrained: 24 (100.0 %)" in text and "flagged logg_unconstrained: 0 (0.0 %)" in text
    assert catalogs.schema.ucd("teff_unconstrained") == "meta.code.qual"


def test_keep_samples_is_validated_before_anything_is_written(fake_setup, tmp_path):
    model_dir, survey_path = fake_setup
    for bad in (-1, 65, 1.5):
        with pytest.raises(ConfigError, match="keep_samples"):
            survey.infer(model_dir, survey_path, tmp_path / "cat.zarr", samples=64, keep_samples=bad, loader=load_fake, progress=False)
    assert not (tmp_path / "cat.zarr").exists()


# -- the real tiny cINN ---------------------------------------------------------------------------
def test_prior_widths_are_the_training_splits_label_quantiles(analytic_model, real_catalog):
    from cinn.data import read_split
    from gridkit.grid import open_grid

    model_dir, cube, _ = analytic_model
    post = cinn.load(model_dir)
    grid = open_grid(cube)
    train = np.isin(grid["model"].values, read_split(model_dir)["train"])
    want = [np.quantile(grid[x].values[train], 0.84) - np.quantile(grid[x].values[train], 0.16) for x in post.label_names]
    np.testing.assert_allclose(post.prior_width68, want, rtol=1e-12)
    assert post.prior_width68_source.startswith("training split")
    cat = catalogs.open(real_catalog)
    assert not cat.flag_snr_outside.values.any()  # the mock survey is at S/N 250, inside 50-250
    for j, name in enumerate(post.label_names):
        want = _width(cat[f"{name}_quantiles"].values) >= survey.UNCONSTRAINED_FRACTION * post.prior_width68[j]
        np.testing.assert_array_equal(cat[f"{name}_unconstrained"].values, want, err_msg=name)


def test_old_models_fall_back_to_a_uniform_prior_on_the_bounds(analytic_model, tmp_path):
    from cinn.posterior import _prior_width68

    model_dir, _, _ = analytic_model
    meta = json.loads((Path(model_dir) / "model.json").read_text())
    meta.pop("label_quantiles")
    post = cinn.load(model_dir)
    width, source = _prior_width68(meta, post.label_names, post.bounds)
    np.testing.assert_allclose(width, 0.68 * (post.bounds[:, 1] - post.bounds[:, 0]))
    assert "uniform" in source


def test_kept_draws_are_the_ones_the_quantiles_come_from_and_a_fingerprint_part(analytic_model, tmp_path):
    N = 128
    model_dir, _, survey_path = analytic_model
    sub = tmp_path / "sub.zarr"
    src = xr.open_zarr(survey_path, consolidated=False).isel(star=slice(0, 24)).load()
    for var in src.variables.values():
        var.encoding = {}
    src.to_zarr(sub, consolidated=False)
    full = catalogs.open(survey.infer(model_dir, sub, tmp_path / "all.zarr", samples=N, keep_samples=N, chunk=8, progress=False))
    post = cinn.load(model_dir)
    assert full.samples.dims == ("star", "draw", "label") and full.samples.dtype == np.float32
    assert full.label.values.tolist() == list(post.label_names) and full.attrs["keep_samples"] == N
    assert full.label_units.values.tolist()[:2] == ["K", "dex"]
    draws, inside = full.samples.values.astype(np.float64), full.samples_in_bounds.values
    np.testing.assert_allclose(1 - inside.mean(axis=1), full.f_reject.values, rtol=1e-6)
    for j, name in enumerate(post.label_names):
        for i in range(0, 24, 5):
            q = np.quantile(draws[i, inside[i], j], QUANTILES)
            np.testing.assert_allclose(q, full[f"{name}_quantiles"].values[i], rtol=2e-6, err_msg=name)
    few = catalogs.open(survey.infer(model_dir, sub, tmp_path / "few.zarr", samples=N, keep_samples=5, chunk=12, progress=False))
    np.testing.assert_array_equal(few.samples.values, full.samples.values[:, :5])  # the first 5 draws, any chunking
    np.testing.assert_array_equal(few.teff_quantiles.values, full.teff_quantiles.values)
    with pytest.raises(StoreError):  # another keep_samples is another job
        survey.infer(model_dir, sub, tmp_path / "few.zarr", samples=N, keep_samples=6, chunk=12, progress=False)
    lazy = cinn.summarize_dataset(model_dir, sub, samples=N, keep_samples=5, chunk=8).isel(star=[3, 17]).compute()
    np.testing.assert_array_equal(lazy.samples.values, few.samples.values[[3, 17]])
    np.testing.assert_array_equal(lazy.samples_in_bounds.values, few.samples_in_bounds.values[[3, 17]])
    text = catalogs.info(few)
    assert "kept posterior draws: 5 per star" in text and "samples" not in catalogs.columns(few)


def test_calibrated_draws_have_the_calibrated_quantiles(analytic_model):
    from cinn.calibration import Calibration

    model_dir, _, survey_path = analytic_model
    post = cinn.load(model_dir)
    d = len(post.label_names)
    post.calibration = Calibration(tuple(post.label_names), np.array([50.0, 250.0]), np.linspace(0.5, 2.0, 2 * d).reshape(2, d), post.model_id, 40)
    src = xr.open_zarr(survey_path, consolidated=False).isel(star=slice(0, 3)).load()
    out = post.summarize(src.flux.values, src.snr.values, n=SAMPLES, keys=[0, 1, 2], keep=SAMPLES)
    raw = post.summarize(src.flux.values, src.snr.values, n=SAMPLES, keys=[0, 1, 2], keep=SAMPLES, calibrated=False)
    np.testing.assert_array_equal(out.samples_in_bounds.values, raw.samples_in_bounds.values)
    assert not np.allclose(out.samples.values, raw.samples.values)
    for j, name in enumerate(post.label_names):
        for i in range(3):
            inside = out.samples_in_bounds.values[i]
            np.testing.assert_allclose(np.quantile(out.samples.values[i, inside, j], QUANTILES), out[f"{name}_quantiles"].values[i],
                                       rtol=1e-9, atol=1e-9 * abs(out[f"{name}_quantiles"].values[i]).max())


def test_labelled_samples_carry_label_names_and_units(analytic_model):
    model_dir, _, survey_path = analytic_model
    post = cinn.load(model_dir)
    src = xr.open_zarr(survey_path, consolidated=False).isel(star=slice(0, 2)).load()
    plain = post.sample(src.flux.values, src.snr.values, n=16, seed=4)
    da = post.sample(src.flux, src.snr.values, n=16, seed=4, labelled=True)
    assert isinstance(da, xr.DataArray) and da.dims == ("star", "draw", "label")
    np.testing.assert_array_equal(da.values, plain)
    assert da.label.values.tolist() == list(post.label_names)
    assert da.attrs["label_units"]["teff"] == "K" and da.label_units.sel(label="logg").item() == "dex"
    np.testing.assert_array_equal(da.sel(label="teff").values, plain[..., list(post.label_names).index("teff")])
    both, log_q = post.sample(src.flux.values, src.snr.values, n=16, seed=4, labelled=True, return_log_q=True)
    assert both.dims == ("star", "draw", "label") and log_q.shape == (2, 16)
