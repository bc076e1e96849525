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
    # every store the chain wrote opens with plain xarray, without its "not consolidated" warning, and holds what
    # gridkit reads without consolidated metadata
    import warnings

    import xarray as xr

    stores = sorted(out.rglob("*.zarr"))
    assert {p.name for p in stores} >= {"base.zarr", "train.zarr", "survey.zarr", "catalog.zarr"}, stores
    for path in stores:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plain = xr.open_zarr(path)
        assert set(plain.variables) == set(xr.open_zarr(path, consolidated=False).variables), path
    # a rerun resumes: every stage is found done
    assert main(["demo", "--quick", "--out", str(out), "--sun", "none", "--no-progress", "--workers", "1"]) == 0


def test_demo_config_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="n_models"):
        DemoConfig(n_models=5)
    with pytest.raises(ConfigError, match="survey_snr"):
        DemoConfig(snr=(20.0, 100.0), survey_snr=50.0)
    with pytest.raises(ConfigError, match="epochs"):
        DemoConfig(epochs=0)


def test_catalog_figure_has_a_panel_per_label_with_units():
    import matplotlib.pyplot as plt
    import xarray as xr

    from catalogs.schema import QUANTILES
    from gridkit.demo import _catalog_figure
    from gridkit.schema import label_attrs

    labels = ("teff", "logg", "feh", "vmic", "vbroad", "c_fe", "mg_fe")
    rng = np.random.default_rng(0)
    n, z = 5, np.array([-1.96, -1.0, 0.0, 1.0, 1.96])
    data = {}
    for lab in labels:
        t = rng.normal(size=n)
        data[lab] = (("star",), t + 0.1, {**label_attrs(lab), "long_name": f"{label_attrs(lab)['long_name']} (maximum a posteriori)"})
        data[f"{lab}_quantiles"] = (("star", "quantile"), t[:, None] + 0.1 * z, label_attrs(lab))
        data[f"true_{lab}"] = (("star",), t, label_attrs(lab))
    cat = xr.Dataset(data, coords={"star": np.arange(n), "quantile": np.array(QUANTILES)})
    fig = _catalog_figure(cat)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    xl = [ax.get_xlabel() for ax in shown]
    yl = [ax.get_ylabel() for ax in shown]
    titles = [ax.get_title() for ax in shown]
    plt.close(fig)
    assert len(shown) == len(labels) and len(fig.axes) == 8  # 2 rows of 4, the spare cell hidden
    assert xl[0] == "true teff [K]" and yl[0] == "MAP teff [K]" and titles[0] == "effective temperature"
    assert xl[2] == "true feh [dex]" and "[dex]" in yl[5]
    assert all(f" {lab}" in x for lab, x in zip(labels, xl))
