"""Catalogs of stellar labels: open, query, select, export, merge, calibrate.

    import catalogs
    cat = catalogs.open("catalog.zarr")                       # xarray.Dataset, one row per star
    metal_poor = catalogs.query(cat, "teff > 5000 and feh < -1 and f_reject < 0.5")
    catalogs.export(metal_poor, "metal_poor.fits", columns=["teff", "teff_p16", "teff_p84", "feh"])
    cat.sel(star_id=["4MOST-000123"])                         # stars by id (or catalogs.select(cat, star_id=...))
    calibrated = catalogs.calibrate(cat, "my-calibration")    # Eq. B.1 as new columns <label>_cal

The data model and the flat column names (`teff_p02_5`, `teff_p16`, ...) are in `catalogs.schema`; the
query grammar in `catalogs.query`; formats in `catalogs.export`; calibrations in `catalogs.calibrate`, and
their fit against reference stars (Eq. B.1) in `catalogs.bias`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import xarray as xr

from gridkit import store as _store
from gridkit.errors import GridError

from . import index as _index
from . import query as _query
from .bias import fit_bias
from .calibrate import Calibration, load_calibration, save_calibration
from .calibrate import apply as calibrate
from .export import read_table, to_pandas, to_table, write_table
from .merge import merge
from .query import QueryError
from .schema import (
    QUANTILES,
    STAR,
    block_rows,
    check_catalog,
    column,
    flat_columns,
    label_names,
    quantile_suffix,
)

__all__ = [
    "open", "query", "query_mask", "select", "export", "to_table", "read_table", "write_table", "merge", "calibrate",
    "Calibration", "fit_bias", "load_calibration", "save_calibration", "columns", "info", "QueryError", "QUANTILES",
    "label_names", "quantile_suffix", "column", "build_index", "to_pandas", "quality_columns", "quality_counts",
]


def open(path, *, allow_incomplete: bool = False) -> xr.Dataset:  # noqa: A001 - the package's verb
    """Open a catalog lazily; `star_id` is an indexed coordinate (`cat.sel(star_id=[...])`).

    Nothing is read per star at opening: the star_id index is the sorted one kept in the store
    (`catalogs.index`), read on the first lookup and rebuilt then if missing or stale. A catalog whose inference
    was interrupted is refused unless `allow_incomplete` (rerun `gridkit infer` with the same arguments to
    finish it)."""
    path = Path(path)
    cat = _store.open_complete(path, "catalog", allow_incomplete=allow_incomplete, chunks=_read_chunks(path),
                               rerun="rerun the same `gridkit infer` command to resume")
    check_catalog(cat, where=str(path))
    return _index_star_id(cat, path)


def _read_chunks(path: Path) -> dict:
    """Dask chunks to open a catalog with: a shard, or whole on-disk chunks of about `SHARD_ROWS` stars (a catalog
    that `gridkit infer` wrote in chunks of 1024 stars would otherwise be a graph of 25,000 tasks per variable)."""
    from .schema import SHARD_ROWS

    try:
        import zarr

        arr = zarr.open_array(str(path / "star_id"), mode="r")
    except Exception:  # noqa: BLE001 - not a Zarr catalog: open_complete says why
        return {}
    if arr.shards:
        return {STAR: int(arr.shards[0])}
    chunk = int(arr.chunks[0]) if arr.chunks else 0
    return {STAR: chunk * max(1, SHARD_ROWS // chunk)} if chunk else {}


def _index_star_id(cat: xr.Dataset, path=None) -> xr.Dataset:
    if "star_id" not in cat.coords:
        cat = cat.set_coords("star_id")
    if "star_id" not in cat.xindexes:
        cat = cat.set_xindex("star_id", _index.StarIdIndex, path=None if path is None else str(path))
    return cat


def build_index(path) -> Path:
    """(Re)build the star_id index kept in the catalog store at `path` (`catalogs.open` and lookups do it when
    it is missing or stale; `catalogs.merge` writes it with the merged catalog)."""
    _index.build(path)
    return Path(path) / _index.INDEX_GROUP


def _boolean_columns(cat: xr.Dataset, names) -> list[str]:
    return [n for n in names if column(cat, n).dtype == bool]


def query_mask(cat: xr.Dataset, expr: str, *, rows: int | None = None) -> np.ndarray:
    """The boolean row mask of `expr` on `cat` (parsed and checked against the catalog's columns first),
    evaluated `rows` stars at a time (default: about a million, whole chunks) so memory stays flat."""
    tree = _query.parse(expr)
    available = flat_columns(cat)
    used = [n for n in _query.names(tree) if n in available]
    _query.check(tree, available, _boolean_columns(cat, used))
    n = cat.sizes[STAR]
    out = np.zeros(n, dtype=bool)
    cols = {name: column(cat, name).variable for name in used}
    step = int(rows or block_rows(cat))
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        part = xr.Dataset({name: var.isel({STAR: sl}) for name, var in cols.items()}).compute() if cols else None
        result = _query.evaluate(tree, lambda name, part=part: part[name].values)
        out[sl] = np.broadcast_to(np.asarray(result, dtype=bool), (sl.stop - sl.start,))
    return out


def query(cat: xr.Dataset, expr: str, columns: Iterable[str] | None = None) -> xr.Dataset:
    """The stars of `cat` satisfying `expr` (see `catalogs.query` for the grammar), lazily (the mask is computed,
    the rows are read when used: `export` streams them); with `columns`, only those flat columns (plus star_id)."""
    if columns is not None:
        columns = list(columns)
        for name in columns:
            column(cat, name)  # unknown columns fail before the query runs
    mask = query_mask(cat, expr)
    out = _take(cat, np.flatnonzero(mask))
    return select(out, columns=columns) if columns is not None else out


def _take(cat: xr.Dataset, rows: np.ndarray) -> xr.Dataset:
    """`cat.isel(star=rows)` (rows increasing), with the lazy (dask) per-star variables taken chunk by chunk
    (`catalogs.index.take_rows`: a task per chunk holding some of the rows, not dask's general take)."""
    lazy = [name for name, var in cat.variables.items()
            if var.dims[:1] == (STAR,) and name != STAR and name not in cat.xindexes and hasattr(var.data, "blocks")]
    out = cat.drop_vars(lazy).isel({STAR: rows})
    shared: dict = {}  # the per-chunk row arrays, once for all variables
    taken = {name: xr.Variable(cat[name].dims, _index.take_rows(cat[name].data, rows, shared), cat[name].attrs, cat[name].encoding)
             for name in lazy}
    out = out.assign_coords({k: v for k, v in taken.items() if k in cat.coords})
    out = out.assign({k: v for k, v in taken.items() if k not in cat.coords})
    return out[list(cat.data_vars)] if set(cat.data_vars) == set(out.data_vars) else out


def select(cat: xr.Dataset, star_id: Iterable[str] | None = None, columns: Iterable[str] | None = None) -> xr.Dataset:
    """Stars by id (in the order given; unknown ids are an error) and/or flat columns by name.

    The ids are looked up in the catalog's sorted star_id index (`catalogs.index`: a few blocks read, not every
    id), also on a part of a catalog (a query's result); a dataset without one is indexed in memory."""
    if star_id is not None:
        wanted = [str(s) for s in ([star_id] if isinstance(star_id, str) else star_id)]
        if "star_id" not in cat.variables:
            raise GridError("the dataset has no star_id")
        if "star_id" not in cat.xindexes or not isinstance(cat.xindexes["star_id"], _index.StarIdIndex):
            cat = _index_star_id(cat.drop_indexes("star_id", errors="ignore"))
        pos = cat.xindexes["star_id"].positions_of(wanted)
        if (pos < 0).any():
            missing = [s for s, p in zip(wanted, pos) if p < 0]
            raise GridError(f"star_id not in the catalog: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        cat = cat.isel({STAR: _index.as_slice(pos)})
    if columns is not None:
        cols = {name: column(cat, name) for name in columns}
        keep = cat.drop_vars([v for v in cat.data_vars] + [c for c in cat.coords if c not in ("star_id", STAR)])
        out = keep.assign({k: v.variable for k, v in cols.items() if k != "star_id"})
        for k, v in cols.items():
            if k != "star_id":
                out[k].attrs.update(v.attrs)
        out.attrs = dict(cat.attrs)
        cat = out
    return cat


def export(cat: xr.Dataset, path, *, columns: Iterable[str] | None = None, where: str | None = None, overwrite: bool = False) -> Path:
    """Export the flat view of `cat` (optionally only stars satisfying `where`) to FITS/Parquet/VOTable/CSV."""
    from . import stream
    from .export import format_for

    format_for(path)
    if where is not None:
        cat = query(cat, where)
    return stream.export(cat, path, columns=columns, overwrite=overwrite)


def columns(cat: xr.Dataset) -> list[str]:
    """The flat column names usable in queries and exports."""
    return flat_columns(cat)


def quality_columns(cat: xr.Dataset) -> list[str]:
    """The per-star boolean quality columns of `cat`: `flag_*` and `<label>_unconstrained` (see docs/catalogs.md)."""
    flags = {str(k) for k, v in cat.data_vars.items() if v.dims == (STAR,) and v.dtype == bool}
    known = ["flag_extrapolated", "flag_snr_outside", "flag_missing_flux"]
    first = [k for k in known if k in flags] + sorted(k for k in flags if k.startswith("flag_") and k not in known)
    return first + [f"{x}_unconstrained" for x in label_names(cat) if f"{x}_unconstrained" in flags]


def quality_counts(cat: xr.Dataset) -> dict[str, int]:
    """{quality column: number of stars flagged}, for every `quality_columns` (reads those columns, in one pass)."""
    names = quality_columns(cat)
    if not names:
        return {}
    sums = xr.Dataset({n: cat[n].variable for n in names}).sum().compute()
    return {n: int(sums[n].values) for n in names}


def info(cat: xr.Dataset, counts: bool = True) -> str:
    """A short human summary: size, labels, columns, provenance; with `counts`, the stars flagged per quality column
    (`quality_counts`: reads those boolean columns; without, nothing per star is read)."""
    lines = [f"{cat.sizes['star']} stars; labels: {', '.join(label_names(cat))}",
             f"quantiles: {', '.join(f'{q:g}' for q in cat['quantile'].values)}",
             f"columns: {', '.join(flat_columns(cat))}"]
    if "samples" in cat.variables and "draw" in cat.dims:
        lines.append(f"kept posterior draws: {cat.sizes['draw']} per star (samples(star, draw, label))")
    for key in ("model_id", "model_dir", "gridkit_version", "date_created", "command", "calibrations", "sources"):
        if key in cat.attrs:
            lines.append(f"{key}: {cat.attrs[key]}")
    if counts:
        n = max(int(cat.sizes[STAR]), 1)
        for name, k in quality_counts(cat).items():
            lines.append(f"flagged {name}: {k} ({100 * k / n:.1f} %)")
    return "\n".join(lines)
