"""Model directories and training checkpoints: safetensors for tensors, JSON for everything else.

No pickles anywhere: `torch.load` of a pickle can run arbitrary code, so a model directory downloaded
from elsewhere could. safetensors holds raw tensors only, JSON holds plain data; loading never executes
anything from the directory. Every tensor file's sha256 is recorded in the JSON and checked on load, so a
truncated, corrupt or swapped file is a clear error, not a silently wrong model; a file whose sha256 is not
recorded is refused too (a missing record never skips the check), and the bytes hashed are the bytes loaded.

model_dir/
  model.json          config, label names, target transform, input scaler, training bounds, instrument,
                      training-data hash (content included), per-split digests of the models' (id, labels),
                      package versions, sha256 of the tensor files, training summary
  model.safetensors   weights of the best epoch + wavelength grid + per-pixel flux mean/std
  split.json          model ids of the train/test/validation split, and each model's (id, labels) digest
  log.csv             one row per epoch: losses, learning rate, time
  checkpoint/         last.safetensors (weights + Adam state), best.safetensors, state.json (resume: their
                      sha256 and the training-data hash, checked before continuing)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from gridkit.errors import GridkitError, StoreError
from gridkit.files import atomic_output, atomic_write_text, sha256_file

FORMAT = "gridkit-cinn"
#: 2: `subnet_layers` counts a subnet's fully connected layers including input and output (1: hidden layers)
FORMAT_VERSION = 2
MODEL_JSON, MODEL_WEIGHTS = "model.json", "model.safetensors"
#: what makes a directory an ensemble of model directories (cinn.ensemble)
ENSEMBLE_JSON = "ensemble.json"
CKPT_DIR, LAST, BEST, STATE = "checkpoint", "last.safetensors", "best.safetensors", "state.json"
EXTRA = "_gridkit."  # prefix of the non-weight tensors in model.safetensors


class ModelDirError(StoreError):
    """A model directory that is missing, incomplete, corrupt or of another format."""


class TrainingError(GridkitError, RuntimeError):
    """Training cannot go on (e.g. losses stay non-finite)."""


def _atomic_json(path: Path, doc: dict) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> str:
    """Write tensors atomically with safetensors; return the file's sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_output(path) as tmp:
        save_file(_unshared(tensors), str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return sha256_file(path)


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors as safetensors takes them (contiguous, on the CPU, no two sharing memory): copied only where
    needed (a view, a tensor whose storage another one also uses). Copying all of them held the published network's
    weights and Adam state (1.1 GB) twice while a checkpoint was written, the training process's peak."""
    out, seen = {}, set()
    for k, v in tensors.items():
        v = v.detach().cpu()
        if v.numel() == 0:
            out[k] = v.contiguous()
            continue
        storage = v.untyped_storage()
        whole = v.is_contiguous() and v.storage_offset() == 0 and storage.nbytes() == v.numel() * v.element_size()
        if not whole or storage.data_ptr() in seen:
            v = v.contiguous().clone()
        seen.add(v.untyped_storage().data_ptr())
        out[k] = v
    return out


def read_tensors(path: Path, expected_sha256, recorded_in: str) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors, sha256) of a safetensors file, refused (ModelDirError naming the file) unless its sha256 equals
    `expected_sha256`, the one recorded when it was written (`recorded_in` names where: a missing record is
    refused too, never a skipped check). The bytes hashed are the bytes loaded (one read)."""
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise ModelDirError(f"{path} is missing")
    if expected_sha256 is None:
        raise ModelDirError(f"{path} has no sha256 recorded in {recorded_in}: its integrity cannot be checked, so it is not "
                            "loaded (a model directory written by gridkit records one for every tensor file)")
    if not (isinstance(expected_sha256, str) and len(expected_sha256) == 64 and all(c in "0123456789abcdef" for c in expected_sha256)):
        raise ModelDirError(f"{recorded_in} records {expected_sha256!r} as the sha256 of {path}, which is not a sha256 (64 hex digits)")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise ModelDirError(f"{path} is corrupt or was replaced: its sha256 {digest[:16]}... differs from the one recorded in "
                            f"{recorded_in} when it was written ({expected_sha256[:16]}...)")
    try:
        return load(data), digest
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own types
        raise ModelDirError(f"{path} is not a readable safetensors file: {exc}") from exc


def load_tensors(path: Path, expected_sha256, recorded_in: str = "its model directory's JSON") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file checked against its recorded sha256 (`read_tensors`)."""
    return read_tensors(path, expected_sha256, recorded_in)[0]


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


def read_model(model_dir, *, return_digest: bool = False):
    """(meta, state_dict, extras) of a model directory, checked for completeness and integrity: the weights file's
    sha256 must be recorded in model.json and equal, and model_id must be its first 16 hex digits. With
    `return_digest`, (meta, state_dict, extras, sha256 of the weights file as loaded)."""
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
    if not isinstance(meta["files"], dict):
        raise ModelDirError(f"{model_dir / MODEL_JSON} is corrupt: 'files' must map file names to sha256, got {meta['files']!r}")
    meta["config"] = upgrade_config(meta["config"], int(meta.get("format_version", 1)))
    tensors, digest = read_tensors(model_dir / MODEL_WEIGHTS, meta["files"].get(MODEL_WEIGHTS), f"{model_dir / MODEL_JSON} ('files')")
    if str(meta.get("model_id")) != digest[:16]:
        raise ModelDirError(f"{model_dir / MODEL_JSON} gives model_id {meta.get('model_id')!r}, but the weights file's sha256 starts "
                            f"{digest[:16]}: the id does not name these weights")
    extras = {k[len(EXTRA):]: v.numpy() for k, v in tensors.items() if k.startswith(EXTRA)}
    for key in ("wavelength", "flux_mean", "flux_std"):
        if key not in extras:
            raise ModelDirError(f"{model_dir / MODEL_WEIGHTS} is corrupt: tensor {EXTRA + key!r} is missing")
    state = {k: v for k, v in tensors.items() if not k.startswith(EXTRA)}
    return (meta, state, extras, digest) if return_digest else (meta, state, extras)


def upgrade_config(config: dict, version: int) -> dict:
    """A config dict as written by format `version`, in this version's meaning (the same network)."""
    config = dict(config)
    if version < 2 and "subnet_layers" in config:
        config["subnet_layers"] = int(config["subnet_layers"]) + 1  # format 1 counted hidden layers only
    return config


# -- output directories ---------------------------------------------------------------------------
@contextlib.contextmanager
def created_output(out, keep: Callable[[BaseException], bool] | None = None) -> Iterator[Path]:
    """Create the directory `out` (and its missing parents) for a run. If the block raises, remove what the run
    created: `out` and the parents it made where `out` did not exist, otherwise only the entries of `out` that
    were not there before; never a folder that existed before or its former contents. `keep(exc)` True keeps
    the partial output (e.g. a checkpoint to resume from)."""
    from gridkit.errors import StoreError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"output {out} exists and is not a directory")
    made = []  # out and the parents this run creates, innermost first
    p = out
    while not p.exists():
        made.append(p)
        p = p.parent
    before = set(os.listdir(out)) if not made else set()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException as exc:
        if keep is None or not keep(exc):
            _remove_created(out, made, before)
        raise


def _remove_created(out: Path, made: list[Path], before: set[str]) -> None:
    if made:
        shutil.rmtree(out, ignore_errors=True)
        for parent in made[1:]:  # parents made for it, if still empty
            with contextlib.suppress(OSError):
                parent.rmdir()
        return
    for name in set(os.listdir(out)) - before:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# -- training checkpoints -------------------------------------------------------------------------
def save_checkpoint(model_dir, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict,
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write checkpoint/last.safetensors (weights + Adam state + `extra` tensors, e.g. the averaged weights) and
    checkpoint/state.json."""
    ckpt = Path(model_dir) / CKPT_DIR
    tensors = {"model." + k: v for k, v in model.state_dict().items()}
    tensors.update({"extra." + k: v for k, v in (extra or {}).items()})
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


def load_checkpoint(model_dir, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    extra: dict[str, torch.Tensor] | None = None) -> dict:
    """Restore weights and Adam state from checkpoint/ (and the `extra` tensors saved beside them into the dict
    `extra`); return the saved training state."""
    ckpt = Path(model_dir) / CKPT_DIR
    state = read_json(ckpt / STATE)
    files = state.get("files") if isinstance(state.get("files"), dict) else {}
    tensors = load_tensors(ckpt / LAST, files.get(LAST), f"{ckpt / STATE} ('files')")
    if int(state.get("best_epoch", 0) or 0) > 0 or (ckpt / BEST).exists():
        load_best(model_dir, files.get(BEST))  # the best epoch's weights become the model: check them now, not at the end
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if extra is not None:
        extra.update({k[6:]: v for k, v in tensors.items() if k.startswith("extra.")})
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
    ckpt = Path(model_dir) / CKPT_DIR
    return load_tensors(ckpt / BEST, expected_sha256, f"{ckpt / STATE} ('files')")


__all__ = ["ModelDirError", "TrainingError", "write_model", "read_model", "read_tensors", "load_tensors", "save_checkpoint",
           "load_checkpoint", "save_best", "load_best", "package_versions", "upgrade_config", "created_output"]
