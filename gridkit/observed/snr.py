"""S/N of observed spectra: DER_SNR (Stoehr et al. 2008) when no errors are given."""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..kernels import noise
from ..kernels.rebin import pixel_widths

#: The ceiling of a DER_SNR estimate (a noise-free spectrum measures as infinite S/N; a survey needs a finite one).
MAX_ESTIMATED_SNR = 10_000.0


def der_snr(flux: np.ndarray) -> np.ndarray:
    """DER_SNR (Stoehr et al. 2008) S/N per pixel of rows of flux (..., n), ignoring NaN: median(flux) / noise.

    A row without measurable noise is inf when its median flux is > 0 (noise-free), NaN otherwise (a flat zero,
    or no finite pixel: nothing to measure); a negative median flux gives a negative value, as the formula does."""
    f = np.asarray(flux, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, handled below
        signal = np.nanmedian(f, axis=-1)
        d = np.abs(2.0 * f[..., 2:-2] - f[..., :-4] - f[..., 4:])
        nse = 1.482602 / math.sqrt(6.0) * np.nanmedian(d, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nse > 0, signal / nse, np.where(signal > 0, np.inf, np.nan))


def estimate_snr(flux: np.ndarray, wavelength: np.ndarray, convention: str = noise.PER_ANGSTROM, name: str | None = None) -> float:
    """The DER_SNR S/N of one spectrum in `convention` (per Angstrom: per pixel / sqrt(median pixel width / 1 A)),
    at most MAX_ESTIMATED_SNR (a noise-free input has no measurable noise).

    A spectrum whose S/N cannot be measured -- an estimate that is not > 0: negative or zero median flux (not a
    continuum-normalised spectrum), no finite pixel -- is marked, never given a made-up value: the result is NaN
    (the survey's "no S/N", which `gridkit infer` refuses, naming the star) and a UserWarning names the spectrum
    (`name`), the estimate and the median flux."""
    s = float(der_snr(flux))
    if not s > 0:
        f = np.asarray(flux, dtype=np.float64)
        median = float(np.median(f[np.isfinite(f)])) if np.isfinite(f).any() else math.nan
        warnings.warn(f"DER_SNR cannot measure the S/N of {name or 'a spectrum'}: the estimate is {s:.4g} with median flux {median:.4g} "
                      "(a continuum-normalised spectrum has median flux near 1); its snr is NaN (not measured), which `gridkit infer` "
                      "refuses: give the S/N (--input-snr) or fix or leave out the spectrum", UserWarning, stacklevel=2)
        return math.nan
    if convention == noise.PER_ANGSTROM:
        s /= math.sqrt(np.median(pixel_widths(wavelength)))
    return min(s, MAX_ESTIMATED_SNR)
