"""The posterior API on a tiny trained model: output format, reproducibility per (seed, key), the fast path
against FrEIA's straightforward loop, log_prob, and clear errors for bad input."""
import numpy as np
import pytest
import xarray as xr

import cinn
from cinn.posterior import QUANTILES, reference_summarize
from gridkit.errors import ExtrapolationWarning, GridError
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


def _chunked(post, flux, snr, keys, sizes, **kw):
    edges = np.cumsum([0, *sizes])
    return xr.concat([post.summarize(flux[a:b], snr[a:b], keys=keys[a:b], **kw) for a, b in zip(edges[:-1], edges[1:])], "star")


@pytest.mark.parametrize("grouped", [False, True], ids=["cpu-one-spectrum-per-pass", "gpu-style-padded-groups-of-5"])
def test_draws_depend_only_on_seed_and_key_whatever_the_chunking(post, some, monkeypatch, grouped):
    """A resumed survey must equal an uninterrupted one: a spectrum's summary is bit-identical whatever the chunking,
    the order of the spectra, the memory cap, and (in blocks of SAMPLE_BLOCK) however its samples are split."""
    flux, snr, _ = some
    f = flux.values
    keys = np.arange(100, 112)
    monkeypatch.setattr(cinn.posterior, "SAMPLE_BLOCK", 48)  # 128 samples = blocks of 48, 48, 32
    if grouped:  # the GPU path on CPU: groups of 5 spectra per pass, the last group padded
        monkeypatch.setattr(post, "batch_spectra", True)
        monkeypatch.setattr(post, "memory_cap", 5 * post._bytes_per_sample() * 48)
        assert post._group_size(128) == 5
    whole = post.summarize(f, snr, n=128, seed=5, keys=keys)
    xr.testing.assert_identical(whole, _chunked(post, f, snr, keys, (5, 5, 2), n=128, seed=5))
    xr.testing.assert_identical(whole, _chunked(post, f, snr, keys, (1, 7, 3, 1), n=128, seed=5))
    rev = post.summarize(f[::-1], snr[::-1], n=128, seed=5, keys=keys[::-1])
    xr.testing.assert_identical(whole, rev.isel(star=slice(None, None, -1)))
    if not grouped:  # on CPU the memory cap only sets host-side batches (on GPU it sets the group size: fixed per survey)
        monkeypatch.setattr(post, "memory_cap", 1)
        xr.testing.assert_identical(whole, post.summarize(f, snr, n=128, seed=5, keys=keys))
    other_seed = post.summarize(f, snr, n=128, seed=6, keys=keys)
    assert not np.allclose(other_seed.teff.values, whole.teff.values)
    other_keys = post.summarize(f, snr, n=128, seed=5, keys=keys + 1)
    assert not np.allclose(other_keys.teff.values, whole.teff.values)


def test_fast_path_gives_the_same_maps_as_the_straightforward_loop(post, some):
    """Same draws, same MAP sample; values equal to float32 rounding (the fast path sums the first subnet layers in
    another order, [W_x x] + [W_c c + b] instead of W [x, c] + b, so bits can differ; a MAP pick could only differ
    between two samples whose densities tie to float32 rounding, which we check does not happen here)."""
    flux, snr, _ = some
    f = flux.values.astype(np.float32)
    samples, lq = post.sample(f, snr, n=512, seed=3, return_log_q=True)
    ds = post.summarize(f, snr, n=512, seed=3)
    maps, lq_ref, idx_ref = reference_summarize(post, f, snr, n=512, seed=3, return_index=True)
    idx = cinn.posterior.map_index(lq, post.in_bounds(samples))
    np.testing.assert_allclose(lq, lq_ref, rtol=0, atol=2e-4)  # log densities of the same draws, float32 rounding
    np.testing.assert_array_equal(idx, idx_ref)
    assert np.all(idx >= 0)
    fast = np.stack([ds[n].values for n in LABEL_NAMES], axis=1)
    scale = post.bounds[:, 1] - post.bounds[:, 0]
    assert np.all(np.abs(fast - maps) <= 1e-5 * np.abs(maps) + 1e-6 * scale)


def test_sample_shape_and_log_prob_agree_with_the_sampler(post, some):
    flux, snr, _ = some
    s = post.sample(flux.values[:3], snr[:3], n=64, seed=2)
    assert s.shape == (3, 64, 13)
    lp = post.log_prob(s, flux.values[:3], snr[:3])
    assert lp.shape == (3, 64) and np.all(np.isfinite(lp))
    # log p in physical units = flow density in y + log|dy/dlabel|: recompute via the sampler's own log q
    _, lq = post.sample(flux.values[:3], snr[:3], n=64, seed=2, return_log_q=True)
    expected = lq + post.label_transform.log_abs_det_forward(s)
    np.testing.assert_allclose(lp, expected, atol=2e-3)
    # the trained posterior puts more density at the true labels than at the truth with Teff 1000 K off
    _, _, truth = some
    off = truth[:3].copy()
    off[:, 0] += 1000.0
    lp_true, lp_off = post.log_prob(truth[:3], flux.values[:3], snr[:3]), post.log_prob(off, flux.values[:3], snr[:3])
    assert lp_true.shape == (3,) and np.all(lp_true > lp_off + 2.0)


def test_map_estimate_of_the_samples_is_the_map_of_summarize(post, some):
    """The one MAP rule: the public draws with their flow density give, through map_estimate, bit for bit the MAP
    that summarize writes (what evaluation relies on: samples and MAP from the same draws)."""
    flux, snr, _ = some
    keys = np.arange(20, 32)
    samples, log_q = post.sample(flux.values, snr, n=96, seed=4, keys=keys, return_log_q=True)
    assert samples.shape == (12, 96, 13) and log_q.shape == (12, 96)
    np.testing.assert_array_equal(samples, post.sample(flux.values, snr, n=96, seed=4, keys=keys))
    ds = post.summarize(flux.values, snr, n=96, seed=4, keys=keys)
    np.testing.assert_array_equal(post.map_estimate(samples, log_q), np.stack([ds[n].values for n in LABEL_NAMES], axis=1))
    # the MAP is the densest sample inside the training bounds; no sample inside: NaN
    outside = samples.copy()
    outside[0, :, 0] = post.bounds[0, 1] + 1.0
    inside = post.in_bounds(outside)
    assert not inside[0].any() and inside[1:].any(axis=1).all()
    maps = post.map_estimate(outside, log_q)
    assert np.isnan(maps[0]).all() and np.isfinite(maps[1:]).all()
    j = np.argmax(np.where(inside[1], log_q[1], -np.inf))
    np.testing.assert_array_equal(maps[1], outside[1, j])


def test_check_inputs_returns_what_the_network_gets(post, some):
    flux, snr, _ = some
    values, s = post.check_inputs(flux, 60.0)
    assert values.dtype == np.float32 and values.shape == flux.shape
    np.testing.assert_array_equal(values, flux.values.astype(np.float32))
    np.testing.assert_array_equal(s, np.full(12, 60.0))
    with pytest.raises(GridError, match="fourmostify"):
        post.check_inputs(flux.assign_coords(wavelength=flux.wavelength.values + 0.1), snr)


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


def test_snr_outside_the_training_range_warns(post, some):
    """The model records the S/N range it saw in training; spectra outside it are inferred with a warning."""
    import warnings

    flux, _, _ = some
    lo, hi = post.snr_range
    assert (lo, hi) == (25.0, 150.0)  # the toy cube's stored S/N copies
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        post.summarize(flux.values[:2], np.array([lo, hi]), n=16)
    with pytest.warns(ExtrapolationWarning, match="1 of 2 spectra have S/N outside the model's training range 25-150"):
        ds = post.summarize(flux.values[:2], np.array([lo, 3 * hi]), n=16)
    assert np.isfinite(ds.teff.values).all()


def _omp_max_threads():
    """omp_get_max_threads() of the calling thread, from the OpenMP runtime torch loaded (None if there is none)."""
    import ctypes

    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libgomp" in line or "libiomp" in line}
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path).omp_get_max_threads()
        except (OSError, AttributeError):
            continue
    return None


def test_a_new_thread_runs_the_network_with_torchs_thread_count(post, some):
    """A thread that never called torch.set_num_threads (infer's region threads, dask's threaded scheduler) must
    run the network with the process's count, not one OpenMP thread per core (100x slower small ops when busy)."""
    import os
    import threading

    import torch

    flux, snr, _ = some
    post.summarize(flux.values[:2], snr[:2], n=16, seed=0)  # torch's OpenMP runtime is loaded by now
    if _omp_max_threads() is None or (os.cpu_count() or 1) < 2:
        pytest.skip("needs torch's OpenMP runtime and at least two cores")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    seen = {}

    def run():
        seen["fresh"] = _omp_max_threads()  # a new thread's default: one per core (or OMP_NUM_THREADS)
        seen["ds"] = post.summarize(flux.values[:2], snr[:2], n=16, seed=0)
        seen["after"] = _omp_max_threads()

    try:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    finally:
        torch.set_num_threads(before)
    assert seen["after"] == 1, seen
    xr.testing.assert_identical(seen["ds"], post.summarize(flux.values[:2], snr[:2], n=16, seed=0))
