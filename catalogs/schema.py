"""The catalog data model and its flat (table) view.

A catalog is an `xarray.Dataset` in Zarr with one row per star:

- dimensions `star` (index 0..n-1) and `quantile` = (0.025, 0.16, 0.5, 0.84, 0.975);
- `star_id(star)` (string, a coordinate with a lazy index: `cat.sel(star_id=[...])`, see `catalogs.index`),
  `snr(star)` (input S/N per A);
- per label (`teff`, `logg`, ...): the MAP estimate `<label>(star)` and `<label>_quantiles(star, quantile)`;
- `f_reject(star)`, `flag_extrapolated(star)`; quality flags `flag_snr_outside(star)`, `<label>_unconstrained(star)`
  (bool; not labels: a label needs a `<label>_quantiles` partner); optionally kept draws `samples(star, draw, label)`
  with `samples_in_bounds(star, draw)` (not flat columns); passthrough columns of the survey (`ra`, `dec`, `true_<label>`, ...);
- CF-style `units` and `long_name` on every variable; provenance in the dataset attrs.

The flat view used by queries and exports turns every quantile into its own column named
`<label>_p<percent>` with the percent written with two integer digits and `_` for the decimal point:

    0.025 -> teff_p02_5   0.16 -> teff_p16   0.5 -> teff_p50   0.84 -> teff_p84   0.975 -> teff_p97_5

and adds, after the quantiles, the symmetric error `e_<label>` = (p84 - p16) / 2 (computed lazily, never
stored). `ucd(name)` gives each flat column's IVOA UCD1+ (exports write it to FITS TUCDn and VOTable FIELDs).
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

#: flag_extrapolated: more than this fraction of a star's posterior draws outside the training bounds (f_reject).
EXTRAPOLATED_FRACTION = 0.5

#: Variables every catalog has besides the label estimates.
BASE_VARIABLES = ("star_id", "snr", "f_reject", "flag_extrapolated")

STANDARD_ATTRS = {
    "star_id": {"long_name": "star identifier (from the survey)", "units": "1"},
    "snr": {"long_name": "signal-to-noise ratio per Angstrom of the input spectrum", "units": "1"},
    "f_reject": {"long_name": "fraction of posterior draws rejected (outside the training prior)", "units": "1"},
    "flag_extrapolated": {"long_name": "more than half of the posterior draws outside the training label bounds", "units": "1"},
    "ra": {"long_name": "right ascension", "units": "deg"},
    "dec": {"long_name": "declination", "units": "deg"},
}


#: Suffix of a label's quality flag: `teff_unconstrained` (posterior about as wide as the prior, see docs/catalogs.md).
UNCONSTRAINED_SUFFIX = "_unconstrained"

#: Prefix of the symmetric error column of a label: `e_teff` = (teff_p84 - teff_p16) / 2.
ERROR_PREFIX = "e_"

#: IVOA UCD1+ of each label (words checked against the UCD1+ list astropy ships, tests/catalogs/test_export_tools.py).
#: [X/Fe] has no per-element word (`phys.abund.X` is hydrogen): `phys.abund`. Labels not listed have no UCD.
LABEL_UCDS = {
    "teff": "phys.temperature.effective",
    "logg": "phys.gravity",
    "feh": "phys.abund.Fe",
    "vmic": "phys.veloc.microTurb",
    "vbroad": "phys.veloc.rotat",
    **{x: "phys.abund" for x in ("c_fe", "n_fe", "mg_fe", "si_fe", "ca_fe", "ti_fe", "mn_fe", "li_fe")},
}

#: UCDs of the other columns a catalog may have.
COLUMN_UCDS = {
    "star_id": "meta.id;meta.main",
    "snr": "stat.snr",
    "f_reject": "stat.probability",
    "flag_extrapolated": "meta.code.qual",
    "flag_missing_flux": "meta.code.qual",
    "flag_snr_outside": "meta.code.qual",
    "n_imputed": "meta.number",
    "ra": "pos.eq.ra;meta.main",
    "dec": "pos.eq.dec;meta.main",
    "source": "meta.ref",
}


def _label_ucd(base: str) -> str | None:
    if base in LABEL_UCDS:
        return LABEL_UCDS[base]
    if base.endswith("_cal"):  # a calibrated estimate (catalogs.calibrate) is the same quantity
        return _label_ucd(base[: -len("_cal")])
    if base.startswith("true_") and base[len("true_"):] in LABEL_UCDS:  # mock surveys: the grid's own label
        return LABEL_UCDS[base[len("true_"):]] + ";meta.modelled"
    return None


def ucd(name: str) -> str | None:
    """The UCD1+ of a flat column: the label's (`LABEL_UCDS`) for `<label>`, `<label>_cal`; with `;stat.median`
    for `<label>_p50`, `;stat.percentile` for the other quantiles; `stat.error;<label's>` for `e_<label>`;
    `COLUMN_UCDS` for the rest; None when unknown."""
    if name in COLUMN_UCDS:
        return COLUMN_UCDS[name]
    if name.endswith(UNCONSTRAINED_SUFFIX):
        return "meta.code.qual"
    if name.startswith(ERROR_PREFIX) and _label_ucd(name[len(ERROR_PREFIX):]):
        return "stat.error;" + _label_ucd(name[len(ERROR_PREFIX):])
    m = _FLAT_QUANTILE.match(name)
    if m and _label_ucd(m["label"]):
        median = int(m["whole"]) == 50 and not m["frac"]
        return _label_ucd(m["label"]) + (";stat.median" if median else ";stat.percentile")
    return _label_ucd(name)


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
            if _has_error_quantiles(quantiles) and ERROR_PREFIX + base not in rows:
                out.append(ERROR_PREFIX + base)
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


def _has_error_quantiles(quantiles) -> bool:
    return all(any(abs(q - want) < 1e-9 for q in quantiles) for want in (0.16, 0.84))


def _error_column(cat: xr.Dataset, base: str) -> xr.DataArray | None:
    """`e_<base>` = (p84 - p16) / 2 of `<base>_quantiles`, lazily, in its dtype and units; None if not derivable."""
    from gridkit.schema import label_info

    var = cat.variables.get(base + QUANTILE_SUFFIX)
    if var is None or var.dims != (STAR, QUANTILE) or QUANTILE not in cat.coords:
        return None
    qs = [float(q) for q in cat[QUANTILE].values]
    if not _has_error_quantiles(qs):
        return None
    q = cat[base + QUANTILE_SUFFIX]
    i16, i84 = (int(np.argmin(np.abs(np.asarray(qs) - want))) for want in (0.16, 0.84))
    half = (q.isel({QUANTILE: i84}, drop=True) - q.isel({QUANTILE: i16}, drop=True)) / 2
    what = label_info(base).long_name if base in LABEL_UCDS else base
    attrs = {"units": q.attrs.get("units", "1"), "long_name": f"{what}, symmetric error (p84 - p16) / 2 of the posterior"}
    return half.astype(q.dtype).rename(ERROR_PREFIX + base).assign_attrs(attrs)


def column(cat: xr.Dataset, name: str) -> xr.DataArray:
    """One column of the flat view as a (lazy) DataArray along `star`, with units/long_name attrs.

    Raises GridError naming the column and listing the available ones."""
    if name in cat.variables and cat[name].dims == (STAR,):
        return cat[name]
    if name.startswith(ERROR_PREFIX):
        err = _error_column(cat, name[len(ERROR_PREFIX):])
        if err is not None:
            return err
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


#: rows per Zarr chunk inside a shard of a catalog written in large regions: the unit a lookup decodes per variable
#: (8192 rows: ~1 ms per column; 65536 made reading one star's row of 59 columns cost 0.5 s)
CHUNK_ROWS = 8192
#: rows per shard (one file per variable) of a large catalog, and per region of the writer that fills it
SHARD_ROWS = 262144


def catalog_encoding(template: xr.Dataset, region_size: int, chunk: int = CHUNK_ROWS) -> dict:
    """Zarr encoding of a catalog written in regions of `region_size` stars: each region one shard (one file per
    variable) of chunks of `chunk` stars, so that 25 million stars are a few thousand files. Regions own whole
    shards (one writer per file), so this applies only when `region_size` is a multiple of `chunk` above it;
    otherwise {} (one chunk per region, the writer's default)."""
    region_size, chunk = int(region_size), int(chunk)
    if region_size <= chunk or region_size % chunk:
        return {}
    out = {}
    for name, var in template.variables.items():
        if STAR in var.dims and name != STAR and var.dims[0] == STAR:
            rest = tuple(int(template.sizes[d]) for d in var.dims[1:])
            out[str(name)] = {"chunks": (chunk, *rest), "shards": (region_size, *rest)}
    return out


def block_rows(cat: xr.Dataset, target: int = 1 << 20) -> int:
    """Rows to read at a time when streaming `cat`: `target`, rounded to whole chunks of its first variable."""
    for var in cat.variables.values():
        if var.dims[:1] == (STAR,) and var.chunks:
            first = int(var.chunks[0][0]) if var.chunks[0] else target
            return max(first, target // first * first)
    return target
