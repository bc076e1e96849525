"""Helpers for testing code that writes gridkit stores (the project's tests use them; so can a user's).

- `store_differences(a, b)`: how two Zarr stores differ, chunk file by chunk file and attribute by attribute
- `assert_stores_identical(a, b)`: raise AssertionError listing the differences (resume = uninterrupted, a
  refactoring that must not change a byte, ...)
- `failing_regions(cls, regions)`: a job whose regions fail, to test that a rerun resumes it

Submodules: `observed` (grid spectra observed: RV, continuum, noise, flags), `fourmost_files` (4MOST L1 files),
`sunlike` (a Sun-like ESO SDP spectrum with known labels), `notebooks` (run and save notebooks/ as CI does).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterable

from ..store import RECORD_GROUP

#: attributes that name when, where or how a store was made, not what it holds
VOLATILE_ATTRS = ("created", "date_created", "command", "model_dir", "survey", "source")


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and RECORD_GROUP not in p.relative_to(root).parts}


def store_differences(a, b, *, ignore_attrs: Iterable[str] = VOLATILE_ATTRS) -> list[str]:
    """Every difference between the Zarr stores `a` and `b`: files present in one only, chunk files whose bytes
    differ, and metadata (zarr.json) that differs once the attributes `ignore_attrs` are set aside. The
    completion record (`_gridkit`) is not compared: it holds times."""
    a, b = Path(a), Path(b)
    ignore = set(ignore_attrs)
    fa, fb = _files(a), _files(b)
    out = [f"only in {a}: {f}" for f in sorted(fa - fb)] + [f"only in {b}: {f}" for f in sorted(fb - fa)]
    for rel in sorted(fa & fb):
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if rel.name != "zarr.json":
            if x != y:
                out.append(f"chunk {rel} differs")
            continue
        ja, jb = json.loads(x), json.loads(y)
        # consolidated metadata is a copy of every node's own zarr.json (compared one by one here, the record's times
        # aside): only whether a store has it counts
        if (ja.pop("consolidated_metadata", None) is None) != (jb.pop("consolidated_metadata", None) is None):
            out.append(f"metadata {rel} is consolidated in one store only")
        attrs_a, attrs_b = ja.pop("attributes", {}) or {}, jb.pop("attributes", {}) or {}
        if ja != jb:
            out.append(f"array metadata {rel} differs")
        for key in sorted((set(attrs_a) | set(attrs_b)) - ignore):
            if attrs_a.get(key) != attrs_b.get(key):
                out.append(f"attribute {key!r} of {rel.parent or '/'} differs: {attrs_a.get(key)!r} != {attrs_b.get(key)!r}")
    return out


@contextlib.contextmanager
def failing_regions(region_class, regions: Iterable[int], error: Exception | None = None):
    """Within the block, `region_class` (a job's make_region class, e.g. gridkit.degradation.jobs.DegradeRegion)
    raises `error` (default RuntimeError("node lost")) for the given region indices: an interrupted run, to test
    that a rerun resumes it."""
    real = region_class.__call__
    bad = set(regions)

    def call(self, i, sl):
        if i in bad:
            raise error or RuntimeError("node lost")
        return real(self, i, sl)

    region_class.__call__ = call
    try:
        yield
    finally:
        region_class.__call__ = real


def assert_stores_identical(a, b, *, ignore_attrs: Iterable[str] = VOLATILE_ATTRS) -> None:
    """AssertionError listing (up to 20 of) the differences between two stores, if any."""
    diff = store_differences(a, b, ignore_attrs=ignore_attrs)
    if diff:
        more = f"\n... and {len(diff) - 20} more" if len(diff) > 20 else ""
        raise AssertionError(f"stores {a} and {b} differ in {len(diff)} place(s):\n" + "\n".join(diff[:20]) + more)


__all__ = ["store_differences", "assert_stores_identical", "failing_regions", "VOLATILE_ATTRS"]
