"""`cinn.evaluate.ppc.line_abundances`: line by line, the label value at which the grid's physics reproduces a line."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from evaluate_helpers import truths

CA_LINES = (6102.723, 6122.217)  # Ca I lines of the analytic line list inside the test spectrograph (6100-6160 A)


@pytest.fixture(scope="module")
def setup(analytic_cube):
    from cinn.evaluate.ppc import generator_from_attrs
    from gridkit.schema import LABEL_NAMES

    ds = xr.open_zarr(analytic_cube, consolidated=False)
    gen, why = generator_from_attrs(ds.attrs)
    assert gen is not None, why
    # a dwarf of the grid's solar-like corner, with its own labels
    truth = truths(ds.isel(model=slice(0, 1)).load(), LABEL_NAMES)[0]
    j = {n: i for i, n in enumerate(LABEL_NAMES)}
    truth[[j["teff"], j["logg"], j["feh"]]] = (5800.0, 4.4, 0.0)
    return gen, ds.attrs, np.asarray(ds.wavelength.values), truth, list(LABEL_NAMES), j


def test_each_line_recovers_the_abundance_of_the_spectrum(setup):
    """A noiseless spectrum made by the same physics with [Ca/Fe] = +0.15: every Ca line gives +0.15 back (to the
    linear interpolation between models 0.1 dex apart), and its equivalent width grows with [Ca/Fe]."""
    from cinn.evaluate.ppc import line_abundances, resimulate

    gen, attrs, wl, truth, names, j = setup
    made = truth.copy()
    made[j["ca_fe"]] = 0.15
    observed = resimulate(gen, made[None], names, attrs, wl)[0]
    rows = line_abundances(gen, attrs, wl, observed, truth, names, "ca_fe", [-0.1, 0.0, 0.1, 0.2, 0.3], CA_LINES)
    assert [r["line"] for r in rows] == list(CA_LINES)
    for r in rows:
        assert r["outside"] == "" and r["n_pixels"] >= 3
        assert np.all(np.diff(r["ew_model"]) > 0) and r["ew_model"][2] < r["ew_observed"] < r["ew_model"][3]
        assert r["value"] == pytest.approx(0.15, abs=0.01)
    # a different abundance gives a different answer (the check could fail)
    made[j["ca_fe"]] = -0.05
    low = resimulate(gen, made[None], names, attrs, wl)[0]
    for r in line_abundances(gen, attrs, wl, low, truth, names, "ca_fe", [-0.1, 0.0, 0.1, 0.2, 0.3], CA_LINES):
        assert r["value"] == pytest.approx(-0.05, abs=0.01)


def test_lines_beyond_the_models_and_bad_arguments_are_named(setup):
    from cinn.evaluate.ppc import line_abundances, resimulate
    from gridkit.errors import ConfigError

    gen, attrs, wl, truth, names, j = setup
    made = truth.copy()
    made[j["ca_fe"]] = 0.4
    observed = resimulate(gen, made[None], names, attrs, wl)[0]
    rows = line_abundances(gen, attrs, wl, observed, truth, names, "ca_fe", [-0.2, 0.0, 0.2], [*CA_LINES, 6300.0])
    assert [r["outside"] for r in rows] == ["above", "above", "no pixels"] and all(np.isnan(r["value"]) for r in rows)
    below = line_abundances(gen, attrs, wl, observed, truth, names, "ca_fe", [0.5, 0.6], CA_LINES[:1])
    assert below[0]["outside"] == "below"
    with pytest.raises(ConfigError, match="'ca_h' is not one of the labels"):
        line_abundances(gen, attrs, wl, observed, truth, names, "ca_h", [0.0, 0.1], CA_LINES)
    with pytest.raises(ConfigError, match="increasing"):
        line_abundances(gen, attrs, wl, observed, truth, names, "ca_fe", [0.1, 0.0], CA_LINES)
    with pytest.raises(ConfigError, match="one value per label"):
        line_abundances(gen, attrs, wl, observed, truth[:3], names, "ca_fe", [0.0, 0.1], CA_LINES)
