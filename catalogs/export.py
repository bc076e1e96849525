"""Catalog -> astropy Table -> FITS, Parquet, VOTable, CSV or ECSV, with units, descriptions, UCDs and provenance.

Quantiles are flattened to one column each (`teff_p02_5`, `teff_p16`, `teff_p50`, `teff_p84`, `teff_p97_5`), with the
symmetric error `e_teff` = (p84 - p16) / 2 after them (see `catalogs.schema`, which also chooses the UCD1+ of every
column). The format follows the file name; each one opens without a warning in `astropy.table.Table.read`:

    .fits .fit .fits.gz    FITS binary table: TUNITn, TCOMMn (description), TUCDn (UCD); provenance in the header.
                           FITS has no `dex`: such columns have no TUNITn, their TCOMMn ends in "[dex]" and astropy's
                           column metadata says unit "dex" (`read_table` gives `u.dex` back).
    .parquet               Parquet: astropy's table metadata, and `unit`, `description`, `ucd` in each Arrow field's
                           metadata (pyarrow, pandas)
    .vot .votable .xml     VOTable 1.3, BINARY2 data: FIELDs with unit, ucd and DESCRIPTION; the provenance as
                           PARAMs of the TABLE. Units are written in the CDS syntax of VOTable 1.3, where `dex` is
                           `[-]` (astropy reads it back as `u.dex`; VOUnits of VOTable 1.4 have no dex).
    .csv                   plain CSV (one header line of column names, one line per star: what `pandas.read_csv`
                           expects); units, descriptions, UCDs and provenance in the sidecar `<name>.csv-metadata.json`
                           (named after the W3C CSV-on-the-Web convention: `tableSchema.columns[*]` with
                           `schema:unitText`, `dc:description`, `schema:propertyID` = UCD; provenance in `dc:provenance`)
    .ecsv                  ECSV: a CSV whose `#` YAML header carries units, descriptions, UCDs and provenance

`to_pandas(cat)`: one row per star (star_id as the index), the flat columns, units in `DataFrame.attrs`.
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

from .schema import as_str, select_columns, ucd

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
    """The flat view of a catalog (or a part of one) as an astropy Table with units, descriptions (`description`)
    and UCDs (`meta["ucd"]` of each column), the catalog's attrs as the table's meta."""
    from astropy.table import Column, Table

    cols = select_columns(cat, columns)  # validates every name before loading anything
    loaded = xr.Dataset({name: da.variable for name, da in cols.items()}).compute()
    table = Table()
    for name, da in cols.items():
        values = np.asarray(loaded[name].values)
        if values.dtype.kind in "OUT" or str(values.dtype).startswith("StringDType"):
            values = as_str(values)
        kind = ucd(name)
        table[name] = Column(values, unit=_unit(da.attrs.get("units")), description=da.attrs.get("long_name"),
                             meta={"ucd": kind} if kind else None)
    table.meta.update({str(k): _meta_value(v) for k, v in cat.attrs.items()})
    return table


def _meta_value(v):
    if isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, np.generic):
        return v.item()
    return json.dumps(v, default=str)


def to_pandas(cat: xr.Dataset, columns: Iterable[str] | None = None):
    """The flat view of `cat` as a pandas DataFrame: one row per star, `star_id` as the index, the flat columns
    (`teff`, `teff_p16`, ..., `e_teff`, ...; all, or `columns`) in their catalog dtypes. `df.attrs` holds
    `units`, `descriptions` and `ucds` ({column: str}) and `provenance` (the catalog's attrs).

    (`cat.to_dataframe()` is xarray's: one row per star and quantile.)"""
    table = to_table(cat, columns)
    df = table.to_pandas(index="star_id") if "star_id" in table.colnames else table.to_pandas()
    df.attrs.update({"units": {c.name: _unit_text(c.unit) for c in table.itercols() if c.unit is not None},
                     "descriptions": {c.name: c.description for c in table.itercols() if c.description},
                     "ucds": {c.name: c.meta["ucd"] for c in table.itercols() if c.meta.get("ucd")},
                     "provenance": dict(table.meta)})
    return df


def csv_metadata_path(path) -> Path:
    """The sidecar of a `.csv` export: `<name>.csv-metadata.json` (CSV on the Web's naming)."""
    path = Path(path)
    return path.with_name(path.name + "-metadata.json")


def write_table(table, path, *, overwrite: bool = False) -> Path:
    """Write an astropy Table in the format given by `path`'s suffix; an existing file is kept unless `overwrite`.

    The file is written aside and renamed into place (gridkit.files.atomic_output): a failure leaves the old
    file (or none) and no partial one. A `.csv` gets its sidecar `csv_metadata_path(path)` (written first)."""
    from gridkit.files import atomic_output, atomic_write_text

    path = Path(path)
    fmt = format_for(path)
    outputs = [path, csv_metadata_path(path)] if fmt == "ascii.csv" else [path]
    for out in outputs:
        if out.exists() and not overwrite:
            raise StoreError(f"output {out} exists; pass overwrite=True (--overwrite) to replace it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HIERARCH keywords, long cards
        if fmt == "ascii.csv":
            atomic_write_text(csv_metadata_path(path), json.dumps(_csv_metadata(table, path.name), indent=1, default=str) + "\n")
        with atomic_output(path) as tmp:
            if fmt == "fits":
                _write_fits(table, tmp, gzip=path.name.lower().endswith(".gz"))
            elif fmt == "parquet":
                _write_parquet(table, tmp)
            elif fmt == "votable":
                _write_votable(table, tmp)
            elif fmt == "ascii.csv":
                table.write(tmp, format="ascii.csv", comment=False)
            else:
                table.write(tmp, format="ascii.ecsv", delimiter=",")
    return path


def _unit_text(unit) -> str:
    return unit.to_string() if unit is not None else ""


def _is_dex(unit) -> bool:
    import astropy.units as u

    try:
        return unit is not None and unit == u.dex
    except (TypeError, ValueError, u.UnitsError):
        return False


def _standard_unit(unit, fmt: str) -> str | None:
    """`unit` in the syntax `fmt` ('fits', 'cds') if astropy reads that text back as the same unit without a
    warning; else None. `dex` in CDS is `[-]`."""
    import astropy.units as u

    if fmt == "cds" and _is_dex(unit):
        return "[-]"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            text = unit.to_string(fmt)
            return text if u.Unit(text, format=fmt) == unit else None
    except Exception:  # noqa: BLE001 - any failure means: not expressible in this standard
        return None


def _write_fits(table, path: Path, gzip: bool) -> None:
    """A FITS binary table with TCOMMn (description) and TUCDn (UCD) per column and the table's meta in the header.
    A unit the FITS standard lacks (`dex`) gets no TUNITn: it is named at the end of TCOMMn ("[dex]") and in
    astropy's column metadata (`meta["unit"]`), from which `read_table` restores it. `gzip`: compress (the
    temporary name does not end in .gz)."""
    import gzip as _gzip

    from astropy.io import fits
    from astropy.table import Table

    table = Table(table, copy=False)
    comments = {}
    for col in table.itercols():
        desc = col.description or ""
        if col.unit is not None and _standard_unit(col.unit, "fits") is None:
            text = _unit_text(col.unit)
            col.meta = {**(col.meta or {}), "unit": text}
            col.unit = None
            desc = f"{desc} [{text}]".strip()
        comments[col.name] = desc
    try:  # what Table.write(format="fits") does: descriptions and meta as astropy's YAML in COMMENT cards
        from astropy.io.fits.connect import _encode_mixins
    except ImportError:  # pragma: no cover - astropy moved it: TCOMMn and TUCDn still carry them
        _encode_mixins = None
    hdu = fits.table_to_hdu(_encode_mixins(table) if _encode_mixins else table, character_as_bytes=True)
    for i, col in enumerate(table.itercols(), start=1):
        at = hdu.header.index(f"TUNIT{i}" if f"TUNIT{i}" in hdu.header else f"TFORM{i}") + 1
        if (col.meta or {}).get("ucd"):
            hdu.header.insert(at, (f"TUCD{i}", col.meta["ucd"], "UCD1+ of the column"))
        if comments[col.name]:
            hdu.header.insert(at, (f"TCOMM{i}", comments[col.name]))
    hdul = fits.HDUList([fits.PrimaryHDU(), hdu])
    if gzip:
        with _gzip.open(path, "wb") as fh:
            hdul.writeto(fh)
    else:
        hdul.writeto(path)


def _write_parquet(table, path: Path) -> None:
    """astropy's Parquet (its YAML table metadata gives astropy the units back), then `unit`, `description` and
    `ucd` added to each Arrow field's metadata for pyarrow and pandas users."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table.write(path, format="parquet", overwrite=True)
    arrow = pq.read_table(path)
    fields = []
    for field in arrow.schema:
        col = table[field.name]
        extra = {"unit": _unit_text(col.unit), "description": col.description or "", "ucd": (col.meta or {}).get("ucd") or ""}
        fields.append(field.with_metadata({**(field.metadata or {}), **{k.encode(): v.encode() for k, v in extra.items() if v}}))
    schema = pa.schema(fields, metadata=arrow.schema.metadata)
    pq.write_table(pa.Table.from_arrays(arrow.columns, schema=schema), path)


def _write_votable(table, path: Path) -> None:
    """VOTable 1.3 (CDS units: `dex` is `[-]`), BINARY2 serialization (exact values); FIELD ucd from the
    columns' meta; every entry of the table's meta as a PARAM of the TABLE (typed when a number or a bool)."""
    from astropy.io.votable.tree import Param, Resource, TableElement, VOTableFile

    vot = VOTableFile(version="1.3")
    resource = Resource()
    vot.resources.append(resource)
    element = TableElement.from_table(vot, table)
    element.description = table.meta.get("title")
    for field, col in zip(element.fields, table.itercols()):
        if col.unit is None:
            continue
        text = _standard_unit(col.unit, "cds")
        if text is None:  # not expressible: named in the description, like FITS
            field.unit = None
            field.description = f"{field.description or ''} [{_unit_text(col.unit)}]".strip()
        else:
            field.unit = text
    for key, value in table.meta.items():
        if isinstance(value, bool):
            kw = {"datatype": "boolean", "value": value}
        elif isinstance(value, int):
            kw = {"datatype": "long", "value": value}
        elif isinstance(value, float):
            kw = {"datatype": "double", "value": value}
        else:
            kw = {"datatype": "char", "arraysize": "*", "value": str(value)}
        element.params.append(Param(vot, name=str(key), **kw))
    resource.tables.append(element)
    vot.to_xml(str(path), tabledata_format="binary2")


def _csv_metadata(table, name: str) -> dict:
    """The `.csv` sidecar: CSV-on-the-Web style table description with units, descriptions, UCDs, provenance."""
    columns = []
    for col in table.itercols():
        kind = col.dtype.kind
        entry = {"name": col.name, "titles": col.name,
                 "datatype": {"b": "boolean", "i": "integer", "u": "integer", "f": "number"}.get(kind, "string")}
        if col.description:
            entry["dc:description"] = col.description
        if col.unit is not None:
            entry["schema:unitText"] = _unit_text(col.unit)
        if (col.meta or {}).get("ucd"):
            entry["schema:propertyID"] = col.meta["ucd"]
        columns.append(entry)
    schema = {"columns": columns}
    if "star_id" in table.colnames:
        schema["primaryKey"] = "star_id"
    return {"@context": "http://www.w3.org/ns/csvw", "url": name, "dc:title": str(table.meta.get("title", name)),
            "tableSchema": schema, "dc:provenance": {str(k): v for k, v in table.meta.items()}}


def _restore_units(table):
    """Units the file could not hold in its standard (FITS `dex`: meta["unit"]), and `dex(---)` (CDS `[-]`) as `u.dex`."""
    import astropy.units as u

    for col in table.itercols():
        if col.unit is None and isinstance(col.meta, dict) and "unit" in col.meta:
            col.unit = u.Unit(col.meta.pop("unit"))
        elif _is_dex(col.unit):
            col.unit = u.dex
    return table


def read_table(path):
    """Read back an exported table (any of the formats above) with its units, descriptions, UCDs (column
    `meta["ucd"]`) and provenance (table meta); a `.csv` needs its sidecar for anything but the values."""
    import astropy.units as u
    from astropy.io import ascii as _ascii
    from astropy.table import Table

    fmt = format_for(path)
    if fmt == "ascii.csv":
        side = csv_metadata_path(path)
        info = json.loads(side.read_text()) if side.exists() else {"tableSchema": {"columns": []}}
        columns = info["tableSchema"]["columns"]
        strings = [c["name"] for c in columns if c.get("datatype") == "string"]
        table = Table.read(path, format="ascii.csv", converters={n: [_ascii.convert_numpy(str)] for n in strings})
        for c in columns:
            if c["name"] in table.colnames:
                if c.get("datatype") == "boolean" and table[c["name"]].dtype.kind == "U":  # written True/False
                    table[c["name"]] = np.asarray(table[c["name"]]) == "True"
                col = table[c["name"]]
                col.unit = u.Unit(c["schema:unitText"]) if c.get("schema:unitText") else None
                col.description = c.get("dc:description")
                if c.get("schema:propertyID"):
                    col.meta["ucd"] = c["schema:propertyID"]
        table.meta.update(info.get("dc:provenance", {}))
        return table
    if fmt == "ascii.ecsv":
        return Table.read(path, format="ascii.ecsv")
    if fmt == "votable":
        from astropy.io import votable

        element = votable.parse(str(path)).get_first_table()
        table = element.to_table()
        table.meta.update({p.name: (p.value.item() if isinstance(p.value, np.generic) else p.value) for p in element.params})
        return _restore_units(table)
    if fmt == "fits":  # header keywords are upper case: the catalog's attrs are lower case
        table = Table.read(path, format="fits", character_as_bytes=False)
        table.meta = {(k.lower() if k.isupper() else k): v for k, v in table.meta.items()}
        return _restore_units(table)
    return _restore_units(Table.read(path, format=fmt))


def export(cat: xr.Dataset, path, *, columns: Iterable[str] | None = None, overwrite: bool = False) -> Path:
    """Write the flat view of `cat` (all columns, or `columns`) to `path`; the format follows the suffix."""
    format_for(path)  # fail on the name before loading anything
    if Path(path).exists() and not overwrite:
        raise StoreError(f"output {path} exists; pass overwrite=True (--overwrite) to replace it")
    return write_table(to_table(cat, columns), path, overwrite=overwrite)
