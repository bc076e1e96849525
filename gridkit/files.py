"""Small file helpers every package uses: atomic replacement of a file, and values made JSON-able.

A file written through `atomic_output` / `atomic_write_text` is either the old one or the whole new one, never
a torn mix: the new content goes to a temporary file next to it (same directory, so the final `os.replace` is
an atomic rename on POSIX), and a failure while writing removes the temporary file and leaves the old one.
"""
from __future__ import annotations

import contextlib
import math
import os
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np


def _tmp_name(path: Path) -> Path:
    # unique per writer: two processes replacing the same file never share (or delete) each other's temporary
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_output(path) -> Iterator[Path]:
    """Yield a temporary path to write the new content of `path` to; on leaving the block without an
    exception it replaces `path` atomically, otherwise it is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_text(path, text: str) -> Path:
    """Replace the file `path` by `text` atomically (see the module docstring); returns the path."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_bytes(path, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_output(out, inputs, what: str = "--out") -> Path:
    """Refuse (StoreError) an output path that is one of `inputs`, contains one (an input lies inside it) or lies
    inside one, comparing resolved paths (symlinks followed): no command may delete or overwrite its own inputs,
    with --overwrite or without. Returns the output path. `inputs`: paths (None entries are skipped)."""
    from .errors import StoreError

    out = Path(out)
    target = out.resolve()
    for item in inputs:
        if item is None:
            continue
        src = Path(item).resolve()
        if target == src:
            raise StoreError(f"{what} {out} is the input {item}; choose another output path")
        if src.is_relative_to(target):
            raise StoreError(f"{what} {out} contains the input {item}; choose an output outside the inputs")
        if target.is_relative_to(src):
            raise StoreError(f"{what} {out} lies inside the input {item}; choose an output outside the inputs")
    return out


def sha256_file(path) -> str:
    """sha256 of a file's bytes (hex), read in blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def jsonable(obj):
    """`obj` with numpy scalars and arrays, tuples and paths turned into plain JSON types; non-finite floats
    become None (JSON has no NaN or infinity); other objects are kept (json.dumps decides)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


__all__ = ["atomic_output", "atomic_write_text", "atomic_write_bytes", "check_output", "jsonable", "sha256_file"]
