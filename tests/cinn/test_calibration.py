"""Interval calibration (cinn.calibration): fitted on the validation split, the 68 % intervals hold the truth 68 % of
the time there by construction, and closer to 68 % than before on the untouched test split; the quantile remap makes
the other levels and the ranks right too (tested on known miscalibrated Gaussians); stored with the model,
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


def test_calibration_maps_each_posterior_monotonically_and_leaves_map_and_f_reject(calibrated):
    model_dir, cube, cal = calibrated
    post = cinn.load(model_dir)
    import xarray as xr
    from catalogs.schema import QUANTILES

    assert cal.pit is not None and cal.pit.shape == (cal.snr.size, len(cal.labels), calibration.PIT_LEVELS.size)
    sub = xr.open_zarr(cube, consolidated=False).isel(model=slice(0, 5), snr=0)
    snr = np.full(5, float(sub.snr))
    a = post.summarize(sub.flux.values, snr, n=128, calibrated=True, keep=128)
    b = post.summarize(sub.flux.values, snr, n=128, calibrated=False, keep=128)
    np.testing.assert_array_equal(a.f_reject.values, b.f_reject.values)
    np.testing.assert_array_equal(a.samples_in_bounds.values, b.samples_in_bounds.values)
    raw, mapped = b.samples.values, a.samples.values
    for j, lab in enumerate(post.label_names):
        np.testing.assert_array_equal(a[lab].values, b[lab].values)  # the MAP stays
        for i in range(5):  # a monotone map per spectrum and label: no two draws swap ranks (correlations stay)
            order = np.argsort(raw[i, :, j], kind="stable")
            assert np.all(np.diff(mapped[i, order, j]) >= -1e-9 * np.abs(mapped[i, :, j]).max())
            assert not np.allclose(mapped[i, :, j], raw[i, :, j])
            inside = a.samples_in_bounds.values[i]
            np.testing.assert_allclose(a[f"{lab}_quantiles"].values[i], np.quantile(mapped[i, inside, j], QUANTILES), rtol=1e-12)
    # without the remap (a calibration file from before it) the map is the scale around the in-bounds median
    scale_only = calibration.Calibration(cal.labels, cal.snr, cal.scale, cal.model_id, cal.n_spectra)
    ins = b.samples_in_bounds.values
    med = np.stack([np.median(raw[i, ins[i]], axis=0) for i in range(5)])
    np.testing.assert_allclose(scale_only.apply_samples(raw, snr, ins), med[:, None] + cal.factors(snr)[:, None] * (raw - med[:, None]),
                               rtol=1e-9, atol=1e-9)


def test_the_quantile_remap_makes_every_level_and_the_ranks_right_where_the_scale_alone_cannot():
    """Posteriors N(0, 1) per spectrum for truths offset from their centre by 0.4 + U(-2, 2) (the posterior is too
    narrow, biased and the wrong shape: a box, not a Gaussian): fitted on 12000 spectra, the calibrated posteriors of 12000 others hold the
    truth at 50/68/90/95 % within 0.025 (the two sets' sampling error is ~0.008) and their PIT is uniform; the scale
    alone fixes 68 % only."""
    from scipy import stats

    from catalogs.schema import QUANTILES

    def draws_and_truth(seed, k=12000, n=128):
        rng = np.random.default_rng(seed)
        centre = rng.uniform(-5, 5, size=(k, 1))
        draws = centre[:, :, None] + rng.standard_normal((k, n, 1))
        truth = centre + 0.4 + rng.uniform(-2, 2, size=(k, 1))
        return draws, np.ones((k, n), bool), truth

    draws, inside, truth = draws_and_truth(0)
    scale, pit = calibration.fit_draws(draws, inside, truth)
    cal = calibration.Calibration(("x",), np.array([50.0]), scale[None], "m", 12000, pit=pit[None])
    scale_only = calibration.Calibration(("x",), np.array([50.0]), scale[None], "m", 12000)
    test, inside_t, truth_t = draws_and_truth(1)
    snr = np.full(test.shape[0], 50.0)

    def coverage(d, level):
        lo, hi = np.quantile(d[:, :, 0], [0.5 - level / 2, 0.5 + level / 2], axis=1)
        return np.mean((lo <= truth_t[:, 0]) & (truth_t[:, 0] <= hi))

    mapped, scaled = cal.apply_samples(test, snr, inside_t), scale_only.apply_samples(test, snr, inside_t)
    for level in (0.5, 0.68, 0.9, 0.95):
        assert abs(coverage(mapped, level) - level) < 0.025, (level, coverage(mapped, level))
    assert abs(coverage(scaled, 0.68) - 0.68) < 0.025 and abs(coverage(test, 0.68) - 0.68) > 0.1  # the scale fixes 68 % ...
    assert abs(coverage(scaled, 0.5) - 0.5) > 0.05 or abs(coverage(scaled, 0.95) - 0.95) > 0.03  # ... but not the shape
    pit_mapped = (mapped[:, :, 0] < truth_t).mean(axis=1)
    pit_scaled = (scaled[:, :, 0] < truth_t).mean(axis=1)
    # the PIT's largest distance from uniform (KS statistic): ~0.012-0.016 calibrated (128 draws: steps of 1/128), 0.12 scaled
    assert stats.kstest(pit_mapped, "uniform").statistic < 0.025
    assert stats.kstest(pit_scaled, "uniform").statistic > 0.08
    assert QUANTILES == (0.025, 0.16, 0.5, 0.84, 0.975)


def test_a_calibration_file_without_the_remap_still_loads(calibrated, tmp_path):
    model_dir, _, cal = calibrated
    doc = cal.to_json()
    del doc["pit"], doc["pit_levels"]
    old = calibration.Calibration.from_json(doc)
    assert old.pit is None
    back = calibration.Calibration.from_json(json.loads(json.dumps(cal.to_json())))
    np.testing.assert_array_equal(back.pit, cal.pit)  # the remap reads back bit for bit (applied identically after load)
    np.testing.assert_array_equal(old.levels([60.0], [0.16, 0.84]), [[[0.16, 0.84]] * len(cal.labels)])
    with pytest.raises(Exception, match="pit of shape"):
        calibration.Calibration.from_json({**cal.to_json(), "pit": cal.pit[:, :, ::-1].tolist()})  # decreasing: refused


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


def test_evaluate_measures_the_intervals_that_summarize_writes(calibrated):
    """evaluate's 68 % interval of each spectrum is summarize's (calibrated) 0.16 / 0.84 quantiles, bit for bit: both count
    the draws inside the training bounds only (the toy network's draws leave them often enough to matter)."""
    import xarray as xr

    from cinn.evaluate import report

    model_dir, cube, _ = calibrated
    post = cinn.load(model_dir)
    ds = xr.open_zarr(cube, consolidated=False)
    spectra = report._select_spectra(post, ds, cube, split="test", snr=[float(ds.snr.values[1])], max_spectra=30)
    snr = spectra.snrs[0]
    results, raw = report._sample_results(post, ds, spectra, 128, seed=5, calibration=post.calibration)
    summ = post.summarize(spectra.flux(ds, snr), np.full(spectra.n, snr), n=128, seed=5, keys=spectra.keys, keep=128)
    quants = np.stack([summ[f"{lab}_quantiles"].values for lab in post.label_names], axis=1)  # (n, label, quantile)
    np.testing.assert_array_equal(results[0].q16, quants[:, :, 1])
    np.testing.assert_array_equal(results[0].q84, quants[:, :, 3])
    assert 0.02 < 1 - summ.samples_in_bounds.values.mean() < 0.9  # some draws are out of bounds: the test can fail
    every = report.result_from_samples(snr, spectra.model_ids, spectra.truth, results[0].map, summ.samples.values)
    assert not np.array_equal(every.q16, results[0].q16)  # counting every draw gives other intervals


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


def test_intervals_fitted_on_few_spectra_hold_their_level_in_expectation():
    """Fitted on k = 20 spectra (the fewest a calibration accepts), the calibrated 68 % and 90 % intervals hold the truth
    of new spectra at their level on average over 300 fitting sets: the quantiles at plotting positions i / (k + 1).
    numpy's default positions would give 0.68 * 19 / 21 = 0.615 and 0.90 * 19 / 21 = 0.814 (too narrow); the
    averages' sampling error here is ~0.006."""
    rng = np.random.default_rng(3)

    def draws_and_truth(k, n=256):
        centre = rng.uniform(-5, 5, size=(k, 1))
        draws = centre[:, :, None] + rng.standard_normal((k, n, 1))
        return draws, np.ones((k, n), bool), centre + 1.5 * rng.standard_normal((k, 1))  # posterior too narrow by 1.5

    cov = {0.68: [], 0.9: []}
    for _ in range(300):
        scale, pit = calibration.fit_draws(*draws_and_truth(20))
        cal = calibration.Calibration(("x",), np.array([50.0]), scale[None], "m", 20, pit=pit[None])
        test, inside, truth = draws_and_truth(100)
        mapped = cal.apply_samples(test, np.full(100, 50.0), inside)[:, :, 0]
        for level in cov:
            lo, hi = np.quantile(mapped, [0.5 - level / 2, 0.5 + level / 2], axis=1)
            cov[level].append(np.mean((lo <= truth[:, 0]) & (truth[:, 0] <= hi)))
    for level, values in cov.items():
        assert abs(np.mean(values) - level) < 0.025, (level, np.mean(values))
