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

`Prior` is the declared form (YAML/JSON, `configs/priors/`): populations with weights, each a distribution per
label (uniform, normal truncated to [min, max], fixed), common labels shared. `LabelPrior().to_prior()` and
`configs/priors/tsgrid-lte.yaml` are the same prior and draw the same labels bit for bit. `Prior.sample(n, seed,
covers=...)` redraws a model outside a backend's coverage from (seed, i, attempt), so model i still depends on
(seed, i) alone (`gridkit.synth.grow` grows grids on this).
"""
from __future__ import annotations

import dataclasses
import json
import math
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

    def to_prior(self) -> "Prior":
        """The same prior as a declared `Prior` (giants, then dwarfs): it draws the same labels, bit for bit."""
        common = {name: {"uniform": list(getattr(self, name))} for name in ("feh", "vbroad", "c_fe", "n_fe", "mg_fe", "si_fe", "ca_fe", "ti_fe", "mn_fe", "a_li")}
        pops = [{"name": kind, "weight": w, "labels": {k: {"uniform": list(getattr(self, f"{kind[:-1]}_{k}"))} for k in ("teff", "logg", "vmic")}}
                for kind, w in (("giants", self.giant_fraction), ("dwarfs", 1.0 - self.giant_fraction))]
        return Prior.from_dict({"name": "LabelPrior", "labels": common, "populations": pops, "alpha_slope": self.alpha_slope, "feh_knee": self.feh_knee})


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


def sample_labels(n: int, seed: int = 0, prior: "LabelPrior | Prior | None" = None) -> dict[str, np.ndarray]:
    """n label sets from `prior` (default: LabelPrior(); a declared `Prior` too) as {name: (n,) float64}, in
    LABEL_NAMES order. Model i depends only on (seed, i)."""
    if isinstance(prior, Prior):
        return prior.sample(n, seed)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n (--n-models) must be a positive integer, got {n!r}")
    prior = prior or LabelPrior()
    rows = [_draw_one(prior, rng_for(seed, 0x5EED, i)) for i in range(int(n))]
    return {name: np.array([r[name] for r in rows], dtype=np.float64) for name in LABEL_NAMES}


# ---------------------------------------------------------------------------------------------- declared priors
#: the order in which a model's labels are drawn, one uniform double each (the last slot: a_li or li_fe), after one
#: double that chooses the population. It is the order of `LabelPrior`, so a `Prior` equal to it draws the same labels.
DRAW_ORDER = ("teff", "logg", "feh", "vmic", "vbroad", "c_fe", "n_fe", "mg_fe", "si_fe", "ca_fe", "ti_fe", "mn_fe", "a_li")
#: the labels a prior may declare: the 13 of the schema, and a_li (A(Li), stored as li_fe) instead of li_fe
PRIOR_LABELS = (*DRAW_ORDER[:-1], "a_li", "li_fe")
#: the alpha labels that `alpha_slope` shifts
ALPHA_LABELS = ("mg_fe", "si_fe", "ca_fe", "ti_fe")
#: a label no physical model can have below this (teff > 0; velocities >= 0)
_LOWER_BOUNDS = {"teff": (0.0, False), "vmic": (0.0, True), "vbroad": (0.0, True)}
#: redraw rounds before a prior is declared outside the coverage
MAX_ATTEMPTS = 1000


@dataclass(frozen=True)
class Distribution:
    """One label's distribution: 'uniform' on [lo, hi], 'normal' (mean, sigma) truncated to [lo, hi], or 'fixed'
    (lo == hi == the value). Each draw consumes exactly one uniform double of the model's generator."""

    kind: str
    lo: float
    hi: float
    mean: float = math.nan
    sigma: float = math.nan

    def draw(self, rng: np.random.Generator) -> float:
        if self.kind == "uniform":
            return float(rng.uniform(self.lo, self.hi))
        u = float(rng.uniform())
        if self.kind == "fixed":
            return self.lo
        from scipy.special import ndtr, ndtri  # inverse CDF of the truncated normal: one double per draw

        a, b = ndtr((self.lo - self.mean) / self.sigma), ndtr((self.hi - self.mean) / self.sigma)
        return float(np.clip(self.mean + self.sigma * ndtri(a + u * (b - a)), self.lo, self.hi))

    def to_dict(self):
        if self.kind == "fixed":
            return {"fixed": self.lo}
        if self.kind == "uniform":
            return {"uniform": [self.lo, self.hi]}
        return {"normal": {"mean": self.mean, "sigma": self.sigma, "min": self.lo, "max": self.hi}}

    @classmethod
    def parse(cls, spec, where: str) -> "Distribution":
        """From `[lo, hi]` or {uniform: [lo, hi]}, {normal: {mean, sigma, min, max}}, a number or {fixed: value}."""
        if isinstance(spec, bool):
            raise ConfigError(f"{where}: expected a distribution, got {spec!r}")
        if isinstance(spec, (int, float)):
            spec = {"fixed": spec}
        elif isinstance(spec, (list, tuple)):
            spec = {"uniform": list(spec)}
        if not isinstance(spec, Mapping) or len(spec) != 1:
            raise ConfigError(f"{where}: expected one of [lo, hi], {{uniform: [lo, hi]}}, {{normal: {{mean, sigma, min, max}}}}, "
                              f"a number or {{fixed: value}}; got {spec!r}")
        (kind, value), = spec.items()
        if kind == "fixed":
            v = _number(value, f"{where}.fixed")
            return cls("fixed", v, v)
        if kind == "uniform":
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ConfigError(f"{where}.uniform must be a pair [min, max], got {value!r}")
            lo, hi = (_number(v, f"{where}.uniform") for v in value)
            if lo > hi:
                raise ConfigError(f"{where}.uniform: min {lo:g} > max {hi:g}")
            return cls("uniform", lo, hi)
        if kind == "normal":
            keys = {"mean", "sigma", "min", "max"}
            if not isinstance(value, Mapping) or set(value) != keys:
                raise ConfigError(f"{where}.normal needs exactly the keys {sorted(keys)} (a normal truncated to [min, max]), got {value!r}")
            mean, sigma, lo, hi = (_number(value[k], f"{where}.normal.{k}") for k in ("mean", "sigma", "min", "max"))
            if not sigma > 0:
                raise ConfigError(f"{where}.normal.sigma must be > 0, got {sigma:g}")
            if lo >= hi:
                raise ConfigError(f"{where}.normal: min {lo:g} >= max {hi:g}")
            return cls("normal", lo, hi, mean, sigma)
        raise ConfigError(f"{where}: unknown distribution {kind!r}; known: uniform, normal, fixed")


def _number(value, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    return v


@dataclass(frozen=True)
class Population:
    name: str
    weight: float
    labels: tuple[tuple[str, Distribution], ...]  # in DRAW_ORDER (li as a_li or li_fe in the last slot)

    def dist(self, name: str) -> Distribution:
        return dict(self.labels)[name]


@dataclass(frozen=True)
class Prior:
    """A declared label prior: a mixture of populations, each a distribution per label (see `Prior.from_dict`).

    Model i's labels are a function of (seed, i) only: one generator per model (`gridkit.store.rng_for(seed,
    0x5EED, i)`), one double to choose the population, then one per label in `DRAW_ORDER`. Restricted to a
    coverage (`sample(..., covers=...)`), a model outside it is drawn again from the generator of (seed, i, attempt),
    so the first n models of a grid of 2n are those of the grid of n.
    """

    populations: tuple[Population, ...]
    alpha_slope: float = 0.0
    feh_knee: float = -0.5
    name: str = ""

    # -- reading ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping, where: str = "prior") -> "Prior":
        """From {name?, labels?: {label: dist}, populations?: [{name, weight, labels: {label: dist}}], alpha_slope?,
        feh_knee?}. `labels` apply to every population (a population's own override them); without `populations`
        there is one. Labels: the 13 of the schema, with A(Li) as `a_li` (stored as li_fe = A(Li) - A_sun(Li) -
        [Fe/H]) or `li_fe`. A distribution: [lo, hi] or {uniform: [lo, hi]}, {normal: {mean, sigma, min, max}},
        a number or {fixed: value}."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        known = {"name", "labels", "populations", "alpha_slope", "feh_knee"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        common = _label_block(data.get("labels") or {}, f"{where}.labels")
        pops = data.get("populations")
        if pops is None:
            pops = [{"name": "all", "weight": 1.0}]
        if not isinstance(pops, list) or not pops:
            raise ConfigError(f"{where}.populations must be a non-empty list of {{name, weight, labels}}, got {pops!r}")
        out, names = [], set()
        for k, pop in enumerate(pops):
            here = f"{where}.populations[{k}]"
            if not isinstance(pop, Mapping):
                raise ConfigError(f"{here} must be a mapping {{name, weight, labels}}, got {pop!r}")
            bad = sorted(set(pop) - {"name", "weight", "labels"})
            if bad:
                raise ConfigError(f"{here}: unknown key(s) {bad}; known: ['labels', 'name', 'weight']")
            name = str(pop.get("name", k))
            here = f"{where}.populations[{name}]"
            if name in names:
                raise ConfigError(f"{where}.populations: name {name!r} appears twice")
            names.add(name)
            if "weight" not in pop and len(pops) > 1:
                raise ConfigError(f"{here}.weight is missing (needed with more than one population)")
            weight = _number(pop.get("weight", 1.0), f"{here}.weight")
            if weight < 0:
                raise ConfigError(f"{here}.weight must be >= 0, got {weight:g}")
            labels = {**common, **_label_block(pop.get("labels") or {}, f"{here}.labels")}
            if "a_li" in labels and "li_fe" in labels:
                raise ConfigError(f"{here}: give lithium as a_li (A(Li)) or li_fe ([Li/Fe]), not both")
            missing = [n for n in DRAW_ORDER[:-1] if n not in labels] + ([] if ("a_li" in labels or "li_fe" in labels) else ["a_li (or li_fe)"])
            if missing:
                raise ConfigError(f"{here}: no distribution for label(s) {', '.join(missing)} (give them under labels: or the population's labels:)")
            li = "a_li" if "a_li" in labels else "li_fe"
            out.append(Population(name, weight, tuple((n, labels[n]) for n in (*DRAW_ORDER[:-1], li))))
        total = sum(p.weight for p in out)
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"{where}.populations: weights sum to {total:g} ({', '.join(f'{p.name} {p.weight:g}' for p in out)}); they must sum to 1")
        slope = _number(data.get("alpha_slope", 0.0), f"{where}.alpha_slope")
        knee = _number(data.get("feh_knee", -0.5), f"{where}.feh_knee")
        return cls(tuple(out), slope, knee, str(data.get("name", "")))

    @classmethod
    def from_file(cls, path) -> "Prior":
        """From YAML (.yaml/.yml) or JSON; a file of `LabelPrior` options (giant_fraction, dwarf_teff, ...) is read too."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"prior file {path} cannot be read: {exc.strerror}") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # noqa: BLE001 - a parse error of either format
            raise ConfigError(f"prior file {path} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {exc}") from None
        data = data or {}
        if isinstance(data, Mapping) and data and not set(data) & {"labels", "populations"}:
            return LabelPrior.from_dict(data).to_prior()
        return cls.from_dict(data, where=f"prior {path.name}")

    def to_dict(self) -> dict:
        """The canonical form (what the grid records, and what its fingerprint hashes)."""
        return {
            "name": self.name,
            "populations": [{"name": p.name, "weight": p.weight, "labels": {n: d.to_dict() for n, d in p.labels}} for p in self.populations],
            "alpha_slope": self.alpha_slope,
            "feh_knee": self.feh_knee,
        }

    def bounds(self, name: str) -> tuple[float, float]:
        """(lo, hi) of label `name` over every population (for li_fe: as stored, from a_li and [Fe/H] where needed)."""
        los, his = [], []
        for p in self.populations:
            d = dict(p.labels)
            if name == "li_fe" and "a_li" in d:
                los.append(d["a_li"].lo - A_LI_SUN - d["feh"].hi)
                his.append(d["a_li"].hi - A_LI_SUN - d["feh"].lo)
            else:
                los.append(d[name].lo)
                his.append(d[name].hi)
        return min(los), max(his)

    # -- drawing ---------------------------------------------------------------------------------
    def draw(self, seed: int, i: int, attempt: int = 0) -> tuple[int, dict[str, float]]:
        """(population index, labels) of model i (attempt 0: generator (seed, 0x5EED, i); a redraw: (.., i, attempt))."""
        rng = rng_for(seed, 0x5EED, i) if attempt == 0 else rng_for(seed, 0x5EED, i, attempt)
        u = rng.uniform()
        weights = np.cumsum([p.weight for p in self.populations])
        k = min(int(np.searchsorted(weights, u, side="right")), len(self.populations) - 1)
        pop = self.populations[k]
        out = {name: d.draw(rng) for name, d in pop.labels}
        if self.alpha_slope:
            shift = self.alpha_slope * max(0.0, self.feh_knee - out["feh"])
            for name in ALPHA_LABELS:
                d = pop.dist(name)
                out[name] = float(np.clip(out[name] + shift, d.lo, d.hi))
        if "a_li" in out:
            out["li_fe"] = out.pop("a_li") - A_LI_SUN - out["feh"]
        return k, out

    def sample(self, n: int, seed: int = 0, *, covers=None, coverage: str = "the coverage",
               with_population: bool = False) -> dict[str, np.ndarray]:
        """n label sets as {name: (n,) float64} in LABEL_NAMES order (plus 'population' (n,) int16 with
        with_population). covers: labels {name: (m,) array} -> (m,) bool; a model outside is drawn again
        (attempt 1, 2, ...) until inside; ConfigError if the prior lies outside (`coverage` names it)."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"n (--n-models) must be a positive integer, got {n!r}")
        rows = [self.draw(seed, i) for i in range(int(n))]
        if covers is not None:
            todo, attempt, tried, inside = np.arange(int(n)), 0, 0, 0
            while todo.size:
                labels = {name: np.array([rows[i][1][name] for i in todo]) for name in LABEL_NAMES}
                ok = np.asarray(covers(labels), dtype=bool)
                tried, inside = tried + todo.size, inside + int(ok.sum())
                todo = todo[~ok]
                attempt += 1
                if todo.size and (inside == 0 and tried >= MAX_ATTEMPTS or attempt >= MAX_ATTEMPTS):
                    raise ConfigError(f"the label prior{' ' + repr(self.name) if self.name else ''} lies outside {coverage}: {inside} of "
                                      f"{tried} draws fall inside it" + _ranges_note(self))
                for i in todo:
                    rows[i] = self.draw(seed, int(i), attempt)
        out = {name: np.array([r[1][name] for r in rows], dtype=np.float64) for name in LABEL_NAMES}
        if with_population:
            out["population"] = np.array([r[0] for r in rows], dtype=np.int16)
        return out


def _ranges_note(prior: Prior) -> str:
    return " (prior: " + "; ".join(f"{p.name}: Teff {p.dist('teff').lo:g} to {p.dist('teff').hi:g} K, log g {p.dist('logg').lo:g} to "
                                   f"{p.dist('logg').hi:g}, [Fe/H] {p.dist('feh').lo:g} to {p.dist('feh').hi:g}" for p in prior.populations) + ")"


def _label_block(block, where: str) -> dict[str, Distribution]:
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where} must be a mapping {{label: distribution}}, got {block!r}")
    unknown = sorted(set(block) - set(PRIOR_LABELS))
    if unknown:
        raise ConfigError(f"{where}: unknown label(s) {unknown}; known: {', '.join(PRIOR_LABELS)}")
    out = {}
    for name, spec in block.items():
        d = Distribution.parse(spec, f"{where}.{name}")
        if name in _LOWER_BOUNDS:
            floor, inclusive = _LOWER_BOUNDS[name]
            if d.lo < floor or (d.lo == floor and not inclusive):
                raise ConfigError(f"{where}.{name}: min {d.lo:g} must be {'>=' if inclusive else '>'} {floor:g}")
        out[name] = d
    return out


def as_prior(prior) -> Prior:
    """A Prior from a Prior, a LabelPrior, a mapping or a file path (None: the shared grid's prior, LabelPrior())."""
    if prior is None:
        return LabelPrior().to_prior()
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, LabelPrior):
        return prior.to_prior()
    if isinstance(prior, Mapping):
        return Prior.from_dict(prior)
    if isinstance(prior, (str, Path)):
        return Prior.from_file(prior)
    raise ConfigError(f"prior must be a Prior, LabelPrior, mapping or file path, got {type(prior).__name__}")
