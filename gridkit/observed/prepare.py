"""Observed spectra, star by star, to what the network reads: masked, in the grid's frame, at rest, on the
instrument's pixels, continuum-normalised, with their S/N per Angstrom.

For one star (one spectrum per arm, or one joined spectrum; `gridkit.io.read_spectra` Spectrum objects):

1. **mask**: the readers' good pixels (QUAL = 0, finite flux, sigma > 0, ivar > 0) and, when asked, telluric bands
   (in the observed frame) and hydrogen-line cores (in the star's frame) (`gridkit.kernels.masks`); masked
   pixels are never zero: they become NaN and every instrument pixel they touch is missing;
2. **medium**: vacuum wavelengths to air, the medium of the grids and the instrument (`kernels.frames.vac_to_air`);
3. **RV** (`rv='measure'`): the spectrum, provisionally normalised by the continuum operator, against a small
   library of template spectra (the analytic generator at three FGK stars, at the instrument's resolving power):
   the template that correlates best, then chi-square over velocity against it (`kernels.rv.measure_rv`); `rv='header'` takes the file's
   RV keyword, `rv='none'` takes the spectrum as at rest. The spectrum is moved to its rest frame. A topocentric
   spectrum's RV is reported barycentric (`kernels.frames.barycentric_correction` added);
4. **resolution and pixels**: convolved to the instrument's R when the input's is higher (an input at the
   instrument's R is only rebinned), rebinned onto the instrument's pixels (`fourmostify`, flux-conserving);
5. **continuum** (`normalise='continuum'`): the ONE operator (`kernels.continuum`) on the instrument's pixels,
   exactly as `gridkit degrade --normalise continuum` applies it to a training grid; `'none'` keeps the flux
   as given (already continuum-normalised spectra, e.g. the UVES Sun);
6. **S/N per Angstrom**: from sigma over the good pixels (`kernels.snr.snr_from_sigma`: per pixel x
   sqrt(1 A / pixel width), the grid's noise convention), DER_SNR where the file has no errors.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .. import instruments as _instruments
from ..errors import ConfigError, GridError
from ..files import jsonable
from ..schema import check_normalisation, normalisation_record
from ..kernels import continuum as _continuum
from ..kernels import frames, masks, rv as _rv, snr as _snr

RV_MODES = ("none", "measure", "header")
NORMALISATIONS = ("none", "continuum")
#: the template library of the RV measurement: (teff, logg, feh) of an FGK dwarf, a hot dwarf and a giant
RV_TEMPLATES = ((5777.0, 4.44, 0.0), (6500.0, 4.2, -0.5), (4600.0, 2.5, -0.3))
#: formats whose spectra are at the instrument's resolving power when the file does not say it
INSTRUMENT_FORMATS = ("4most-l1", "4most-l1-multi")
#: SPECSYS values of a spectrum in an observed (not the star's) frame
OBSERVED_FRAMES = ("TOPOCENT", "GEOCENTR", "BARYCENT", "HELIOCEN", "LSRK", "LSRD", "GALACTOC", "LOCALGRP", "CMBDIPOL")


@dataclass(frozen=True)
class PrepareOptions:
    """How observed spectra are prepared (see the module docstring). normalise: 'none' (the flux is taken as
    continuum-normalised) or 'continuum' (the operator `continuum`, the same a training grid must be degraded
    with); rv: 'none', 'measure' or 'header'; rv_range: km/s searched; barycentric: report a topocentric spectrum's
    RV barycentric; mask_tellurics / mask_hydrogen: mask the telluric bands / hydrogen-line cores; mask_intervals:
    further (lo, hi) A intervals to mask, in the observed frame."""

    normalise: str = "none"
    continuum: _continuum.ContinuumConfig = field(default_factory=_continuum.ContinuumConfig)
    rv: str = "none"
    rv_range: tuple[float, float] = _rv.RV_RANGE
    barycentric: bool = True
    mask_tellurics: bool = False
    mask_hydrogen: bool = False
    mask_intervals: tuple = ()

    def __post_init__(self):
        if self.normalise not in NORMALISATIONS:
            raise ConfigError(f"normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")
        if self.rv not in RV_MODES:
            raise ConfigError(f"rv must be one of {RV_MODES}, got {self.rv!r}")
        if isinstance(self.continuum, dict):
            object.__setattr__(self, "continuum", _continuum.ContinuumConfig.from_dict(self.continuum))
        lo, hi = (float(v) for v in self.rv_range)
        if not lo < hi:
            raise ConfigError(f"rv_range must be (low, high) km/s with low < high, got {self.rv_range!r}")
        object.__setattr__(self, "rv_range", (lo, hi))
        object.__setattr__(self, "mask_intervals", tuple((float(a), float(b)) for a, b in self.mask_intervals))
        for a, b in self.mask_intervals:
            if not 0 < a < b:
                raise ConfigError(f"mask interval ({a}, {b}) must satisfy 0 < lo < hi (Angstrom)")

    @property
    def normalisation(self) -> str:
        """What the survey records and a model checks: 'none', or the operator with its parameters (JSON)."""
        return normalisation_record(self.continuum if self.normalise == "continuum" else None)

    def to_dict(self) -> dict:
        return jsonable({"normalise": self.normalise, "continuum": self.continuum.to_dict(), "rv": self.rv, "rv_range": self.rv_range,
                         "barycentric": self.barycentric, "mask_tellurics": self.mask_tellurics, "mask_hydrogen": self.mask_hydrogen,
                         "mask_intervals": self.mask_intervals})


# ---------------------------------------------------------------------------------------------- templates
@functools.lru_cache(maxsize=8)
def rv_templates(instrument: str, arms: tuple[str, ...]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(wavelength, fluxes) of the RV templates: analytic spectra of RV_TEMPLATES over the arms (with the synthesis
    margins, ~500 km/s), at the instrument's resolving power, in air, at rest. Made once per process."""
    from ..degradation import to_resolution
    from ..schema import from_arrays
    from ..synth import AnalyticSynthesizer

    inst = _instruments.get(instrument)
    syn = AnalyticSynthesizer(wavelength_range=tuple(arms))
    wl = syn.wavelength()
    flux = np.stack([syn.synthesize({"teff": t, "logg": g, "feh": z, "vmic": 1.0}) for t, g, z in RV_TEMPLATES])
    ds = to_resolution(from_arrays(wl, flux, {}), inst.resolving_power).compute()
    return wl, tuple(np.asarray(ds.flux.values[i], dtype=np.float64) for i in range(len(RV_TEMPLATES)))


# ---------------------------------------------------------------------------------------------- one star
@dataclass
class Joined:
    """One star's spectra joined along wavelength (arms in order), in air, with the reader's good mask."""

    wavelength: np.ndarray
    flux: np.ndarray
    sigma: np.ndarray | None
    good: np.ndarray
    meta: dict
    n_pixels: int


def join(spectra: Sequence, medium: str = "air") -> Joined:
    """The spectra of one star (e.g. its arms) as one axis in `medium`; overlapping spectra are refused."""
    if not spectra:
        raise GridError("no spectra to join")
    parts = sorted(spectra, key=lambda s: float(s.wavelength[0]))
    for a, b in zip(parts, parts[1:]):
        if b.wavelength[0] <= a.wavelength[-1]:
            raise GridError(f"spectra of star {a.meta.get('star_id')} overlap in wavelength ({a.meta.get('source')}, {b.meta.get('source')}): "
                            "give one spectrum per arm")
    wl = np.concatenate([_in_medium(s.wavelength, s.medium, medium) for s in parts])
    flux = np.concatenate([s.flux for s in parts])
    sigma = None if any(s.sigma is None for s in parts) else np.concatenate([s.sigma for s in parts])
    good = np.concatenate([s.good for s in parts])
    meta = dict(parts[0].meta)
    meta["source"] = ";".join(dict.fromkeys(str(s.meta.get("source", "")) for s in parts))
    meta["arms"] = ",".join(str(s.meta.get("arm") or "") for s in parts)
    meta["medium_in"] = ",".join(dict.fromkeys(s.medium for s in parts))
    return Joined(wl, flux, sigma, good, meta, int(wl.size))


def _in_medium(wavelength: np.ndarray, medium: str, target: str) -> np.ndarray:
    if medium == target:
        return np.asarray(wavelength, dtype=np.float64)
    return frames.vac_to_air(wavelength) if target == "air" else frames.air_to_vac(wavelength)


def _mask(star: Joined, opts: PrepareOptions, rv_kms: float = 0.0) -> tuple[np.ndarray, int]:
    """(good pixels, the pixels the user's masks remove on top of the reader's)."""
    intervals = list(opts.mask_intervals) + (masks.telluric_intervals() if opts.mask_tellurics else [])
    rest = masks.hydrogen_intervals() if opts.mask_hydrogen else []
    if not intervals and not rest:
        return star.good, 0
    extra = masks.interval_mask(star.wavelength, intervals) if intervals else np.zeros(star.n_pixels, bool)
    if rest:
        extra |= masks.interval_mask(star.wavelength, [(a * frames.doppler_factor(rv_kms), b * frames.doppler_factor(rv_kms)) for a, b in rest])
    return star.good & ~extra, int((star.good & extra).sum())


def measure_star_rv(star: Joined, good: np.ndarray, opts: PrepareOptions, instrument: str, arms: tuple[str, ...]) -> _rv.RVResult:
    """The star's RV (km/s, in the spectrum's frame) against the template library (the best chi-square)."""
    norm, cont = _continuum.normalise(star.wavelength, star.flux, good, opts.continuum)
    sigma = None if star.sigma is None else star.sigma / cont
    ok = good & np.isfinite(norm)
    twl, tfluxes = rv_templates(instrument, arms)
    flux = np.where(ok, norm, 1.0)
    # the template that correlates best (a cheap CCF each), then the chi-square measurement against it alone
    peaks = [_rv.measure_rv(star.wavelength, flux, sigma, ok, twl, tfl, rv_range=opts.rv_range, method="ccf").ccf_peak for tfl in tfluxes]
    return _rv.measure_rv(star.wavelength, flux, sigma, ok, twl, tfluxes[int(np.nanargmax(peaks))], rv_range=opts.rv_range)


def _header_rv(meta: dict) -> float:
    for key in ("rv", "vrad", "radvel"):
        v = meta.get(key)
        if v is not None and math.isfinite(float(v)):
            return float(v)
    raise GridError(f"{meta.get('source')}: rv='header' but the file states no radial velocity (keyword RV/VRAD); measure it (--rv measure)")


def prepare_star(spectra: Sequence, cfg=None, opts: PrepareOptions | None = None) -> dict:
    """One star's spectra prepared (module docstring) with the instrument, resolution and noise options `cfg` (a
    `FourmostifyConfig`) and the preparation `opts`; returns a row: flux on the instrument's pixels (NaN where
    missing), snr (per A: given, from sigma, or DER_SNR), snr_header, rv, rv_err (km/s, barycentric where the
    spectrum was topocentric; NaN with rv='none'), barycentric_correction, n_masked (input pixels masked),
    n_missing (instrument pixels missing), n_duplicates, ra, dec, mjd, object, source, medium_in, frame_in."""
    from .pipeline import FourmostifyConfig, apply
    from .spectrum import spectrum_dataset

    cfg = FourmostifyConfig() if cfg is None else cfg
    opts = PrepareOptions() if opts is None else opts
    inst = _instruments.get(cfg.instrument)
    star = join(spectra, inst.medium)
    meta = star.meta
    good, n_user = _mask(star, opts)
    specsys = str(meta.get("specsys") or "").upper()
    rv_obs, rv_err = math.nan, math.nan
    if opts.rv == "measure":
        res = measure_star_rv(star, good, opts, inst.name, cfg.arms)
        rv_obs, rv_err = res.rv, res.rv_err
    elif opts.rv == "header":
        rv_obs = _header_rv(meta)
    shift = rv_obs if math.isfinite(rv_obs) else 0.0
    if opts.mask_hydrogen:
        good, n_user = _mask(star, opts, shift)
    bc = 0.0
    if opts.barycentric and specsys == "TOPOCENT" and math.isfinite(rv_obs) and all(meta.get(k) is not None for k in ("ra", "dec", "mjd")):
        bc = float(frames.barycentric_correction(meta["ra"], meta["dec"], meta["mjd"]))
    r_in = cfg.input_resolving_power or meta.get("resolving_power") or (inst.resolving_power if meta.get("format") in INSTRUMENT_FORMATS else None)
    if r_in is None:
        raise ConfigError(f"{meta.get('source')}: the native resolving power is not in the file; pass input_resolving_power "
                          "(--input-resolving-power)")
    ds = spectrum_dataset(frames.to_rest_frame(star.wavelength, shift) if shift else star.wavelength, np.where(good, star.flux, np.nan),
                          name=str(meta.get("source")), star_id=str(meta.get("star_id")))
    ds.attrs["resolving_power"] = float(r_in)
    res = apply(ds, cfg).compute()
    flux = np.asarray(res.flux.values[0], dtype=np.float64)
    target = np.asarray(res.wavelength.values, dtype=np.float64)
    if opts.normalise == "continuum":
        flux = _continuum.normalise(target, flux, np.isfinite(flux), opts.continuum)[0]
    snr = float(res.snr.values[0])  # given (cfg.snr / cfg.input_snr), else measured
    if not np.isfinite(snr) and star.sigma is not None:
        snr = float(_snr.snr_from_sigma(star.wavelength, star.flux, star.sigma, good)[1])
    if not np.isfinite(snr):
        from .snr import estimate_snr

        snr = estimate_snr(flux, target, cfg.snr_convention, name=str(meta.get("source")))
    return {
        "flux": flux.astype(np.float32), "snr": snr, "snr_header": _float(meta.get("snr")),
        "rv": rv_obs + bc if math.isfinite(rv_obs) else math.nan, "rv_err": float(rv_err), "barycentric_correction": bc,
        "n_masked": int((~good).sum()), "n_missing": int(np.isnan(flux).sum()), "n_duplicates": int(meta.get("n_duplicates", 0)),
        "ra": _float(meta.get("ra")), "dec": _float(meta.get("dec")), "mjd": _float(meta.get("mjd")),
        "object": str(meta.get("object") or ""), "source": str(meta.get("source") or ""), "medium_in": meta.get("medium_in", ""),
        "frame_in": specsys or "unknown",
    }


def _float(value) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


__all__ = ["PrepareOptions", "prepare_star", "join", "measure_star_rv", "rv_templates", "normalisation_record", "check_normalisation",
           "RV_MODES", "NORMALISATIONS"]
