"""Radial velocities: 4MOST HR spectra of FGK stars (analytic generator, green + red arms, R = 20000, 0.05 A) at a
known RV in +-150 km/s, times a blaze continuum, with noise, 2 % masked pixels and a NaN gap, normalised by the
continuum operator and measured against a template of other labels: within 0.5 km/s at S/N 50 per A; the
scatter over noise draws matches the reported uncertainty within 20 %; masked pixels never enter; exact shifts of
the template itself come back to < 0.02 km/s in either Doppler convention; clear errors."""
import functools

import numpy as np
import pytest

import gridkit
from gridkit.errors import ConfigError, GridError
from gridkit.kernels import continuum, rv
from gridkit.kernels.frames import doppler_factor
from gridkit.kernels.lnlambda import segments

C = 299_792.458
GAP = (5400.0, 5405.0)


@functools.lru_cache(maxsize=None)
def _synth(wide: bool = False):
    if wide:  # room for +-500 km/s (11 A at 6800 A)
        return gridkit.synth.AnalyticSynthesizer(wavelength_range=((5130.0, 5760.0), (6070.0, 6825.0)))
    return gridkit.synth.AnalyticSynthesizer()


@functools.lru_cache(maxsize=None)
def hr_spectrum(teff, logg, feh, rv_kms=0.0, vbroad=4.0, wide=False, relativistic=False):
    """A noiseless 4MOST HR spectrum (green + red) of the analytic model, Doppler-shifted by rv_kms before the
    instrument (the rest-frame synthesis' wavelengths times the Doppler factor), continuum-normalised."""
    syn = _synth(wide)
    labels = {"teff": teff, "logg": logg, "feh": feh, "vmic": 1.0}
    flux = syn.synthesize(labels)
    wl = syn.wavelength() * float(doppler_factor(rv_kms, relativistic))
    ds = gridkit.from_arrays(wl, flux[None], {k: [v] for k, v in {**labels, "vbroad": vbroad}.items()})
    out = gridkit.degrade(ds, snr=None).compute()
    return out.wavelength.values, out.flux.values[0].astype(np.float64)


def observe(wl, flux, snr_per_a, rng):
    """(flux, sigma, good): a blaze continuum (10-30 % per arm), noise sigma = flux / (S/N per pixel), 2 % masked
    pixels holding garbage, a NaN gap."""
    cont = np.empty_like(wl)
    for seg in segments(wl):
        x = wl[seg]
        u = (x - 0.5 * (x[0] + x[-1])) / (0.5 * (x[-1] - x[0]))
        cont[seg] = np.sinc(rng.uniform(0.2, 0.32) * (u - rng.uniform(-0.15, 0.15))) ** 2 * (1 + rng.uniform(-0.08, 0.08) * u)
    clean = 1000.0 * cont * flux
    sigma = np.abs(clean) / (snr_per_a * np.sqrt(0.05))
    noisy = clean + rng.standard_normal(wl.size) * sigma
    good = np.ones(wl.size, bool)
    bad = rng.choice(wl.size, int(0.02 * wl.size), replace=False)
    good[bad] = False
    noisy[bad] *= rng.uniform(0.0, 3.0, bad.size)
    gap = (wl >= GAP[0]) & (wl <= GAP[1])
    noisy[gap] = np.nan
    sigma[gap] = np.nan
    good[gap] = False
    return noisy, sigma, good


def measure(wl, noisy, sigma, good, template, **kw):
    norm, cont = continuum.normalise(wl, noisy, good)
    return rv.measure_rv(wl, norm, sigma / cont, good, *template, **kw)


# (star, template): a few hundred K and 0.2 dex apart, as when the true labels are unknown
CASES = [((5000.0, 4.5, 0.0), (5250.0, 4.3, 0.2)), ((5800.0, 4.2, -0.4), (6100.0, 4.4, -0.6)),
         ((4800.0, 2.5, -0.1), (4500.0, 2.8, 0.1)), ((6300.0, 4.1, -1.0), (6000.0, 4.3, -0.8))]


@pytest.mark.parametrize("star, template", CASES)
def test_rv_within_half_a_km_per_s_at_snr_50(star, template):
    rng = np.random.default_rng(int(star[0]))
    tpl = hr_spectrum(*template)
    for _ in range(2):
        v_true = float(rng.uniform(-150.0, 150.0))
        wl, flux = hr_spectrum(*star, rv_kms=round(v_true, 3))
        res = measure(wl, *observe(wl, flux, 50.0, rng), tpl)
        print(f"{star} vs {template}: true {v_true:+.3f}, measured {res.rv:+.3f} +- {res.rv_err:.3f} km/s, "
              f"chi2_red {res.chi2_red:.2f}, ccf {res.ccf_rv:+.3f} (peak {res.ccf_peak:.3f})")
        assert abs(res.rv - round(v_true, 3)) < 0.5
        assert 0.01 < res.rv_err < 0.25  # photon-limited: ~0.06 km/s for an FGK star at S/N 50 per A
        assert res.method == "chi2" and res.n_pixels > 0.9 * wl.size


@pytest.mark.parametrize("snr, draws, tolerance", [
    (50.0, 40, 0.25),  # 40 draws: the scatter itself is known to 11 %
    pytest.param(20.0, 80, 0.2, marks=pytest.mark.slow),  # 80 draws: to 8 %
    pytest.param(100.0, 80, 0.2, marks=pytest.mark.slow),
])
def test_reported_uncertainty_matches_the_scatter_over_noise_draws(snr, draws, tolerance):
    star, template = CASES[0]
    tpl = hr_spectrum(*template)
    wl, flux = hr_spectrum(*star, rv_kms=-63.21)
    rng = np.random.default_rng(int(snr))
    results = [measure(wl, *observe(wl, flux, snr, rng), tpl) for _ in range(draws)]
    err = np.array([r.rv for r in results]) + 63.21
    reported = np.median([r.rv_err for r in results])
    ratio = np.std(err, ddof=1) / reported
    print(f"S/N {snr:.0f}: bias {err.mean():+.3f} km/s, scatter {np.std(err, ddof=1):.3f}, reported {reported:.3f}, ratio {ratio:.2f}")
    assert abs(ratio - 1.0) < tolerance
    assert abs(err.mean()) < 0.5  # the template mismatch's bias is small


def test_masked_pixels_never_enter():
    wl, flux = hr_spectrum(5500.0, 4.3, -0.2, rv_kms=41.0)
    tpl = hr_spectrum(5750.0, 4.5, 0.0)
    noisy, sigma, good = observe(wl, flux, 50.0, np.random.default_rng(2))
    norm, cont = continuum.normalise(wl, noisy, good)
    a = rv.measure_rv(wl, norm, sigma / cont, good, *tpl)
    other = norm.copy()
    masked = ~good & np.isfinite(norm)
    other[masked] = np.where(np.arange(masked.sum()) % 2, 0.0, 5.0)  # deep fake lines and spikes
    b = rv.measure_rv(wl, other, sigma / cont, good, *tpl)
    assert (a.rv, a.rv_err, a.ccf_rv, a.ccf_peak) == (b.rv, b.rv_err, b.ccf_rv, b.ccf_peak)
    # ... while the same garbage, unmasked, does change the answer
    c = rv.measure_rv(wl, other, sigma / cont, np.isfinite(other), *tpl)
    assert c.rv != a.rv


@pytest.mark.parametrize("relativistic", [False, True])
def test_exact_shifts_of_the_template_come_back(relativistic):
    tpl = hr_spectrum(5200.0, 4.0, -0.5, wide=True)
    for v_true in (-420.0, -37.3, 0.0, 150.0, 480.5):
        wl, flux = hr_spectrum(5200.0, 4.0, -0.5, rv_kms=v_true, wide=True, relativistic=relativistic)
        res = rv.measure_rv(wl, flux, None, None, *tpl, relativistic=relativistic)
        assert res.rv == pytest.approx(v_true, abs=0.02)
        assert res.ccf_peak > 0.99
        assert res.ccf_rv == pytest.approx(v_true, abs=0.5)


def test_first_order_and_relativistic_conventions_differ_by_v2_over_2c():
    tpl = hr_spectrum(5200.0, 4.0, -0.5, wide=True)
    wl, flux = hr_spectrum(5200.0, 4.0, -0.5, rv_kms=450.0, wide=True, relativistic=True)
    first = rv.measure_rv(wl, flux, None, None, *tpl).rv
    rel = rv.measure_rv(wl, flux, None, None, *tpl, relativistic=True).rv
    assert first - rel == pytest.approx(450.0**2 / (2 * C), abs=0.02)  # 0.34 km/s


def test_ccf_is_normalised_and_peaks_at_the_shift():
    wl, flux = hr_spectrum(5000.0, 4.5, 0.0, rv_kms=25.0)
    tpl = hr_spectrum(5000.0, 4.5, 0.0)
    v, ccf, n_bins = rv.ccf_lnlambda(wl, flux, None, None, *tpl, rv_range=(-100.0, 100.0))
    assert v[0] <= -100.0 and v[-1] >= 100.0 and np.all(np.diff(v) > 0)
    assert np.nanmax(ccf) <= 1.0 + 1e-12 and np.nanmax(ccf) > 0.995  # Cauchy-Schwarz; the same spectrum
    assert v[np.nanargmax(ccf)] == pytest.approx(25.0, abs=2.5)  # within a bin (2.2 km/s)
    assert abs(ccf[np.argmin(np.abs(v + 80.0))]) < 0.3  # far from the peak: uncorrelated lines
    assert np.all(n_bins > 0)


def test_the_search_range_limits_the_answer():
    wl, flux = hr_spectrum(5000.0, 4.5, 0.0, rv_kms=120.0)
    tpl = hr_spectrum(5000.0, 4.5, 0.0)
    assert rv.measure_rv(wl, flux, None, None, *tpl, rv_range=(-150.0, 150.0)).rv == pytest.approx(120.0, abs=0.05)
    for method in ("ccf", "chi2"):
        res = rv.measure_rv(wl, flux, None, None, *tpl, rv_range=(-100.0, 100.0), method=method)
        assert -101.0 <= res.ccf_rv <= 101.0 and -100.0 <= res.rv <= 100.0  # never beyond the range searched


def test_errors_name_the_problem():
    wl, flux = hr_spectrum(5000.0, 4.5, 0.0)
    tpl = hr_spectrum(5250.0, 4.3, 0.2)
    with pytest.raises(GridError, match="flux must be continuum-normalised"):
        rv.measure_rv(wl, 1000.0 * flux, None, None, *tpl)
    with pytest.raises(ConfigError, match="method must be one of"):
        rv.measure_rv(wl, flux, None, None, *tpl, method="fourier")
    with pytest.raises(ConfigError, match="rv_range must be"):
        rv.measure_rv(wl, flux, None, None, *tpl, rv_range=(100.0, -100.0))
    with pytest.raises(GridError, match="usable pixels"):
        rv.measure_rv(wl, flux, None, np.zeros(wl.size, bool), *tpl)
    with pytest.raises(GridError, match="template_flux must be finite"):
        rv.measure_rv(wl, flux, None, None, tpl[0], np.where(np.arange(tpl[1].size) == 7, np.nan, tpl[1]))
    with pytest.raises(GridError, match="the template covers 1999 of the 25200 good pixels"):
        rv.measure_rv(wl, flux, None, None, tpl[0][:2000], tpl[1][:2000], rv_range=(-50.0, 50.0))
    with pytest.raises(GridError, match="sigma must have one value per wavelength"):
        rv.measure_rv(wl, flux, np.ones(3), None, *tpl)
