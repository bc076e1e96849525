"""fourmostify: observed spectra of higher resolution to the instrument; the shared UVES Sun to the green and
red arms with its gaps reported; missing pixels (NaN, gaps, edges) propagated and counted, never filled; the
survey store and CLI."""
import importlib
import math

import numpy as np
import pytest

import gridkit
from gridkit.cli import main
from gridkit.errors import ConfigError, GridError, StoreError

D = importlib.import_module("gridkit.observed")


@pytest.fixture(scope="module")
def sun(shared_data):
    data = np.loadtxt(shared_data / "sun-uves" / "UVES_Sun-1_cleaned_norm.txt")
    return data[:, 0], data[:, 1]


def observed(wl=None, flux=None):
    if wl is None:
        wl = np.arange(5100.0, 6850.0, 0.01)
    if flux is None:
        flux = 1 - 0.5 * np.exp(-0.5 * ((wl - 5500.0) / 0.02) ** 2) - 0.4 * np.exp(-0.5 * ((wl - 6400.0) / 0.02) ** 2)
    return D.spectrum_dataset(wl, flux, "star-a.txt")


@pytest.mark.shared
def test_uves_sun_to_green_and_red_with_its_gaps_reported(sun):
    wl, flux = sun
    ds = D.spectrum_dataset(wl, flux, "UVES_Sun-1_cleaned_norm.txt")
    assert ds.attrs["n_duplicate_wavelengths"] == 47  # overlapping orders at the same wavelength: merged, counted
    out = gridkit.fourmostify(ds, 100_000, arms="green,red").compute()
    assert out.flux.dims == ("star", "wavelength") and out.sizes["wavelength"] == 25_200
    report = D.missing_report(out)[0]
    # the red arm runs to 6790 A, the spectrum stops at 6723.5 A: those pixels (and the 3-sigma kernel edge) are missing
    assert len(report["ranges"]) == 1
    lo, hi = report["ranges"][0]
    assert 6722.5 < lo < 6723.6 and hi == pytest.approx(6789.975)
    assert report["n_missing"] == int(out.n_missing.values[0]) == np.isnan(out.flux.values).sum()
    assert 1330 <= report["n_missing"] <= 1360
    green = out.flux.sel(wavelength=slice(5160, 5730)).values
    assert np.isfinite(green).all()  # the green arm lies inside the spectrum (its gaps are outside both arms)
    # physics: the equivalent width over the green arm is kept (0.2 %), lines are shallower at R = 20000
    m = (wl > 5165) & (wl < 5725)
    uniq = ~np.r_[False, np.diff(wl) == 0]
    ew_in = np.trapezoid(1 - flux[m & uniq], wl[m & uniq])
    g = out.wavelength.values
    mg = (g > 5165) & (g < 5725)
    ew_out = ((1 - out.flux.values[0, mg].astype(float)) * 0.05).sum()
    assert ew_out == pytest.approx(ew_in, rel=0.002)
    assert np.nanmin(out.flux.values) > flux[(wl > 5160) & (wl < 6790)].min()


@pytest.mark.shared
def test_uves_gap_inside_the_requested_range_is_reported(sun):
    wl, flux = sun
    ds = D.spectrum_dataset(wl, flux, "sun")
    custom = gridkit.instruments.constant_r(20_000, 5700.0, 5900.0, name="test-5700-5900")  # spans the 5759.5-5827.8 gap
    out = gridkit.fourmostify(ds, 100_000, instrument=custom).compute()
    (lo, hi), = D.missing_report(out)[0]["ranges"]
    assert 5759.0 < lo < 5760.0 and 5827.8 < hi < 5829.0  # the gap plus 3 sigma of the LSF, nothing interpolated


def test_nan_pixels_propagate_only_within_the_kernel_and_are_counted():
    ds = observed()
    clean = gridkit.fourmostify(ds, 80_000).compute()
    assert int(clean.n_missing.values[0]) == 0
    bad = ds.copy(deep=True)
    i = int(np.searchsorted(bad.wavelength.values, 5600.0))
    bad["flux"][0, i:i + 3] = np.nan
    out = gridkit.fourmostify(bad, 80_000).compute()
    nan = np.isnan(out.flux.values[0])
    wl = out.wavelength.values
    assert 0 < nan.sum() == int(out.n_missing.values[0])
    assert np.all(np.abs(wl[nan] - 5600.01) < 6 * 5600 / 20_000 / 2.3548 + 0.05)  # within the kernel's reach
    np.testing.assert_array_equal(out.flux.values[0, ~nan], clean.flux.values[0, ~nan])  # elsewhere untouched


def test_lsf_width_and_noise_at_a_fixed_snr():
    wl = np.arange(5100.0, 6850.0, 0.005)
    flux = 1 - 0.5 * np.exp(-0.5 * ((wl - 5500.0) / 0.004) ** 2)
    out = gridkit.fourmostify(D.spectrum_dataset(wl, flux, "x"), 100_000, arms="green").compute()
    from scipy.optimize import curve_fit

    g, f = out.wavelength.values, out.flux.values[0].astype(float)
    m = np.abs(g - 5500) < 1
    (_, s, _), _ = curve_fit(lambda x, c, s0, d: 1 - d * np.exp(-0.5 * ((x - c) / s0) ** 2), g[m], f[m], p0=(5500, 0.1, 0.3))
    # R = 20000 from R_in = 100000 in quadrature, plus the 0.05 A pixel boxcar; the intrinsic line is the input's LSF
    expected = math.sqrt((5500 / 20_000 / 2.3548) ** 2 + 0.004**2 - (5500 / 100_000 / 2.3548) ** 2 + 0.05**2 / 12)
    assert abs(s) == pytest.approx(expected, rel=0.01)
    flat = D.spectrum_dataset(np.arange(5100.0, 6850.0, 0.01), np.full(175_000, 0.9), "flat")
    noisy = gridkit.fourmostify(flat, 80_000, snr=40, seed=2).compute()
    resid = noisy.flux.values[0].astype(float) - 0.9
    assert resid.std() == pytest.approx(0.9 / (40 * math.sqrt(0.05)), rel=0.02)
    assert float(noisy.snr.values[0]) == 40
    # with a noisy input of S/N 80 per A, only the difference is added
    q = gridkit.fourmostify(flat, 80_000, snr=40, input_snr=80, seed=2).compute().flux.values[0].astype(float) - 0.9
    assert q.std() == pytest.approx(0.9 * math.sqrt(1 / 40**2 - 1 / 80**2) / math.sqrt(0.05), rel=0.02)
    with pytest.raises(ConfigError, match="snr = 90 must be below input_snr = 80"):
        gridkit.fourmostify(flat, 80_000, snr=90, input_snr=80)


def test_errors():
    ds = observed()
    with pytest.raises(ConfigError, match="must be below the input's resolving power \\(15000\\)"):
        gridkit.fourmostify(ds, 15_000)
    with pytest.raises(GridError, match="arm 'blue' \\(3926-4355 A\\) has no input pixels"):
        gridkit.fourmostify(ds, 80_000, arms="blue")
    with pytest.raises(GridError, match="decreases at index 2"):
        D.spectrum_dataset([5000.0, 5000.1, 4999.0], [1.0, 1.0, 1.0], "bad")
    with pytest.raises(GridError, match="finite and positive; index 0 is -1.0"):
        D.spectrum_dataset([-1.0, 5000.1], [1.0, 1.0], "bad")


def _write_text(path, wl, flux):
    np.savetxt(path, np.column_stack([wl, flux]), fmt="%.4f %.6f")
    return path


def test_survey_store_and_cli(tmp_path, capsys):
    wl = np.arange(5100.0, 6700.0, 0.02)  # stops before the red arm's end
    flux = 1 - 0.5 * np.exp(-0.5 * ((wl - 5500.0) / 0.03) ** 2)
    a = _write_text(tmp_path / "star-a.txt", wl, flux)
    text = a.read_text()
    flux_b = flux.copy()
    flux_b[15_000:15_005] = np.nan  # masked pixels near 5400 A
    b = _write_text(tmp_path / "star-b.txt", wl, flux_b)
    out = tmp_path / "survey.zarr"
    report = tmp_path / "missing.csv"
    assert main(["fourmostify", str(a), str(b), "--out", str(out), "--input-resolving-power", "80000", "--snr", "50",
                 "--report", str(report), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    line_b = next(line for line in printed.splitlines() if line.startswith("star-b,"))
    assert "5399" in line_b or "5400" in line_b  # the masked pixels near 5400 A are reported for star b
    assert "6789.98" in line_b  # and the red arm's end, beyond the spectrum
    survey = gridkit.open_grid(out, kind="survey")
    assert survey.flux.dims == ("star", "wavelength") and survey.sizes["wavelength"] == 25_200
    assert list(survey.star_id.values) == ["star-a", "star-b"]
    np.testing.assert_array_equal(survey.snr.values, [50.0, 50.0])
    n = survey.n_missing.values
    assert n[1] > n[0] > 0  # both miss the red end, star b also its masked pixels
    assert np.isnan(survey.flux.values).sum(axis=1).tolist() == n.tolist()
    rows = report.read_text().splitlines()
    assert rows[0] == "star_id,n_missing,missing_ranges_angstrom" and len(rows) == 3
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["fourmostify", str(a), "--out", str(out), "--input-resolving-power", "80000", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err  # a different job's output is refused, and left as it was
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert gridkit.open_grid(out, kind="survey").sizes["star"] == 2
    # no S/N given: DER_SNR estimate, per Angstrom
    out2 = tmp_path / "s2.zarr"
    D.fourmostify_store([a], out2, 80_000, progress=False)
    assert gridkit.open_grid(out2, kind="survey").snr.values[0] > 1000  # noise-free input
    with pytest.raises(StoreError, match="star-a.txt is the input"):  # an input is never an output, even with --overwrite
        D.fourmostify_store([a], tmp_path / "star-a.txt", 80_000, progress=False, overwrite=True)
    assert a.read_text() == text


def test_negative_input_snr_is_refused_as_such(tmp_path, capsys):
    """`--snr 100 --input-snr -50` once said "snr = 100 must be below input_snr = -50": the real problem is the sign."""
    wl = np.arange(5100.0, 6850.0, 0.02)
    a = _write_text(tmp_path / "star-a.txt", wl, np.ones(wl.size))
    for bad in ("-50", "0", "nan"):
        assert main(["fourmostify", str(a), "--out", str(tmp_path / "s.zarr"), "--input-resolving-power", "80000", "--snr", "100",
                     f"--input-snr={bad}", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "input_snr must be > 0" in err and "must be below" not in err, err
    with pytest.raises(ConfigError, match="input_snr must be > 0.*got -50"):
        D.FourmostifyConfig(input_resolving_power=80_000, snr=100, input_snr=-50)
    assert not (tmp_path / "s.zarr").exists()


def test_der_snr_of_spectra_without_a_measurable_snr_is_nan_not_a_made_up_number():
    rng = np.random.default_rng(1)
    wl = np.arange(5000.0, 5100.0, 0.05)
    flux = 1 + rng.normal(0, 0.01, wl.size)
    s = D.estimate_snr(flux, wl, "per_pixel")
    assert s == pytest.approx(100, rel=0.1)  # noise 0.01 on a continuum of 1
    with pytest.warns(UserWarning, match=r"cannot measure the S/N of neg.txt: the estimate is -9\d\.\d+ with median flux -0.99"):
        assert math.isnan(D.estimate_snr(-flux, wl, name="neg.txt"))
    with pytest.warns(UserWarning, match="estimate is nan with median flux 0"):
        assert math.isnan(D.estimate_snr(np.zeros(wl.size), wl))  # a flat zero once measured as S/N 10000
    with pytest.warns(UserWarning, match="median flux nan"):
        assert math.isnan(D.estimate_snr(np.full(wl.size, np.nan), wl))
    assert D.estimate_snr(np.ones(wl.size), wl) == D.MAX_ESTIMATED_SNR  # noise-free: the ceiling, as documented
    np.testing.assert_array_equal(np.sign(D.der_snr(np.stack([flux, -flux]))), [1, -1])


def test_survey_of_a_spectrum_with_negative_flux_marks_its_snr_and_infer_names_the_star(tmp_path, capsys):
    """DER_SNR of a negative spectrum was written as S/N -5998 without a word, and the survey was then refused
    without naming the star: now its S/N is NaN (missing) with a warning, and the survey check names it."""
    wl = np.arange(5100.0, 6850.0, 0.05)
    rng = np.random.default_rng(0)
    flux = 1 - 0.5 * np.exp(-0.5 * ((wl - 6000.0) / 0.1) ** 2) + rng.normal(0, 0.01, wl.size)
    good = _write_text(tmp_path / "good.txt", wl, flux)
    neg = _write_text(tmp_path / "neg.txt", wl, -flux)
    out = tmp_path / "survey.zarr"
    with pytest.warns(UserWarning, match="cannot measure the S/N"):
        assert main(["fourmostify", str(good), str(neg), "--out", str(out), "--input-resolving-power", "50000", "--no-progress"]) == 0
    import xarray as xr

    snr = xr.open_zarr(out, consolidated=False).snr.values
    assert snr[0] > 0 and math.isnan(snr[1])  # never -5998
    with pytest.raises(GridError, match=r"survey snr must be finite and > 0 for every star; 1 of 2 star\(s\) fail: neg \(nan\)"):
        gridkit.open_grid(out, kind="survey")


def test_survey_snr_check_names_the_first_stars_that_fail():
    import xarray as xr

    n = 8
    snr = np.array([10.0, -3.0, np.nan, 20.0, 0.0, np.inf, -1.0, -2.0])
    ds = xr.Dataset({"flux": (("star", "wavelength"), np.ones((n, 3))), "snr": (("star",), snr),
                     "star_id": (("star",), np.array([f"s{i}" for i in range(n)], dtype=object))},
                    coords={"wavelength": [5000.0, 5000.1, 5000.2]})
    with pytest.raises(GridError, match=r"6 of 8 star\(s\) fail: s1 \(-3\), s2 \(nan\), s4 \(0\), s5 \(inf\), s6 \(-1\) \.\.\.$"):
        gridkit.validate_grid(ds, kind="survey")
    gridkit.validate_grid(ds.assign(snr=("star", np.full(n, 5.0))), kind="survey")


def test_fits_spectrum_with_a_text_flux_column_is_refused_naming_file_and_column(tmp_path, capsys):
    from astropy.io import fits

    wl = np.arange(5100.0, 6850.0, 0.05)
    cols = [fits.Column(name="wavelength", format="D", array=wl), fits.Column(name="flux", format="5A", array=np.array(["abc"] * wl.size))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(tmp_path / "x.fits")
    out = tmp_path / "s.zarr"
    assert main(["fourmostify", str(tmp_path / "x.fits"), "--out", str(out), "--input-resolving-power", "50000", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "x.fits HDU 1: column 'flux' must hold numbers, it holds text" in err and "Traceback" not in err
    assert not out.exists()


def test_fourmostify_of_a_binary_file_named_txt_gets_a_message(tmp_path, capsys):
    (tmp_path / "x.txt").write_bytes(bytes(range(256)) * 8)
    assert main(["fourmostify", str(tmp_path / "x.txt"), "--out", str(tmp_path / "s.zarr"), "--input-resolving-power", "50000", "--no-progress"]) == 2
    assert "x.txt is not a text spectrum" in capsys.readouterr().err
    assert not (tmp_path / "s.zarr").exists()


def test_huge_resolving_power_and_snr_in_fourmostify(tmp_path, capsys):
    wl = np.arange(5100.0, 6850.0, 0.05)
    a = _write_text(tmp_path / "star-a.txt", wl, 1 - 0.5 * np.exp(-0.5 * ((wl - 6000.0) / 0.1) ** 2))
    assert main(["fourmostify", str(a), "--out", str(tmp_path / "big.zarr"), "--input-resolving-power", "1e300", "--no-progress"]) == 0
    assert main(["fourmostify", str(a), "--out", str(tmp_path / "inf.zarr"), "--input-resolving-power", "inf", "--no-progress"]) == 0
    import xarray as xr

    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "big.zarr", consolidated=False).flux.values,
                                  xr.open_zarr(tmp_path / "inf.zarr", consolidated=False).flux.values)
    capsys.readouterr()
    assert main(["fourmostify", str(a), "--out", str(tmp_path / "s.zarr"), "--input-resolving-power", "50000", "--snr", "1e308", "--no-progress"]) == 2
    assert "snr must be at most 1e+15" in capsys.readouterr().err
    assert not (tmp_path / "s.zarr").exists()
