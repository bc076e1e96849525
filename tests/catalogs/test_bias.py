"""Eq. B.1 bias calibration: a fit of X_catalog - X_reference = a Teff + b recovers an injected trend."""
import json

import numpy as np
import pytest
import xarray as xr

from catalogs import bias
from gridkit.errors import ConfigError


def test_fit_recovers_a_and_b_without_noise():
    teff = np.linspace(4500, 6500, 20)
    res = bias.fit_linear_offset(teff, 1e-4 * teff - 0.5)
    assert res["a"] == pytest.approx(1e-4, rel=1e-9)
    assert res["b"] == pytest.approx(-0.5, abs=1e-9)
    assert res["rms_after"] == pytest.approx(0.0, abs=1e-9)
    assert res["n"] == 20


def test_fit_recovers_a_and_b_within_their_errors_with_noise():
    rng = np.random.default_rng(3)
    teff = rng.uniform(4000, 7000, 400)
    delta = 2e-4 * teff - 1.1 + rng.normal(0, 0.05, teff.size)
    res = bias.fit_linear_offset(teff, delta)
    assert abs(res["a"] - 2e-4) < 4 * res["a_err"]
    assert abs(res["b"] + 1.1) < 4 * res["b_err"]
    # the OLS error of the slope: sigma / sqrt(sum (teff - mean)^2)
    assert res["a_err"] == pytest.approx(0.05 / np.sqrt(np.sum((teff - teff.mean()) ** 2)), rel=0.15)
    assert res["rms_after"] == pytest.approx(0.05, rel=0.15)


def test_fit_refuses_too_few_stars_and_constant_teff():
    with pytest.raises(ConfigError, match="at least 3"):
        bias.fit_linear_offset([5000.0, 6000.0], [0.1, 0.2])
    with pytest.raises(ConfigError, match="Teff = 5000"):
        bias.fit_linear_offset([5000.0] * 4, [0.1, 0.2, 0.3, 0.4])


def _gbs_like(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "hip": np.array([f"HIP{1000 + i}" for i in range(n)]),
        "teff": rng.uniform(4200, 6600, n),
        "logg": rng.uniform(1.5, 4.6, n),
        "fe_h": rng.uniform(-2, 0.4, n),
    }


def test_calibration_from_a_catalog_recovers_injected_bias_and_round_trips(tmp_path):
    ref = _gbs_like()
    truth = {"teff": (3e-2, -150.0), "logg": (1e-4, -0.3), "feh": (-5e-5, 0.2)}
    rng = np.random.default_rng(1)
    teff_cat = ref["teff"] + truth["teff"][0] * ref["teff"] + truth["teff"][1]  # biased catalog Teff
    cat_teff_for_fit = teff_cat
    est = {"teff": teff_cat}
    for lab, col in (("logg", "logg"), ("feh", "fe_h")):
        a, b = truth[lab]
        est[lab] = ref[col] + a * cat_teff_for_fit + b + rng.normal(0, 1e-3, ref[col].size)
    # the catalog: a few extra stars without a counterpart, shuffled, ids spelled with a space
    order = rng.permutation(ref["teff"].size)
    ids = np.array([f"HIP {1000 + i}" for i in order] + ["HIP 999999", "Sun"])
    cat = xr.Dataset(
        {lab: ("star", np.concatenate([est[lab][order], [5000.0 if lab == "teff" else 0.0] * 2])) for lab in est}
        | {"star_id": ("star", ids)}
    )
    cal = bias.fit_bias_calibration(cat, ref, name="gbs-test", labels=["teff", "logg", "feh"], reference_name="toy GBS")
    assert cal["n"] == ref["teff"].size and cal["matched_on"].endswith("hip")
    # teff: delta = a * teff_ref + b, expressed against catalog teff: exact linear relation too
    a_t, b_t = truth["teff"]
    coef = cal["coefficients"]
    assert coef["teff"]["a"] == pytest.approx(a_t / (1 + a_t), rel=1e-6)
    for lab in ("logg", "feh"):
        assert coef[lab]["a"] == pytest.approx(truth[lab][0], abs=3e-6)
        assert coef[lab]["b"] == pytest.approx(truth[lab][1], abs=2e-2)
        assert cal["fit"][lab]["rms_after"] < 2e-3 < cal["fit"][lab]["rms_before"]
    path = bias.write_calibration(cal, tmp_path)
    assert path == tmp_path / "gbs-test.json"
    stored = json.loads(path.read_text())
    assert stored["name"] == "gbs-test" and set(stored["coefficients"]) == {"teff", "logg", "feh"}
    assert stored["n"] == cal["n"] and stored["reference"] == "toy GBS" and stored["teff_label"] == "teff"
    # the catalog package reads it by name and agrees on the coefficients
    from catalogs.bias import fit_bias
    from catalogs.calibrate import load_calibration

    loaded = load_calibration(path)
    assert loaded.coefficients["logg"]["a"] == pytest.approx(coef["logg"]["a"])
    with pytest.raises(ConfigError, match="exists"):
        bias.write_calibration(cal, tmp_path)
    # the unweighted fit equals the catalog package's own least squares
    n = ref["teff"].size
    theirs = fit_bias(est["logg"], ref["logg"], est["teff"])
    assert theirs["a"] == pytest.approx(coef["logg"]["a"], rel=1e-6) and theirs["n"] == n
    # catalogs.calibrate.apply (what `gridkit catalog calibrate` runs) with the stored file removes the bias
    from catalogs.calibrate import apply

    q = np.array([0.16, 0.5, 0.84])
    catalog = xr.Dataset({lab: ("star", est[lab]) for lab in est} | {f"{lab}_quantiles": (("star", "quantile"), est[lab][:, None] + q - 0.5)
                                                                       for lab in est}, coords={"quantile": q})
    done = apply(catalog, path)
    assert np.abs(done["logg_cal"].values - ref["logg"]).max() < 5e-3
    assert np.abs(done["feh_cal_quantiles"].values[:, 1] - ref["fe_h"]).max() < 5e-3
    assert np.abs(done["teff_cal"].values - ref["teff"]).max() < 1e-6 * 7000


def test_calibration_needs_matches():
    ref = _gbs_like(5)
    cat = {"star_id": np.array(["a", "b", "c"]), "teff": np.ones(3), "logg": np.ones(3)}
    with pytest.raises(ConfigError, match="only 0 catalog star"):
        bias.fit_bias_calibration(cat, ref, name="x")
    with pytest.raises(ConfigError, match="name"):
        bias.fit_bias_calibration(cat, ref, name="bad name/")


@pytest.mark.shared
def test_calibration_against_the_gaia_benchmark_table(shared_data):
    """The real GBS v3 table: a catalog made of its own values plus a known trend, matched by HD number."""
    import warnings

    from astropy.table import Table

    path = shared_data / "gaia-benchmark-stars" / "gbs_v3_lite.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gbs = Table.read(path)
    ok = np.isfinite(np.ma.filled(gbs["fe_h"].astype(float), np.nan)) & (np.asarray(gbs["hd"]).astype(str) != "")
    gbs = gbs[ok]
    teff = np.asarray(gbs["teff"], float)
    cat = {
        "star_id": np.asarray(gbs["hd"]).astype(str),
        "teff": teff,
        "logg": np.asarray(gbs["logg"], float) + (5e-5 * teff - 0.2),
        "feh": np.asarray(gbs["fe_h"], float) + (-3e-5 * teff + 0.1),
    }
    cal = bias.fit_bias_calibration(cat, path, name="gbs_v3", labels=["logg", "feh"])
    assert cal["n"] >= 100 and cal["matched_on"].endswith("hd")
    assert cal["coefficients"]["logg"]["a"] == pytest.approx(5e-5, rel=1e-6)
    assert cal["coefficients"]["feh"]["b"] == pytest.approx(0.1, abs=1e-6)


def test_cli_fits_a_calibration_that_catalogs_apply(tmp_path):
    """`gridkit evaluate bias CATALOG REFERENCE --out cal.json` on files: the injected a*Teff+b comes back."""
    from astropy.table import Table

    from catalogs.calibrate import load_calibration
    from gridkit.cli import main

    ref = _gbs_like(80, seed=5)
    Table(ref).write(tmp_path / "ref.ecsv")
    rng = np.random.default_rng(2)
    teff = ref["teff"] + rng.normal(0, 30, 80)
    cat = xr.Dataset({"star_id": ("star", np.array([f"HIP {1000 + i}" for i in range(80)], dtype=object)), "teff": ("star", teff),
                      "logg": ("star", ref["logg"] + 8e-5 * teff - 0.45 + rng.normal(0, 0.01, 80)),
                      "feh": ("star", ref["fe_h"] - 2e-5 * teff + 0.05 + rng.normal(0, 0.01, 80))})
    cat.to_zarr(tmp_path / "cat.zarr", consolidated=False)
    assert main(["evaluate", "bias", str(tmp_path / "cat.zarr"), str(tmp_path / "ref.ecsv"), "--out", str(tmp_path / "gbs.json"),
                 "--labels", "logg,feh"]) == 0
    cal = load_calibration(tmp_path / "gbs.json")
    assert cal.name == "gbs" and set(cal.coefficients) == {"logg", "feh"}
    assert cal.coefficients["logg"]["a"] == pytest.approx(8e-5, abs=1e-5)
    assert cal.coefficients["logg"]["b"] == pytest.approx(-0.45, abs=0.06)
    assert cal.coefficients["feh"]["a"] == pytest.approx(-2e-5, abs=1e-5)
    assert cal.extra["fit"]["logg"]["rms_after"] < 0.02 < cal.extra["fit"]["logg"]["rms_before"]
    # a second run does not overwrite silently; a wrong number of arguments is a clear error
    assert main(["evaluate", "bias", str(tmp_path / "cat.zarr"), str(tmp_path / "ref.ecsv"), "--out", str(tmp_path / "gbs.json")]) == 2
    assert main(["evaluate", "bias", str(tmp_path / "cat.zarr"), "--out", str(tmp_path / "x.json")]) == 2
