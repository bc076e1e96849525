"""Observed spectra made from grid spectra with known truths, as 4MOST and the ESO archive deliver them: in a moving
star's frame, times a smooth continuum (a low-order polynomial times a blaze-like curve per arm), with Gaussian noise
of a stated S/N per Angstrom and its sigma, quality-flagged pixels and a NaN gap. The project's tests write them as
files (`gridkit.testing.fourmost_files`, `gridkit.io.write_eso_sdp`) and check what `gridkit fourmostify` recovers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.spectrum import Spectrum
from ..kernels import frames


@dataclass
class Observation:
    """What `observe` made: the spectra (one per arm) and the truths behind them."""

    spectra: list[Spectrum]
    rv: float
    snr: float
    n_masked: int
    continuum: np.ndarray  # (n,) the multiplicative continuum on the instrument pixels (arms concatenated)


def blaze_continuum(wavelength: np.ndarray, rng: np.random.Generator, variation: float = 0.25) -> np.ndarray:
    """A smooth multiplicative continuum on one arm: a quadratic times a sinc^2 blaze, varying by about `variation`."""
    x = (wavelength - wavelength.mean()) / np.ptp(wavelength)  # -0.5 .. 0.5
    poly = 1.0 + rng.uniform(-0.15, 0.15) * x + rng.uniform(-0.2, 0.2) * x**2
    blaze = np.sinc(x * rng.uniform(0.8, 1.2) * np.sqrt(variation) * 1.2) ** 2
    return 1000.0 * poly * blaze / blaze.max()


def observe(rest_wavelength: np.ndarray, rest_flux: np.ndarray, pixels: dict[str, np.ndarray], *, rv: float, snr: float, seed: int = 0,
            masked_fraction: float = 0.02, gap: tuple[float, float] | None = (5400.0, 5405.0), medium: str = "air",
            meta: dict | None = None) -> Observation:
    """The spectrum `rest_flux` (continuum-normalised, at the instrument's resolving power, on a fine rest-frame axis
    `rest_wavelength` in air) observed at radial velocity `rv` (km/s) on the pixel centres `pixels` {arm: wavelength
    (air)}, times a blaze continuum, with noise at `snr` per Angstrom (sigma = flux / S/N per pixel), `masked_fraction`
    of the pixels flagged, and the pixels in `gap` NaN. medium 'vacuum' writes the wavelengths in vacuum."""
    rng = np.random.default_rng(seed)
    spectra, conts, n_masked = [], [], 0
    for arm, wl in pixels.items():
        rest = frames.to_rest_frame(wl, rv)
        flux = np.interp(rest, rest_wavelength, rest_flux)
        cont = blaze_continuum(wl, rng)
        width = np.gradient(wl)
        sigma = flux * cont / (snr * np.sqrt(width))
        observed = flux * cont + sigma * rng.standard_normal(wl.size)
        good = rng.random(wl.size) >= masked_fraction
        if gap is not None:
            inside = (wl >= gap[0]) & (wl <= gap[1])
            observed[inside] = np.nan
            good &= ~inside
        n_masked += int((~good).sum())
        axis = wl if medium == "air" else frames.air_to_vac(wl)
        spectra.append(Spectrum(axis, medium, observed, sigma, good, meta={"arm": arm, **(meta or {})}))
        conts.append(cont)
    return Observation(spectra, float(rv), float(snr), n_masked, np.concatenate(conts))


__all__ = ["Observation", "observe", "blaze_continuum"]
