"""`fourmostify`: observed spectra of higher resolution onto an instrument's pixels, lazily.

Convolve to the instrument's resolving power, make missing every pixel the input cannot support (NaN input,
pixels near an end of the coverage, pixels outside it), rebin onto the pixels of the chosen arms and, when
asked, add noise to reach an S/N. The options live in `FourmostifyConfig`, checked once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .. import instruments as _instruments
from ..degradation import ops, params
from ..errors import ConfigError, GridError
from ..files import jsonable
from ..kernels import lnlambda, lsf, noise
from ..schema import SNR, WAVELENGTH


#: an input resolving power within this fraction of the instrument's is the instrument's: no convolution
SAME_RESOLUTION = 1e-3


@dataclass(frozen=True)
class FourmostifyConfig:
    """Options of `fourmostify`: the spectra's native resolving power (None: the dataset's `resolving_power`
    attr, required), the instrument and arms, and optionally one S/N to reach by adding noise (per Angstrom by
    default; with `input_snr` the noise added is the quadrature difference, otherwise the input counts as
    noise-free)."""

    input_resolving_power: float | None = None
    instrument: str = "4most-hr"
    arms: tuple[str, ...] | None = None
    snr: float | None = None
    input_snr: float | None = None
    seed: int = 0
    snr_convention: str = noise.PER_ANGSTROM

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen: normalise once, here
        inst = params.instrument_and_arms(self, set_)
        if self.input_resolving_power is not None:
            set_("input_resolving_power", params.input_resolving_power_value(self.input_resolving_power))
            if abs(self.input_resolving_power / inst.resolving_power - 1) > SAME_RESOLUTION:
                params.below(inst.resolving_power, self.input_resolving_power, f"the resolving power of {inst.name}")
        if self.snr is not None:
            values = params.snr_values(self.snr)
            if values.size != 1:
                raise ConfigError(f"fourmostify adds noise at one S/N, got {values.tolist()}")
            set_("snr", float(values[0]))
        if self.input_snr is not None:
            s = float(self.input_snr)
            if not s > 0:
                raise ConfigError(f"input_snr must be > 0 (inf for a noise-free input), got {self.input_snr!r}")
            set_("input_snr", s)
        if self.snr is not None and self.input_snr is not None and not self.snr < self.input_snr:
            raise ConfigError(f"snr = {self.snr:g} must be below input_snr = {self.input_snr:g}")
        set_("seed", int(self.seed))
        params.convention(self.snr_convention)

    @property
    def noise_snr(self) -> float | None:
        """The S/N of the noise to add (the quadrature difference with `input_snr`), None for no noise."""
        if self.snr is None:
            return None
        return self.snr if self.input_snr is None else float(noise.quadrature_snr(np.array([self.snr]), self.input_snr)[0])

    def to_dict(self) -> dict:
        return jsonable({**dataclasses.asdict(self), "instrument": _instruments.get(self.instrument).name})


def fourmostify(ds: xr.Dataset, input_resolving_power: float | None = None, *, instrument="4most-hr", arms=None, snr: float | None = None,
                input_snr: float | None = None, seed: int = 0, snr_convention: str = noise.PER_ANGSTROM) -> xr.Dataset:
    """Observed spectra flux(star, wavelength) of higher native resolution to the instrument's grid, lazily.

    Convolve from `input_resolving_power` (default: the dataset's attr; required) to the instrument's R,
    rebin onto the pixels of the chosen arms, and with `snr` add noise to reach that S/N (per Angstrom by
    default; with `input_snr` the noise added is the quadrature difference, otherwise the input is taken
    as noise-free). Missing or masked input pixels (NaN, or gaps of the wavelength axis) are never filled:
    every output pixel they touch, every pixel within 3 sigma of the LSF of an end of the input's coverage (a
    gap or the last sample), and every pixel outside the coverage, is NaN, and `n_missing(star)`
    counts them (`missing_report` lists the ranges). Raises GridError when an arm has no input at all.
    """
    cfg = FourmostifyConfig(input_resolving_power=input_resolving_power, instrument=instrument, arms=arms, snr=snr, input_snr=input_snr,
                            seed=seed, snr_convention=snr_convention)
    return apply(ds, cfg)


def apply(ds: xr.Dataset, cfg: FourmostifyConfig) -> xr.Dataset:
    """`fourmostify` with its options already checked in `cfg`."""
    inst = _instruments.get(cfg.instrument)
    chosen = inst.select(cfg.arms)
    fl = params.flux(ds, 2, "fourmostify")
    row = fl.dims[0]
    wl = params.wavelength(ds)
    if cfg.input_resolving_power is None and "resolving_power" not in ds.attrs:
        raise ConfigError("fourmostify needs input_resolving_power (the native R of the observed spectra)")
    r_in = params.input_resolving_power(ds, cfg.input_resolving_power)
    at_instrument = abs(r_in / inst.resolving_power - 1) <= SAME_RESOLUTION  # e.g. 4MOST's own spectra: rebinned only
    if cfg.input_resolving_power is None and not at_instrument:
        params.below(inst.resolving_power, r_in, f"the resolving power of {inst.name}")
    bounds = ops.segment_bounds(wl)
    for arm in chosen:
        if not any(a < arm.wl_max and b > arm.wl_min for a, b in bounds):
            raise GridError(f"arm {arm.name!r} ({arm.wl_min:g}-{arm.wl_max:g} A) has no input pixels (the input covers "
                            f"{ops.describe_coverage(wl)}); choose arms the spectra cover")
    out = ds
    if not at_instrument:
        out = ops._to_resolution(ds, fl, wl, inst.resolving_power, r_in, "propagate")
        # pixels closer than 3 sigma of the kernel to an end of the input's coverage lack data: missing, not guessed
        sigma = lsf.kernel_sigma_lnlambda(inst.resolving_power, r_in)
        near_edge = np.zeros(wl.size, dtype=bool)
        for seg in lnlambda.segments(wl):
            x = np.log(wl[seg])
            near_edge[seg] = (x - x[0] < 3 * sigma) | (x[-1] - x < 3 * sigma)
        out = out.assign(flux=out.flux.where(xr.DataArray(~near_edge, dims=(WAVELENGTH,))))
    target = inst.wavelength(cfg.arms)
    out = ops._rebin_to(out, out.flux, wl, target, "nan", "propagate")
    if cfg.snr is not None:
        noisy = ops._add_noise(out, out.flux, target, np.array([cfg.noise_snr]), cfg.seed, cfg.snr_convention)
        out = noisy.assign(flux=noisy.flux.isel({SNR: 0}, drop=True))
        snr_values = np.full(ds.sizes[row], cfg.snr)
    else:
        snr_values = np.full(ds.sizes[row], np.nan if cfg.input_snr is None else cfg.input_snr)
    out = out.assign(
        snr=((row,), snr_values, {"long_name": "signal-to-noise ratio", "convention": cfg.snr_convention}),
        n_missing=out.flux.isnull().sum(WAVELENGTH).astype(np.int32).assign_attrs(long_name="missing (NaN) pixels on the instrument grid"),
    )
    return out.assign_attrs(instrument=inst.name, arms=",".join(cfg.arms), resolving_power=float(inst.resolving_power),
                            input_resolving_power=r_in)


__all__ = ["FourmostifyConfig", "fourmostify", "apply"]
