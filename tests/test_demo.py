"""`gridkit demo --quick`: the whole chain runs end to end and its summary is consistent with its outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gridkit.cli import main
from gridkit.demo import DemoConfig
from gridkit.errors import ConfigError


def test_quick_demo_runs_the_whole_chain(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--sun", "none", "--no-progress", "--workers", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["timings_s"]) >= {"synth", "degrade", "train", "evaluate", "mock-survey", "infer", "catalog", "total"}
    import catalogs

    cat = catalogs.open(out / "catalog.zarr")
    # the mock survey is the test split: every test model exactly once
    import cinn

    test_ids = np.sort(np.asarray(cinn.read_split(out / "model")["test"]))
    assert np.array_equal(np.sort(cat["model"].values), test_ids)
    # the exported query holds exactly the stars that satisfy it
    from astropy.table import Table

    sel = Table.read(out / "query.fits")
    mask = (cat.teff.values > 5000) & (cat.f_reject.values < 0.5)
    assert len(sel) == summary["query"]["n_selected"] == int(mask.sum())
    assert sorted(sel["star_id"]) == sorted(cat.star_id.values[mask])
    # accuracy figures are computed from the catalog against the kept truth
    acc = summary["catalog"]["teff"]
    d = cat.teff.values - cat.true_teff.values
    assert acc["bias"] == pytest.approx(float(np.nanmean(d)), rel=1e-6)
    assert 0.0 <= acc["coverage68"] <= 1.0
    for fig in summary["figures"]:
        assert (tmp_path / fig).is_file() or __import__("pathlib").Path(fig).is_file()
    # a rerun resumes: every stage is found done
    assert main(["demo", "--quick", "--out", str(out), "--sun", "none", "--no-progress", "--workers", "1"]) == 0


def test_demo_config_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="n_models"):
        DemoConfig(n_models=5)
    with pytest.raises(ConfigError, match="survey_snr"):
        DemoConfig(snr=(20.0, 100.0), survey_snr=50.0)
    with pytest.raises(ConfigError, match="epochs"):
        DemoConfig(epochs=0)
