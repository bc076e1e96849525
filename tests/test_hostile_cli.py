"""Hostile input to `gridkit synth`: a label table with text where numbers belong gets a message naming the
file, the column and the row, exit 2, and no output (it used to be a numpy traceback from the synthesis)."""
from __future__ import annotations

import numpy as np
import pytest

from gridkit import synth
from gridkit.cli import main
from gridkit.errors import GridError
from gridkit.schema import LABEL_NAMES


def write_labels(path, n=3, bad=None):
    """A label table of n prior draws; bad = (column, row, text) puts text into one cell."""
    labels = synth.sample_labels(n, 0)
    rows = [",".join(LABEL_NAMES)]
    for i in range(n):
        cells = [repr(float(labels[k][i])) for k in LABEL_NAMES]
        if bad is not None and bad[1] == i:
            cells[LABEL_NAMES.index(bad[0])] = bad[2]
        rows.append(",".join(cells))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("column, row, text", [("teff", 1, "abc"), ("feh", 0, "-0.5dex"), ("li_fe", 2, "n/a")])
def test_synth_label_table_with_text_names_column_row_and_value(tmp_path, capsys, column, row, text):
    table = write_labels(tmp_path / "labels.csv", bad=(column, row, text))
    out = tmp_path / "base.zarr"
    assert main(["synth", "--labels", str(table), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"labels.csv: column '{column}' must hold numbers" in err and f"first row {row + 1}: '{text}'" in err, err
    assert "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]


def test_synth_api_names_the_label_whose_values_are_text(tmp_path):
    labels = synth.sample_labels(3, 0)
    labels["teff"] = np.array(["5000", "abc", "6000"])
    with pytest.raises(GridError, match=r"label 'teff' must be numbers; 1 of 3 value\(s\) are not, first at index 1: 'abc'"):
        synth.synthesize(labels, "analytic", tmp_path / "base.zarr", progress=False)
    assert not (tmp_path / "base.zarr").exists()


def test_a_clean_label_table_still_synthesizes(tmp_path, capsys):
    table = write_labels(tmp_path / "labels.csv", n=2)
    assert main(["synth", "--labels", str(table), "--out", str(tmp_path / "base.zarr"), "--wavelength-range", "6700", "6720",
                 "--no-progress"]) == 0
    assert "2 of 2 models synthesized" in capsys.readouterr().out
