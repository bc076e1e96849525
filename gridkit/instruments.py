"""Spectrographs: arms (wavelength range, pixel step) and a resolving power.

`FOURMOST_HR` is the published method's target: 4MOST high-resolution spectrograph, R = 20000, arms
blue 3926-4355, green 5160-5730, red 6100-6790 A, pixels of 0.05 A (green + red: 11,400 + 13,800 = 25,200
pixels, as in the published method). Pixel i of an arm is the bin [lo + i*step, lo + (i+1)*step]: its
centre lies half a step inside, and the bins tile the arm's range exactly.

Other instruments: `FOURMOST_LR` (nominal figures, see its description) and `constant_r(...)` for a generic
constant-R spectrograph. `get(name)` looks up a registered instrument; `register` adds one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class Arm:
    """One spectrograph arm: pixels of width `step` (A) tiling [wl_min, wl_max] (A)."""

    name: str
    wl_min: float
    wl_max: float
    step: float

    def __post_init__(self):
        if not (0 < self.wl_min < self.wl_max and self.step > 0):
            raise ConfigError(f"arm {self.name!r}: need 0 < wl_min < wl_max and step > 0, got {self.wl_min}, {self.wl_max}, {self.step}")

    @property
    def n_pixels(self) -> int:
        return int(round((self.wl_max - self.wl_min) / self.step))

    def wavelength(self) -> np.ndarray:
        """Pixel centres (n_pixels,) in Angstrom."""
        return self.wl_min + (np.arange(self.n_pixels) + 0.5) * self.step


@dataclass(frozen=True)
class Instrument:
    """A spectrograph: a name, a constant resolving power and its arms (in increasing wavelength)."""

    name: str
    resolving_power: float
    arms: tuple[Arm, ...]
    description: str = ""
    medium: str = "air"
    default_arms: tuple[str, ...] = field(default=())

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.arms)

    def select(self, arms: str | Iterable[str] | None = None) -> tuple[Arm, ...]:
        """The arms named in `arms` (a comma-separated string or a list; default: `default_arms`, or all),
        in increasing wavelength."""
        if arms is None:
            names = list(self.default_arms or self.arm_names)
        elif isinstance(arms, str):
            names = [a.strip() for a in arms.split(",") if a.strip()]
        else:
            names = [str(a) for a in arms]
        if not names:
            raise ConfigError(f"arms must name at least one arm of {self.name} ({', '.join(self.arm_names)}), got {arms!r}")
        unknown = [a for a in names if a not in self.arm_names]
        if unknown:
            raise ConfigError(f"arms: {', '.join(map(repr, unknown))} not an arm of {self.name}; choose from {', '.join(self.arm_names)}")
        return tuple(a for a in self.arms if a.name in names)

    def wavelength(self, arms: str | Iterable[str] | None = None) -> np.ndarray:
        """Pixel centres of the selected arms, concatenated (Angstrom)."""
        return np.concatenate([a.wavelength() for a in self.select(arms)])

    def ranges(self, arms: str | Iterable[str] | None = None, margin: float = 0.0) -> dict[str, tuple[float, float]]:
        """{arm name: (wl_min - margin, wl_max + margin)} in Angstrom of the arms `select(arms)` picks, in increasing
        wavelength: with a margin, what a synthesis must cover for the degrade step to fill the arms."""
        return {a.name: (a.wl_min - margin, a.wl_max + margin) for a in self.select(arms)}

    def arm_index(self, arms: str | Iterable[str] | None = None) -> np.ndarray:
        """For each pixel of `wavelength(arms)`, the name of its arm."""
        return np.concatenate([np.full(a.n_pixels, a.name, dtype=object) for a in self.select(arms)])


def _hr() -> Instrument:
    return Instrument(
        name="4most-hr",
        resolving_power=20_000.0,
        arms=(Arm("blue", 3926.0, 4355.0, 0.05), Arm("green", 5160.0, 5730.0, 0.05), Arm("red", 6100.0, 6790.0, 0.05)),
        description="4MOST high-resolution spectrograph (HRS): R = 20000, arms 3926-4355, 5160-5730, 6100-6790 A, 0.05 A pixels",
        default_arms=("green", "red"),
    )


def _lr() -> Instrument:
    return Instrument(
        name="4most-lr",
        resolving_power=6_500.0,
        arms=(Arm("blue", 3700.0, 5540.0, 0.3), Arm("green", 5540.0, 7200.0, 0.3), Arm("red", 7200.0, 9500.0, 0.3)),
        description=(
            "4MOST low-resolution spectrographs (LRS), nominal: 3700-9500 A at R ~ 4000-7800 (taken as 6500), "
            "0.3 A pixels; the arm boundaries here are placeholders that tile the range, not the as-built dichroic splits"
        ),
    )


def constant_r(resolving_power: float, wl_min: float, wl_max: float, pixels_per_fwhm: float = 2.5, name: str | None = None) -> Instrument:
    """A generic single-arm spectrograph at constant `resolving_power` over [wl_min, wl_max] A, pixels of
    constant width sampling the FWHM at the arm's centre with `pixels_per_fwhm` pixels."""
    if not (resolving_power > 0 and math.isfinite(resolving_power)):
        raise ConfigError(f"resolving_power must be finite and > 0, got {resolving_power}")
    if not pixels_per_fwhm > 0:
        raise ConfigError(f"pixels_per_fwhm must be > 0, got {pixels_per_fwhm}")
    centre = 0.5 * (wl_min + wl_max)
    step = centre / resolving_power / pixels_per_fwhm
    return Instrument(
        name=name or f"constant-r{resolving_power:g}",
        resolving_power=float(resolving_power),
        arms=(Arm("all", float(wl_min), float(wl_max), step),),
        description=f"generic spectrograph: R = {resolving_power:g}, {wl_min:g}-{wl_max:g} A, {pixels_per_fwhm:g} pixels per FWHM",
    )


FOURMOST_HR = _hr()
FOURMOST_LR = _lr()
_REGISTRY: dict[str, Instrument] = {FOURMOST_HR.name: FOURMOST_HR, FOURMOST_LR.name: FOURMOST_LR}


def register(instrument: Instrument) -> Instrument:
    """Make `instrument` available to `get` (and the CLI's --instrument) under its name."""
    _REGISTRY[instrument.name] = instrument
    return instrument


def names() -> Sequence[str]:
    return tuple(_REGISTRY)


def get(name: str | Instrument) -> Instrument:
    """The registered instrument called `name` (an Instrument is returned as is)."""
    if isinstance(name, Instrument):
        return name
    try:
        return _REGISTRY[str(name).lower()]
    except KeyError:
        raise ConfigError(f"instrument {name!r} is unknown; choose from {', '.join(_REGISTRY)}") from None


__all__ = ["Arm", "Instrument", "FOURMOST_HR", "FOURMOST_LR", "constant_r", "get", "register", "names"]
