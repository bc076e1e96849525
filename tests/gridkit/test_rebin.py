"""Flux-conserving rebinning: integrated flux conserved for any monotone target grid, identity on the same
grid, agreement with spectres, gaps and out-of-coverage pixels never filled, one matrix per grid pair."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import gridkit
from gridkit.errors import GridError
from gridkit.schema import MIN_RELATIVE_STEP
from gridkit.kernels import rebin as kr


def _integral_truth(wl, flux, a, b):
    """Integral over [a, b] of the piecewise-constant input (bins halfway between centres), computed
    independently from the cumulative integral at the input's bin edges."""
    edges = np.concatenate([[wl[0] - (wl[1] - wl[0]) / 2], (wl[1:] + wl[:-1]) / 2, [wl[-1] + (wl[-1] - wl[-2]) / 2]])
    cum = np.concatenate([[0.0], np.cumsum(flux * np.diff(edges))])
    return np.interp(b, edges, cum) - np.interp(a, edges, cum)  # linear in between: exact for piecewise constants


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.floats(0.0, 1.0), min_size=2, max_size=300, unique=True))
def test_integrated_flux_conserved_for_any_monotone_grid(seed, positions):
    rng = np.random.default_rng(seed)
    wl = 5000 + np.cumsum(rng.uniform(0.01, 0.05, 300))  # irregular input
    flux = rng.uniform(0, 2, wl.size)
    # any strictly increasing target whose pixels lie inside the input (irregular, possibly with gaps)
    x = np.unique(wl[0] + 0.5 + np.sort(positions) * (wl[-1] - wl[0] - 1.0))
    assume(x.size >= 2 and np.all(np.diff(x) >= MIN_RELATIVE_STEP * x[1:]))  # finer grids are refused (test below)
    lo, hi = kr.bin_edges(x)
    out, covered = kr.rebin_rows(wl, flux[None], x)
    truth = np.array([_integral_truth(wl, flux, a, b) for a, b in zip(lo, hi)])
    inside = (lo >= wl[0]) & (hi <= wl[-1])
    assert covered[inside].all()
    np.testing.assert_allclose(out[0, covered] * (hi - lo)[covered], truth[covered], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose((out[0, covered] * (hi - lo)[covered]).sum(), truth[covered].sum(), rtol=1e-10)


def test_target_grid_finer_than_float64_can_resolve_is_refused():
    """Pixels a few float64 ulps wide (hypothesis found 1e-13 A steps) have no meaningful edges: a clear error."""
    wl = np.arange(5000.0, 5010.0, 0.02)
    ds = gridkit.from_arrays(wl, np.ones((1, wl.size), np.float32), {"teff": [1.0]})
    with pytest.raises(GridError, match="step of 9.09e-13 A at index 1 .* below 1e-09 of the wavelength"):
        gridkit.rebin(ds, np.array([5002.0, 5002.0 + 2**-40, 5003.0]))


def test_same_grid_is_the_identity_and_constants_stay_constant():
    rng = np.random.default_rng(1)
    wl = 6000 + np.cumsum(rng.uniform(0.01, 0.03, 500))
    flux = rng.uniform(0, 1, (2, wl.size)).astype(np.float32)
    ds = gridkit.from_arrays(wl, flux, {"teff": [1.0, 2.0]})
    np.testing.assert_allclose(gridkit.rebin(ds, wl).compute().flux.values, flux, rtol=1e-6)
    target = np.linspace(wl[3], wl[-4], 77)
    out = gridkit.rebin(ds.assign(flux=ds.flux * 0 + 0.75), target).compute()
    np.testing.assert_allclose(out.flux.values, 0.75, rtol=1e-6)
    assert out.flux.dims == ("model", "wavelength") and out.wavelength.attrs["units"] == "Angstrom"
    np.testing.assert_array_equal(out.teff.values, [1.0, 2.0])


def test_agrees_with_spectres():
    spectres = pytest.importorskip("spectres")
    rng = np.random.default_rng(7)
    wl = np.arange(5000.0, 5020.0, 0.02)
    flux = 1 - 0.5 * rng.random(wl.size)
    target = np.arange(5001.0, 5019.0, 0.05)
    ref = spectres.spectres(target, wl, flux, fill=np.nan, verbose=False)
    ours, covered = kr.rebin_rows(wl, flux[None], target)
    assert covered.all()
    np.testing.assert_allclose(ours[0], ref, rtol=1e-10)


def test_outside_coverage_policy():
    wl = np.arange(5000.0, 5010.0, 0.01)
    ds = gridkit.from_arrays(wl, np.ones((1, wl.size)), {"teff": [1.0]})
    target = np.arange(5005.0, 5015.0, 0.05)
    with pytest.raises(GridError, match=r"outside the input coverage: 100 of 200 target pixels not covered, first at 5010.000 A"):
        gridkit.rebin(ds, target)
    out = gridkit.rebin(ds, target, outside="nan").compute().flux.values[0]
    assert np.isnan(out[target > 5009.995]).all() and np.isfinite(out[target < 5009.97]).all()
    with pytest.raises(GridError, match="target wavelength must increase"):
        gridkit.rebin(ds, target[::-1])


def test_gap_pixels_are_not_covered_and_not_filled():
    wl = np.concatenate([np.arange(5000.0, 5010.0, 0.01), np.arange(5020.0, 5030.0, 0.01)])  # a 10 A gap
    flux = np.ones(wl.size)
    target = np.arange(5001.0, 5029.0, 0.1)
    out, covered = kr.rebin_rows(wl, flux[None], target)
    in_gap = (target > 5009.95) & (target < 5020.05)
    assert not covered[in_gap].any() and covered[~in_gap].all()
    # where covered, the gap did not dilute anything
    np.testing.assert_allclose(out[0, covered], 1.0, rtol=1e-12)


def test_nan_propagates_only_to_overlapping_pixels():
    wl = np.arange(5000.0, 5010.0, 0.01)
    flux = np.ones(wl.size)
    flux[500] = np.nan  # 5005.00
    target = np.arange(5001.0, 5009.0, 0.05)
    out, _ = kr.rebin_rows(wl, flux[None], target)
    nan = np.isnan(out[0])
    assert nan.sum() == 1 and target[nan][0] == pytest.approx(5005.0, abs=0.03)


def test_matrix_built_once_per_grid_pair():
    a = np.arange(5000.0, 5010.0, 0.01)
    b = np.arange(5001.0, 5009.0, 0.05)
    m1, _ = kr.cached_rebin_matrix(a, b)
    m2, _ = kr.cached_rebin_matrix(a.copy(), b.copy())
    assert m1 is m2
    assert m1.nnz <= 7 * b.size  # sparse: each output pixel touches ~6 input pixels
