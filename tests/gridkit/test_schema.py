"""gridkit.schema helpers: CF-packed arrays decode as xarray decodes them; text of any numpy kind; one
wavelength-grid check; and gridkit.testing's store comparison (it must catch a flipped byte)."""
import numpy as np
import pytest
import xarray as xr
import zarr

from gridkit.errors import GridError
from gridkit.schema import as_text, check_same_wavelength, decode_packed
from gridkit.testing import assert_stores_identical, store_differences


def test_decode_packed_equals_xarrays_cf_decoding(tmp_path):
    rng = np.random.default_rng(1)
    flux = rng.uniform(0.2, 1.0, (6, 50))
    flux[2, 7] = np.nan
    ds = xr.Dataset({"flux": (("model", "wavelength"), flux)})
    ds.to_zarr(tmp_path / "p.zarr", zarr_format=3, consolidated=False,
               encoding={"flux": {"dtype": "uint16", "scale_factor": 2e-5, "add_offset": 0.0, "_FillValue": 65535}})
    arr = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["flux"]
    got = decode_packed(arr[:], dict(arr.attrs))
    want = xr.open_zarr(tmp_path / "p.zarr", consolidated=False).flux.values
    assert got.dtype == np.float32 and np.isnan(got[2, 7])
    np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    assert np.nanmax(np.abs(got - flux)) <= 1e-5  # the packing's quantisation
    plain = rng.normal(size=(3, 4)).astype(np.float32)
    assert decode_packed(plain, {}) is plain or np.array_equal(decode_packed(plain, {}), plain)


def test_as_text_takes_every_numpy_kind_of_text():
    want = ["a", "bc"]
    for values in (np.array(want), np.array(want, dtype=object), np.array([b"a", b"bc"]), np.array(want, dtype=np.dtypes.StringDType())):
        out = as_text(values)
        assert out.dtype == object and out.tolist() == want


def test_one_wavelength_grid_check_names_both_grids():
    wl = np.linspace(5000, 5010, 11)
    check_same_wavelength(wl, wl + 1e-9)
    with pytest.raises(GridError, match=r"survey x \(10 pixels, 5000.000-5009.000 A\) is not on the wavelength grid of model y \(11 pixels"):
        check_same_wavelength(wl[:-1], wl, what="survey x", of="model y")


def test_store_comparison_catches_a_flipped_byte(tmp_path):
    ds = xr.Dataset({"flux": (("model", "wavelength"), np.arange(12.0).reshape(3, 4))}, attrs={"created": "now", "kind": "base"})
    for name in ("a.zarr", "b.zarr"):
        ds.to_zarr(tmp_path / name, zarr_format=3, consolidated=False)
    assert_stores_identical(tmp_path / "a.zarr", tmp_path / "b.zarr")
    chunk = next(p for p in (tmp_path / "b.zarr" / "flux").rglob("*") if p.is_file() and p.name != "zarr.json")
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    diff = store_differences(tmp_path / "a.zarr", tmp_path / "b.zarr")
    assert len(diff) == 1 and diff[0].startswith("chunk flux/c/")
    with pytest.raises(AssertionError, match="differ in 1 place"):
        assert_stores_identical(tmp_path / "a.zarr", tmp_path / "b.zarr")
    xr.Dataset(attrs={"kind": "cube"}).to_zarr(tmp_path / "c.zarr", zarr_format=3, consolidated=False)
    xr.Dataset(attrs={"kind": "base", "created": "later"}).to_zarr(tmp_path / "d.zarr", zarr_format=3, consolidated=False)
    assert store_differences(tmp_path / "c.zarr", tmp_path / "d.zarr") == ["attribute 'kind' of . differs: 'cube' != 'base'"]
