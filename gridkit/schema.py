"""The data model: dimension names, the label set with units, and validation of grids.

Base grid:      flux(model, wavelength) float32, one variable per label along `model`.
Degraded cube:  flux(model, snr, wavelength), the same labels, attrs instrument/arms/resolving_power.
Survey:         flux(star, wavelength), snr(star), star_id(star), optional per-star columns.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import xarray as xr

from .errors import GridError

MODEL, SNR, WAVELENGTH, STAR = "model", "snr", "wavelength", "star"


@dataclass(frozen=True)
class Label:
    name: str
    units: str
    long_name: str


#: The published method's 13 labels (Ksoll et al. 2026), with the names used everywhere in the project.
DEFAULT_LABELS: tuple[Label, ...] = (
    Label("teff", "K", "effective temperature"),
    Label("logg", "dex", "surface gravity log10(g / (cm s-2))"),
    Label("feh", "dex", "iron abundance [Fe/H]"),
    Label("vmic", "km s-1", "microturbulent velocity"),
    Label("vbroad", "km s-1", "line broadening velocity (v sin i and macroturbulence)"),
    Label("c_fe", "dex", "carbon abundance [C/Fe]"),
    Label("n_fe", "dex", "nitrogen abundance [N/Fe]"),
    Label("mg_fe", "dex", "magnesium abundance [Mg/Fe]"),
    Label("si_fe", "dex", "silicon abundance [Si/Fe]"),
    Label("ca_fe", "dex", "calcium abundance [Ca/Fe]"),
    Label("ti_fe", "dex", "titanium abundance [Ti/Fe]"),
    Label("mn_fe", "dex", "manganese abundance [Mn/Fe]"),
    Label("li_fe", "dex", "lithium abundance [Li/Fe]"),
)
LABEL_NAMES: tuple[str, ...] = tuple(label.name for label in DEFAULT_LABELS)
_BY_NAME = {label.name: label for label in DEFAULT_LABELS}


def label_info(name: str) -> Label:
    """Units and long name of a label; unknown labels are dimensionless with their name as long name."""
    return _BY_NAME.get(name, Label(name, "1", name))


def label_attrs(name: str) -> dict:
    info = label_info(name)
    return {"units": info.units, "long_name": info.long_name}


def label_names(ds: xr.Dataset, dim: str = MODEL) -> list[str]:
    """The label variables of a grid: 1-D variables along `dim` with a default label name or `role = "label"`."""
    return [str(k) for k, v in ds.data_vars.items() if v.dims == (dim,) and (k in _BY_NAME or v.attrs.get("role") == "label")]


def label_variables(labels: Mapping[str, np.ndarray], dim: str = MODEL) -> dict[str, tuple]:
    """{name: ((dim,), values, attrs)} of a grid's label variables, for `Dataset.assign`: the default labels in
    LABEL_NAMES order, then the others by name with `role = "label"` (so that `label_names` finds them)."""
    out = {}
    for name in sorted(labels, key=lambda k: (LABEL_NAMES.index(k) if k in _BY_NAME else len(LABEL_NAMES), k)):
        attrs = label_attrs(name)
        if name not in _BY_NAME:
            attrs["role"] = "label"
        out[name] = ((dim,), labels[name], attrs)
    return out


def wavelength_attrs(medium: str = "air") -> dict:
    if medium not in ("air", "vacuum"):
        raise GridError(f"wavelength medium must be 'air' or 'vacuum', got {medium!r}")
    return {"units": "Angstrom", "long_name": "wavelength", "medium": medium}


FLUX_ATTRS = {"units": "1", "long_name": "continuum-normalised flux"}


def decode_packed(raw: np.ndarray, attrs: Mapping) -> np.ndarray:
    """Values of an array read straight from Zarr as float32, decoded from its CF packing (attrs `scale_factor`,
    `add_offset`, `_FillValue` of integer data -> NaN), as `xarray.open_zarr` decodes them: a base grid may store
    flux as uint16 with scale 2e-5. Fast readers that bypass xarray (the training loader) decode with this."""
    raw = np.asarray(raw)
    scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
    if scale is None and offset is None and raw.dtype.kind == "f":
        return raw.astype(np.float32, copy=False)
    out = raw.astype(np.float32) * np.float32(1.0 if scale is None else scale) + np.float32(0.0 if offset is None else offset)
    fill = attrs.get("_FillValue")
    if raw.dtype.kind in "iu" and isinstance(fill, (int, float)) and not isinstance(fill, bool):
        out[raw == fill] = np.nan
    return out


#: the smallest pixel step, relative to its wavelength: float64 resolves ~1e-16, and pixel edges and overlaps
#: need many digits below the step (real grids are >= ~1e-7: 0.001 A at 10,000 A)
MIN_RELATIVE_STEP = 1e-9


def check_wavelength(wavelength: np.ndarray, name: str = "wavelength") -> np.ndarray:
    """Return `wavelength` as float64 after checking it is 1-D, finite, positive and strictly increasing, with
    steps of at least MIN_RELATIVE_STEP of the wavelength."""
    wl = np.asarray(wavelength, dtype=np.float64)
    if wl.ndim != 1 or wl.size < 2:
        raise GridError(f"{name} must be 1-D with at least 2 values, got shape {wl.shape}")
    if not np.all(np.isfinite(wl)):
        i = int(np.flatnonzero(~np.isfinite(wl))[0])
        raise GridError(f"{name} must be finite; index {i} is {wl[i]}")
    if wl[0] <= 0:
        raise GridError(f"{name} must be positive; index 0 is {wl[0]} A")
    steps = np.diff(wl)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise GridError(f"{name} must increase; it does not at index {i + 1} ({wl[i]:.4f} -> {wl[i + 1]:.4f} A)")
    tiny = steps < MIN_RELATIVE_STEP * wl[1:]
    if np.any(tiny):
        i = int(np.flatnonzero(tiny)[0])
        raise GridError(f"{name} has a step of {steps[i]:.3g} A at index {i + 1} ({wl[i + 1]:.6f} A), below {MIN_RELATIVE_STEP:g} of the "
                        "wavelength: pixels that narrow cannot be resolved in float64 (duplicated or degenerate wavelengths?)")
    return wl


def normalisation_record(config) -> str:
    """The attribute by which cubes, surveys and models say how their flux was normalised: 'none' (as given, e.g.
    a synthetic grid's true continuum) or 'continuum <operator parameters as JSON>'."""
    return "none" if config is None else "continuum " + json.dumps(config.to_dict(), sort_keys=True)


def check_normalisation(survey: str, model: str, what: str = "the spectra") -> None:
    """Refuse spectra prepared with another normalisation than the model's training data, naming both."""
    if (survey or "none") != (model or "none"):
        raise GridError(f"{what} were normalised with {survey or 'none'!r}, but the model was trained on flux normalised with "
                        f"{model or 'none'!r}: prepare them the same way (gridkit fourmostify --normalise "
                        f"{'continuum' if (model or 'none') != 'none' else 'none'})")


def as_text(values) -> np.ndarray:
    """Text values (ids, names) as an object array of Python str, whatever numpy type they come in: fixed-width
    unicode, bytes, objects, or numpy's variable-width StringDType that Zarr v3 hands back."""
    arr = np.asarray(values)
    if arr.dtype.kind == "T":
        arr = arr.astype(object)
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in arr.ravel().tolist()], dtype=object).reshape(arr.shape)


def describe_wavelength(wavelength: np.ndarray) -> str:
    """`25200 pixels, 5160.025-6789.975 A`: how errors name a wavelength grid."""
    wl = np.asarray(wavelength, dtype=np.float64)
    return f"{wl.size} pixels, {wl[0]:.3f}-{wl[-1]:.3f} A" if wl.size else "0 pixels"


def check_same_wavelength(wavelength, reference, *, what: str = "the spectra", of: str = "the model",
                          hint: str = "put the spectra on it with `gridkit fourmostify` (gridkit.fourmostify) first") -> None:
    """Raise GridError unless `wavelength` is the grid `reference` (same size, equal within 1e-6 A): the one check
    of "these spectra are on the model's (or cube's) wavelength grid". `what` and `of` name the two in the message."""
    wl = np.asarray(wavelength, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if wl.shape != ref.shape or not np.allclose(wl, ref, rtol=1e-9, atol=1e-6):
        raise GridError(f"{what} ({describe_wavelength(wl)}) is not on the wavelength grid of {of} ({describe_wavelength(ref)})"
                        + (f"; {hint}" if hint else ""))


def check_labels(labels: Mapping[str, np.ndarray], n: int, required: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Labels as float64 arrays of length n, finite, with every required name present (GridError naming the
    label and its first bad value otherwise: text that is not a number, NaN, infinity, a wrong length)."""
    missing = [name for name in required if name not in labels]
    if missing:
        raise GridError(f"missing labels: {', '.join(missing)}")
    out = {}
    for name, values in labels.items():
        arr = _numbers(name, values)
        if arr.shape != (n,):
            raise GridError(f"label {name!r} must have one value per model ({n}), got shape {arr.shape}")
        bad = ~np.isfinite(arr)
        if bad.any():
            raise GridError(f"label {name!r} is NaN or infinite for {int(bad.sum())} model(s), first at index {int(np.flatnonzero(bad)[0])}")
        out[name] = arr
    return out


def _numbers(name: str, values) -> np.ndarray:
    """`values` of label `name` as float64; GridError naming the first value that is not a number (a label table
    with text in a label column, e.g. 'abc' or an empty cell)."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        pass
    flat = np.asarray(values, dtype=object).ravel()
    bad = []
    for i, v in enumerate(flat.tolist()):
        try:
            float(v.decode() if isinstance(v, bytes) else v)
        except (TypeError, ValueError, OverflowError):
            bad.append(i)
    if not bad:  # not a flat sequence of numbers (ragged rows...)
        raise GridError(f"label {name!r} must be numbers, one per model; got {str(values)[:80]}")
    i = bad[0]
    raise GridError(f"label {name!r} must be numbers; {len(bad)} of {flat.size} value(s) are not, first at index {i}: {flat[i]!r}")


def check_flux_finite(flux: np.ndarray, name: str = "flux") -> None:
    bad = ~np.isfinite(flux)
    if bad.any():
        idx = np.unravel_index(int(np.flatnonzero(bad)[0]), flux.shape)
        raise GridError(f"{name} has {int(bad.sum())} NaN/inf value(s), first at index {tuple(int(i) for i in idx)}")


def from_arrays(
    wavelength,
    flux,
    labels: Mapping[str, np.ndarray],
    *,
    medium: str = "air",
    resolving_power: float = math.inf,
    model=None,
    attrs: Mapping | None = None,
) -> xr.Dataset:
    """Build a validated base grid `flux(model, wavelength)` from arrays.

    wavelength: (n_wave,) Angstrom, strictly increasing. flux: (n_model, n_wave) or (n_wave,).
    labels: mapping name -> (n_model,) values. `model` gives the model ids (default 0..n-1).
    """
    wl = check_wavelength(wavelength)
    fl = np.asarray(flux, dtype=np.float32)
    if fl.ndim == 1:
        fl = fl[None, :]
    if fl.ndim != 2 or fl.shape[1] != wl.size:
        raise GridError(f"flux must have shape (n_model, {wl.size}) to match wavelength, got {fl.shape}")
    check_flux_finite(fl)
    lab = check_labels(labels, fl.shape[0])
    model_ids = np.arange(fl.shape[0]) if model is None else np.asarray(model)
    ds = xr.Dataset(
        {"flux": ((MODEL, WAVELENGTH), fl, dict(FLUX_ATTRS))},
        coords={MODEL: (MODEL, model_ids, {"long_name": "model id"}), WAVELENGTH: (WAVELENGTH, wl, wavelength_attrs(medium))},
    )
    for name, values in lab.items():
        attrs_ = label_attrs(name)
        if name not in _BY_NAME:
            attrs_["role"] = "label"
        ds[name] = ((MODEL,), values, attrs_)
    ds.attrs.update({"resolving_power": float(resolving_power)})
    if attrs:
        ds.attrs.update(attrs)
    return ds


def validate_grid(ds: xr.Dataset, *, kind: str = "base", required_labels: Iterable[str] | None = None, check_values: bool = True) -> xr.Dataset:
    """Check that `ds` follows the data model of `kind` ('base', 'cube' or 'survey'); return it unchanged.

    Label values are always checked (they are small); flux values only where `check_values` and the
    flux is in memory (a lazy flux is checked where it is computed).
    """
    dims = {"base": (MODEL, WAVELENGTH), "cube": (MODEL, SNR, WAVELENGTH), "survey": (STAR, WAVELENGTH)}[kind]
    if "flux" not in ds:
        raise GridError(f"a {kind} grid needs a 'flux' variable; found {sorted(map(str, ds.data_vars))}")
    if tuple(ds.flux.dims) != dims:
        raise GridError(f"flux of a {kind} grid must have dimensions {dims}, got {tuple(ds.flux.dims)}")
    if WAVELENGTH not in ds.coords:
        raise GridError("the grid has no 'wavelength' coordinate")
    check_wavelength(ds[WAVELENGTH].values)
    row = STAR if kind == "survey" else MODEL
    if kind == "survey":
        for name in ("snr", "star_id"):
            if name not in ds:
                raise GridError(f"a survey needs a '{name}' variable along 'star'")
        snr = np.asarray(ds["snr"].values, dtype=float)
        ids = as_text(ds["star_id"].values).ravel().astype(str)
        bad = ~(np.isfinite(snr) & (snr > 0))
        if bad.any():
            where = np.flatnonzero(bad.ravel())
            named = ", ".join(f"{ids[i] if i < ids.size else i} ({snr.ravel()[i]:g})" for i in where[:5])
            raise GridError(f"survey snr must be finite and > 0 for every star; {where.size} of {snr.size} star(s) fail: {named}"
                            + (" ..." if where.size > 5 else ""))
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise GridError(f"star_id must be unique; duplicated: {', '.join(uniq[counts > 1][:5])}")
    else:
        required = LABEL_NAMES if required_labels is None else tuple(required_labels)
        missing = [name for name in required if name not in ds]
        if missing:
            raise GridError(f"the grid lacks label variable(s): {', '.join(missing)}")
        for name in label_names(ds, row):
            values = np.asarray(ds[name].values, dtype=float)
            bad = ~np.isfinite(values)
            if bad.any():
                raise GridError(f"label {name!r} is NaN or infinite for {int(bad.sum())} model(s)")
    if kind == "cube":
        snr = np.asarray(ds[SNR].values, dtype=float)
        if np.any(~np.isfinite(snr)) or np.any(snr <= 0):
            raise GridError("snr coordinate values must be finite and > 0")
    if check_values and not _is_lazy(ds.flux):
        check_flux_finite(ds.flux.values)
    return ds


def _is_lazy(da: xr.DataArray) -> bool:
    return getattr(da.variable, "chunks", None) is not None
