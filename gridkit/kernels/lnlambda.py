"""Wavelength-axis helpers: segments split at gaps, uniform ln(lambda) grids, resampling onto them.

Pure numpy. Wavelengths in Angstrom (any unit works as long as it is consistent), strictly increasing.
"""
from __future__ import annotations

import math

import numpy as np

#: A step larger than this many times the local median step splits the axis into segments.
GAP_FACTOR = 10.0


def segments(wavelength: np.ndarray, gap_factor: float = GAP_FACTOR) -> list[slice]:
    """Split a strictly increasing axis (n,) into contiguous segments at gaps much larger than the step.

    A gap is a step larger than `gap_factor` times the median step of the whole axis (robust for axes
    that join arms of similar sampling, e.g. 0.02 A over 5150-5740 and 6090-6800 A). Returns slices.
    """
    wl = np.asarray(wavelength, dtype=np.float64)
    if wl.size < 2:
        return [slice(0, wl.size)]
    steps = np.diff(wl)
    # The median of the relative step (d lambda / lambda) handles both linear and ln(lambda) sampling.
    rel = steps / wl[:-1]
    cut = np.flatnonzero(rel > gap_factor * np.median(rel)) + 1
    bounds = [0, *cut.tolist(), wl.size]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def is_uniform_lnlambda(wavelength: np.ndarray, rtol: float = 1e-6) -> bool:
    """True where the steps of ln(wavelength) are all equal within `rtol` (relative)."""
    wl = np.asarray(wavelength, dtype=np.float64)
    if wl.size < 3:
        return True
    d = np.diff(np.log(wl))
    return bool(np.all(np.abs(d - d.mean()) <= rtol * abs(d.mean())))


def finest_dlnlam(wavelength: np.ndarray) -> float:
    """The smallest relative step d lambda / lambda of an axis: a ln(lambda) step that loses no resolution."""
    wl = np.asarray(wavelength, dtype=np.float64)
    return float(np.min(np.diff(np.log(wl))))


def interp_rows(x_new: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear interpolation of every row of y (..., n) from x (n,) onto x_new (m,); NaN propagates to
    the output samples whose two neighbours include a NaN. x_new must lie within [x[0], x[-1]]."""
    x = np.asarray(x, dtype=np.float64)
    x_new = np.asarray(x_new, dtype=np.float64)
    j = np.clip(np.searchsorted(x, x_new, side="right") - 1, 0, x.size - 2)
    t = (x_new - x[j]) / (x[j + 1] - x[j])
    y = np.asarray(y)
    lo = y[..., j]
    hi = y[..., j + 1]
    return lo + (hi - lo) * t


def lnlambda_span(wl_min: float, wl_max: float, max_dlnlam: float) -> tuple[np.ndarray, float]:
    """A uniform ln(lambda) grid from exactly wl_min to exactly wl_max with a step no larger than
    `max_dlnlam`; returns (grid, step)."""
    if not (wl_min > 0 and wl_max > wl_min and max_dlnlam > 0):
        raise ValueError(f"need 0 < wl_min < wl_max and max_dlnlam > 0, got {wl_min}, {wl_max}, {max_dlnlam}")
    span = math.log(wl_max / wl_min)
    n = int(math.ceil(span / max_dlnlam - 1e-9)) + 1
    step = span / (n - 1)
    grid = wl_min * np.exp(np.arange(n) * step)
    grid[-1] = wl_max
    return grid, step
