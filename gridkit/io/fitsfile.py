"""Opening FITS files for the spectrum readers, checked, and reading their columns by name.

- `is_fits(path)`: the file begins with the FITS card 'SIMPLE  =' (gzip-compressed too), whatever its name.
- `open_fits(path)`: a context manager over astropy's HDU list (memory-mapped), refusing with GridError a file
  that is not FITS, is cut short (an HDU's data runs past the end of the file), or has bytes after its last HDU
  that astropy could not read as one (a header cut in the middle).
- `hdu_infos(path)`: name, kind, column names and row count of every HDU, from the headers only (cached per
  file version): what the format identifiers look at.
- `column(hdu, name, where)`, `cells(hdu, name, where, rows)`: numeric columns as float64 (GridError naming the
  file, HDU and column when they hold text, logical values or complex numbers); `keyword(headers, *names)`.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import GridError

FITS_MAGIC = b"SIMPLE  ="
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
BLOCK = 2880


def head_bytes(path, n: int = 30) -> bytes:
    """The first `n` bytes of `path` (of its content, when gzip-compressed)."""
    with open(path, "rb") as fh:
        head = fh.read(n)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                return fh.read(n)
        except (OSError, EOFError):
            return head
    return head


def is_fits(path) -> bool:
    try:
        return head_bytes(Path(path), len(FITS_MAGIC)) == FITS_MAGIC
    except OSError:
        return False


def has_fits_name(path) -> bool:
    return Path(path).name.lower().endswith(FITS_SUFFIXES)


@contextlib.contextmanager
def open_fits(path, memmap: bool = True) -> Iterator:
    """The checked astropy HDU list of `path` (see the module docstring); closed on leaving the block."""
    from astropy.io import fits

    path = Path(path)
    try:
        head = head_bytes(path)
    except OSError as exc:
        raise GridError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not head.startswith(FITS_MAGIC):
        raise GridError(f"{path} is not a FITS file: it begins with {head!r}, not the FITS card 'SIMPLE  ='")
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's notes on truncation and verification: checked below, by name
        try:
            hdul = fits.open(path, memmap=memmap and not gz, lazy_load_hdus=False)
        except Exception as exc:  # noqa: BLE001 - astropy raises OSError, ValueError, EOFError... for broken files
            raise GridError(f"{path} is not a readable FITS file: {' '.join(str(exc).split())}") from None
    try:
        if not gz:
            _check_complete(hdul, path)
        yield hdul
    finally:
        hdul.close()


def _check_complete(hdul, path: Path) -> None:
    size = path.stat().st_size
    end = 0
    for k, hdu in enumerate(hdul):
        info = hdu.fileinfo()
        if info is None:
            continue
        end = info["datLoc"] + hdu.size
        if end > size:
            raise GridError(f"{path} is truncated: HDU {k} ({hdu.name or 'no name'}) needs {end} bytes, the file has {size}")
    padded = -(-end // BLOCK) * BLOCK
    if size > padded:
        raise GridError(f"{path} is truncated or damaged: {size - padded} byte(s) after its last complete HDU (HDU "
                        f"{len(hdul) - 1}) are not a readable HDU (a header cut short?)")


@dataclass(frozen=True)
class HDUInfo:
    index: int
    name: str  # EXTNAME, upper case ('PRIMARY' for the primary HDU)
    kind: str  # 'primary', 'image', 'bintable', 'table'
    columns: tuple[str, ...]  # column names, upper case (tables)
    nrows: int  # NAXIS2 of tables, 0 otherwise
    header: object  # astropy Header (do not modify)

    def names(self) -> dict[str, str]:
        """{upper-case column name: the name as written} from the TTYPEn keywords. (Readers take column names and
        keywords from here, not from `hdu.columns`: once a memory-mapped table's data is touched, astropy copies
        all of it into memory on close if its column definitions were looked at.)"""
        h = self.header
        return {str(h[f"TTYPE{i}"]).strip().upper(): str(h[f"TTYPE{i}"]).strip()
                for i in range(1, int(h.get("TFIELDS", 0)) + 1) if f"TTYPE{i}" in h}

    def col_keyword(self, colname: str, key: str):
        """The value of keyword `key`n (TUNIT, TUCD, TFORM, ...) of column `colname` (case-insensitive), or None."""
        h = self.header
        for i in range(1, int(h.get("TFIELDS", 0)) + 1):
            if str(h.get(f"TTYPE{i}", "")).strip().upper() == colname.upper():
                return h.get(f"{key}{i}")
        return None

    def col_number(self, colname: str) -> int | None:
        """The 1-based number n of column `colname`, or None."""
        h = self.header
        return next((i for i in range(1, int(h.get("TFIELDS", 0)) + 1) if str(h.get(f"TTYPE{i}", "")).strip().upper() == colname.upper()), None)

    def repeat(self, colname: str) -> int | None:
        """The fixed array length of column `colname` (TFORMn repeat count; None for variable-length arrays)."""
        tform = str(self.col_keyword(colname, "TFORM") or "").strip().upper()
        m = re.fullmatch(r"(\d*)([A-Z])(.*)", tform)
        if m is None or m.group(2) in "PQ":
            return None
        return int(m.group(1) or 1)


def hdu_infos(path, required: bool = False) -> tuple[HDUInfo, ...] | None:
    """The HDUs of `path` from their headers, or None when `path` is not a FITS file (GridError when `required`,
    as `open_fits` says it); GridError for a broken one."""
    path = Path(path)
    if not is_fits(path):
        if required:
            with open_fits(path):
                pass
        return None
    st = path.stat()
    return _infos(str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _infos(path: str, mtime_ns: int, size: int) -> tuple[HDUInfo, ...]:
    from astropy.io import fits

    out = []
    with open_fits(path) as hdul:
        for k, hdu in enumerate(hdul):
            kind = ("primary" if k == 0 else "bintable" if isinstance(hdu, fits.BinTableHDU)
                    else "table" if isinstance(hdu, fits.TableHDU) else "image")
            columns = tuple(n.upper() for n in hdu.columns.names) if kind in ("bintable", "table") else ()
            nrows = int(hdu.header.get("NAXIS2", 0)) if columns else 0
            out.append(HDUInfo(k, (hdu.name or "").upper(), kind, columns, nrows, hdu.header.copy()))
    return tuple(out)


def _check_numeric(values: np.ndarray, hdu, name: str, where: str) -> None:
    if values.dtype.kind not in "iuf":
        kind = {"U": "text", "S": "text", "b": "logical values", "c": "complex numbers"}.get(values.dtype.kind, f"{values.dtype} values")
        first = values.ravel()[:1].tolist()
        raise GridError(f"{where}: column {name!r} must hold numbers, it holds {kind} (FITS format "
                        f"{hdu.columns[name].format}" + (f", first value {first[0]!r})" if first else ")"))


def column(hdu, name: str, where: str) -> np.ndarray:
    """Column `name` of a table HDU as flat float64 (all rows, array cells concatenated)."""
    values = np.asarray(hdu.data.field(name))
    _check_numeric(values, hdu, name, where)
    return values.astype(np.float64).ravel()


def cells(hdu, name: str, where: str, rows: Sequence[int]) -> list[np.ndarray]:
    """The cells of column `name` in `rows` of a table HDU, each as a 1-D float64 array (fixed or variable
    length arrays; a scalar cell is an array of one value). Only those rows are read from a memory-mapped file."""
    field = hdu.data.field(name)
    out = []
    for r in rows:
        values = np.atleast_1d(np.asarray(field[r]))
        _check_numeric(values, hdu, name, where)
        out.append(values.astype(np.float64).ravel())
    return out


def text_values(hdu, name: str) -> list[str]:
    """Column `name` as stripped text, one value per row (numbers written as their decimal text)."""
    values = hdu.data.field(name)
    out = []
    for v in values:
        if isinstance(v, bytes):
            v = v.decode("ascii", "replace")
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        out.append(str(v).strip())
    return out


def keyword(headers: Sequence, *names: str, default=None):
    """The value of the first of `names` found, looking through `headers` in order for each name in turn."""
    for name in names:
        for h in headers:
            if h is not None and name in h and h[name] is not None and str(h[name]).strip() != "":
                return h[name]
    return default


def number(value) -> float | None:
    """`value` as a float when it is a finite number (header values may be text), else None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def flag(value) -> bool | None:
    """A FITS logical (or 'T'/'F', 'true'/'false' text) as bool, else None."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().upper() if value is not None else ""
    return {"T": True, "TRUE": True, "F": False, "FALSE": False}.get(text)


__all__ = ["FITS_SUFFIXES", "head_bytes", "is_fits", "has_fits_name", "open_fits", "hdu_infos", "HDUInfo", "column", "cells",
           "text_values", "keyword", "number", "flag"]
