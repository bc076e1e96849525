"""Merge base grids made in pieces (other seeds, priors, clusters) into one grid, like `catalogs.merge` for catalogs.

The grids must share the wavelength grid (exactly), the labels, the backend and its recipe (provenance without
install paths) and the flux's units and resolving power. A model with the same labels as a model of another input
(a piece merged twice, the same prior and seed run twice) is an error. The merged grid numbers its models 0..n-1
(with `keep_ids`: keeps each input's ids, refused where two inputs share one, so that a trained network's recorded
split, `split_from`, still names the same models); `source(model)` says which input each comes from (attr `sources`
lists them in that order: path, n_models, prior, seed) and `source_model(model)` its id there.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import xarray as xr

from .. import store as _store
from ..errors import ConfigError, GridError
from ..files import check_output
from ..schema import MODEL, WAVELENGTH

#: dataset attrs that describe one piece, not the recipe: they may differ between inputs (kept where all agree)
PIECE_ATTRS = ("created", "history", "sources", "turbospectrum_home", "label_prior", "label_seed", "synth_job", "provenance")
#: models per region of the merged grid at most
MAX_REGION = 64


def merge_grids(grids: Iterable, out=None, *, keep_ids: bool = False, overwrite: bool = False, progress: bool = False,
                client=None) -> xr.Dataset:
    """Merge base grids (paths or Datasets) into one; write it to `out` (Zarr) when given and return it (lazy).
    keep_ids: keep the inputs' model ids (GridError where two inputs share an id) instead of numbering 0..n-1.
    Everything is checked before anything is written; `out` may not be, contain or lie inside an input."""
    from ..grid import open_grid
    from .grow import _recipe

    items = list(grids)
    if len(items) < 2:
        raise ConfigError(f"merge needs at least two grids, got {len(items)}")
    paths = [Path(item) for item in items if isinstance(item, (str, Path))]
    if out is not None:
        check_output(out, paths, what="merge output")
    dss, names = [], []
    for i, item in enumerate(items):
        dss.append(open_grid(item, kind="base") if isinstance(item, (str, Path)) else item)
        names.append(str(item) if isinstance(item, (str, Path)) else f"<dataset {i}>")
    ref, ref_name = dss[0], names[0]
    ref_vars = _row_vars(ref)
    ref_recipe = _recipe_attrs(ref, _recipe)
    wl = np.asarray(ref[WAVELENGTH].values)
    for name, ds in zip(names[1:], dss[1:]):
        other = np.asarray(ds[WAVELENGTH].values)
        if other.shape != wl.shape or not np.array_equal(other, wl):
            raise GridError(f"{name} has another wavelength grid ({other.size} points, {other[0]:.4f}-{other[-1]:.4f} A) than "
                            f"{ref_name} ({wl.size} points, {wl[0]:.4f}-{wl[-1]:.4f} A); cannot merge")
        if ds[WAVELENGTH].attrs.get("medium") != ref[WAVELENGTH].attrs.get("medium"):
            raise GridError(f"{name} is in {ds[WAVELENGTH].attrs.get('medium')} wavelengths, {ref_name} in {ref[WAVELENGTH].attrs.get('medium')}; cannot merge")
        if _row_vars(ds) != ref_vars:
            raise GridError(f"{name} has variables {sorted(_row_vars(ds))}, {ref_name} has {sorted(ref_vars)}; cannot merge")
        recipe = _recipe_attrs(ds, _recipe)
        if recipe != ref_recipe:
            key = next(k for k in sorted(set(recipe) | set(ref_recipe)) if recipe.get(k) != ref_recipe.get(k))
            raise GridError(f"{name} was made with another recipe than {ref_name} (attr {key!r}: {_short(recipe.get(key))} vs "
                            f"{_short(ref_recipe.get(key))}); cannot merge")
        if ds["flux"].attrs.get("units") != ref["flux"].attrs.get("units"):
            raise GridError(f"{name} has flux in {ds['flux'].attrs.get('units')!r}, {ref_name} in {ref['flux'].attrs.get('units')!r}; cannot merge")
    labels = sorted(k for k in ref_vars if k not in ("flux", "status"))
    rows = np.concatenate([np.column_stack([np.asarray(ds[k].values, dtype=np.float64) for k in labels]) for ds in dss])
    which = np.concatenate([np.full(ds.sizes[MODEL], k, dtype=np.int16) for k, ds in enumerate(dss)])
    ids = np.concatenate([np.asarray(ds[MODEL].values) for ds in dss])
    uniq, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    if (counts > 1).any():
        dup = np.flatnonzero(counts[inverse.ravel()] > 1)
        a, b = dup[0], next(j for j in dup[1:] if (rows[j] == rows[dup[0]]).all())
        raise GridError(f"{int((counts > 1).sum())} label set(s) appear more than once, e.g. model {ids[a]} of {names[which[a]]} and model "
                        f"{ids[b]} of {names[which[b]]} (the same piece twice, or the same prior and seed run twice?); cannot merge")
    if keep_ids:
        uniq_ids, id_counts = np.unique(ids, return_counts=True)
        if (id_counts > 1).any():
            shared = uniq_ids[id_counts > 1]
            owners = sorted({names[which[j]] for j in np.flatnonzero(np.isin(ids, shared))})
            raise GridError(f"keep_ids: {shared.size} model id(s) appear in more than one input ({', '.join(owners)}), e.g. {shared[:5].tolist()}; "
                            "merge without keep_ids (models numbered 0..n-1)")
    parts = []
    for k, ds in enumerate(dss):
        ds = ds[sorted(ref_vars)].reset_coords(drop=True)
        part = ds.assign(
            source=(MODEL, np.full(ds.sizes[MODEL], k, dtype=np.int16), {"long_name": "index of the input grid in attr 'sources'", "units": "1"}),
            source_model=(MODEL, np.asarray(ds[MODEL].values), {"long_name": "model id in the input grid"}),
        ).drop_vars(MODEL)
        for var in part.variables.values():
            var.encoding = {}
        parts.append(part)
    merged = xr.concat(parts, dim=MODEL, data_vars="all", coords="minimal", compat="override", join="override", combine_attrs="drop_conflicts")
    new_ids = ids if keep_ids else np.arange(merged.sizes[MODEL])
    merged = merged.assign_coords({MODEL: (MODEL, new_ids, {"long_name": "model id"}), WAVELENGTH: ref[WAVELENGTH]})
    if "flux" in merged:
        merged["flux"] = merged["flux"].astype(np.float32)
    sources = [{"path": n, "n_models": int(ds.sizes[MODEL]), "label_prior": ds.attrs.get("label_prior", ""), "label_seed": ds.attrs.get("label_seed", ""),
                "created": ds.attrs.get("created", "")} for n, ds in zip(names, dss)]
    merged.attrs = {k: v for k, v in ref.attrs.items() if all(_same(d.attrs.get(k), v) for d in dss)}
    merged.attrs.update({"sources": json.dumps(sources), "history": f"merged from {len(dss)} grid(s) by gridkit.synth.merge_grids"})
    if out is None:
        return merged
    n = merged.sizes[MODEL]
    region = max(1, min(n, MAX_REGION))
    _store.write_dataset(merged, out, dim=MODEL, region_size=region, overwrite=overwrite, progress=progress, client=client, desc="merge grids",
                         fingerprint_parts=("merge-grids", sources, *(["keep_ids"] if keep_ids else [])), inputs=paths)
    return open_grid(out, kind="base")


def _row_vars(ds: xr.Dataset) -> set[str]:
    return {str(k) for k, v in ds.data_vars.items() if v.dims and v.dims[0] == MODEL}


def _recipe_attrs(ds: xr.Dataset, recipe) -> dict:
    out = {k: v for k, v in ds.attrs.items() if k not in PIECE_ATTRS}
    if "provenance" in ds.attrs:
        try:
            out["provenance"] = recipe(json.loads(ds.attrs["provenance"]))
        except (TypeError, ValueError):
            out["provenance"] = ds.attrs["provenance"]
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def _same(a, b) -> bool:
    try:
        return bool(np.all(a == b)) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a == b
    except (TypeError, ValueError):
        return False


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
