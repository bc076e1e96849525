"""`evaluate`: the accuracy and calibration report of a trained cINN on held-out spectra.

For every S/N of a degraded cube `flux(model, snr, wavelength)` and the models of one split (default: the
test split recorded in the model directory), the posterior of every spectrum is sampled once; from the
samples come the MAP (the posterior's own estimate, `Posterior.summarize`), the 68 % interval, the SBC
rank of the truth and whether the truth lies in the central 50/68/90/95 % intervals. Intervals and ranks count the
draws inside the training bounds only, the ones a catalog's quantiles come from.

Tables (ECSV with units and a description, and the same as CSV; one row per S/N, column `snr`):
  residuals       Table A.1 of Ksoll et al. (2026): mean residual <label>_mean and scatter <label>_sigma of MAP - truth
  nrmse           Table A.2: RMSE / (max - min of the true label over the evaluated set)
  interval_width  median width of the central 68 % credible interval (Fig. A.2)
  width_vs_feh    the same in bins of true [Fe/H] (Fig. A.3), columns snr, feh_lo, feh_hi
  coverage        empirical coverage of central credible intervals, rows (snr, level)
  sbc             chi-square p-value of uniform SBC ranks per label
  nll             -log p(truth | spectrum) per label of the raw posterior, a proper score (mean, standard error)
  f_reject        draws outside the training bounds (the catalogs' f_reject, flag_extrapolated) and per label below/above
Figures (PNG): fig4_residuals_vs_snr, fig5_map_vs_truth_snr<S>, figA2_width_vs_snr, figA3_width_vs_feh,
sbc_ranks_snr<S>, coverage, and where asked saliency (Figs. A.4, A.5) and the posterior predictive check
(Fig. 7). `summary.md` prints the tables in the paper's orientation (labels as rows, S/N as columns) and lists
the figures; `summary.json` holds the run's metadata, the 68 % coverage per label at the figure S/N, and the NLL
and the mean f_reject per S/N.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from catalogs.schema import EXTRAPOLATED_FRACTION
from gridkit.errors import ConfigError, GridError, StoreError
from gridkit.schema import label_info

from . import metrics
from .plotting import axis_label, panel_grid, pyplot, save_figure, snr_axis

if TYPE_CHECKING:
    from cinn.posterior import Posterior

#: coverage levels of the table; the coverage figure uses a fine grid
LEVELS = metrics.COVERAGE_LEVELS
CURVE_LEVELS = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))
#: S/N of the paper's headline numbers and of Fig. 5 (per Angstrom)
REFERENCE_SNR = 250.0
FEH_EDGES = np.arange(-2.5, 1.01, 0.25)


# ---------------------------------------------------------------------------------------------- data
@dataclass
class SNRResult:
    """What the report needs from one S/N: per star (n,) / (n, n_label) arrays."""

    snr: float
    model: np.ndarray
    truth: np.ndarray
    map: np.ndarray
    q16: np.ndarray
    q84: np.ndarray
    ranks: np.ndarray
    inside: np.ndarray  # (n_level, n, n_label) bool: truth inside the central interval of LEVELS
    n_samples: int
    extra: dict = field(default_factory=dict)
    #: (n,) log p(truth | spectrum) of the raw posterior in physical units (NaN where no density is defined); None: not computed
    log_prob: np.ndarray | None = None
    #: (n, n_label) fractions of each spectrum's draws below / above the training bounds, (n,) outside in any label
    #: (`metrics.outside_bounds`); None: not computed
    below: np.ndarray | None = None
    above: np.ndarray | None = None
    f_reject: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.truth.shape[0])


def result_from_samples(snr: float, model, truth, map_, samples, levels: Sequence[float] = LEVELS, in_bounds=None) -> SNRResult:
    """An SNRResult from posterior samples (n, n_samples, n_label), point estimates and truths.

    in_bounds: (n, n_samples) bool, the draws inside the training bounds: the intervals and ranks are those of these
    draws, as `Posterior.summarize` and the catalogs take their quantiles from them (a spectrum with none uses all
    its draws). None: every draw counts."""
    s = np.asarray(samples, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    probs = [0.16, 0.84, *[p for level in levels for p in ((1.0 - level) / 2.0, (1.0 + level) / 2.0)]]
    if not all(0.0 < float(level) < 1.0 for level in levels):
        raise ConfigError(f"credible levels must lie in (0, 1), got {list(levels)}")
    if in_bounds is None:
        q = np.quantile(s, probs, axis=1)
        ranks = metrics.sbc_ranks(s, t)
    else:
        from cinn.calibration import quantiles_in_bounds

        ins = np.asarray(in_bounds, dtype=bool)
        ins = np.where(ins.any(axis=1, keepdims=True), ins, True)
        q = np.moveaxis(quantiles_in_bounds(s, ins, probs), -1, 0)  # (len(probs), n, d), as summarize computes them
        ranks = metrics.sbc_ranks(s, t, ins)
    inside = [(t >= q[2 + 2 * k]) & (t <= q[3 + 2 * k]) for k in range(len(levels))]
    return SNRResult(float(snr), np.asarray(model), t, np.asarray(map_, dtype=np.float64), q[0], q[1],
                     ranks, np.asarray(inside), int(s.shape[1]))


def concat_results(parts: Sequence[SNRResult]) -> SNRResult:
    """Join the chunks of one S/N."""
    p0 = parts[0]
    optional = {k: None if any(getattr(p, k) is None for p in parts) else np.concatenate([getattr(p, k) for p in parts])
                for k in ("log_prob", "below", "above", "f_reject")}
    return SNRResult(p0.snr, *(np.concatenate([getattr(p, k) for p in parts], axis=0) for k in ("model", "truth", "map", "q16", "q84", "ranks")),
                     np.concatenate([p.inside for p in parts], axis=1), p0.n_samples, **optional)


def _nearest_snr(snrs: Sequence[float], target: float) -> float:
    """The S/N of `snrs` nearest to `target` in log S/N (the per-spectrum figures' S/N)."""
    return min(snrs, key=lambda v: abs(math.log(v / target)))



# ---------------------------------------------------------------------------------------------- tables
def _unit(label: str):
    import astropy.units as u

    units = label_info(label).units
    try:
        return u.Unit(units) if units not in ("1", "") else None
    except ValueError:
        return None


def _table(rows: list[dict], labels: Sequence[str], description: str, per_label: Mapping[str, str] | None = None, units: bool = True):
    """An astropy Table from rows; label columns get the label's unit where `units` (dimensionless otherwise)."""
    from astropy.table import Table

    t = Table(rows=rows) if rows else Table()
    t.meta["description"] = description
    if per_label:
        t.meta["columns"] = dict(per_label)
    if units:
        for col in t.colnames:
            base = col.rsplit("_", 1)[0] if col.endswith(("_mean", "_sigma")) else col
            if base in labels and _unit(base) is not None:
                t[col].unit = _unit(base)
    if "snr" in t.colnames:
        t["snr"].description = "signal-to-noise ratio per Angstrom of the spectra"
    return t


def make_tables(results: Sequence[SNRResult], labels: Sequence[str], levels: Sequence[float] = LEVELS,
                feh_index: int | None = None, feh_edges=FEH_EDGES) -> dict:
    """The report's tables (astropy Tables keyed by name) from per-S/N results."""
    res_rows, nrmse_rows, width_rows, cov_rows, sbc_rows, feh_rows, nll_rows, reject_rows = [], [], [], [], [], [], [], []
    for r in sorted(results, key=lambda r: r.snr):
        mean, sigma = metrics.residual_stats(r.map, r.truth)
        row = {"snr": r.snr, "n_star": r.n}
        for j, lab in enumerate(labels):
            row[f"{lab}_mean"] = mean[j]
            row[f"{lab}_sigma"] = sigma[j]
        res_rows.append(row)
        nr = metrics.nrmse(r.map, r.truth)
        nrmse_rows.append({"snr": r.snr, "n_star": r.n, **{lab: nr[j] for j, lab in enumerate(labels)}})
        width = metrics.interval_width(r.q16, r.q84)
        width_rows.append({"snr": r.snr, "n_star": r.n, **{lab: float(np.median(width[:, j])) for j, lab in enumerate(labels)}})
        cov = r.inside.mean(axis=1)
        for k, level in enumerate(levels):
            cov_rows.append({"snr": r.snr, "level": float(level), "n_star": r.n,
                             "binomial_error": float(metrics.coverage_error(level, r.n)),
                             **{lab: cov[k, j] for j, lab in enumerate(labels)}})
        chi2, p = metrics.rank_uniformity(r.ranks, r.n_samples)
        sbc_rows.append({"snr": r.snr, "n_star": r.n, "n_samples": r.n_samples, **{lab: p[j] for j, lab in enumerate(labels)}})
        if r.log_prob is not None:
            nll_rows.append({"snr": r.snr, "n_star": r.n, **metrics.nll_per_label(r.log_prob, len(labels))})
        if r.f_reject is not None:
            reject_rows.append(_reject_row(r, labels))
        if feh_index is not None:
            med, counts = metrics.binned_median(r.truth[:, feh_index], width, feh_edges)
            for b in range(len(feh_edges) - 1):
                if counts[b]:
                    feh_rows.append({"snr": r.snr, "feh_lo": float(feh_edges[b]), "feh_hi": float(feh_edges[b + 1]), "n_star": int(counts[b]),
                                     **{lab: med[b, j] for j, lab in enumerate(labels)}})
    tables = {
        "residuals": _table(res_rows, labels, "Table A.1 (Ksoll et al. 2026): mean residual <label>_mean and standard deviation <label>_sigma "
                            "of MAP - truth per S/N over the evaluated spectra"),
        "nrmse": _table(nrmse_rows, labels, "Table A.2 (Ksoll et al. 2026): normalised RMSE of the MAP, sqrt(mean((MAP - truth)^2)) / "
                        "(max(truth) - min(truth)) over the evaluated set, per S/N; dimensionless", units=False),
        "interval_width": _table(width_rows, labels, "Fig. A.2 (Ksoll et al. 2026): median width of the central 68 % credible interval "
                                 "(84th - 16th percentile of the posterior samples) per S/N"),
        "coverage": _table(cov_rows, labels, "coverage of central credible intervals: fraction of spectra whose true label lies inside "
                           "the central `level` interval of its posterior; calibrated = level (binomial_error = 1-sigma noise)", units=False),
        "sbc": _table(sbc_rows, labels, "simulation-based calibration: chi-square p-value that the rank of the truth among the posterior "
                      "samples is uniform (Talts et al. 2018); < 0.01 flags a miscalibrated label", units=False),
    }
    if nll_rows:
        tables["nll"] = _table(nll_rows, labels, "negative log-likelihood of the true labels under the (uncalibrated) posterior, "
                               "-log p(truth | spectrum) in physical label units divided by the number of labels: nll its mean, "
                               "nll_error its standard error, nll_median the median, over the n_star - n_undefined spectra where "
                               "a density is defined (undefined: truth outside the flow's support, or a log label at or below "
                               "log_floor); a proper score of the whole posterior (accuracy and width), lower is better", units=False)
    if reject_rows:
        tables["f_reject"] = _table(reject_rows, labels, (
            "posterior draws outside the training label bounds (the published method rejects them; a catalog's quantiles "
            "leave them out): f_reject_mean, f_reject_median and f_reject_p90 of the fraction of each spectrum's draws "
            "outside in any label (the catalogs' f_reject), flagged = fraction of spectra with f_reject > "
            f"{EXTRAPOLATED_FRACTION:g} (the catalogs' flag_extrapolated); <label>_below and <label>_above: the mean "
            "fraction of draws below the lower and above the upper bound of that label (a draw may leave through "
            "several labels)"), units=False)
    if feh_index is not None:
        tables["width_vs_feh"] = _table(feh_rows, labels, "Fig. A.3 (Ksoll et al. 2026): median width of the central 68 % credible "
                                        "interval in bins of true [Fe/H] [feh_lo, feh_hi) per S/N")
    return tables


def _reject_row(r: SNRResult, labels: Sequence[str]) -> dict:
    """One S/N's row of the f_reject table."""
    f = np.asarray(r.f_reject, dtype=np.float64)
    row = {"snr": r.snr, "n_star": r.n, "f_reject_mean": float(f.mean()), "f_reject_median": float(np.median(f)),
           "f_reject_p90": float(np.quantile(f, 0.9)), "flagged": float(np.mean(f > EXTRAPOLATED_FRACTION))}
    for j, lab in enumerate(labels):
        row[f"{lab}_below"] = float(np.mean(r.below[:, j]))
        row[f"{lab}_above"] = float(np.mean(r.above[:, j]))
    return row


def write_tables(tables: Mapping, out_dir: Path) -> dict[str, Path]:
    """Each table as `<name>.ecsv` (units, description) and `<name>.csv`; returns {name_ext: path}."""
    import warnings

    out = {}
    for name, t in tables.items():
        for ext, fmt in (("ecsv", "ascii.ecsv"), ("csv", "ascii.csv")):
            path = out_dir / f"{name}.{ext}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t.write(path, format=fmt, overwrite=True)
            out[f"{name}_{ext}"] = path
    return out


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return "-"
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.3f}" if a >= 0.01 else f"{v:.2g}"


def markdown_summary(tables: Mapping, labels: Sequence[str], meta: Mapping) -> str:
    """The tables in the paper's orientation: one row per label, one column per S/N."""
    lines = [f"# cINN evaluation: model {meta.get('model_id', '?')}", ""]
    for k in ("cube", "split", "n_star", "n_samples", "seed"):
        if k in meta:
            lines.append(f"- {k}: {meta[k]}")
    lines.append("")
    res = tables["residuals"]
    snrs = [float(s) for s in res["snr"]]
    head = "| label | " + " | ".join(f"S/N {s:g}" for s in snrs) + " |"
    sep = "|---|" + "---|" * len(snrs)

    def block(title, cell):
        lines.extend([f"## {title}", "", head, sep])
        for lab in labels:
            unit = label_info(lab).units
            lines.append(f"| {lab} [{unit}] | " + " | ".join(cell(lab, i) for i in range(len(snrs))) + " |")
        lines.append("")

    block("Mean residual and scatter of MAP - truth, Δ̄ ± σ (Table A.1)", lambda lab, i: f"{_fmt(res[f'{lab}_mean'][i])} ± {_fmt(res[f'{lab}_sigma'][i])}")
    nr = tables["nrmse"]
    block("NRMSE (Table A.2)", lambda lab, i: _fmt(nr[lab][i]))
    wd = tables["interval_width"]
    block("Median width of the 68 % interval (Fig. A.2)", lambda lab, i: _fmt(wd[lab][i]))
    cov = tables["coverage"]
    c68 = cov[np.isclose(cov["level"], 0.68)]
    if len(c68):
        block("Coverage of the central 68 % interval (calibrated: 0.68)", lambda lab, i: f"{c68[lab][i]:.3f}")
        lines.extend(coverage_chance_lines(c68, labels))
    sbc = tables["sbc"]
    block("SBC rank uniformity, chi-square p-value (< 0.01: miscalibrated)", lambda lab, i: f"{sbc[lab][i]:.2g}")
    if "f_reject" in tables:
        rej = tables["f_reject"]
        lines.extend(["## Draws outside the training bounds (rejected by the published method; f_reject, flag_extrapolated)", "",
                      head, sep,
                      "| f_reject mean / median / 90th percentile | " + " | ".join(
                          f"{rej['f_reject_mean'][i]:.3f} / {rej['f_reject_median'][i]:.3f} / {rej['f_reject_p90'][i]:.3f}"
                          for i in range(len(snrs))) + " |",
                      f"| flagged (f_reject > {EXTRAPOLATED_FRACTION:g}) | " + " | ".join(f"{rej['flagged'][i]:.3f}" for i in range(len(snrs))) + " |"])
        lines.extend(f"| {lab}: below / above | " + " | ".join(f"{rej[f'{lab}_below'][i]:.3f} / {rej[f'{lab}_above'][i]:.3f}"
                                                         for i in range(len(snrs))) + " |" for lab in labels)
        lines.append("")
    if "nll" in tables:
        nll = tables["nll"]
        lines.extend(["## Negative log-likelihood of the truth per label (uncalibrated posterior, physical units; lower is better)", "",
                      "| | " + " | ".join(f"S/N {s:g}" for s in nll["snr"]) + " |", "|---|" + "---|" * len(nll),
                      "| NLL ± standard error | " + " | ".join(f"{v:.4f} ± {e:.4f}" for v, e in zip(nll["nll"], nll["nll_error"])) + " |",
                      "| spectra without a density | " + " | ".join(str(int(v)) for v in nll["n_undefined"]) + " |", ""])
    return "\n".join(lines)


def coverage_chance_lines(c68, labels: Sequence[str], tolerance: float = 0.05) -> list[str]:
    """What the 68 % table can show with this many stars: how many cells lie within 0.68 +- `tolerance` and within the
    binomial 2 sigma, against how many a calibrated posterior reaches by chance (a test split of a few hundred models
    misses +- 0.05 in some cells whatever the network)."""
    values = np.array([[float(c68[lab][i]) for lab in labels] for i in range(len(c68))])
    n_star = np.array([int(v) for v in c68["n_star"]])
    err = np.array([float(metrics.coverage_error(0.68, n)) for n in n_star])[:, None]
    within = int((np.abs(values - 0.68) <= tolerance + 1e-12).sum())
    within2 = int((np.abs(values - 0.68) <= 2 * err + 1e-12).sum())
    expected = sum(metrics.coverage_within_probability(0.68, n, tolerance) for n in n_star) * len(labels)
    expected2 = sum(metrics.coverage_within_probability(0.68, n, 2 * e) for n, e in zip(n_star, err[:, 0])) * len(labels)
    n_cells = values.size
    return [f"{within} of {n_cells} cells within 0.68 ± {tolerance:g}, where a calibrated posterior reaches about "
            f"{expected:.0f} by chance with {', '.join(str(n) for n in sorted(set(n_star)))} stars per S/N (binomial); "
            f"{within2} of {n_cells} within the binomial 2 σ (about {expected2:.0f} by chance).", ""]


def ppc_markdown(stats: Sequence[Mapping], snr: float) -> str:
    """The posterior predictive check's per-spectrum numbers as a markdown section."""
    has_truth = "chi2_truth" in stats[0]
    lines = ["", f"## Posterior predictive check at S/N {snr:g} (cf. Fig. 7)", "",
             "Residual flux of the spectrum against the model re-simulated at the MAP (and at the true labels): rms, and the reduced "
             "chi-square with the noise sigma = flux / (S/N per pixel); ~1 when the model explains the spectrum down to the noise.", "",
             "| spectrum | rms(obs - MAP model) | χ²ᵣ MAP | noise rms |" + (" rms(obs - true model) | χ²ᵣ truth |" if has_truth else "")
             + " in 68 % band |",
             "|---|---|---|---|" + ("---|---|" if has_truth else "") + "---|"]
    for r in stats:
        lines.append(f"| {r['spectrum']} | {r['rms_map']:.4g} | {r['chi2_map']:.3g} | {r['rms_noise']:.4g} |"
                     + (f" {r['rms_truth']:.4g} | {r['chi2_truth']:.3g} |" if has_truth else "") + f" {r['frac_in_band68']:.2f} |")
    return "\n".join(lines) + "\n"


FIGURE_NOTES = {
    "fig4_residuals_vs_snr": "mean residual and scatter of MAP - truth against S/N (Fig. 4)",
    "fig5_map_vs_truth": "MAP against truth, 2-D histograms at the figure S/N (Fig. 5)",
    "figA2_width_vs_snr": "median width of the 68 % interval against S/N (Fig. A.2)",
    "figA3_width_vs_feh": "median width of the 68 % interval against true [Fe/H] (Fig. A.3)",
    "sbc_ranks": "SBC rank histograms at the figure S/N: flat = calibrated, U = over-confident, ∩ = under-confident, slope = bias",
    "coverage_figure": "empirical against nominal coverage of central intervals (diagonal = calibrated)",
    "fig7_ppc": "posterior predictive check: spectra re-simulated at the MAP and posterior draws, residual flux (Fig. 7)",
}


def figures_markdown(paths: Mapping[str, Path], out_dir: Path) -> str:
    lines = ["", "## Figures", ""]
    for key, path in paths.items():
        if str(path).endswith(".png"):
            note = FIGURE_NOTES.get(key) or ("saliency: median normalised gradient per label and pixel, lines marked (Figs. A.4, A.5)"
                                              if key.startswith("saliency_") else "")
            lines.append(f"- [{Path(path).name}]({Path(path).relative_to(out_dir) if Path(path).is_relative_to(out_dir) else path}): {note}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- figures
def plot_residuals_vs_snr(table, labels: Sequence[str], path: Path) -> Path:
    """Fig. 4: mean residual of MAP - truth (points) with its standard deviation (error bars, band) against S/N."""
    fig, axes = panel_grid(len(labels))
    snr = np.asarray(table["snr"], dtype=float)
    for ax, lab in zip(axes, labels):
        m = np.asarray(table[f"{lab}_mean"], dtype=float)
        s = np.asarray(table[f"{lab}_sigma"], dtype=float)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.fill_between(snr, m - s, m + s, color="C0", alpha=0.2, lw=0)
        ax.errorbar(snr, m, yerr=s, fmt="o-", ms=3, color="C0", capsize=2)
        snr_axis(ax, snr)
        ax.set_title(lab, fontsize=9)
        ax.set_ylabel(f"Δ{axis_label(lab)}", fontsize=8)
        ax.set_xlabel("S/N [per Å]", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("MAP − truth: mean Δ̄ (points) ± σ (bars) against S/N (cf. Ksoll et al. 2026, Fig. 4)", fontsize=10)
    return save_figure(fig, path)


def plot_map_vs_truth(result: SNRResult, labels: Sequence[str], path: Path, bins: int = 40) -> Path:
    """Fig. 5: 2-D histograms of MAP against truth at one S/N, with the 1:1 line."""
    from matplotlib.colors import LogNorm

    fig, axes = panel_grid(len(labels), width=2.8, height=2.6)
    for j, (ax, lab) in enumerate(zip(axes, labels)):
        t, m = result.truth[:, j], result.map[:, j]
        ok = np.isfinite(t) & np.isfinite(m)
        lo = float(np.nanmin(np.r_[t[ok], m[ok]])) if ok.any() else 0.0
        hi = float(np.nanmax(np.r_[t[ok], m[ok]])) if ok.any() else 1.0
        if hi <= lo:
            hi = lo + 1.0
        pad = 0.03 * (hi - lo)
        rng = [[lo - pad, hi + pad]] * 2
        n_bins = int(np.clip(np.sqrt(ok.sum()) * 1.5, 8, bins))
        h = ax.hist2d(t[ok], m[ok], bins=n_bins, range=rng, cmap="viridis", norm=LogNorm(), cmin=1)
        ax.plot(rng[0], rng[0], color="r", lw=0.8, ls="--")
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel(f"true {axis_label(lab)}", fontsize=7)
        ax.set_ylabel(f"MAP {lab}", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_aspect("equal")
    fig.subplots_adjust(right=0.9)
    cax = fig.add_axes([0.92, 0.35, 0.012, 0.3])
    fig.colorbar(h[3], cax=cax, label="spectra per bin")
    fig.suptitle(f"MAP against truth at S/N = {result.snr:g} ({result.n} spectra; cf. Fig. 5)", fontsize=10)
    return save_figure(fig, path)


def plot_width_vs_snr(table, labels: Sequence[str], path: Path) -> Path:
    """Fig. A.2: median 68 % interval width against S/N."""
    fig, axes = panel_grid(len(labels))
    snr = np.asarray(table["snr"], dtype=float)
    for ax, lab in zip(axes, labels):
        y = np.asarray(table[lab], dtype=float)
        ax.plot(snr, y, "o-", ms=3, color="C1")
        snr_axis(ax, snr)
        ax.set_title(lab, fontsize=9)
        ax.set_ylabel(f"68 % width {axis_label(lab)}", fontsize=7)
        ax.set_xlabel("S/N [per Å]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1.15 * float(np.nanmax(y)) if np.isfinite(y).any() and np.nanmax(y) > 0 else 1.0)
    fig.suptitle("Median width of the central 68 % credible interval against S/N (cf. Fig. A.2)", fontsize=10)
    return save_figure(fig, path)


def plot_width_vs_feh(table, labels: Sequence[str], path: Path) -> Path:
    """Fig. A.3: median 68 % interval width against true [Fe/H], one line per S/N."""
    plt = pyplot()
    fig, axes = panel_grid(len(labels))
    snrs = sorted(set(float(s) for s in table["snr"]))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(snrs), 1)))
    for ax, lab in zip(axes, labels):
        for c, s in zip(colors, snrs):
            sel = np.isclose(np.asarray(table["snr"], dtype=float), s)
            mid = 0.5 * (np.asarray(table["feh_lo"])[sel] + np.asarray(table["feh_hi"])[sel])
            ax.plot(mid, np.asarray(table[lab])[sel], "o-", ms=2.5, color=c, label=f"{s:g}")
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("true [Fe/H] [dex]", fontsize=8)
        ax.set_ylabel(f"68 % width {axis_label(lab)}", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        ax.set_ylim(top=ax.get_ylim()[1] * 1.1)
    axes[0].legend(title="S/N", fontsize=6, title_fontsize=7)
    fig.suptitle("Median width of the 68 % credible interval against [Fe/H] (cf. Fig. A.3)", fontsize=10)
    return save_figure(fig, path)


def plot_rank_histograms(result: SNRResult, labels: Sequence[str], path: Path, n_bins: int | None = None) -> Path:
    """SBC rank histograms at one S/N with the 99 % band of a uniform histogram (binomial)."""
    from scipy import stats

    counts, edges = metrics.rank_histogram(result.ranks, result.n_samples, n_bins)
    nb = counts.shape[0]
    p = 1.0 / nb
    lo, hi = stats.binom.ppf([0.005, 0.995], result.n, p)
    _, pval = metrics.rank_uniformity(result.ranks, result.n_samples, nb)
    fig, axes = panel_grid(len(labels), height=2.2)
    x = edges / result.n_samples
    for j, (ax, lab) in enumerate(zip(axes, labels)):
        ax.stairs(counts[:, j], x, color="C0", fill=True, alpha=0.45)
        ax.stairs(counts[:, j], x, color="C0", lw=1.2)
        ax.axhline(result.n * p, color="k", lw=0.8)
        for bound in (lo, hi):
            ax.axhline(bound, color="0.35", lw=0.8, ls="--")
        ax.set_title(f"{lab}  (p = {pval[j]:.2g})", fontsize=9)
        ax.set_xlim(0, x[-1])
        ax.set_xlabel("normalised rank of truth", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"SBC rank histograms at S/N = {result.snr:g} ({result.n} spectra, {result.n_samples} samples each); "
                 "line: expected count, dashed: 99 % band of a calibrated posterior.\n"
                 "∪ = over-confident, ∩ = under-confident, slope = bias", fontsize=9)
    return save_figure(fig, path)


def plot_coverage(results: Sequence[SNRResult], labels: Sequence[str], path: Path, levels=CURVE_LEVELS) -> Path:
    """Expected coverage: empirical against nominal credibility of central intervals per label, one line
    per S/N, with the diagonal of a calibrated posterior (above: under-confident, below: over-confident)."""
    plt = pyplot()
    fig, axes = panel_grid(len(labels), width=2.6, height=2.6)
    rs = sorted(results, key=lambda r: r.snr)
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(rs), 1)))
    lv = np.asarray(levels)
    for j, (ax, lab) in enumerate(zip(axes, labels)):
        ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
        for c, r in zip(colors, rs):
            cov = metrics.coverage_from_ranks(r.ranks[:, j], r.n_samples, lv)
            ax.plot(lv, cov, color=c, lw=1.2, label=f"{r.snr:g}")
        ax.set_title(lab, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("credibility level", fontsize=7)
        ax.set_ylabel("coverage", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0].legend(title="S/N", fontsize=6, title_fontsize=7)
    fig.suptitle("Expected coverage of central credible intervals (diagonal = calibrated; below = over-confident)", fontsize=10)
    return save_figure(fig, path)


def make_figures(results: Sequence[SNRResult], tables: Mapping, labels: Sequence[str], out_dir: Path, snr_figure: float) -> dict[str, Path]:
    """Every figure of the report; `snr_figure` is the S/N of the per-spectrum figures (Fig. 5, SBC)."""
    out = {}
    out["fig4_residuals_vs_snr"] = plot_residuals_vs_snr(tables["residuals"], labels, out_dir / "fig4_residuals_vs_snr.png")
    fig_snr = _nearest_snr([r.snr for r in results], snr_figure)
    r = next(r for r in results if r.snr == fig_snr)
    tag = f"{r.snr:g}"
    out["fig5_map_vs_truth"] = plot_map_vs_truth(r, labels, out_dir / f"fig5_map_vs_truth_snr{tag}.png")
    out["figA2_width_vs_snr"] = plot_width_vs_snr(tables["interval_width"], labels, out_dir / "figA2_width_vs_snr.png")
    if "width_vs_feh" in tables and len(tables["width_vs_feh"]):
        out["figA3_width_vs_feh"] = plot_width_vs_feh(tables["width_vs_feh"], labels, out_dir / "figA3_width_vs_feh.png")
    out["sbc_ranks"] = plot_rank_histograms(r, labels, out_dir / f"sbc_ranks_snr{tag}.png")
    out["coverage_figure"] = plot_coverage(results, labels, out_dir / "coverage.png")
    return out


# ---------------------------------------------------------------------------------------------- driver
@dataclass(frozen=True)
class _Spectra:
    """The spectra an evaluation samples: positions along the cube's `model`, their ids, true labels
    (n, n_label) and latent keys (the model ids where integer: a spectrum's draws do not depend on the
    selection), at the S/N values `snrs`; `description` says how they were chosen."""

    positions: np.ndarray
    model_ids: np.ndarray
    truth: np.ndarray
    keys: np.ndarray
    snrs: list[float]
    description: str

    @property
    def n(self) -> int:
        return int(self.positions.size)

    def subset(self, index: slice) -> _Spectra:
        """The spectra `index` selects (a chunk, or the first few for saliency and the PPC)."""
        return _Spectra(self.positions[index], self.model_ids[index], self.truth[index], self.keys[index], self.snrs,
                             self.description)

    def flux(self, cube, snr: float) -> np.ndarray:
        """Their flux (n, n_wave) at one S/N of `cube`, as stored."""
        return np.asarray(cube.flux.sel(snr=snr).isel(model=self.positions).values)


def _check_options(samples, ppc, max_spectra, *, ppc_draws=16, chunk=256, figure_snr=REFERENCE_SNR, saliency_spectra=64) -> None:
    def integer(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not integer(samples) or samples < 2:
        raise ConfigError(f"samples must be an integer >= 2, got {samples!r}")
    if not integer(ppc) or ppc < 0:
        raise ConfigError(f"ppc (spectra for the posterior predictive check) must be an integer >= 0, got {ppc!r}")
    if max_spectra is not None and (not integer(max_spectra) or max_spectra < 1):
        raise ConfigError(f"max_spectra must be a positive integer or None, got {max_spectra!r}")
    for name, value in (("ppc_draws", ppc_draws), ("chunk", chunk), ("saliency_spectra", saliency_spectra)):
        if not integer(value) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(figure_snr, (int, float, np.number)) and math.isfinite(figure_snr) and figure_snr > 0):
        raise ConfigError(f"figure_snr (--snr-figure) must be a finite S/N > 0, got {figure_snr!r}")


def _open_cube(post: Posterior, cube_path: Path):
    """The cube, checked to hold the model's labels (the truths) on the model's wavelength grid."""
    from gridkit.grid import open_grid
    from gridkit.schema import check_normalisation, check_same_wavelength

    cube = open_grid(cube_path, kind="cube")
    missing = [lab for lab in post.label_names if lab not in cube]
    if missing:
        raise GridError(f"{cube_path} lacks the true label(s) {', '.join(missing)} of the model")
    check_same_wavelength(cube["wavelength"].values, post.wavelength, what=f"the cube {cube_path}", of=f"model {post.model_id}",
                          hint="degrade the grid to the model's instrument and arms (`gridkit degrade`)")
    check_normalisation(cube.attrs.get("normalisation", "none"), post.normalisation, f"the spectra of cube {cube_path}")
    return cube


def _select_models(post: Posterior, cube, cube_path: Path, split: str | None) -> tuple[np.ndarray, str]:
    """Positions along `model` of the spectra to evaluate and a description of the choice, decided by the models:
    a model of the cube is a model of the network's training data when its id AND labels equal those of a model
    of the recorded split (`cinn.data.recorded_split`), whatever the cube's path or noise.

    'train'/'test'/'validation': that split's models in the cube (the training cube, a copy or a re-noised
    version of its grid). A cube holding none of them is another cube: its models are evaluated except those
    that are training or validation models of the network (excluded with a warning), never as held out.
    'all' (or None): every model of the cube; the description counts its training and validation models."""
    import warnings

    from cinn.data import model_digests, recorded_split

    if split not in (None, "all", "train", "test", "validation"):
        raise ConfigError(f"split must be 'test', 'validation', 'train' or 'all', got {split!r}")
    ids = np.asarray(cube["model"].values)
    digests = model_digests(ids, np.stack([np.asarray(cube[lab].values, dtype=np.float64) for lab in post.label_names], axis=1))
    try:
        rec = recorded_split(post.model_dir, post.meta)
    except StoreError:
        if split not in (None, "all"):
            raise
        return np.arange(ids.size), "all models of the cube (the model directory records no split digests: which are training models is unknown)"
    seen = np.isin(digests, np.concatenate([rec["train"][1], rec["validation"][1]]))  # trained or selected on
    if split in (None, "all"):
        note = f"; {int(seen.sum())} of them training or validation models of this network" if seen.any() else ""
        return np.arange(ids.size), f"all {ids.size} models of the cube{note}"
    own = np.isin(digests, rec[split][1])
    n_rec = rec[split][0].size
    if own.any():
        pos = np.flatnonzero(own)
        rest = "" if pos.size == n_rec else f" of its {n_rec}; the others are not in the cube with their training labels"
        return pos, f"{split} split ({pos.size} models{rest})"
    if split == "train":
        raise GridError(f"none of the {n_rec} training models of {post.model_dir} (id and labels) is in {cube_path}")
    keep = np.flatnonzero(~seen)
    if keep.size == 0:
        raise GridError(f"every model of {cube_path} is a training or validation model of {post.model_dir} (same id and labels): "
                        "nothing held out to evaluate")
    excluded = f"; its {int(seen.sum())} training or validation models of this network are excluded" if seen.any() else ""
    warnings.warn(f"{cube_path} holds none of the '{split}' models of {post.model_dir}: it is another cube; evaluating its "
                  f"{keep.size} models that are not training or validation models of this network (by id and labels){excluded}",
                  stacklevel=4)
    return keep, f"{keep.size} models of another cube, none a training or validation model of this network (by id and labels){excluded}"


def _snr_values(cube, snr) -> list[float]:
    have = np.asarray(cube["snr"].values, dtype=float)
    if snr is None:
        return sorted(have.tolist())
    want = np.atleast_1d(np.asarray(snr, dtype=float))
    missing = [float(s) for s in want if not np.any(np.isclose(have, s))]
    if missing:
        raise ConfigError(f"snr {missing} not in the cube; it has {have.tolist()}")
    return sorted(float(have[np.argmin(np.abs(have - s))]) for s in want)


def _select_spectra(post: Posterior, cube, cube_path, split: str | None = "test", snr=None,
                    max_spectra: int | None = None) -> _Spectra:
    """The spectra of `cube` to evaluate: the models of `split` where the cube is the training cube (all
    otherwise), the first `max_spectra` of them, at the S/N values `snr` of the cube (default all)."""
    pos, description = _select_models(post, cube, Path(cube_path), split)
    if max_spectra is not None:
        pos = pos[:max_spectra]
    snrs = _snr_values(cube, snr)
    model_ids = np.asarray(cube["model"].values)[pos]
    truth = np.stack([np.asarray(cube[lab].values, dtype=float)[pos] for lab in post.label_names], axis=1)
    keys = model_ids if np.issubdtype(model_ids.dtype, np.integer) else np.arange(pos.size)
    return _Spectra(pos, model_ids, truth, keys, snrs, description)


def _sample_results(post: Posterior, cube, spectra: _Spectra, samples: int, seed: int = 0, *, chunk: int = 256,
                   progress: bool = False, calibration=None) -> tuple[list[SNRResult], list[SNRResult] | None]:
    """One SNRResult per S/N: every spectrum sampled once (`samples` draws), its MAP by the posterior's own rule
    (`Posterior.map_estimate`) from the same draws; `chunk` spectra at a time. With an interval `calibration`
    (cinn.calibration), the results of the calibrated draws, and those of the raw draws beside them."""
    from tqdm.auto import tqdm

    results, raw = [], []
    bar = tqdm(total=len(spectra.snrs) * spectra.n, disable=not progress, desc="evaluate", unit="spectrum")
    for s in spectra.snrs:
        parts, raw_parts = [], []
        for lo in range(0, spectra.n, chunk):
            part = spectra.subset(slice(lo, lo + chunk))
            flux = part.flux(cube, s)
            draws, log_q = post.sample(flux, np.full(part.n, s), n=samples, seed=seed, keys=part.keys, return_log_q=True)
            maps = post.map_estimate(draws, log_q)
            in_bounds = post.in_bounds(draws)  # the draws a catalog's quantiles count (and the calibration maps by)
            parts.append(result_from_samples(s, part.model_ids, part.truth, maps, draws, in_bounds=in_bounds))
            parts[-1].log_prob = _truth_log_prob(post, part.truth, flux, s)
            parts[-1].below, parts[-1].above, parts[-1].f_reject = metrics.outside_bounds(draws, post.bounds)
            if calibration is not None:
                raw_parts.append(parts[-1])
                calibrated = calibration.apply_samples(draws, np.full(part.n, s), in_bounds)
                parts[-1] = result_from_samples(s, part.model_ids, part.truth, maps, calibrated, in_bounds=in_bounds)
                # the calibration maps intervals, not the density, and keeps each draw's side of the bounds
                for k in ("log_prob", "below", "above", "f_reject"):
                    setattr(parts[-1], k, getattr(raw_parts[-1], k))
            bar.update(part.n)
        results.append(concat_results(parts))
        if calibration is not None:
            raw.append(concat_results(raw_parts))
    bar.close()
    return results, (raw if calibration is not None else None)


def _truth_log_prob(post: Posterior, truth: np.ndarray, flux: np.ndarray, snr: float) -> np.ndarray:
    """log p(truth | spectrum) (n,) in physical units; NaN where no density is defined: a log label at or below
    log_floor (the transform is flat there) or a truth outside the flow's support (label_margin's logit)."""
    lt = post.label_transform
    defined = np.all(~lt.log | (truth > lt.floor), axis=1)
    lp = np.full(truth.shape[0], np.nan)
    if defined.any():
        lp[defined] = post.log_prob(truth[defined], flux[defined], np.full(int(defined.sum()), snr))
    return np.where(np.isfinite(lp), lp, np.nan)


def _saliency(post: Posterior, cube, spectra: _Spectra, snr: float, seed: int, out: Path) -> dict[str, Path]:
    """Saliency maps (Figs. A.4, A.5) of `spectra` at one S/N: the Zarr store and one figure per arm."""
    from .saliency import plot_saliency, saliency_maps, write_saliency

    sal = saliency_maps(post, spectra.flux(cube, snr), np.full(spectra.n, snr), seed=seed)
    sal.attrs["snr"] = snr
    paths = {"saliency_zarr": write_saliency(sal, out / f"saliency_snr{snr:g}.zarr")}
    paths.update(plot_saliency(sal, out, instrument=post.instrument, tag=f"snr{snr:g}"))
    return paths


def _posterior_predictive_check(post: Posterior, cube, spectra: _Spectra, snr: float, *, samples: int, draws: int,
                                seed: int, out: Path) -> tuple[dict[str, Path], list[dict] | None, list[str]]:
    """The PPC (Fig. 7) of `spectra` at one S/N with the cube's own generator: (paths, per-spectrum stats, notes);
    skipped with a note where that generator cannot run here."""
    from .ppc import generator_from_attrs, plot_ppc, posterior_predictive

    gen, why = generator_from_attrs(cube.attrs)
    if gen is None:
        return {}, None, [f"posterior predictive check skipped: {why}"]
    res = posterior_predictive(post, spectra.flux(cube, snr), np.full(spectra.n, snr), gen, cube.attrs,
                               wavelength=cube["wavelength"].values, n_draws=min(draws, samples), samples=samples, seed=seed,
                               keys=spectra.keys, truth=spectra.truth)
    paths = {"ppc_csv": res.write_table(out / f"ppc_snr{snr:g}.csv"),
             "fig7_ppc": plot_ppc(res, out / f"fig7_ppc_snr{snr:g}.png", model_ids=spectra.model_ids)}
    return paths, res.stats(), []


def _summary_meta(post: Posterior, cube_path: Path, spectra: _Spectra, results: Sequence[SNRResult], samples: int,
                  seed: int, figure_snr: float, notes: list[str], seconds: float) -> dict:
    """The run's metadata for summary.md and summary.json."""
    labels = list(post.label_names)
    k68 = list(LEVELS).index(0.68)
    return {
        "model_id": post.model_id,
        "model_dir": str(post.model_dir),
        "cube": str(cube_path),
        "split": spectra.description,
        "n_star": spectra.n,
        "n_samples": int(samples),
        "seed": int(seed),
        "snr": spectra.snrs,
        "figure_snr": figure_snr,
        "labels": labels,
        "seconds": round(seconds, 2),
        "nrmse_normalisation": "range (max - min) of the true label over the evaluated models",
        "coverage_68": {lab: float(np.mean(r.inside[k68, :, j])) for r in results if r.snr == figure_snr for j, lab in enumerate(labels)},
        # the proper score per S/N (nll.csv's mean): one number per S/N to compare networks by
        "nll": {f"{r.snr:g}": metrics.nll_per_label(r.log_prob, len(labels))["nll"] for r in results if r.log_prob is not None},
        # the mean fraction of draws outside the training bounds per S/N (f_reject.csv): the baseline of a catalog's f_reject
        "f_reject": {f"{r.snr:g}": float(np.mean(r.f_reject)) for r in results if r.f_reject is not None},
        "notes": notes,
    }


def _write_summary(tables: Mapping, meta: Mapping, paths: Mapping[str, Path], out: Path, ppc_stats=None) -> dict[str, Path]:
    """`summary.md` (the tables in the paper's layout, the PPC numbers, the figures of `paths`, the notes) and
    `summary.json` (`meta` and every file written, these two included); returns their paths."""
    md = markdown_summary(tables, meta["labels"], meta)
    if ppc_stats:
        md += ppc_markdown(ppc_stats, meta["figure_snr"])
    md += figures_markdown(paths, out)
    if meta["notes"]:
        md += "\n## Notes\n\n" + "\n".join(f"- {n}" for n in meta["notes"]) + "\n"
    written = {"summary_md": out / "summary.md", "summary_json": out / "summary.json"}
    written["summary_md"].write_text(md)
    files = {k: str(v) for k, v in {**paths, **written}.items()}
    written["summary_json"].write_text(json.dumps({**meta, "files": files}, indent=1))
    return written


def evaluate(
    model_dir,
    cube_path,
    out_dir,
    samples: int = 1024,
    split: str | None = "test",
    snr=None,
    seed: int = 0,
    *,
    max_spectra: int | None = None,
    figure_snr: float = REFERENCE_SNR,
    saliency: bool = True,
    saliency_spectra: int = 64,
    ppc: int = 0,
    ppc_draws: int = 16,
    chunk: int = 256,
    device: str = "cpu",
    progress: bool = False,
    calibrated: bool = True,
) -> dict[str, Path]:
    """Evaluate a trained cINN on the held-out spectra of a degraded cube; write tables and figures.

    model_dir: a model directory from `cinn.train` (or a loaded `Posterior`). cube_path: a cube
    flux(model, snr, wavelength) on the model's wavelength grid with the true labels along `model`.
    samples: posterior draws per spectrum (MAP, intervals, SBC ranks, coverage). split: the models of the
    training split to use ('test', 'validation', 'train'; 'all' or None: every model), matched by id AND labels,
    whatever the cube's path (`_select_models`: a cube holding none of them is another cube, evaluated without
    the network's training and validation models). snr: S/N values of the cube to evaluate (default all).
    max_spectra: use the first N selected models only. figure_snr: S/N of the per-spectrum figures (Fig. 5, SBC histograms,
    saliency, PPC; the nearest available). saliency: add the saliency maps (`saliency_spectra` spectra).
    ppc: number of spectra for the posterior predictive check (0: none; each costs 2 + `ppc_draws`
    syntheses with the cube's generator, seconds with the analytic one, minutes with Turbospectrum); skipped,
    with a note, where the cube's generator cannot run here. Returns {name: path} of everything written
    (tables as `<name>_ecsv` and `<name>_csv`, figures, `summary_md`, `summary_json`). calibrated: with an interval
    calibration fitted for the model (`cinn.calibration`), evaluate the calibrated posteriors and add the uncalibrated
    coverage and SBC tables (`coverage_uncalibrated`, `sbc_uncalibrated`) beside.
    """
    from cinn.checkpoint import created_output
    from cinn.ensemble import load
    from cinn.posterior import Posterior
    from gridkit.files import check_output

    _check_options(samples, ppc, max_spectra, ppc_draws=ppc_draws, chunk=chunk, figure_snr=figure_snr, saliency_spectra=saliency_spectra)
    cube_path, out = Path(cube_path), Path(out_dir)
    model_path = model_dir.model_dir if isinstance(model_dir, Posterior) else Path(model_dir)
    check_output(out, [model_path, cube_path], what="out_dir (--out)")  # the report never goes into, onto or around an input
    post = model_dir if isinstance(model_dir, Posterior) else load(model_dir, device=device)
    cube = _open_cube(post, cube_path)
    spectra = _select_spectra(post, cube, cube_path, split, snr, max_spectra)  # everything is checked before out is made

    with created_output(out):  # a failure removes what this run wrote, nothing else
        t0 = time.perf_counter()
        calibration = post.calibration if calibrated else None
        results, raw = _sample_results(post, cube, spectra, int(samples), seed, chunk=chunk, progress=progress, calibration=calibration)
        labels = list(post.label_names)
        tables = make_tables(results, labels, feh_index=labels.index("feh") if "feh" in labels else None)
        if raw is not None:  # the model's interval calibration applied: the uncalibrated coverage and SBC beside
            uncal = make_tables(raw, labels)
            tables["coverage_uncalibrated"], tables["sbc_uncalibrated"] = uncal["coverage"], uncal["sbc"]
        paths: dict[str, Path] = write_tables(tables, out)
        paths.update(make_figures(results, tables, labels, out, figure_snr))
        fig_snr = _nearest_snr(spectra.snrs, figure_snr)
        if saliency:
            paths.update(_saliency(post, cube, spectra.subset(slice(saliency_spectra)), fig_snr, seed, out))
        ppc_stats, notes = None, []
        if ppc > 0:
            ppc_paths, ppc_stats, notes = _posterior_predictive_check(post, cube, spectra.subset(slice(ppc)), fig_snr, samples=int(samples),
                                                                      draws=int(ppc_draws), seed=seed, out=out)
            paths.update(ppc_paths)
        meta = _summary_meta(post, cube_path, spectra, results, samples, seed, fig_snr, notes, time.perf_counter() - t0)
        paths.update(_write_summary(tables, meta, paths, out, ppc_stats))
    return paths


def fit_interval_calibration(model_dir, cube_path, *, split: str = "validation", samples: int = 1024, seed: int = 0, snr=None,
                             max_spectra: int | None = None, write: bool = True, overwrite: bool = False):
    """Fit the model's interval calibration (`cinn.calibration`) on the spectra of `split` (default: the validation
    split: held out from the weights, it only chose the epoch; the test split stays untouched for evaluation) in a
    noisy cube `cube_path` (its models matched by id and labels), at every S/N of the cube (or `snr`); with `write`,
    store it in the model directory, where `cinn.load`, `gridkit infer` and `gridkit evaluate` pick it up (an
    existing one is replaced only with `overwrite`)."""
    from cinn import calibration
    from cinn.ensemble import load

    if write and not overwrite and (Path(model_dir) / calibration.FILE).exists():
        raise ConfigError(f"{Path(model_dir) / calibration.FILE} exists: pass overwrite=True (--overwrite) to fit it again")

    post = load(model_dir)
    cube = _open_cube(post, Path(cube_path))
    spectra = _select_spectra(post, cube, cube_path, split, snr, max_spectra)
    flux = np.concatenate([spectra.flux(cube, s) for s in spectra.snrs])
    snrs = np.repeat(np.asarray(spectra.snrs, dtype=float), spectra.n)
    truth = np.tile(spectra.truth, (len(spectra.snrs), 1))
    keys = np.tile(np.asarray(spectra.keys), len(spectra.snrs))
    cal = calibration.fit(post, flux, snrs, truth, n=int(samples), seed=seed, keys=keys,
                          source=f"{Path(cube_path).name}: {spectra.description}, {spectra.n} models x {len(spectra.snrs)} S/N")
    if write:
        calibration.write(model_dir, cal)
    return cal
