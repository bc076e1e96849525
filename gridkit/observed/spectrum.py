"""One observed spectrum as a dataset, and the report of its missing pixels."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import xarray as xr

from ..errors import GridError
from ..kernels import lnlambda
from ..schema import WAVELENGTH, check_wavelength, wavelength_attrs


def spectrum_dataset(wavelength, flux, name: str = "spectrum", star_id: str | None = None) -> xr.Dataset:
    """One observed spectrum as flux(star=1, wavelength), checked, nothing filled in.

    Wavelengths must be finite, positive and non-decreasing (GridError naming the first offence); samples
    repeated at the same wavelength (overlapping echelle orders, as in the shared UVES spectrum) are merged
    into their mean, NaN-aware, and counted in attrs `n_duplicate_wavelengths`. Non-finite fluxes are kept
    as NaN: missing pixels that `fourmostify` propagates and reports.
    """
    wl = np.asarray(wavelength, dtype=np.float64)
    fl = np.asarray(flux, dtype=np.float64)
    if wl.ndim != 1 or fl.shape != wl.shape:
        raise GridError(f"{name}: flux must have one value per wavelength ({wl.size}), got shape {fl.shape}")
    if not np.all(np.isfinite(wl)) or np.any(wl <= 0):
        i = int(np.flatnonzero(~np.isfinite(wl) | (wl <= 0))[0])
        raise GridError(f"wavelength of {name} must be finite and positive; index {i} is {wl[i]}")
    step = np.diff(wl)
    if np.any(step < 0):
        i = int(np.flatnonzero(step < 0)[0])
        raise GridError(f"wavelength of {name} must increase; it decreases at index {i + 1} ({wl[i]:.4f} -> {wl[i + 1]:.4f} A)")
    fl = np.where(np.isfinite(fl), fl, np.nan)  # inf is missing too
    n_dup = int(np.sum(step == 0))
    if n_dup:
        uniq, inverse = np.unique(wl, return_inverse=True)
        good = np.isfinite(fl)
        total = np.bincount(inverse, weights=np.where(good, fl, 0.0), minlength=uniq.size)
        count = np.bincount(inverse, weights=good.astype(float), minlength=uniq.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            fl = np.where(count > 0, total / count, np.nan)
        wl = uniq
    check_wavelength(wl, f"wavelength of {name}")
    return xr.Dataset(
        {"flux": (("star", WAVELENGTH), fl[None, :].astype(np.float32)),
         "star_id": (("star",), np.array([star_id or Path(name).name.split(".")[0]], dtype=object))},
        coords={"star": [0], WAVELENGTH: (WAVELENGTH, wl, wavelength_attrs("air"))},
        attrs={"n_duplicate_wavelengths": n_dup},
    )


def missing_ranges(wavelength: np.ndarray, flux: np.ndarray) -> list[tuple[float, float]]:
    """The wavelength ranges (first, last pixel centre, A) of consecutive NaN pixels in one spectrum."""
    bad = ~np.isfinite(np.asarray(flux))
    if not bad.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(np.int8), [0]])))
    wl = np.asarray(wavelength)
    # a run that spans two arms is reported per arm (pixels on both sides of an arm gap are not adjacent)
    out = []
    for a, b in zip(edges[::2], edges[1::2]):
        seg_starts = [s.start for s in lnlambda.segments(wl) if a < s.start < b]
        for lo, hi in zip([a, *seg_starts], [*seg_starts, b]):
            out.append((float(wl[lo]), float(wl[hi - 1])))
    return out


def missing_report(ds: xr.Dataset) -> list[dict]:
    """Per spectrum: id, number of missing pixels and their ranges, from the NaN pixels of flux(star, wavelength)."""
    flux = ds["flux"]
    row = flux.dims[0]
    wl = ds[WAVELENGTH].values
    ids = ds["star_id"].values if "star_id" in ds else ds[row].values
    values = flux.values
    return [{"star_id": str(ids[i]), "n_missing": int(np.isnan(values[i]).sum()), "ranges": missing_ranges(wl, values[i])}
            for i in range(values.shape[0])]


def format_ranges(ranges: Iterable[tuple[float, float]]) -> str:
    return "; ".join(f"{a:.2f}-{b:.2f}" for a, b in ranges) or "-"
