"""gridkit: from a grid of synthetic spectra to a queryable catalog of stellar labels.

The public API (small on purpose):

- data model: `from_arrays`, `open_grid`, `write_grid`, `validate_grid`, `DEFAULT_LABELS`, `LABEL_NAMES`
- degradation (lazy, dask): `to_resolution`, `rotate`, `rebin`, `add_noise`, `degrade`, `fourmostify`
- instruments: `gridkit.instruments`
- synthesis: `gridkit.synth`; readers: `gridkit.io`
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import BackendError, ConfigError, GridError, GridkitError, StoreError  # noqa: E402
from .schema import DEFAULT_LABELS, LABEL_NAMES, from_arrays, validate_grid  # noqa: E402
from .grid import open_grid, write_grid  # noqa: E402
from .degrade import add_noise, degrade, fourmostify, rebin, rotate, to_resolution  # noqa: E402
from . import instruments  # noqa: E402
from . import io, synth  # noqa: E402

__all__ = [
    "__version__", "GridkitError", "GridError", "ConfigError", "StoreError", "BackendError",
    "DEFAULT_LABELS", "LABEL_NAMES", "from_arrays", "validate_grid", "open_grid", "write_grid",
    "to_resolution", "rotate", "rebin", "add_noise", "degrade", "fourmostify", "instruments",
]
