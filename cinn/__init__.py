"""cinn: the conditional invertible neural network of gridkit (config -> model -> data -> train -> checkpoint
-> posterior). Heavy modules (torch, FrEIA) are imported on first use of the names below."""
from __future__ import annotations

import importlib

_EXPORTS = {
    "CINNConfig": "config", "as_config": "config",
    "CINN": "model", "FastReverse": "model",
    "LabelTransform": "transforms", "InputScaler": "transforms",
    "split_models": "data", "read_split": "data", "CubeStream": "data",
    "ModelDirError": "checkpoint", "TrainingError": "checkpoint",
    "load": "ensemble", "Posterior": "posterior", "QUANTILES": "posterior",
    "Ensemble": "ensemble", "write_ensemble": "ensemble",
    "summarize_dataset": "lazy", "write_catalog": "lazy",
}

# `cinn.train` is both a submodule and the training function: bind the function eagerly, after the
# submodule import (which sets the attribute once), so `cinn.train(...)` always is the function.
from .train import train  # noqa: E402, F401 - exported through __all__ (built with sorted, which ruff does not read)

__all__ = sorted([*_EXPORTS, "train"])


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
