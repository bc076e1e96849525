"""Gaussian noise with sigma = flux / (S/N per pixel) (Eq. 1 of the published method), and the S/N
conventions: S/N per Angstrom (the published grid's quotation) and S/N per pixel.

Photon noise adds in quadrature over a resolution element, so S/N grows with the square root of the
wavelength interval: S/N_pixel = S/N_per_A * sqrt(pixel_width / 1 A). With 0.05 A pixels an S/N of 100 per A
is 22.4 per pixel.
"""
from __future__ import annotations

import numpy as np

PER_ANGSTROM, PER_PIXEL = "per_angstrom", "per_pixel"
CONVENTIONS = (PER_ANGSTROM, PER_PIXEL)


def snr_per_pixel(snr: np.ndarray, pixel_width: np.ndarray, convention: str = PER_ANGSTROM) -> np.ndarray:
    """S/N per pixel (n_snr, n_pixel) for S/N values (n_snr,) quoted in `convention` and pixel widths
    (n_pixel,) in Angstrom."""
    snr = np.atleast_1d(np.asarray(snr, dtype=np.float64))
    width = np.asarray(pixel_width, dtype=np.float64)
    if convention == PER_ANGSTROM:
        return snr[:, None] * np.sqrt(width)[None, :]
    if convention == PER_PIXEL:
        return np.broadcast_to(snr[:, None], (snr.size, width.size)).copy()
    raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def apply_noise(flux: np.ndarray, snr_pixel: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """flux (..., n) + draws * flux / snr_pixel, broadcasting: draws are standard-normal deviates of the
    output's shape, snr_pixel the S/N per pixel (broadcastable). sigma = |flux| / snr_pixel.

    Computed in the inputs' common precision (float32 inputs stay float32: the training loader draws noise
    on the fly for millions of spectra; the stored cube's float64)."""
    dtype = np.result_type(np.asarray(flux).dtype, np.asarray(draws).dtype, np.asarray(snr_pixel).dtype, np.float32)
    flux = np.asarray(flux, dtype=dtype)
    return flux + np.asarray(draws, dtype=dtype) * np.abs(flux) / np.asarray(snr_pixel, dtype=dtype)


def quadrature_snr(target: np.ndarray, existing: np.ndarray | float) -> np.ndarray:
    """The S/N of the noise that, added to a spectrum already at S/N `existing`, gives S/N `target`:
    1/s^2 = 1/target^2 - 1/existing^2 (an infinite `existing` gives `target`)."""
    t = np.asarray(target, dtype=np.float64)
    e = np.asarray(existing, dtype=np.float64)
    inv = 1.0 / t**2 - np.where(np.isinf(e), 0.0, 1.0 / e**2)
    if np.any(inv <= 0):
        raise ValueError(f"target S/N {t.min():g} must be below the existing S/N {np.max(e):g}")
    return 1.0 / np.sqrt(inv)
