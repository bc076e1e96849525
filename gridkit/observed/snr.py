"""S/N of observed spectra: DER_SNR (Stoehr et al. 2008) when no errors are given."""
from __future__ import annotations

import math

import numpy as np

from ..kernels import noise
from ..kernels.rebin import pixel_widths

#: The ceiling of a DER_SNR estimate (a noise-free spectrum measures as infinite S/N; a survey needs a finite one).
MAX_ESTIMATED_SNR = 10_000.0


def der_snr(flux: np.ndarray) -> np.ndarray:
    """DER_SNR (Stoehr et al. 2008) S/N per pixel of rows of flux (..., n), ignoring NaN."""
    f = np.asarray(flux, dtype=np.float64)
    signal = np.nanmedian(f, axis=-1)
    d = np.abs(2.0 * f[..., 2:-2] - f[..., :-4] - f[..., 4:])
    nse = 1.482602 / math.sqrt(6.0) * np.nanmedian(d, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nse > 0, signal / nse, np.inf)


def estimate_snr(flux: np.ndarray, wavelength: np.ndarray, convention: str = noise.PER_ANGSTROM) -> float:
    """The DER_SNR S/N of one spectrum in `convention` (per Angstrom: per pixel / sqrt(median pixel width / 1 A)),
    at most MAX_ESTIMATED_SNR (a noise-free input has no measurable noise)."""
    s = float(der_snr(flux))
    if convention == noise.PER_ANGSTROM:
        s /= math.sqrt(np.median(pixel_widths(wavelength)))
    return min(s, MAX_ESTIMATED_SNR)
