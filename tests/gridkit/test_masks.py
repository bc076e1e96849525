"""Good-pixel masks and S/N of observed spectra: exact counts per star for each criterion (QUAL, flux, sigma, ivar,
intervals in the observed and the rest frame), the Balmer and telluric lists where they fall on the 4MOST HR arms,
and the S/N per pixel and per Angstrom within 5 % of the S/N the noise was drawn at."""
import numpy as np
import pytest

from gridkit.errors import ConfigError, GridError
from gridkit.instruments import get
from gridkit.kernels import frames, masks, noise, snr

C = 299_792.458
HR = get("4most-hr")
WL = HR.wavelength(("green", "red"))  # 25,200 pixel centres, 0.05 A


# --------------------------------------------------------------------------------------- masks
def test_counts_per_star_are_exact():
    rng = np.random.default_rng(0)
    n_star, n = 3, WL.size
    flux = np.ones((n_star, n))
    sigma = np.full((n_star, n), 0.01)
    ivar = np.full((n_star, n), 1e4)
    qual = np.zeros((n_star, n), dtype=np.int32)
    expect = {k: np.zeros(n_star, int) for k in ("flux_not_finite", "sigma_bad", "ivar_bad", "qual_bad")}
    bad_any = np.zeros((n_star, n), bool)
    for s in range(n_star):
        i_nan = rng.choice(n, 10 + s, replace=False)
        flux[s, i_nan[:5]] = np.nan
        flux[s, i_nan[5:]] = np.inf
        i_sig = rng.choice(n, 7 + 2 * s, replace=False)
        sigma[s, i_sig[:3]] = 0.0
        sigma[s, i_sig[3:]] = -1.0
        i_iv = rng.choice(n, 4 + s, replace=False)
        ivar[s, i_iv] = 0.0
        i_q = rng.choice(n, 20 + 3 * s, replace=False)
        qual[s, i_q] = 1 << rng.integers(0, 4, i_q.size)
        expect["flux_not_finite"][s] = np.unique(i_nan).size
        expect["sigma_bad"][s] = np.unique(i_sig).size
        expect["ivar_bad"][s] = np.unique(i_iv).size
        expect["qual_bad"][s] = np.unique(i_q).size
        for idx in (i_nan, i_sig, i_iv, i_q):
            bad_any[s, idx] = True
    intervals = [(5200.0, 5201.0), (6300.02, 6300.13)]  # 20 pixels + pixels centred at 6300.025, .075, .125
    in_iv = ((WL >= 5200.0) & (WL <= 5201.0)) | ((WL >= 6300.02) & (WL <= 6300.13))
    assert in_iv.sum() == 23
    good, counts = masks.good_pixel_mask(WL, flux, sigma, ivar, qual, intervals=intervals)
    for key, value in expect.items():
        np.testing.assert_array_equal(counts[key], value)
    np.testing.assert_array_equal(counts["in_intervals"], [23] * n_star)
    np.testing.assert_array_equal(counts["in_rest_intervals"], [0] * n_star)
    np.testing.assert_array_equal(counts["n_pixels"], [n] * n_star)
    np.testing.assert_array_equal(good, ~(bad_any | in_iv))
    np.testing.assert_array_equal(counts["n_good"], (~(bad_any | in_iv)).sum(axis=1))


def test_qual_bits_select_what_is_bad():
    flux = np.ones(WL.size)
    qual = np.zeros(WL.size, dtype=np.int64)
    qual[:10] = 1  # e.g. a cosmetic flag the user tolerates
    qual[10:13] = 4
    qual[13:15] = 5
    good, counts = masks.good_pixel_mask(WL, flux, qual=qual, bad_qual_bits=4)
    assert counts["qual_bad"] == 5 and counts["n_good"] == WL.size - 5
    assert good[:10].all() and not good[10:15].any()
    _, counts = masks.good_pixel_mask(WL, flux, qual=qual)  # default: any non-zero QUAL is bad
    assert counts["qual_bad"] == 15


def test_rest_frame_intervals_follow_each_stars_velocity():
    flux = np.ones((2, WL.size))
    h_alpha = masks.hydrogen_intervals(lines=["H_alpha"])  # rest frame, 6561.30 .. 6564.30 A
    good, counts = masks.good_pixel_mask(WL, flux, rest_intervals=h_alpha, rv_kms=np.array([0.0, 100.0]))
    for s, rv in enumerate((0.0, 100.0)):
        lo, hi = 6561.30 * (1 + rv / C), 6564.30 * (1 + rv / C)
        expected = (WL >= lo) & (WL <= hi)
        np.testing.assert_array_equal(~good[s], expected)
        assert counts["in_rest_intervals"][s] == expected.sum() == 60  # 3 A of 0.05 A pixels


def test_only_h_alpha_and_the_o2_gamma_band_fall_in_the_green_and_red_arms():
    def on_arms(lo, hi):
        return any(lo <= arm.wl_max and hi >= arm.wl_min for arm in HR.select(("green", "red")))

    hits = [name for name, iv in zip(masks.BALMER_AIR, masks.hydrogen_intervals()) if on_arms(*iv)]
    assert hits == ["H_alpha"]
    assert [b for b in masks.DEFAULT_TELLURIC if on_arms(*masks.TELLURIC_BANDS[b][:2])] == ["O2_gamma"]
    assert not on_arms(*masks.TELLURIC_BANDS["O2_B"][:2])
    lo, hi = masks.telluric_intervals()[0]
    assert lo < 6276.6 < hi  # the O2 gamma band head (Babcock & Herzberg 1948)
    # vacuum: the same lines, converted
    (vlo, vhi), = masks.hydrogen_intervals(lines=["H_alpha"], medium="vacuum")
    assert 0.5 * (vlo + vhi) == pytest.approx(float(frames.air_to_vac(6562.80)), abs=1e-9)
    assert 0.5 * (vlo + vhi) == pytest.approx(6564.61, abs=0.01)  # NIST vacuum H-alpha


def test_mask_errors_name_the_argument():
    with pytest.raises(ConfigError, match="intervals: interval 0 must have 0 < lo <= hi"):
        masks.good_pixel_mask(WL, np.ones(WL.size), intervals=[(5300.0, 5200.0)])
    with pytest.raises(GridError, match="sigma must have the shape of flux"):
        masks.good_pixel_mask(WL, np.ones(WL.size), sigma=np.ones(5))
    with pytest.raises(ConfigError, match="lines: 'H_zeta' not in"):
        masks.hydrogen_intervals(lines=["H_zeta"])
    with pytest.raises(ConfigError, match="bands: 'CO2' not in"):
        masks.telluric_intervals(["CO2"])
    with pytest.raises(ConfigError, match="medium must be one of"):
        masks.hydrogen_intervals(medium="water")
    with pytest.raises(GridError, match="rv_kms must be a scalar or have one value per spectrum"):
        masks.good_pixel_mask(WL, np.ones((2, WL.size)), rest_intervals=[(6560.0, 6565.0)], rv_kms=np.zeros(3))


# --------------------------------------------------------------------------------------- S/N
@pytest.mark.parametrize("snr_per_a", [10.0, 50.0, 250.0])
def test_snr_per_angstrom_within_5_percent(snr_per_a):
    rng = np.random.default_rng(int(snr_per_a))
    # a line-rich-looking spectrum with a sloping continuum and masked pixels
    cont = 800.0 * (1 + 0.2 * np.sin(WL / 300.0))
    depth = 0.6 * np.exp(-0.5 * ((WL[:, None] - rng.uniform(5160, 6790, 400)) / 0.15) ** 2).sum(axis=1)
    clean = cont * (1 - np.clip(depth, 0, 0.9))
    snr_pix = noise.snr_per_pixel([snr_per_a], np.full(WL.size, 0.05))[0]
    draws = rng.standard_normal(WL.size)
    flux = noise.apply_noise(clean, snr_pix, draws)
    sigma = np.abs(clean) / snr_pix  # the pipeline's error: sigma = flux / S/N per pixel (Eq. 1)
    good = rng.random(WL.size) > 0.02
    flux[~good] = 0.0  # garbage in masked pixels
    flux[1000:1100] = np.nan
    per_pixel, per_a = snr.snr_from_sigma(WL, flux, sigma, good)
    assert per_pixel == pytest.approx(snr_per_a * np.sqrt(0.05), rel=0.05)
    assert per_a == pytest.approx(snr_per_a, rel=0.05)


def test_snr_uses_each_pixels_width_and_rows():
    wl = np.concatenate([5000 + np.arange(2000) * 0.02, 6000 + np.arange(2000) * 0.08])
    flux = np.ones((2, wl.size))
    sigma = np.stack([np.full(wl.size, 0.1), np.full(wl.size, 0.05)])  # 10 and 20 per pixel
    per_pixel, per_a = snr.snr_from_sigma(wl, flux, sigma)
    np.testing.assert_allclose(per_pixel, [10.0, 20.0])
    # per A: 10/sqrt(0.02) = 70.7 and 10/sqrt(0.08) = 35.4 on the two halves: the median lies between
    assert 35.3 <= per_a[0] <= 70.8
    only_red = wl > 5900
    _, per_a_red = snr.snr_from_sigma(wl, flux, sigma, only_red)
    np.testing.assert_allclose(per_a_red, [10 / np.sqrt(0.08), 20 / np.sqrt(0.08)], rtol=1e-9)
    _, nothing = snr.snr_from_sigma(wl, flux, sigma, np.zeros(wl.size, bool))
    assert np.all(np.isnan(nothing))
