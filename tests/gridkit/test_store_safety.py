"""The store writer keeps data safe (gridkit.store): an output never is, holds or lies inside an input; an
overwrite replaces the old output only once the new one is whole; a resume redoes the regions whose inputs
changed (and nothing else); a flipped bit, a truncated or a deleted chunk is reported with the store and the
chunk; two jobs on one output: the second is refused, the first's store stays valid."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from gridkit import store
from gridkit.errors import StoreError
from gridkit.testing import assert_stores_identical, store_differences


def _template(n=9, w=5):
    import dask.array as da

    return xr.Dataset({"flux": (("model", "wavelength"), da.zeros((n, w), dtype=np.float32, chunks=(3, w)))},
                      coords={"model": np.arange(n)})


class Rows:
    """A region: rows filled from `values` (the job's input, standing for a file or a store)."""

    def __init__(self, values, fail_on=(), calls=None):
        self.values, self.fail_on, self.calls = np.asarray(values, dtype=np.float32), set(fail_on), calls

    def __call__(self, i, sl):
        if self.calls is not None:
            self.calls.append(i)
        if i in self.fail_on:
            raise RuntimeError("node lost")
        return xr.Dataset({"flux": (("model", "wavelength"), self.values[sl])}, coords={"model": np.arange(sl.start, sl.stop)})

    def inputs(self, i, sl):
        return store.digest(self.values[sl])


def _run(path, values, overwrite=False, fail_on=(), calls=None, fp="job"):
    rs, _ = store.create(path, _template(), dim="model", region_size=3, fingerprint=fp, overwrite=overwrite)
    return store.write_regions(rs, Rows(values, fail_on, calls), on_error="record", progress=False)


def test_resume_redoes_exactly_the_regions_whose_inputs_changed(tmp_path):
    values = np.arange(45, dtype=np.float32).reshape(9, 5)
    assert _run(tmp_path / "a.zarr", values, fail_on={1}) == {1: "RuntimeError: node lost"}
    changed = values.copy()
    changed[7, 2] = -1.0  # an input of region 2 changes before the rerun (as a fixed spectrum file would)
    calls = []
    assert _run(tmp_path / "a.zarr", changed, calls=calls) == {}
    assert sorted(calls) == [1, 2]  # the failed region and the one whose input changed; region 0 is kept
    _run(tmp_path / "fresh.zarr", changed)
    assert_stores_identical(tmp_path / "a.zarr", tmp_path / "fresh.zarr")  # resume = fresh
    calls = []
    assert _run(tmp_path / "a.zarr", changed, calls=calls) == {} and calls == []  # an unchanged rerun recomputes nothing


def test_an_interrupted_overwrite_leaves_the_old_output_whole(tmp_path):
    old = np.ones((9, 5), dtype=np.float32)
    _run(tmp_path / "a.zarr", old)
    _run(tmp_path / "ref.zarr", old)
    new = 2 * old
    assert _run(tmp_path / "a.zarr", new, overwrite=True, fp="other", fail_on={2}) == {2: "RuntimeError: node lost"}
    assert_stores_identical(tmp_path / "a.zarr", tmp_path / "ref.zarr")  # untouched while the new one is incomplete
    np.testing.assert_array_equal(store.open_complete(tmp_path / "a.zarr").flux.values, old)
    calls = []
    assert _run(tmp_path / "a.zarr", new, overwrite=True, fp="other", calls=calls) == {}
    assert calls == [2]  # the overwrite itself resumed
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "a.zarr", consolidated=False).flux.values, new)
    assert not list(tmp_path.glob(".a.zarr.overwrite")) and not list(tmp_path.glob(".a.zarr.replaced"))


def test_a_swap_interrupted_between_its_renames_is_finished(tmp_path):
    _run(tmp_path / "a.zarr", np.ones((9, 5)))
    rs, _ = store.create(tmp_path / "a.zarr", _template(), dim="model", region_size=3, fingerprint="new", overwrite=True)
    for i, sl in enumerate(rs.regions):  # the new store is written aside, but not yet swapped in
        rs.write_region(i, Rows(np.full((9, 5), 3.0))(i, sl))
    (tmp_path / "a.zarr").rename(tmp_path / ".a.zarr.replaced")  # killed after the first rename of the swap
    store.release(tmp_path / "a.zarr")
    ds = store.open_complete(tmp_path / "a.zarr")  # a reader finishes the swap: the new store is complete
    np.testing.assert_array_equal(ds.flux.values, 3.0)


def test_output_never_is_holds_or_lies_inside_an_input(tmp_path):
    data = tmp_path / "data"
    (data / "spec").mkdir(parents=True)
    src = data / "spec" / "in.zarr"
    _run(src, np.ones((9, 5)))
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    for out, word in ((src, "is the input"), (data, "contains the input"), (src / "sub.zarr", "lies inside the input")):
        with pytest.raises(StoreError, match=word):
            store.create(out, _template(), dim="model", region_size=3, fingerprint="x", overwrite=True, inputs=[src])
    link = tmp_path / "link.zarr"
    link.symlink_to(src)
    with pytest.raises(StoreError, match="is the input"):  # symlinks are followed
        store.create(link, _template(), dim="model", region_size=3, fingerprint="x", overwrite=True, inputs=[src])
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def _damage(path, how):
    chunk = path / "flux" / "c" / "1" / "0"
    if how == "flip":
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0x10
        chunk.write_bytes(bytes(data))
    elif how == "truncate":
        chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 2])
    else:
        chunk.unlink()
    return "flux/c/1/0"


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_damaged_chunks_are_named(tmp_path, how):
    rng = np.random.default_rng(0)
    _run(tmp_path / "a.zarr", rng.random((9, 5)))
    key = _damage(tmp_path / "a.zarr", how)
    with pytest.raises(StoreError, match=rf"a.zarr is damaged: chunk {key}"):
        with store.reading(tmp_path / "a.zarr", "grid"):
            store.open_complete(tmp_path / "a.zarr", "grid").flux.values


def test_every_chunk_is_written_with_a_checksum(tmp_path):
    import json

    _run(tmp_path / "a.zarr", np.zeros((9, 5)))  # all zero = the fill value: written anyway, so absence means loss
    assert len(list((tmp_path / "a.zarr" / "flux" / "c").rglob("*"))) >= 3
    codecs = json.loads((tmp_path / "a.zarr" / "flux" / "zarr.json").read_text())["codecs"]
    assert {"name": "zstd", "configuration": {"level": 0, "checksum": True}} in codecs


HOLD = """
import sys, time
from gridkit import store
store._lock(__import__("pathlib").Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_job_on_one_output_is_refused(tmp_path):
    path = tmp_path / "a.zarr"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match=r"a.zarr is in use by another job \(pid \d+"):
            _run(path, np.ones((9, 5)))
        assert not path.exists()  # the refused job wrote nothing
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert _run(path, np.ones((9, 5))) == {}  # the lock dies with its holder
    assert store_differences(path, path) == []
