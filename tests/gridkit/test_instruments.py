"""Instruments: 4MOST HR arms and pixel grids (25,200 pixels for green + red), arm selection, other instruments."""
import numpy as np
import pytest

from gridkit import instruments
from gridkit.errors import ConfigError
from gridkit.kernels import rebin as kr


def test_fourmost_hr_arms_and_pixels():
    hr = instruments.get("4most-hr")
    assert hr.resolving_power == 20_000
    assert [(a.name, a.wl_min, a.wl_max) for a in hr.arms] == [("blue", 3926, 4355), ("green", 5160, 5730), ("red", 6100, 6790)]
    wl = hr.wavelength("green,red")
    assert wl.size == 25_200  # as in the published method
    assert hr.wavelength().size == 25_200  # green + red by default
    assert hr.wavelength(["blue", "green", "red"]).size == 8_580 + 25_200
    # the pixels tile each arm exactly: edges at the arm limits, 0.05 A wide
    for arm in hr.select("green,red"):
        lo, hi = kr.bin_edges(arm.wavelength())
        assert lo[0] == pytest.approx(arm.wl_min) and hi[-1] == pytest.approx(arm.wl_max)
        np.testing.assert_allclose(hi - lo, 0.05, rtol=1e-9)
    assert list(np.unique(hr.arm_index("green,red"), return_counts=True)[1]) == [11_400, 13_800]


def test_arm_selection_errors_name_the_arm():
    hr = instruments.FOURMOST_HR
    assert [a.name for a in hr.select("red,green")] == ["green", "red"]  # always in wavelength order
    with pytest.raises(ConfigError, match="'purple' not an arm of 4most-hr; choose from blue, green, red"):
        hr.select("green,purple")
    with pytest.raises(ConfigError, match="instrument 'hermes' is unknown"):
        instruments.get("hermes")


def test_other_instruments():
    lr = instruments.get("4most-lr")
    assert lr.wavelength().min() > 3700 and lr.wavelength().max() < 9500
    gen = instruments.constant_r(5000, 4000, 6000, pixels_per_fwhm=2.0)
    step = np.diff(gen.wavelength())
    assert step[0] == pytest.approx(5000 / 5000 / 2.0)
    instruments.register(gen)
    assert instruments.get(gen.name) is gen
    with pytest.raises(ConfigError, match="resolving_power must be finite and > 0"):
        instruments.constant_r(0, 4000, 6000)
    with pytest.raises(ConfigError, match="need 0 < wl_min < wl_max"):
        instruments.Arm("x", 6000, 5000, 0.1)


def test_ranges_are_the_selected_arms_widened_by_the_margin():
    hr = instruments.FOURMOST_HR
    assert hr.ranges() == {"green": (5160.0, 5730.0), "red": (6100.0, 6790.0)}  # the default arms
    assert hr.ranges("red,blue", margin=30.0) == {"blue": (3896.0, 4385.0), "red": (6070.0, 6820.0)}  # in wavelength order
    with pytest.raises(ConfigError, match="'purple' not an arm of 4most-hr"):
        hr.ranges("purple")
