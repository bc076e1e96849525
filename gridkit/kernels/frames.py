"""Reference frames of a spectrum's wavelength axis: air <-> vacuum, Doppler shifts, the barycentric correction.

Wavelengths in Angstrom, velocities in km/s (positive = receding, redshift).

**Air and vacuum.** The refractive index of standard dry air is that of Morton (2000, ApJS 130, 403, Eq. 8),
the formula VALD uses and `specutils.utils.wcs_utils.refraction_index(method='Morton2000')` implements
(its default), with sigma = 1e4 / lambda_vac in 1/um:

    n - 1 = 8.34254e-5 + 2.406147e-2 / (130 - sigma^2) + 1.5998e-4 / (38.9 - sigma^2)

`vac_to_air` divides by n(lambda_vac) exactly as specutils does; `air_to_vac` solves lambda_air * n(lambda_vac)
= lambda_vac by fixed-point iteration to machine precision (specutils' default 'inversion' scheme evaluates
n at the air wavelength instead: errors up to 4e-5 A in 3000-10000 A), so the two are inverse to < 1e-8 A. The formula is
written out here (three lines) rather than imported: importing specutils costs ~5 s per process (it is loaded only for
the Spectrum1D interchange, `gridkit.io.Spectrum.to_specutils`), and its inversion is the less exact one; the tests
check ours against specutils.
In 5000-7000 A, Morton 2000 differs from Edlen 1953 (the IAU 1991 resolution's reference) by < 1.2e-4 A and
from Ciddor 1996 by < 1e-5 A (measured with specutils' implementations): far below a 4MOST pixel (0.05 A).
The 4MOST spectra, the line lists and the synthetic grids of this package are in air
(`gridkit.instruments.Instrument.medium`).

**Doppler shifts.** `shift_wavelength` moves rest-frame wavelengths to a frame receding at `rv_kms`:
by default the first-order (classical) relation lambda_obs = lambda_rest (1 + v/c), i.e. the radial velocity
is the IAU "barycentric radial-velocity measure" c z_B (Lindegren & Dravins 2003, A&A 401, 1185), the
convention spectroscopic surveys quote; `relativistic=True` uses the special-relativistic longitudinal
Doppler factor sqrt((1 + b) / (1 - b)) instead. The two differ by v^2 / (2c): 0.04 km/s at 150 km/s and 0.42 km/s
at 500 km/s (the largest 4MOST velocity searched). `to_rest_frame` is the exact inverse of either.

**Barycentric correction.** `barycentric_correction` is astropy's `SkyCoord.radial_velocity_correction`
(kind='barycentric': the observer's velocity towards the target, including Earth's rotation, with the
relativistic corrections of Wright & Eastman 2014), for an observatory that defaults to VISTA at Paranal,
the telescope of 4MOST. Its sign convention: v_bary = v_measured + correction (+ v_measured correction / c,
astropy's exact form), i.e. the value to *add* to a topocentric RV. Offline: IERS auto-download is switched off for the call (astropy's bundled
IERS-B table and leap seconds are used; dates after the table -- future observations -- fall back to the
50-year mean polar motion, an arcsecond-level effect: < 1 m/s on the correction).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError

C_KMS = 299_792.458

#: VISTA (4.1 m, Cerro Paranal; 4MOST's telescope), geodetic WGS84: longitude (deg, east +), latitude (deg),
#: height (m). Source: the OBSGEO-L/B/H keywords of VISTA/VIRCAM raw frames (ESO's headers also carry them as
#: HIERARCH ESO TEL GEOLON = -70.3976, TEL GEOLAT = -24.6157, TEL GEOELEV = 2530), e.g. the VIRCAM frame
#: header of the FITS time-representation paper (Rots et al. 2015, A&A 574, A36) that astropy's WCS tests
#: reproduce. (EarthLocation.of_site would need the network.)
VISTA = {"lon_deg": -70.3976, "lat_deg": -24.6157, "height_m": 2530.0}
#: The largest |rv| these kernels accept: beyond it the "4MOST star" assumption (and the first-order default) fails.
MAX_RV_KMS = 0.1 * C_KMS

# Morton (2000), Eq. 8: n - 1 for sigma^2 in 1/um^2
_A, _B1, _C1, _B2, _C2 = 8.34254e-5, 2.406147e-2, 130.0, 1.5998e-4, 38.9


def refractive_index_air(wavelength_vac: np.ndarray) -> np.ndarray:
    """n of standard dry air (Morton 2000, Eq. 8) at vacuum wavelengths (...) in Angstrom (valid > 2000 A)."""
    wl = np.asarray(wavelength_vac, dtype=np.float64)
    if np.any(~(wl >= 2000.0)):
        bad = wl[~(wl >= 2000.0)].flat[0]
        raise ConfigError(f"wavelength must be >= 2000 A (Angstrom) for the Morton 2000 formula, got {bad}")
    s2 = (1.0e4 / wl) ** 2
    return 1.0 + _A + _B1 / (_C1 - s2) + _B2 / (_C2 - s2)


def vac_to_air(wavelength_vac: np.ndarray) -> np.ndarray:
    """Air wavelengths (same shape, A) of vacuum wavelengths (A): lambda_vac / n(lambda_vac) (Morton 2000)."""
    wl = np.asarray(wavelength_vac, dtype=np.float64)
    return wl / refractive_index_air(wl)


def air_to_vac(wavelength_air: np.ndarray) -> np.ndarray:
    """Vacuum wavelengths (same shape, A) of air wavelengths (A): the solution of lambda_vac / n(lambda_vac)
    = lambda_air (Morton 2000), by fixed-point iteration (each step gains ~4 digits; converged to 1e-13 relative)."""
    air = np.asarray(wavelength_air, dtype=np.float64)
    vac = air * refractive_index_air(np.maximum(air, 2000.0))
    for _ in range(8):
        new = air * refractive_index_air(vac)
        if np.all(np.abs(new - vac) <= 1e-13 * np.abs(vac)):
            return new
        vac = new
    return vac


def _beta(rv_kms) -> np.ndarray:
    v = np.asarray(rv_kms, dtype=np.float64)
    if np.any(~np.isfinite(v)) or np.any(np.abs(v) > MAX_RV_KMS):
        bad = v[~(np.abs(v) <= MAX_RV_KMS)].flat[0]
        raise ConfigError(f"rv_kms must be finite with |rv| <= {MAX_RV_KMS:.0f} km/s, got {bad}")
    return v / C_KMS


def doppler_factor(rv_kms, relativistic: bool = False) -> np.ndarray:
    """lambda_obs / lambda_rest for a source receding at rv_kms (km/s; any shape): 1 + v/c (the IAU c z
    convention, default) or sqrt((1 + v/c) / (1 - v/c)) (`relativistic`)."""
    b = _beta(rv_kms)
    return np.sqrt((1.0 + b) / (1.0 - b)) if relativistic else 1.0 + b


def shift_wavelength(wavelength: np.ndarray, rv_kms, relativistic: bool = False) -> np.ndarray:
    """Rest-frame wavelengths (..., n) in A as observed from a frame the source recedes from at rv_kms (km/s;
    a scalar, or shape (...) broadcasting against the leading axes, one velocity per row)."""
    wl = np.asarray(wavelength, dtype=np.float64)
    f = doppler_factor(rv_kms, relativistic)
    return wl * (f[..., None] if f.ndim else f)


def to_rest_frame(wavelength: np.ndarray, rv_kms, relativistic: bool = False) -> np.ndarray:
    """The inverse of `shift_wavelength`: observed wavelengths (..., n) in A to the rest frame of a source
    receding at rv_kms (km/s)."""
    wl = np.asarray(wavelength, dtype=np.float64)
    f = doppler_factor(rv_kms, relativistic)
    return wl / (f[..., None] if f.ndim else f)


def velocity_of_factor(factor, relativistic: bool = False) -> np.ndarray:
    """The velocity (km/s) whose `doppler_factor` is `factor` (lambda_obs / lambda_rest)."""
    f = np.asarray(factor, dtype=np.float64)
    if relativistic:
        return C_KMS * (f * f - 1.0) / (f * f + 1.0)
    return C_KMS * (f - 1.0)


def barycentric_correction(ra_deg, dec_deg, mjd, location: dict | None = None, time_scale: str = "utc") -> np.ndarray:
    """The barycentric radial-velocity correction (km/s) for targets at ICRS (ra_deg, dec_deg) in degrees
    observed at `mjd` (Modified Julian Date of mid-exposure, in `time_scale`, default UTC as in MJD-OBS headers;
    scalars or arrays of one shape) from `location` ({'lon_deg', 'lat_deg', 'height_m'}, geodetic WGS84;
    default VISTA at Paranal). Add it to a topocentric RV for the barycentric RV (astropy's convention).

    Computed by astropy (`SkyCoord.radial_velocity_correction(kind='barycentric')`) without network access."""
    from astropy import units as u
    from astropy.coordinates import EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers
    from astropy.utils.exceptions import AstropyWarning

    loc = dict(VISTA if location is None else location)
    unknown = set(loc) - {"lon_deg", "lat_deg", "height_m"}
    missing = {"lon_deg", "lat_deg", "height_m"} - set(loc)
    if unknown or missing:
        raise ConfigError(f"location needs exactly the keys lon_deg, lat_deg, height_m; got {sorted(loc)}")
    if not (-90.0 <= float(loc["lat_deg"]) <= 90.0 and -360.0 <= float(loc["lon_deg"]) <= 360.0):
        raise ConfigError(f"location: lat_deg must be in [-90, 90] and lon_deg in [-360, 360], got {loc}")
    ra, dec, t = np.broadcast_arrays(np.asarray(ra_deg, dtype=np.float64), np.asarray(dec_deg, dtype=np.float64),
                                     np.asarray(mjd, dtype=np.float64))
    if np.any(~np.isfinite(ra)):
        raise ConfigError(f"ra_deg must be finite, got {ra[~np.isfinite(ra)].flat[0]}")
    if np.any(~(np.abs(dec) <= 90.0)):
        raise ConfigError(f"dec_deg must be in [-90, 90], got {dec[~(np.abs(dec) <= 90.0)].flat[0]}")
    if np.any(~((t > 15_020.0) & (t < 88_000.0))):  # 1900 .. 2100: astropy's built-in ephemeris and sane headers
        raise ConfigError(f"mjd must be a Modified Julian Date between 1900 and 2100 (15020 .. 88000), got {t[~((t > 15_020.0) & (t < 88_000.0))].flat[0]}")
    site = EarthLocation.from_geodetic(float(loc["lon_deg"]) * u.deg, float(loc["lat_deg"]) * u.deg, float(loc["height_m"]) * u.m)
    with iers.conf.set_temp("auto_download", False), warnings.catch_warnings():
        # future dates: "dubious year" (leap seconds unknown yet) and the mean polar motion -- sub-m/s effects here
        warnings.filterwarnings("ignore", message=".*dubious year.*")
        warnings.filterwarnings("ignore", category=AstropyWarning, message=".*polar motion.*")
        coord = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
        obstime = Time(t, format="mjd", scale=time_scale)
        v = coord.radial_velocity_correction(kind="barycentric", obstime=obstime, location=site)
    return np.asarray(v.to_value(u.km / u.s), dtype=np.float64)


__all__ = ["C_KMS", "VISTA", "refractive_index_air", "vac_to_air", "air_to_vac", "doppler_factor", "shift_wavelength",
           "to_rest_frame", "velocity_of_factor", "barycentric_correction"]
