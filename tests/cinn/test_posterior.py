"""The posterior API on a tiny trained model: output format, reproducibility per (seed, key), the fast path
against FrEIA's straightforward loop, log_prob, and clear errors for bad input."""
import numpy as np
import pytest
import xarray as xr

import cinn
from cinn.posterior import QUANTILES, reference_summarize
from gridkit.errors import GridError
from gridkit.schema import LABEL_NAMES


@pytest.fixture(scope="module")
def post(trained):
    return cinn.load(trained)


@pytest.fixture(scope="module")
def some(test_spectra):
    flux, snr, truth = test_spectra
    return flux.isel(model=slice(0, 12)), snr[:12], truth[:12]


def test_summarize_format(post, some):
    flux, snr, _ = some
    ds = post.summarize(flux.values, snr, n=256, seed=1)
    assert ds.sizes == {"star": 12, "quantile": 5}
    np.testing.assert_array_equal(ds["quantile"].values, QUANTILES)
    for name in LABEL_NAMES:
        assert ds[name].dims == ("star",) and ds[f"{name}_quantiles"].dims == ("star", "quantile")
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert ds.flag_extrapolated.dtype == bool and ds.f_reject.dims == ("star",)
    assert ds.teff.attrs["units"] == "K"
    # physical units, within the training bounds, quantiles ordered
    lo, hi = post.bounds[0]
    assert np.all((ds.teff.values >= lo) & (ds.teff.values <= hi))
    assert np.all(np.diff(ds.teff_quantiles.values, axis=1) >= 0)
    assert post.label_names == LABEL_NAMES and post.wavelength.size == flux.sizes["wavelength"] and len(post.model_id) == 16


def test_dataarray_input_keeps_its_dimension_name(post, some):
    flux, snr, _ = some
    ds = post.summarize(flux, snr, n=64)
    assert "model" in ds.dims and "star" not in ds.dims
    np.testing.assert_array_equal(ds["model"].values, flux["model"].values)


def test_draws_depend_only_on_seed_and_key_whatever_the_chunking(post, some):
    flux, snr, _ = some
    keys = np.arange(100, 112)
    whole = post.summarize(flux.values, snr, n=128, seed=5, keys=keys)
    parts = xr.concat([post.summarize(flux.values[i:i + 5], snr[i:i + 5], n=128, seed=5, keys=keys[i:i + 5]) for i in (0, 5, 10)], "star")
    xr.testing.assert_identical(whole.drop_vars("quantile"), parts.drop_vars("quantile"))
    post.memory_cap = 1  # one spectrum per batch
    try:
        tiny_batches = post.summarize(flux.values, snr, n=128, seed=5, keys=keys)
    finally:
        post.memory_cap = cinn.posterior.DEFAULT_MEMORY_CAP
    xr.testing.assert_allclose(whole, tiny_batches)
    other_seed = post.summarize(flux.values, snr, n=128, seed=6, keys=keys)
    assert not np.allclose(other_seed.teff.values, whole.teff.values)


def test_fast_path_gives_the_same_maps_as_the_straightforward_loop(post, some):
    flux, snr, _ = some
    ds = post.summarize(flux.values, snr, n=512, seed=3)
    maps, _ = reference_summarize(post, flux.values, snr, n=512, seed=3)
    fast = np.stack([ds[n].values for n in LABEL_NAMES], axis=1)
    np.testing.assert_allclose(fast, maps, rtol=1e-5)


def test_sample_shape_and_log_prob_agree_with_the_sampler(post, some):
    flux, snr, _ = some
    s = post.sample(flux.values[:3], snr[:3], n=64, seed=2)
    assert s.shape == (3, 64, 13)
    lp = post.log_prob(s, flux.values[:3], snr[:3])
    assert lp.shape == (3, 64) and np.all(np.isfinite(lp))
    # log p in physical units = flow density in y + log|dy/dlabel|: recompute via the sampler's own log q
    y, lq = post._sample_flow(flux.values[:3].astype(np.float32), snr[:3], np.arange(3), 64, 2)
    expected = lq + post.label_transform.log_abs_det_forward(s)
    np.testing.assert_allclose(lp, expected, atol=2e-3)
    # higher density at the truth's neighbourhood than far away: MAP beats a shifted point
    assert lp.shape == post.log_prob(s[:, :64], flux.values[:3], snr[:3]).shape


def test_bad_inputs_are_clear_errors(post, some):
    flux, snr, _ = some
    f = flux.values
    with pytest.raises(GridError, match="fourmostify"):
        post.summarize(f[:, :-1], snr, n=8)
    bad = f.copy()
    bad[2, 7] = np.nan
    with pytest.raises(GridError, match="NaN.*row 2"):
        post.summarize(bad, snr, n=8)
    with pytest.raises(GridError, match=r"snr\[1\] = 0"):
        post.summarize(f[:3], np.array([10.0, 0.0, 5.0]), n=8)
    with pytest.raises(GridError, match="snr"):
        post.summarize(f[:3], np.array([10.0, -1.0, 5.0]), n=8)
    shifted = flux.assign_coords(wavelength=flux.wavelength.values + 0.1)
    with pytest.raises(GridError, match="fourmostify"):
        post.summarize(shifted, snr, n=8)
    with pytest.raises(GridError, match="one value per spectrum"):
        post.summarize(f, snr[:3], n=8)
