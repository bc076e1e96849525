"""Opening and writing grids, cubes and surveys as Zarr v3 stores."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

from . import store as _store
from .schema import MODEL, STAR, validate_grid


def _kind(ds: xr.Dataset) -> str:
    dims = tuple(ds.flux.dims) if "flux" in ds else ()
    return {2: "survey" if STAR in dims else "base", 3: "cube"}.get(len(dims), "base")


def open_grid(path, *, kind: str | None = None, chunks: dict | None = None, allow_incomplete: bool = False) -> xr.Dataset:
    """Open a grid, degraded cube or survey lazily (dask; the per-row label columns are loaded), validate
    it against the data model.

    kind: 'base', 'cube' or 'survey' (default: from the flux dimensions). A store whose writing was
    interrupted is refused unless `allow_incomplete` (rerun the command that made it to resume).
    """
    ds = _store.open_complete(path, "grid", chunks=chunks, allow_incomplete=allow_incomplete)
    ds = validate_grid(ds, kind=kind or _kind(ds), required_labels=() if kind == "survey" else None if "teff" in ds else ())
    # per-row columns (labels, snr, star_id, ...) are small: load them, so that selections by label
    # (`ds.where(ds.teff > 6000, drop=True)`, `ds.sel(model=ids)`) work without computing indexers first
    row = ds.flux.dims[0]
    small = [k for k, v in ds.data_vars.items() if v.dims == (row,)]
    return ds.assign({k: ds[k].load() for k in small}) if small else ds


def write_grid(ds: xr.Dataset, path, *, region_size: int | None = None, overwrite: bool = False, client=None, progress: bool = False) -> Path:
    """Write a grid (in memory or lazy) to a Zarr v3 store, chunked along its first dimension with the whole
    wavelength axis in a chunk, through the restartable writer."""
    dim = ds.flux.dims[0]
    n = ds.sizes[dim]
    if region_size is None:
        per_row = ds.flux.dtype.itemsize * int(ds.flux.size // max(n, 1))
        region_size = max(1, min(n, int(32e6 // max(per_row, 1))))  # ~32 MB chunks
    _store.write_dataset(ds, path, dim=dim, region_size=region_size, overwrite=overwrite, client=client, progress=progress)
    return Path(path)


__all__ = ["open_grid", "write_grid", "MODEL"]
