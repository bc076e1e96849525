"""`degrade_store`: a base grid store to a cube store through the restartable writer (`gridkit.store`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from .. import store as _store
from ..errors import ConfigError, GridError, StoreError
from ..files import check_output
from ..schema import label_names
from . import chain
from .config import DEFAULT_SNR, DegradeConfig


def _open_base(path) -> xr.Dataset:
    return _store.open_complete(path, "input grid", rerun="rerun the command that made it")


class DegradeRegion:
    """make_region of `degrade_store`: opens the input inside the worker, degrades its slice of models."""

    def __init__(self, input_path: str, config: DegradeConfig, labels: Sequence[str]):
        self.input_path, self.config, self.labels = str(input_path), config, list(labels)
        self._source = _store.digest(_store.store_identity(input_path))  # the input's content, read once

    def __call__(self, i: int, sl: slice) -> xr.Dataset:
        with _store.reading(self.input_path, "input grid", ["flux", *self.labels], sl):
            ds = xr.open_zarr(self.input_path, consolidated=False).isel(model=sl)
            ds = ds[["flux", *self.labels]].load()
        return chain.apply(ds, self.config).compute()

    def inputs(self, i: int, sl: slice) -> str:
        return self._source


def degrade_store(
    input_path,
    out,
    instrument="4most-hr",
    arms=None,
    snr=DEFAULT_SNR,
    *,
    seed: int = 0,
    snr_convention: str = "per_angstrom",
    region_size: int = 16,
    client=None,
    overwrite: bool = False,
    progress: bool = True,
    check_finite: bool = True,
    on_error: str = "raise",
    **options,
) -> Path:
    """Degrade the base grid at `input_path` into the cube store `out` (Zarr v3, chunks of `region_size`
    models with the whole snr and wavelength axes), through the restartable writer: a rerun resumes and
    writes the same bytes; an existing `out` of another job is refused unless `overwrite`.

    Everything is validated before the store is created (labels, wavelengths, resolving powers, S/N,
    coverage, and, with `check_finite`, one pass over the input flux for NaN/inf), so a bad input leaves
    nothing behind. `client`: a distributed Client (regions run on its workers), or None (threads here).
    `options`: the other fields of `DegradeConfig` (resolving powers, working step, vbroad, limb darkening).
    """
    out = Path(out)
    base = _open_base(input_path)
    if isinstance(region_size, bool) or not isinstance(region_size, int) or region_size < 1:
        raise ConfigError(f"region_size must be an integer >= 1, got {region_size!r}")
    check_output(out, [input_path])
    if out.exists() and not overwrite:
        try:
            _store.open_region_store(out)
        except StoreError:
            raise StoreError(f"output {out} exists; pass overwrite=True (--overwrite) to replace it") from None
    labels = label_names(base)
    cfg = DegradeConfig(instrument=instrument, arms=arms, snr=snr, seed=seed, snr_convention=snr_convention, **options)
    cube = chain.apply(base, cfg)  # validates everything except the flux values
    if check_finite:
        with _store.reading(input_path, "input grid", ["flux"]):
            _check_store_finite(base.flux, client)
    # the per-model columns (labels, synthesis status, ...) are small: written with the template; the regions write flux
    template = cube.assign({k: cube[k].load() for k, v in cube.data_vars.items() if k != "flux" and v.dims == ("model",)})
    fp = _store.fingerprint("degrade", str(Path(input_path).resolve()), cfg.to_dict(), region_size)
    rs, resumed = _store.create(out, template, dim="model", region_size=region_size, fingerprint=fp, overwrite=overwrite, inputs=[input_path])
    failures = _store.write_regions(rs, DegradeRegion(str(input_path), cfg, labels), client=client, progress=progress,
                                    desc="degrade", on_error=on_error)
    if failures:
        raise StoreError(f"{len(failures)} region(s) of {out} failed (rerun to retry): {next(iter(failures.values()))}")
    return out


def _check_store_finite(flux: xr.DataArray, client=None) -> None:
    import dask.array as dsa

    data = flux.data if flux.chunks is not None else dsa.from_array(flux.values)
    bad_rows = (~dsa.isfinite(data)).any(axis=-1)
    bad = np.asarray(client.compute(bad_rows).result() if client is not None else bad_rows.compute())
    if bad.any():
        row = flux.dims[0]
        ids = flux[row].values[bad] if row in flux.coords else np.flatnonzero(bad)
        raise GridError(f"input flux has NaN/inf values in {int(bad.sum())} model(s), first {row} {ids[0]}; nothing was written")
