"""Rotation (Gray profile): the kernel integrates to 1 and is the analytic profile, a narrow line takes the
profile's shape, equivalent widths are kept, v = 0 is the identity, agreement with PyAstronomy, per-model vbroad."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import integrate

import gridkit
from gridkit.errors import GridError
from gridkit.kernels import lnlambda, rotation

C = rotation.C_KMS


@settings(max_examples=60, deadline=None)
@given(st.floats(0.01, 300.0), st.floats(0.05, 3.0), st.floats(0.0, 1.0))
def test_kernel_integrates_to_one(vbroad, kms_per_pixel, eps):
    k = rotation.rotation_kernel(vbroad, kms_per_pixel / C, eps)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(k >= 0)
    np.testing.assert_allclose(k, k[::-1], atol=1e-15)  # symmetric


@pytest.mark.parametrize("eps", [0.0, 0.6, 1.0])
def test_profile_and_cdf_are_the_analytic_ones(eps):
    v = 20.0
    # the profile integrates to 1 (numerical quadrature, independent of the closed-form CDF)
    total, _ = integrate.quad(rotation.gray_profile, -v, v, args=(v, eps), limit=200)
    assert total == pytest.approx(1.0, abs=1e-7)
    for x in (-15.0, -3.0, 0.0, 7.5, 19.9):
        part, _ = integrate.quad(rotation.gray_profile, -v, x, args=(v, eps), limit=200)
        assert rotation.gray_cdf(x, v, eps) == pytest.approx(part, abs=1e-7)
    # the kernel on a fine grid samples the profile: weight / pixel width = G(centre) away from the edges
    dv = 0.05
    k = rotation.rotation_kernel(v, dv / C, eps)
    centres = (np.arange(k.size) - k.size // 2) * dv
    inner = np.abs(centres) < 0.95 * v
    np.testing.assert_allclose(k[inner] / dv, rotation.gray_profile(centres[inner], v, eps), rtol=2e-3)
    # Gray's closed form at line centre: G(0) = (2(1-eps) + pi eps / 2) / (pi v (1 - eps/3))
    assert rotation.gray_profile(0.0, v, eps) == pytest.approx((2 * (1 - eps) + math.pi * eps / 2) / (math.pi * v * (1 - eps / 3)))


def _line_dataset(vbroad, centre=5500.0, sigma=0.002, depth=0.5, half=4.0):
    wl, _ = lnlambda.lnlambda_span(centre - half, centre + half, 0.002 / (centre + half))
    fl = 1 - depth * np.exp(-0.5 * ((wl - centre) / sigma) ** 2)
    n = len(vbroad)
    return gridkit.from_arrays(wl, np.repeat(fl[None], n, 0), {"vbroad": np.asarray(vbroad, float)}), wl


def test_narrow_line_takes_the_rotation_profile():
    ds, wl = _line_dataset([30.0])
    ew = np.trapezoid(1 - ds.flux.values[0], wl)
    out = gridkit.rotate(ds).compute().flux.values[0]
    dv = C * np.log(wl / 5500.0)
    expected = 1 - ew * rotation.gray_profile(dv, 30.0, 0.6) * C / wl  # depth = EW x G(dv) dv/dlambda
    inner = np.abs(dv) < 27.0
    np.testing.assert_allclose(out[inner], expected[inner], atol=2e-4)


def test_equivalent_width_conserved_and_v0_identity():
    ds, wl = _line_dataset([0.0, 5.0, 12.0, 25.0], sigma=0.05)
    out = gridkit.rotate(ds).compute()
    ew = [np.trapezoid(1 - f, wl) for f in out.flux.values]
    np.testing.assert_allclose(ew, ew[0], rtol=2e-3)
    np.testing.assert_array_equal(out.flux.values[0], ds.flux.values[0])
    depth = 1 - out.flux.values.min(axis=1)
    assert np.all(np.diff(depth) < 0)  # faster rotators have shallower lines
    assert "Gray" in out.attrs["rotation"]


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_rotate_at_zero_velocity_is_the_identity(seed, uniform_lnlambda):
    rng = np.random.default_rng(seed)
    n = 200
    if uniform_lnlambda:
        wl, _ = lnlambda.lnlambda_span(5000.0, 5010.0, 1e-5)
        wl = wl[:n] if wl.size >= n else np.linspace(5000, 5010, n)
    else:
        wl = 5000 + np.cumsum(rng.uniform(0.01, 0.05, n))
    flux = rng.uniform(0.1, 1.1, (3, wl.size)).astype(np.float32)
    ds = gridkit.from_arrays(wl, flux, {"vbroad": [0.0, 0.0, 0.0]})
    np.testing.assert_array_equal(gridkit.rotate(ds).compute().flux.values, flux)
    np.testing.assert_array_equal(gridkit.rotate(ds, vbroad=0.0).compute().flux.values, flux)


def test_agrees_with_pyastronomy_rotbroad_near_its_reference_wavelength():
    pyasl = pytest.importorskip("PyAstronomy.pyasl")
    wl = np.arange(5496.0, 5504.0, 0.005)  # evenly spaced, as rotBroad requires
    fl = 1 - 0.6 * np.exp(-0.5 * ((wl - 5500.0) / 0.03) ** 2)
    ref = pyasl.fastRotBroad(wl, fl, 0.6, 20.0, effWvl=5500.0)
    ours = gridkit.rotate(gridkit.from_arrays(wl, fl, {"vbroad": [20.0]})).compute().flux.values[0]
    inner = np.abs(wl - 5500) < 2
    np.testing.assert_allclose(ours[inner], ref[inner], atol=2e-3)


def test_per_model_vbroad_and_errors():
    ds, _ = _line_dataset([10.0, 20.0])
    a = gridkit.rotate(ds).compute().flux.values
    b = gridkit.rotate(ds, vbroad=[20.0, 10.0]).compute().flux.values
    np.testing.assert_allclose(a[0], b[1], atol=1e-6)
    np.testing.assert_allclose(a[1], b[0], atol=1e-6)
    with pytest.raises(GridError, match=r"vbroad must be finite and >= 0 km/s; it is -1.0"):
        gridkit.rotate(ds, vbroad=-1.0)
    with pytest.raises(GridError, match="'vbroad' label must be finite and >= 0 km/s; it is nan"):
        gridkit.rotate(ds.assign(vbroad=("model", [np.nan, 1.0])))
    with pytest.raises(GridError, match="no 'vbroad' label"):
        gridkit.rotate(ds.drop_vars("vbroad"))
