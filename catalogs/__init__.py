"""Catalogs of stellar labels: open, query, select, export, merge, calibrate.

    import catalogs
    cat = catalogs.open("catalog.zarr")                       # xarray.Dataset, one row per star
    metal_poor = catalogs.query(cat, "teff > 5000 and feh < -1 and f_reject < 0.5")
    catalogs.export(metal_poor, "metal_poor.fits", columns=["teff", "teff_p16", "teff_p84", "feh"])
    cat.sel(star_id=["4MOST-000123"])                         # stars by id
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

from . import query as _query
from .bias import fit_bias
from .calibrate import Calibration, load_calibration, save_calibration
from .calibrate import apply as calibrate
from .export import export as _export
from .export import read_table, to_table, write_table
from .merge import merge
from .query import QueryError
from .schema import QUANTILES, as_str, check_catalog, column, flat_columns, label_names, quantile_suffix

__all__ = [
    "open", "query", "query_mask", "select", "export", "to_table", "read_table", "write_table", "merge", "calibrate",
    "Calibration", "fit_bias", "load_calibration", "save_calibration", "columns", "info", "QueryError", "QUANTILES",
    "label_names", "quantile_suffix", "column",
]


def open(path, *, allow_incomplete: bool = False) -> xr.Dataset:  # noqa: A001 - the package's verb
    """Open a catalog lazily; `star_id` is an indexed coordinate (`cat.sel(star_id=[...])`).

    A catalog whose inference was interrupted is refused unless `allow_incomplete` (rerun `gridkit infer`
    with the same arguments to finish it)."""
    path = Path(path)
    cat = _store.open_complete(path, "catalog", allow_incomplete=allow_incomplete,
                               rerun="rerun the same `gridkit infer` command to resume")
    check_catalog(cat, where=str(path))
    return _index_star_id(cat)


def _index_star_id(cat: xr.Dataset) -> xr.Dataset:
    if "star_id" not in cat.coords:
        cat = cat.set_coords("star_id")
    if "star_id" not in cat.xindexes:
        cat = cat.assign_coords(star_id=("star", as_str(cat["star_id"].values), dict(cat["star_id"].attrs))).set_xindex("star_id")
    return cat


def _boolean_columns(cat: xr.Dataset, names) -> list[str]:
    return [n for n in names if column(cat, n).dtype == bool]


def query_mask(cat: xr.Dataset, expr: str) -> np.ndarray:
    """The boolean row mask of `expr` on `cat` (parsed and checked against the catalog's columns first)."""
    tree = _query.parse(expr)
    available = flat_columns(cat)
    used = [n for n in _query.names(tree) if n in available]
    _query.check(tree, available, _boolean_columns(cat, used))
    result = _query.evaluate(tree, lambda name: column(cat, name).data)
    n = cat.sizes["star"]
    return np.broadcast_to(np.asarray(result, dtype=bool), (n,)).copy()


def query(cat: xr.Dataset, expr: str, columns: Iterable[str] | None = None) -> xr.Dataset:
    """The stars of `cat` satisfying `expr` (see `catalogs.query` for the grammar); with `columns`, only
    those flat columns (plus star_id)."""
    if columns is not None:
        columns = list(columns)
        for name in columns:
            column(cat, name)  # unknown columns fail before the query runs
    mask = query_mask(cat, expr)
    out = cat.isel(star=np.flatnonzero(mask))
    return select(out, columns=columns) if columns is not None else out


def select(cat: xr.Dataset, star_id: Iterable[str] | None = None, columns: Iterable[str] | None = None) -> xr.Dataset:
    """Stars by id (in the order given; unknown ids are an error) and/or flat columns by name."""
    if star_id is not None:
        wanted = [str(s) for s in ([star_id] if isinstance(star_id, str) else star_id)]
        have = as_str(cat["star_id"].values)
        pos = {s: i for i, s in enumerate(have)}
        missing = [s for s in wanted if s not in pos]
        if missing:
            raise GridError(f"star_id not in the catalog: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        cat = cat.isel(star=[pos[s] for s in wanted])
    if columns is not None:
        cols = {name: column(cat, name) for name in columns}
        out = xr.Dataset({k: v.variable for k, v in cols.items() if k != "star_id"}, attrs=dict(cat.attrs))
        for k, v in cols.items():
            if k != "star_id":
                out[k].attrs.update(v.attrs)
        out = out.assign_coords(star_id=("star", as_str(cat["star_id"].values), dict(cat["star_id"].attrs)))
        cat = out.set_xindex("star_id")
    return cat


def export(cat: xr.Dataset, path, *, columns: Iterable[str] | None = None, where: str | None = None, overwrite: bool = False) -> Path:
    """Export the flat view of `cat` (optionally only stars satisfying `where`) to FITS/Parquet/VOTable/CSV."""
    from .export import format_for

    format_for(path)
    if where is not None:
        cat = query(cat, where)
    return _export(cat, path, columns=columns, overwrite=overwrite)


def columns(cat: xr.Dataset) -> list[str]:
    """The flat column names usable in queries and exports."""
    return flat_columns(cat)


def info(cat: xr.Dataset) -> str:
    """A short human summary: size, labels, columns, provenance."""
    lines = [f"{cat.sizes['star']} stars; labels: {', '.join(label_names(cat))}",
             f"quantiles: {', '.join(f'{q:g}' for q in cat['quantile'].values)}",
             f"columns: {', '.join(flat_columns(cat))}"]
    for key in ("model_id", "model_dir", "gridkit_version", "date_created", "command", "calibrations", "sources"):
        if key in cat.attrs:
            lines.append(f"{key}: {cat.attrs[key]}")
    return "\n".join(lines)
