"""Exports as an astronomer's tools open them: astropy `Table.read` (what TOPCAT users script), `astropy.io.votable`,
`astropy.io.fits`, pandas (`read_csv`, `read_parquet`) and pyarrow. Every file opens without a warning, carries
units, descriptions, UCDs and the catalog's provenance, and its values equal the catalog's exactly."""
from __future__ import annotations

import json
import warnings

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.io import fits, votable
from astropy.io.votable.ucd import check_ucd
from astropy.table import Table
from catalog_fakes import make_catalog, write_catalog

import catalogs
from catalogs.export import csv_metadata_path, to_pandas
from catalogs.schema import LABEL_UCDS, ucd
from gridkit.schema import LABEL_NAMES

PROVENANCE = {"model_hash": "sha256:" + "ab" * 32, "interval_calibration": json.dumps({"level": 0.68, "scale": {"teff": [1.1]}}),
              "samples": 500, "seed": 7, "label_names": ["teff", "logg", "feh"],
              "degradation": [{"op": "to_resolution", "resolving_power": 20000}, {"op": "add_noise", "snr": 50.0}]}
FORMATS = ["out.fits", "out.fits.gz", "out.parquet", "out.vot", "out.csv", "out.ecsv"]


@pytest.fixture
def raw():
    cat = make_catalog()
    cat.attrs.update(PROVENANCE)
    return cat


@pytest.fixture
def cat(raw, tmp_path):
    return catalogs.open(write_catalog(raw, tmp_path / "catalog.zarr"))


def expected(raw, name):
    """A flat column computed here from the raw arrays: MAP, quantile by position, e_ = (p84 - p16) / 2."""
    qpos = {"p02_5": 0, "p16": 1, "p50": 2, "p84": 3, "p97_5": 4}
    if name.startswith("e_"):
        q = raw[f"{name[2:]}_quantiles"].values
        return (q[:, 3] - q[:, 1]) / np.float32(2)
    for suffix, i in qpos.items():
        if name.endswith("_" + suffix):
            return raw[f"{name[: -len(suffix) - 1]}_quantiles"].values[:, i]
    return raw[name].values


def read_quietly(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (astropy's UnitsWarning, VOTable W50, ...) fails the test
        return Table.read(path, **kw)


@pytest.mark.parametrize("name", FORMATS)
def test_astropy_reads_every_format_without_a_warning_and_with_the_catalogs_values(cat, raw, tmp_path, name):
    path = catalogs.export(cat, tmp_path / name)
    table = read_quietly(path)
    assert table.colnames == catalogs.columns(cat)
    ids = [s.decode() if isinstance(s, bytes) else str(s) for s in table["star_id"]]
    assert ids == list(raw.star_id.values)
    for col in catalogs.columns(cat):
        if col == "star_id":
            continue
        want, got = expected(raw, col), np.asarray(table[col])
        if want.dtype == bool and got.dtype.kind == "U":  # plain CSV: astropy leaves True/False as text, pandas does not
            got = got == "True"
        np.testing.assert_array_equal(got.astype(want.dtype), want, err_msg=f"{name}: {col}")
    if name != "out.csv":  # plain CSV: units in the sidecar only
        assert table["teff"].unit == u.K and table["e_teff"].unit == u.K and table["ra"].unit == u.deg
    if name.startswith("out.fits"):  # FITS has no dex: no TUNITn, the unit is named in TCOMMn and astropy's column meta
        assert table["logg"].unit is None and table["logg"].meta["unit"] == "dex"
    elif name != "out.csv":
        assert table["logg"].unit == u.dex and table["feh_p16"].unit == u.dex


@pytest.mark.parametrize("name", FORMATS)
def test_read_table_gives_units_ucds_descriptions_and_provenance_back(cat, raw, tmp_path, name):
    table = catalogs.read_table(catalogs.export(cat, tmp_path / name))
    assert table["logg"].unit == u.dex and table["e_feh"].unit == u.dex and table["teff_p84"].unit == u.K
    assert table["teff"].meta["ucd"] == "phys.temperature.effective"
    assert table["e_logg"].meta["ucd"] == "stat.error;phys.gravity"
    assert "effective temperature" in table["teff"].description
    assert table.meta["model_id"] == "model-0"
    assert table.meta["model_hash"] == PROVENANCE["model_hash"]
    assert json.loads(table.meta["interval_calibration"]) == json.loads(PROVENANCE["interval_calibration"])
    assert json.loads(table.meta["degradation"]) == PROVENANCE["degradation"]
    assert int(table.meta["samples"]) == 500
    assert list(map(str, table["star_id"])) == list(raw.star_id.values)


def test_fits_header_has_tcomm_and_tucd_for_every_column(cat, tmp_path):
    path = catalogs.export(cat, tmp_path / "out.fits")
    header = fits.getheader(path, 1)
    names = catalogs.columns(cat)
    assert header["TFIELDS"] == len(names)
    for i, name in enumerate(names, start=1):
        assert header[f"TTYPE{i}"] == name
        assert header[f"TUCD{i}"] == ucd(name), name
        assert header[f"TCOMM{i}"].startswith(catalogs.column(cat, name).attrs["long_name"][:40]), name
    i = names.index("logg") + 1
    assert f"TUNIT{i}" not in header and header[f"TCOMM{i}"].endswith("[dex]")
    assert header[f"TUNIT{names.index('teff') + 1}"] == "K"
    assert header["MODEL_ID"] == "model-0" and header["model_hash"] == PROVENANCE["model_hash"]


def test_votable_has_ucds_cds_units_and_the_provenance_as_params(cat, raw, tmp_path):
    path = catalogs.export(cat, tmp_path / "out.vot")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        element = votable.parse(str(path), verify="exception").get_first_table()
    fields = {f.name: f for f in element.fields}
    assert list(fields) == catalogs.columns(cat)
    for name, field in fields.items():
        assert field.ucd == ucd(name), name
        assert check_ucd(field.ucd, check_controlled_vocabulary=True), field.ucd
    assert fields["teff"].unit == u.K and fields["logg"].unit == u.dex
    assert 'unit="[-]"' in path.read_text(errors="replace")  # dex in the CDS syntax of VOTable 1.3
    params = {p.name: p.value for p in element.params}
    for key, value in {**raw.attrs}.items():
        assert key in params, key
        got = params[key]
        if isinstance(value, (list, dict)):
            assert json.loads(got) == value, key
        else:
            assert got == value, key


def test_csv_is_plain_csv_that_pandas_reads_and_the_sidecar_has_the_units(cat, raw, tmp_path):
    path = catalogs.export(cat, tmp_path / "out.csv")
    first = path.read_text().splitlines()[0]
    assert first == ",".join(catalogs.columns(cat))  # no '#' header: line 1 is the column names
    df = pd.read_csv(path)
    assert list(df.columns) == catalogs.columns(cat)
    assert df["star_id"].tolist() == list(raw.star_id.values)
    assert df["flag_extrapolated"].dtype == bool
    for col in catalogs.columns(cat)[1:]:
        want = expected(raw, col)
        np.testing.assert_array_equal(df[col].to_numpy().astype(want.dtype), want, err_msg=col)
    meta = json.loads(csv_metadata_path(path).read_text())
    cols = {c["name"]: c for c in meta["tableSchema"]["columns"]}
    assert list(cols) == catalogs.columns(cat)
    assert cols["teff"]["schema:unitText"] == "K" and cols["logg"]["schema:unitText"] == "dex"
    assert cols["teff_p16"]["schema:propertyID"] == "phys.temperature.effective;stat.percentile"
    assert meta["dc:provenance"]["model_id"] == "model-0"


def test_parquet_through_pandas_and_pyarrow(cat, raw, tmp_path):
    path = catalogs.export(cat, tmp_path / "out.parquet")
    df = pd.read_parquet(path)
    assert list(df.columns) == catalogs.columns(cat)
    for col in catalogs.columns(cat)[1:]:
        np.testing.assert_array_equal(df[col].to_numpy(), expected(raw, col), err_msg=col)
    schema = pq.read_schema(path)
    meta = {f.name: {k.decode(): v.decode() for k, v in (f.metadata or {}).items()} for f in schema}
    assert meta["teff"]["unit"] == "K" and meta["logg"]["unit"] == "dex" and meta["e_teff"]["unit"] == "K"
    assert meta["feh_p50"]["ucd"] == "phys.abund.Fe;stat.median"
    assert "effective temperature" in meta["teff"]["description"]


def test_symmetric_error_is_half_the_16_84_range_and_queryable(cat, raw):
    q = raw.teff_quantiles.values
    e = (q[:, 3] - q[:, 1]) / np.float32(2)
    np.testing.assert_array_equal(catalogs.column(cat, "e_teff").values, e)
    cols = catalogs.columns(cat)
    assert cols.index("e_teff") == cols.index("teff_p97_5") + 1  # beside the quantiles
    sel = catalogs.query(cat, "e_teff < 100")
    assert list(map(str, sel.star_id.values)) == list(raw.star_id.values[e < 100])


def test_to_pandas_is_one_row_per_star_with_flat_columns(cat, raw):
    df = catalogs.to_pandas(cat)
    assert df is not None and to_pandas is catalogs.to_pandas
    assert df.index.name == "star_id" and df.index.tolist() == list(raw.star_id.values)
    assert list(df.columns) == catalogs.columns(cat)[1:]
    for col in df.columns:
        np.testing.assert_array_equal(df[col].to_numpy(), expected(raw, col), err_msg=col)
    assert df.attrs["units"]["teff"] == "K" and df.attrs["units"]["logg"] == "dex"
    assert df.attrs["ucds"]["e_feh"] == "stat.error;phys.abund.Fe"
    assert df.attrs["provenance"]["model_id"] == "model-0"
    few = catalogs.to_pandas(cat, columns=["teff", "e_teff"])
    assert list(few.columns) == ["teff", "e_teff"] and few.index.name == "star_id"


def test_every_default_label_has_a_valid_ucd_in_each_column_role():
    assert set(LABEL_UCDS) == set(LABEL_NAMES)
    for label in LABEL_NAMES:
        for name in (label, f"{label}_p16", f"{label}_p50", f"e_{label}", f"{label}_cal", f"true_{label}"):
            assert ucd(name) and check_ucd(ucd(name), check_controlled_vocabulary=True), (name, ucd(name))
    assert ucd("some_passthrough") is None
