"""Merging runs and the Eq. B.1 bias calibration."""
from __future__ import annotations

import json

import numpy as np
import pytest

import catalogs
from gridkit.errors import ConfigError, GridError, StoreError

from catalog_fakes import make_catalog, write_catalog


def test_merge_keeps_every_star_once_with_its_source(tmp_path):
    a = write_catalog(make_catalog(50, seed=1, prefix="A"), tmp_path / "a.zarr")
    b = write_catalog(make_catalog(30, seed=2, prefix="B"), tmp_path / "b.zarr")
    merged = catalogs.merge([a, b], tmp_path / "m.zarr")
    assert merged.sizes["star"] == 80
    assert list(merged.star_id.values) == [f"A{i:05d}" for i in range(50)] + [f"B{i:05d}" for i in range(30)]
    np.testing.assert_array_equal(merged.source.values, [0] * 50 + [1] * 30)
    np.testing.assert_array_equal(merged.teff_quantiles.values[50:], make_catalog(30, seed=2).teff_quantiles.values)
    sources = json.loads(merged.attrs["sources"])
    assert [s["model_id"] for s in sources] == ["model-1", "model-2"]
    assert merged.teff.attrs["units"] == "K"
    assert float(merged.sel(star_id="B00003").teff.values) == pytest.approx(make_catalog(30, seed=2).teff.values[3], nan_ok=True)


def test_merge_duplicates_refused_or_first_kept(tmp_path):
    a = write_catalog(make_catalog(20, seed=1), tmp_path / "a.zarr")
    b = write_catalog(make_catalog(30, seed=2), tmp_path / "b.zarr")  # same ids S00000..S00019 overlap
    with pytest.raises(GridError, match="more than one input"):
        catalogs.merge([a, b], tmp_path / "m.zarr")
    assert not (tmp_path / "m.zarr").exists()  # checked before writing
    merged = catalogs.merge([a, b], on_duplicate="first")
    assert merged.sizes["star"] == 30 and list(merged.source.values[:20]) == [0] * 20 and list(merged.source.values[20:]) == [1] * 10


def test_merge_refuses_different_labels(tmp_path):
    a = make_catalog(10, seed=1, prefix="A")
    b = make_catalog(10, seed=2, prefix="B").drop_vars(["feh", "feh_quantiles"])
    with pytest.raises(GridError, match="estimates labels"):
        catalogs.merge([a, b])


def test_fit_bias_recovers_a_linear_bias():
    rng = np.random.default_rng(0)
    teff = rng.uniform(4000, 7000, 500)
    truth = rng.normal(0, 1, 500)
    biased = truth + (2e-4 * teff - 1.1) + rng.normal(0, 1e-3, 500)
    fit = catalogs.fit_bias(biased, truth, teff)
    assert fit["a"] == pytest.approx(2e-4, rel=1e-2) and fit["b"] == pytest.approx(-1.1, abs=0.01)
    assert fit["rms_after"] < 0.01 < fit["rms_before"]


def test_calibration_stored_by_name_and_applied_as_new_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDKIT_CALIBRATIONS", str(tmp_path / "cals"))
    cal = catalogs.Calibration("test-b1", {"logg": {"a": 1e-4, "b": -0.5}, "feh": {"a": -2e-5, "b": 0.1}}, description="unit test")
    path = catalogs.save_calibration(cal)
    assert path == tmp_path / "cals" / "test-b1.json"
    with pytest.raises(ConfigError, match="exists"):
        catalogs.save_calibration(cal)
    cat = catalogs.open(write_catalog(make_catalog(), tmp_path / "c.zarr"))
    out = catalogs.calibrate(cat, "test-b1")
    raw = make_catalog()
    expected = raw.logg.values - (1e-4 * raw.teff.values + -0.5)
    np.testing.assert_allclose(out.logg_cal.values, expected, rtol=1e-5)
    np.testing.assert_allclose(out.feh_cal_quantiles.values, raw.feh_quantiles.values - (-2e-5 * raw.teff.values + 0.1)[:, None], rtol=1e-5, atol=1e-5)
    assert out.logg_cal.attrs["calibration"] == "test-b1" and out.logg_cal.attrs["calibration_a"] == 1e-4 and out.logg_cal.attrs["units"] == "dex"
    assert json.loads(out.attrs["calibrations"])[0]["coefficients"]["feh"] == {"a": -2e-5, "b": 0.1}
    assert "logg_cal_p16" in catalogs.columns(out)
    assert catalogs.query_mask(out, "logg_cal > 3").sum() == np.sum(expected > 3)
    with pytest.raises(ConfigError, match="no calibration 'nope'"):
        catalogs.calibrate(cat, "nope")
    with pytest.raises(GridError, match="lacks: mg_fe"):
        catalogs.calibrate(cat, catalogs.Calibration("x", {"mg_fe": {"a": 0, "b": 0}}))


def test_incomplete_catalog_refused(tmp_path):
    from gridkit import store

    ds = make_catalog(10)
    st, _ = store.create(tmp_path / "c.zarr", ds, dim="star", region_size=5, fingerprint="x")
    st.mark("done", 0)
    with pytest.raises(StoreError, match="incomplete"):
        catalogs.open(tmp_path / "c.zarr")
    assert catalogs.open(tmp_path / "c.zarr", allow_incomplete=True).sizes["star"] == 10
