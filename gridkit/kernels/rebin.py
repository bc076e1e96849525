"""Flux-conserving rebinning as a sparse matrix, built once per (input grid, output grid) pair.

Pixels are bins whose edges lie halfway between neighbouring centres; the outer edges of a segment lie
half a step beyond its first and last centres. An axis with gaps (steps much larger than the sampling,
see `lnlambda.segments`) is several segments: no bin ever spans a gap. An output pixel's value is the
overlap-weighted mean of the input pixels it covers, so  sum(out * out_width) = integral of the
piecewise-constant input over the covered range. An output pixel that is not fully covered by input
bins is flagged in `covered`; what happens to it is the caller's policy.
"""
from __future__ import annotations

import hashlib

import numpy as np
from scipy import sparse

from .lnlambda import GAP_FACTOR, segments


def bin_edges(centres: np.ndarray, gap_factor: float = GAP_FACTOR) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) edges (n,) of the bins around strictly increasing `centres`, segment by segment."""
    c = np.asarray(centres, dtype=np.float64)
    lo = np.empty_like(c)
    hi = np.empty_like(c)
    typical = float(np.median(np.diff(c))) if c.size > 1 else 0.0
    for seg in segments(c, gap_factor):
        x = c[seg]
        if x.size == 1:  # a lone sample between gaps: a pixel of the axis's typical (median) step
            lo[seg], hi[seg] = x - typical / 2, x + typical / 2
            continue
        mid = 0.5 * (x[1:] + x[:-1])
        lo[seg] = np.concatenate([[x[0] - (mid[0] - x[0])], mid])
        hi[seg] = np.concatenate([mid, [x[-1] + (x[-1] - mid[-1])]])
    return lo, hi


def pixel_widths(centres: np.ndarray, gap_factor: float = GAP_FACTOR) -> np.ndarray:
    """Widths (n,) of the pixels around `centres` (same units)."""
    lo, hi = bin_edges(centres, gap_factor)
    return hi - lo


def rebin_matrix(wl_in: np.ndarray, wl_out: np.ndarray, gap_factor: float = GAP_FACTOR) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The (n_out, n_in) sparse matrix W with flux_out = W @ flux_in, and `covered` (n_out,) bool: True
    where the output bin lies entirely within input bins. Cached per grid pair (see `cached_rebin_matrix`)."""
    lo_in, hi_in = bin_edges(wl_in, gap_factor)
    lo_out, hi_out = bin_edges(wl_out, gap_factor)
    j0 = np.searchsorted(hi_in, lo_out, side="right")  # first input bin ending after the output bin starts
    j1 = np.searchsorted(lo_in, hi_out, side="left")  # first input bin starting at/after it ends
    counts = np.maximum(j1 - j0, 0)
    rows = np.repeat(np.arange(wl_out.size), counts)
    starts = np.repeat(j0, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = starts + offsets
    overlap = np.minimum(hi_out[rows], hi_in[cols]) - np.maximum(lo_out[rows], lo_in[cols])
    width = (hi_out - lo_out)[rows]
    frac = overlap / np.where(width > 0, width, 1.0)
    keep = frac > 1e-12
    rows, cols, frac = rows[keep], cols[keep], frac[keep]
    coverage = np.bincount(rows, weights=frac, minlength=wl_out.size)
    covered = np.abs(coverage - 1.0) <= 1e-9
    w = sparse.csr_matrix((frac, (rows, cols)), shape=(wl_out.size, wl_in.size))
    return w, covered


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a, dtype=np.float64)
    return hashlib.sha1(a.tobytes()).hexdigest()


_CACHE: dict[tuple[str, str, float], tuple[sparse.csr_matrix, np.ndarray]] = {}


def cached_rebin_matrix(wl_in: np.ndarray, wl_out: np.ndarray, gap_factor: float = GAP_FACTOR) -> tuple[sparse.csr_matrix, np.ndarray]:
    """`rebin_matrix`, built once per (wl_in, wl_out) pair in this process and reused."""
    key = (_digest(wl_in), _digest(wl_out), float(gap_factor))
    if key not in _CACHE:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = rebin_matrix(np.asarray(wl_in, dtype=np.float64), np.asarray(wl_out, dtype=np.float64), gap_factor)
    return _CACHE[key]


def apply_matrix(matrix: sparse.spmatrix, flux: np.ndarray) -> np.ndarray:
    """flux (..., n_in) -> (..., n_out) = rows of flux times matrix^T. NaN input propagates to the output
    pixels it overlaps, and nowhere else."""
    flux = np.asarray(flux, dtype=np.float64)
    rows = flux.reshape(-1, flux.shape[-1])
    out = np.asarray(matrix @ rows.T).T
    return out.reshape(*flux.shape[:-1], matrix.shape[0])


def rebin_rows(wl_in: np.ndarray, flux: np.ndarray, wl_out: np.ndarray, gap_factor: float = GAP_FACTOR) -> tuple[np.ndarray, np.ndarray]:
    """Rebin rows of flux (..., n_in) from wl_in onto wl_out conserving flux; returns (flux_out, covered)."""
    w, covered = cached_rebin_matrix(wl_in, wl_out, gap_factor)
    return apply_matrix(w, flux), covered
