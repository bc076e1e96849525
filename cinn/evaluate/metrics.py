"""Accuracy and calibration metrics of posterior estimates: pure numpy, no I/O, no xarray.

Conventions: arrays of point estimates and truths are (n_star,) or (n_star, n_label); posterior samples
are (n_star, n_samples) or (n_star, n_samples, n_label). Reductions run over stars (axis 0), so every
function returns one value per label.

Accuracy (Ksoll et al. 2026, A&A 708, A118, Appendix A):
- `residual_stats`: mean residual and its standard deviation of MAP - truth (Table A.1, Fig. 4).
- `nrmse`: root mean square of MAP - truth divided by the range (max - min) of the true label values in
  the evaluated set (Table A.2). The paper normalises the RMSE by the spread of each label so that
  labels in K and dex can be compared; we use the range of the truths of the set being evaluated (the
  test split) and let `scale=` override it (e.g. with the prior's range) where a fixed scale is wanted.
- `interval_width`: width of a central credible interval (Figs. A.2, A.3 use the 68 % interval).

Calibration (simulation-based calibration, Talts et al. 2018; coverage, e.g. Hermans et al. 2022):
- `sbc_ranks`: rank of the truth among the posterior samples (optionally only those inside the training
  bounds); uniform on {0..n_samples} if the posterior is calibrated.
- `rank_histogram`, `rank_uniformity`: histogram of ranks and a chi-square test of uniformity.
- `coverage`: fraction of truths inside the central credible interval of each nominal level; equals the
  level for a calibrated posterior, lower for an over-confident one, higher for an under-confident one.

Proper score (Gneiting & Raftery 2007):
- `nll_per_label`: the mean negative log density of the truths, -log p(truth | spectrum) / n_labels, in the
  labels' physical units: lowest in expectation for the true posterior, so it ranks networks by accuracy and
  calibrated width together, whatever their label transforms.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gridkit.errors import ConfigError

#: Nominal levels of central credible intervals reported by default.
COVERAGE_LEVELS: tuple[float, ...] = (0.5, 0.68, 0.9, 0.95)


def _pair(pred, truth, name_pred: str = "pred") -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ConfigError(f"{name_pred} and truth must have the same shape, got {p.shape} and {t.shape}")
    if p.ndim not in (1, 2) or p.shape[0] == 0:
        raise ConfigError(f"{name_pred} must be (n_star,) or (n_star, n_label) with n_star >= 1, got shape {p.shape}")
    return p, t


def residual_stats(pred, truth, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean residual and standard deviation of `pred - truth` over stars (axis 0), NaNs ignored.

    The paper's Table A.1: Delta-bar = mean(MAP - truth), sigma = std(MAP - truth) (sample std, ddof=1).
    Returns (mean, sigma) with the trailing (label) shape of the inputs; sigma is NaN for one star.
    """
    p, t = _pair(pred, truth)
    d = p - t
    n = np.sum(np.isfinite(d), axis=0)
    mean = np.nanmean(d, axis=0) if d.size else np.full(d.shape[1:], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.nansum((d - mean) ** 2, axis=0) / (n - ddof)
    sigma = np.where(n > ddof, np.sqrt(np.maximum(var, 0.0)), np.nan)
    return np.asarray(mean), np.asarray(sigma)


def rmse(pred, truth) -> np.ndarray:
    """Root mean square of `pred - truth` over stars (axis 0), NaNs ignored."""
    p, t = _pair(pred, truth)
    return np.sqrt(np.nanmean((p - t) ** 2, axis=0))


def nrmse(pred, truth, scale=None) -> np.ndarray:
    """Normalised RMSE: sqrt(mean((pred - truth)^2)) / scale over stars (axis 0).

    scale: per-label normalisation; default the range max(truth) - min(truth) of the evaluated set
    (the paper's Table A.2 normalisation by each label's range). A label whose truths are all equal
    (range 0) gets NaN rather than infinity.
    """
    p, t = _pair(pred, truth)
    if scale is None:
        scale = np.nanmax(t, axis=0) - np.nanmin(t, axis=0)
    scale = np.asarray(scale, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, rmse(p, t) / np.where(scale > 0, scale, 1.0), np.nan)


def interval_width(lower, upper) -> np.ndarray:
    """Width upper - lower of intervals, element-wise (e.g. the 84th minus the 16th percentile)."""
    lo, hi = _pair(lower, upper, "lower")
    if np.any(hi < lo):
        i = int(np.flatnonzero((hi < lo).ravel())[0])
        raise ConfigError(f"upper must be >= lower; element {i} has lower {lo.ravel()[i]} > upper {hi.ravel()[i]}")
    return hi - lo


def central_interval(samples, level: float, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the central `level` credible interval of samples along `axis`
    (the (1 - level)/2 and (1 + level)/2 quantiles)."""
    _check_level(level)
    s = np.asarray(samples, dtype=np.float64)
    lo, hi = np.quantile(s, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=axis)
    return lo, hi


def _check_level(level: float) -> None:
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"credible level must lie in (0, 1), got {level!r}")


def _samples_truth(samples, truth) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(samples, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if s.ndim != t.ndim + 1 or s.ndim not in (2, 3) or s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[1:]:
        raise ConfigError(
            f"samples must be (n_star, n_samples[, n_label]) matching truth (n_star[, n_label]); got samples {s.shape} and truth {t.shape}"
        )
    if s.shape[1] < 1:
        raise ConfigError(f"samples need at least one draw per star, got shape {s.shape}")
    return s, t


def sbc_ranks(samples, truth, in_bounds=None) -> np.ndarray:
    """Simulation-based-calibration rank of each truth among its posterior samples.

    rank = number of samples strictly below the truth, in {0, ..., n_samples}; for a calibrated posterior
    and truths drawn from the prior the ranks are uniform on that set (Talts et al. 2018). Returns an
    integer array shaped like `truth`.

    in_bounds: optional (n_star, n_samples) bool, the draws that count (those inside the training bounds, from
    which a catalog's quantiles come): the rank r among a star's n_in counted draws, uniform on {0..n_in}, is put
    on the common scale as floor(r (n_samples + 1) / (n_in + 1)) (the rank itself when every draw counts).
    """
    s, t = _samples_truth(samples, truth)
    below = s < t[:, None, ...]
    if in_bounds is None:
        return np.sum(below, axis=1).astype(np.int64)
    ins = np.asarray(in_bounds, dtype=bool)
    if ins.shape != s.shape[:2]:
        raise ConfigError(f"in_bounds must be (n_star, n_samples) = {s.shape[:2]}, got {ins.shape}")
    mask = ins.reshape(ins.shape + (1,) * (s.ndim - 2))
    r = np.sum(below & mask, axis=1)
    n_in = ins.sum(axis=1).reshape((-1,) + (1,) * (s.ndim - 2))
    return np.floor(r * (s.shape[1] + 1) / (n_in + 1)).astype(np.int64)


def rank_histogram(ranks, n_samples: int, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of SBC ranks in `n_bins` equal bins over {0..n_samples} (default: about n_star/20 bins,
    between 5 and 50, so that each bin expects ~20 stars). Returns (counts (n_bins[, n_label]), edges)."""
    r = np.asarray(ranks)
    if n_samples < 1:
        raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
    if np.any(r < 0) or np.any(r > n_samples):
        raise ConfigError(f"ranks must lie in [0, n_samples={n_samples}], got range [{r.min()}, {r.max()}]")
    if n_bins is None:
        n_bins = int(np.clip(r.shape[0] // 20, 5, 50))
    n_bins = int(min(n_bins, n_samples + 1))
    edges = np.linspace(0, n_samples + 1, n_bins + 1)
    flat = r.reshape(r.shape[0], -1)
    counts = np.stack([np.histogram(flat[:, j], bins=edges)[0] for j in range(flat.shape[1])], axis=-1)
    return counts.reshape((n_bins,) + r.shape[1:]), edges


def rank_uniformity(ranks, n_samples: int, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square test that SBC ranks are uniform: (chi2, p_value) per label over the bins of
    `rank_histogram` (expected counts from the exact bin widths in rank units). A small p-value
    (say < 0.01) flags a miscalibrated label."""
    from scipy import stats

    counts, edges = rank_histogram(ranks, n_samples, n_bins)
    n = counts.sum(axis=0)
    # the number of integer ranks in [edges[i], edges[i+1])
    ints = np.diff(np.ceil(edges - 1e-12))
    expected = (ints / (n_samples + 1))[:, *([None] * (counts.ndim - 1))] * n
    chi2 = np.sum((counts - expected) ** 2 / np.where(expected > 0, expected, 1.0), axis=0)
    p = stats.chi2.sf(chi2, df=max(counts.shape[0] - 1, 1))
    return np.asarray(chi2, dtype=float), np.asarray(p, dtype=float)


def coverage(samples, truth, levels: Sequence[float] = COVERAGE_LEVELS) -> np.ndarray:
    """Empirical coverage of central credible intervals: for each nominal level, the fraction of stars
    whose truth lies in the central interval [(1-level)/2, (1+level)/2] quantiles of its samples.

    Returns (n_level[, n_label]). A calibrated posterior gives coverage = level within binomial noise
    sqrt(level (1 - level) / n_star) (see `coverage_error`).
    """
    s, t = _samples_truth(samples, truth)
    out = []
    for level in levels:
        lo, hi = central_interval(s, level, axis=1)
        out.append(np.mean((t >= lo) & (t <= hi), axis=0))
    return np.asarray(out, dtype=float)


def coverage_from_ranks(ranks, n_samples: int, levels: Sequence[float] = COVERAGE_LEVELS) -> np.ndarray:
    """Coverage of central intervals from SBC ranks: the truth lies in the central `level` interval of
    n_samples draws when its normalised rank r / n_samples is within [(1-level)/2, (1+level)/2]."""
    u = np.asarray(ranks, dtype=float) / float(n_samples)
    out = []
    for level in levels:
        _check_level(level)
        out.append(np.mean((u >= (1 - level) / 2) & (u <= (1 + level) / 2), axis=0))
    return np.asarray(out, dtype=float)


def coverage_error(level, n_star: int) -> np.ndarray:
    """One-sigma binomial uncertainty of an empirical coverage at nominal `level` over n_star stars."""
    level = np.asarray(level, dtype=float)
    return np.sqrt(level * (1.0 - level) / max(int(n_star), 1))


def coverage_within_probability(level: float, n_star: int, tolerance: float) -> float:
    """The probability that a calibrated posterior's empirical coverage over n_star stars lands within `level` +-
    `tolerance`: the binomial (n_star, level) mass of the counts k with |k / n_star - level| <= tolerance. With a test
    set of 161 stars it is 0.82 at 68 % +- 0.05, so a table of 39 such cells has about 7 outside even when calibrated
    (the calibration's own fitting error, not counted here, adds to it)."""
    from scipy import stats

    n = max(int(n_star), 1)
    k = np.arange(n + 1)
    inside = np.abs(k / n - float(level)) <= float(tolerance) + 1e-12
    return float(stats.binom.pmf(k[inside], n, float(level)).sum())


def nll_per_label(log_prob, n_labels: int) -> dict:
    """{"nll", "nll_error", "nll_median", "n_undefined"} of -log p / n_labels over spectra: the mean, its standard error
    and the median over the finite values of `log_prob` (n_star,), and how many are NaN or infinite (no density)."""
    lp = np.asarray(log_prob, dtype=np.float64)
    if lp.ndim != 1 or not (isinstance(n_labels, (int, np.integer)) and n_labels >= 1):
        raise ConfigError(f"log_prob must be (n_star,) and n_labels >= 1, got shape {lp.shape} and {n_labels!r}")
    ok = np.isfinite(lp)
    v = -lp[ok] / n_labels
    nan = float("nan")
    return {"nll": float(v.mean()) if v.size else nan, "nll_error": float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else nan,
            "nll_median": float(np.median(v)) if v.size else nan, "n_undefined": int((~ok).sum())}


def outside_bounds(samples, bounds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where posterior draws leave the training bounds: (below (n, d), above (n, d), f_reject (n,)) of samples
    (n, n_samples, d) in physical units and bounds (d, 2): per spectrum and label, the fraction of its draws below the
    lower and above the upper bound, and the fraction of its draws outside in any label (the catalogs' f_reject, which
    the published method rejects). A draw may leave through several labels, so the per-label fractions do not add up
    to f_reject."""
    s = np.asarray(samples, dtype=np.float64)
    b = np.asarray(bounds, dtype=np.float64)
    if s.ndim != 3 or b.shape != (s.shape[-1], 2):
        raise ConfigError(f"samples must be (n, n_samples, d) and bounds (d, 2), got {s.shape} and {b.shape}")
    low, high = s < b[:, 0], s > b[:, 1]
    return low.mean(axis=1), high.mean(axis=1), (low | high).any(axis=-1).mean(axis=1)


def binned_median(x, y, edges) -> tuple[np.ndarray, np.ndarray]:
    """Median of y (n[, k]) in bins of x (n,) with `edges`; returns (medians (n_bin[, k]), counts (n_bin,)).
    Empty bins are NaN. Used for the posterior width against [Fe/H] (Fig. A.3)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    idx = np.digitize(x, edges) - 1
    n_bin = len(edges) - 1
    med = np.full((n_bin,) + y.shape[1:], np.nan)
    counts = np.zeros(n_bin, dtype=int)
    for b in range(n_bin):
        sel = idx == b
        if b == n_bin - 1:
            sel |= x == edges[-1]
        counts[b] = int(sel.sum())
        if counts[b]:
            med[b] = np.nanmedian(y[sel], axis=0)
    return med, counts
