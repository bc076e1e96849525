"""Checks of the degradation options, each made once where a public function receives it.

The public functions (`to_resolution`, `rotate`, `rebin`, `add_noise`, `degrade`, `fourmostify` and the store
jobs) validate their arguments with these and hand the normalised values to private functions that trust them.
"""
from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .. import instruments as _instruments
from ..errors import ConfigError, GridError
from ..kernels import noise
from ..schema import WAVELENGTH, check_wavelength

MISSING = ("error", "propagate")
OUTSIDE = ("error", "nan")
_ANGSTROM = ("angstrom", "angstroms", "aa", "a", "\u00e5", "0.1 nm")


def instrument_and_arms(config, set_) -> _instruments.Instrument:
    """Normalise a config's `instrument` (a registered instrument by its name; an unregistered Instrument as
    given) and `arms` (the chosen arm names, in the instrument's order) with `set_(field, value)`; return the
    instrument."""
    inst = _instruments.get(config.instrument)
    if not isinstance(config.instrument, _instruments.Instrument):
        set_("instrument", inst.name)
    set_("arms", tuple(a.name for a in inst.select(config.arms)))
    return inst


def continuum_operator(value):
    """None (no normalisation), or the continuum operator's config from "continuum"/True (the defaults), a dict, or
    a ContinuumConfig."""
    from ..kernels.continuum import ContinuumConfig

    if value is None or value is False or value == "none":
        return None
    if value is True or value == "continuum":
        return ContinuumConfig()
    if isinstance(value, ContinuumConfig):
        return value
    if isinstance(value, dict):
        return ContinuumConfig.from_dict(value)
    raise ConfigError(f"normalise must be None/'none', 'continuum', a dict of continuum options or a ContinuumConfig, got {value!r}")


def missing_policy(missing: str) -> str:
    if missing not in MISSING:
        raise ConfigError(f"missing must be one of {MISSING}, got {missing!r}")
    return missing


def outside_policy(outside: str) -> str:
    if outside not in OUTSIDE:
        raise ConfigError(f"outside must be one of {OUTSIDE}, got {outside!r}")
    return outside


#: The largest S/N noise is drawn for: the noise of a higher one (relative 1e-15) is below what float32 flux can
#: hold, and S/N values name random streams through snr * 1000 as an integer (1e308 would overflow). For no noise,
#: give no S/N.
MAX_SNR = 1e15
#: the lowest S/N: noise a thousand times the signal carries nothing, and far lower values overflow float32 (1e-300 gave inf)
MIN_SNR = 1e-3


def snr_values(snr) -> np.ndarray:
    """S/N values as a 1-D float64 array: finite, between MIN_SNR and MAX_SNR, distinct."""
    try:
        values = np.atleast_1d(np.asarray(snr, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"snr must be one number or a list of numbers, got {snr!r}") from None
    if values.ndim != 1 or values.size == 0:
        raise ConfigError(f"snr must be one value or a list of values, got {snr!r}")
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        raise ConfigError(f"snr must be finite and > 0; got {values[bad][0]:g}")
    if np.any(values < MIN_SNR):
        raise ConfigError(f"snr must be at least {MIN_SNR:g} (noise a thousand times the signal; smaller values overflow the noisy "
                          f"flux); got {values[values < MIN_SNR][0]:g}")
    if np.any(values > MAX_SNR):
        raise ConfigError(f"snr must be at most {MAX_SNR:g} (the noise of a higher S/N is below float32 precision; for noise-free "
                          f"spectra give no S/N); got {values[values > MAX_SNR][0]:g}")
    if np.unique(values).size != values.size:
        raise ConfigError(f"snr values must be distinct, got {values.tolist()}")
    return values


def convention(value: str, name: str = "snr_convention") -> str:
    if value not in noise.CONVENTIONS:
        raise ConfigError(f"{name} must be one of {noise.CONVENTIONS}, got {value!r}")
    return value


def resolving_power(value, name: str = "resolving_power") -> float:
    """A finite resolving power > 0."""
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not (r > 0 and math.isfinite(r)):
        raise ConfigError(f"{name} must be finite and > 0, got {value}")
    return r


def below(r: float, r_in: float, name: str = "resolving_power") -> float:
    """`r` checked to lie below the input's resolving power `r_in` (a spectrum cannot be sharpened)."""
    if not r < r_in:
        raise ConfigError(f"{name} = {r:g} must be below the input's resolving power ({r_in:g}); a spectrum cannot be sharpened")
    return r


def input_resolving_power_value(value) -> float:
    """An input resolving power: > 0, inf for an unbroadened spectrum. Any finite value is accepted: one far above
    the target's is effectively infinite (the kernel's width, sqrt(1/R^2 - 1/R_in^2), is computed without overflow)."""
    try:
        r_in = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"input_resolving_power must be a number, got {value!r}") from None
    if not r_in > 0:
        raise ConfigError(f"input_resolving_power must be > 0 (inf for unbroadened), got {r_in}")
    return r_in


def input_resolving_power(ds: xr.Dataset, given) -> float:
    """The input's resolving power: `given`, else the dataset's `resolving_power` attr, else inf (unbroadened)."""
    return input_resolving_power_value(ds.attrs.get("resolving_power", math.inf) if given is None else given)


def limb_darkening(value) -> float:
    if not 0 <= float(value) <= 1:
        raise ConfigError(f"limb_darkening must be in [0, 1], got {value}")
    return float(value)


def flux(ds: xr.Dataset, ndim: int | None = None, what: str = "the dataset") -> xr.DataArray:
    """The dataset's flux, with `wavelength` as its last dimension and coordinate (and `ndim` dimensions)."""
    if "flux" not in ds:
        raise GridError(f"the dataset needs a 'flux' variable; found {sorted(map(str, ds.data_vars))}")
    fl = ds["flux"]
    if fl.dims[-1] != WAVELENGTH:
        raise GridError(f"flux must have 'wavelength' as its last dimension, got dims {fl.dims}")
    if WAVELENGTH not in ds.coords:
        raise GridError("the dataset has no 'wavelength' coordinate")
    if ndim is not None and fl.ndim != ndim:
        raise GridError(f"{what} needs flux with dims (model or star, wavelength), got {fl.dims}")
    return fl


def wavelength(ds: xr.Dataset) -> np.ndarray:
    """The dataset's wavelength axis, checked (Angstrom, finite, strictly increasing)."""
    units = ds[WAVELENGTH].attrs.get("units", "Angstrom")
    if str(units).lower() not in _ANGSTROM:
        raise GridError(f"wavelength units must be Angstrom, got {units!r}")
    return check_wavelength(ds[WAVELENGTH].values)


def vbroad(ds: xr.Dataset, value, row: str) -> xr.DataArray:
    """Per-row vbroad (km/s) from `value` (a number or an array along `row`) or, when None, the `vbroad` label."""
    if value is None:
        if "vbroad" not in ds:
            raise GridError("rotate needs vbroad: the dataset has no 'vbroad' label; pass vbroad=<km/s>")
        v = np.asarray(ds["vbroad"].values, dtype=np.float64)
        if ds["vbroad"].dims != (row,):
            raise GridError(f"the 'vbroad' label must lie along {row!r}, got dims {ds['vbroad'].dims}")
        name = "the 'vbroad' label"
    else:
        v = np.broadcast_to(np.asarray(value, dtype=np.float64), (ds.sizes[row],)).copy()
        name = "vbroad"
    bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GridError(f"{name} must be finite and >= 0 km/s; it is {v[i]} for {int(bad.sum())} model(s), first at index {i}")
    return xr.DataArray(v, dims=(row,), coords={row: ds[row]} if row in ds.coords else None)


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
