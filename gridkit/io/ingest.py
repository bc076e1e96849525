"""`ingest`: spectra files (Turbospectrum `.spec`, text, FITS) + a label table -> a base grid store.

Matching spectra to label rows:
- by name, when the table has a column `id_column` (default: the first of 'file', 'filename', 'spectrum', 'id'
  present): a spectrum matches the row whose value equals its file name, or its name without the extension
  (e.g. `star_001.spec` matches 'star_001.spec' or 'star_001'; directories are ignored);
  every spectrum needs exactly one row; extra rows are ignored;
- by order otherwise: row i labels the i-th file as given (after sorting, when a directory is given);
  the table must have exactly one row per file.

Every spectrum must share one wavelength grid (to 1e-6 A). Everything is read and checked before anything is
written; the flux is then written region by region through gridkit.store (out of core).
"""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from .. import store as _store
from ..errors import GridError, StoreError
from ..files import check_output, sha256_file
from ..schema import FLUX_ATTRS, LABEL_NAMES, MODEL, WAVELENGTH, check_labels, label_variables, wavelength_attrs

ID_COLUMNS = ("file", "filename", "spectrum", "id")


def _files(spec_files) -> list[Path]:
    from .formats import SPECTRUM_FORMATS, suffix

    if isinstance(spec_files, (str, Path)):
        spec_files = [spec_files]
    out: list[Path] = []
    for item in spec_files:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and suffix(f, SPECTRUM_FORMATS) in SPECTRUM_FORMATS)
            if not found:
                raise GridError(f"spec_files: directory {p} holds no spectrum files ({', '.join(sorted(SPECTRUM_FORMATS))})")
            out.extend(found)
        elif not p.is_file():
            raise GridError(f"spec_files: {p} does not exist")
        else:
            out.append(p)
    if not out:
        raise GridError("spec_files is empty")
    names = [f.name for f in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GridError(f"spec_files: file names must be unique, duplicated: {dup[:5]}")
    return out


def _match(files: list[Path], table: Mapping[str, np.ndarray], id_column: str | None) -> np.ndarray:
    """Row index of each file."""
    n_rows = len(next(iter(table.values()))) if table else 0
    col = id_column if id_column is not None else next((c for c in ID_COLUMNS if c in table), None)
    if id_column is not None and id_column not in table:
        raise GridError(f"id_column {id_column!r} is not a column of the label table (columns: {sorted(table)})")
    if col is None:
        if n_rows != len(files):
            raise GridError(f"the label table has {n_rows} rows for {len(files)} spectra; matching by order needs one row per "
                            f"spectrum (or give an id column: one of {ID_COLUMNS})")
        return np.arange(len(files))
    ids = [Path(str(v).strip()).name for v in table[col]]
    index: dict[str, int] = {}
    for i, v in enumerate(ids):
        if v in index:
            raise GridError(f"label table column {col!r} has the value {v!r} twice (rows {index[v]} and {i})")
        index[v] = i
    rows = []
    for f in files:
        name, stem = f.name, f.name[: -len(f.suffix)] if f.suffix else f.name
        hit = [index[k] for k in {name, stem} if k in index]
        if not hit:
            raise GridError(f"spectrum {f.name} has no row in the label table (column {col!r} has no {name!r} or {stem!r})")
        if len(hit) > 1:
            raise GridError(f"spectrum {f.name} matches two rows of the label table (column {col!r})")
        rows.append(hit[0])
    return np.array(rows)


class _IngestRegion:
    """make_region: read the spectra of one region (picklable)."""

    def __init__(self, files: list[str], fmt: str | None, model_ids: np.ndarray):
        self.files, self.fmt, self.model_ids = files, fmt, model_ids

    def inputs(self, i: int, sl: slice) -> str:
        """The bytes of the region's spectrum files (a region written from files that changed is written again)."""
        return _store.digest([sha256_file(f) for f in self.files[sl]])

    def __call__(self, i: int, sl: slice) -> xr.Dataset:
        from . import read_spectrum

        flux = np.stack([read_spectrum(self.files[m], self.fmt)[1] for m in range(sl.start, sl.stop)]).astype(np.float32)
        return xr.Dataset({"flux": ((MODEL, WAVELENGTH), flux)}, coords={MODEL: self.model_ids[sl]})


def _labels(files: list[Path], table: Mapping[str, np.ndarray], source, id_column, required_labels) -> dict[str, np.ndarray]:
    """The label columns of `table` (default labels and `required_labels`), one row per file, finite."""
    rows = _match(files, table, id_column)
    missing = [c for c in required_labels if c not in table]
    if missing:
        raise GridError(f"label table {source} lacks label column(s) {missing} (it has {sorted(table)})")
    labels = {}
    for c in (c for c in table if c in LABEL_NAMES or c in required_labels):
        try:
            labels[c] = np.asarray(table[c], dtype=np.float64)[rows]
        except ValueError:
            raise GridError(f"label column {c!r} of {source} is not numeric") from None
        bad = np.flatnonzero(~np.isfinite(labels[c]))
        if bad.size:
            raise GridError(f"label {c!r} is missing or NaN for {bad.size} spectrum/spectra, first {files[bad[0]].name}")
    return check_labels(labels, len(files), required=required_labels)


def _common_wavelength(files: list[Path], format: str | None) -> np.ndarray:
    """The wavelength grid every spectrum shares (to 1e-6 A), read from each file."""
    from . import read_spectrum

    wl0 = None
    for f in files:
        wl, _, _ = read_spectrum(f, format)
        if wl0 is None:
            wl0 = wl
        elif wl.shape != wl0.shape or not np.allclose(wl, wl0, rtol=0, atol=1e-6):
            detail = f"{wl.size} vs {wl0.size} points" if wl.shape != wl0.shape else f"first difference at index {int(np.flatnonzero(~np.isclose(wl, wl0, rtol=0, atol=1e-6))[0])}"
            raise GridError(f"all spectra must share one wavelength grid; {f.name} differs from {files[0].name} ({detail})")
    return wl0


def ingest(
    spec_files: Sequence | str | Path,
    labels_table,
    out,
    overwrite: bool = False,
    *,
    id_column: str | None = None,
    format: str | None = None,
    medium: str = "air",
    resolving_power: float = math.inf,
    required_labels: Sequence[str] = LABEL_NAMES,
    models_per_region: int = 256,
    progress: bool = False,
    client=None,
) -> Path:
    """Write the base grid of `spec_files` (paths, or directories of spectra) labelled by `labels_table` (a path
    read with gridkit.io.read_labels, or a mapping column -> values) to the Zarr v3 store `out`.

    The labels are the table's columns named like the default labels (all of `required_labels` must be there,
    finite); an existing `out` is refused unless overwrite=True. Returns `out`.
    """
    from . import read_labels

    out = Path(out)
    files = _files(spec_files)
    given = [spec_files] if isinstance(spec_files, (str, Path)) else list(spec_files)
    inputs = [*given, *files, *([labels_table] if isinstance(labels_table, (str, Path)) else [])]
    check_output(out, inputs)
    if out.exists() and not overwrite:
        raise StoreError(f"output {out} exists; pass overwrite=True (--overwrite) to replace it")
    table = read_labels(labels_table) if isinstance(labels_table, (str, Path)) else {k: np.asarray(v) for k, v in labels_table.items()}
    if not table:
        raise GridError(f"label table {labels_table} has no columns")
    labels = _labels(files, table, labels_table, id_column, required_labels)
    wl0 = _common_wavelength(files, format)  # every spectrum read and checked before anything is written
    import dask.array as da

    n = len(files)
    region = int(max(1, min(models_per_region, n)))
    model_ids = np.arange(n)
    template = xr.Dataset(
        {"flux": ((MODEL, WAVELENGTH), da.zeros((n, wl0.size), dtype=np.float32, chunks=(region, wl0.size)), dict(FLUX_ATTRS)),
         "source_file": ((MODEL,), np.array([f.name for f in files], dtype=object), {"long_name": "source spectrum file"})},
        coords={MODEL: (MODEL, model_ids, {"long_name": "model id"}), WAVELENGTH: (WAVELENGTH, wl0, wavelength_attrs(medium))},
    )
    template = template.assign(label_variables(labels))
    template.attrs.update({
        "resolving_power": float(resolving_power),
        "generator": "gridkit ingest",
        "source": f"{n} spectra ({files[0].name} ... {files[-1].name}), format {format or 'by extension'}",
        "labels_table": str(labels_table) if isinstance(labels_table, (str, Path)) else "mapping",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    fp = _store.fingerprint("ingest", [str(f.resolve()) for f in files], sorted(labels), region)
    rstore, _ = _store.create(out, template, dim=MODEL, region_size=region, fingerprint=fp, overwrite=overwrite, inputs=inputs)
    failures = _store.write_regions(rstore, _IngestRegion([str(f) for f in files], format, model_ids), client=client,
                                    on_error="record", progress=progress, desc="ingest")
    if failures:
        first = next(iter(failures.items()))
        raise StoreError(f"{len(failures)} region(s) of {out} could not be written (region {first[0]}: {first[1]}); rerun to resume")
    return out
