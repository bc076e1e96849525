"""Readers of spectra and label tables, registered in one place (gridkit.io.registry).

- `Spectrum` (gridkit.io.spectrum): wavelength [A] strictly increasing, medium, flux, sigma, good, meta;
  `Spectrum.to_specutils()` / `Spectrum.from_specutils(sp)`.
- `read_spectra(path, format=None, which=None) -> [Spectrum]`, `list_spectra(path, format=None) -> [meta]`,
  `identify(path) -> format name`, `register(...)`, `formats()`: the formats 'eso-sdp', '4most-l1',
  '4most-l1-multi', 'fits', 'text', 'turbospectrum' (see gridkit.io.registry and docs/observed.md).
- `write_eso_sdp(path, spectrum)`: an ESO SDP 1-D spectrum file (gridkit.io.eso).
- `read_spectrum(path, format=None) -> (wavelength [A] float64, flux float64, meta dict)`: the one spectrum of a
  file for a grid: the format from `format` or `identify`; every pixel must be usable (finite flux, QUAL 0,
  sigma > 0 where there is one; GridError otherwise) and wavelengths strictly increasing and positive.
- `READERS`, `spectrum_format(path, format=None)`: format name -> reader(path) -> (wavelength, flux, meta) of a
  one-spectrum file as it is (gridkit.observed reads observed spectra through them).
- `read_labels(path) -> {column: ndarray}`: a label table through astropy (CSV, ECSV, FITS, VOTable...).
- `ingest(spec_files, labels_table, out, ...)`: spectra + labels -> base grid store (see gridkit.io.ingest).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ConfigError, GridError
from .eso import write_eso_sdp
from .fits import read_fits, write_fits
from .formats import SPECTRUM_FORMATS, TABLE_FORMATS, suffix
from .registry import READERS, formats, identify, list_spectra, read_spectra, register, unregister
from .spectrum import Spectrum, mask_reasons
from .text import read_text, write_text
from .turbospectrum import read_spec

from .ingest import ingest  # noqa: E402  (the function; binds over the submodule's name)


def spectrum_format(path, format: str | None = None) -> str:
    """`format` when it is registered (ConfigError otherwise), else the format `identify(path)` finds."""
    if format is not None:
        if format not in READERS:
            raise ConfigError(f"format must be one of {formats()}, got {format!r}")
        return format
    return identify(path)


def read_spectrum(path, format: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(wavelength [A], flux, meta) of a one-spectrum file for a grid: wavelength strictly increasing and > 0, every
    pixel usable (GridError naming the file, the count and the first pixel otherwise); meta: what the file says
    (no None values) and 'medium'."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"spectrum file {path} does not exist")
    spectra = read_spectra(path, spectrum_format(path, format))
    if len(spectra) != 1:
        raise GridError(f"{path} holds {len(spectra)} spectra; read_spectrum reads a one-spectrum file (use gridkit.io.read_spectra)")
    sp = spectra[0]
    if not sp.good.all():
        bad = ~sp.good
        i = int(np.flatnonzero(bad)[0])
        bad_flux = ~np.isfinite(sp.flux)
        bad_sigma = np.zeros_like(bad) if sp.sigma is None else ~(np.isfinite(sp.sigma) & (sp.sigma > 0))
        reasons = mask_reasons(bad & ~bad_flux & ~bad_sigma, bad_flux, bad_sigma)
        raise GridError(f"flux of {path} has {int(bad.sum())} NaN/inf or masked value(s) of {bad.size} ({reasons}), first at index "
                        f"{i} ({sp.wavelength[i]:.4f} A); a spectrum for a grid must be complete")
    return sp.wavelength, sp.flux, {**{k: v for k, v in sp.meta.items() if v is not None}, "medium": sp.medium}


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


__all__ = ["READERS", "SPECTRUM_FORMATS", "TABLE_FORMATS", "Spectrum", "read_spectra", "list_spectra", "identify", "register",
           "unregister", "formats", "write_eso_sdp", "read_spectrum", "read_labels", "ingest", "read_spec", "read_text", "read_fits",
           "write_text", "write_fits", "spectrum_format"]
