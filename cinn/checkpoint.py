"""Model directories and training checkpoints: safetensors for tensors, JSON for everything else.

No pickles anywhere: `torch.load` of a pickle can run arbitrary code, so a model directory downloaded
from elsewhere could. safetensors holds raw tensors only, JSON holds plain data; loading never executes
anything from the directory. Every tensor file's sha256 is recorded in the JSON and checked on load, so a
truncated or corrupt file is a clear error, not a silently wrong model.

model_dir/
  model.json          config, label names, target transform, input scaler, training bounds, instrument,
                      training-data hash, package versions, sha256 of the tensor files, training summary
  model.safetensors   weights of the best epoch + wavelength grid + per-pixel flux mean/std
  split.json          model ids of the train/test/validation split
  log.csv             one row per epoch: losses, learning rate, time
  checkpoint/         last.safetensors (weights + Adam state), best.safetensors, state.json (resume)
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from gridkit.errors import GridkitError, StoreError
from gridkit.files import atomic_output, atomic_write_text

FORMAT = "gridkit-cinn"
#: 2: `subnet_layers` counts a subnet's fully connected layers including input and output (1: hidden layers)
FORMAT_VERSION = 2
MODEL_JSON, MODEL_WEIGHTS = "model.json", "model.safetensors"
CKPT_DIR, LAST, BEST, STATE = "checkpoint", "last.safetensors", "best.safetensors", "state.json"
EXTRA = "_gridkit."  # prefix of the non-weight tensors in model.safetensors


class ModelDirError(StoreError):
    """A model directory that is missing, incomplete, corrupt or of another format."""


class TrainingError(GridkitError, RuntimeError):
    """Training cannot go on (e.g. losses stay non-finite)."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_json(path: Path, doc: dict) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> str:
    """Write tensors atomically with safetensors; return the file's sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with atomic_output(path) as tmp:
        save_file(clean, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return sha256_file(path)


def load_tensors(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelDirError(f"{path} is missing")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise ModelDirError(f"{path} is corrupt: its sha256 differs from the one recorded when it was written")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types
        raise ModelDirError(f"{path} is not a readable safetensors file: {exc}") from exc


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelDirError(f"{path} is missing")
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise ModelDirError(f"{path} is corrupt (not valid JSON): {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelDirError(f"{path} is corrupt: expected a JSON object")
    return doc


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("gridkit", "torch", "FrEIA", "numpy", "xarray", "zarr", "safetensors"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "unknown"
    return out


# -- the model directory --------------------------------------------------------------------------
def write_model(model_dir, state_dict: dict[str, torch.Tensor], *, wavelength: np.ndarray, flux_mean: np.ndarray,
                flux_std: np.ndarray, meta: dict) -> str:
    """Write model.safetensors + model.json; return the model id (sha256 of the weights file, 16 hex)."""
    model_dir = Path(model_dir)
    tensors = dict(state_dict)
    tensors[EXTRA + "wavelength"] = torch.from_numpy(np.array(wavelength, dtype=np.float64))
    tensors[EXTRA + "flux_mean"] = torch.from_numpy(np.array(flux_mean, dtype=np.float32))
    tensors[EXTRA + "flux_std"] = torch.from_numpy(np.array(flux_std, dtype=np.float32))
    digest = save_tensors(model_dir / MODEL_WEIGHTS, tensors, {"format": FORMAT})
    doc = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION, "files": {MODEL_WEIGHTS: digest}, "model_id": digest[:16]}
    _atomic_json(model_dir / MODEL_JSON, doc)
    return digest[:16]


def read_model(model_dir) -> tuple[dict, dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """(meta, state_dict, extras) of a model directory, checked for completeness and integrity."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"model_dir {model_dir} does not exist or is not a directory")
    meta = read_json(model_dir / MODEL_JSON)
    if meta.get("format") != FORMAT:
        raise ModelDirError(f"{model_dir / MODEL_JSON} is not a gridkit cINN model (format {meta.get('format')!r})")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise ModelDirError(f"{model_dir} has format version {meta.get('format_version')}, newer than this gridkit reads ({FORMAT_VERSION})")
    for key in ("config", "label_names", "label_transform", "input_scaler", "bounds", "files"):
        if key not in meta:
            raise ModelDirError(f"{model_dir / MODEL_JSON} is corrupt: key {key!r} is missing")
    meta["config"] = upgrade_config(meta["config"], int(meta.get("format_version", 1)))
    tensors = load_tensors(model_dir / MODEL_WEIGHTS, meta["files"].get(MODEL_WEIGHTS))
    extras = {k[len(EXTRA):]: v.numpy() for k, v in tensors.items() if k.startswith(EXTRA)}
    for key in ("wavelength", "flux_mean", "flux_std"):
        if key not in extras:
            raise ModelDirError(f"{model_dir / MODEL_WEIGHTS} is corrupt: tensor {EXTRA + key!r} is missing")
    state = {k: v for k, v in tensors.items() if not k.startswith(EXTRA)}
    return meta, state, extras


def upgrade_config(config: dict, version: int) -> dict:
    """A config dict as written by format `version`, in this version's meaning (the same network)."""
    config = dict(config)
    if version < 2 and "subnet_layers" in config:
        config["subnet_layers"] = int(config["subnet_layers"]) + 1  # format 1 counted hidden layers only
    return config


# -- training checkpoints -------------------------------------------------------------------------
def save_checkpoint(model_dir, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Write checkpoint/last.safetensors (weights + Adam state) and checkpoint/state.json."""
    ckpt = Path(model_dir) / CKPT_DIR
    tensors = {"model." + k: v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, pstate in opt["state"].items():
        for name, value in pstate.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"opt.{pid}.{name}"] = t
    digest = save_tensors(ckpt / LAST, tensors)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
    _atomic_json(ckpt / STATE, {**state, "format_version": FORMAT_VERSION, "param_groups": groups,
                                "files": {**state.get("files", {}), LAST: digest}})


def save_best(model_dir, model: torch.nn.Module) -> str:
    return save_tensors(Path(model_dir) / CKPT_DIR / BEST, model.state_dict())


def load_checkpoint(model_dir, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore weights and Adam state from checkpoint/; return the saved training state."""
    ckpt = Path(model_dir) / CKPT_DIR
    state = read_json(ckpt / STATE)
    tensors = load_tensors(ckpt / LAST, state.get("files", {}).get(LAST))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state: dict = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    groups = state["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    return state


def load_best(model_dir, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    return load_tensors(Path(model_dir) / CKPT_DIR / BEST, expected_sha256)


__all__ = ["ModelDirError", "TrainingError", "write_model", "read_model", "save_checkpoint", "load_checkpoint",
           "save_best", "load_best", "package_versions", "sha256_file", "upgrade_config"]
