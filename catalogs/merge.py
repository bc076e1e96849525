"""Merge the catalogs of several runs into one (one row per star, the runs' provenance kept).

The catalogs must estimate the same labels at the same quantiles. A `source(star)` column says which input
each row comes from; the dataset attr `sources` lists the inputs (path, model id, date) in that order.
A star_id present in several inputs is an error unless `on_duplicate="first"` (keep the first input's row).

It streams: the rows are read and written one region (`SHARD_ROWS` stars, one Zarr shard per variable) at a
time; duplicates are found from the inputs' sorted star_id indexes (`catalogs.index`: the ids as bytes, no
Python strings), and the merged catalog's own index is written with it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import xarray as xr

from gridkit import store as _store
from gridkit.errors import ConfigError, GridError
from gridkit.files import check_output

from . import index as _index
from .schema import (
    CHUNK_ROWS,
    QUANTILE,
    SHARD_ROWS,
    STAR,
    catalog_encoding,
    check_catalog,
    label_names,
)

#: stars per chunk of a merged catalog at least (about 100 bytes per star and variable: 64k rows = a few MB)
MIN_REGION = 65536


def merge(catalogs: Iterable, out=None, *, on_duplicate: str = "error", overwrite: bool = False, progress: bool = False) -> xr.Dataset:
    """Merge catalogs (paths or Datasets); write the result to `out` (Zarr) when given. Returns the merged
    catalog (lazy). Everything is checked before anything is written: `out` may not be, contain or lie inside
    an input catalog (StoreError), even with `overwrite`."""
    from . import open as open_catalog

    if on_duplicate not in ("error", "first"):
        raise ConfigError(f"on_duplicate must be 'error' or 'first', got {on_duplicate!r}")
    items = list(catalogs)
    if len(items) < 1:
        raise ConfigError("merge needs at least one catalog")
    paths = [item for item in items if isinstance(item, (str, Path))]
    if out is not None:
        check_output(out, paths, what="merge output")
    cats, names = [], []
    for i, item in enumerate(items):
        cat = open_catalog(item) if isinstance(item, (str, Path)) else item
        names.append(str(item) if isinstance(item, (str, Path)) else f"<dataset {i}>")
        cats.append(check_catalog(cat, where=names[-1]))
    labels0, q0, vars0 = label_names(cats[0]), np.asarray(cats[0][QUANTILE].values), _row_vars(cats[0])
    for name, cat in zip(names[1:], cats[1:]):
        if label_names(cat) != labels0:
            raise GridError(f"{name} estimates labels {label_names(cat)}, {names[0]} estimates {labels0}; cannot merge")
        if not np.allclose(np.asarray(cat[QUANTILE].values), q0):
            raise GridError(f"{name} has quantiles {list(cat[QUANTILE].values)}, {names[0]} has {list(q0)}; cannot merge")
        if _row_vars(cat) != vars0:
            raise GridError(f"{name} has columns {sorted(_row_vars(cat))}, {names[0]} has {sorted(vars0)}; cannot merge")
    parts = []
    for k, cat in enumerate(cats):
        cat = _plain(cat)
        parts.append(cat.assign(source=(STAR, np.full(cat.sizes[STAR], k, dtype=np.int16), {"long_name": "index of the input catalog in attr 'sources'", "units": "1"})))
    merged = xr.concat(parts, dim=STAR, data_vars="all", coords="minimal", compat="override", join="override", combine_attrs="drop_conflicts")
    ids, rows = _sorted_ids(items, cats)
    first = np.ones(ids.size, dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    keep = None
    if not first.all():
        if on_duplicate == "error":
            dup = np.unique(ids[~first])
            raise GridError(f"{int(dup.size)} star_id(s) appear in more than one input, e.g. {', '.join(d.decode('utf-8', 'replace') for d in dup[:5])}; "
                            "pass on_duplicate='first' (--on-duplicate first) to keep the first")
        keep = np.sort(rows[first])  # the first of equal ids is the earliest input's (the sort is stable)
        ids, rows = ids[first], np.searchsorted(keep, rows[first])
        from . import _take  # chunk by chunk (dask's general take of millions of rows is slow)

        merged = _take(merged.drop_indexes(STAR), keep)
    merged = merged.assign_coords({STAR: np.arange(merged.sizes[STAR])})
    merged["star_id"] = merged["star_id"].assign_attrs(dict(cats[0]["star_id"].attrs))
    sources = [{"path": n, "model_id": c.attrs.get("model_id", ""), "date_created": c.attrs.get("date_created", ""), "n_star": int(c.sizes[STAR])} for n, c in zip(names, cats)]
    merged.attrs = {k: v for k, v in cats[0].attrs.items() if all(c.attrs.get(k) == v for c in cats)}
    merged.attrs.update({"sources": json.dumps(sources), "history": f"merged from {len(cats)} catalog(s) by catalogs.merge (on_duplicate={on_duplicate})"})
    if out is not None:
        n = merged.sizes[STAR]
        chunk = int(cats[0][labels0[0]].encoding.get("chunks", (n,))[0]) if labels0 else n
        # large: one shard of SHARD_ROWS stars per region and variable; small: one chunk per region
        region = SHARD_ROWS if n > SHARD_ROWS else max(1, min(n, max(chunk, MIN_REGION)))
        _store.write_dataset(merged, out, dim=STAR, region_size=region, overwrite=overwrite, progress=progress, desc="merge",
                             fingerprint_parts=("merge", sources, on_duplicate), inputs=paths, encoding=catalog_encoding(merged, region, chunk=CHUNK_ROWS))
        _index.write(out, _index.SortedIds.from_sorted(ids, rows, identity=_index.identity(out)))
        return open_catalog(out)
    return merged


def _sorted_ids(items, cats) -> tuple[np.ndarray, np.ndarray]:
    """All inputs' star_ids as sorted UTF-8 bytes, with the row of each in the concatenation (equal ids in input
    order), from the inputs' star_id indexes (a catalog in memory is sorted here)."""
    ids, rows, offset = [], [], 0
    for item, cat in zip(items, cats):
        if isinstance(item, (str, Path)):
            index = _index.load(item)
            sid = np.ascontiguousarray(index.ids[:]).view(f"S{index.width}").ravel() if not isinstance(index.ids, np.ndarray) else index.ids
            rid = np.asarray(index.rows[:], dtype=np.int64)
        else:
            index = _index.SortedIds.from_ids(cat["star_id"].values)
            sid, rid = index.ids, index.rows
        ids.append(sid)
        rows.append(rid + offset)
        offset += int(cat.sizes[STAR])
    ids = np.concatenate(ids) if ids else np.zeros(0, "S1")
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    if len(cats) > 1:
        order = _index._sort_order(ids)
        ids, rows = ids[order], rows[order]
    return ids, rows


def _row_vars(cat: xr.Dataset) -> set[str]:
    return {str(k) for k, v in cat.variables.items() if STAR in v.dims and k != STAR}


def _plain(cat: xr.Dataset) -> xr.Dataset:
    """star_id back to a plain variable (no index), so concat does not align on it."""
    if "star_id" in cat.coords:
        cat = cat.drop_indexes("star_id", errors="ignore").reset_coords("star_id")
    return cat
