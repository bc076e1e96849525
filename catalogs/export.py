"""Catalog -> astropy Table -> FITS, Parquet, VOTable or CSV, units and descriptions kept.

Quantiles are flattened to one column each (`teff_p02_5`, `teff_p16`, `teff_p50`, `teff_p84`, `teff_p97_5`,
see `catalogs.schema`). The format follows the file name:

    .fits .fit .fits.gz    FITS binary table (units in TUNITn, provenance in the header)
    .parquet               Parquet (units and descriptions in astropy's table metadata)
    .vot .votable .xml     VOTable (units and descriptions in FIELD elements)
    .csv                   comma-separated ECSV: a CSV whose `#` header carries units, descriptions and
                           provenance (read with `Table.read(path, format="ascii.ecsv")`, or skip `#` lines)
    .ecsv                  the same
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import xarray as xr

from gridkit.errors import StoreError
from gridkit.io.formats import TABLE_FORMATS, format_of

from .schema import as_str, select_columns

def format_for(path) -> str:
    """The astropy format of an export file name (`gridkit.io.formats.TABLE_FORMATS`); ConfigError naming the
    suffix when unknown."""
    return format_of(path, TABLE_FORMATS, "export")


def _unit(text):
    import astropy.units as u

    if text in (None, "", "1"):
        return None
    try:
        return u.Unit(text)
    except ValueError:
        return None


def to_table(cat: xr.Dataset, columns: Iterable[str] | None = None):
    """The flat view of a catalog (or a part of one) as an astropy Table with units and descriptions."""
    from astropy.table import Column, Table

    cols = select_columns(cat, columns)  # validates every name before loading anything
    loaded = xr.Dataset({name: da.variable for name, da in cols.items()}).compute()
    table = Table()
    for name, da in cols.items():
        values = np.asarray(loaded[name].values)
        if values.dtype.kind in "OUT" or str(values.dtype).startswith("StringDType"):
            values = as_str(values)
        table[name] = Column(values, unit=_unit(da.attrs.get("units")), description=da.attrs.get("long_name"))
    table.meta.update({str(k): (v if isinstance(v, (str, int, float, bool)) else json.dumps(v, default=str)) for k, v in cat.attrs.items()})
    return table


def write_table(table, path, *, overwrite: bool = False) -> Path:
    """Write an astropy Table in the format given by `path`'s suffix; an existing file is kept unless `overwrite`.

    The file is written aside and renamed into place (gridkit.files.atomic_output): a failure leaves the old
    file (or none) and no partial one."""
    from gridkit.files import atomic_output

    path = Path(path)
    fmt = format_for(path)
    if path.exists() and not overwrite:
        raise StoreError(f"output {path} exists; pass overwrite=True (--overwrite) to replace it")
    with warnings.catch_warnings(), atomic_output(path) as tmp:
        warnings.simplefilter("ignore")  # HIERARCH keywords, long cards, VOTable meta
        if fmt == "fits":
            _write_fits(table, tmp, gzip=path.name.lower().endswith(".gz"))
        elif fmt == "parquet":
            table.write(tmp, format="parquet")
        elif fmt == "votable":
            table.write(tmp, format="votable")
        else:
            table.write(tmp, format="ascii.ecsv", delimiter=",")
    return path


def _write_fits(table, path: Path, gzip: bool) -> None:
    """A FITS binary table with the table's meta in the header. FITS has no 'dex': astropy drops such units on
    writing, so the unit string goes into TUNITn itself (the common practice of survey catalogs); `read_table`
    turns it back into an astropy unit. `gzip`: compress (the temporary name does not end in .gz)."""
    import gzip as _gzip

    from astropy.io import fits

    hdu = fits.table_to_hdu(table, character_as_bytes=True)
    for i, col in enumerate(table.itercols(), start=1):
        if col.unit is not None and not hdu.header.get(f"TUNIT{i}"):
            hdu.header[f"TUNIT{i}"] = str(col.unit)
    hdul = fits.HDUList([fits.PrimaryHDU(), hdu])
    if gzip:
        with _gzip.open(path, "wb") as fh:
            hdul.writeto(fh)
    else:
        hdul.writeto(path)


def _fix_units(table):
    import astropy.units as u

    for col in table.itercols():
        # FITS gives UnrecognizedUnit('dex'), VOTable a deci-'ex' PrefixUnit: parse the text again, generically
        if col.unit is not None:
            try:
                col.unit = u.Unit(str(col.unit))
            except ValueError:
                pass
    return table


def read_table(path):
    """Read back an exported table (any of the formats above) with its units."""
    from astropy.table import Table

    fmt = format_for(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt in ("ascii.csv", "ascii.ecsv"):
            return Table.read(path, format="ascii.ecsv")
        if fmt == "votable":
            return _fix_units(Table.read(path, format="votable"))
        return _fix_units(Table.read(path, format=fmt))


def export(cat: xr.Dataset, path, *, columns: Iterable[str] | None = None, overwrite: bool = False) -> Path:
    """Write the flat view of `cat` (all columns, or `columns`) to `path`; the format follows the suffix."""
    format_for(path)  # fail on the name before loading anything
    if Path(path).exists() and not overwrite:
        raise StoreError(f"output {path} exists; pass overwrite=True (--overwrite) to replace it")
    return write_table(to_table(cat, columns), path, overwrite=overwrite)
