"""The label prior: FGK stars with the 13 labels, like the published training set and the shared real grid.

`LabelPrior()` is the shared grid's documented prior: 35 % giants (Teff 4200-5400 K, log g 1.5-3.4,
vmic 1-2 km/s), 65 % dwarfs/subgiants (Teff 4800-6800 K, log g 3.6-4.7, vmic 0.6-1.6 km/s);
[Fe/H] -2.0..+0.4; [C/Fe] -0.5..0.5, [N/Fe] -0.5..1.0, [Mg,Si,Ca,Ti/Fe] -0.3..0.5, [Mn/Fe] -0.5..0.3;
A(Li) -0.5..3.3 (stored as li_fe = A(Li) - A_sun(Li) - [Fe/H], A_sun(Li) = 1.05); vbroad 1-25 km/s; all uniform.

One optional correlation: `alpha_slope` > 0 shifts [Mg,Si,Ca,Ti/Fe] by alpha_slope * (feh_knee - [Fe/H]) below
`feh_knee` (the alpha-enhancement of metal-poor stars; e.g. alpha_slope=0.3, feh_knee=-0.5 gives +0.3 dex at
[Fe/H] = -1.5), clipped to the ranges. Default 0: the shared grid's independent uniform labels.

Draws are a function of (seed, model index) only (`gridkit.store.rng_for`), so model i has the same labels
whatever n is.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ConfigError
from ..schema import LABEL_NAMES
from ..store import rng_for
from .atomic import SOLAR_ABUNDANCES

#: A_sun(Li): the prior draws A(Li) and stores li_fe relative to it, as the backends read it
A_LI_SUN = SOLAR_ABUNDANCES["Li"].a_sun
Range = tuple[float, float]


@dataclass(frozen=True)
class LabelPrior:
    """Uniform FGK label prior with a giant and a dwarf population (ranges: (lo, hi))."""

    giant_fraction: float = 0.35
    giant_teff: Range = (4200.0, 5400.0)
    giant_logg: Range = (1.5, 3.4)
    giant_vmic: Range = (1.0, 2.0)
    dwarf_teff: Range = (4800.0, 6800.0)
    dwarf_logg: Range = (3.6, 4.7)
    dwarf_vmic: Range = (0.6, 1.6)
    feh: Range = (-2.0, 0.4)
    c_fe: Range = (-0.5, 0.5)
    n_fe: Range = (-0.5, 1.0)
    mg_fe: Range = (-0.3, 0.5)
    si_fe: Range = (-0.3, 0.5)
    ca_fe: Range = (-0.3, 0.5)
    ti_fe: Range = (-0.3, 0.5)
    mn_fe: Range = (-0.5, 0.3)
    a_li: Range = (-0.5, 3.3)
    vbroad: Range = (1.0, 25.0)
    alpha_slope: float = 0.0
    feh_knee: float = -0.5

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("giant_fraction", "alpha_slope", "feh_knee"):
                if not np.isfinite(float(value)):
                    raise ConfigError(f"prior {f.name} must be finite, got {value!r}")
                continue
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(f"prior {f.name} must be a pair (lo, hi), got {value!r}") from None
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ConfigError(f"prior {f.name} must satisfy lo <= hi, got {value!r}")
            object.__setattr__(self, f.name, (lo, hi))
        if not 0.0 <= self.giant_fraction <= 1.0:
            raise ConfigError(f"prior giant_fraction must be in [0, 1], got {self.giant_fraction!r}")

    @classmethod
    def from_dict(cls, data: Mapping) -> "LabelPrior":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown prior option(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def from_file(cls, path) -> "LabelPrior":
        """From JSON or YAML (by extension)."""
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        return cls.from_dict(data or {})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _draw_one(prior: LabelPrior, rng: np.random.Generator) -> dict[str, float]:
    u = lambda r: float(rng.uniform(r[0], r[1]))  # noqa: E731
    giant = rng.uniform() < prior.giant_fraction
    out = {
        "teff": u(prior.giant_teff if giant else prior.dwarf_teff),
        "logg": u(prior.giant_logg if giant else prior.dwarf_logg),
        "feh": u(prior.feh),
        "vmic": u(prior.giant_vmic if giant else prior.dwarf_vmic),
        "vbroad": u(prior.vbroad),
    }
    for name in ("c_fe", "n_fe", "mg_fe", "si_fe", "ca_fe", "ti_fe", "mn_fe"):
        out[name] = u(getattr(prior, name))
    if prior.alpha_slope:
        shift = prior.alpha_slope * max(0.0, prior.feh_knee - out["feh"])
        for name in ("mg_fe", "si_fe", "ca_fe", "ti_fe"):
            lo, hi = getattr(prior, name)
            out[name] = float(np.clip(out[name] + shift, lo, hi))
    out["li_fe"] = u(prior.a_li) - A_LI_SUN - out["feh"]
    return out


def sample_labels(n: int, seed: int = 0, prior: LabelPrior | None = None) -> dict[str, np.ndarray]:
    """n label sets from `prior` (default: LabelPrior()) as {name: (n,) float64}, in LABEL_NAMES order.
    Model i depends only on (seed, i)."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n (--n-models) must be a positive integer, got {n!r}")
    prior = prior or LabelPrior()
    rows = [_draw_one(prior, rng_for(seed, 0x5EED, i)) for i in range(int(n))]
    return {name: np.array([r[name] for r in rows], dtype=np.float64) for name in LABEL_NAMES}
