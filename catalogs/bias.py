"""Bias calibration of a catalog against reference stars (Ksoll et al. 2026, Appendix B, Eq. B.1).

The cINN's estimates of real stars carry systematic offsets that grow with temperature (synthetic-grid
physics, normalisation). Eq. B.1 removes a linear trend in Teff from each label:

    X_cal = X - (a * Teff + b)

where a and b are fitted per label by least squares of the offsets Delta X = X_catalog - X_reference
against the catalog's own Teff (the one known for every star the calibration is later applied to).

`fit_bias` is that least squares (with the standard errors of a and b). `fit_bias_calibration` matches a
catalog to a reference table (e.g. the Gaia FGK benchmark stars,
`../shared/data/gaia-benchmark-stars/gbs_v3_lite.fits`) by star id, fits a, b per label and returns the
named calibration; `write_calibration` stores it in catalogs.calibrate's format (Calibration,
save_calibration), which `gridkit catalog calibrate` / `catalogs.calibrate.apply` read and apply.
CLI: `gridkit evaluate bias CATALOG REFERENCE --out cal.json`.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from gridkit.errors import ConfigError, GridError

from .calibrate import Calibration, check_calibration_name, save_calibration

#: Columns of the Gaia FGK benchmark star table (Soubiran et al. 2024) holding our labels.
GBS_COLUMNS: dict[str, str] = {"teff": "teff", "logg": "logg", "feh": "fe_h"}
#: Identifier columns of the GBS table tried, in order, when matching a catalog's star_id.
GBS_ID_COLUMNS: tuple[str, ...] = ("hip", "hd", "source_id_gaiadr3", "tmass_id")


def fit_bias(catalog_values, reference_values, teff) -> dict:
    """Least squares of Eq. B.1, catalog - reference ~= a * teff + b, over the stars where all three are finite.

    Returns {a, b, a_err, b_err, n, rms_before, rms_after}: rms of the offsets before and after the correction,
    and the standard errors of a and b from the scatter of the residuals (ordinary least squares,
    s^2 = sum(resid^2) / (n - 2); NaN from 2 stars, which leave no scatter to measure)."""
    x = np.asarray(catalog_values, dtype=float)
    r = np.asarray(reference_values, dtype=float)
    t = np.asarray(teff, dtype=float)
    if not (x.shape == r.shape == t.shape) or x.ndim != 1:
        raise GridError(f"catalog_values, reference_values and teff must be 1-D of equal length, got shapes {x.shape}, {r.shape}, {t.shape}")
    ok = np.isfinite(x) & np.isfinite(r) & np.isfinite(t)
    n = int(ok.sum())
    if n < 2 or np.ptp(t[ok]) == 0:
        raise GridError(f"fit_bias needs at least 2 finite stars with different teff, got {n}")
    t, d = t[ok], x[ok] - r[ok]
    design = np.stack([t, np.ones(n)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, d, rcond=None)
    after = d - (a * t + b)
    s2 = float(np.sum(after**2)) / (n - 2) if n > 2 else np.nan
    sxx = float(np.sum((t - t.mean()) ** 2))
    return {"a": float(a), "b": float(b), "n": n, "rms_before": float(np.sqrt(np.mean(d**2))), "rms_after": float(np.sqrt(np.mean(after**2))),
            "a_err": float(np.sqrt(s2 / sxx)), "b_err": float(np.sqrt(s2 * (1.0 / n + t.mean() ** 2 / sxx)))}


def fit_linear_offset(teff, delta) -> dict:
    """`fit_bias` of offsets `delta` = catalog - reference (n,) against `teff` (n,) for one label, refusing
    (ConfigError) what leaves a or b or their uncertainties undetermined: fewer than 3 stars with finite Teff
    and offset, or a single Teff. Non-finite pairs are dropped. Returns fit_bias's dict."""
    t = np.asarray(teff, dtype=float)
    d = np.asarray(delta, dtype=float)
    if t.shape != d.shape or t.ndim != 1:
        raise ConfigError(f"teff and delta must be 1-D of equal length, got shapes {t.shape} and {d.shape}")
    ok = np.isfinite(t) & np.isfinite(d)
    n = int(ok.sum())
    if n < 3:
        raise ConfigError(f"need at least 3 stars with finite Teff and offset to fit a and b with uncertainties, got {n}")
    if np.ptp(t[ok]) == 0:
        raise ConfigError(f"all {n} stars have Teff = {t[ok][0]}; a slope in Teff cannot be fitted")
    return fit_bias(d, np.zeros_like(d), t)


def _norm_id(value) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value).strip().upper()
    return re.sub(r"[\s_]+", "", text)


def _columns(obj) -> dict[str, np.ndarray]:
    """1-D columns of a catalog/reference: an xarray Dataset (1-D variables), an astropy Table, a pandas
    DataFrame, a mapping, or a path to any of these (Zarr, FITS, ECSV, CSV, Parquet)."""
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if not path.exists():
            raise GridError(f"no table at {path}")
        if path.is_dir() or path.suffix == ".zarr":
            import xarray as xr

            obj = xr.open_zarr(path, consolidated=False)
        else:
            import warnings

            from astropy.table import Table

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = Table.read(path)
    if hasattr(obj, "data_vars"):  # xarray
        return {str(k): np.asarray(v.values) for k, v in {**obj.coords, **obj.data_vars}.items() if v.ndim == 1}
    if hasattr(obj, "colnames"):  # astropy
        return {name: np.asarray(obj[name]) for name in obj.colnames if obj[name].ndim == 1}
    if hasattr(obj, "columns") and hasattr(obj, "to_numpy"):  # pandas
        return {str(c): obj[c].to_numpy() for c in obj.columns}
    if isinstance(obj, Mapping):
        return {str(k): np.asarray(v) for k, v in obj.items()}
    raise ConfigError(f"cannot read columns from an object of type {type(obj).__name__}")


def match_catalog(catalog_ids, reference: Mapping[str, np.ndarray], id_columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices (i_catalog, i_reference) of stars whose ids agree, trying each reference id column in turn
    and keeping the one with most matches (ids compared upper-case without spaces: 'HIP 1234' = 'hip1234').
    Integer-like ids also match with a prefix stripped ('HIP1234' = 1234)."""
    cat = [_norm_id(v) for v in catalog_ids]
    best = (np.zeros(0, int), np.zeros(0, int), "")
    for col in id_columns:
        if col not in reference:
            continue
        ref = [_norm_id(v) for v in reference[col]]
        index = {}
        for j, r in enumerate(ref):
            if r and r not in ("0", "--", "NAN", "NONE"):
                index.setdefault(r, j)
                digits = re.sub(r"^[A-Z]+", "", r)
                if digits != r and digits:
                    index.setdefault(digits, j)
        pairs = [(i, index[c]) for i, c in enumerate(cat) if c in index]
        if len(pairs) > len(best[0]):
            arr = np.asarray(pairs, dtype=int)
            best = (arr[:, 0], arr[:, 1], col)
    return best


def fit_bias_calibration(
    catalog,
    reference,
    *,
    name: str,
    labels: Sequence[str] | None = None,
    reference_columns: Mapping[str, str] | None = None,
    catalog_id: str = "star_id",
    reference_ids: Sequence[str] | None = None,
    teff_label: str = "teff",
    reference_name: str | None = None,
) -> dict:
    """Fit Eq. B.1 (X_cal = X - (a Teff + b)) per label of `catalog` against `reference`.

    catalog: the inferred catalog (per-star MAP variables named after the labels, a `star_id` column), as
        a Dataset, Table, DataFrame, mapping or path. reference: literature values, same kinds; default
        column names are the Gaia FGK benchmark table's (teff, logg, fe_h; ids hip, hd, Gaia DR3 ...).
    labels: labels to calibrate (default: every label present in both, after `reference_columns`).
    reference_columns: label -> reference column (default GBS_COLUMNS, identity for other labels).
    Teff in Eq. B.1 is the catalog's Teff (`teff_label`), so the calibration can be applied to any star.

    Returns the calibration in catalogs/calibrate.py's format, {name, teff_label, description, reference,
    coefficients: {label: {a, b}}}, plus `fit` ({label: {a, b, a_err, b_err, n, rms_before, rms_after}}),
    `n` (matched stars), `matched_on` and `created`; `write_calibration` stores it.
    """
    check_calibration_name(name)  # before the work: a name that cannot be stored
    cat = _columns(catalog)
    ref = _columns(reference)
    refcols = dict(GBS_COLUMNS)
    refcols.update(reference_columns or {})
    if catalog_id not in cat:
        raise ConfigError(f"catalog has no id column {catalog_id!r}; columns: {', '.join(sorted(cat)[:20])}")
    if teff_label not in cat:
        raise ConfigError(f"catalog has no Teff column {teff_label!r} needed by Eq. B.1")
    ids = list(reference_ids) if reference_ids else [c for c in (*GBS_ID_COLUMNS, "star_id", "id", "name") if c in ref]
    i_cat, i_ref, id_col = match_catalog(cat[catalog_id], ref, ids)
    if len(i_cat) < 3:
        raise ConfigError(
            f"only {len(i_cat)} catalog star(s) match the reference by {catalog_id!r} against {ids}; need at least 3"
        )
    if labels is None:
        labels = [lab for lab in cat if refcols.get(lab, lab) in ref and lab != catalog_id and np.issubdtype(np.asarray(cat[lab]).dtype, np.number)]
    out: dict[str, dict] = {}
    teff = np.asarray(cat[teff_label], dtype=float)[i_cat]
    for lab in labels:
        col = refcols.get(lab, lab)
        if lab not in cat:
            raise ConfigError(f"label {lab!r} is not a column of the catalog")
        if col not in ref:
            raise ConfigError(f"reference has no column {col!r} for label {lab!r}; pass reference_columns={{{lab!r}: ...}}")
        delta = np.asarray(cat[lab], dtype=float)[i_cat] - _masked_float(ref[col])[i_ref]
        out[lab] = fit_linear_offset(teff, delta)
    return {
        "name": name,
        "teff_label": teff_label,
        "description": f"Eq. B.1 (Ksoll et al. 2026) bias calibration X_cal = X - (a * {teff_label} + b), least squares over {len(i_cat)} matched stars",
        "reference": reference_name or (str(reference) if isinstance(reference, (str, Path)) else "reference table"),
        "coefficients": {lab: {"a": fit["a"], "b": fit["b"]} for lab, fit in out.items()},
        "fit": out,
        "matched_on": f"{catalog_id} = reference.{id_col}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "n": int(len(i_cat)),
    }


def _masked_float(col) -> np.ndarray:
    arr = np.ma.asarray(col)
    return np.ma.filled(arr.astype(float), np.nan)


def write_calibration(calibration: Mapping, path, *, overwrite: bool = False) -> Path:
    """Store a calibration from `fit_bias_calibration` as JSON where `gridkit catalog calibrate` finds it.

    path: a `.json` file, or a directory that gets `<name>.json` (put it on $GRIDKIT_CALIBRATIONS to use
    the calibration by name). The format is catalogs/calibrate.py's: {name, teff_label, description,
    reference, coefficients: {label: {a, b}}} plus the fit's statistics (`fit`, `n`, `matched_on`,
    `created`), which that module keeps as extras. An existing file is refused unless `overwrite`.
    """
    path = Path(path)
    if path.suffix != ".json":
        path = path / f"{calibration['name']}.json"
    return save_calibration(Calibration.from_dict(json.loads(json.dumps(dict(calibration)))), path, overwrite=overwrite)
