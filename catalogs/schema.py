"""The catalog data model and its flat (table) view.

A catalog is an `xarray.Dataset` in Zarr with one row per star:

- dimensions `star` (index 0..n-1) and `quantile` = (0.025, 0.16, 0.5, 0.84, 0.975);
- `star_id(star)` (string, a coordinate with an index: `cat.sel(star_id=[...])`), `snr(star)` (input S/N per A);
- per label (`teff`, `logg`, ...): the MAP estimate `<label>(star)` and `<label>_quantiles(star, quantile)`;
- `f_reject(star)`, `flag_extrapolated(star)`; passthrough columns of the survey (`ra`, `dec`, `true_<label>`, ...);
- CF-style `units` and `long_name` on every variable; provenance in the dataset attrs.

The flat view used by queries and exports turns every quantile into its own column named
`<label>_p<percent>` with the percent written with two integer digits and `_` for the decimal point:

    0.025 -> teff_p02_5   0.16 -> teff_p16   0.5 -> teff_p50   0.84 -> teff_p84   0.975 -> teff_p97_5
"""
from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import xarray as xr

from gridkit.errors import GridError
from gridkit.schema import as_text

STAR, QUANTILE = "star", "quantile"
QUANTILES: tuple[float, ...] = (0.025, 0.16, 0.5, 0.84, 0.975)
QUANTILE_SUFFIX = "_quantiles"

#: Variables every catalog has besides the label estimates.
BASE_VARIABLES = ("star_id", "snr", "f_reject", "flag_extrapolated")

STANDARD_ATTRS = {
    "star_id": {"long_name": "star identifier (from the survey)", "units": "1"},
    "snr": {"long_name": "signal-to-noise ratio per Angstrom of the input spectrum", "units": "1"},
    "f_reject": {"long_name": "fraction of posterior draws rejected (outside the training prior)", "units": "1"},
    "flag_extrapolated": {"long_name": "MAP estimate outside the training grid's label range", "units": "1"},
    "ra": {"long_name": "right ascension", "units": "deg"},
    "dec": {"long_name": "declination", "units": "deg"},
}


def quantile_suffix(q: float) -> str:
    """`p16` for 0.16, `p02_5` for 0.025, `p97_5` for 0.975 (percent, two integer digits, `_` for the point)."""
    pct = round(float(q) * 100, 6)
    if not 0 <= pct <= 100:
        raise GridError(f"quantile must lie in [0, 1], got {q}")
    whole = int(pct)
    frac = f"{pct - whole:.6f}"[2:].rstrip("0")
    return f"p{whole:02d}" + (f"_{frac}" if frac else "")


_FLAT_QUANTILE = re.compile(r"^(?P<label>.+)_p(?P<whole>\d{1,3})(?:[._](?P<frac>\d+))?$")


def label_names(cat: xr.Dataset) -> list[str]:
    """Labels estimated in the catalog: every `<label>` with a `<label>_quantiles(star, quantile)` partner."""
    out = []
    for name, var in cat.data_vars.items():
        name = str(name)
        if name.endswith(QUANTILE_SUFFIX) and var.dims == (STAR, QUANTILE):
            label = name[: -len(QUANTILE_SUFFIX)]
            if label in cat.variables:
                out.append(label)
    return sorted(out, key=_label_order)


def _label_order(name: str):
    from gridkit.schema import LABEL_NAMES

    return (LABEL_NAMES.index(name), "") if name in LABEL_NAMES else (len(LABEL_NAMES), name)


def flat_columns(cat: xr.Dataset) -> list[str]:
    """Every column of the flat view, in catalog order: star_id first, quantiles expanded after their MAP."""
    quantiles = [float(q) for q in cat[QUANTILE].values] if QUANTILE in cat.coords else []
    labels = label_names(cat)
    rows = {str(k): v for k, v in cat.variables.items() if STAR in v.dims and k not in (STAR, QUANTILE)}
    flat = {k for k, v in rows.items() if v.dims == (STAR,)}
    quant = {k[: -len(QUANTILE_SUFFIX)] for k, v in rows.items() if v.dims == (STAR, QUANTILE) and k.endswith(QUANTILE_SUFFIX)}

    def expand(base):
        out = [base] if base in flat else []
        if base in quant:
            out += [f"{base}_{quantile_suffix(q)}" for q in quantiles]
        return out

    # canonical order: id and input first, then each label (MAP, quantiles, calibrated), quality, the rest
    order = ["star_id", "snr"]
    for label in labels:
        order += [label] + sorted(b for b in flat | quant if b.startswith(label + "_") and b not in labels and b != label)
    order += ["f_reject", "flag_extrapolated"] + sorted(flat | quant)
    cols, seen = [], set()
    for base in order:
        if base in seen or (base not in flat and base not in quant):
            continue
        seen.add(base)
        cols += expand(base)
    return cols


def column(cat: xr.Dataset, name: str) -> xr.DataArray:
    """One column of the flat view as a (lazy) DataArray along `star`, with units/long_name attrs.

    Raises GridError naming the column and listing the available ones."""
    if name in cat.variables and cat[name].dims == (STAR,):
        return cat[name]
    m = _FLAT_QUANTILE.match(name)
    if m:
        base = m["label"] + QUANTILE_SUFFIX
        q = (int(m["whole"]) + (float("0." + m["frac"]) if m["frac"] else 0.0)) / 100
        if base in cat.variables and QUANTILE in cat.coords:
            qs = np.asarray(cat[QUANTILE].values, dtype=float)
            hit = np.flatnonzero(np.isclose(qs, q, rtol=0, atol=1e-9))
            if hit.size:  # canonical `teff_p02_5`; `teff_p2_5` and `teff_p2.5` are accepted as aliases
                da = cat[base].isel({QUANTILE: int(hit[0])}, drop=True)
                attrs = dict(cat[base].attrs)
                attrs["long_name"] = f"{attrs.get('long_name', m['label'])}, {qs[hit[0]] * 100:g}th percentile of the posterior"
                return da.rename(f"{m['label']}_{quantile_suffix(qs[hit[0]])}").assign_attrs(attrs)
    raise GridError(f"unknown column {name!r}; available: {', '.join(flat_columns(cat))}")


def check_catalog(cat: xr.Dataset, where: str = "catalog") -> xr.Dataset:
    """Check that `cat` follows the catalog data model; return it unchanged."""
    if STAR not in cat.dims:
        raise GridError(f"{where} has no 'star' dimension; dims are {sorted(map(str, cat.dims))}")
    missing = [v for v in BASE_VARIABLES if v not in cat.variables]
    if missing:
        raise GridError(f"{where} lacks catalog variable(s): {', '.join(missing)}")
    if not label_names(cat):
        raise GridError(f"{where} has no label estimates (<label> with <label>_quantiles(star, quantile))")
    return cat


def select_columns(cat: xr.Dataset, columns: Iterable[str] | None) -> dict[str, xr.DataArray]:
    """Flat columns by name (all when None), validated before anything is loaded."""
    names = flat_columns(cat) if columns is None else list(columns)
    out = {}
    for name in names:
        out[name] = column(cat, name)
    if "star_id" not in out and columns is not None and "star_id" in cat.variables:
        out = {"star_id": cat["star_id"], **out}  # a row without its star is useless
    return out


def as_str(values) -> np.ndarray:
    """Strings as a fixed-width numpy unicode array (what astropy tables and xarray indexes take)."""
    return as_text(values).astype(str)
