"""`gridkit evaluate` end to end on a tiny model, and the posterior predictive check on the analytic grid."""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from evaluate_helpers import SNR, truths

LABELS_SHOWN = ("teff", "logg", "feh")


@pytest.fixture(scope="module")
def report(tiny_model, analytic_cube, tmp_path_factory):
    from gridkit.cli import main

    out = tmp_path_factory.mktemp("report") / "report"
    argv = ["evaluate", str(tiny_model), str(analytic_cube), "--out", str(out), "--samples", "64", "--snr-figure", "300",
            "--ppc", "1", "--ppc-draws", "4", "--saliency-spectra", "8", "--no-progress"]
    assert main(argv) == 0
    return out


def _table(path):
    from astropy.table import Table

    return Table.read(path, format="ascii.ecsv")


def test_report_tables_follow_the_paper_layout_with_sane_values(report, tiny_model):
    import cinn

    n_test = cinn.read_split(tiny_model)["test"].size
    labels = list(cinn.load(tiny_model).label_names)
    res = _table(report / "residuals.ecsv")
    assert list(res["snr"]) == list(SNR) and set(res["n_star"]) == {n_test}
    for lab in labels:
        assert np.all(np.isfinite(res[f"{lab}_mean"])) and np.all(res[f"{lab}_sigma"] > 0)
    assert str(res["teff_mean"].unit) == "K"
    nr = _table(report / "nrmse.ecsv")
    vals = np.array([[nr[lab][i] for lab in labels] for i in range(len(nr))])
    assert np.all(vals >= 0) and np.all(np.isfinite(vals))
    # higher S/N: the network is not worse on Teff (a tiny net, so only the ends of the range are compared)
    assert nr["teff"][-1] <= nr["teff"][0] * 1.2
    wd = _table(report / "interval_width.ecsv")
    assert all(np.all(wd[lab] > 0) for lab in labels)
    cov = _table(report / "coverage.ecsv")
    assert len(cov) == len(SNR) * 4 and sorted(set(np.round(cov["level"], 2))) == [0.5, 0.68, 0.9, 0.95]
    c = np.array([[cov[lab][i] for lab in labels] for i in range(len(cov))])
    assert np.all((c >= 0) & (c <= 1))
    # coverage grows with the nominal level for every label and S/N (nested central intervals)
    for s in SNR:
        sub = cov[np.isclose(cov["snr"], s)]
        sub.sort("level")
        for lab in labels:
            assert np.all(np.diff(np.asarray(sub[lab])) >= 0)
    sbc = _table(report / "sbc.ecsv")
    assert all(np.all((sbc[lab] >= 0) & (sbc[lab] <= 1)) for lab in labels)
    feh = _table(report / "width_vs_feh.ecsv")
    assert {"snr", "feh_lo", "feh_hi"} <= set(feh.colnames) and np.all(feh["feh_lo"] < feh["feh_hi"])
    assert (report / "residuals.csv").read_text().startswith("snr,n_star,")


def test_report_nll_is_the_posterior_density_of_the_truths(report, tiny_model, analytic_cube):
    """nll.csv: -log p(truth | spectrum) / n_labels of the raw posterior, per S/N, equal to Posterior.log_prob on the
    same spectra; truths with vbroad at or below log_floor (no density) are counted, not scored."""
    import cinn

    post = cinn.load(tiny_model)
    ds = xr.open_zarr(analytic_cube, consolidated=False)
    sub = ds.sel(model=cinn.read_split(tiny_model)["test"])
    truth = truths(sub, post.label_names)
    lt = post.label_transform
    defined = np.all(~lt.log | (truth > lt.floor), axis=1)
    nll = _table(report / "nll.ecsv")
    assert list(nll["snr"]) == list(SNR) and set(nll["n_undefined"]) == {int((~defined).sum())}
    for i, snr in enumerate(SNR):
        lp = post.log_prob(truth[defined], sub.flux.sel(snr=snr).values[defined], np.full(int(defined.sum()), snr))
        assert nll["nll"][i] == pytest.approx(-lp.mean() / truth.shape[1], rel=1e-6)
    assert "Negative log-likelihood of the truth" in (report / "summary.md").read_text()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["nll"] == {f"{s:g}": pytest.approx(v) for s, v in zip(nll["snr"], nll["nll"])}


def test_report_f_reject_is_the_catalogs_rejection_split_by_label(report, tiny_model, analytic_cube):
    """f_reject.csv: per S/N, the mean/median/90th percentile of the f_reject that `Posterior.summarize` (the catalogs')
    gives the same spectra with the same draws, the fraction flag_extrapolated flags, and per label the fraction of
    draws below and above its training bounds, counted on the draws themselves."""
    import cinn

    post = cinn.load(tiny_model)
    ids = cinn.read_split(tiny_model)["test"]
    sub = xr.open_zarr(analytic_cube, consolidated=False).sel(model=ids)
    rej = _table(report / "f_reject.ecsv")
    assert list(rej["snr"]) == list(SNR) and set(rej["n_star"]) == {ids.size}
    lo, hi = post.bounds[:, 0], post.bounds[:, 1]
    for i, snr in enumerate(SNR):
        flux = sub.flux.sel(snr=snr).values
        summary = post.summarize(flux, np.full(ids.size, snr), n=64, seed=0, keys=ids)
        f = summary.f_reject.values
        assert rej["f_reject_mean"][i] == pytest.approx(f.mean(), abs=1e-12)
        assert rej["f_reject_median"][i] == pytest.approx(np.median(f), abs=1e-12)
        assert rej["f_reject_p90"][i] == pytest.approx(np.quantile(f, 0.9), abs=1e-12)
        assert rej["flagged"][i] == pytest.approx(summary.flag_extrapolated.values.mean(), abs=1e-12)
        draws = post.sample(flux, np.full(ids.size, snr), n=64, seed=0, keys=ids)
        for j, lab in enumerate(post.label_names):
            assert rej[f"{lab}_below"][i] == pytest.approx(np.mean(draws[..., j] < lo[j]), abs=1e-12)
            assert rej[f"{lab}_above"][i] == pytest.approx(np.mean(draws[..., j] > hi[j]), abs=1e-12)
    # the tiny network's draws leave its bounds on both sides, unevenly (so swapped or zero columns would fail above)
    assert max(rej["f_reject_mean"]) > 0
    assert any(abs(rej[f"{lab}_below"][0] - rej[f"{lab}_above"][0]) > 0.01 for lab in post.label_names)
    summary_json = json.loads((report / "summary.json").read_text())
    assert summary_json["f_reject"] == {f"{s:g}": pytest.approx(v) for s, v in zip(rej["snr"], rej["f_reject_mean"])}
    md = (report / "summary.md").read_text()
    assert "## Draws outside the training bounds" in md and "| teff: below / above |" in md


def test_report_figures_summary_and_ppc(report):
    names = {p.name for p in report.glob("*.png")}
    for expected in ("fig4_residuals_vs_snr.png", "fig5_map_vs_truth_snr300.png", "figA2_width_vs_snr.png", "figA3_width_vs_feh.png",
                     "sbc_ranks_snr300.png", "coverage.png", "fig7_ppc_snr300.png"):
        assert expected in names
    assert any(n.startswith("figA4_saliency_") for n in names)
    for png in report.glob("*.png"):
        assert png.stat().st_size > 20_000  # drawn, not empty
    summary = (report / "summary.md").read_text()
    assert "Table A.1" in summary and "Coverage of the central 68 % interval" in summary and "Posterior predictive check" in summary
    # the 68 % table's count of cells within +- 0.05, beside what a calibrated posterior reaches by chance
    cov = _table(report / "coverage.ecsv")
    c68 = cov[np.isclose(cov["level"], 0.68)]
    labels = json.loads((report / "summary.json").read_text())["labels"]
    within = int(sum(np.sum(np.abs(np.asarray(c68[lab]) - 0.68) <= 0.05 + 1e-12) for lab in labels))
    assert f"{within} of {len(c68) * len(labels)} cells within 0.68 ± 0.05, where a calibrated posterior reaches about" in summary
    meta = json.loads((report / "summary.json").read_text())
    assert set(meta["coverage_68"]) >= set(LABELS_SHOWN) and all(0 <= v <= 1 for v in meta["coverage_68"].values())
    sal = xr.open_zarr(report / "saliency_snr300.zarr", consolidated=False)
    assert float(sal.saliency.max()) <= 1.0 and float(sal.saliency.min()) >= 0.0
    assert [str(v) for v in sal.label.values] == meta["labels"]  # stored as variable-length strings (Zarr v3 has no <U)
    from astropy.table import Table

    ppc = Table.read(report / "ppc_snr300.ecsv", format="ascii.ecsv")
    assert len(ppc) == 1 and np.isfinite(ppc["rms_map"][0]) and ppc["rms_map"][0] > 0
    # the model at the truth explains the spectrum down to the noise (the PPC's reference row)
    assert ppc["chi2_truth"][0] == pytest.approx(1.0, abs=0.3)


def test_posterior_predictive_residual_at_the_true_labels_is_at_noise_level(analytic_cube):
    """Re-simulating test spectra at their TRUE labels with the generator and the chain read from the cube's
    attrs gives residuals with reduced chi^2 ~ 1 at every S/N; at S/N 300, [Fe/H] 0.3 dex off does not."""
    from cinn.evaluate.ppc import generator_from_attrs, resimulate
    from gridkit.kernels.noise import snr_per_pixel
    from gridkit.kernels.rebin import pixel_widths
    from gridkit.schema import LABEL_NAMES

    ds = xr.open_zarr(analytic_cube, consolidated=False)
    gen, why = generator_from_attrs(ds.attrs)
    assert gen is not None, why
    sub = ds.isel(model=slice(0, 6)).load()
    wl = np.asarray(ds.wavelength.values)
    truth = truths(sub, LABEL_NAMES)
    model = resimulate(gen, truth, LABEL_NAMES, ds.attrs, wl)
    wrong = truth.copy()
    wrong[:, 2] += 0.3
    off = resimulate(gen, wrong, LABEL_NAMES, ds.attrs, wl)
    n_pix = wl.size
    for k, s in enumerate(SNR):
        sp = snr_per_pixel(np.array([s]), pixel_widths(wl))[0]
        obs = sub.flux.values[:, k]
        chi2 = np.mean(((obs - model) / (np.abs(model) / sp)) ** 2, axis=1)
        assert np.all(np.abs(chi2 - 1.0) < 5 * np.sqrt(2.0 / n_pix)), (s, chi2)
        if s == 300:
            chi2_off = np.mean(((obs - off) / (np.abs(off) / sp)) ** 2, axis=1)
            assert np.all(chi2_off > 1.0 + 5 * np.sqrt(2.0 / n_pix)), (s, chi2_off)


def test_ppc_says_why_it_cannot_run():
    from cinn.evaluate.ppc import generator_from_attrs

    gen, why = generator_from_attrs({"instrument": "4most-hr"})
    assert gen is None and "backend" in why
    gen, why = generator_from_attrs({"provenance": json.dumps({"backend": "phoenix"})})
    assert gen is None and "phoenix" in why


def test_cli_errors_name_the_problem(tiny_model, analytic_cube, tmp_path, capsys):
    from gridkit.cli import main

    assert main(["evaluate", str(tiny_model), "--out", str(tmp_path / "r")]) == 2
    assert "MODEL_DIR CUBE" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_model), str(analytic_cube), "--out", str(tmp_path / "r"), "--snr", "55"]) == 2
    assert "snr [55.0] not in the cube" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_model), str(analytic_cube), "--out", str(tmp_path / "r"), "--samples", "1"]) == 2
    assert "samples" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.turbospectrum
@pytest.mark.shared
def test_ppc_rebuilds_turbospectrum_for_the_shared_grid_and_reproduces_a_model(shared_data):
    """The shared Turbospectrum grid: the PPC's generator (rebuilt from the grid's attrs) re-simulates one of its
    models at the model's labels, through the 4MOST HR chain, onto the degraded grid spectrum (noise-free)."""
    from cinn.evaluate.ppc import generator_from_attrs, resimulate
    from gridkit.degradation import degrade
    from gridkit.schema import LABEL_NAMES

    grid = xr.open_zarr(shared_data / "tsgrid-lte" / "grid.zarr", consolidated=False)
    gen, why = generator_from_attrs(grid.attrs)
    if gen is None:
        pytest.skip(why)
    one = grid.isel(model=[0]).load()
    observed = degrade(one, "4most-hr", snr=None).compute()
    model = resimulate(gen, truths(one, LABEL_NAMES), LABEL_NAMES, observed.attrs, observed.wavelength.values)
    diff = observed.flux.values - model
    assert np.sqrt(np.mean(diff**2)) < 2e-3


def _fake_ppc(wl, instrument=None):
    """A PPCResult on `wl` with made-up fluxes (no model, no synthesis): enough to draw the figure."""
    from cinn.evaluate.ppc import PPCResult

    flux = 1.0 - 0.5 * np.exp(-0.5 * ((wl[None, :] - wl[len(wl) // 3]) / 0.2) ** 2)
    band = np.stack([flux - 0.01, flux, flux + 0.01], axis=1)
    return PPCResult(wl, flux + 0.001, np.array([100.0]), np.full_like(flux, 0.01), np.zeros((1, 1)), flux, band, None,
                     ("teff",), dict(instrument or {}))


def test_ppc_panels_are_named_after_the_instruments_arms():
    from cinn.evaluate.plotting import pyplot
    from cinn.evaluate.ppc import ppc_figure
    from cinn.evaluate.saliency import arm_ranges
    from gridkit import instruments

    hr = instruments.get("4most-hr")
    wl = hr.wavelength(["green", "red"])  # pixel centres, 0.05 A apart
    attrs = {"instrument": "4most-hr", "arms": "green,red"}  # as a degraded cube's attrs hold them
    assert [a for a, _, _ in arm_ranges(wl, attrs)] == ["green", "red"]
    assert [a for a, _, _ in arm_ranges(wl, {"instrument": "4most-hr", "arms": ["green", "red"]})] == ["green", "red"]
    # no instrument: the arms named by their wavelength range, never arm1/arm2
    assert [a for a, _, _ in arm_ranges(wl)] == ["5160-5730 Å", "6100-6790 Å"]

    plt = pyplot()
    fig = ppc_figure(_fake_ppc(wl, attrs), model_ids=["S1"])  # the instrument kept by posterior_predictive from the cube's attrs
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    plt.close(fig)
    assert len(titles) == 2 and ", green:" in titles[0] and ", red:" in titles[1]
    assert not any("arm1" in t or "arm2" in t for t in titles)
    fig = ppc_figure(_fake_ppc(wl))  # a grid without an instrument
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    plt.close(fig)
    assert "5160-5730 Å" in titles[0] and "6100-6790 Å" in titles[1]
