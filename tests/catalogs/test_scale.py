"""Catalogs at survey scale, checked on a few thousand stars: the sorted star_id index finds exactly the rows a
naive search finds (and is rebuilt when the catalog changed under it), block-wise queries select exactly the stars
numpy selects, streamed exports hold exactly the rows of an in-memory export, the streaming merge equals a naive
concatenation, and sharded stores (one shard per region) are written and checked whole."""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import xarray as xr
import zarr
from catalog_fakes import make_catalog

import catalogs
from catalogs import index as cindex
from catalogs import stream
from catalogs.schema import catalog_encoding
from gridkit import store as gstore
from gridkit.errors import GridError, StoreError

export_module = importlib.import_module("catalogs.export")
merge_module = importlib.import_module("catalogs.merge")

N, REGION, CHUNK = 2000, 512, 128


def _ids(n, seed, prefix="S"):
    rng = np.random.default_rng(seed)
    ids = np.array([f"{prefix}{k:07d}" for k in rng.permutation(10 * n)[:n]], dtype=object)
    ids[:2] = [f"{prefix}-{'x' * 40}", f"{prefix}-"]  # a wider id and a shorter one
    return ids


def sharded_catalog(path, n=N, seed=0, prefix="S", region=REGION, chunk=CHUNK):
    """A catalog written like `gridkit infer` writes one (region writer), one shard of `region` stars per region."""
    ds = make_catalog(n, seed=seed, prefix=prefix)
    ds = ds.assign(star_id=("star", _ids(n, seed, prefix), ds.star_id.attrs))
    lazy = ds.drop_vars("star_id").chunk({"star": region})
    lazy["star_id"] = ds.star_id  # in memory: written with the template, as infer does
    gstore.write_dataset(lazy, path, dim="star", region_size=region, progress=False, encoding=catalog_encoding(lazy, region, chunk=chunk))
    return ds


@pytest.fixture
def big(tmp_path):
    raw = sharded_catalog(tmp_path / "cat.zarr")
    return tmp_path / "cat.zarr", raw


def test_sharded_store_is_one_file_per_region_and_variable_and_checked_whole(big):
    path, raw = big
    arr = zarr.open_array(str(path / "teff"), mode="r")
    assert arr.shards == (REGION,) and arr.chunks == (CHUNK,)
    assert sorted(os.listdir(path / "teff" / "c")) == ["0", "1", "2", "3"]  # 2000 stars: 4 shards, not 16 chunk files
    assert gstore.missing_chunks(path) == []
    cat = catalogs.open(path)
    np.testing.assert_array_equal(cat.teff.values, raw.teff.values)
    assert list(cat.star_id.values) == list(raw.star_id.values)
    os.remove(path / "teff" / "c" / "1")
    with pytest.raises(StoreError, match="teff/c/1"):
        catalogs.open(path)


def test_lookup_equals_a_naive_search_in_any_order_and_names_missing_ids(big):
    path, raw = big
    cat = catalogs.open(path)
    assert cindex.status(path) == "missing"  # open reads no id
    ids = list(raw.star_id.values)
    rng = np.random.default_rng(1)
    wanted = [ids[k] for k in rng.choice(N, 200, replace=False)] + ids[:3] + [ids[-1]]
    naive = [ids.index(w) for w in wanted]
    out = catalogs.select(cat, star_id=wanted)
    assert list(out.star_id.values) == wanted
    np.testing.assert_array_equal(out.teff.values, raw.teff.values[naive])
    assert cindex.status(path) == "current"  # built on first use and kept in the store
    assert list(cat.sel(star_id=wanted[:5]).star_id.values) == wanted[:5]
    assert float(cat.sel(star_id=ids[7]).teff) == pytest.approx(float(raw.teff.values[7]), nan_ok=True)
    with pytest.raises(GridError, match="nope"):
        catalogs.select(cat, star_id=[ids[0], "nope"])
    with pytest.raises(KeyError, match="nope"):
        cat.sel(star_id=["nope"])
    # a fresh process' view: the stored index, read lazily
    cindex._CACHE.clear()
    assert list(catalogs.select(catalogs.open(path), star_id=wanted[::-1]).star_id.values) == wanted[::-1]


def test_one_star_or_a_run_of_neighbours_is_a_slice_with_the_same_rows(big):
    """One id (or ids of neighbouring rows, in order) selects by a slice, which reads one Zarr chunk per column instead
    of each whole dask chunk: the result must be the same rows, index included (a second lookup on it works)."""
    path, raw = big
    cat = catalogs.open(path)
    ids = list(raw.star_id.values)
    assert cindex.as_slice(np.array([7])) == slice(7, 8) and cindex.as_slice(np.array([3, 4, 5])) == slice(3, 6)
    assert isinstance(cindex.as_slice(np.array([5, 4])), np.ndarray) and isinstance(cindex.as_slice(np.array([3, 5])), np.ndarray)
    for rows in ([1234], [600, 601, 602]):
        wanted = [ids[k] for k in rows]
        one = catalogs.select(cat, star_id=wanted).load()
        ref = cat.isel(star=np.asarray(rows)).load()
        xr.testing.assert_identical(one.drop_indexes("star_id").reset_coords("star_id"), ref.drop_indexes("star_id").reset_coords("star_id"))
        np.testing.assert_array_equal(one.teff.values, raw.teff.values[rows])
        xr.testing.assert_identical(cat.sel(star_id=wanted).load().drop_indexes("star_id"), one.drop_indexes("star_id"))
        again = catalogs.select(one, star_id=wanted[::-1])  # its index maps store rows to its own rows
        np.testing.assert_array_equal(again.teff.values, raw.teff.values[rows[::-1]])


def test_lookup_of_non_ascii_ids_in_a_plain_zarr_catalog(tmp_path):
    from catalog_fakes import write_catalog

    raw = make_catalog(300)
    ids = np.array([f"Ω{k:04d}-ü" if k % 3 else f"S{k}" for k in range(300)][::-1], dtype=object)
    raw = raw.assign(star_id=("star", ids, raw.star_id.attrs))
    cat = catalogs.open(write_catalog(raw, tmp_path / "plain.zarr"))
    wanted = [ids[4], ids[3], ids[299], ids[0]]
    assert list(catalogs.select(cat, star_id=wanted).star_id.values) == wanted
    assert list(cat.sel(star_id=wanted).snr.values) == list(raw.snr.values[[4, 3, 299, 0]])


def test_lookup_on_a_query_result_maps_back_to_its_rows(big):
    path, raw = big
    cat = catalogs.open(path)
    sel = catalogs.query(cat, "snr > 150")
    keep = np.flatnonzero(raw.snr.values > 150)
    some = [raw.star_id.values[k] for k in keep[[5, 0, 17]]]
    out = catalogs.select(sel, star_id=some)
    assert list(out.star_id.values) == some
    np.testing.assert_array_equal(out.snr.values, raw.snr.values[keep[[5, 0, 17]]])
    outside = raw.star_id.values[np.flatnonzero(raw.snr.values <= 150)[0]]
    with pytest.raises(GridError, match="not in the catalog"):
        catalogs.select(sel, star_id=[outside])


def test_a_stale_index_is_rebuilt_and_a_wrong_one_never_trusted(big):
    path, _ = big
    catalogs.build_index(path)
    assert cindex.status(path) == "current"
    # the ids change under the index (a tool rewrites star_id): the index is stale and rebuilt on use
    new = np.array([f"R{k:06d}" for k in range(N)], dtype=object)
    zarr.open_array(str(path / "star_id"), mode="r+")[:] = new
    assert cindex.status(path) == "stale"
    assert list(catalogs.select(catalogs.open(path), star_id=["R000042", "R001999"]).star_id.values) == ["R000042", "R001999"]
    assert cindex.status(path) == "current"
    # an index whose identity matches but whose rows are wrong: the lookup reads the ids back and rebuilds it
    index = cindex.read_sorted(path)
    index.rows = index.rows[::-1].copy()
    cindex.write(path, index)
    cindex._CACHE.clear()
    out = catalogs.select(catalogs.open(path), star_id=["R000042"])
    assert list(out.star_id.values) == ["R000042"] and int(out.star.values[0]) == 42


def test_blockwise_query_equals_numpy(big):
    path, raw = big
    cat = catalogs.open(path)
    expr = "not flag_extrapolated and (logg >= 4 or teff_p84 - teff_p16 < 200) and feh < -1"
    q = raw.teff_quantiles.values
    want = ~raw.flag_extrapolated.values & ((raw.logg.values >= 4) | (q[:, 3] - q[:, 1] < 200)) & (raw.feh.values < -1)
    for rows in (None, 300, 5000):
        np.testing.assert_array_equal(catalogs.query_mask(cat, expr, rows=rows), want)
    out = catalogs.query(cat, expr)
    assert list(out.star_id.values) == list(raw.star_id.values[want])
    np.testing.assert_array_equal(out.teff_quantiles.values, raw.teff_quantiles.values[want])
    np.testing.assert_array_equal(out.star.values, np.flatnonzero(want))
    assert catalogs.query_mask(cat, "true").all()


@pytest.mark.parametrize("name", ["out.fits.gz", "out.parquet", "out.ecsv"])
def test_streamed_export_equals_the_in_memory_export_row_for_row(big, tmp_path, name):
    path, raw = big
    sel = catalogs.query(catalogs.open(path), "teff > 4000")
    export_module.write_table(catalogs.to_table(sel), tmp_path / f"mem_{name}")
    stream.export(sel, tmp_path / f"st_{name}", rows=300)  # blocks that straddle shards and chunks
    a, b = catalogs.read_table(tmp_path / f"mem_{name}"), catalogs.read_table(tmp_path / f"st_{name}")
    assert a.colnames == b.colnames and len(a) == len(b) == int((raw.teff.values > 4000).sum())
    for c in a.colnames:
        assert a[c].dtype == b[c].dtype, c
        np.testing.assert_array_equal(np.asarray(a[c]), np.asarray(b[c]), err_msg=c)
        assert (a[c].unit, a[c].description) == (b[c].unit, b[c].description)
    assert a.meta == b.meta
    assert not [p for p in os.listdir(tmp_path) if "stream" in p]  # no scratch left


def test_export_with_where_and_columns_streams_and_votable_still_works(big, tmp_path):
    path, raw = big
    cat = catalogs.open(path)
    keep = raw.feh.values < -2
    for name in ("sel.parquet", "sel.vot"):
        out = catalogs.export(cat, tmp_path / name, columns=["teff", "teff_p16", "feh"], where="feh < -2")
        table = catalogs.read_table(out)
        assert table.colnames == ["star_id", "teff", "teff_p16", "feh"]
        assert list(table["star_id"]) == list(raw.star_id.values[keep])
        np.testing.assert_array_equal(np.asarray(table["teff_p16"]), raw.teff_quantiles.values[keep, 1])


def test_streaming_merge_equals_a_naive_merge_and_writes_its_index(tmp_path, monkeypatch):
    monkeypatch.setattr(merge_module, "SHARD_ROWS", 1024)
    monkeypatch.setattr(merge_module, "CHUNK_ROWS", 256)
    a = sharded_catalog(tmp_path / "a.zarr", 1500, seed=0, prefix="A")
    b = sharded_catalog(tmp_path / "b.zarr", 1000, seed=1, prefix="A")  # ids drawn from the same range: duplicates
    ids_a, ids_b = list(a.star_id.values), list(b.star_id.values)
    dup = set(ids_a) & set(ids_b)
    assert dup
    with pytest.raises(GridError, match="appear in more than one input"):
        catalogs.merge([tmp_path / "a.zarr", tmp_path / "b.zarr"], tmp_path / "m.zarr")
    merged = catalogs.merge([tmp_path / "a.zarr", tmp_path / "b.zarr"], tmp_path / "m.zarr", on_duplicate="first")
    keep_b = [k for k, s in enumerate(ids_b) if s not in set(ids_a)]
    assert list(merged.star_id.values) == ids_a + [ids_b[k] for k in keep_b]
    np.testing.assert_array_equal(merged.teff.values, np.concatenate([a.teff.values, b.teff.values[keep_b]]))
    np.testing.assert_array_equal(merged.source.values, np.r_[np.zeros(1500, int), np.ones(len(keep_b), int)])
    assert zarr.open_array(str(tmp_path / "m.zarr" / "teff"), mode="r").shards == (1024,)
    assert cindex.status(tmp_path / "m.zarr") == "current"
    some = [ids_b[keep_b[3]], ids_a[10], min(dup)]
    out = catalogs.select(merged, star_id=some)
    assert list(out.star_id.values) == some
    assert list(out.source.values) == [1, 0, 0]


def test_catalog_encoding_shards_only_whole_regions():
    ds = make_catalog(50)
    assert catalog_encoding(ds, 1024, chunk=1024) == {}  # one chunk per region: nothing to shard
    assert catalog_encoding(ds, 1000, chunk=256) == {}  # regions must hold whole chunks
    enc = catalog_encoding(ds, 1024, chunk=256)
    assert enc["teff"] == {"chunks": (256,), "shards": (1024,)}
    assert enc["teff_quantiles"] == {"chunks": (256, 5), "shards": (1024, 5)}
    assert "quantile" not in enc
