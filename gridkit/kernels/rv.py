"""Radial velocity of a spectrum against a template: a cross-correlation on a uniform ln(lambda) grid for the
global search, then a chi-square minimisation over velocity with the template shifted, on the observed pixels.

Inputs: the observed spectrum -- wavelength (n,) in A (increasing; arms may be separated by gaps), flux (n,)
continuum-normalised (e.g. by `kernels.continuum.normalise`), sigma (n,) in flux units or None, good (n,) bool
-- and a template in its rest frame: wavelength (m,) in A and continuum-normalised flux (m,) at the observed
resolving power (e.g. a model of the training grid at the instrument's pixels). Velocities in km/s, positive
receding; the Doppler convention is `kernels.frames.doppler_factor` (default first order, lambda_obs =
lambda_rest (1 + v/c), the IAU c z convention).

1. **CCF** (`ccf_lnlambda`): both spectra as line depth (1 - flux), so the lines, not the continuum, correlate,
   less their mean depth (the spectrum's weighted mean, the template's mean), on a uniform ln(lambda) grid as
   fine as the finest observed pixel (a velocity shift is then a whole number of bins). Each bin of the observed
   spectrum carries a weight 1/sigma^2 (1 without sigma), zero where either neighbouring pixel is masked, not
   finite, or across an arm gap: excluded pixels enter no sum -- neither the
   numerator nor the normalisation -- rather than being zero-filled into the CCF. At lag k

       C(k) = sum_i w_i d_i t_(i-k) / sqrt( sum_i w_i d_i^2 c_(i-k) * sum_i w_i t_(i-k)^2 )    (-1 <= C <= 1)

   with c the template's coverage (bins the shifted template does not cover are left out as well), computed for
   every lag in `rv_range` (default +-500 km/s) with FFT correlations. The peak, refined by a parabola through
   it and its neighbours, is the CCF velocity, its uncertainty that of Zucker (2003, MNRAS 342, 1291, Eq. 4):
   sigma_v^2 = -[N C''/C C^2 / (1 - C^2)]^-1.
2. **Chi-square** (`measure_rv`, method 'chi2', the default): on the observed good pixels (no resampling, so no
   interpolation-correlated noise), the model at velocity v is the template (cubic spline) at lambda_i / D(v)
   times a Legendre polynomial of degree `poly_degree` per arm, the polynomial solved by weighted linear least
   squares at each v (it absorbs residual differences of normalisation). chi^2(v) is scanned around the CCF
   peak, minimised (Brent), and its curvature gives the uncertainty: sigma_v = (chi''/2)^-1/2, i.e.
   Delta chi^2 = 1, profiling over the polynomial, times sqrt(max(chi^2 / dof, 1)): residuals beyond the noise
   (the template's mismatch, ~1.3 chi^2/dof at S/N 250) count as noise. Without sigma, the weights are 1 and the
   uncertainty is scaled by sqrt(chi^2 / dof).

Measured (benchmarks/bench_rv.py, 60 spectra per S/N; tests/gridkit/test_rv.py states the acceptance): 4MOST HR
spectra of five FGK dwarfs and giants at RVs in +-150 km/s, times a blaze continuum, with 2 % masked pixels and a
NaN gap, normalised by `continuum.normalise`, against templates 250 K, 0.2 dex in [Fe/H] and logg off.
Error (measured - true) of the chi-square method, bias +- scatter [median reported uncertainty], km/s:

    S/N per A   10: +0.04 +- 0.27 [0.31]   20: +0.05 +- 0.18 [0.15]   50: +0.01 +- 0.07 [0.06]
               100: +0.01 +- 0.03 [0.03]  250: +0.015 +- 0.015 [0.014]

(scatter / reported, each star's mismatch bias removed: 0.89-1.15). The CCF-parabola mode is as good up to S/N 50
but scatters 1.7 times more at S/N 250 (0.025 km/s; interpolated bins and a parabolic peak, the likely causes),
and Zucker's formula misjudges its errors by factors 0.56-1.30; a plain `np.correlate` of zero-filled spectra reaches 0.045 km/s at S/N 250. Cost: ~0.16 s
per spectrum (chi-square), 0.03 s (CCF), one core.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import legendre
from scipy import optimize, signal
from scipy.interpolate import CubicSpline

from ..errors import ConfigError, GridError
from .frames import C_KMS, doppler_factor, velocity_of_factor
from .lnlambda import GAP_FACTOR, segments

#: The default search range (km/s): 4MOST's stars, with a margin.
RV_RANGE = (-500.0, 500.0)
#: Half-width (in CCF bins) of the chi-square scan around the CCF peak.
SCAN_BINS = 4
METHODS = ("chi2", "ccf")


@dataclass(frozen=True)
class RVResult:
    """A radial-velocity measurement. rv, rv_err: km/s (rv_err: 1 sigma, statistical); ccf_rv: the CCF peak
    (km/s); ccf_peak: its normalised height (-1..1); chi2_red: chi^2 / dof at the minimum (method 'chi2'; NaN for
    'ccf'); n_pixels: pixels used; method: 'chi2' or 'ccf'."""

    rv: float
    rv_err: float
    ccf_rv: float
    ccf_peak: float
    chi2_red: float
    n_pixels: int
    method: str


# ------------------------------------------------------------------------------------------------- inputs
def _check_axis(wl: np.ndarray, name: str) -> None:
    if wl.ndim != 1 or wl.size < 10:
        raise GridError(f"{name} must be one-dimensional with at least 10 pixels, got shape {wl.shape}")
    if not np.all(np.isfinite(wl)) or np.any(wl <= 0):
        i = int(np.flatnonzero(~(np.isfinite(wl) & (wl > 0)))[0])
        raise GridError(f"{name} must be finite and positive; index {i} is {wl[i]}")
    step = np.diff(wl)
    if np.any(step <= 0):
        i = int(np.flatnonzero(step <= 0)[0])
        raise GridError(f"{name} must increase; it does not at index {i + 1} ({wl[i]:.4f} -> {wl[i + 1]:.4f} A)")


def _prepare(wavelength, flux, sigma, good, template_wavelength, template_flux):
    wl = np.asarray(wavelength, dtype=np.float64)
    fl = np.asarray(flux, dtype=np.float64)
    _check_axis(wl, "wavelength")
    if fl.shape != wl.shape:
        raise GridError(f"flux must have one value per wavelength ({wl.size}), got shape {fl.shape}")
    ok = np.isfinite(fl)
    if sigma is not None:
        sg = np.asarray(sigma, dtype=np.float64)
        if sg.shape != wl.shape:
            raise GridError(f"sigma must have one value per wavelength ({wl.size}), got shape {sg.shape}")
        ok &= np.isfinite(sg) & (sg > 0)
    else:
        sg = None
    if good is not None:
        gm = np.asarray(good)
        if gm.shape != wl.shape or gm.dtype != bool:
            raise GridError(f"good must be a boolean mask of {wl.size} pixels, got shape {gm.shape} and dtype {gm.dtype}")
        ok &= gm
    if ok.sum() < 100:
        raise GridError(f"the spectrum has {int(ok.sum())} usable pixels (finite flux and sigma > 0, good); at least 100 are needed")
    med = float(np.median(fl[ok]))
    if not 0.3 <= med <= 3.0:
        raise GridError(f"flux must be continuum-normalised (median near 1), its median over good pixels is {med:.4g}; "
                        "normalise it first (gridkit.kernels.continuum.normalise)")
    twl = np.asarray(template_wavelength, dtype=np.float64)
    tfl = np.asarray(template_flux, dtype=np.float64)
    _check_axis(twl, "template_wavelength")
    if tfl.shape != twl.shape:
        raise GridError(f"template_flux must have one value per template wavelength ({twl.size}), got shape {tfl.shape}")
    if not np.all(np.isfinite(tfl)):
        i = int(np.flatnonzero(~np.isfinite(tfl))[0])
        raise GridError(f"template_flux must be finite; index {i} ({twl[i]:.4f} A) is {tfl[i]}")
    return wl, fl, sg, ok, twl, tfl


def _check_range(rv_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rv_range)
    except (TypeError, ValueError):
        raise ConfigError(f"rv_range must be two velocities (km/s), got {rv_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi and max(abs(lo), abs(hi)) <= 0.1 * C_KMS):
        raise ConfigError(f"rv_range must be (lo, hi) km/s with lo < hi and |v| <= {0.1 * C_KMS:.0f}, got {rv_range!r}")
    return lo, hi


class _Template:
    """A rest-frame template as cubic splines per segment (no spline across a gap): `depth(lam)` = 1 - flux at
    wavelengths lam (A), NaN outside its coverage."""

    def __init__(self, wl: np.ndarray, fl: np.ndarray):
        self.parts = [(wl[s][0], wl[s][-1], CubicSpline(wl[s], fl[s])) for s in segments(wl, GAP_FACTOR) if wl[s].size >= 4]
        if not self.parts:
            raise GridError("template_wavelength has no segment of 4 or more pixels")

    def flux(self, lam: np.ndarray) -> np.ndarray:
        out = np.full(lam.shape, np.nan)
        for lo, hi, spl in self.parts:
            inside = (lam >= lo) & (lam <= hi)
            out[inside] = spl(lam[inside])
        return out


# ------------------------------------------------------------------------------------------------- CCF
def _lnlambda_bins(wl: np.ndarray, ok: np.ndarray, values: list[np.ndarray]):
    """The observed spectrum on a uniform ln(lambda) grid as fine as its finest pixel: (ln grid, step, good bins,
    values interpolated linearly between the two neighbouring pixels). A bin is good where both neighbours are
    good and not separated by a gap."""
    lnw = np.log(wl)
    step = float(np.min(np.diff(lnw)))
    n = int(math.floor((lnw[-1] - lnw[0]) / step)) + 1
    grid = lnw[0] + step * np.arange(n)
    j = np.clip(np.searchsorted(lnw, grid, side="right") - 1, 0, wl.size - 2)
    t = (grid - lnw[j]) / (lnw[j + 1] - lnw[j])
    gap = np.zeros(wl.size, bool)  # gap[j]: pixel j is the last of its segment (no bin spans an arm gap)
    for seg in segments(wl, GAP_FACTOR):
        gap[seg.stop - 1] = True
    okb = ok[j] & ok[j + 1] & ~gap[j]
    out = [np.where(okb, v[j] + (v[j + 1] - v[j]) * t, 0.0) for v in values]
    return grid, step, okb, out


def ccf_lnlambda(wavelength, flux, sigma, good, template_wavelength, template_flux, rv_range=RV_RANGE,
                 relativistic: bool = False):
    """The normalised, error-weighted cross-correlation of 1 - flux with the template's 1 - flux on a uniform
    ln(lambda) grid (see the module docstring). Returns (velocities (k,) km/s, one per lag of the grid's step,
    covering rv_range; ccf (k,), NaN where the template covers no good bin; n_bins (k,): good bins the template
    covers at each lag).

    wavelength, flux, sigma (or None), good (or None): the observed spectrum (n,); template_wavelength,
    template_flux: the template (m,) in its rest frame; rv_range: (lo, hi) km/s searched."""
    wl, fl, sg, ok, twl, tfl = _prepare(wavelength, flux, sigma, good, template_wavelength, template_flux)
    lo, hi = _check_range(rv_range)
    v, ccf, n_bins, _ = _ccf(wl, fl, sg, ok, _Template(twl, tfl), lo, hi, relativistic)
    return v, ccf, n_bins


def _ccf(wl, fl, sg, ok, tpl: _Template, lo, hi, relativistic):
    w_pix = 1.0 / sg**2 if sg is not None else np.ones_like(fl)
    grid, step, okb, (depth, w) = _lnlambda_bins(wl, ok, [1.0 - fl, np.where(ok, w_pix, 0.0)])
    w = np.where(okb, w, 0.0)
    # lags: ln D(v) = k * step
    k_lo = int(math.floor(math.log(float(doppler_factor(lo, relativistic))) / step))
    k_hi = int(math.ceil(math.log(float(doppler_factor(hi, relativistic))) / step))
    # the template at ln(lambda) - k step for every grid bin and lag: on an extended grid
    ext = grid[0] + step * np.arange(-k_hi, grid.size - k_lo)
    t_flux = tpl.flux(np.exp(ext))
    cov = np.isfinite(t_flux).astype(np.float64)
    # mean-subtracted (a Pearson correlation, as Zucker 2003 assumes): the weighted mean depth of the spectrum,
    # the mean depth of the template where it is defined
    depth = np.where(okb, depth - np.sum(w * depth) / np.sum(w), 0.0)
    t = np.where(cov > 0, 1.0 - t_flux, 0.0)
    t = np.where(cov > 0, t - t[cov > 0].mean(), 0.0)
    a = w * depth
    num = signal.correlate(t, a, mode="valid", method="fft")  # index m: lag k = k_hi - m
    t2 = signal.correlate(t * t, w, mode="valid", method="fft")
    d2 = signal.correlate(cov, w * depth * depth, mode="valid", method="fft")
    nb = signal.correlate(cov, okb.astype(np.float64), mode="valid", method="fft")
    lags = k_hi - np.arange(num.size)
    order = np.argsort(lags)
    num, t2, d2, nb, lags = num[order], t2[order], d2[order], np.rint(nb[order]).astype(np.int64), lags[order]
    with np.errstate(invalid="ignore", divide="ignore"):
        ccf = np.where((t2 > 0) & (d2 > 0), num / np.sqrt(np.abs(t2 * d2)), np.nan)
    v = velocity_of_factor(np.exp(lags * step), relativistic)
    return v, ccf, nb, step


def _ccf_peak(v, ccf, nb, lo, hi):
    """Parabola through the CCF's highest bin within [lo, hi] and its neighbours: (v_peak, C_peak, sigma_v Zucker)."""
    inside = (v >= lo) & (v <= hi) & np.isfinite(ccf)
    if not inside.any():
        raise GridError(f"the template does not cover the spectrum at any velocity in {lo:g} .. {hi:g} km/s")
    i = int(np.flatnonzero(inside)[np.nanargmax(ccf[inside])])
    if i == 0 or i == v.size - 1 or not (np.isfinite(ccf[i - 1]) and np.isfinite(ccf[i + 1])):
        return float(v[i]), float(ccf[i]), math.inf
    y0, y1, y2 = ccf[i - 1], ccf[i], ccf[i + 1]
    dv = 0.5 * (v[i + 1] - v[i - 1])
    curv = y0 - 2 * y1 + y2
    off = 0.5 * (y0 - y2) / curv if curv < 0 else 0.0
    peak = y1 - 0.25 * (y0 - y2) * off
    c2 = curv / dv**2  # C'' per (km/s)^2
    n = float(nb[i])
    c = min(float(peak), 1 - 1e-12)
    zucker = -1.0 / (n * c2 / c * c * c / (1 - c * c)) if (c > 0 and c2 < 0) else math.inf
    return float(v[i] + off * dv), float(peak), math.sqrt(zucker) if zucker > 0 else math.inf


# ------------------------------------------------------------------------------------------------- chi-square
class _Chi2:
    """chi^2(v) of the observed pixels against the template shifted to v times a polynomial per arm."""

    def __init__(self, wl, fl, w, ok, tpl: _Template, v_lo, v_hi, poly_degree, relativistic):
        self.relativistic = relativistic
        # pixels the shifted template covers at every velocity of the scan
        use = ok & _covered(wl, tpl, v_lo, v_hi, relativistic)
        self.blocks = []
        for seg in segments(wl, GAP_FACTOR):
            idx = np.arange(wl.size)[seg][use[seg]]
            if idx.size <= poly_degree + 1:
                continue
            x = wl[idx]
            u = 2 * (x - wl[seg][0]) / (wl[seg][-1] - wl[seg][0]) - 1
            self.blocks.append((idx, legendre.legvander(u, poly_degree)))
        self.n = int(sum(b[0].size for b in self.blocks))
        _check_coverage(self.n, int(ok.sum()), v_lo, v_hi)
        self.n_par = len(self.blocks) * (poly_degree + 1)
        self.wl, self.fl, self.w, self.tpl = wl, fl, w, tpl

    def __call__(self, v: float) -> float:
        f = float(doppler_factor(v, self.relativistic))
        total = 0.0
        for idx, vander in self.blocks:
            t = self.tpl.flux(self.wl[idx] / f)
            a = vander * t[:, None]
            sw = np.sqrt(self.w[idx])
            coef, *_ = np.linalg.lstsq(a * sw[:, None], self.fl[idx] * sw, rcond=None)
            r = (self.fl[idx] - a @ coef) * sw
            total += float(r @ r)
        return total


def _covered(wl: np.ndarray, tpl: _Template, v_lo: float, v_hi: float, relativistic: bool) -> np.ndarray:
    """Pixels whose rest wavelength lies within one template segment at every velocity in [v_lo, v_hi]."""
    f_lo, f_hi = float(doppler_factor(v_lo, relativistic)), float(doppler_factor(v_hi, relativistic))
    inside = np.zeros(wl.size, bool)
    for t_lo, t_hi, _ in tpl.parts:  # rest wavelengths over the range: wl / f_hi .. wl / f_lo
        inside |= (wl / f_hi >= t_lo) & (wl / f_lo <= t_hi)
    return inside


def _check_coverage(n_covered: int, n_good: int, v_lo: float, v_hi: float) -> None:
    if n_covered < max(100, 0.5 * n_good):
        where = f"{v_lo:.1f} km/s" if v_lo == v_hi else f"every velocity in {v_lo:.1f} .. {v_hi:.1f} km/s"
        raise GridError(f"the template covers {n_covered} of the {n_good} good pixels at {where} "
                        "(at least half are needed): give a template covering the spectrum, or restrict `good` to what it covers")


def measure_rv(wavelength, flux, sigma, good, template_wavelength, template_flux, *, rv_range=RV_RANGE,
               method: str = "chi2", poly_degree: int = 2, relativistic: bool = False) -> RVResult:
    """The radial velocity (km/s) of a continuum-normalised spectrum against a rest-frame template (see the
    module docstring for the method and the inputs' units and shapes).

    method: 'chi2' (default: CCF search, then chi-square minimisation with a polynomial per arm of degree
    `poly_degree`, uncertainty from the curvature) or 'ccf' (CCF peak by a parabola, Zucker 2003 uncertainty).
    rv_range: (lo, hi) km/s searched. relativistic: the Doppler convention (`frames.doppler_factor`)."""
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(poly_degree, bool) or not isinstance(poly_degree, (int, np.integer)) or not 0 <= poly_degree <= 10:
        raise ConfigError(f"poly_degree must be an integer in 0 .. 10, got {poly_degree!r}")
    wl, fl, sg, ok, twl, tfl = _prepare(wavelength, flux, sigma, good, template_wavelength, template_flux)
    lo, hi = _check_range(rv_range)
    tpl = _Template(twl, tfl)
    v, ccf, nb, step = _ccf(wl, fl, sg, ok, tpl, lo, hi, relativistic)
    v_ccf, c_peak, err_ccf = _ccf_peak(v, ccf, nb, lo, hi)
    _check_coverage(int((ok & _covered(wl, tpl, v_ccf, v_ccf, relativistic)).sum()), int(ok.sum()), v_ccf, v_ccf)
    if method == "ccf":
        return RVResult(v_ccf, err_ccf, v_ccf, c_peak, math.nan, int(ok.sum()), "ccf")

    bin_v = C_KMS * step  # km/s per CCF bin
    half = SCAN_BINS * bin_v
    w = 1.0 / sg**2 if sg is not None else np.ones_like(fl)
    chi2 = _Chi2(wl, fl, np.where(ok, w, 0.0), ok, tpl, v_ccf - half - 2 * bin_v, v_ccf + half + 2 * bin_v,
                 int(poly_degree), relativistic)
    scan = np.unique(np.clip(v_ccf + np.linspace(-half, half, 4 * SCAN_BINS + 1), lo, hi))  # never beyond rv_range
    values = np.array([chi2(x) for x in scan])
    j = int(np.argmin(values))
    a, b = scan[max(j - 1, 0)], scan[min(j + 1, scan.size - 1)]
    res = optimize.minimize_scalar(chi2, bounds=(a, b), method="bounded", options={"xatol": 1e-4})
    v_best = float(res.x)
    chi_min = float(res.fun)
    h = 0.5 * bin_v
    pts = v_best + h * np.arange(-2, 3)
    vals = np.array([chi2(x) for x in pts])
    curv = np.polyfit(pts - v_best, vals, 2)[0]  # chi^2 ~ curv (v - v_best)^2 + ...
    dof = max(chi2.n - chi2.n_par - 1, 1)
    chi2_red = chi_min / dof
    err = 1.0 / math.sqrt(curv) if curv > 0 else math.inf
    # residuals beyond the noise (template mismatch; without sigma: the unknown noise) scale the uncertainty
    err *= math.sqrt(chi2_red if sg is None else max(chi2_red, 1.0))
    return RVResult(v_best, err, v_ccf, c_peak, chi2_red, chi2.n, "chi2")
