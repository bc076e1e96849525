"""Gaussian line-spread function at constant resolving power on a uniform ln(lambda) grid.

At constant R the FWHM in wavelength is lambda/R at every lambda, i.e. a constant FWHM = 1/R in
ln(lambda): on a uniform ln(lambda) grid the LSF is one fixed kernel, so a plain convolution is exact.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, sparse

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Kernels are truncated at this many sigma (the weight lost there is < 1e-8, and is renormalised).
TRUNCATE = 6.0


def kernel_sigma_lnlambda(resolving_power: float, input_resolving_power: float = math.inf) -> float:
    """Sigma in ln(lambda) of the Gaussian that takes a spectrum at `input_resolving_power` to
    `resolving_power`: FWHM^2 = (1/R)^2 - (1/R_in)^2 (widths add in quadrature), computed as
    (1/R) * sqrt(1 - (R/R_in)^2) so that no finite R or R_in overflows (R_in = 1e300 is effectively infinite)."""
    r, r_in = float(resolving_power), float(input_resolving_power)
    if not (r > 0 and math.isfinite(r)):
        raise ValueError(f"resolving_power must be finite and > 0, got {resolving_power}")
    if not r < r_in:
        raise ValueError(f"resolving_power ({r:g}) must be below the input resolving power ({r_in:g})")
    fwhm = (1.0 / r) * math.sqrt(1.0 - (r / r_in) ** 2)  # r / r_in < 1 (0 for r_in = inf): never overflows
    return fwhm / FWHM_PER_SIGMA


def gaussian_kernel(sigma_pixels: float, truncate: float = TRUNCATE) -> np.ndarray:
    """A normalised Gaussian kernel (2k+1,) sampled at whole pixels (the fluxes are point samples), so its
    variance is sigma^2 to < 1e-6 for sigma >= 1 pixel; narrower kernels tend to the identity."""
    if sigma_pixels <= 0:
        return np.ones(1)
    k = max(1, int(math.ceil(truncate * sigma_pixels)))
    x = np.arange(-k, k + 1) / float(sigma_pixels)
    w = np.exp(-0.5 * x * x)
    return w / w.sum()


def convolve_rows(flux: np.ndarray, kernel: np.ndarray, missing: str = "propagate") -> np.ndarray:
    """Convolve every row of flux (..., n) with a symmetric kernel (2k+1,). Edges: the outermost value
    is repeated (mode 'nearest'). NaN input pixels make NaN every output pixel they would touch
    (missing='propagate'); nothing is ever filled in."""
    flux = np.asarray(flux, dtype=np.float64)
    if kernel.size == 1:
        return flux.copy()
    bad = ~np.isfinite(flux)
    if bad.any():
        out = ndimage.convolve1d(np.where(bad, 0.0, flux), kernel, axis=-1, mode="nearest")
        touched = ndimage.convolve1d(bad.astype(np.float64), np.ones_like(kernel), axis=-1, mode="nearest") > 0
        out[touched] = np.nan
        return out
    return ndimage.convolve1d(flux, kernel, axis=-1, mode="nearest")


def gaussian_lsf_lnlambda(flux: np.ndarray, dlnlam: float, resolving_power: float, input_resolving_power: float = math.inf) -> np.ndarray:
    """Convolve rows of `flux` (..., n) sampled uniformly in ln(lambda) with a Gaussian of FWHM = lambda/R
    (the quadrature difference with `input_resolving_power` where finite).

    dlnlam: grid step in ln(lambda). Returns float64 of the same shape; NaN propagates to the pixels it touches.
    """
    sigma = kernel_sigma_lnlambda(resolving_power, input_resolving_power) / float(dlnlam)
    return convolve_rows(flux, gaussian_kernel(sigma))


def is_uniform_linear(wavelength: np.ndarray, rtol: float = 1e-3) -> bool:
    """True where every step of `wavelength` equals the mean step within `rtol` (relative): a grid of constant
    pixel width in Angstrom, like most observed spectra and synthetic grids."""
    wl = np.asarray(wavelength, dtype=np.float64)
    if wl.size < 3:
        return True
    d = np.diff(wl)
    step = (wl[-1] - wl[0]) / (wl.size - 1)
    return bool(np.all(np.abs(d - step) <= rtol * step))


#: On a grid of constant step the kernel's width in pixels grows with lambda: blocks over which it changes by
#: at most this fraction share one kernel (taken at the block's centre).
BLOCK_WIDTH_CHANGE = 5e-4


def gaussian_lsf_linear(flux: np.ndarray, wavelength: np.ndarray, resolving_power: float, input_resolving_power: float = math.inf,
                        max_change: float = BLOCK_WIDTH_CHANGE) -> np.ndarray:
    """Convolve rows of `flux` (..., n) sampled with a constant step in wavelength (A) with a Gaussian of
    FWHM = lambda/R (the quadrature difference with `input_resolving_power`).

    The kernel's sigma in pixels, sigma_ln lambda / step, grows with lambda: the axis is cut into blocks whose
    lambda varies by at most a fraction `max_change` (so does the width), each convolved with the kernel of its
    centre, reading its neighbours beyond the block (no seams). Edges: the outermost value is repeated.
    NaN propagates to every output pixel a NaN's kernel touches. Returns float64 of the same shape."""
    flux = np.asarray(flux, dtype=np.float64)
    wl = np.asarray(wavelength, dtype=np.float64)
    n = wl.size
    sigma_ln = kernel_sigma_lnlambda(resolving_power, input_resolving_power)
    if n < 3:
        return flux.copy()
    step = (wl[-1] - wl[0]) / (n - 1)
    out = np.empty_like(flux)
    start = 0
    while start < n:
        stop = int(np.searchsorted(wl, wl[start] * (1.0 + max_change), side="right"))
        stop = min(max(stop, start + 1), n)
        centre = 0.5 * (wl[start] + wl[stop - 1])
        kernel = gaussian_kernel(sigma_ln * centre / step)
        k = kernel.size // 2
        lo, hi = max(0, start - k), min(n, stop + k)
        out[..., start:stop] = convolve_rows(flux[..., lo:hi], kernel)[..., start - lo:stop - lo]
        start = stop
    return out


def gaussian_lsf_matrix(wavelength: np.ndarray, resolving_power: float, input_resolving_power: float = math.inf,
                        truncate: float = TRUNCATE) -> sparse.csr_matrix:
    """The same Gaussian LSF (FWHM = lambda/R, in ln lambda) for rows sampled on any increasing grid, as a
    sparse (n, n) matrix: flux_out = M @ flux. Row i holds G(ln lambda_j - ln lambda_i) times the ln-lambda
    width of pixel j, normalised to 1 (a Riemann sum of the convolution integral on the samples themselves:
    no interpolation of the spectrum). Block-diagonal over the segments of the axis (never across a gap).
    On a uniform ln lambda grid it equals the discrete convolution with `gaussian_kernel`, away from the edges."""
    from .lnlambda import segments
    from .rebin import bin_edges

    wl = np.asarray(wavelength, dtype=np.float64)
    sigma = kernel_sigma_lnlambda(resolving_power, input_resolving_power)
    lo, hi = bin_edges(wl)
    x = np.log(wl)
    q = np.log(hi) - np.log(lo)  # ln-lambda width of each pixel
    rows_all, cols_all, vals_all = [], [], []
    for seg in segments(wl):
        xs = x[seg]
        j0 = np.searchsorted(xs, xs - truncate * sigma, side="left")
        j1 = np.searchsorted(xs, xs + truncate * sigma, side="right")
        counts = j1 - j0
        rows = np.repeat(np.arange(xs.size), counts)
        cols = np.repeat(j0, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        w = np.exp(-0.5 * ((xs[cols] - xs[rows]) / sigma) ** 2) * q[seg][cols]
        w /= np.bincount(rows, weights=w, minlength=xs.size)[rows]
        rows_all.append(rows + seg.start)
        cols_all.append(cols + seg.start)
        vals_all.append(w)
    return sparse.csr_matrix((np.concatenate(vals_all), (np.concatenate(rows_all), np.concatenate(cols_all))), shape=(wl.size, wl.size))


_MATRICES: dict = {}


def cached_lsf_matrix(wavelength: np.ndarray, resolving_power: float, input_resolving_power: float = math.inf) -> sparse.csr_matrix:
    """`gaussian_lsf_matrix`, built once per (grid, R, R_in) in this process and reused."""
    import hashlib

    wl = np.ascontiguousarray(wavelength, dtype=np.float64)
    key = (hashlib.sha1(wl.tobytes()).hexdigest(), float(resolving_power), float(input_resolving_power))
    if key not in _MATRICES:
        if len(_MATRICES) > 16:
            _MATRICES.clear()
        _MATRICES[key] = gaussian_lsf_matrix(wl, resolving_power, input_resolving_power)
    return _MATRICES[key]
