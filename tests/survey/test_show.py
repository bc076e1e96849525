"""`gridkit show CATALOG STAR_ID`: one star's corner plot (and its spectrum against posterior-predictive spectra).

The plotted draws are those the catalog's quantiles come from: re-drawn from the model and the recorded survey they
have exactly the catalog's quantiles for that star; kept in the catalog (`--keep-samples`) they are the same draws."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import catalogs
from catalogs.schema import QUANTILES
from cinn.evaluate.star import default_labels, show_star, spectrum_path, star_posterior
from gridkit.cli import main
from gridkit.errors import ConfigError, GridError


def _png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_redrawn_draws_have_the_catalogs_quantiles_and_both_figures_are_written(analytic_model, real_catalog, tmp_path):
    model_dir, _, _ = analytic_model
    cat = catalogs.open(real_catalog)
    sid = str(cat.star_id.values[37])
    star = star_posterior(real_catalog, sid, model_dir=model_dir)
    assert star.source == "re-drawn from the model" and star.row == 37
    assert star.samples.sizes["draw"] == cat.attrs["samples"]
    plotted = star.plotted()
    np.testing.assert_allclose(1 - plotted.sizes["draw"] / star.samples.sizes["draw"], cat.f_reject.values[37], rtol=1e-6)
    for name in plotted.label.values.tolist():
        got = np.quantile(plotted.sel(label=name).values, QUANTILES)
        np.testing.assert_allclose(got, cat[f"{name}_quantiles"].values[37], rtol=1e-6, err_msg=name)
    done = show_star(real_catalog, sid, tmp_path / "star.png", model_dir=model_dir, n_draws=4)
    assert done["corner"] == tmp_path / "star.png" and _png(done["corner"])
    assert done["spectrum"] == spectrum_path(tmp_path / "star.png") == tmp_path / "star_spectrum.png" and _png(done["spectrum"])
    assert done["n_draws"] == plotted.sizes["draw"] and not done["notes"]


def test_kept_draws_are_used_when_the_catalog_has_them(analytic_model, tmp_path):
    from cinn.survey import infer

    model_dir, _, survey_path = analytic_model
    src = xr.open_zarr(survey_path, consolidated=False).isel(star=slice(0, 6)).load()
    for var in src.variables.values():
        var.encoding = {}
    src.to_zarr(tmp_path / "six.zarr", consolidated=False)
    out = infer(model_dir, tmp_path / "six.zarr", tmp_path / "cat.zarr", samples=64, keep_samples=64, chunk=3, progress=False)
    cat = catalogs.open(out)
    sid = str(cat.star_id.values[4])
    kept = star_posterior(out, sid)  # no model needed
    assert kept.source == "kept in the catalog"
    again = star_posterior(cat.drop_vars(["samples", "samples_in_bounds"]), sid, model_dir=model_dir)
    np.testing.assert_array_equal(kept.in_bounds, again.in_bounds)
    np.testing.assert_array_equal(kept.samples.values, again.samples.values.astype(np.float32))
    done = show_star(out, sid, tmp_path / "figures" / "kept.png", labels=["teff", "logg"], spectrum=False)  # its folder is made
    assert _png(done["corner"]) and done["spectrum"] is None


def test_cli_writes_the_figures_and_names_an_unknown_star(analytic_model, real_catalog, tmp_path, capsys):
    model_dir, _, _ = analytic_model
    sid = str(catalogs.open(real_catalog).star_id.values[3])
    assert main(["show", str(real_catalog), sid, "--model", str(model_dir), "--out", str(tmp_path / "s.png"), "--label-names", "teff,logg,feh",
                 "--draws", "3"]) == 0
    out = capsys.readouterr().out
    assert "corner plot" in out and _png(tmp_path / "s.png") and _png(tmp_path / "s_spectrum.png")
    assert main(["show", str(real_catalog), "no-such-star", "--model", str(model_dir), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "star_id 'no-such-star' is not in" in err and str(real_catalog) in err
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(GridError, match="no-such-star"):
        star_posterior(real_catalog, "no-such-star", model_dir=model_dir)
    with pytest.raises(ConfigError, match="labels nope"):
        show_star(real_catalog, sid, tmp_path / "y.png", model_dir=model_dir, labels=["nope"])


def test_default_labels_put_teff_logg_feh_first():
    assert default_labels(["feh", "mg_fe", "logg", "teff", "vmic", "vbroad", "c_fe"]) == ["teff", "logg", "feh", "vmic", "vbroad"]
    assert default_labels(["logg", "x"]) == ["logg", "x"]
