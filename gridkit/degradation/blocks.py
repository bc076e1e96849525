"""Block functions: numpy in, numpy out, applied per dask chunk by the wrappers in `gridkit.degradation.ops`.

They choose the kernel of `gridkit.kernels` for the wavelength sampling at hand (one fixed kernel on a uniform
ln lambda grid, blocks of constant kernel on a grid of constant step, a sparse matrix otherwise), work segment
by segment (never across a gap of the wavelength axis), and return float32. Their arguments are already
validated by the public functions.
"""
from __future__ import annotations

import numpy as np

from ..errors import GridError
from ..kernels import lnlambda, lsf, noise, rebin as _rebin, rotation
from ..store import rng_for


def raise_if_not_finite(flux: np.ndarray, wl: np.ndarray) -> None:
    bad = ~np.isfinite(flux)
    if bad.any():
        first = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)
        raise GridError(
            f"flux has {int(bad.sum())} NaN/inf value(s) in this chunk, first at wavelength {wl[first[-1]]:.3f} A "
            f"(row {first[0] if len(first) > 1 else 0} of the chunk); fix the input, or pass missing='propagate' to carry them as missing pixels"
        )


def _as_float32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _checked_float64(flux, wl: np.ndarray, missing: str) -> np.ndarray:
    """A block's flux as float64, refused when it has NaN/inf and missing == 'error'."""
    flux = np.asarray(flux, dtype=np.float64)
    if missing == "error":
        raise_if_not_finite(flux, wl)
    return flux


def _on_lnlambda(flux: np.ndarray, wl: np.ndarray, missing: str, op) -> np.ndarray:
    """Apply `op(rows, dlnlam)` segment by segment on a uniform ln lambda grid: segments already uniform in
    ln lambda are used as they are, others are interpolated onto a uniform ln lambda grid as fine as their
    finest pixel and back."""
    flux = _checked_float64(flux, wl, missing)
    out = np.empty_like(flux)
    for seg in lnlambda.segments(wl):
        x = wl[seg]
        part = flux[..., seg]
        if x.size < 3:
            out[..., seg] = part
            continue
        if lnlambda.is_uniform_lnlambda(x):
            out[..., seg] = op(part, float(np.log(x[-1] / x[0]) / (x.size - 1)))
        else:
            grid, dl = lnlambda.lnlambda_span(x[0], x[-1], lnlambda.finest_dlnlam(x))
            fine = lnlambda.interp_rows(grid, x, part)
            out[..., seg] = lnlambda.interp_rows(x, grid, op(fine, dl))
    return out


def lsf_block(flux, *, wl, resolving_power, input_resolving_power, missing):
    flux = _checked_float64(flux, wl, missing)
    out = np.empty_like(flux)
    for seg in lnlambda.segments(wl):
        x = wl[seg]
        if x.size >= 3 and lnlambda.is_uniform_lnlambda(x):  # one fixed kernel: a plain convolution
            dl = float(np.log(x[-1] / x[0]) / (x.size - 1))
            out[..., seg] = lsf.gaussian_lsf_lnlambda(flux[..., seg], dl, resolving_power, input_resolving_power)
        elif x.size >= 3 and lsf.is_uniform_linear(x):  # constant step in A: blocks of (almost) constant kernel
            out[..., seg] = lsf.gaussian_lsf_linear(flux[..., seg], x, resolving_power, input_resolving_power)
        else:  # the same Gaussian in ln lambda on the samples themselves (sparse matrix, no interpolation)
            m = lsf.cached_lsf_matrix(x, resolving_power, input_resolving_power)
            out[..., seg] = _rebin.apply_matrix(m, flux[..., seg])
    return _as_float32(out)


def rotate_block(flux, vbroad, *, wl, limb_darkening, missing):
    v = np.broadcast_to(np.asarray(vbroad, dtype=np.float64), np.shape(flux)[:-1])
    still = v == 0  # vbroad = 0 is the identity, also where the grid would need resampling
    if still.all():
        if missing == "error":
            raise_if_not_finite(np.asarray(flux), wl)
        return _as_float32(flux)

    def op(rows, dl):
        return rotation.rotate_rows(rows, dl, v, limb_darkening)

    out = _on_lnlambda(flux, wl, missing, op)
    out[still] = np.asarray(flux)[still]
    return _as_float32(out)


def rebin_block(flux, *, wl, matrix, uncovered, missing):
    flux = _checked_float64(flux, wl, missing)
    out = _rebin.apply_matrix(matrix, flux)
    if uncovered is not None:
        out[..., uncovered] = np.nan
    return _as_float32(out)


def normalise_block(flux, *, wl, config):
    """Rows of flux divided by their continuum (`kernels.continuum`, the one operator of grids and observed spectra)."""
    from ..kernels import continuum

    return _as_float32(continuum.normalise(wl, np.asarray(flux, dtype=np.float64), None, config)[0])


def noise_block(flux, row_keys, *, snr_pixel, snr_keys, seed):
    flux = np.asarray(flux, dtype=np.float64)
    lead = flux.shape[:-1]
    n = flux.shape[-1]
    rows = flux.reshape(-1, n)
    keys = np.asarray(row_keys).reshape(-1)
    # row r at S/N s draws from rng_for(seed, row_key, snr_key): chunking-independent. One (row, S/N) at a
    # time straight into the float32 output, without float64 temporaries of the whole block (3x its size)
    out = np.empty((rows.shape[0], len(snr_keys), n), dtype=np.float32)
    for i, key in enumerate(keys.tolist()):
        for j, skey in enumerate(snr_keys):
            draws = rng_for(seed, key, skey).standard_normal(n)
            out[i, j] = noise.apply_noise(rows[i], snr_pixel[j], draws)
    return out.reshape(*lead, len(snr_keys), n)
