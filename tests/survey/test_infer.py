"""`infer` with a real (tiny) cINN on a mock survey of an analytic grid: every star exactly once with finite,
ordered summaries equal to the model's own; queries equal numpy; the CLI (mock-survey, infer, catalog
query/info/merge/calibrate); a SIGKILLed CLI run resumes without recomputing finished chunks and equals an
uninterrupted run; the model is loaded once per worker on a 2-worker cluster."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import catalogs
from catalogs.schema import QUANTILES, as_str
from gridkit.cli import main
from gridkit.errors import StoreError

from survey_fakes import SAMPLES

ROOT = Path(__file__).resolve().parents[2]
LABELS = ("teff", "logg", "feh")


def _survey(path) -> xr.Dataset:
    return xr.open_zarr(path, consolidated=False).load()


def _done(path) -> dict[str, int]:
    folder = Path(path) / "_gridkit" / "done"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")} if folder.exists() else {}


def _assert_same_catalog(a, b):
    va, vb = xr.open_zarr(a, consolidated=False).load(), xr.open_zarr(b, consolidated=False).load()
    assert sorted(va.variables) == sorted(vb.variables)
    for k in va.variables:
        x, y = va[k].values, vb[k].values
        if x.dtype.kind in "fcb":
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            assert as_str(x).tolist() == as_str(y).tolist(), k


# -- the catalog -------------------------------------------------------------------------------------
def test_every_star_once_with_finite_ordered_summaries_equal_to_the_model(analytic_model, real_catalog):
    import cinn

    model_dir, _, survey_path = analytic_model
    src = _survey(survey_path)
    cat = catalogs.open(real_catalog).load()
    ids = as_str(cat.star_id.values)
    assert ids.tolist() == as_str(src.star_id.values).tolist() and len(set(ids)) == src.sizes["star"] == 160
    post = cinn.load(model_dir)
    assert list(cat["quantile"].values) == list(QUANTILES)
    for name in post.label_names:
        q = cat[f"{name}_quantiles"].values
        assert np.isfinite(cat[name].values).all() and np.isfinite(q).all(), name
        assert (np.diff(q, axis=1) >= 0).all(), f"{name} quantiles not ordered"
        assert ((q[:, 1] <= q[:, 2]) & (q[:, 2] <= q[:, 3]) & (q[:, 0] <= q[:, 1]) & (q[:, 3] <= q[:, 4])).all()
        lo, hi = post.bounds[list(post.label_names).index(name)]
        assert ((cat[name].values >= lo - 1e-3 * abs(lo)) & (cat[name].values <= hi + 1e-3 * abs(hi))).all(), f"{name} MAP outside the prior"
    assert ((cat.f_reject.values >= 0) & (cat.f_reject.values < 1)).all()
    np.testing.assert_array_equal(cat.flag_extrapolated.values, cat.f_reject.values > 0.5)
    # the catalog holds the model's own summaries, star by star (keys = survey rows), whatever the chunking
    rows = np.r_[0:5, 77:83, 155:160]
    direct = post.summarize(src.flux.values[rows], src.snr.values[rows], n=SAMPLES, seed=0, keys=rows)
    for name in LABELS:
        np.testing.assert_allclose(cat[name].values[rows], direct[name].values, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(cat[f"{name}_quantiles"].values[rows], direct[f"{name}_quantiles"].values, rtol=1e-5, err_msg=name)
    # the network learned something: the labels follow the truth kept by the mock survey
    assert np.corrcoef(cat.teff.values, cat.true_teff.values)[0, 1] > 0.2


def test_columns_attrs_provenance_and_star_id_selection(analytic_model, real_catalog):
    model_dir, _, survey_path = analytic_model
    cat = catalogs.open(real_catalog)
    src = _survey(survey_path)
    for name, var in cat.variables.items():
        assert var.attrs.get("units") is not None and var.attrs.get("long_name"), f"{name} lacks CF attrs"
    assert cat.teff.attrs["units"] == "K" and cat.logg.attrs["units"] == "dex"
    np.testing.assert_array_equal(cat.true_teff.values, src.true_teff.values)  # passthrough of the mock survey's truth
    np.testing.assert_array_equal(cat.snr.values, src.snr.values)
    meta = json.loads((Path(model_dir) / "model.json").read_text())
    assert cat.attrs["model_id"] == meta["model_id"]
    assert cat.attrs["model_hash"] == "sha256:" + meta["files"]["model.safetensors"]
    assert cat.attrs["command"] == "pytest real_catalog" and cat.attrs["samples"] == SAMPLES
    for key in ("gridkit_version", "date_created", "model_dir", "survey"):
        assert cat.attrs[key], key
    some = [str(s) for s in src.star_id.values[[42, 7]]]
    picked = cat.sel(star_id=some)
    assert as_str(picked.star_id.values).tolist() == some
    np.testing.assert_array_equal(picked.true_teff.values, src.true_teff.values[[42, 7]])


@pytest.mark.parametrize("case", ["issue", "not_or_width", "against_truth"])
def test_query_returns_exactly_the_stars_satisfying_it(real_catalog, case):
    cat = catalogs.open(real_catalog).load()
    q = cat.teff_quantiles.values
    c = {k: cat[k].values.astype(float) for k in ("teff", "feh", "logg", "f_reject", "true_teff")}
    t, f, g, w, r = (float(np.quantile(c["teff"], 0.3)), float(np.quantile(c["feh"], 0.6)), float(np.quantile(c["logg"], 0.5)),
                     float(np.quantile(q[:, 3] - q[:, 1], 0.3)), float(np.quantile(c["f_reject"], 0.8)))  # thresholds inside the data
    expr, want = {
        "issue": (f"teff > {t!r} and feh < {f!r} and f_reject < {r!r}", (c["teff"] > t) & (c["feh"] < f) & (c["f_reject"] < r)),
        "not_or_width": (f"not (logg >= {g!r}) or teff_p84 - teff_p16 < {w!r}", ~(c["logg"] >= g) | (q[:, 3] - q[:, 1] < w)),
        "against_truth": ("teff_p50 > true_teff", q[:, 2] > c["true_teff"]),
    }[case]
    assert 0 < want.sum() < want.size  # the query separates stars
    got = catalogs.query(catalogs.open(real_catalog), expr)
    assert as_str(got.star_id.values).tolist() == as_str(cat.star_id.values[want]).tolist()


# -- the CLI -------------------------------------------------------------------------------------
def test_cli_mock_survey_matches_the_api(analytic_model, tmp_path, capsys):
    model_dir, cube, survey_path = analytic_model
    out = tmp_path / "s.zarr"
    assert main(["mock-survey", str(cube), "--snr", "250", "--out", str(out), "--split", "test", "--model", str(model_dir), "--chunk", "40"]) == 0
    a, b = _survey(out), _survey(survey_path)
    assert as_str(a.star_id.values).tolist() == as_str(b.star_id.values).tolist()
    np.testing.assert_array_equal(a.flux.values, b.flux.values)
    np.testing.assert_array_equal(a.true_feh.values, b.true_feh.values)
    assert main(["mock-survey", str(cube), "--snr", "123", "--out", str(tmp_path / "bad.zarr")]) == 2
    assert "snr=123 is not an S/N of cube" in capsys.readouterr().err and not (tmp_path / "bad.zarr").exists()


def test_cli_infer_in_process_equals_the_api_and_reports_progress(analytic_model, real_catalog, tmp_path, capsys):
    model_dir, _, survey_path = analytic_model
    out = tmp_path / "cat.zarr"
    rc = main(["infer", str(model_dir), str(survey_path), "--out", str(out), "--samples", str(SAMPLES), "--chunk", "40", "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "160 stars in 4 chunks of 40" in err and "infer" in err and "4/4" in err  # the progress bar
    _assert_same_catalog(out, real_catalog)  # other chunks, same stars: the same values
    assert catalogs.open(out).attrs["command"].startswith("gridkit ")
    # rerunning the finished command recomputes nothing; a different model's catalog is not touched
    before = _done(out)
    assert main(["infer", str(model_dir), str(survey_path), "--out", str(out), "--samples", str(SAMPLES), "--chunk", "40", "--workers", "0"]) == 0
    assert _done(out) == before and "4 chunk(s) already done" in capsys.readouterr().err


@pytest.mark.slow  # ~25 s: two spawned workers import torch and load the model (the fake-model cluster tests stay in `make test`)
def test_cli_infer_on_an_existing_scheduler_prints_the_dashboard_and_loads_once_per_worker(analytic_model, real_catalog, two_workers, tmp_path, capsys):
    model_dir, _, survey_path = analytic_model
    client = two_workers
    out = tmp_path / "cat.zarr"
    rc = main(["infer", str(model_dir), str(survey_path), "--out", str(out), "--samples", str(SAMPLES), "--chunk", "16",
               "--scheduler", client.scheduler.address])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Dask dashboard: http" in err
    _assert_same_catalog(out, real_catalog)
    key = str(Path(model_dir).resolve())
    loads = client.run(lambda: __import__("cinn.survey").survey.LOADS.get(key, 0))
    assert sum(loads.values()) >= 1 and all(v <= 1 for v in loads.values()), loads  # once per worker, 10 tasks


def test_cli_catalog_query_export_info(real_catalog, tmp_path, capsys, monkeypatch):
    cat = catalogs.open(real_catalog).load()
    t, r = float(np.median(cat.teff.values)), float(np.median(cat.f_reject.values))
    expr = f"teff > {t!r} and (not flag_extrapolated or f_reject < {r!r})"
    want = (cat.teff.values > t) & (~cat.flag_extrapolated.values | (cat.f_reject.values < r))
    assert 0 < want.sum() < want.size
    for suffix in (".fits", ".csv"):  # every format's round trip: tests/catalogs/test_export.py
        path = tmp_path / f"sel{suffix}"
        assert main(["catalog", "query", str(real_catalog), expr, "--columns", "teff,teff_p16,teff_p84,feh", "--out", str(path)]) == 0
        table = catalogs.read_table(path)
        assert table.colnames == ["star_id", "teff", "teff_p16", "teff_p84", "feh"], suffix
        assert list(map(str, table["star_id"])) == as_str(cat.star_id.values[want]).tolist(), suffix
        np.testing.assert_allclose(np.asarray(table["teff_p84"], dtype=float), cat.teff_quantiles.values[want, 3], rtol=1e-6)
        assert str(table["teff"].unit) == "K" and str(table["teff_p16"].unit) == "K", suffix
    assert f"{int(want.sum())} star(s) of 160 written" in capsys.readouterr().out
    assert main(["catalog", "query", str(real_catalog), "teff.__class__ > 1"]) == 2
    assert "attribute access is not allowed" in capsys.readouterr().err
    assert main(["catalog", "query", str(real_catalog), "f_reject <= 1", "--columns", "teff_p2.5,teff_p97_5"]) == 0  # aliases
    assert "teff_p2.5" in capsys.readouterr().out
    assert main(["catalog", "info", str(real_catalog)]) == 0
    info = capsys.readouterr().out
    assert "160 stars" in info and "teff_p02_5" in info and cat.attrs["model_id"] in info
    assert f"flagged flag_extrapolated: {int(cat.flag_extrapolated.sum())} " in info  # small: counted by default
    import gridkit.commands.catalog as catalog_cli

    monkeypatch.setattr(catalog_cli, "COUNT_MAX", 100)  # above it, info reads nothing per star unless --counts
    assert main(["catalog", "info", str(real_catalog)]) == 0
    info = capsys.readouterr().out
    assert "160 stars" in info and "flagged" not in info and "pass --counts" in info
    assert main(["catalog", "info", str(real_catalog), "--counts"]) == 0
    assert "flagged flag_extrapolated" in capsys.readouterr().out


def test_cli_catalog_merge_and_calibrate(analytic_model, real_catalog, tmp_path, capsys):
    from cinn.survey import infer, mock_survey

    model_dir, cube, _ = analytic_model
    val = mock_survey(cube, tmp_path / "val.zarr", snr=250, split="validation", model_dir=model_dir)
    other = infer(model_dir, val, tmp_path / "val_cat.zarr", samples=64, progress=False)
    merged_path = tmp_path / "merged.zarr"
    assert main(["catalog", "merge", str(merged_path), str(real_catalog), str(other)]) == 0
    merged, a, b = catalogs.open(merged_path).load(), catalogs.open(real_catalog).load(), catalogs.open(other).load()
    assert merged.sizes["star"] == a.sizes["star"] + b.sizes["star"]
    assert as_str(merged.star_id.values).tolist() == as_str(a.star_id.values).tolist() + as_str(b.star_id.values).tolist()
    np.testing.assert_array_equal(merged.teff.values, np.r_[a.teff.values, b.teff.values])
    assert main(["catalog", "merge", str(tmp_path / "dup.zarr"), str(real_catalog), str(real_catalog)]) == 2
    assert "more than one input" in capsys.readouterr().err and not (tmp_path / "dup.zarr").exists()

    cal = tmp_path / "b1.json"
    cal.write_text(json.dumps({"name": "test-b1", "coefficients": {"logg": {"a": 1e-4, "b": -0.5}, "feh": {"a": -2e-5, "b": 0.1}}}))
    out = tmp_path / "calibrated.zarr"
    assert main(["catalog", "calibrate", str(real_catalog), "--calibration", str(cal), "--out", str(out)]) == 0
    c = catalogs.open(out).load()
    np.testing.assert_allclose(c.logg_cal.values, a.logg.values - (1e-4 * a.teff.values - 0.5), rtol=1e-5)
    np.testing.assert_allclose(c.feh_cal_quantiles.values, a.feh_quantiles.values - (-2e-5 * a.teff.values + 0.1)[:, None], rtol=1e-5, atol=1e-6)
    assert c.logg_cal.attrs["calibration_a"] == 1e-4 and c.logg_cal.attrs["calibration_b"] == -0.5
    assert json.loads(c.attrs["calibrations"])[0]["coefficients"]["feh"] == {"a": -2e-5, "b": 0.1}
    assert "logg_cal" not in catalogs.open(real_catalog)  # the input catalog is untouched
    assert main(["catalog", "calibrate", str(real_catalog), "--calibration", "no-such-calibration", "--in-place"]) == 2
    assert "no calibration 'no-such-calibration'" in capsys.readouterr().err


# -- SIGKILL of the whole run and resume ---------------------------------------------------------------
def test_sigkill_of_the_cli_mid_run_then_rerun_resumes_and_equals_uninterrupted(analytic_model, real_catalog, tmp_path):
    model_dir, _, survey_path = analytic_model
    out = tmp_path / "cat.zarr"
    # chunks of 4 stars (~0.05 s each): 40 chunks, killed after 3
    args = ["infer", str(model_dir), str(survey_path), "--out", str(out), "--samples", str(SAMPLES), "--chunk", "4", "--workers", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from gridkit.cli import main; sys.exit(main())", *args],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(tmp_path))
    deadline = time.time() + 120
    while len(_done(out)) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, mid-way
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    before = _done(out)
    assert 3 <= len(before) < 40, f"{len(before)} chunks done when killed"
    with pytest.raises(StoreError, match="incomplete"):
        catalogs.open(out)

    from cinn import survey

    calls = []
    original = survey.InferChunk.__call__
    survey.InferChunk.__call__ = lambda self, i, sl: (calls.append(i), original(self, i, sl))[1]
    try:
        assert main(args) == 0  # the same command again
    finally:
        survey.InferChunk.__call__ = original
    after = _done(out)
    assert len(after) == 40 and {k: after[k] for k in before} == before  # finished chunks were not rewritten
    assert sorted(calls) == sorted(set(range(40)) - {int(Path(k).stem) for k in before})  # ... nor recomputed
    _assert_same_catalog(out, real_catalog)  # an uninterrupted run (chunks of 16; per-star draws make chunking irrelevant)


def test_missing_pixels_are_imputed_by_default_or_flagged_on_request_and_counted(analytic_model, tmp_path):
    """missing='impute' (the default, the one rule of masked pixels): NaN pixels take the training mean flux
    (standardized 0); the star is inferred, the count is in n_imputed, and the result equals summarize() of the
    explicitly filled spectrum. missing='flag' leaves such a star uninferred."""
    import cinn
    from cinn.survey import infer

    model_dir, _, survey_path = analytic_model
    src = _survey(survey_path).isel(star=slice(0, 6))
    flux = src.flux.values.copy()
    flux[2, 100:140] = np.nan
    src["flux"] = (("star", "wavelength"), flux, src.flux.attrs)
    src.to_zarr(tmp_path / "gap.zarr", consolidated=False, zarr_format=3)
    flagged = catalogs.open(infer(model_dir, tmp_path / "gap.zarr", tmp_path / "flag.zarr", samples=64, chunk=3, progress=False,
                                   missing="flag"))
    assert flagged.flag_missing_flux.values.tolist() == [False, False, True, False, False, False]
    assert np.isnan(flagged.teff.values[2]) and flagged.n_imputed.values.tolist() == [0] * 6
    cat = catalogs.open(infer(model_dir, tmp_path / "gap.zarr", tmp_path / "imp.zarr", samples=64, chunk=3, progress=False))
    assert not cat.flag_missing_flux.values.any()
    assert cat.n_imputed.values.tolist() == [0, 0, 40, 0, 0, 0]
    post = cinn.load(model_dir)
    filled = np.where(np.isnan(flux), post.scaler.flux_mean[None, :], flux).astype(np.float32)
    direct = post.summarize(filled, src.snr.values, n=64, seed=0, keys=np.arange(6))
    np.testing.assert_allclose(cat.teff.values, direct.teff.values.astype("f4"), rtol=1e-6)
    np.testing.assert_array_equal(np.delete(cat.teff.values, 2), np.delete(flagged.teff.values, 2))
    with pytest.raises(Exception, match="missing"):
        infer(model_dir, tmp_path / "gap.zarr", tmp_path / "bad.zarr", samples=64, missing="zero")
    assert not (tmp_path / "bad.zarr").exists()


def test_survey_snr_outside_the_training_range_warns_once_and_still_infers(analytic_model, tmp_path):
    """The model records the S/N it was trained on (50-250 here); a survey beyond it gets one warning naming both
    ranges (not one per chunk) and is inferred all the same."""
    import warnings

    import cinn
    from cinn.survey import infer
    from gridkit.errors import ExtrapolationWarning

    model_dir, _, survey_path = analytic_model
    assert cinn.load(model_dir).snr_range == (50.0, 250.0)
    src = _survey(survey_path).isel(star=slice(0, 8))
    src["snr"] = ("star", np.array([100.0] * 6 + [20.0, 1000.0]), src.snr.attrs)
    src.to_zarr(tmp_path / "snr.zarr", consolidated=False, zarr_format=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cat = catalogs.open(infer(model_dir, tmp_path / "snr.zarr", tmp_path / "cat.zarr", samples=32, chunk=2, progress=False))
    ours = [w for w in caught if issubclass(w.category, ExtrapolationWarning)]
    assert len(ours) == 1
    assert "2 of 8 spectra have S/N outside the model's training range 50-250" in str(ours[0].message)
    assert "(theirs: 20-1000)" in str(ours[0].message)
    assert np.isfinite(cat.teff.values).all()
