"""The wavelength ranges of the synthesis backends (gridkit.synth.ranges): the 4MOST HR arms with a margin,
and the one parser that the analytic backend, the Turbospectrum backend and `gridkit synth` share."""
from __future__ import annotations

import numpy as np
import pytest

from gridkit.cli import main
from gridkit.errors import ConfigError
from gridkit.synth import AnalyticSynthesizer
from gridkit.synth.ranges import ARMS, DEFAULT_RANGES, SYNTHESIS_MARGIN, parse_ranges
from gridkit.synth.turbospectrum import TurbospectrumSynthesizer


def test_arms_are_the_4most_hr_arms_with_10_angstrom_margins():
    """4MOST HRS: blue 3926-4355, green 5160-5730, red 6100-6790 A; the synthesis covers 10 A more each side
    (like the shared tsgrid-lte grid), the default being green + red."""
    assert SYNTHESIS_MARGIN == 10.0
    assert ARMS == {"blue": (3916.0, 4365.0), "green": (5150.0, 5740.0), "red": (6090.0, 6800.0)}
    assert DEFAULT_RANGES == ((5150.0, 5740.0), (6090.0, 6800.0))


@pytest.mark.parametrize(
    "spec, expected",
    [
        (["red"], ((6090.0, 6800.0),)),
        ("Green", ((5150.0, 5740.0),)),  # one arm name, any case
        ((6700, 6720), ((6700.0, 6720.0),)),  # one bare pair
        (np.array([[6700.0, 6720.0], [5000.0, 5010.0]]), ((5000.0, 5010.0), (6700.0, 6720.0))),  # sorted
        (["6700 6702", "6550-6575", "5000,5010", "blue"], ((3916.0, 4365.0), (5000.0, 5010.0), (6550.0, 6575.0), (6700.0, 6702.0))),
        ([(6700.0, 6720.0), (6720.5, 6730.0)], ((6700.0, 6720.0), (6720.5, 6730.0))),  # touching is not overlapping
    ],
)
def test_parses_arm_names_pairs_and_the_cli_strings(spec, expected):
    got = parse_ranges(spec)
    assert got == expected
    assert parse_ranges(got) == got  # parsed ranges parse to themselves (pickled backends, CLI -> backend)


@pytest.mark.parametrize(
    "spec, match",
    [
        ([], r"wl must name at least one range"),
        (5.0, r"wl must be a range or a sequence of ranges .* got 5.0"),
        (["purple"], r"wl\[0\] = 'purple' is not an arm name \(blue, green, red\)"),
        (["6700-"], r"wl\[0\] = '6700-' is not an arm name"),
        (["1 2 3"], r"wl\[0\] = '1 2 3' is not an arm name"),
        ([(1.0, 2.0, 3.0)], r"wl\[0\] = \(1.0, 2.0, 3.0\) must be a \(start, stop\) pair"),
        ([(6700, 6720), (6720, 6700)], r"wl\[1\] = \(6720.0, 6700.0\) must satisfy 0 < start < stop"),
        ([(-5, 10)], r"wl\[0\] = \(-5.0, 10.0\) must satisfy 0 < start < stop"),
        ([(6700, float("inf"))], r"wl\[0\] = \(6700.0, inf\)"),
        ([(6710, 6730), (6700, 6720)], r"wl: \(6700.0, 6720.0\) and \(6710.0, 6730.0\) overlap"),
    ],
)
def test_bad_ranges_are_config_errors_naming_the_argument_and_value(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_ranges(spec, "wl")


def test_both_backends_read_ranges_the_same_way(tmp_path):
    spec = ["red", "6700-6720"]
    with pytest.raises(ConfigError, match="overlap"):  # red (6090-6800) holds 6700-6720
        AnalyticSynthesizer(wavelength_range=spec)
    spec = ["green", "6700-6720"]
    analytic = AnalyticSynthesizer(wavelength_range=spec)
    ts = TurbospectrumSynthesizer(wavelength_range=spec, home=tmp_path)  # no programs needed to configure
    assert analytic.wavelength_range == ts.wavelength_ranges == ((5150.0, 5740.0), (6700.0, 6720.0))
    assert AnalyticSynthesizer().wavelength_range == TurbospectrumSynthesizer(home=tmp_path).wavelength_ranges == DEFAULT_RANGES


def test_turbospectrum_keeps_its_own_point_limit(tmp_path):
    with pytest.raises(ConfigError, match=r"wavelength_ranges: \(5150.0, 5740.0\) at step 1e-05 A gives more than 5,000,000 points"):
        TurbospectrumSynthesizer(wavelength_ranges=["green"], step=1e-5, home=tmp_path)


def test_cli_errors_name_the_option_and_the_value(tmp_path, capsys):
    out = str(tmp_path / "x.zarr")
    assert main(["synth", "--n-models", "2", "--out", out, "--wavelength-range", "6700", "6720", "6740", "--no-progress"]) == 2
    assert "--wavelength-range[0] = '6700 6720 6740' is not an arm name" in capsys.readouterr().err
    assert main(["synth", "--n-models", "2", "--out", out, "--wavelength-range", "red", "--wavelength-range", "6700,6720",
                 "--no-progress"]) == 2
    assert "--wavelength-range: (6090.0, 6800.0) and (6700.0, 6720.0) overlap" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()  # refused before anything is written
