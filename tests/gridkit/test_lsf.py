"""Gaussian LSF at constant R: measured FWHM = lambda/R at both ends of the green and red arms, widths add in
quadrature, equivalent widths conserved, no smearing across gaps, lazy, clear errors."""
import math

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings, strategies as st
from scipy.optimize import curve_fit

import gridkit
from gridkit.errors import ConfigError, GridError
from gridkit.kernels import lnlambda, lsf

ARM_ENDS = (5165.0, 5725.0, 6105.0, 6785.0)  # near both ends of 4MOST HR green (5160-5730) and red (6100-6790)


def lines_dataset(centres=ARM_ENDS, sigma=0.003, depth=0.6, step=0.004, half=5.0, log_uniform=False):
    """Narrow Gaussian absorption lines, each in its own short segment of the wavelength axis (gaps between)."""
    wls, fls = [], []
    for c in centres:
        if log_uniform:
            w, _ = lnlambda.lnlambda_span(c - half, c + half, step / (c + half))
        else:
            w = np.arange(c - half, c + half, step)
        wls.append(w)
        fls.append(1 - depth * np.exp(-0.5 * ((w - c) / sigma) ** 2))
    wl, fl = np.concatenate(wls), np.concatenate(fls)
    return gridkit.from_arrays(wl, fl[None, :], {"teff": [5000.0]})


def gaussian_line(x, c, s, d):
    return 1 - d * np.exp(-0.5 * ((x - c) / s) ** 2)


def measured_fwhm(ds):
    wl = ds.wavelength.values
    fl = np.asarray(ds.flux.values)[0]
    out = []
    for seg in lnlambda.segments(wl):
        x, y = wl[seg], fl[seg]
        c0 = x[np.argmin(y)]
        (c, s, d), _ = curve_fit(gaussian_line, x, y, p0=(c0, 0.1, 0.5))
        out.append((c, 2 * math.sqrt(2 * math.log(2)) * abs(s)))
    return out


def equivalent_widths(ds):
    wl = ds.wavelength.values
    fl = np.asarray(ds.flux.values, dtype=float)[0]
    return [np.trapezoid(1 - fl[seg], wl[seg]) for seg in lnlambda.segments(wl)]


@pytest.mark.parametrize("log_uniform", [False, True], ids=["linear-grid", "lnlambda-grid"])
def test_fwhm_equals_lambda_over_r_at_both_ends_of_each_arm(log_uniform):
    out = gridkit.to_resolution(lines_dataset(log_uniform=log_uniform), 20_000).compute()
    got = measured_fwhm(out)
    assert len(got) == 4
    for (centre, fwhm), expected in zip(got, ARM_ENDS):
        assert centre == pytest.approx(expected, abs=1e-3)
        # the intrinsic line (FWHM 0.007 A) adds in quadrature: < 0.05 % of lambda/R
        assert fwhm == pytest.approx(math.hypot(centre / 20_000, 0.003 * 2.3548), rel=0.01)
        assert fwhm == pytest.approx(centre / 20_000, rel=0.01)
    assert out.attrs["resolving_power"] == 20_000


def test_finite_input_resolution_subtracts_in_quadrature():
    ds = gridkit.to_resolution(lines_dataset(), 80_000).compute()
    out = gridkit.to_resolution(ds, 20_000).compute()  # input R taken from attrs: 80000
    for centre, fwhm in measured_fwhm(out):
        assert fwhm == pytest.approx(centre / 20_000, rel=0.01)
    # had we ignored the input R, the line would be broader by sqrt(1 + 1/16)
    wrong = gridkit.to_resolution(ds, 20_000, input_resolving_power=math.inf).compute()
    for (_, good), (_, bad) in zip(measured_fwhm(out), measured_fwhm(wrong)):
        assert bad / good == pytest.approx(math.sqrt(1 + 1 / 16), rel=0.005)


def test_equivalent_widths_conserved():
    ds = lines_dataset(sigma=0.02, depth=0.8)
    before = equivalent_widths(ds)
    after = equivalent_widths(gridkit.to_resolution(ds, 20_000).compute())
    np.testing.assert_allclose(after, before, rtol=0.002)


def test_no_smearing_across_a_gap():
    # two segments 0.4 A apart (much larger than the 0.004 A step); a strong line 0.1 A from the end of the first
    a = np.arange(5500.0, 5510.0, 0.004)
    b = np.arange(a[-1] + 0.4, 5520.0, 0.004)
    wl = np.concatenate([a, b])
    fl = np.where(wl < 5510.2, 1 - 0.9 * np.exp(-0.5 * ((wl - (a[-1] - 0.1)) / 0.05) ** 2), 1.0)
    out = gridkit.to_resolution(gridkit.from_arrays(wl, fl, {"teff": [1.0]}), 10_000).compute()
    np.testing.assert_array_equal(out.flux.values[0, a.size:], 1.0)  # the kernel (FWHM 0.55 A) would reach it otherwise


def test_gaussian_kernel_normalised_with_the_right_width():
    for sigma in (1.0, 1.7, 4.5, 20.0):
        k = lsf.gaussian_kernel(sigma)
        x = np.arange(k.size) - k.size // 2
        assert k.sum() == pytest.approx(1.0, abs=1e-12)
        assert (k * x**2).sum() == pytest.approx(sigma**2, rel=1e-5)  # the discrete variance is the continuous one
    assert lsf.kernel_sigma_lnlambda(20_000, 80_000) == pytest.approx(math.sqrt(1 / 20_000**2 - 1 / 80_000**2) / 2.354820045, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.1, 30.0), st.integers(0, 2**31 - 1))
def test_convolution_conserves_the_sum_of_any_row(sigma, seed):
    rows = np.random.default_rng(seed).uniform(0, 2, size=(2, 300))
    rows[:, :60] = rows[:, -60:] = 1.0  # flat edges: 'nearest' padding loses nothing
    out = lsf.convolve_rows(rows, lsf.gaussian_kernel(min(sigma, 8.0)))
    np.testing.assert_allclose(out.sum(axis=1), rows.sum(axis=1), rtol=1e-10)


def test_lazy_until_computed():
    def refuse(*args, **kwargs):
        raise AssertionError("something was computed")

    ds = lines_dataset().chunk({"model": 1})
    with dask.config.set(scheduler=refuse):
        out = gridkit.to_resolution(ds, 20_000)
    assert isinstance(out.flux.data, dask.array.Array)
    assert out.flux.dtype == np.float32


def test_errors_name_the_problem():
    ds = lines_dataset()
    with pytest.raises(ConfigError, match=r"resolving_power = 20000 must be below the input's resolving power \(20000\)"):
        gridkit.to_resolution(ds.assign_attrs(resolving_power=20_000.0), 20_000)
    with pytest.raises(ConfigError, match="30000 must be below the input's resolving power \\(20000\\)"):
        gridkit.to_resolution(ds, 30_000, input_resolving_power=20_000)
    with pytest.raises(ConfigError, match="resolving_power must be finite and > 0, got -5"):
        gridkit.to_resolution(ds, -5)
    bad = ds.copy(deep=True)
    bad["flux"][0, 10] = np.nan
    with pytest.raises(GridError, match="NaN/inf"):
        gridkit.to_resolution(bad, 20_000).compute()
    out = gridkit.to_resolution(bad, 20_000, missing="propagate").compute()
    nan = np.isnan(out.flux.values[0])
    assert nan[10] and 1 < nan.sum() < 200  # only the pixels the kernel of the bad pixel touches
    unsorted = xr.Dataset({"flux": (("model", "wavelength"), np.ones((1, 3)))}, coords={"wavelength": [5000.0, 4999.0, 5001.0]})
    with pytest.raises(GridError, match="wavelength must increase"):
        gridkit.to_resolution(unsorted, 1000)


def test_blockwise_kernel_on_a_constant_step_grid_equals_the_exact_per_sample_lsf():
    # over a long constant-step axis the kernel width in pixels grows by 30 %; the blocks of one kernel agree
    # with the exact Gaussian in ln lambda evaluated on the samples themselves (sparse matrix), seams included
    wl = np.arange(5100.0, 6700.0, 0.02)
    rng = np.random.default_rng(3)
    centres = rng.uniform(5110, 6690, 300)
    flux = np.ones(wl.size)
    for c in centres:
        flux -= 0.5 * np.exp(-0.5 * ((wl - c) / 0.01) ** 2)
    fast = lsf.gaussian_lsf_linear(flux[None], wl, 20_000, 80_000)[0]
    exact = np.asarray(lsf.gaussian_lsf_matrix(wl, 20_000, 80_000) @ flux)
    inner = slice(400, -400)  # edges: 'nearest' padding vs renormalised truncation
    assert np.max(np.abs(fast - exact)[inner]) < 1e-3
    assert abs(fast[inner].sum() - flux[inner].sum()) < 1e-6 * flux[inner].size
