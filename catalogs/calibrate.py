"""The bias correction of the published method (Eq. B.1) as stored, named calibrations.

    X~ = X - (a * Teff + b)

for each corrected label X, with Teff the catalog's own (uncorrected) MAP effective temperature. A
calibration is a JSON file:

    {"name": "apogee-dr17", "teff_label": "teff", "description": "...", "reference": "...",
     "coefficients": {"logg": {"a": 1.2e-05, "b": -0.07}, "feh": {"a": ..., "b": ...}}}

`a` is in units of the label per K and `b` in units of the label. A calibration is found by path, or by
name in the directories of $GRIDKIT_CALIBRATIONS (os.pathsep-separated) and then
`~/.config/gridkit/calibrations/<name>.json`. `save_calibration` stores one. No coefficients are built in:
they are fitted against reference stars (catalogs.bias: `fit_bias`, `fit_bias_calibration`) and stored by
whoever fits them.

Applied to a catalog, a calibration adds `<label>_cal` (MAP) and `<label>_cal_quantiles` (every quantile
shifted by the same per-star offset) and records its name and coefficients in the attrs of the new
variables and in the dataset attr `calibrations`. Columns a calibration already wrote are replaced only when
asked (`overwrite=True`, `--overwrite`); then they are computed afresh from the uncalibrated labels, and the
attr `calibrations` keeps, of every earlier calibration, only the labels whose columns are still its own.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import xarray as xr

from gridkit.errors import ConfigError, GridError

from .schema import QUANTILE_SUFFIX, label_names

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_calibration_name(name) -> str:
    """`name` where it can name a calibration file (letters, digits, '_', '-', '.'; a letter or digit first)."""
    if name is None or not _NAME.match(str(name)):
        raise ConfigError(f"calibration name must be letters, digits, '_', '-', '.', got {name!r}")
    return str(name)


@dataclass(frozen=True)
class Calibration:
    name: str
    coefficients: Mapping[str, Mapping[str, float]]  # label -> {"a": per K, "b": label units}
    teff_label: str = "teff"
    description: str = ""
    reference: str = ""
    extra: Mapping = field(default_factory=dict)

    def __post_init__(self):
        check_calibration_name(self.name)
        if not self.coefficients:
            raise ConfigError(f"calibration {self.name!r} has no coefficients")
        for label, ab in self.coefficients.items():
            if set(ab) != {"a", "b"}:
                raise ConfigError(f"calibration {self.name!r}: coefficients of {label!r} must be exactly 'a' and 'b', got {sorted(ab)}")
            for k, v in ab.items():
                if not np.isfinite(float(v)):
                    raise ConfigError(f"calibration {self.name!r}: {label}.{k} must be finite, got {v}")

    def to_dict(self) -> dict:
        return {"name": self.name, "teff_label": self.teff_label, "description": self.description, "reference": self.reference,
                "coefficients": {k: {"a": float(v["a"]), "b": float(v["b"])} for k, v in self.coefficients.items()}, **dict(self.extra)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Calibration":
        if not isinstance(d, Mapping):
            raise ConfigError(f"a calibration must be a JSON object {{name, coefficients: {{label: {{a, b}}}}, ...}}, got a {type(d).__name__}")
        d = dict(d)
        known = {"name", "teff_label", "description", "reference", "coefficients"}
        missing = {"name", "coefficients"} - set(d)
        if missing:
            raise ConfigError(f"calibration lacks {', '.join(sorted(missing))}")
        coefficients = d["coefficients"]
        if not isinstance(coefficients, Mapping) or not all(isinstance(v, Mapping) for v in coefficients.values()):
            raise ConfigError(f"calibration {d['name']!r}: coefficients must map each label to {{'a': ..., 'b': ...}}, got {str(coefficients)[:80]}")
        extra = {k: d.pop(k) for k in list(d) if k not in known}
        return cls(coefficients={k: {"a": float(v["a"]), "b": float(v["b"])} for k, v in d.pop("coefficients").items()}, extra=extra, **d)


def search_path() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("GRIDKIT_CALIBRATIONS", "").split(os.pathsep) if p]
    return dirs + [Path.home() / ".config" / "gridkit" / "calibrations"]


def save_calibration(cal: Calibration, path=None, *, overwrite: bool = False) -> Path:
    """Store a calibration as JSON (default: `<first search dir>/<name>.json`); existing files are kept unless `overwrite`."""
    path = Path(path) if path is not None else search_path()[0] / f"{cal.name}.json"
    if path.exists() and not overwrite:
        raise ConfigError(f"calibration file {path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cal.to_dict(), indent=2) + "\n")
    return path


def calibration_file(name_or_path) -> Path:
    """The JSON file a calibration name or path refers to (ConfigError listing where it looked when none)."""
    p = Path(str(name_or_path))
    candidates = [p] if (p.suffix == ".json" or p.exists()) else [d / f"{name_or_path}.json" for d in search_path()]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"no calibration {str(name_or_path)!r}; looked in {', '.join(map(str, candidates))}")


def load_calibration(name_or_path) -> Calibration:
    """A calibration from a JSON path or a name on the search path."""
    if isinstance(name_or_path, Calibration):
        return name_or_path
    c = calibration_file(name_or_path)
    try:
        return Calibration.from_dict(json.loads(c.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"calibration file {c} is not a valid calibration: {exc}") from exc


def calibrated_columns(calibration) -> list[str]:
    """The variables a calibration writes: `<label>_cal` and `<label>_cal_quantiles` of every label it corrects."""
    cal = load_calibration(calibration)
    return [name for label in cal.coefficients for name in (f"{label}_cal", f"{label}_cal{QUANTILE_SUFFIX}")]


def _owner(var: xr.DataArray | None) -> str:
    name = None if var is None else var.attrs.get("calibration")
    return f" (from calibration {name!r})" if name else ""


def apply(cat: xr.Dataset, calibration, *, overwrite: bool = False) -> xr.Dataset:
    """`cat` with `<label>_cal` and `<label>_cal_quantiles` added for every calibrated label (lazy).

    Columns of those names already in `cat` (an earlier calibration's) are a ConfigError naming them unless
    `overwrite`; then they are replaced by this calibration's, computed from the uncalibrated labels, and the
    earlier calibrations' entries in the attr `calibrations` lose the labels replaced (an entry left without
    labels is dropped), so the attrs always describe the columns present."""
    cal = load_calibration(calibration)
    labels = label_names(cat)
    if cal.teff_label not in cat:
        raise GridError(f"calibration {cal.name!r} needs the catalog column {cal.teff_label!r}")
    missing = [k for k in cal.coefficients if k not in labels]
    if missing:
        raise GridError(f"calibration {cal.name!r} corrects label(s) the catalog lacks: {', '.join(missing)}; catalog labels: {', '.join(labels)}")
    clash = [name for name in calibrated_columns(cal) if name in cat.variables]
    if clash and not overwrite:
        where = f"catalog {cat.encoding['source']}" if cat.encoding.get("source") else "the catalog"
        raise ConfigError(f"{where} already has {', '.join(clash)}{_owner(cat.get(clash[0]))}; pass overwrite=True (--overwrite) "
                          f"to replace them with calibration {cal.name!r}")
    teff = cat[cal.teff_label]
    new = {}
    for label, ab in cal.coefficients.items():
        a, b = float(ab["a"]), float(ab["b"])
        offset = a * teff + b
        attrs = dict(cat[label].attrs)
        rec = {"calibration": cal.name, "calibration_equation": f"{label}_cal = {label} - (a * {cal.teff_label} + b)",
               "calibration_a": a, "calibration_b": b}
        new[f"{label}_cal"] = (cat[label] - offset).astype(cat[label].dtype).assign_attrs(
            {**attrs, "long_name": f"{attrs.get('long_name', label)}, bias-corrected ({cal.name})", **rec})
        qname = label + QUANTILE_SUFFIX
        qattrs = dict(cat[qname].attrs)
        new[f"{label}_cal{QUANTILE_SUFFIX}"] = (cat[qname] - offset).astype(cat[qname].dtype).assign_attrs(
            {**qattrs, "long_name": f"{qattrs.get('long_name', qname)}, bias-corrected ({cal.name})", **rec})
    out = cat.assign(new)
    out.attrs["calibrations"] = json.dumps(_earlier(cat, cal.coefficients) + [cal.to_dict()])
    return out


def _earlier(cat: xr.Dataset, replaced) -> list[dict]:
    """The attr `calibrations` of `cat` without the labels in `replaced` (entries left empty dropped)."""
    try:
        done = json.loads(cat.attrs.get("calibrations", "[]"))
    except (TypeError, ValueError):
        raise GridError(f"the catalog's attr 'calibrations' is not JSON: {str(cat.attrs.get('calibrations'))[:80]!r}") from None
    kept = []
    for entry in done if isinstance(done, list) else []:
        if not isinstance(entry, dict):
            kept.append(entry)
            continue
        coefficients = {k: v for k, v in dict(entry.get("coefficients", {})).items() if k not in replaced}
        if coefficients:
            kept.append({**entry, "coefficients": coefficients})
    return kept


def write_in_place(path, calibrated: xr.Dataset, new_vars, *, overwrite: bool = False) -> None:
    """Write the calibrated columns `new_vars` of `calibrated` into the Zarr catalog at `path`, and its attr
    `calibrations`. Existing columns of the same name are a ConfigError naming them unless `overwrite`.

    The values are computed before the store is touched; a failure while writing removes what was half
    written (the catalog keeps its other columns, and its attrs describe the columns it has at every step)."""
    import zarr

    from gridkit.store import consolidate, unconsolidate

    new_vars = list(new_vars)
    unconsolidate(path)  # the catalog changes: no reader may see its old metadata
    group = zarr.open_group(str(path), mode="r+")
    clash = [v for v in new_vars if v in group]
    if clash and not overwrite:
        raise ConfigError(f"catalog {path} already has {', '.join(clash)}; pass overwrite=True (--overwrite) to replace them")
    part = calibrated[new_vars].drop_vars([c for c in calibrated[new_vars].coords if c not in ("star", "quantile")])
    part = part.drop_vars(["star", "quantile"], errors="ignore").compute()  # read everything before deleting anything
    for var in part.variables.values():
        var.encoding = {}
    final = calibrated.attrs["calibrations"]
    if clash:  # first the attrs stop naming the replaced columns (the earlier calibrations as `apply` left them), then they go
        group.attrs["calibrations"] = json.dumps(json.loads(final)[:-1])
        for name in clash:
            del group[name]
    try:
        from gridkit.store import compressor  # the store format: checksummed chunks, every chunk written

        part.to_zarr(str(path), mode="a", consolidated=False, write_empty_chunks=True,
                     encoding={k: {"compressors": [compressor()]} for k in part.data_vars})
    except BaseException:
        group = zarr.open_group(str(path), mode="r+")
        for name in new_vars:
            if name in group:
                del group[name]
        raise
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["calibrations"] = final
    consolidate(path)


def calibrate_catalog(path, calibration, out=None, *, overwrite: bool = False) -> list[str]:
    """Apply a calibration (name, JSON path or Calibration) to the Zarr catalog at `path`: in place when `out` is
    None, else write the calibrated catalog to `out` (a .zarr store, or an export format by suffix). Returns the
    columns written.

    Everything is checked before anything is written: `out` may not be, contain or lie inside the catalog or the
    calibration file (StoreError), an existing `out` and columns an earlier calibration wrote are replaced only
    with `overwrite` (see `apply`)."""
    from gridkit.errors import StoreError
    from gridkit.files import check_output

    from . import open as open_catalog
    from .export import export, format_for

    source = None if isinstance(calibration, Calibration) else calibration_file(calibration)
    if out is not None:
        check_output(out, [path, source])
        if not str(out).endswith(".zarr"):
            format_for(out)
        if Path(out).exists() and not overwrite:
            raise StoreError(f"--out {out} exists; pass overwrite=True (--overwrite) to replace it")
    cal = load_calibration(calibration)
    calibrated = apply(open_catalog(path), cal, overwrite=overwrite)
    columns = calibrated_columns(cal)
    if out is None:
        write_in_place(path, calibrated, columns, overwrite=overwrite)
    elif str(out).endswith(".zarr"):
        from gridkit.store import write_dataset

        n = calibrated.sizes["star"]
        write_dataset(calibrated.drop_indexes("star_id").reset_coords("star_id"), out, dim="star", region_size=max(1, min(n, 65536)),
                      overwrite=overwrite, progress=False, inputs=[path])
    else:
        export(calibrated, out, overwrite=overwrite)
    return columns
