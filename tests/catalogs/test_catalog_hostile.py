"""Hostile use of the catalog commands: no run may lose or silently corrupt a catalog.

Calibrating twice either refuses (naming the columns) or replaces values and attrs together; an output that
is, contains or lies inside an input (catalog or calibration file) is refused before anything is written;
odd numbers in queries get a message saying what is wrong with them; a failed export leaves no partial file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import catalogs
from catalogs.calibrate import calibrate_catalog
from catalogs.query import QueryError, mask, tokenize
from gridkit.cli import main
from gridkit.errors import ConfigError, StoreError

from catalog_fakes import make_catalog, write_catalog

CAL1 = {"name": "first", "coefficients": {"feh": {"a": 1e-4, "b": -0.5}, "logg": {"a": 2e-5, "b": 0.1}}}
CAL2 = {"name": "second", "coefficients": {"feh": {"a": -3e-5, "b": 0.25}}}


def snapshot(path):
    """{relative file: bytes} of a store: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def setup(tmp_path):
    cat = write_catalog(make_catalog(60, seed=3), tmp_path / "cat.zarr")
    (tmp_path / "cal1.json").write_text(json.dumps(CAL1))
    (tmp_path / "cal2.json").write_text(json.dumps(CAL2))
    return tmp_path, cat


def expected(label, cal):
    raw = make_catalog(60, seed=3)
    ab = cal["coefficients"][label]
    offset = ab["a"] * raw.teff.values + ab["b"]
    return raw[label].values - offset, raw[f"{label}_quantiles"].values - offset[:, None]


def test_second_calibration_refused_without_overwrite_naming_the_columns(setup, capsys):
    tmp_path, cat = setup
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "cal1.json"), "--in-place"]) == 0
    capsys.readouterr()
    before = snapshot(cat)
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "cal2.json"), "--in-place"]) == 2
    err = capsys.readouterr().err
    assert "feh_cal, feh_cal_quantiles" in err and "'first'" in err and "--overwrite" in err and "Traceback" not in err
    assert snapshot(cat) == before  # nothing written
    # the same refusal when the calibrated catalog goes to a new file
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "cal2.json"), "--out", str(tmp_path / "o.fits")]) == 2
    assert "feh_cal" in capsys.readouterr().err and not (tmp_path / "o.fits").exists()


def test_second_calibration_with_overwrite_replaces_values_and_attrs_together(setup, capsys):
    tmp_path, cat = setup
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "cal1.json"), "--in-place"]) == 0
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "cal2.json"), "--overwrite", "--in-place"]) == 0
    out = catalogs.open(cat)
    # feh: one application of the second calibration to the uncalibrated catalog (not the first's values)
    feh, feh_q = expected("feh", CAL2)
    np.testing.assert_allclose(out.feh_cal.values, feh, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.feh_cal_quantiles.values, feh_q, rtol=1e-6, atol=1e-6)
    assert out.feh_cal.attrs["calibration"] == out.feh_cal_quantiles.attrs["calibration"] == "second"
    assert out.feh_cal.attrs["calibration_b"] == 0.25
    # logg: still the first calibration's, and the attrs say so
    logg, _ = expected("logg", CAL1)
    np.testing.assert_allclose(out.logg_cal.values, logg, rtol=1e-6, atol=1e-6)
    assert out.logg_cal.attrs["calibration"] == "first"
    recorded = json.loads(out.attrs["calibrations"])
    assert [(r["name"], sorted(r["coefficients"])) for r in recorded] == [("first", ["logg"]), ("second", ["feh"])]
    assert "added feh_cal, feh_cal_quantiles" in capsys.readouterr().out


def test_calibration_api_refuses_a_clash_and_replaces_with_overwrite(setup):
    _, cat = setup
    once = catalogs.calibrate(catalogs.open(cat), catalogs.Calibration.from_dict(CAL1))
    with pytest.raises(ConfigError, match="already has feh_cal, feh_cal_quantiles"):
        catalogs.calibrate(once, catalogs.Calibration.from_dict(CAL2))
    twice = catalogs.calibrate(once, catalogs.Calibration.from_dict(CAL2), overwrite=True)
    np.testing.assert_allclose(twice.feh_cal.values, expected("feh", CAL2)[0], rtol=1e-6, atol=1e-6)
    assert [r["name"] for r in json.loads(twice.attrs["calibrations"])] == ["first", "second"]
    # a calibration that replaces every label of an earlier one removes that one from the record
    third = catalogs.calibrate(twice, catalogs.Calibration("third", {"feh": {"a": 0, "b": 1}, "logg": {"a": 0, "b": 1}}), overwrite=True)
    assert [r["name"] for r in json.loads(third.attrs["calibrations"])] == ["third"]


@pytest.mark.parametrize("target", ["catalog", "calibration", "inside", "parent", "symlink"])
def test_calibrate_out_may_not_be_or_touch_an_input(setup, capsys, target):
    tmp_path, cat = setup
    cal = tmp_path / "cal1.json"
    if target == "symlink":
        (tmp_path / "link.zarr").symlink_to(cat)
    out = {"catalog": cat, "calibration": cal, "inside": cat / "x.fits", "parent": tmp_path, "symlink": tmp_path / "link.zarr"}[target]
    before, cal_text = snapshot(cat), cal.read_text()
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(cal), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and ("is the input" in err or "inside the input" in err or "contains the input" in err)
    assert snapshot(cat) == before and cal.read_text() == cal_text


def test_calibration_found_by_name_is_an_input_too(setup, capsys, monkeypatch):
    tmp_path, cat = setup
    monkeypatch.setenv("GRIDKIT_CALIBRATIONS", str(tmp_path / "cals"))
    catalogs.save_calibration(catalogs.Calibration.from_dict(CAL1))
    target = tmp_path / "cals" / "first.json"
    text = target.read_text()
    assert main(["catalog", "calibrate", str(cat), "first", "--out", str(target), "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err and target.read_text() == text


def test_query_export_and_merge_outputs_may_not_be_their_inputs(setup, capsys):
    tmp_path, cat = setup
    other = write_catalog(make_catalog(10, seed=4, prefix="B"), tmp_path / "other.zarr")
    before = snapshot(cat)
    calls = [
        ["catalog", "query", str(cat), "teff > 0", "--out", str(cat), "--overwrite"],
        ["catalog", "query", str(cat), "teff > 0", "--out", str(cat / "sel.fits"), "--overwrite"],
        ["catalog", "export", str(cat), str(cat / "all.csv"), "--overwrite"],
        ["catalog", "export", str(cat), str(cat), "--overwrite"],
        ["catalog", "merge", str(cat), str(cat), str(other), "--overwrite"],
        ["catalog", "merge", str(tmp_path), str(cat), str(other), "--overwrite"],
        ["catalog", "merge", str(cat / "sub.zarr"), str(cat), str(other), "--overwrite"],
    ]
    for argv in calls:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "input" in err and str(cat.name) in err and "Traceback" not in err, (argv, err)
        assert snapshot(cat) == before, argv
    # the merge API refuses the same, before reading anything
    with pytest.raises(StoreError, match="is the input"):
        catalogs.merge([cat, other], cat, overwrite=True)
    assert catalogs.open(cat).sizes["star"] == 60 and not np.isnan(catalogs.open(cat).logg.values).all()


def test_merge_into_a_fresh_output_still_works(setup):
    tmp_path, cat = setup
    other = write_catalog(make_catalog(10, seed=4, prefix="B"), tmp_path / "other.zarr")
    merged = catalogs.merge([cat, other], tmp_path / "m.zarr")
    assert merged.sizes["star"] == 70
    np.testing.assert_array_equal(merged.teff.values[:60], make_catalog(60, seed=3).teff.values)


QUERY_NUMBERS_REFUSED = {
    "0x10 > 1": r"malformed number '0x10'.*hexadecimal",
    "teff > 1_000": r"malformed number '1_000'.*'_' separators",
    "teff > 1e999999": r"number '1e999999'.* is not finite",
    "teff > 1e": r"malformed number '1e'",
    "teff > 5000K": r"malformed number '5000K'",
    "teff > 1.5.3": r"malformed number '1.5.3'",
    "teff > \u0663": r"unexpected character '\u0663'",  # an Arabic-Indic 3: float() would take it, the grammar does not
    "teff > 1\u0663": r"malformed number '1\u0663'",
}


@pytest.mark.parametrize("text", sorted(QUERY_NUMBERS_REFUSED))
def test_odd_numbers_refused_saying_what_is_wrong(text):
    with pytest.raises(QueryError, match=QUERY_NUMBERS_REFUSED[text]) as info:
        tokenize(text)
    assert "attribute access is not allowed" not in str(info.value)


@pytest.mark.parametrize("literal, value", [(".5", 0.5), ("5.", 5.0), ("1e-3", 1e-3), ("2.5E+2", 250.0), ("1e-999999", 0.0), ("007", 7.0)])
def test_decimal_numbers_of_every_form_mean_their_value(literal, value):
    x = np.array([-1.0, 0.0, 1e-4, 0.5, 5.0, 250.0, 300.0])
    np.testing.assert_array_equal(mask(f"x > {literal}", {"x": x}), x > value)


def test_query_cli_says_what_is_wrong_with_hexadecimal(setup, capsys):
    _, cat = setup
    assert main(["catalog", "query", str(cat), "0x10 > 1"]) == 2
    err = capsys.readouterr().err
    assert "malformed number '0x10'" in err and "hexadecimal" in err and "attribute access is not allowed" not in err


@pytest.mark.parametrize("content, message", [
    ('{"name": "x", "coefficients": [1]}', "coefficients must map each label"),
    ("[1, 2]", "must be a JSON object"),
    ('{"name": "x", "coefficients": {"feh": {"a": "abc", "b": 1}}}', "not a valid calibration"),
    ('{"name": "x", "coefficients": {"feh": {"a": 1e999, "b": 1}}}', "feh.a must be finite"),
    ("{not json", "not a valid calibration"),
])
def test_broken_calibration_files_get_a_message(setup, capsys, content, message):
    tmp_path, cat = setup
    (tmp_path / "bad.json").write_bytes(content.encode())
    before = snapshot(cat)
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "bad.json"), "--in-place"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert snapshot(cat) == before


def test_calibration_file_that_is_not_utf8_gets_a_message(setup, capsys):
    tmp_path, cat = setup
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00junk")
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "bin.json"), "--in-place"]) == 2
    assert "not a valid calibration" in capsys.readouterr().err


def test_failed_export_keeps_the_old_file_and_leaves_no_partial_one(setup, monkeypatch):
    tmp_path, cat = setup
    out = tmp_path / "sel.csv"
    out.write_text("precious\n")
    import astropy.table

    def broken(self, *args, **kwargs):
        Path(args[0]).write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(astropy.table.Table, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        catalogs.export(catalogs.open(cat), out, overwrite=True)
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cal1.json", "cal2.json", "cat.zarr", "sel.csv"])


def test_failed_in_place_calibration_leaves_no_half_written_column(setup, monkeypatch):
    tmp_path, cat = setup
    import xarray as xr

    before = snapshot(cat)

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_zarr", broken)
    with pytest.raises(OSError, match="disk full"):
        calibrate_catalog(cat, tmp_path / "cal1.json")
    assert snapshot(cat) == before


def test_failed_replacement_leaves_attrs_that_match_the_columns(setup, monkeypatch):
    tmp_path, cat = setup
    calibrate_catalog(cat, tmp_path / "cal1.json")
    import xarray as xr

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_zarr", broken)
    with pytest.raises(OSError, match="disk full"):
        calibrate_catalog(cat, tmp_path / "cal2.json", overwrite=True)
    monkeypatch.undo()
    out = catalogs.open(cat)
    assert "feh_cal" not in out and "logg_cal" in out  # the replaced columns are gone, none half-written
    recorded = json.loads(out.attrs["calibrations"])
    assert [(r["name"], sorted(r["coefficients"])) for r in recorded] == [("first", ["logg"])]  # the attrs name only what is there
