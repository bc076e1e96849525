"""Exports: every format round-trips values, units and flattened quantile columns through `catalogs.read_table`
(as other tools open them: test_export_tools.py)."""
from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest

import catalogs
from gridkit.errors import ConfigError, StoreError

from catalog_fakes import make_catalog


@pytest.mark.parametrize("name", ["out.fits", "out.fits.gz", "out.parquet", "out.vot", "out.csv", "out.ecsv"])
def test_round_trip_keeps_values_units_and_quantile_columns(catalog_path, tmp_path, name):
    cat = catalogs.open(catalog_path)
    path = catalogs.export(cat, tmp_path / name, where="teff > 4000")
    table = catalogs.read_table(path)
    raw = make_catalog()
    keep = raw.teff.values > 4000
    assert list(table["star_id"]) == list(raw.star_id.values[keep])
    for q, suffix in zip(catalogs.QUANTILES, ["p02_5", "p16", "p50", "p84", "p97_5"]):
        assert catalogs.quantile_suffix(q) == suffix
        np.testing.assert_allclose(np.asarray(table[f"teff_{suffix}"], dtype=float), raw.teff_quantiles.values[keep, list(catalogs.QUANTILES).index(q)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(table["feh"], dtype=float), raw.feh.values[keep], rtol=1e-6)
    assert table["teff"].unit == u.K and table["teff_p84"].unit == u.K
    assert table["ra"].unit == u.deg
    assert u.Unit(table["logg"].unit) == u.dex
    assert np.asarray(table["flag_extrapolated"]).astype(bool).tolist() == raw.flag_extrapolated.values[keep].tolist()


def test_columns_subset_and_refusals(catalog_path, tmp_path):
    cat = catalogs.open(catalog_path)
    path = catalogs.export(cat, tmp_path / "few.parquet", columns=["teff", "teff_p16", "snr"])
    table = catalogs.read_table(path)
    assert table.colnames == ["star_id", "teff", "teff_p16", "snr"]
    with pytest.raises(StoreError, match="exists"):
        catalogs.export(cat, path)
    with pytest.raises(ConfigError, match="export format"):
        catalogs.export(cat, tmp_path / "out.xlsx")
    with pytest.raises(catalogs.GridError if hasattr(catalogs, "GridError") else Exception, match="unknown column 'teff_p15'"):
        catalogs.export(cat, tmp_path / "bad.fits", columns=["teff_p15"])
    assert not (tmp_path / "bad.fits").exists()


def test_provenance_reaches_the_file(catalog_path, tmp_path):
    table = catalogs.read_table(catalogs.export(catalogs.open(catalog_path), tmp_path / "p.csv"))
    assert table.meta["model_id"] == "model-0"
