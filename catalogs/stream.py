"""Exports that stream: a catalog of any size written `STREAM_ROWS` stars at a time, memory flat in the stars.

Each block is turned into a table by `catalogs.export.to_table` and written by `catalogs.export.write_table` (so a
streamed file has exactly the columns, units, descriptions, UCDs and provenance of an in-memory export), into a
scratch folder next to the output; the blocks are then spliced into one file:

- FITS: the header of the first block with NAXIS2 = all rows, then the rows of every block (a binary table's
  data is its rows back to back), then the padding to 2880 bytes; `.fits.gz` is compressed while spliced;
- Parquet: the first block's schema (with astropy's metadata and the per-field unit/description/UCD), one row
  group per block;
- CSV, ECSV: the first block whole (ECSV header, or the CSV header line and the sidecar `.csv-metadata.json`),
  the next ones without their header.

Text columns are given the width of their widest value in the whole selection (one pass over them first), so
every block has the same FITS formats and Parquet string lengths. VOTable is written from one table in memory
(astropy has no incremental VOTable writer).
"""
from __future__ import annotations

import gzip as _gzip
import importlib
import os
import shutil
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import xarray as xr

from gridkit.errors import StoreError

_export = importlib.import_module("catalogs.export")  # the module (`catalogs.export` the attribute is the function)
from .schema import STAR, as_str, select_columns

#: stars read and written at a time (about 30 MB of a catalog of 10 labels)
STREAM_ROWS = 1 << 17


def _is_text(dtype) -> bool:
    return dtype.kind in "OUST" or str(dtype).startswith("StringDType")


def text_widths(cols: dict, n: int, step: int = STREAM_ROWS) -> dict[str, int]:
    """The widest value (characters) of each text column of `cols` ({name: DataArray along star}), read `step`
    rows at a time."""
    out = {}
    for name, da in cols.items():
        if not _is_text(da.dtype):
            continue
        width = 1
        for start in range(0, n, step):
            part = np.asarray(da.isel({STAR: slice(start, start + step)}).values)
            if part.size:
                width = max(width, int(np.strings.str_len(as_str(part)).max()))
        out[name] = width
    return out


def blocks(cat: xr.Dataset, columns: Iterable[str] | None, step: int = STREAM_ROWS, widths: dict | None = None) -> Iterator:
    """astropy Tables (`catalogs.export.to_table`) of `step` consecutive stars each (one empty table for an empty
    catalog), text columns `widths` wide (default: measured). The flat columns are made once (`select_columns`),
    then sliced per block."""
    cols = select_columns(cat, columns)
    names = list(cols)
    n = int(cat.sizes[STAR])
    widths = text_widths(cols, n, step) if widths is None else widths
    for start in range(0, max(n, 1), step):
        sl = slice(start, min(start + step, n))
        part = xr.Dataset({name: da.variable.isel({STAR: sl}) for name, da in cols.items()}, attrs=dict(cat.attrs))
        table = _export.to_table(part, names)
        for name, width in widths.items():
            if name in table.colnames:
                col = table[name]
                table.replace_column(name, col.astype(f"U{width}"))
                table[name].info.unit, table[name].info.description, table[name].info.meta = col.unit, col.description, col.meta
        yield table


def export(cat: xr.Dataset, path, *, columns: Iterable[str] | None = None, overwrite: bool = False, rows: int | None = None) -> Path:
    """Write the flat view of `cat` (all columns or `columns`) to `path` (format from the suffix, as
    `catalogs.export.write_table`), `rows` stars at a time; written aside and renamed into place."""
    from gridkit.files import atomic_output

    path = Path(path)
    fmt = _export.format_for(path)
    outputs = [path, _export.csv_metadata_path(path)] if fmt == "ascii.csv" else [path]
    for out in outputs:
        if out.exists() and not overwrite:
            raise StoreError(f"output {out} exists; pass overwrite=True (--overwrite) to replace it")
    select_columns(cat, columns)  # unknown columns fail before anything is read
    if fmt == "votable":
        return _export.write_table(_export.to_table(cat, columns), path, overwrite=overwrite)
    step = max(int(rows or STREAM_ROWS), 1)
    n = int(cat.sizes[STAR])
    scratch = path.parent / f".{path.name}.stream-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # HIERARCH keywords, long cards
            parts = blocks(cat, columns, step)
            if fmt == "fits":
                with atomic_output(path) as tmp:
                    _splice_fits(parts, n, scratch, tmp, gzip=path.name.lower().endswith(".gz"))
            elif fmt == "parquet":
                with atomic_output(path) as tmp:
                    _splice_parquet(parts, scratch, tmp)
            else:
                sidecar = _export.csv_metadata_path(scratch / path.name)
                with atomic_output(path) as tmp:
                    _splice_text(parts, scratch / path.name, tmp, fmt)
                    if fmt == "ascii.csv":
                        os.replace(sidecar, _export.csv_metadata_path(path))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def _splice_fits(parts, n: int, scratch: Path, out_path: Path, gzip: bool) -> None:
    from astropy.io import fits

    block_file = scratch / "block.fits"
    opener = _gzip.open if gzip else open
    with opener(out_path, "wb") as out:
        header, row_bytes, written = None, 0, 0
        for table in parts:
            _export.write_table(table, block_file, overwrite=True)
            with fits.open(block_file, memmap=False, lazy_load_hdus=False) as hdul:
                info = hdul.fileinfo(1)
                hdr = hdul[1].header
                if int(hdr.get("PCOUNT", 0)):
                    raise StoreError("variable-length FITS columns cannot be streamed")
                formats = [hdr.get(f"TFORM{i}") for i in range(1, int(hdr["TFIELDS"]) + 1)]
                raw = block_file.read_bytes()
            if header is None:
                header, row_bytes = hdr.copy(), int(hdr["NAXIS1"])
                header["NAXIS2"] = n
                out.write(raw[: info["hdrLoc"]])  # the primary HDU as written
                out.write(header.tostring().encode("ascii"))
                first_formats = formats
            elif formats != first_formats:
                raise StoreError(f"FITS column formats changed between streamed blocks: {first_formats} -> {formats}")
            out.write(raw[info["datLoc"]: info["datLoc"] + row_bytes * len(table)])
            written += len(table)
        if written != n:
            raise StoreError(f"streamed {written} rows, expected {n}")
        out.write(b"\0" * ((-row_bytes * n) % 2880))


def _splice_parquet(parts, scratch: Path, out_path: Path) -> None:
    """The schema (with astropy's metadata and the per-field unit/description/UCD) of the first row as
    `write_table` writes it; then every block straight from its columns, as astropy converts them, one row group
    each, without dictionary encoding (random floats: 10x faster to write, the same values)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    block_file = scratch / "block.parquet"
    writer = None
    try:
        for table in parts:
            if writer is None:
                _export.write_table(table[:1], block_file, overwrite=True)
                schema = pq.read_schema(block_file)
                writer = pq.ParquetWriter(out_path, schema, version="2.4", use_dictionary=False)
            arrow = pa.Table.from_arrays([pa.array(np.asarray(table[f.name]).astype(table[f.name].dtype.newbyteorder("<"), copy=False), type=f.type)
                                          for f in schema], schema=schema)
            writer.write_table(arrow)
    finally:
        if writer is not None:
            writer.close()


def _splice_text(parts, block_file: Path, out_path: Path, fmt: str) -> None:
    with open(out_path, "wb") as out:
        for i, table in enumerate(parts):
            _export.write_table(table, block_file, overwrite=True)
            with open(block_file, "rb") as fh:
                if i:  # skip the header: ECSV's '#' lines, then the line of column names
                    line = fh.readline()
                    while line.startswith(b"#"):
                        line = fh.readline()
                shutil.copyfileobj(fh, out)
