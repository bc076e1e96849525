"""Good-pixel masks of observed spectra: from the data-quality flags, the fluxes and their errors, and lists of
wavelength intervals (hydrogen-line cores in the star's rest frame, telluric bands in the observatory's frame).

Wavelengths in Angstrom; intervals are closed [lo, hi]. A pixel is good when every given criterion passes:

- flux finite;
- sigma (if given) finite and > 0; ivar (if given) finite and > 0 (ivar = 0 is the usual "no data" flag);
- QUAL (if given): no bit of `bad_qual_bits` set (default: any non-zero QUAL is bad);
- outside every `intervals` (same frame as the wavelengths) and every `rest_intervals` (the star's rest frame,
  shifted here by `rv_kms` with `frames.shift_wavelength`).

`good_pixel_mask` returns the mask and, per spectrum, exact counts of the pixels each criterion rejects (a pixel
failing several criteria counts under each) and of the good pixels.

**Hydrogen lines** (`BALMER_AIR`, NIST Atomic Spectra Database, air wavelengths of the fine-structure blends):
only H-alpha lies in the 4MOST HR green + red arms (H-gamma, H-delta, H-epsilon in the blue arm). Default
half-width `HYDROGEN_HALF_WIDTH` = 1.5 A: the Doppler core of H-alpha, formed in the chromosphere and out of LTE
(LTE grids neither model it nor its activity variations), is ~1 A wide in FGK stars; the margin covers the
R = 20000 LSF (0.33 A FWHM) and RV errors of a few km/s. The wings, which LTE models well and which carry Teff,
stay in.

**Telluric bands** (`TELLURIC_BANDS`, observatory frame, air): in 5160-5730 A (green) there is no strong
telluric band; in 6100-6790 A (red) the O2 gamma band (b 1Sigma_g+ - X 3Sigma_g-, v' = 2 - v'' = 0; band head at
6276.6 A, Babcock & Herzberg 1948, ApJ 108, 167) with lines of ~10 % depth at R = 20000, and weak H2O lines
(a few % at Paranal's typical 2-3 mm of precipitable water) around H-alpha, 6450-6600 A. The O2 B band (6867 A)
and the strong H2O bands (6940 A and redder) lie beyond the red arm. The default masks only the O2 gamma band;
the H2O interval is available by name. The extents are approximate (to the A, with margins for the +-30 km/s of
barycentric motion when a spectrum is in the barycentric frame, give `telluric_rv_kms`); check them against a
transmission model of the site (e.g. ESO SkyCalc) before relying on them for precise work.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, GridError
from .frames import air_to_vac, shift_wavelength

#: Balmer lines, air wavelengths (A), NIST ASD.
BALMER_AIR = {"H_alpha": 6562.80, "H_beta": 4861.33, "H_gamma": 4340.47, "H_delta": 4101.74, "H_epsilon": 3970.07}
#: Default half-width (A) of the masked hydrogen-line cores.
HYDROGEN_HALF_WIDTH = 1.5
#: Telluric bands (observatory frame, air, A): name -> (lo, hi, what).
TELLURIC_BANDS = {
    "O2_gamma": (6274.0, 6330.0, "O2 gamma band (b-X 2-0), head at 6276.6 A"),
    "H2O_6500": (6450.0, 6600.0, "weak H2O lines around H-alpha (a few % at 2-3 mm PWV)"),
    "O2_B": (6865.0, 6950.0, "O2 B band (b-X 1-0); beyond the 4MOST HR red arm"),
}
#: The bands masked by default: the strong ones within the 4MOST HR green and red arms.
DEFAULT_TELLURIC = ("O2_gamma",)
MEDIA = ("air", "vacuum")

COUNT_KEYS = ("n_pixels", "flux_not_finite", "sigma_bad", "ivar_bad", "qual_bad", "in_intervals", "in_rest_intervals", "n_good")


def _medium(medium: str) -> str:
    if medium not in MEDIA:
        raise ConfigError(f"medium must be one of {', '.join(MEDIA)}, got {medium!r}")
    return medium


def _as_intervals(intervals, name: str) -> np.ndarray:
    """(k, 2) float array of closed intervals [lo, hi] in A, checked."""
    if intervals is None:
        return np.zeros((0, 2))
    try:
        arr = np.asarray([(float(i[0]), float(i[1])) for i in intervals], dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError, IndexError):
        raise ConfigError(f"{name} must be a list of (lo, hi) wavelength pairs in A, got {intervals!r}") from None
    bad = ~(np.isfinite(arr).all(axis=1) & (arr[:, 0] > 0) & (arr[:, 1] >= arr[:, 0]))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{name}: interval {i} must have 0 < lo <= hi (A), got {tuple(arr[i])}")
    return arr


def hydrogen_intervals(half_width: float = HYDROGEN_HALF_WIDTH, medium: str = "air",
                       lines: Sequence[str] | None = None) -> list[tuple[float, float]]:
    """The cores of the Balmer lines `lines` (default: all of BALMER_AIR) as [centre - half_width, centre +
    half_width] in A, star's rest frame, in `medium` ('air' or 'vacuum')."""
    if not (isinstance(half_width, (int, float)) and math.isfinite(half_width) and half_width > 0):
        raise ConfigError(f"half_width must be a finite number > 0 (A), got {half_width!r}")
    names = list(BALMER_AIR) if lines is None else list(lines)
    unknown = [n for n in names if n not in BALMER_AIR]
    if unknown:
        raise ConfigError(f"lines: {', '.join(map(repr, unknown))} not in {', '.join(BALMER_AIR)}")
    centres = np.array([BALMER_AIR[n] for n in names])
    if _medium(medium) == "vacuum":
        centres = air_to_vac(centres)
    return [(float(c - half_width), float(c + half_width)) for c in centres]


def telluric_intervals(bands: Iterable[str] = DEFAULT_TELLURIC, medium: str = "air") -> list[tuple[float, float]]:
    """The telluric bands named in `bands` (keys of TELLURIC_BANDS; default: DEFAULT_TELLURIC) as (lo, hi) in A,
    observatory frame, in `medium`."""
    names = [bands] if isinstance(bands, str) else list(bands)
    unknown = [n for n in names if n not in TELLURIC_BANDS]
    if unknown:
        raise ConfigError(f"bands: {', '.join(map(repr, unknown))} not in {', '.join(TELLURIC_BANDS)}")
    out = [(TELLURIC_BANDS[n][0], TELLURIC_BANDS[n][1]) for n in names]
    if _medium(medium) == "vacuum":
        out = [(float(air_to_vac(lo)), float(air_to_vac(hi))) for lo, hi in out]
    return out


def interval_mask(wavelength: np.ndarray, intervals) -> np.ndarray:
    """True (n,) where wavelength (n,) in A lies within any closed interval [lo, hi] of `intervals`."""
    wl = np.asarray(wavelength, dtype=np.float64)
    iv = _as_intervals(intervals, "intervals")
    if iv.shape[0] == 0:
        return np.zeros(wl.shape, bool)
    # sorted wavelength not required: test each interval (few intervals, many pixels)
    out = np.zeros(wl.shape, bool)
    for lo, hi in iv:
        out |= (wl >= lo) & (wl <= hi)
    return out


def good_pixel_mask(wavelength, flux, sigma=None, ivar=None, qual=None, *, bad_qual_bits: int | None = None,
                    intervals=(), rest_intervals=(), rv_kms=0.0, relativistic: bool = False):
    """The good-pixel mask (..., n) of spectra flux (..., n) on wavelength (n,) in A, and the exact counts per
    spectrum of what each criterion rejects (see the module docstring).

    sigma, ivar, qual: (..., n) arrays like flux, or None. bad_qual_bits: QUAL bits that make a pixel bad (None:
    any non-zero QUAL). intervals: (lo, hi) pairs in A in the wavelengths' frame (e.g. `telluric_intervals()` for
    a topocentric spectrum). rest_intervals: pairs in the star's rest frame (e.g. `hydrogen_intervals()`),
    shifted by rv_kms (scalar, or (...) one per spectrum) to the wavelengths' frame.

    Returns (good (..., n) bool, counts: {key: int array (...)} with keys COUNT_KEYS)."""
    wl = np.asarray(wavelength, dtype=np.float64)
    fl = np.asarray(flux, dtype=np.float64)
    if wl.ndim != 1 or fl.shape[-1:] != wl.shape:
        raise GridError(f"flux must have the wavelength axis ({wl.size} pixels) last, got shape {fl.shape}")
    lead = fl.shape[:-1]

    def _like(arr, name):
        a = np.asarray(arr)
        if a.shape != fl.shape:
            raise GridError(f"{name} must have the shape of flux {fl.shape}, got {a.shape}")
        return a

    bad = {}
    bad["flux_not_finite"] = ~np.isfinite(fl)
    if sigma is not None:
        s = _like(sigma, "sigma").astype(np.float64)
        bad["sigma_bad"] = ~(np.isfinite(s) & (s > 0))
    if ivar is not None:
        iv = _like(ivar, "ivar").astype(np.float64)
        bad["ivar_bad"] = ~(np.isfinite(iv) & (iv > 0))
    if qual is not None:
        q = _like(qual, "qual")
        if not np.issubdtype(q.dtype, np.integer):
            if not np.all(np.isfinite(q)) or np.any(q != np.round(q)):
                raise GridError(f"qual must hold integer flags, got dtype {q.dtype} with non-integer values")
            q = q.astype(np.int64)
        if bad_qual_bits is None:
            bad["qual_bad"] = q != 0
        else:
            if isinstance(bad_qual_bits, bool) or not isinstance(bad_qual_bits, (int, np.integer)) or bad_qual_bits < 0:
                raise ConfigError(f"bad_qual_bits must be a non-negative integer bit mask, got {bad_qual_bits!r}")
            bad["qual_bad"] = (q.astype(np.int64) & int(bad_qual_bits)) != 0
    bad["in_intervals"] = np.broadcast_to(interval_mask(wl, intervals), fl.shape)
    rest = _as_intervals(rest_intervals, "rest_intervals")
    if rest.shape[0]:
        rv = np.asarray(rv_kms, dtype=np.float64)
        if rv.shape not in ((), lead):
            raise GridError(f"rv_kms must be a scalar or have one value per spectrum {lead}, got shape {rv.shape}")
        if rv.ndim == 0:
            shifted = shift_wavelength(rest, rv, relativistic)
            bad["in_rest_intervals"] = np.broadcast_to(interval_mask(wl, shifted), fl.shape)
        else:
            flat_rv = rv.reshape(-1)
            m = np.stack([interval_mask(wl, shift_wavelength(rest, v, relativistic)) for v in flat_rv])
            bad["in_rest_intervals"] = m.reshape(fl.shape)
    else:
        bad["in_rest_intervals"] = np.zeros(fl.shape, bool)
    any_bad = np.zeros(fl.shape, bool)
    for b in bad.values():
        any_bad |= b
    good = ~any_bad
    counts = {"n_pixels": np.full(lead, wl.size, dtype=np.int64)}
    for key in COUNT_KEYS[1:-1]:
        counts[key] = bad[key].sum(axis=-1).astype(np.int64) if key in bad else np.zeros(lead, dtype=np.int64)
    counts["n_good"] = good.sum(axis=-1).astype(np.int64)
    return good, counts
