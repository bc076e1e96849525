"""degrade and fourmostify resume by content: a rerun after an input changed equals a fresh run (the regions
whose inputs changed are written again), and a damaged input store is named with its chunk."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import gridkit
from gridkit.errors import GridError, StoreError
from gridkit.testing import assert_stores_identical, failing_regions

from test_degrade import base_grid

J = importlib.import_module("gridkit.degradation.jobs")
O = importlib.import_module("gridkit.observed")


def test_degrade_resumed_after_the_base_grid_changed_equals_a_fresh_run(tmp_path, monkeypatch):
    src = tmp_path / "base.zarr"
    gridkit.write_grid(base_grid(n=5), src, region_size=2)
    with failing_regions(J.DegradeRegion, [1]), pytest.raises(StoreError, match="1 region"):
        J.degrade_store(src, tmp_path / "cube.zarr", snr=[50], region_size=2, progress=False, on_error="record")
    changed = base_grid(n=5, depth=0.6)  # the base grid rebuilt with other spectra under the same path
    gridkit.write_grid(changed, src, region_size=2, overwrite=True)
    J.degrade_store(src, tmp_path / "cube.zarr", snr=[50], region_size=2, progress=False)
    J.degrade_store(src, tmp_path / "fresh.zarr", snr=[50], region_size=2, progress=False)
    assert_stores_identical(tmp_path / "cube.zarr", tmp_path / "fresh.zarr")


def _spectrum(path, depth=0.5, reverse=False):
    wl = np.arange(5100.0, 5800.0, 0.02)
    flux = 1 - depth * np.exp(-0.5 * ((wl - 5400.0) / 0.1) ** 2)
    if reverse:
        wl = wl[::-1]
    np.savetxt(path, np.column_stack([wl, flux]))
    return path


def test_fourmostify_refuses_a_bad_file_before_writing_and_reruns_by_content(tmp_path, monkeypatch):
    a, b = _spectrum(tmp_path / "a.txt"), _spectrum(tmp_path / "b.txt", reverse=True)  # b is broken
    opts = dict(input_resolving_power=80_000, arms="green", snr=100, region_size=1, progress=False)
    with pytest.raises(GridError, match="b.txt must increase"):
        O.fourmostify_store([a, b], tmp_path / "s.zarr", **opts)
    assert not (tmp_path / "s.zarr").exists()  # nothing half-written
    _spectrum(b)
    with failing_regions(O.jobs.FourmostifyRegion, [1]), pytest.raises(StoreError, match="1 region"):
        O.fourmostify_store([a, b], tmp_path / "s.zarr", **opts)
    _spectrum(a, depth=0.3)  # a changes before the rerun: the row written from it is stale now
    O.fourmostify_store([a, b], tmp_path / "s.zarr", **opts)
    O.fourmostify_store([a, b], tmp_path / "fresh.zarr", **opts)
    assert_stores_identical(tmp_path / "s.zarr", tmp_path / "fresh.zarr")


def _flip(chunk):
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))


def test_a_damaged_base_grid_is_named_by_degrade(tmp_path):
    src = tmp_path / "base.zarr"
    gridkit.write_grid(base_grid(n=4), src, region_size=2)
    _flip(src / "flux" / "c" / "1" / "0")
    with pytest.raises(StoreError, match=r"base.zarr is damaged: chunk flux/c/1/0: Zstd"):
        J.degrade_store(src, tmp_path / "cube.zarr", snr=[50], region_size=2, progress=False)
    assert not (tmp_path / "cube.zarr").exists()
    (src / "flux" / "c" / "0" / "0").unlink()
    with pytest.raises(StoreError, match=r"base.zarr is damaged: chunk flux/c/0/0 is missing"):
        J.degrade_store(src, tmp_path / "cube.zarr", snr=[50], region_size=2, progress=False)


def test_a_deleted_cube_chunk_is_named_when_the_cube_is_opened(tmp_path):
    src = tmp_path / "base.zarr"
    gridkit.write_grid(base_grid(n=4), src, region_size=2)
    cube = J.degrade_store(src, tmp_path / "cube.zarr", snr=[50], region_size=2, progress=False)
    (cube / "flux" / "c" / "1" / "0" / "0").unlink()
    with pytest.raises(StoreError, match=r"cube.zarr is damaged: chunk flux/c/1/0/0 is missing"):
        gridkit.open_grid(cube)
