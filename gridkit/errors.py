"""Exceptions of the package. Messages name the argument and the offending value."""


class GridkitError(Exception):
    """Base class of every error gridkit raises on purpose."""


class GridError(GridkitError, ValueError):
    """A grid, cube or survey that breaks the data model (dimensions, labels, wavelengths, fluxes)."""


class ConfigError(GridkitError, ValueError):
    """An option or configuration value that is out of range or unknown."""


class StoreError(GridkitError):
    """A store that exists when it should not, or was made by different inputs, or is incomplete."""


class ExtrapolationWarning(UserWarning):
    """Inputs outside what a model was trained on (e.g. S/N outside the training range): results are extrapolations."""


class BackendError(GridkitError, RuntimeError):
    """An external program or backend that is missing or failed."""
