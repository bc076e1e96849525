"""S/N of a spectrum from its per-pixel errors, in the grid's conventions (`kernels.noise`): per pixel and per
Angstrom.

Per pixel: S/N_pixel = median(flux / sigma) over the good pixels (robust to lines, masked pixels and outliers).
Per Angstrom: photon noise adds in quadrature over an interval, so a pixel of width w (A) has
S/N_per_A = S/N_pixel * sqrt(1 A / w), the inverse of the noise kernel's S/N_pixel = S/N_per_A * sqrt(w / 1 A);
per-A values are taken pixel by pixel (median of flux / sigma / sqrt(w)), which equals S/N_pixel / sqrt(w) on
a grid of constant pixel width (4MOST HR: 0.05 A pixels, S/N 50 per A = 11.2 per pixel).

The S/N of spectra without errors is estimated by DER_SNR in `gridkit.observed.snr`.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import GridError
from .rebin import pixel_widths


def snr_from_sigma(wavelength: np.ndarray, flux: np.ndarray, sigma: np.ndarray, good: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(S/N per pixel, S/N per A), each of shape (...), of spectra flux (..., n) with errors sigma (..., n) (flux
    units) on wavelength (n,) in A (pixel widths from the centres, `rebin.pixel_widths`). good: (..., n) or (n,)
    bool, the pixels to use (default all); pixels with non-finite flux or sigma <= 0 are never used. A spectrum
    without a usable pixel gets NaN."""
    wl = np.asarray(wavelength, dtype=np.float64)
    fl = np.asarray(flux, dtype=np.float64)
    sg = np.asarray(sigma, dtype=np.float64)
    if wl.ndim != 1 or fl.shape[-1:] != wl.shape:
        raise GridError(f"flux must have the wavelength axis ({wl.size} pixels) last, got shape {fl.shape}")
    if sg.shape != fl.shape:
        raise GridError(f"sigma must have the shape of flux {fl.shape}, got {sg.shape}")
    ok = np.isfinite(fl) & np.isfinite(sg) & (sg > 0)
    if good is not None:
        gm = np.asarray(good)
        if gm.dtype != bool:
            raise GridError(f"good must be a boolean mask, got dtype {gm.dtype}")
        try:
            ok &= np.broadcast_to(gm, fl.shape)
        except ValueError:
            raise GridError(f"good must have the shape of flux {fl.shape} or ({wl.size},), got {gm.shape}") from None
    width = pixel_widths(wl)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-bad spectra: NaN
        ratio = np.where(ok, fl / sg, np.nan)
        per_pixel = np.nanmedian(ratio, axis=-1)
        per_a = np.nanmedian(ratio / np.sqrt(width), axis=-1)
    return per_pixel, per_a
