"""Spectrum synthesis: labels -> base grid.

- `synthesize(labels, backend, out, ...)`: drive any backend through the restartable store writer.
- `AnalyticSynthesizer`: the built-in, fast, simplified analytic model (tests and demos; not radiative transfer).
- `sample_labels(n, seed, prior)`, `LabelPrior`: the FGK label prior of the published training set.
- `Prior` (from YAML: label distributions, populations; configs/priors/), `synthesize_prior(prior, n, seed, backend,
  out)`: a grid drawn from a prior that a rerun with a larger n grows (gridkit.synth.grow); `merge_grids(grids, out)`:
  grids made in pieces into one.
- `BACKENDS` / `get_backend(name, **options)`: 'analytic' and 'turbospectrum' (imported lazily).
- `parse_ranges(ranges)`, `ARMS`, `DEFAULT_RANGES`, `DEFAULT_STEP`: the wavelength ranges both backends compute.
- `drop_failed(ds)`, `model_failures(path)`: models that were skipped or failed.
"""
from __future__ import annotations

import importlib
from typing import Callable

from ..errors import ConfigError
from .analytic import AnalyticSynthesizer
from .api import STATUS_FAILED, STATUS_OK, STATUS_SKIPPED, SynthesisReport, drop_failed, model_failures, synthesize
from .base import SynthesisSkipped, Synthesizer
from .grow import draw_labels, synthesize_prior
from .merge import merge_grids
from .prior import LabelPrior, Prior, sample_labels
from .ranges import ARMS, DEFAULT_RANGES, DEFAULT_STEP, parse_ranges


def _analytic(*, wavelength_range=None, step=None, linelist=None, atmosphere=None, **unknown) -> AnalyticSynthesizer:
    if unknown:
        raise ConfigError(f"the analytic backend does not take option(s) {sorted(unknown)}")
    if atmosphere is not None:
        raise ConfigError(f"atmosphere ({atmosphere!r}) is used only by the turbospectrum backend")
    if isinstance(linelist, (list, tuple)):
        if len(linelist) > 1:
            raise ConfigError(f"the analytic backend takes one line table (CSV in its own format), got {len(linelist)}: {list(linelist)}")
        linelist = linelist[0] if linelist else None
    kw = {}
    if wavelength_range is not None:
        kw["wavelength_range"] = wavelength_range
    if step is not None:
        kw["step"] = step
    return AnalyticSynthesizer(linelist=linelist, **kw)


def _turbospectrum(**options):
    module = importlib.import_module("gridkit.synth.turbospectrum")
    return module.TurbospectrumSynthesizer(**{k: v for k, v in options.items() if v is not None})


#: backend name -> factory(**options); options: wavelength_range, step, linelist, atmosphere (None = default)
BACKENDS: dict[str, Callable[..., Synthesizer]] = {"analytic": _analytic, "turbospectrum": _turbospectrum}


def get_backend(name: str, **options) -> Synthesizer:
    """A backend instance by name; options None are left to the backend's defaults."""
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}")
    return BACKENDS[name](**options)


__all__ = [
    "synthesize", "AnalyticSynthesizer", "LabelPrior", "sample_labels", "BACKENDS", "get_backend", "drop_failed",
    "model_failures", "SynthesisReport", "SynthesisSkipped", "Synthesizer", "STATUS_OK", "STATUS_SKIPPED", "STATUS_FAILED",
    "ARMS", "DEFAULT_RANGES", "DEFAULT_STEP", "parse_ranges", "Prior", "synthesize_prior", "draw_labels", "merge_grids",
]
