"""Reader and writer of plain text spectra (format 'text': .txt .dat .asc .csv).

Columns wavelength [A], flux[, sigma], whitespace or comma separated, `#` comments. The columns may be named by a
header row (a first line of words: `wavelength,flux,sigma`) or by the last comment line before the data
(`# wavelength [A]  flux  sigma`; words in brackets are units and are skipped). A third column is the flux error
when it is named sigma, err, error, err_flux, flux_err, flux_error, uncertainty, unc, e_flux or noise (1 sigma),
or ivar, flux_ivar (inverse variance); otherwise further columns are kept in meta['columns']. The medium is
vacuum when the header says 'vacuum' (or 'vac'), air when it says 'air' or nothing (then
meta['medium_assumed'] = True).

`read_text(path) -> (wavelength, flux, meta)`: as it is in the file (gridkit.observed merges repeated
wavelengths); `text_spectra(path, which=None) -> [Spectrum]`: the registry's reader.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import GridError
from .spectrum import Spectrum, base_meta, selection

SIGMA_NAMES = ("sigma", "err", "error", "err_flux", "flux_err", "flux_error", "uncertainty", "unc", "e_flux", "noise")
IVAR_NAMES = ("ivar", "flux_ivar")
WHAT = "is not a text spectrum (numeric columns: wavelength [A], flux[, sigma])"


def _words(line: str) -> list[str]:
    """Column names in a header line: words outside brackets (units), lower case."""
    line = re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", line.lstrip("#"))
    return [w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", line)]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _split(line: str, delimiter: str | None) -> list[str]:
    return [t.strip() for t in line.split(delimiter)] if delimiter else line.split()


def _parse(path: Path):
    """(data (rows, columns) float64, column names or None, header text, first data line number)."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise GridError(f"{path} {WHAT}: it is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset {exc.start})") from None
    except OSError as exc:
        raise GridError(f"{path} cannot be read: {exc.strerror or exc}") from None
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first is None:
        raise GridError(f"{path} {WHAT}: it holds no data lines")
    delimiter = "," if "," in lines[first] else None
    comments = [ln for ln in lines[:first] if ln.lstrip().startswith("#")]
    header_row = None
    tokens = _split(lines[first], delimiter)
    if not any(_is_number(t) for t in tokens):
        header_row, first = lines[first], first + 1
    try:
        data = np.loadtxt(path, dtype=np.float64, ndmin=2, comments="#", delimiter=delimiter, skiprows=first)
    except ValueError as exc:
        raise GridError(f"{path} {WHAT}: {_bad_cell(lines, first, delimiter, header_row, comments) or _numpy_reason(exc)}") from None
    if data.shape[1] < 2 or data.shape[0] < 2:
        raise GridError(f"{path} must have at least 2 columns (wavelength, flux) and 2 rows, got shape {data.shape}")
    names = _names(header_row, comments, data.shape[1])
    return data, names, "\n".join(comments + ([header_row] if header_row else [])), first


def _names(header_row, comments, ncols):
    if header_row is not None:
        words = _words(header_row)
        return words if len(words) == ncols else None
    for line in reversed(comments):
        words = _words(line)
        if len(words) >= ncols:
            return words[-ncols:]
    return None


def _numpy_reason(exc: ValueError) -> str:
    return str(exc).split("; use `usecols`")[0]  # numpy's hint names its own argument, not ours


def _bad_cell(lines, first, delimiter, header_row, comments) -> str | None:
    """'line 5, column 3 (sigma): 'abc' is not a number' for the first cell that is not a number, or None."""
    for n, line in enumerate(lines[first:], start=first + 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens = _split(line.split("#")[0], delimiter)
        for c, tok in enumerate(tokens):
            if not _is_number(tok):
                names = _names(header_row, comments, len(tokens)) or []
                label = f" ({names[c]})" if c < len(names) else ""
                role = (", the flux error," if c == 2 and c < len(names) and names[c] in SIGMA_NAMES + IVAR_NAMES else "")
                return f"line {n}, column {c + 1}{label}{role} holds {tok!r}, not a number"
    return None


def _medium(header: str) -> str | None:
    text = header.lower()
    vac, air = re.search(r"\bvac(uum)?\b", text) is not None, re.search(r"\bair\b", text) is not None
    return "vacuum" if vac and not air else "air" if air and not vac else None


def _parts(path):
    path = Path(path)
    data, names, header, _ = _parse(path)
    meta = base_meta(format="text", source=str(path), index=0, star_id=path.name.split(".")[0], units="Angstrom")
    sigma = None
    extra = data[:, 2:]
    if names is not None and data.shape[1] >= 3 and names[2] in SIGMA_NAMES + IVAR_NAMES:
        sigma = data[:, 2]
        if names[2] in IVAR_NAMES:
            with np.errstate(divide="ignore", invalid="ignore"):
                sigma = 1.0 / np.sqrt(sigma)
        extra = data[:, 3:]
    if extra.shape[1]:
        meta["columns"] = extra
    if names is not None:
        meta["column_names"] = names
    medium = _medium(header)
    meta.update(medium=medium or "air", medium_assumed=medium is None)
    return data[:, 0], data[:, 1], sigma, meta


def read_text(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(wavelength [A], flux, meta) as in the file; meta['sigma'] holds the error column when there is one."""
    wl, flux, sigma, meta = _parts(path)
    meta = {k: v for k, v in meta.items() if v is not None}  # what the file says: meta.get(key, default) works
    if sigma is not None:
        meta["sigma"] = sigma
    return wl, flux, meta


def text_spectra(path, which=None) -> list[Spectrum]:
    """The spectrum of a text file as a one-item list (format 'text' of the registry)."""
    wl, flux, sigma, meta = _parts(path)
    rows = selection(which, 1, path)
    spectrum = Spectrum(wl, meta.pop("medium"), flux, sigma, None, meta)
    return [spectrum for _ in rows]


def write_text(path, wavelength, flux, header: str | None = None, *, sigma=None) -> None:
    """Columns wavelength [A], flux[, sigma] with a `#` header naming them (or `header`)."""
    columns = [np.asarray(wavelength, float), np.asarray(flux, float)]
    if sigma is not None:
        columns.append(np.asarray(sigma, float))
    default = "wavelength [Angstrom], flux" + (", sigma" if sigma is not None else "")
    np.savetxt(path, np.column_stack(columns), fmt="%.6f %.7g" + (" %.7g" if sigma is not None else ""), header=header or default)
