"""Frames: air <-> vacuum (Morton 2000) inverse to < 1e-6 A, equal to specutils' and to NIST's sodium D lines;
Doppler shifts (first order by default, relativistic on request) and their inverse; the barycentric correction
against an independent implementation (PyAstronomy's helcorr, REDUCE) and against Earth's orbital motion from a
low-precision solar ephemeris (annual period, sign, |v| <= 30.3 km/s + rotation)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gridkit.errors import ConfigError
from gridkit.kernels import frames

C = 299_792.458


# --------------------------------------------------------------------------------------- air <-> vacuum
def test_air_vacuum_round_trip_below_1e6_angstrom():
    wl = np.linspace(3000.0, 10_000.0, 70_001)
    assert np.max(np.abs(frames.vac_to_air(frames.air_to_vac(wl)) - wl)) < 1e-6
    assert np.max(np.abs(frames.air_to_vac(frames.vac_to_air(wl)) - wl)) < 1e-6


@pytest.mark.parametrize("air, vac", [(5889.950954, 5891.583264), (5895.924237, 5897.558147)])
def test_sodium_d_lines_match_nist(air, vac):
    # NIST Atomic Spectra Database, Na I 3s-3p (D2, D1): observed air and vacuum wavelengths
    assert frames.air_to_vac(air) == pytest.approx(vac, abs=1e-3)
    assert frames.vac_to_air(vac) == pytest.approx(air, abs=1e-3)


def test_refractive_index_is_mortons_formula():
    # Morton (2000) Eq. 8 at 5000 A (sigma^2 = 4 um^-2), evaluated by hand
    s2 = 4.0
    n = 1 + 8.34254e-5 + 2.406147e-2 / (130 - s2) + 1.5998e-4 / (38.9 - s2)
    assert frames.refractive_index_air(5000.0) == pytest.approx(n, rel=1e-15)
    assert 2.78e-4 < n - 1 < 2.80e-4  # the textbook value of standard air in the visible


def test_equals_specutils_where_installed():
    pytest.importorskip("specutils")
    import astropy.units as u
    from specutils.utils.wcs_utils import air_to_vac, vac_to_air

    wl = np.linspace(3500.0, 9500.0, 2001)
    assert np.max(np.abs(vac_to_air(wl * u.AA, method="Morton2000").value - frames.vac_to_air(wl))) < 1e-9
    assert np.max(np.abs(air_to_vac(wl * u.AA, scheme="iteration", method="Morton2000").value - frames.air_to_vac(wl))) < 1e-6


def test_wavelength_below_the_formula_range_is_refused():
    with pytest.raises(ConfigError, match="wavelength must be >= 2000 A"):
        frames.vac_to_air(np.array([1500.0, 5000.0]))


# --------------------------------------------------------------------------------------- Doppler
@settings(max_examples=50, deadline=None)
@given(st.floats(-500.0, 500.0), st.booleans())
def test_shift_and_rest_frame_are_inverse(rv, relativistic):
    wl = np.linspace(5160.0, 6790.0, 101)
    back = frames.to_rest_frame(frames.shift_wavelength(wl, rv, relativistic), rv, relativistic)
    np.testing.assert_allclose(back, wl, rtol=1e-14)
    assert frames.velocity_of_factor(frames.doppler_factor(rv, relativistic), relativistic) == pytest.approx(rv, abs=1e-9)


def test_first_order_and_relativistic_shifts():
    wl = np.array([6000.0])
    assert frames.shift_wavelength(wl, 300.0)[0] == pytest.approx(6000.0 * (1 + 300.0 / C), rel=1e-15)
    b = 300.0 / C
    assert frames.shift_wavelength(wl, 300.0, relativistic=True)[0] == pytest.approx(6000.0 * math.sqrt((1 + b) / (1 - b)), rel=1e-15)
    # they differ by v^2 / 2c in velocity: 0.42 km/s at 500 km/s
    f_rel = frames.doppler_factor(500.0, relativistic=True)
    assert frames.velocity_of_factor(f_rel) - 500.0 == pytest.approx(500.0**2 / (2 * C), rel=1e-2)


def test_one_velocity_per_row():
    wl = np.linspace(5000.0, 5010.0, 11)
    out = frames.shift_wavelength(np.broadcast_to(wl, (3, 11)), np.array([-100.0, 0.0, 100.0]))
    np.testing.assert_allclose(out[1], wl)
    np.testing.assert_allclose(out[2], wl * (1 + 100.0 / C))


def test_unphysical_velocity_is_refused():
    with pytest.raises(ConfigError, match="rv_kms must be finite"):
        frames.shift_wavelength(np.ones(3), np.nan)
    with pytest.raises(ConfigError, match="rv_kms"):
        frames.doppler_factor(1e5)


# --------------------------------------------------------------------------------------- barycentric
def _earth_velocity_analytic(jd: float) -> np.ndarray:
    """Earth's heliocentric velocity (km/s, ICRS-like equatorial J2000 axes) from the low-precision solar
    coordinates of the Astronomical Almanac (section C, accuracy 0.01 deg), differentiated numerically, and the
    precession of the equinox removed to first order. Independent of astropy."""

    def earth_position(t):
        n = t - 2451545.0
        g = math.radians((357.528 + 0.9856003 * n) % 360)
        lam = math.radians((280.460 + 0.9856474 * n) % 360 + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
        lam -= math.radians(1.3969713 * n / 36525.0)  # ecliptic of date -> of J2000 (general precession)
        r = 1.00014 - 0.01671 * math.cos(g) - 0.00014 * math.cos(2 * g)
        eps = math.radians(23.439291)
        sun = r * np.array([math.cos(lam), math.sin(lam) * math.cos(eps), math.sin(lam) * math.sin(eps)])
        return -sun  # Earth from the Sun

    h = 0.01  # days
    au_km = 1.495978707e8
    return (earth_position(jd + h) - earth_position(jd - h)) / (2 * h) * au_km / 86400.0


def _rotation_velocity(jd: float, lon_deg: float, lat_deg: float) -> np.ndarray:
    """Velocity (km/s) of a site on the rotating Earth (spherical Earth, GMST from Meeus Eq. 12.4)."""
    t = (jd - 2451545.0) / 36525.0
    gmst = (280.46061837 + 360.98564736629 * (jd - 2451545.0) + 0.000387933 * t * t) % 360
    lst = math.radians(gmst + lon_deg)
    v = 7.2921150e-5 * 6378.137 * math.cos(math.radians(lat_deg))
    return v * np.array([-math.sin(lst), math.cos(lst), 0.0])


@pytest.mark.parametrize("ra, dec, mjd", [(10.0, -30.0, 61000.2), (200.0, 20.0, 61183.1), (83.6, -5.4, 60500.9),
                                          (280.0, -60.0, 62000.5), (135.0, 10.0, 59580.3)])
def test_barycentric_correction_matches_earths_orbit(ra, dec, mjd):
    jd = mjd + 2400000.5
    n = np.array([math.cos(math.radians(dec)) * math.cos(math.radians(ra)),
                  math.cos(math.radians(dec)) * math.sin(math.radians(ra)), math.sin(math.radians(dec))])
    site = frames.VISTA
    expected = float(n @ (_earth_velocity_analytic(jd) + _rotation_velocity(jd, site["lon_deg"], site["lat_deg"])))
    got = float(frames.barycentric_correction(ra, dec, mjd))
    # the analytic model ignores the Sun's motion about the barycentre (< 0.013 km/s) and nutation
    assert got == pytest.approx(expected, abs=0.05)


def test_barycentric_correction_bounds_sign_and_annual_period():
    mjd = 61000.0 + np.arange(0, 365.25, 5.0)
    v = frames.barycentric_correction(np.full(mjd.size, 90.0), np.full(mjd.size, -66.56), mjd)  # the south ecliptic pole (RA 6 h)
    assert np.max(np.abs(v)) < 0.5  # orbital motion is perpendicular to the line of sight; rotation is < 0.43 km/s
    # a star on the ecliptic: a sinusoid of amplitude ~29.8 km/s and a one-year period
    v = frames.barycentric_correction(np.full(mjd.size, 90.0), np.full(mjd.size, 23.44), mjd)
    assert np.max(np.abs(v)) <= 30.3 + 0.43
    assert np.max(v) > 29.0 and np.min(v) < -29.0
    one_year_later = frames.barycentric_correction(90.0, 23.44, mjd[:10] + 365.25636)  # a sidereal year
    assert np.max(np.abs(one_year_later - v[:10])) < 0.9  # same orbital phase; the Earth's rotation phase differs
    # sign: at the March equinox 2026 (MJD 61119.6) the Sun is at RA 0 and the Earth moves towards RA 270,
    # dec -23.4: it approaches a star at RA 270 (the measured RV is too negative: a positive correction)
    v_eq = float(frames.barycentric_correction(270.0, 0.0, 61119.6))
    assert v_eq > 25.0
    assert float(frames.barycentric_correction(90.0, 0.0, 61119.6)) < -25.0


def test_barycentric_correction_agrees_with_pyastronomy():
    pyasl = pytest.importorskip("PyAstronomy.pyasl")
    rng = np.random.default_rng(1)
    ra, dec, mjd = rng.uniform(0, 360, 6), rng.uniform(-85, 25, 6), rng.uniform(59000, 62500, 6)
    ours = frames.barycentric_correction(ra, dec, mjd)
    site = frames.VISTA
    theirs = [pyasl.helcorr(site["lon_deg"], site["lat_deg"], site["height_m"], r, d, m + 2400000.5)[0]
              for r, d, m in zip(ra, dec, mjd)]
    np.testing.assert_allclose(ours, theirs, atol=0.02)  # helcorr (REDUCE) is accurate to a few m/s


def test_location_and_inputs_are_checked():
    with pytest.raises(ConfigError, match="location needs exactly the keys"):
        frames.barycentric_correction(10.0, -30.0, 61000.0, location={"lon": 0, "lat": 0, "height_m": 0})
    with pytest.raises(ConfigError, match="dec_deg must be in"):
        frames.barycentric_correction(10.0, -95.0, 61000.0)
    with pytest.raises(ConfigError, match="mjd must be a Modified Julian Date"):
        frames.barycentric_correction(10.0, -30.0, 2461000.5)  # a JD given as MJD
    # another site gives another correction (rotation differs by up to 0.46 km/s)
    equator = {"lon_deg": 110.0, "lat_deg": 0.0, "height_m": 0.0}
    assert abs(float(frames.barycentric_correction(10.0, -30.0, 61000.0, location=equator))
               - float(frames.barycentric_correction(10.0, -30.0, 61000.0))) > 0.01
