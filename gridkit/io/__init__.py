"""Readers of spectra and label tables, registered in one place.

- `read_spectrum(path, format=None) -> (wavelength [A] float64, flux float64, meta dict)`: the format from
  `format` or the file's extension (`gridkit.io.formats.SPECTRUM_FORMATS`): 'turbospectrum' (.spec), 'text' (.txt .dat .asc .csv),
  'fits' (.fits .fit .fits.gz). Wavelengths must increase and be positive, fluxes finite (GridError otherwise).
- `read_labels(path) -> {column: ndarray}`: a label table through astropy (CSV, ECSV, FITS, VOTable...).
- `ingest(spec_files, labels_table, out, ...)`: spectra + labels -> base grid store (see gridkit.io.ingest).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import ConfigError, GridError
from ..schema import check_flux_finite, check_wavelength
from .fits import read_fits, write_fits
from .formats import SPECTRUM_FORMATS, TABLE_FORMATS, suffix
from .text import read_text, write_text
from .turbospectrum import read_spec

#: format name -> reader(path) -> (wavelength, flux, meta)
READERS: dict[str, Callable] = {"turbospectrum": read_spec, "text": read_text, "fits": read_fits}
from .ingest import ingest  # noqa: E402  (the function; binds over the submodule's name)


def spectrum_format(path, format: str | None = None) -> str:
    if format is not None:
        if format not in READERS:
            raise ConfigError(f"format must be one of {sorted(READERS)}, got {format!r}")
        return format
    ext = suffix(path, SPECTRUM_FORMATS)
    if ext not in SPECTRUM_FORMATS:
        raise ConfigError(f"cannot tell the format of {path} from its extension {ext!r}; pass format= one of {sorted(READERS)}")
    return SPECTRUM_FORMATS[ext]


def read_spectrum(path, format: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(wavelength [A], flux, meta) of a 1-D spectrum file, checked: wavelength strictly increasing and > 0, flux finite."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"spectrum file {path} does not exist")
    fmt = spectrum_format(path, format)
    wl, flux, meta = READERS[fmt](path)
    wl = check_wavelength(wl, name=f"wavelength of {path}")
    flux = np.asarray(flux, dtype=np.float64)
    if flux.shape != wl.shape:
        raise GridError(f"{path}: flux has {flux.size} values for {wl.size} wavelengths")
    check_flux_finite(flux, name=f"flux of {path}")
    return wl, flux, meta


def read_labels(path, numeric: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """{column name: values} of a label table (CSV, ECSV, FITS, VOTable, by extension; astropy's guess otherwise).
    Numeric columns as float64 (masked values become NaN), others as str. The columns named in `numeric` that
    the table has must hold numbers: GridError naming the file, the column and its first row that does not."""
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise GridError(f"label table {path} does not exist")
    ext = suffix(path, TABLE_FORMATS)
    fmt = TABLE_FORMATS.get(ext)
    try:
        table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # noqa: BLE001
        raise GridError(f"cannot read label table {path}: {exc}") from None
    out = {}
    for col in table.colnames:
        c = table[col]
        if c.dtype.kind in "iufb":
            values = np.ma.filled(np.ma.asarray(c).astype(np.float64), np.nan)
        else:
            values = np.asarray(np.ma.filled(np.ma.asarray(c), "")).astype(str)
        if values.ndim != 1:
            continue
        out[str(col)] = values
    for col in numeric:
        if col in out and out[col].dtype.kind not in "f":
            _numeric_column(path, col, out[col])
    return out


def _numeric_column(path: Path, col: str, values: np.ndarray) -> None:
    """Raise GridError naming the first row of text column `col` that is not a number (rows count from 1)."""
    items, bad = values.tolist(), []
    for i, v in enumerate(items):
        try:
            float(v)
        except (TypeError, ValueError):
            bad.append(i)
    if not bad:  # numbers written as text (a FITS string column of '1.5'): numbers still
        return
    first = items[bad[0]]
    raise GridError(f"label table {path}: column {col!r} must hold numbers; {len(bad)} of {len(items)} row(s) do not, "
                    f"first row {bad[0] + 1}: {first!r}" + (" (an empty cell)" if first == "" else ""))


__all__ = ["READERS", "SPECTRUM_FORMATS", "TABLE_FORMATS", "read_spectrum", "read_labels", "ingest", "read_spec", "read_text", "read_fits", "write_text", "write_fits", "spectrum_format"]
