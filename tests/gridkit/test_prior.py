"""The label prior: the shared grid's documented ranges and mixture, seedable, one optional correlation."""
import json

import numpy as np
import pytest

from gridkit import LABEL_NAMES
from gridkit.errors import ConfigError
from gridkit.synth import LabelPrior, sample_labels
from gridkit.synth.prior import A_LI_SUN


@pytest.fixture(scope="module")
def draws():
    return sample_labels(3000, seed=7)


def test_default_prior_is_the_documented_one(draws):
    assert list(draws) == list(LABEL_NAMES)
    giant = draws["logg"] < 3.5
    assert giant.mean() == pytest.approx(0.35, abs=0.03)
    for name, mask, lo, hi in [("teff", giant, 4200, 5400), ("logg", giant, 1.5, 3.4), ("vmic", giant, 1.0, 2.0),
                               ("teff", ~giant, 4800, 6800), ("logg", ~giant, 3.6, 4.7), ("vmic", ~giant, 0.6, 1.6)]:
        v = draws[name][mask]
        assert v.min() >= lo and v.max() <= hi
        assert v.min() < lo + 0.05 * (hi - lo) and v.max() > hi - 0.05 * (hi - lo)  # fills the range
    for name, lo, hi in [("feh", -2.0, 0.4), ("c_fe", -0.5, 0.5), ("n_fe", -0.5, 1.0), ("mg_fe", -0.3, 0.5), ("si_fe", -0.3, 0.5),
                         ("ca_fe", -0.3, 0.5), ("ti_fe", -0.3, 0.5), ("mn_fe", -0.5, 0.3), ("vbroad", 1.0, 25.0)]:
        assert draws[name].min() >= lo and draws[name].max() <= hi
        assert draws[name].mean() == pytest.approx((lo + hi) / 2, abs=0.05 * (hi - lo))  # uniform
    a_li = draws["li_fe"] + draws["feh"] + A_LI_SUN
    assert a_li.min() >= -0.5 - 1e-12 and a_li.max() <= 3.3 + 1e-12
    assert abs(np.corrcoef(draws["feh"], draws["mg_fe"])[0, 1]) < 0.06  # independent by default


def test_seeded_and_prefix_stable():
    a, b, c = sample_labels(50, seed=1), sample_labels(50, seed=1), sample_labels(80, seed=1)
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], c[name][:50])  # model i depends on (seed, i) only
    assert not np.array_equal(a["teff"], sample_labels(50, seed=2)["teff"])


def test_alpha_enhancement_rises_at_low_metallicity():
    d = sample_labels(2000, seed=3, prior=LabelPrior(alpha_slope=0.3, feh_knee=-0.5))
    for name in ("mg_fe", "si_fe", "ca_fe", "ti_fe"):
        assert np.corrcoef(d["feh"], d[name])[0, 1] < -0.3
        assert d[name].max() <= 0.5
    poor, rich = d["feh"] < -1.5, d["feh"] > -0.3
    assert d["mg_fe"][poor].mean() > d["mg_fe"][rich].mean() + 0.2


def test_configurable_from_json_and_unknown_keys_rejected(tmp_path):
    path = tmp_path / "prior.json"
    path.write_text(json.dumps({"giant_fraction": 0.0, "dwarf_teff": [5500, 6000], "feh": [-0.5, 0.0]}))
    prior = LabelPrior.from_file(path)
    d = sample_labels(200, seed=0, prior=prior)
    assert d["teff"].min() >= 5500 and d["teff"].max() <= 6000 and d["logg"].min() >= 3.6
    assert LabelPrior.from_dict(prior.to_dict()) == prior
    with pytest.raises(ConfigError, match="tefff"):
        LabelPrior.from_dict({"tefff": [1, 2]})
    with pytest.raises(ConfigError, match="feh"):
        LabelPrior(feh=(0.4, -2.0))
    with pytest.raises(ConfigError, match="giant_fraction"):
        LabelPrior(giant_fraction=1.5)
    with pytest.raises(ConfigError, match="n-models"):
        sample_labels(0)
