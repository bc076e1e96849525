"""The lazy degradation pipeline: xarray/dask wrappers over `gridkit.kernels`.

Every function takes and returns an `xarray.Dataset` whose flux is a dask array chunked along its first
dimension (model or star) with the whole wavelength axis in one chunk; nothing is computed until the
result is written or `.compute()`d. Coordinates, labels, units and provenance attrs are carried along.

- `to_resolution(ds, R)`      Gaussian LSF of FWHM = lambda/R at every lambda (on a uniform ln lambda grid)
- `rotate(ds, vbroad)`        classical (Gray) rotation profile, per model from the `vbroad` label
- `rebin(ds, wavelength)`     flux-conserving rebinning (one sparse matrix per grid pair)
- `add_noise(ds, snr, seed)`  sigma = flux / (S/N per pixel), a new `snr` dimension, deterministic
- `degrade(ds, ...)`          the published chain: R=80000 -> 0.025 A -> rotation -> R=20000 -> arm pixels -> noise
- `fourmostify(ds, R_in)`     observed spectra to the instrument: convolve, rebin, optional noise; missing
                              pixels stay NaN and are counted per spectrum
- `degrade_store`, `fourmostify_store`: the store-writing entry points of the CLI (restartable, see gridkit.store)

A wavelength axis with gaps (steps much larger than its sampling, e.g. a grid holding two arms) is handled
segment by segment: no convolution ever smears across a gap, no rebinned pixel spans one.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import xarray as xr

from . import instruments as _instruments
from . import store as _store
from .errors import ConfigError, GridError, StoreError
from .kernels import lnlambda, lsf, noise, rebin as _rebin, rotation
from .schema import SNR, WAVELENGTH, check_wavelength, label_names, validate_grid, wavelength_attrs

#: S/N values of the published grid, per Angstrom.
DEFAULT_SNR: tuple[float, ...] = (10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 45, 50, 80, 100, 130, 180, 250, 1000)
#: The published chain: first to this resolving power on the native grid, then to the working grid.
INTERMEDIATE_RESOLVING_POWER = 80_000.0
#: Pixel step (A) of the working grid between the two convolutions (a ln lambda grid no coarser than this).
WORKING_STEP = 0.025
PER_ANGSTROM, PER_PIXEL = noise.PER_ANGSTROM, noise.PER_PIXEL
#: The ceiling of a DER_SNR estimate (a noise-free spectrum measures as infinite S/N; a survey needs a finite one).
MAX_ESTIMATED_SNR = 10_000.0
SNR_CONVENTION_TEXT = {
    PER_ANGSTROM: "S/N per Angstrom; per pixel it is snr * sqrt(pixel width / 1 Angstrom); noise sigma = flux / (S/N per pixel)",
    PER_PIXEL: "S/N per pixel; noise sigma = flux / snr",
}
_MISSING = ("error", "propagate")
_OUTSIDE = ("error", "nan")


# ---------------------------------------------------------------------------------------------
# helpers
def _flux(ds: xr.Dataset) -> xr.DataArray:
    if "flux" not in ds:
        raise GridError(f"the dataset needs a 'flux' variable; found {sorted(map(str, ds.data_vars))}")
    fl = ds["flux"]
    if fl.dims[-1] != WAVELENGTH:
        raise GridError(f"flux must have 'wavelength' as its last dimension, got dims {fl.dims}")
    if WAVELENGTH not in ds.coords:
        raise GridError("the dataset has no 'wavelength' coordinate")
    return fl


def _lazy(da: xr.DataArray) -> xr.DataArray:
    """Dask-backed, chunked along the leading dimensions, the whole wavelength axis in one chunk."""
    if da.chunks is None:
        return da.chunk({**{d: "auto" for d in da.dims[:-1]}, WAVELENGTH: -1})
    return da.chunk({WAVELENGTH: -1})


def _wavelength(ds: xr.Dataset) -> np.ndarray:
    units = ds[WAVELENGTH].attrs.get("units", "Angstrom")
    if str(units).lower() not in ("angstrom", "angstroms", "aa", "a", "\u00e5", "0.1 nm"):
        raise GridError(f"wavelength units must be Angstrom, got {units!r}")
    return check_wavelength(ds[WAVELENGTH].values)


def _check_missing(missing: str) -> None:
    if missing not in _MISSING:
        raise ConfigError(f"missing must be one of {_MISSING}, got {missing!r}")


def _raise_if_not_finite(flux: np.ndarray, wl: np.ndarray) -> None:
    bad = ~np.isfinite(flux)
    if bad.any():
        first = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)
        raise GridError(
            f"flux has {int(bad.sum())} NaN/inf value(s) in this chunk, first at wavelength {wl[first[-1]]:.3f} A "
            f"(row {first[0] if len(first) > 1 else 0} of the chunk); fix the input, or pass missing='propagate' to carry them as missing pixels"
        )


def _input_resolving_power(ds: xr.Dataset, given: float | None) -> float:
    r_in = ds.attrs.get("resolving_power", math.inf) if given is None else given
    try:
        r_in = float(r_in)
    except (TypeError, ValueError):
        raise ConfigError(f"input_resolving_power must be a number, got {r_in!r}") from None
    if not r_in > 0:
        raise ConfigError(f"input_resolving_power must be > 0 (inf for unbroadened), got {r_in}")
    return r_in


def _check_target_r(resolving_power: float, r_in: float, name: str = "resolving_power") -> float:
    r = float(resolving_power)
    if not (r > 0 and math.isfinite(r)):
        raise ConfigError(f"{name} must be finite and > 0, got {resolving_power}")
    if not r < r_in:
        raise ConfigError(f"{name} = {r:g} must be below the input's resolving power ({r_in:g}); a spectrum cannot be sharpened")
    return r


def _describe_coverage(wl: np.ndarray) -> str:
    lo, hi = _rebin.bin_edges(wl)
    return ", ".join(f"{lo[s.start]:.2f}-{hi[s.stop - 1]:.2f}" for s in lnlambda.segments(wl)) + " A"


def _as_float32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# block functions (numpy in, numpy out; applied per chunk by apply_ufunc)
def _checked_float64(flux, wl: np.ndarray, missing: str) -> np.ndarray:
    """A block's flux as float64, refused when it has NaN/inf and missing == 'error'."""
    flux = np.asarray(flux, dtype=np.float64)
    if missing == "error":
        _raise_if_not_finite(flux, wl)
    return flux


def _on_lnlambda(flux: np.ndarray, wl: np.ndarray, missing: str, op) -> np.ndarray:
    """Apply `op(rows, dlnlam, segment_rows_index)` segment by segment on a uniform ln lambda grid:
    segments already uniform in ln lambda are used as they are, others are interpolated onto a uniform
    ln lambda grid as fine as their finest pixel and back."""
    flux = _checked_float64(flux, wl, missing)
    out = np.empty_like(flux)
    for seg in lnlambda.segments(wl):
        x = wl[seg]
        part = flux[..., seg]
        if x.size < 3:
            out[..., seg] = part
            continue
        if lnlambda.is_uniform_lnlambda(x):
            out[..., seg] = op(part, float(np.log(x[-1] / x[0]) / (x.size - 1)))
        else:
            grid, dl = lnlambda.lnlambda_span(x[0], x[-1], lnlambda.finest_dlnlam(x))
            fine = lnlambda.interp_rows(grid, x, part)
            out[..., seg] = lnlambda.interp_rows(x, grid, op(fine, dl))
    return out


def _lsf_block(flux, *, wl, resolving_power, input_resolving_power, missing):
    flux = _checked_float64(flux, wl, missing)
    out = np.empty_like(flux)
    for seg in lnlambda.segments(wl):
        x = wl[seg]
        if x.size >= 3 and lnlambda.is_uniform_lnlambda(x):  # one fixed kernel: a plain convolution
            dl = float(np.log(x[-1] / x[0]) / (x.size - 1))
            out[..., seg] = lsf.gaussian_lsf_lnlambda(flux[..., seg], dl, resolving_power, input_resolving_power)
        elif x.size >= 3 and lsf.is_uniform_linear(x):  # constant step in A: blocks of (almost) constant kernel
            out[..., seg] = lsf.gaussian_lsf_linear(flux[..., seg], x, resolving_power, input_resolving_power)
        else:  # the same Gaussian in ln lambda on the samples themselves (sparse matrix, no interpolation)
            m = lsf.cached_lsf_matrix(x, resolving_power, input_resolving_power)
            out[..., seg] = _rebin.apply_matrix(m, flux[..., seg])
    return _as_float32(out)


def _rotate_block(flux, vbroad, *, wl, limb_darkening, missing):
    v = np.broadcast_to(np.asarray(vbroad, dtype=np.float64), np.shape(flux)[:-1])
    still = v == 0  # vbroad = 0 is the identity, also where the grid would need resampling
    if still.all():
        if missing == "error":
            _raise_if_not_finite(np.asarray(flux), wl)
        return _as_float32(flux)

    def op(rows, dl):
        return rotation.rotate_rows(rows, dl, v, limb_darkening)

    out = _on_lnlambda(flux, wl, missing, op)
    out[still] = np.asarray(flux)[still]
    return _as_float32(out)


def _rebin_block(flux, *, wl, matrix, uncovered, missing):
    flux = np.asarray(flux, dtype=np.float64)
    if missing == "error":
        _raise_if_not_finite(flux, wl)
    out = _rebin.apply_matrix(matrix, flux)
    if uncovered is not None:
        out[..., uncovered] = np.nan
    return _as_float32(out)


def _noise_block(flux, row_keys, *, snr_pixel, snr_keys, seed):
    flux = np.asarray(flux, dtype=np.float64)
    lead = flux.shape[:-1]
    n = flux.shape[-1]
    rows = flux.reshape(-1, n)
    keys = np.asarray(row_keys).reshape(-1)
    # row r at S/N s draws from store.rng_for(seed, row_key, snr_key): chunking-independent. One (row, S/N) at a
    # time straight into the float32 output, without float64 temporaries of the whole block (3x its size)
    out = np.empty((rows.shape[0], len(snr_keys), n), dtype=np.float32)
    for i, key in enumerate(keys.tolist()):
        for j, skey in enumerate(snr_keys):
            draws = _store.rng_for(seed, key, skey).standard_normal(n)
            out[i, j] = noise.apply_noise(rows[i], snr_pixel[j], draws)
    return out.reshape(*lead, len(snr_keys), n)


# ---------------------------------------------------------------------------------------------
# the wrappers
def to_resolution(ds: xr.Dataset, resolving_power: float, input_resolving_power: float | None = None, *, missing: str = "error") -> xr.Dataset:
    """Convolve with a Gaussian line-spread function of FWHM = lambda / `resolving_power` at every lambda.

    The convolution runs on a uniform ln lambda grid (the grid itself where it is one, otherwise an
    interpolation as fine as the finest input pixel and back), segment by segment. For a finite input
    resolving power (`input_resolving_power`, default the dataset's `resolving_power` attr, inf when
    unbroadened) the kernel's FWHM is the quadrature difference. missing: 'error' (NaN/inf flux raises
    GridError when computed) or 'propagate' (every output pixel the kernel of a NaN touches is NaN).
    Lazy; returns the dataset with the new flux and attrs resolving_power.
    """
    _check_missing(missing)
    fl = _flux(ds)
    wl = _wavelength(ds)
    r_in = _input_resolving_power(ds, input_resolving_power)
    r = _check_target_r(resolving_power, r_in)
    out = xr.apply_ufunc(
        _lsf_block, _lazy(fl), input_core_dims=[[WAVELENGTH]], output_core_dims=[[WAVELENGTH]], dask="parallelized",
        output_dtypes=[np.float32], kwargs=dict(wl=wl, resolving_power=r, input_resolving_power=r_in, missing=missing),
        keep_attrs=True,
    )
    return ds.assign(flux=out).assign_attrs(resolving_power=r)


def _vbroad(ds: xr.Dataset, vbroad, row: str) -> xr.DataArray:
    if vbroad is None:
        if "vbroad" not in ds:
            raise GridError("rotate needs vbroad: the dataset has no 'vbroad' label; pass vbroad=<km/s>")
        v = np.asarray(ds["vbroad"].values, dtype=np.float64)
        if ds["vbroad"].dims != (row,):
            raise GridError(f"the 'vbroad' label must lie along {row!r}, got dims {ds['vbroad'].dims}")
        name = "the 'vbroad' label"
    else:
        v = np.broadcast_to(np.asarray(vbroad, dtype=np.float64), (ds.sizes[row],)).copy()
        name = "vbroad"
    bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GridError(f"{name} must be finite and >= 0 km/s; it is {v[i]} for {int(bad.sum())} model(s), first at index {i}")
    return xr.DataArray(v, dims=(row,), coords={row: ds[row]} if row in ds.coords else None)


def rotate(ds: xr.Dataset, vbroad=None, limb_darkening: float = 0.6, *, missing: str = "error") -> xr.Dataset:
    """Rotational broadening with the classical (Gray) profile and linear limb darkening, per model.

    vbroad: km/s, None to use each model's `vbroad` label, or a value (or array along the first dimension)
    for all. vbroad = 0 is the identity. The profile is applied on a uniform ln lambda grid (a velocity
    shift is a constant number of pixels there), segment by segment. Lazy.
    """
    _check_missing(missing)
    if not 0 <= float(limb_darkening) <= 1:
        raise ConfigError(f"limb_darkening must be in [0, 1], got {limb_darkening}")
    fl = _flux(ds)
    if fl.ndim != 2:
        raise GridError(f"rotate needs flux with dims (model or star, wavelength), got {fl.dims}")
    row = fl.dims[0]
    wl = _wavelength(ds)
    v = _vbroad(ds, vbroad, row)
    lazy = _lazy(fl)
    v = v.chunk({row: lazy.chunks[0]})
    out = xr.apply_ufunc(
        _rotate_block, lazy, v, input_core_dims=[[WAVELENGTH], []], output_core_dims=[[WAVELENGTH]], dask="parallelized",
        output_dtypes=[np.float32], kwargs=dict(wl=wl, limb_darkening=float(limb_darkening), missing=missing), keep_attrs=True,
    )
    note = "vbroad label" if vbroad is None else f"vbroad={vbroad!r} km/s" if np.ndim(vbroad) == 0 else "vbroad array"
    return ds.assign(flux=out).assign_attrs(rotation=f"Gray profile, limb darkening {float(limb_darkening):g}, {note}")


def rebin(ds: xr.Dataset, wavelength, *, outside: str = "error", missing: str = "error") -> xr.Dataset:
    """Rebin onto the pixel centres `wavelength` (A) conserving flux (pixel edges halfway between centres).

    outside: the policy for target pixels not entirely within the input's pixels (beyond its ends, or in a
    gap of its wavelength axis): 'error' (default) raises GridError naming them before anything is
    computed; 'nan' makes them NaN (missing pixels, counted by `fourmostify`). Lazy.
    """
    _check_missing(missing)
    if outside not in _OUTSIDE:
        raise ConfigError(f"outside must be one of {_OUTSIDE}, got {outside!r}")
    fl = _flux(ds)
    wl = _wavelength(ds)
    target = check_wavelength(np.asarray(wavelength, dtype=np.float64), "target wavelength")
    matrix, covered = _rebin.cached_rebin_matrix(wl, target)
    uncovered = None
    if not covered.all():
        idx = np.flatnonzero(~covered)
        if outside == "error":
            raise GridError(
                f"target wavelength grid lies outside the input coverage: {idx.size} of {target.size} target pixels not covered, "
                f"first at {target[idx[0]]:.3f} A, last at {target[idx[-1]]:.3f} A (the input covers {_describe_coverage(wl)})"
            )
        uncovered = idx
    medium = ds[WAVELENGTH].attrs.get("medium", "air")
    out = xr.apply_ufunc(
        _rebin_block, _lazy(fl), input_core_dims=[[WAVELENGTH]], output_core_dims=[[WAVELENGTH]], exclude_dims={WAVELENGTH},
        dask="parallelized", output_dtypes=[np.float32], dask_gufunc_kwargs={"output_sizes": {WAVELENGTH: target.size}},
        kwargs=dict(wl=wl, matrix=matrix, uncovered=uncovered, missing=missing), keep_attrs=True,
    )
    out = out.assign_coords({WAVELENGTH: (WAVELENGTH, target, wavelength_attrs(medium))})
    rest = ds.drop_vars([k for k, v in ds.variables.items() if WAVELENGTH in v.dims])
    return rest.assign(flux=out).transpose(*fl.dims, ...)


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


def _check_snr(snr) -> np.ndarray:
    values = np.atleast_1d(np.asarray(snr, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise ConfigError(f"snr must be one value or a list of values, got {snr!r}")
    bad = ~np.isfinite(values) | (values <= 0)
    if bad.any():
        raise ConfigError(f"snr must be finite and > 0; got {values[bad][0]:g}")
    if np.unique(values).size != values.size:
        raise ConfigError(f"snr values must be distinct, got {values.tolist()}")
    return values


def add_noise(ds: xr.Dataset, snr=DEFAULT_SNR, seed: int = 0, *, convention: str = PER_ANGSTROM) -> xr.Dataset:
    """Add Gaussian noise with sigma = flux / (S/N per pixel) (Eq. 1 of the published method) at each S/N.

    snr: values quoted per Angstrom (`convention='per_angstrom'`, like the published grid: per pixel it is
    snr * sqrt(pixel width / 1 A)) or per pixel (`convention='per_pixel'`). Adds the dimension `snr` after the
    first one: flux(model, snr, wavelength). The draws for (row id, S/N value, seed) come from
    `store.rng_for(seed, row id, snr_key(S/N))`: a recomputed or retried chunk is bit-identical. Lazy.
    """
    if convention not in noise.CONVENTIONS:
        raise ConfigError(f"convention must be one of {noise.CONVENTIONS}, got {convention!r}")
    values = _check_snr(snr)
    fl = _flux(ds)
    if fl.ndim != 2:
        raise GridError(f"add_noise needs flux with dims (model or star, wavelength), got {fl.dims}")
    if SNR in fl.dims:
        raise GridError("flux already has an 'snr' dimension")
    row = fl.dims[0]
    wl = _wavelength(ds)
    snr_pixel = noise.snr_per_pixel(values, _rebin.pixel_widths(wl), convention)
    lazy = _lazy(fl)
    keys = xr.DataArray(_row_keys(ds, row), dims=(row,)).chunk({row: lazy.chunks[0]})
    out = xr.apply_ufunc(
        _noise_block, lazy, keys, input_core_dims=[[WAVELENGTH], []], output_core_dims=[[SNR, WAVELENGTH]], dask="parallelized",
        output_dtypes=[np.float32], dask_gufunc_kwargs={"output_sizes": {SNR: values.size}},
        kwargs=dict(snr_pixel=snr_pixel, snr_keys=[snr_key(s) for s in values], seed=int(seed)), keep_attrs=True,
    )
    out = out.assign_coords({SNR: (SNR, values, {"units": "1", "long_name": "signal-to-noise ratio", "convention": convention,
                                                 "description": SNR_CONVENTION_TEXT[convention]})})
    out = out.transpose(row, SNR, WAVELENGTH)
    return ds.assign(flux=out).assign_attrs(snr_convention=convention, noise_seed=int(seed),
                                           noise="Gaussian, sigma = flux / (S/N per pixel), Eq. 1 of the published method")


# ---------------------------------------------------------------------------------------------
# the published chain
def _segment_bounds(wl: np.ndarray) -> list[tuple[float, float]]:
    lo, hi = _rebin.bin_edges(wl)
    return [(float(lo[s.start]), float(hi[s.stop - 1])) for s in lnlambda.segments(wl)]


def working_grid(wl_in: np.ndarray, arms: Sequence[_instruments.Arm], step: float = WORKING_STEP, margin: float = 3.0,
                 reach: float = 0.0) -> np.ndarray:
    """The intermediate grid of the chain: per arm, a uniform ln lambda grid whose pixels are no wider than
    `step` (A), spanning the arm plus `margin` A each side (clipped to the input segment that holds the
    arm, one working pixel inside its edge). `reach`: the relative half-width (d lambda / lambda) of the
    broadening kernels; the input must extend that far beyond each arm, or a GridError names the arm."""
    if not step > 0:
        raise ConfigError(f"working step must be > 0 A, got {step}")
    bounds = _segment_bounds(wl_in)
    pieces = []
    for arm in arms:
        need_lo, need_hi = arm.wl_min * (1 - reach), arm.wl_max * (1 + reach)
        seg = [(a, b) for a, b in bounds if a <= need_lo and need_hi <= b]
        if not seg:
            raise GridError(
                f"arm {arm.name!r} ({arm.wl_min:g}-{arm.wl_max:g} A) is not covered by the input wavelength grid: it needs "
                f"{need_lo:.2f}-{need_hi:.2f} A in one piece (the arm and the reach of the broadening kernels); the input covers "
                f"{', '.join(f'{a:.2f}-{b:.2f}' for a, b in bounds)} A"
            )
        a, b = seg[0]
        lo = max(arm.wl_min - margin, a + step)
        hi = min(arm.wl_max + margin, b - step)
        grid, _ = lnlambda.lnlambda_span(lo, hi, step / hi)
        pieces.append(grid)
    return np.concatenate(pieces)


def degrade(
    ds: xr.Dataset,
    instrument="4most-hr",
    arms=None,
    snr=DEFAULT_SNR,
    *,
    seed: int = 0,
    snr_convention: str = PER_ANGSTROM,
    input_resolving_power: float | None = None,
    intermediate_resolving_power: float | None = INTERMEDIATE_RESOLVING_POWER,
    working_step: float = WORKING_STEP,
    vbroad=None,
    limb_darkening: float = 0.6,
) -> xr.Dataset:
    """The published chain on a base grid flux(model, wavelength), lazily:
    R = 80000 (native grid) -> 0.025 A (ln lambda working grid, per arm) -> rotation (Gray, `vbroad` label)
    -> R = instrument's (quadrature difference from 80000) -> instrument pixels of the chosen arms -> noise
    at each S/N. Returns the cube flux(model, snr, wavelength) (snr=None: no noise, flux(model, wavelength)).

    Validates before building anything: labels present and finite (vbroad needed unless given), the
    wavelength axis, the resolving powers, the S/N values, coverage of the arms.
    """
    inst = _instruments.get(instrument)
    chosen = inst.select(arms)
    fl = _flux(ds)
    if fl.ndim != 2:
        raise GridError(f"degrade needs a base grid flux(model, wavelength), got dims {fl.dims}")
    validate_grid(ds, kind="base", required_labels=("vbroad",) if vbroad is None else ())
    wl = _wavelength(ds)
    r_in = _input_resolving_power(ds, input_resolving_power)
    values = _check_snr(snr) if snr is not None else None
    if snr_convention not in noise.CONVENTIONS:
        raise ConfigError(f"snr_convention must be one of {noise.CONVENTIONS}, got {snr_convention!r}")
    r_mid = r_in
    if intermediate_resolving_power is not None:
        r_mid = _check_target_r(intermediate_resolving_power, r_in, "intermediate_resolving_power")
    _check_target_r(inst.resolving_power, r_mid, f"the resolving power of {inst.name}")
    vmax = float(np.max(_vbroad(ds, vbroad, fl.dims[0]).values, initial=0.0))
    reach = 3.0 / (lsf.FWHM_PER_SIGMA * inst.resolving_power) + vmax / rotation.C_KMS  # 3 sigma of the LSF + rotation
    work = working_grid(wl, chosen, working_step, reach=reach)
    target = inst.wavelength([a.name for a in chosen])

    out = ds
    if intermediate_resolving_power is not None:
        out = to_resolution(out, r_mid, r_in)
    out = rebin(out, work)
    out = rotate(out, vbroad, limb_darkening)
    out = to_resolution(out, inst.resolving_power, r_mid)
    out = rebin(out, target)
    chain = (
        (f"R={r_mid:g} on the input grid -> " if intermediate_resolving_power is not None else "")
        + f"ln-lambda grid of <= {working_step:g} A -> rotation (Gray, limb darkening {limb_darkening:g}) -> "
        f"R={inst.resolving_power:g} -> {inst.name} pixels ({','.join(a.name for a in chosen)})"
    )
    if values is not None:
        out = add_noise(out, values, seed, convention=snr_convention)
        chain += f" -> Gaussian noise at {values.size} S/N ({snr_convention}), seed {int(seed)}"
    return out.assign_attrs(instrument=inst.name, arms=",".join(a.name for a in chosen), resolving_power=float(inst.resolving_power),
                            input_resolving_power=r_in, degrade_chain=chain)


# ---------------------------------------------------------------------------------------------
# observed spectra
def der_snr(flux: np.ndarray) -> np.ndarray:
    """DER_SNR (Stoehr et al. 2008) S/N per pixel of rows of flux (..., n), ignoring NaN."""
    f = np.asarray(flux, dtype=np.float64)
    signal = np.nanmedian(f, axis=-1)
    d = np.abs(2.0 * f[..., 2:-2] - f[..., :-4] - f[..., 4:])
    nse = 1.482602 / math.sqrt(6.0) * np.nanmedian(d, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nse > 0, signal / nse, np.inf)


def fourmostify(
    ds: xr.Dataset,
    input_resolving_power: float | None = None,
    *,
    instrument="4most-hr",
    arms=None,
    snr: float | None = None,
    input_snr: float | None = None,
    seed: int = 0,
    snr_convention: str = PER_ANGSTROM,
) -> xr.Dataset:
    """Observed spectra flux(star, wavelength) of higher native resolution to the instrument's grid, lazily.

    Convolve from `input_resolving_power` (default: the dataset's attr; required) to the instrument's R,
    rebin onto the pixels of the chosen arms, and with `snr` add noise to reach that S/N (per Angstrom by
    default; with `input_snr` the noise added is the quadrature difference, otherwise the input is taken
    as noise-free). Missing or masked input pixels (NaN, or gaps of the wavelength axis) are never filled:
    every output pixel they touch, every pixel within 3 sigma of the LSF of an end of the input's coverage (a
    gap or the last sample), and every pixel outside the coverage, is NaN, and `n_missing(star)`
    counts them (`missing_report` lists the ranges). Raises GridError when an arm has no input at all.
    """
    inst = _instruments.get(instrument)
    chosen = inst.select(arms)
    fl = _flux(ds)
    if fl.ndim != 2:
        raise GridError(f"fourmostify needs flux(star, wavelength), got dims {fl.dims}")
    row = fl.dims[0]
    wl = _wavelength(ds)
    r_in = _input_resolving_power(ds, input_resolving_power)
    if math.isinf(r_in) and input_resolving_power is None and "resolving_power" not in ds.attrs:
        raise ConfigError("fourmostify needs input_resolving_power (the native R of the observed spectra)")
    _check_target_r(inst.resolving_power, r_in, f"the resolving power of {inst.name}")
    bounds = _segment_bounds(wl)
    for arm in chosen:
        if not any(a < arm.wl_max and b > arm.wl_min for a, b in bounds):
            raise GridError(f"arm {arm.name!r} ({arm.wl_min:g}-{arm.wl_max:g} A) has no input pixels (the input covers "
                            f"{_describe_coverage(wl)}); choose arms the spectra cover")
    out = to_resolution(ds, inst.resolving_power, r_in, missing="propagate")
    # pixels closer than 3 sigma of the kernel to an end of the input's coverage lack data: missing, not guessed
    sigma = lsf.kernel_sigma_lnlambda(inst.resolving_power, r_in)
    near_edge = np.zeros(wl.size, dtype=bool)
    for seg in lnlambda.segments(wl):
        x = np.log(wl[seg])
        near_edge[seg] = (x - x[0] < 3 * sigma) | (x[-1] - x < 3 * sigma)
    out = out.assign(flux=out.flux.where(xr.DataArray(~near_edge, dims=(WAVELENGTH,))))
    out = rebin(out, inst.wavelength([a.name for a in chosen]), outside="nan", missing="propagate")
    if snr is not None:
        values = _check_snr(snr)
        if values.size != 1:
            raise ConfigError(f"fourmostify adds noise at one S/N, got {values.tolist()}")
        eff = values
        if input_snr is not None:
            try:
                eff = noise.quadrature_snr(values, float(input_snr))
            except ValueError:
                raise ConfigError(f"snr = {values[0]:g} must be below input_snr = {input_snr:g}") from None
        noisy = add_noise(out, eff, seed, convention=snr_convention)
        out = noisy.assign(flux=noisy.flux.isel({SNR: 0}, drop=True))
        snr_values = np.full(ds.sizes[row], float(values[0]))
    else:
        snr_values = np.full(ds.sizes[row], np.nan if input_snr is None else float(input_snr))
    out = out.assign(
        snr=((row,), snr_values, {"long_name": "signal-to-noise ratio", "convention": snr_convention}),
        n_missing=out.flux.isnull().sum(WAVELENGTH).astype(np.int32).assign_attrs(long_name="missing (NaN) pixels on the instrument grid"),
    )
    return out.assign_attrs(instrument=inst.name, arms=",".join(a.name for a in chosen), resolving_power=float(inst.resolving_power),
                            input_resolving_power=r_in)


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


# ---------------------------------------------------------------------------------------------
# stores (the CLI's entry points)
def _open_base(path) -> xr.Dataset:
    path = Path(path)
    if not path.exists():
        raise GridError(f"input grid {path} does not exist")
    try:
        return xr.open_zarr(path, consolidated=False)
    except Exception as exc:  # noqa: BLE001
        raise GridError(f"input {path} is not a readable Zarr grid: {exc}") from exc


class DegradeRegion:
    """make_region of `degrade_store`: opens the input inside the worker, degrades its slice of models."""

    def __init__(self, input_path: str, options: dict, labels: Sequence[str]):
        self.input_path, self.options, self.labels = str(input_path), dict(options), list(labels)

    def __call__(self, i: int, sl: slice) -> xr.Dataset:
        ds = xr.open_zarr(self.input_path, consolidated=False).isel(model=sl)
        ds = ds[["flux", *self.labels]].load()
        return degrade(ds, **self.options).compute()


def degrade_store(
    input_path,
    out,
    instrument="4most-hr",
    arms=None,
    snr=DEFAULT_SNR,
    *,
    seed: int = 0,
    snr_convention: str = PER_ANGSTROM,
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
    """
    out = Path(out)
    base = _open_base(input_path)
    if not isinstance(region_size, int) or region_size < 1:
        raise ConfigError(f"region_size must be an integer >= 1, got {region_size!r}")
    if out.exists() and not overwrite:
        try:
            _store.open_region_store(out)
        except StoreError:
            raise StoreError(f"output {out} exists; pass overwrite=True (--overwrite) to replace it") from None
    if Path(input_path).resolve() == out.resolve():
        raise StoreError(f"output {out} is the input grid")
    labels = label_names(base)
    opts = dict(instrument=_instruments.get(instrument).name, arms=arms, snr=None if snr is None else [float(s) for s in _check_snr(snr)],
                seed=int(seed), snr_convention=snr_convention, **options)
    cube = degrade(base, **opts)  # validates everything except the flux values
    if check_finite:
        _check_store_finite(base.flux, client)
    template = cube.assign({k: cube[k].load() for k in labels})
    fp = _store.fingerprint("degrade", _store.store_identity(input_path, base[["flux"]]), opts, region_size)
    rs, resumed = _store.create(out, template, dim="model", region_size=region_size, fingerprint=fp, overwrite=overwrite)
    failures = _store.write_regions(rs, DegradeRegion(str(input_path), opts, labels), client=client, progress=progress,
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


class FourmostifyRegion:
    """make_region of `fourmostify_store`: reads its spectra files inside the worker."""

    def __init__(self, paths: Sequence[str], options: dict, n_wave: int):
        self.paths, self.options, self.n_wave = [str(p) for p in paths], dict(options), n_wave

    def __call__(self, i: int, sl: slice) -> xr.Dataset:
        rows = [fourmostify_file(p, **self.options) for p in self.paths[sl]]
        star = np.arange(sl.start, sl.stop)
        return xr.Dataset(
            {
                "flux": (("star", WAVELENGTH), np.stack([r["flux"] for r in rows]).astype(np.float32)),
                "snr": (("star",), np.array([r["snr"] for r in rows], dtype=np.float64)),
                "n_missing": (("star",), np.array([r["n_missing"] for r in rows], dtype=np.int32)),
                "n_duplicate_wavelengths": (("star",), np.array([r["n_duplicates"] for r in rows], dtype=np.int32)),
                "ra": (("star",), np.array([r["ra"] for r in rows], dtype=np.float64)),
                "dec": (("star",), np.array([r["dec"] for r in rows], dtype=np.float64)),
            },
            coords={"star": star},
        )


def _read(path):
    """(wavelength, flux, meta) of a spectrum file as it is: the format's raw reader from gridkit.io, so that
    NaN (masked) pixels and repeated wavelengths reach `spectrum_dataset`, which reports them instead of failing."""
    from . import io as _io

    readers, fmt = getattr(_io, "READERS", None), getattr(_io, "spectrum_format", None)
    if readers is not None and fmt is not None:
        return readers[fmt(path)](path)
    return _io.read_spectrum(path)


def fourmostify_file(path, input_resolving_power=None, *, instrument="4most-hr", arms=None, snr=None, input_snr=None, seed=0,
                     snr_convention=PER_ANGSTROM, star_index: int | None = None) -> dict:
    """One spectrum file through `fourmostify`: dict with flux (on the instrument grid), snr, n_missing,
    ra, dec. Without `snr`/`input_snr`, the S/N per Angstrom is estimated with DER_SNR."""
    wl, flux, meta = _read(path)
    meta = dict(meta or {})
    r_in = input_resolving_power if input_resolving_power is not None else meta.get("resolving_power")
    if r_in is None:
        raise ConfigError(f"{path}: the native resolving power is not in the file; pass input_resolving_power (--input-resolving-power)")
    ds = spectrum_dataset(wl, flux, name=str(path))
    res = fourmostify(ds, r_in, instrument=instrument, arms=arms, snr=snr, input_snr=input_snr, seed=seed,
                      snr_convention=snr_convention).compute()
    f = res.flux.values[0]
    s = float(res.snr.values[0])
    if not np.isfinite(s):  # estimate it from the data: DER_SNR per pixel -> per Angstrom
        width = np.median(_rebin.pixel_widths(res[WAVELENGTH].values))
        s = float(der_snr(f)) / math.sqrt(width) if snr_convention == PER_ANGSTROM else float(der_snr(f))
        s = min(s, MAX_ESTIMATED_SNR)  # a noise-free input has no measurable noise (DER_SNR = inf)
    return {"flux": f, "snr": s, "n_missing": int(np.isnan(f).sum()), "n_duplicates": int(ds.attrs["n_duplicate_wavelengths"]),
            "ra": float(meta.get("ra", np.nan)), "dec": float(meta.get("dec", np.nan))}


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


def fourmostify_store(
    paths: Sequence,
    out,
    input_resolving_power: float | None = None,
    *,
    instrument="4most-hr",
    arms=None,
    snr: float | None = None,
    input_snr: float | None = None,
    seed: int = 0,
    snr_convention: str = PER_ANGSTROM,
    star_ids: Sequence[str] | None = None,
    region_size: int = 64,
    client=None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Observed spectra files (text two-column or FITS 1-D, read by gridkit.io.read_spectrum) to a survey
    store: flux(star, wavelength) on the instrument grid (NaN where missing), snr(star), star_id(star),
    n_missing(star), ra/dec(star) (NaN where the file has none). Restartable like every gridkit store."""
    out = Path(out)
    paths = [str(p) for p in paths]
    if not paths:
        raise ConfigError("no spectra given")
    for p in paths:
        if not Path(p).exists():
            raise GridError(f"spectrum file {p} does not exist")
    ids = [str(s) for s in star_ids] if star_ids is not None else [Path(p).name.split(".")[0] for p in paths]
    if len(ids) != len(paths):
        raise ConfigError(f"star_ids must have one id per file ({len(paths)}), got {len(ids)}")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ConfigError(f"star ids must be unique; duplicated: {', '.join(uniq[counts > 1][:5])} (pass star_ids)")
    if out.exists() and not overwrite:
        try:
            _store.open_region_store(out)
        except StoreError:
            raise StoreError(f"output {out} exists; pass overwrite=True (--overwrite) to replace it") from None
    inst = _instruments.get(instrument)
    chosen = inst.select(arms)
    if snr is not None:
        _check_snr(snr)
    if snr_convention not in noise.CONVENTIONS:
        raise ConfigError(f"snr_convention must be one of {noise.CONVENTIONS}, got {snr_convention!r}")
    opts = dict(input_resolving_power=input_resolving_power, instrument=inst.name, arms=[a.name for a in chosen], snr=snr,
                input_snr=input_snr, seed=int(seed), snr_convention=snr_convention)
    # validate the first spectrum fully before anything is written (reader, resolving power, coverage)
    fourmostify_file(paths[0], **opts)
    import dask.array as dsa

    target = inst.wavelength([a.name for a in chosen])
    n = len(paths)
    template = xr.Dataset(
        {
            "flux": (("star", WAVELENGTH), dsa.zeros((n, target.size), dtype=np.float32, chunks=(region_size, -1)), {"long_name": "continuum-normalised flux", "units": "1", "missing": "NaN"}),
            "snr": (("star",), dsa.zeros(n, chunks=region_size), {"long_name": "signal-to-noise ratio", "convention": snr_convention,
                                                                  "source": "given" if snr is not None or input_snr is not None else f"DER_SNR estimate (at most {MAX_ESTIMATED_SNR:g})"}),
            "n_missing": (("star",), dsa.zeros(n, dtype=np.int32, chunks=region_size), {"long_name": "missing (NaN) pixels on the instrument grid"}),
            "n_duplicate_wavelengths": (("star",), dsa.zeros(n, dtype=np.int32, chunks=region_size),
                                        {"long_name": "input samples at a repeated wavelength, merged into their mean"}),
            "ra": (("star",), dsa.zeros(n, chunks=region_size), {"units": "deg"}),
            "dec": (("star",), dsa.zeros(n, chunks=region_size), {"units": "deg"}),
            "star_id": (("star",), np.array(ids, dtype=object)),
            "source_file": (("star",), np.array([str(Path(p).resolve()) for p in paths], dtype=object)),
        },
        coords={"star": np.arange(n), WAVELENGTH: (WAVELENGTH, target, wavelength_attrs(inst.medium))},
        attrs={"instrument": inst.name, "arms": ",".join(a.name for a in chosen), "resolving_power": float(inst.resolving_power),
               "input_resolving_power": float("nan") if input_resolving_power is None else float(input_resolving_power),
               "snr_convention": snr_convention, "kind": "survey"},
    )
    fp = _store.fingerprint("fourmostify", [str(Path(p).resolve()) for p in paths], ids, opts, region_size)
    rs, _ = _store.create(out, template, dim="star", region_size=region_size, fingerprint=fp, overwrite=overwrite)
    failures = _store.write_regions(rs, FourmostifyRegion(paths, opts, target.size), client=client, progress=progress, desc="fourmostify")
    if failures:
        raise StoreError(f"{len(failures)} region(s) of {out} failed (rerun to retry): {next(iter(failures.values()))}")
    return out


__all__ = [
    "DEFAULT_SNR", "to_resolution", "rotate", "rebin", "add_noise", "degrade", "fourmostify", "degrade_store", "fourmostify_store",
    "working_grid", "missing_report", "missing_ranges", "der_snr", "snr_key", "spectrum_dataset",
]
