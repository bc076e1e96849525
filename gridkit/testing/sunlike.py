"""A Sun-like observed spectrum with known labels, written as an ESO SDP 1-D spectrum, for the notebooks and for
users without the project's shared data (the UVES Sun in ../shared/data is its real counterpart).

`sun_like_sdp(path)`: the analytic generator's spectrum at solar labels (a simplified LTE-like model, not radiative
transfer), convolved to R = 80000 like a UVES spectrum, on its 0.02 A steps, with Gaussian noise of a stated S/N
per Angstrom and its sigma, and a gap of NaN pixels flagged in QUAL (as a CCD gap), continuum-normalised, in air,
in the rest frame (SPECSYS 'SOURCE'). `fourmostify` then treats it exactly as it treats an archive spectrum.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: solar labels (IAU 2015 nominal Teff and log g; vmic and vbroad as commonly adopted for the Sun)
SUN = {"teff": 5772.0, "logg": 4.44, "feh": 0.0, "vmic": 1.0, "vbroad": 2.0}


def sun_like_sdp(path, *, resolving_power: float = 80000.0, snr: float = 300.0, gap: tuple[float, float] | None = (5400.0, 5405.0),
                 labels: dict | None = None, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the Sun-like spectrum (see the module docstring) to `path`; labels: overrides of `SUN`.
    snr: per Angstrom (sigma = flux / (snr * sqrt(pixel width in A))). Returns the path."""
    from ..degradation import rotate, to_resolution
    from ..io import Spectrum, write_eso_sdp
    from ..schema import from_arrays
    from ..synth.analytic import AnalyticSynthesizer

    lab = {**SUN, **(labels or {})}
    gen = AnalyticSynthesizer()
    wl = np.asarray(gen.wavelength(), dtype=float)
    base = from_arrays(wl, gen.synthesize(lab)[None, :], {k: np.array([v]) for k, v in lab.items()})
    flux = np.asarray(to_resolution(rotate(base), resolving_power).flux.values[0], dtype=float)
    rng = np.random.default_rng(seed)
    sigma = np.abs(flux) / (snr * np.sqrt(np.gradient(wl)))
    observed = flux + sigma * rng.standard_normal(wl.size)
    good = np.ones(wl.size, bool)
    if gap is not None:
        inside = (wl >= gap[0]) & (wl <= gap[1])
        observed[inside] = np.nan
        good &= ~inside
    sp = Spectrum(wl, "air", observed, sigma, good,
                  meta={"object": "Sun-like", "specsys": "SOURCE", "contnorm": True,
                        "resolving_power": float(resolving_power), "ra": 0.0, "dec": 0.0, "mjd": 60000.0})
    return write_eso_sdp(path, sp, overwrite=overwrite)


__all__ = ["SUN", "sun_like_sdp"]
