"""Noise: sigma = flux / (S/N per pixel) with S/N quoted per Angstrom (or per pixel) within 2 %, an `snr`
dimension, bit-identical per (model, S/N, seed) whatever the chunking, order or subset, clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gridkit
from gridkit.errors import ConfigError, GridError
from gridkit.kernels import noise as kn


def _flat(n_model=20, step=0.05, level=0.8, ids=None):
    wl = 5160 + (np.arange(25_200 if step == 0.05 else 6000) + 0.5) * step
    return gridkit.from_arrays(wl, np.full((n_model, wl.size), level), {"teff": np.arange(n_model, dtype=float)}, model=ids)


@pytest.mark.parametrize("convention", ["per_angstrom", "per_pixel"])
def test_standard_deviation_matches_the_convention(convention):
    ds = _flat()
    snr = [10.0, 50.0, 250.0]
    out = gridkit.add_noise(ds, snr, seed=3, convention=convention).compute()
    assert out.flux.dims == ("model", "snr", "wavelength")
    resid = out.flux.values.astype(np.float64) - 0.8
    for j, s in enumerate(snr):
        per_pixel = s * np.sqrt(0.05) if convention == "per_angstrom" else s  # 0.05 A pixels
        measured = resid[:, j].std()
        assert measured == pytest.approx(0.8 / per_pixel, rel=0.02)
        assert abs(resid[:, j].mean()) < 5 * measured / np.sqrt(resid[:, j].size)
    assert out.snr.attrs["convention"] == convention
    assert out.attrs["snr_convention"] == convention


def test_per_angstrom_uses_each_pixels_width():
    # two arms of different pixel width: S/N per pixel = S/N per A * sqrt(width / 1 A) in each
    wl = np.concatenate([5000 + np.arange(20_000) * 0.02, 6000 + np.arange(20_000) * 0.08])
    ds = gridkit.from_arrays(wl, np.ones((4, wl.size)), {"teff": np.ones(4)})
    resid = gridkit.add_noise(ds, [100.0], seed=1).compute().flux.values[:, 0] - 1.0
    assert resid[:, :20_000].std() == pytest.approx(1 / (100 * np.sqrt(0.02)), rel=0.02)
    assert resid[:, 20_000:].std() == pytest.approx(1 / (100 * np.sqrt(0.08)), rel=0.02)
    np.testing.assert_allclose(kn.snr_per_pixel([100.0], [0.25, 1.0]), [[50.0, 100.0]])


def test_sigma_scales_with_flux():
    wl = 5000 + np.arange(50_000) * 0.05
    ds = gridkit.from_arrays(wl, np.stack([np.full(wl.size, 0.2), np.full(wl.size, 1.0)]), {"teff": [1.0, 2.0]})
    resid = gridkit.add_noise(ds, [20.0], convention="per_pixel").compute().flux.values[:, 0] - ds.flux.values
    assert resid[0].std() == pytest.approx(0.2 / 20, rel=0.02)
    assert resid[1].std() == pytest.approx(1.0 / 20, rel=0.02)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 7), st.permutations([10.0, 35.0, 1000.0]))
def test_deterministic_per_model_snr_and_seed(seed, chunk, order):
    ids = np.array([150, 151, 153, 160, 171, 172, 190, 1006])  # non-contiguous ids, as in the shared grid
    ds = _flat(n_model=8, step=0.1, ids=ids)
    ref = gridkit.add_noise(ds, [10.0, 35.0, 1000.0], seed=seed).compute().flux
    again = gridkit.add_noise(ds.chunk({"model": chunk}), list(order), seed=seed).compute().flux
    np.testing.assert_array_equal(again.sel(snr=[10.0, 35.0, 1000.0]).values, ref.values)  # order and chunking do not matter
    part = gridkit.add_noise(ds.isel(model=[5, 2]), [35.0], seed=seed).compute().flux
    np.testing.assert_array_equal(part.values[:, 0], ref.sel(snr=35.0).values[[5, 2]])  # neither does the subset
    other = gridkit.add_noise(ds.isel(model=[0]), [10.0], seed=seed + 1).compute().flux
    assert not np.array_equal(other.values[0, 0], ref.values[0, 0])  # the seed does


def test_errors():
    ds = _flat(n_model=2, step=0.1)
    for bad in (0, -5, np.nan, [10, 10]):
        with pytest.raises(ConfigError, match="snr"):
            gridkit.add_noise(ds, bad)
    with pytest.raises(ConfigError, match="convention must be one of"):
        gridkit.add_noise(ds, 10, convention="per_resolution_element")
    cube = gridkit.add_noise(ds, [10.0])
    with pytest.raises(GridError, match="dims"):
        gridkit.add_noise(cube, [10.0])
    nm = ds.assign_coords(wavelength=ds.wavelength.assign_attrs(units="nm"))
    with pytest.raises(GridError, match="units must be Angstrom, got 'nm'"):
        gridkit.add_noise(nm, [10.0])


def test_default_snr_is_the_published_list():
    from gridkit.degradation import DEFAULT_SNR

    assert DEFAULT_SNR == (10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 45, 50, 80, 100, 130, 180, 250, 1000)
    assert isinstance(gridkit.add_noise(_flat(1, step=0.1)).flux.data.sum(), object)  # lazy with the defaults
    assert gridkit.add_noise(_flat(1, step=0.1)).sizes["snr"] == 19
