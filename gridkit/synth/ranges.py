"""The wavelength ranges of the synthesis backends: the 4MOST HR arms with a margin, and the one parser of range
specifications (arm names, (lo, hi) pairs, the CLI's 'A B' / 'A-B' / 'A,B') that both backends and
`gridkit synth` use."""
from __future__ import annotations

import math
from itertools import pairwise
from numbers import Real

from ..errors import ConfigError
from ..instruments import FOURMOST_HR

#: Angstrom computed beyond each arm edge: the degrade step convolves (line-spread function, rotation) and rebins
#: up to the edges, so it needs flux outside them; 10 A is the shared real grid's (tsgrid-lte) margin.
SYNTHESIS_MARGIN = 10.0
#: arm name -> (lo, hi) [A]: the 4MOST HR arms (`gridkit.instruments.FOURMOST_HR`) widened by SYNTHESIS_MARGIN
ARMS: dict[str, tuple[float, float]] = FOURMOST_HR.ranges(FOURMOST_HR.arm_names, margin=SYNTHESIS_MARGIN)
#: ((lo, hi), ...) both backends' default: the arms the 4MOST HR pipeline degrades to (green, red), with margins
DEFAULT_RANGES: tuple[tuple[float, float], ...] = tuple(FOURMOST_HR.ranges(margin=SYNTHESIS_MARGIN).values())
#: [A] both backends' default step, like the shared real grid
DEFAULT_STEP = 0.02


def parse_ranges(ranges, name: str = "wavelength_range") -> tuple[tuple[float, float], ...]:
    """Wavelength ranges as sorted, non-overlapping (lo, hi) pairs [A] with 0 < lo < hi.

    ranges: one range or a sequence of them; a range is an arm name of `ARMS` (any case), a pair (lo, hi) in
    Angstrom, or a string 'lo hi', 'lo-hi' or 'lo,hi'. `name` names the argument in the errors (ConfigError).
    """
    if isinstance(ranges, str) or _is_pair_of_numbers(ranges):
        ranges = [ranges]  # one range, not a sequence of them
    try:
        items = list(ranges)
    except TypeError:
        raise ConfigError(f"{name} must be a range or a sequence of ranges (arm names or (lo, hi) pairs), got {ranges!r}") from None
    if not items:
        raise ConfigError(f"{name} must name at least one range")
    out = sorted(_parse_one(item, f"{name}[{i}]") for i, item in enumerate(items))
    for (a, b), (c, d) in pairwise(out):
        if c <= b:
            raise ConfigError(f"{name}: ({a}, {b}) and ({c}, {d}) overlap")
    return tuple(out)


def _parse_one(item, where: str) -> tuple[float, float]:
    if isinstance(item, str):
        if item.strip().lower() in ARMS:
            return ARMS[item.strip().lower()]
        values = item.replace(",", " ").replace("-", " ").split()  # the CLI's 'A B', 'A-B', 'A,B'
        problem = f"is not an arm name ({', '.join(ARMS)}) or a (start, stop) pair"
    else:
        values, problem = item, "must be a (start, stop) pair in Angstrom or an arm name"
    try:
        lo, hi = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} = {item!r} {problem}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ConfigError(f"{where} = ({lo}, {hi}) must satisfy 0 < start < stop (Angstrom)")
    return lo, hi


def _is_pair_of_numbers(value) -> bool:
    try:
        return len(value) == 2 and all(isinstance(v, Real) for v in value)
    except TypeError:  # no len(): not a pair
        return False
