"""A synthetic catalog with the data model of `gridkit infer`'s output (values random, structure exact)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from catalogs.schema import QUANTILES
from gridkit.schema import label_attrs

LABELS = ("teff", "logg", "feh")


def make_catalog(n=200, seed=0, prefix="S", nan_fraction=0.05) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    centre = {"teff": rng.uniform(3500, 7000, n), "logg": rng.uniform(0.5, 5, n), "feh": rng.uniform(-3, 0.5, n)}
    width = {"teff": 100.0, "logg": 0.2, "feh": 0.1}
    z = np.array([-1.96, -1.0, 0.0, 1.0, 1.96])
    data = {}
    for label in LABELS:
        m = centre[label].copy()
        m[rng.random(n) < nan_fraction] = np.nan  # queries must treat NaN as "does not satisfy"
        data[label] = (("star",), m.astype("f4"), label_attrs(label))
        q = m[:, None] + width[label] * rng.uniform(0.5, 1.5, (n, 1)) * z[None, :]
        data[f"{label}_quantiles"] = (("star", "quantile"), q.astype("f4"), {**label_attrs(label), "long_name": f"posterior quantiles of {label}"})
    data["star_id"] = (("star",), np.array([f"{prefix}{i:05d}" for i in range(n)], dtype=object), {"long_name": "star identifier", "units": "1"})
    data["snr"] = (("star",), rng.uniform(20, 300, n).astype("f4"), {"long_name": "signal-to-noise ratio", "units": "1"})
    data["f_reject"] = (("star",), rng.uniform(0, 1, n).astype("f4"), {"long_name": "fraction rejected", "units": "1"})
    data["flag_extrapolated"] = (("star",), rng.random(n) < 0.2, {"long_name": "extrapolated", "units": "1"})
    data["ra"] = (("star",), rng.uniform(0, 360, n), {"long_name": "right ascension", "units": "deg"})
    data["dec"] = (("star",), rng.uniform(-90, 30, n), {"long_name": "declination", "units": "deg"})
    return xr.Dataset(data, coords={"star": np.arange(n), "quantile": ("quantile", np.array(QUANTILES), {"long_name": "posterior quantile", "units": "1"})},
                      attrs={"model_id": f"model-{seed}", "gridkit_version": "0.1.0", "date_created": "2026-11-22T00:00:00+00:00", "command": "test"})


def write_catalog(ds: xr.Dataset, path):
    ds.to_zarr(path, mode="w-", consolidated=False, zarr_format=3)
    return path


