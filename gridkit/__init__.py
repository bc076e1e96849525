"""gridkit: from a grid of synthetic spectra to a queryable catalog of stellar labels.

The public API (small on purpose):

- data model: `from_arrays`, `open_grid`, `write_grid`, `validate_grid`, `DEFAULT_LABELS`, `LABEL_NAMES`
- degradation (lazy, dask): `to_resolution`, `rotate`, `rebin`, `add_noise`, `degrade` (`gridkit.degradation`)
- observed spectra to the instrument: `fourmostify` (`gridkit.observed`)
- instruments: `gridkit.instruments`; synthesis: `gridkit.synth`; readers: `gridkit.io`

Layers, bottom up: `errors`, `files`, `schema`, `instruments`, `kernels` (pure numpy/scipy), `store` (the one
restartable writer), `degradation` and `observed` (lazy xarray wrappers and their store jobs), `synth` and `io`
(backends and readers), `cluster`; then `cli`, `commands` and `demo`, the only modules of gridkit that import the
packages built on it (`cinn`, `catalogs`): everything else here stands without them (tests/test_structure.py).
"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import BackendError, ConfigError, GridError, GridkitError, StoreError  # noqa: E402
from .schema import DEFAULT_LABELS, LABEL_NAMES, from_arrays, validate_grid  # noqa: E402
from .grid import open_grid, write_grid  # noqa: E402
from .degradation import add_noise, degrade, rebin, rotate, to_resolution  # noqa: E402
from .observed import fourmostify  # noqa: E402
from . import instruments  # noqa: E402
from . import io, synth  # noqa: E402

__all__ = [
    "__version__", "GridkitError", "GridError", "ConfigError", "StoreError", "BackendError",
    "DEFAULT_LABELS", "LABEL_NAMES", "from_arrays", "validate_grid", "open_grid", "write_grid",
    "to_resolution", "rotate", "rebin", "add_noise", "degrade", "fourmostify", "instruments", "io", "synth",
]
