"""The published degradation chain's parameters: constants and a frozen dataclass whose defaults are the
published method's (Ksoll et al. 2026): R = 80000 on the native grid, a 0.025 A ln lambda working grid,
rotation (Gray profile, limb darkening 0.6) with each model's vbroad, the instrument's R and pixels (4MOST HR,
green and red arms), Gaussian noise at 19 S/N values per Angstrom.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import instruments as _instruments
from ..errors import ConfigError
from ..files import jsonable
from ..kernels import noise
from . import params

#: S/N values of the published grid, per Angstrom.
DEFAULT_SNR: tuple[float, ...] = (10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 45, 50, 80, 100, 130, 180, 250, 1000)
#: The published chain: first to this resolving power on the native grid, then to the working grid.
INTERMEDIATE_RESOLVING_POWER = 80_000.0
#: Pixel step (A) of the working grid between the two convolutions (a ln lambda grid no coarser than this).
WORKING_STEP = 0.025
#: Margin (A) of the working grid beyond each arm.
WORKING_MARGIN = 3.0


@dataclass(frozen=True)
class DegradeConfig:
    """Options of `gridkit.degrade` (see there), checked once when made; `snr=None` means no noise, `vbroad=None`
    each model's `vbroad` label, `input_resolving_power=None` the grid's `resolving_power` attr (inf if absent),
    `intermediate_resolving_power=None` no first convolution."""

    instrument: str = "4most-hr"
    arms: tuple[str, ...] | None = None
    snr: tuple[float, ...] | None = DEFAULT_SNR
    seed: int = 0
    snr_convention: str = noise.PER_ANGSTROM
    input_resolving_power: float | None = None
    intermediate_resolving_power: float | None = INTERMEDIATE_RESOLVING_POWER
    working_step: float = WORKING_STEP
    vbroad: Any = None
    limb_darkening: float = 0.6
    #: the continuum operator applied on the instrument's pixels, after the noise (`gridkit.kernels.continuum`): None
    #: keeps the grid's own continuum normalisation (the published method); "continuum", True or a ContinuumConfig (or
    #: its dict) applies the operator observed spectra prepared with `normalise='continuum'` go through
    normalise: Any = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen: normalise once, here
        params.instrument_and_arms(self, set_)
        if self.snr is not None:
            set_("snr", tuple(float(s) for s in params.snr_values(self.snr)))
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        set_("seed", int(self.seed))
        params.convention(self.snr_convention)
        if self.input_resolving_power is not None:
            set_("input_resolving_power", params.input_resolving_power_value(self.input_resolving_power))
        if self.intermediate_resolving_power is not None:
            set_("intermediate_resolving_power", params.resolving_power(self.intermediate_resolving_power, "intermediate_resolving_power"))
        try:
            step = float(self.working_step)
        except (TypeError, ValueError):
            step = float("nan")
        if not step > 0:
            raise ConfigError(f"working step must be > 0 A, got {self.working_step}")
        set_("working_step", step)
        set_("limb_darkening", params.limb_darkening(self.limb_darkening))
        set_("normalise", params.continuum_operator(self.normalise))

    @property
    def instrument_(self) -> _instruments.Instrument:
        return _instruments.get(self.instrument)

    def to_dict(self) -> dict:
        """JSON-able options (fingerprints, provenance)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return jsonable({**out, "instrument": self.instrument_.name, "normalise": None if self.normalise is None else self.normalise.to_dict()})

