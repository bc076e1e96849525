"""The lazy operations: xarray/dask wrappers over `gridkit.kernels` (through `gridkit.degradation.blocks`).

Each public function checks its arguments once (`gridkit.degradation.params`) and calls a private function of
the same name with the checked values; the published chain (`gridkit.degradation.chain`) calls the private
ones directly. Flux comes back as a dask array chunked along its first dimension (model or star) with the
whole wavelength axis in one chunk; coordinates, labels, units and attrs are carried along.
"""
from __future__ import annotations

import zlib

import numpy as np
import xarray as xr

from ..errors import GridError
from ..kernels import lnlambda, noise, rebin as _rebin
from ..schema import SNR, WAVELENGTH, check_wavelength, wavelength_attrs
from . import blocks, params
from .config import DEFAULT_SNR

PER_ANGSTROM, PER_PIXEL = noise.PER_ANGSTROM, noise.PER_PIXEL
SNR_CONVENTION_TEXT = {
    PER_ANGSTROM: "S/N per Angstrom; per pixel it is snr * sqrt(pixel width / 1 Angstrom); noise sigma = flux / (S/N per pixel)",
    PER_PIXEL: "S/N per pixel; noise sigma = flux / snr",
}
NOISE_TEXT = "Gaussian, sigma = flux / (S/N per pixel), Eq. 1 of the published method"


def _lazy(da: xr.DataArray) -> xr.DataArray:
    """Dask-backed, chunked along the leading dimensions, the whole wavelength axis in one chunk."""
    if da.chunks is None:
        return da.chunk({**{d: "auto" for d in da.dims[:-1]}, WAVELENGTH: -1})
    return da.chunk({WAVELENGTH: -1})


def describe_coverage(wl: np.ndarray) -> str:
    lo, hi = _rebin.bin_edges(wl)
    return ", ".join(f"{lo[s.start]:.2f}-{hi[s.stop - 1]:.2f}" for s in lnlambda.segments(wl)) + " A"


def segment_bounds(wl: np.ndarray) -> list[tuple[float, float]]:
    """(first pixel's lower edge, last pixel's upper edge) of each segment of the axis."""
    lo, hi = _rebin.bin_edges(wl)
    return [(float(lo[s.start]), float(hi[s.stop - 1])) for s in lnlambda.segments(wl)]


# ---------------------------------------------------------------------------------------------- resolution
def to_resolution(ds: xr.Dataset, resolving_power: float, input_resolving_power: float | None = None, *, missing: str = "error") -> xr.Dataset:
    """Convolve with a Gaussian line-spread function of FWHM = lambda / `resolving_power` at every lambda.

    The convolution runs on a uniform ln lambda grid (the grid itself where it is one, otherwise an
    interpolation as fine as the finest input pixel and back), segment by segment. For a finite input
    resolving power (`input_resolving_power`, default the dataset's `resolving_power` attr, inf when
    unbroadened) the kernel's FWHM is the quadrature difference. missing: 'error' (NaN/inf flux raises
    GridError when computed) or 'propagate' (every output pixel the kernel of a NaN touches is NaN).
    Lazy; returns the dataset with the new flux and attrs resolving_power.
    """
    params.missing_policy(missing)
    fl = params.flux(ds)
    wl = params.wavelength(ds)
    r_in = params.input_resolving_power(ds, input_resolving_power)
    r = params.below(params.resolving_power(resolving_power), r_in)
    return _to_resolution(ds, fl, wl, r, r_in, missing)


def _to_resolution(ds, fl, wl, r, r_in, missing) -> xr.Dataset:
    out = xr.apply_ufunc(
        blocks.lsf_block, _lazy(fl), input_core_dims=[[WAVELENGTH]], output_core_dims=[[WAVELENGTH]], dask="parallelized",
        output_dtypes=[np.float32], kwargs=dict(wl=wl, resolving_power=r, input_resolving_power=r_in, missing=missing),
        keep_attrs=True,
    )
    return ds.assign(flux=out).assign_attrs(resolving_power=r)


# ---------------------------------------------------------------------------------------------- rotation
def rotate(ds: xr.Dataset, vbroad=None, limb_darkening: float = 0.6, *, missing: str = "error") -> xr.Dataset:
    """Rotational broadening with the classical (Gray) profile and linear limb darkening, per model.

    vbroad: km/s, None to use each model's `vbroad` label, or a value (or array along the first dimension)
    for all. vbroad = 0 is the identity. The profile is applied on a uniform ln lambda grid (a velocity
    shift is a constant number of pixels there), segment by segment. Lazy.
    """
    params.missing_policy(missing)
    eps = params.limb_darkening(limb_darkening)
    fl = params.flux(ds, 2, "rotate")
    wl = params.wavelength(ds)
    v = params.vbroad(ds, vbroad, fl.dims[0])
    return _rotate(ds, fl, wl, v, eps, missing, vbroad)


def _rotate(ds, fl, wl, v: xr.DataArray, eps: float, missing: str, given) -> xr.Dataset:
    lazy = _lazy(fl)
    v = v.chunk({fl.dims[0]: lazy.chunks[0]})
    out = xr.apply_ufunc(
        blocks.rotate_block, lazy, v, input_core_dims=[[WAVELENGTH], []], output_core_dims=[[WAVELENGTH]], dask="parallelized",
        output_dtypes=[np.float32], kwargs=dict(wl=wl, limb_darkening=eps, missing=missing), keep_attrs=True,
    )
    note = "vbroad label" if given is None else f"vbroad={given!r} km/s" if np.ndim(given) == 0 else "vbroad array"
    return ds.assign(flux=out).assign_attrs(rotation=f"Gray profile, limb darkening {eps:g}, {note}")


# ---------------------------------------------------------------------------------------------- rebinning
def rebin(ds: xr.Dataset, wavelength, *, outside: str = "error", missing: str = "error") -> xr.Dataset:
    """Rebin onto the pixel centres `wavelength` (A) conserving flux (pixel edges halfway between centres).

    outside: the policy for target pixels not entirely within the input's pixels (beyond its ends, or in a
    gap of its wavelength axis): 'error' (default) raises GridError naming them before anything is
    computed; 'nan' makes them NaN (missing pixels, counted by `fourmostify`). Lazy.
    """
    params.missing_policy(missing)
    params.outside_policy(outside)
    fl = params.flux(ds)
    wl = params.wavelength(ds)
    target = check_wavelength(np.asarray(wavelength, dtype=np.float64), "target wavelength")
    return _rebin_to(ds, fl, wl, target, outside, missing)


def _rebin_to(ds, fl, wl, target, outside, missing) -> xr.Dataset:
    matrix, covered = _rebin.cached_rebin_matrix(wl, target)
    uncovered = None
    if not covered.all():
        idx = np.flatnonzero(~covered)
        if outside == "error":
            raise GridError(
                f"target wavelength grid lies outside the input coverage: {idx.size} of {target.size} target pixels not covered, "
                f"first at {target[idx[0]]:.3f} A, last at {target[idx[-1]]:.3f} A (the input covers {describe_coverage(wl)})"
            )
        uncovered = idx
    medium = ds[WAVELENGTH].attrs.get("medium", "air")
    out = xr.apply_ufunc(
        blocks.rebin_block, _lazy(fl), input_core_dims=[[WAVELENGTH]], output_core_dims=[[WAVELENGTH]], exclude_dims={WAVELENGTH},
        dask="parallelized", output_dtypes=[np.float32], dask_gufunc_kwargs={"output_sizes": {WAVELENGTH: target.size}},
        kwargs=dict(wl=wl, matrix=matrix, uncovered=uncovered, missing=missing), keep_attrs=True,
    )
    out = out.assign_coords({WAVELENGTH: (WAVELENGTH, target, wavelength_attrs(medium))})
    rest = ds.drop_vars([k for k, v in ds.variables.items() if WAVELENGTH in v.dims])
    return rest.assign(flux=out).transpose(*fl.dims, ...)


# ---------------------------------------------------------------------------------------------- continuum
def _normalise(ds, fl, wl, config) -> xr.Dataset:
    """flux / continuum with the continuum operator `config` (a ContinuumConfig), row by row; lazy."""
    out = xr.apply_ufunc(
        blocks.normalise_block, _lazy(fl), input_core_dims=[[WAVELENGTH]], output_core_dims=[[WAVELENGTH]], dask="parallelized",
        output_dtypes=[np.float32], kwargs=dict(wl=wl, config=config), keep_attrs=True,
    )
    return ds.assign(flux=out)


# ---------------------------------------------------------------------------------------------- noise
def _row_keys(ds: xr.Dataset, row: str) -> np.ndarray:
    """Integer keys of the rows for the noise seed: integer ids as they are, other ids by CRC32 of their text."""
    ids = ds[row].values if row in ds.coords else np.arange(ds.sizes[row])
    if np.issubdtype(np.asarray(ids).dtype, np.integer):
        return np.asarray(ids, dtype=np.int64)
    return np.array([zlib.crc32(str(x).encode()) for x in ids], dtype=np.int64)


def snr_key(snr: float) -> int:
    """The integer that seeds the noise at S/N `snr` (millesimal S/N): noise depends on the S/N value,
    not on its position in the list."""
    return int(round(float(snr) * 1000)) & 0xFFFFFFFF


def add_noise(ds: xr.Dataset, snr=DEFAULT_SNR, seed: int = 0, *, convention: str = PER_ANGSTROM) -> xr.Dataset:
    """Add Gaussian noise with sigma = flux / (S/N per pixel) (Eq. 1 of the published method) at each S/N.

    snr: values quoted per Angstrom (`convention='per_angstrom'`, like the published grid: per pixel it is
    snr * sqrt(pixel width / 1 A)) or per pixel (`convention='per_pixel'`). Adds the dimension `snr` after the first one: flux(model, snr,
    wavelength). The draws for (row id, S/N value, seed) come from `store.rng_for(seed, row id, snr_key(S/N))`:
    a recomputed or retried chunk is bit-identical. Lazy.
    """
    params.convention(convention, "convention")
    values = params.snr_values(snr)
    fl = params.flux(ds, 2, "add_noise")
    if SNR in fl.dims:
        raise GridError("flux already has an 'snr' dimension")
    return _add_noise(ds, fl, params.wavelength(ds), values, int(seed), convention)


def _add_noise(ds, fl, wl, values: np.ndarray, seed: int, convention: str) -> xr.Dataset:
    row = fl.dims[0]
    snr_pixel = noise.snr_per_pixel(values, _rebin.pixel_widths(wl), convention)
    lazy = _lazy(fl)
    keys = xr.DataArray(_row_keys(ds, row), dims=(row,)).chunk({row: lazy.chunks[0]})
    out = xr.apply_ufunc(
        blocks.noise_block, lazy, keys, input_core_dims=[[WAVELENGTH], []], output_core_dims=[[SNR, WAVELENGTH]], dask="parallelized",
        output_dtypes=[np.float32], dask_gufunc_kwargs={"output_sizes": {SNR: values.size}},
        kwargs=dict(snr_pixel=snr_pixel, snr_keys=[snr_key(s) for s in values], seed=seed), keep_attrs=True,
    )
    out = out.assign_coords({SNR: (SNR, values, {"units": "1", "long_name": "signal-to-noise ratio", "convention": convention,
                                                 "description": SNR_CONVENTION_TEXT[convention]})})
    out = out.transpose(row, SNR, WAVELENGTH)
    return ds.assign(flux=out).assign_attrs(snr_convention=convention, noise_seed=seed, noise=NOISE_TEXT)
