"""The catalog actions in the one CLI grammar: outputs are `--out` (the old positional output still works, with a
deprecation note), and `catalog calibrate` changes its input only when told to (`--in-place`)."""
from __future__ import annotations

import json

from catalog_fakes import make_catalog, write_catalog

import catalogs
from gridkit.cli import main

CAL = {"name": "first", "coefficients": {"feh": {"a": 1e-4, "b": -0.5}}}


def snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_export_takes_out_and_the_old_positional_output_still_works_with_a_note(tmp_path, capsys):
    cat = write_catalog(make_catalog(20, seed=1), tmp_path / "cat.zarr")
    assert main(["catalog", "export", str(cat), "--out", str(tmp_path / "new.csv")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert main(["catalog", "export", str(cat), str(tmp_path / "old.csv")]) == 0
    assert "deprecated" in capsys.readouterr().err
    assert (tmp_path / "new.csv").read_bytes() == (tmp_path / "old.csv").read_bytes()
    assert main(["catalog", "export", str(cat), str(tmp_path / "a.csv"), "--out", str(tmp_path / "b.csv")]) == 2
    assert "give the output once" in capsys.readouterr().err
    assert main(["catalog", "export", str(cat)]) == 2
    assert "--out is required" in capsys.readouterr().err


def test_merge_takes_out_and_the_old_first_positional_output_still_works_with_a_note(tmp_path, capsys):
    a = write_catalog(make_catalog(10, seed=1), tmp_path / "a.zarr")
    b = write_catalog(make_catalog(10, seed=2, prefix="T"), tmp_path / "b.zarr")
    inputs = [str(a), str(b)]
    assert main(["catalog", "merge", *inputs, "--out", str(tmp_path / "new.zarr"), "--no-progress"]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert main(["catalog", "merge", str(tmp_path / "old.zarr"), *inputs, "--no-progress"]) == 0
    assert "deprecated" in capsys.readouterr().err
    assert catalogs.open(tmp_path / "new.zarr").sizes["star"] == catalogs.open(tmp_path / "old.zarr").sizes["star"] == 10 * len(inputs)
    assert main(["catalog", "merge", str(a)]) == 2  # one path alone: no output
    assert "--out is required" in capsys.readouterr().err


def test_calibrate_never_changes_its_input_unless_told_to(tmp_path, capsys):
    cat = write_catalog(make_catalog(20, seed=3), tmp_path / "cat.zarr")
    (tmp_path / "cal.json").write_text(json.dumps(CAL))
    before = snapshot(cat)
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "cal.json")]) == 2
    assert "--out" in (err := capsys.readouterr().err) and "--in-place" in err
    assert snapshot(cat) == before
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "cal.json"), "--out", str(tmp_path / "c.zarr")]) == 0
    assert snapshot(cat) == before and "feh_cal" in catalogs.open(tmp_path / "c.zarr")
    assert main(["catalog", "calibrate", str(cat), "--calibration", str(tmp_path / "cal.json"), "--in-place"]) == 0
    assert "feh_cal" in catalogs.open(cat)
