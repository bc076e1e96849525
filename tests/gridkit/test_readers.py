"""Readers of what 4MOST and the ESO archive deliver (ESO SDP, 4MOST L1 single and multi-spectrum files), the
format registry, the ESO SDP writer, and the refusals of bad files.

Truth is computed independently of the readers: files are built here with astropy.io.fits directly (or written
by the writers and then checked with astropy), wavelengths in nm are expected at exactly value * 10.0, masks are
counted from the pixels the test breaks on purpose."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from astropy.io import fits

from gridkit.errors import ConfigError, GridError, StoreError
from gridkit.io import (READERS, Spectrum, formats, identify, list_spectra, read_spectra, read_spectrum, register, unregister,
                        write_eso_sdp, write_fits, write_text)
from gridkit.instruments import FOURMOST_HR
from gridkit.testing.fourmost_files import write_4most_l1, write_4most_l1_multi

GREEN = FOURMOST_HR.select("green")[0]
WL = GREEN.wavelength()[:3000]  # 4MOST HR green pixel centres, A (air)


def make_spectrum(n_bad_qual=3, n_nan=2, n_zero_sigma=1, medium="air", seed=0, **meta):
    """A spectrum on the 4MOST green grid with a known number of unusable pixels, at known places."""
    rng = np.random.default_rng(seed)
    flux = 1 - 0.4 * np.exp(-((WL - 5200.0) / 0.15) ** 2) + 0.01 * rng.standard_normal(WL.size)
    sigma = np.full(WL.size, 0.01) * (1 + rng.random(WL.size))
    good = np.ones(WL.size, bool)
    good[100:100 + n_bad_qual] = False
    flux[200:200 + n_nan] = np.nan
    sigma[300:300 + n_zero_sigma] = 0.0
    base = {"star_id": "4242", "object": "HD 4242", "ra": 150.125, "dec": -30.5, "mjd": 60123.25, "specsys": "SOURCE",
            "resolving_power": 20000.0, "snr": 75.0, "contnorm": True}
    base.update(meta)
    return Spectrum(WL.copy(), medium, flux, sigma, good, base)


def expected_good(n_bad_qual=3, n_nan=2, n_zero_sigma=1):
    return WL.size - n_bad_qual - n_nan - n_zero_sigma


def sdp_file(path, wave, flux, err, qual=None, *, wave_unit="Angstrom", ucd="em.wl;obs.atmos", primary=None, extname="SPECTRUM",
             columns=None):
    """An ESO SDP 1-D file built by hand (one row, arrays in cells), independent of gridkit's writer."""
    ph = fits.PrimaryHDU()
    ph.header.update({"PRODCATG": "SCIENCE.SPECTRUM", "SPECSYS": "BARYCENT", "OBJECT": "HD 1"})
    ph.header.update(primary or {})
    n = len(wave)
    cols = columns or [fits.Column(name="WAVE", format=f"{n}D", unit=wave_unit, array=[wave]),
                       fits.Column(name="FLUX", format=f"{len(flux)}D", array=[flux]),
                       fits.Column(name="ERR", format=f"{len(err)}D", array=[err])]
    if qual is not None and columns is None:
        cols.append(fits.Column(name="QUAL", format=f"{n}J", array=[qual]))
    table = fits.BinTableHDU.from_columns(cols, name=extname)
    if ucd is not None:
        table.header["TUCD1"] = ucd
    fits.HDUList([ph, table]).writeto(path)
    return path


# --- round trips ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("medium", ["air", "vacuum"])
def test_eso_sdp_round_trip_keeps_arrays_mask_and_keywords(tmp_path, medium):
    sp = make_spectrum(medium=medium)
    path = write_eso_sdp(tmp_path / "sdp.fits", sp)
    with fits.open(path, checksum=True) as h:  # the file itself, read with astropy: the SDP layout and keywords
        h.verify("exception")
        ph, t = h[0].header, h[1].header
        assert h[0].data is None and h[1].name == "SPECTRUM" and len(h[1].data) == 1
        assert ph["PRODCATG"] == "SCIENCE.SPECTRUM" and ph["SPECSYS"] == "SOURCE" and ph["CONTNORM"] is True
        assert ph["WAVELMIN"] == pytest.approx(WL[0] / 10, rel=1e-15) and ph["WAVELMAX"] == pytest.approx(WL[-1] / 10, rel=1e-15)
        assert ph["SPEC_BIN"] == pytest.approx(0.005, rel=1e-9) and ph["SPEC_RES"] == 20000 and ph["SNR"] == 75
        assert ph["RA"] == 150.125 and ph["DEC"] == -30.5 and ph["MJD-OBS"] == 60123.25 and ph["OBJECT"] == "HD 4242"
        assert t["TUCD1"] == ("em.wl;obs.atmos" if medium == "air" else "em.wl") and t["TUNIT1"] == "Angstrom"
        assert int((h[1].data["QUAL"][0] != 0).sum()) == WL.size - expected_good()
    assert identify(path) == "eso-sdp"
    (back,) = read_spectra(path)
    assert back.medium == medium
    np.testing.assert_array_equal(back.wavelength, WL)
    np.testing.assert_array_equal(back.flux, sp.flux)
    np.testing.assert_array_equal(back.sigma, sp.sigma)
    assert back.n_good == expected_good()
    np.testing.assert_array_equal(back.good, sp.good)
    m = back.meta
    assert (m["star_id"], m["object"], m["ra"], m["dec"], m["mjd"]) == ("HD 4242", "HD 4242", 150.125, -30.5, 60123.25)
    assert (m["specsys"], m["resolving_power"], m["snr"], m["contnorm"]) == ("SOURCE", 20000.0, 75.0, True)
    assert (m["format"], m["source"], m["hdu"], m["row"], m["medium_assumed"]) == ("eso-sdp", str(path), 1, 0, False)


def test_eso_sdp_wave_in_nm_is_converted_exactly_and_the_ucd_sets_the_medium(tmp_path):
    wave_nm = 500.0 + 0.001 * np.arange(400)
    qual = np.zeros(400, np.int32)
    qual[[5, 17, 230]] = [1, 4, 16]
    path = sdp_file(tmp_path / "nm.fits", wave_nm, np.ones(400), np.full(400, 0.02), qual, wave_unit="nm", ucd="em.wl",
                    primary={"WAVELMIN": 500.0, "WAVELMAX": float(wave_nm[-1]), "SPEC_RES": 42000.0, "SNR": 50.0, "CONTNORM": True})
    (sp,) = read_spectra(path)
    assert np.array_equal(sp.wavelength, wave_nm * 10.0)  # bit for bit: nm -> Angstrom is exactly a factor 10
    assert sp.medium == "vacuum" and sp.n_good == 397 and sp.meta["specsys"] == "BARYCENT"
    assert sp.meta["resolving_power"] == 42000.0 and sp.meta["contnorm"] is True


def test_eso_sdp_reduced_flux_takes_its_own_error_and_without_ucd_air_is_assumed(tmp_path):
    """GIRAFFE-like products hold FLUX_REDUCED with ERR_REDUCED; the error must come with its own flux."""
    n = 300
    wave = 6000 + 0.02 * np.arange(n)
    cols = [fits.Column(name="WAVE", format=f"{n}D", unit="angstrom", array=[wave]),
            fits.Column(name="FLUX_REDUCED", format=f"{n}E", array=[np.full(n, 2.0)]),
            fits.Column(name="ERR_REDUCED", format=f"{n}E", array=[np.full(n, 0.5)]),
            fits.Column(name="ERR", format=f"{n}E", array=[np.full(n, 99.0)])]
    path = sdp_file(tmp_path / "giraffe.fits", wave, [], [], columns=cols, ucd=None)
    (sp,) = read_spectra(path)
    np.testing.assert_array_equal(sp.sigma, 0.5)
    assert sp.medium == "air" and sp.meta["medium_assumed"] is True


@pytest.mark.parametrize("arm, code", [("green", "G"), ("joined", "J")])
def test_4most_l1_single_round_trip(tmp_path, arm, code):
    sp = make_spectrum(medium="air", specuid="778899")
    path = write_4most_l1(tmp_path / f"obj4242_20240101_L{code}1.fits", sp, arm)
    assert identify(path) == "4most-l1"
    with fits.open(path, checksum=True) as h:
        h.verify("exception")  # a valid FITS file, its checksums right
        assert h[1].name == "PHASE3SPECTRUM" and set(h[1].columns.names) >= {"WAVE", "FLUX", "ERR_FLUX", "QUAL", "FLUX_NOSS", "ERR_FLUX_NOSS"}
    (back,) = read_spectra(path)
    np.testing.assert_array_equal(back.wavelength, WL)
    np.testing.assert_array_equal(back.flux, sp.flux.astype(np.float32))  # FLUX and ERR_FLUX are float32 in L1 files
    np.testing.assert_array_equal(back.sigma, sp.sigma.astype(np.float32))
    assert back.n_good == expected_good() and back.medium == "air" and not back.meta["medium_assumed"]
    m = back.meta
    assert (m["star_id"], m["object"], m["specuid"], m["arm"], m["specsys"]) == ("4242", "HD 4242", "778899", arm, "SOURCE")
    assert (m["ra"], m["dec"], m["mjd"], m["snr"], m["resolving_power"]) == (150.125, -30.5, 60123.25, 75.0, 20000.0)


def test_4most_l1_inverse_variance_and_default_vacuum(tmp_path):
    """A hand-built L1 file with FLUX_IVAR and no UCD: sigma = 1/sqrt(ivar), ivar = 0 is not usable, vacuum assumed."""
    n = 500
    wave = 6100.025 + 0.05 * np.arange(n)
    ivar = np.full(n, 400.0)
    ivar[[3, 4, 99]] = 0.0
    cols = [fits.Column(name="WAVE", format=f"{n}D", unit="Angstrom", array=[wave]),
            fits.Column(name="FLUX", format=f"{n}E", array=[np.ones(n)]),
            fits.Column(name="FLUX_IVAR", format=f"{n}E", array=[ivar]),
            fits.Column(name="QUAL", format=f"{n}J", array=[np.zeros(n, np.int32)])]
    table = fits.BinTableHDU.from_columns(cols, name="PHASE3SPECTRUM")
    table.header["OBJ_UID"] = 77
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "x.fits")
    (sp,) = read_spectra(tmp_path / "x.fits")
    assert sp.n_good == n - 3 and sp.medium == "vacuum" and sp.meta["medium_assumed"] is True
    np.testing.assert_array_equal(sp.sigma[sp.good], 0.05)
    assert sp.meta["star_id"] == "77" and sp.meta["arm"] == "red"  # 6100-6125 A: inside the HR red arm


def _multi_spectra(n=5, grid_shift=False):
    out = []
    for i in range(n):
        wl = WL + (0.05 * i if grid_shift else 0.0)
        sp = make_spectrum(seed=i, star_id=str(9000 + i), object=f"star {i}", specuid=str(5000 + i), snr=20.0 + i, ra=10.0 + i,
                           dec=-5.0 - i)
        out.append(Spectrum(wl, "air", sp.flux, sp.sigma, sp.good, sp.meta))
    return out


@pytest.mark.parametrize("grid_shift", [False, True], ids=["one grid (+WCS)", "a grid per fibre"])
def test_4most_l1_multi_round_trip(tmp_path, grid_shift):
    spectra = _multi_spectra(grid_shift=grid_shift)
    path = write_4most_l1_multi(tmp_path / "20240101_HG11_20240102.fits", spectra, "green")
    with fits.open(path, checksum=True) as h:
        h.verify("exception")
        assert [x.name for x in h] == ["PRIMARY", "OBMETATAB", "SPECTAB", "FIBMETATAB", "PROVTAB"]
        fib = h["FIBMETATAB"].data
        assert fib.columns["WAVELMIN"].unit == "nm" and fib.columns["SPEC_BIN"].unit == "nm"
        assert ("1CRVL1" in h["SPECTAB"].header) == (not grid_shift)
    assert identify(path) == "4most-l1-multi"
    back = read_spectra(path)
    assert len(back) == 5
    for i, (sp, b) in enumerate(zip(spectra, back)):
        # the file's rule, computed here from what the writer was given: WAVELMIN + i * SPEC_BIN in nm
        lo_nm, bin_nm = sp.wavelength[0] / 10, (sp.wavelength[-1] - sp.wavelength[0]) / (sp.wavelength.size - 1) / 10
        np.testing.assert_allclose(b.wavelength, 10.0 * (lo_nm + np.arange(WL.size) * bin_nm), rtol=0, atol=1e-9)
        np.testing.assert_allclose(b.wavelength, sp.wavelength, rtol=0, atol=1e-8)
        np.testing.assert_array_equal(b.flux, sp.flux.astype(np.float32))
        assert b.n_good == expected_good() and b.medium == "air"
        m = b.meta
        assert (m["star_id"], m["object"], m["specuid"], m["arm"], m["row"], m["index"]) == (str(9000 + i), f"star {i}", str(5000 + i), "green", i, i)
        assert (m["ra"], m["dec"], m["snr"], m["mjd"], m["fib_st"]) == (10.0 + i, -5.0 - i, 20.0 + i, 60123.25, 2)
    listed = list_spectra(path)
    for b, meta in zip(back, listed):
        assert meta["medium"] == "air" and meta["n_pixels"] == WL.size
        assert meta["wavelength_min"] == pytest.approx(b.wavelength[0], abs=1e-8)
        assert meta["wavelength_max"] == pytest.approx(b.wavelength[-1], abs=1e-8)
        assert {k: v for k, v in meta.items() if k in b.meta} == {k: b.meta[k] for k in meta if k in b.meta}


def test_4most_l1_multi_rows_are_matched_by_specuid_not_position(tmp_path):
    """FIBMETATAB in reverse order, and read as inverse variance: each spectrum keeps its own object and grid."""
    spectra = _multi_spectra(grid_shift=True)
    shifted = [Spectrum(s.wavelength + 1040.0, s.medium, s.flux, s.sigma, s.good, s.meta) for s in spectra]  # into the red arm
    path = write_4most_l1_multi(tmp_path / "x_HR11_y.fits", shifted, "red", error="FLUX_IVAR")
    _rewrite_fibmetatab(path, tmp_path / "rev_HR11_y.fits", [4, 3, 2, 1, 0])
    back = read_spectra(tmp_path / "rev_HR11_y.fits", which=[3, 1])
    for b, i in zip(back, (3, 1)):
        assert b.meta["star_id"] == str(9000 + i) and b.meta["specuid"] == str(5000 + i) and b.meta["row"] == i
        np.testing.assert_allclose(b.wavelength, spectra[i].wavelength + 1040.0, rtol=0, atol=1e-8)
        s32 = spectra[i].sigma.astype(np.float64)
        ivar32 = (1 / np.where(s32 > 0, s32, np.inf) ** 2).astype(np.float32)
        np.testing.assert_allclose(b.sigma[b.good], 1 / np.sqrt(ivar32[b.good].astype(np.float64)), rtol=1e-12)
        assert b.n_good == expected_good() and b.meta["arm"] == "red"


def test_list_spectra_of_a_multi_file_does_not_read_the_flux(tmp_path):
    """Planning many files: the per-spectrum meta costs memory far below the flux arrays, and as much for 3 files as for 1."""
    n_spec, n_pix = 100, 16000
    wl = 3926.025 + 0.05 * np.arange(n_pix)
    rng = np.random.default_rng(1)
    spectra = [Spectrum(wl, "air", 1 + 0.01 * rng.standard_normal(n_pix), np.full(n_pix, 0.01), None, {"star_id": str(i)})
               for i in range(n_spec)]
    files = [write_4most_l1_multi(tmp_path / f"f{k}_HB11_x.fits", spectra, "blue") for k in range(4)]
    flux_bytes = n_spec * n_pix * 4
    list_spectra(files.pop())  # imports and first-use caches of astropy are not the files' cost

    def peak(paths):
        tracemalloc.start()
        count = sum(len(list_spectra(p)) for p in paths)  # a planner keeps what it needs of each listing, not all
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == n_spec * len(paths)
        return top

    one, three = peak(files[:1]), peak(files)
    assert one < flux_bytes / 6, (one, flux_bytes)
    assert three < 1.5 * one, (one, three)  # flat in the number of files


# --- the registry and the legacy views --------------------------------------------------------------------------

def test_registry_identifies_by_content_and_custom_formats_plug_in(tmp_path):
    assert formats()[:4] == ["4most-l1-multi", "4most-l1", "eso-sdp", "fits"]
    sp = make_spectrum()
    write_eso_sdp(tmp_path / "spectrum.dat.fits", sp)
    assert identify(tmp_path / "spectrum.dat.fits") == "eso-sdp"
    write_fits(tmp_path / "grid.fits", WL, np.ones(WL.size))
    assert identify(tmp_path / "grid.fits") == "fits"
    # Gaia-ESO style: an SDP table named PHASE3SPECTRUM with ESO's ERR column is ESO SDP, not 4MOST
    sdp_file(tmp_path / "ges.fits", WL, np.ones(WL.size), np.ones(WL.size), extname="PHASE3SPECTRUM", primary={"PRODCATG": ""})
    assert identify(tmp_path / "ges.fits") == "eso-sdp"
    (tmp_path / "x.mine").write_text("5000 1\n5001 2\n")

    def read_mine(path, which=None):
        data = np.loadtxt(path)
        return [Spectrum(data[:, 0], "vacuum", data[:, 1], None, None, {"source": str(path)})]

    register("mine", lambda p: str(p).endswith(".mine"), read_mine, priority=5)
    try:
        assert identify(tmp_path / "x.mine") == "mine"
        (got,) = read_spectra(tmp_path / "x.mine")
        assert got.medium == "vacuum" and list(got.flux) == [1.0, 2.0]
        wl, _, meta = READERS["mine"](tmp_path / "x.mine")
        assert list(wl) == [5000.0, 5001.0] and meta["medium"] == "vacuum"
        with pytest.raises(ConfigError, match="registered already"):
            register("mine", lambda p: False, read_mine)
    finally:
        unregister("mine")
    assert "mine" not in formats() and "mine" not in READERS


def test_legacy_views_of_new_formats(tmp_path):
    """READERS gives gridkit.observed the flux with NaN at unusable pixels; read_spectrum (grids) refuses them."""
    sp = make_spectrum()
    path = write_eso_sdp(tmp_path / "s.fits", sp)
    wl, flux, meta = READERS["eso-sdp"](path)
    assert np.array_equal(wl, WL) and int(np.isnan(flux).sum()) == WL.size - expected_good()
    assert meta["resolving_power"] == 20000.0 and meta["ra"] == 150.125 and meta["medium"] == "air"
    with pytest.raises(GridError, match=r"s.fits has 6 NaN/inf or masked value\(s\) of 3000 \(flagged by the file \(QUAL != 0\): 3, "
                                        r"flux NaN or infinite: 2, sigma not finite and > 0 \(inverse variance <= 0\): 1\), first at index 100"):
        read_spectrum(path)
    clean = make_spectrum(0, 0, 0)
    write_eso_sdp(tmp_path / "clean.fits", clean)
    wl, flux, meta = read_spectrum(tmp_path / "clean.fits")
    np.testing.assert_array_equal(flux, clean.flux)
    assert meta["format"] == "eso-sdp"
    multi = write_4most_l1_multi(tmp_path / "m_HG11.fits", _multi_spectra(2), "green")
    with pytest.raises(GridError, match="holds 2 spectra.*read_spectra"):
        read_spectrum(multi)


def test_text_and_generic_fits_read_their_error_columns_and_medium(tmp_path):
    wl = np.linspace(5000, 5010, 201)
    flux, sigma = np.ones(201), np.full(201, 0.02)
    sigma[7] = -1.0
    write_text(tmp_path / "s.txt", wl, flux, sigma=sigma)
    (sp,) = read_spectra(tmp_path / "s.txt")
    np.testing.assert_allclose(sp.sigma, sigma)
    assert sp.n_good == 200 and sp.medium == "air" and sp.meta["medium_assumed"]
    (tmp_path / "v.csv").write_text("wavelength,flux,ivar\n" + "\n".join(f"{a},{b},{25.0}" for a, b in zip(wl, flux)) + "\n")
    (sp,) = read_spectra(tmp_path / "v.csv")
    np.testing.assert_allclose(sp.sigma, 0.2)
    (tmp_path / "vac.dat").write_text("# wavelength [A, vacuum] flux\n" + "\n".join(f"{a} {b} 7" for a, b in zip(wl, flux)))
    (sp,) = read_spectra(tmp_path / "vac.dat")
    assert sp.medium == "vacuum" and sp.sigma is None and not sp.meta["medium_assumed"]
    cols = [fits.Column(name="wave", format="D", unit="nm", array=wl / 10), fits.Column(name="flux", format="D", array=flux),
            fits.Column(name="ivar", format="D", array=np.where(np.arange(201) < 4, 0.0, 16.0))]
    table = fits.BinTableHDU.from_columns(cols)
    table.header["TUCD1"] = "em.wl"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "t.fits")
    (sp,) = read_spectra(tmp_path / "t.fits")
    assert sp.medium == "vacuum" and sp.n_good == 197
    np.testing.assert_array_equal(sp.wavelength, (wl / 10) * 10.0)
    write_fits(tmp_path / "img.fits", WL, np.ones(WL.size), layout="image", medium="air")
    (sp,) = read_spectra(tmp_path / "img.fits")
    assert sp.medium == "air" and fits.getheader(tmp_path / "img.fits")["CTYPE1"] == "AWAV"


def test_specutils_interchange_round_trip():
    import astropy.units as u
    from astropy.nddata import InverseVariance, StdDevUncertainty

    sp = make_spectrum(flux_unit="erg / (Angstrom s cm2)")
    s1d = sp.to_specutils()
    assert s1d.spectral_axis.unit == u.AA and isinstance(s1d.uncertainty, StdDevUncertainty)
    np.testing.assert_array_equal(s1d.spectral_axis.value, WL)
    np.testing.assert_array_equal(s1d.mask, ~sp.good)
    assert s1d.flux.unit == u.Unit("erg / (Angstrom s cm2)") and s1d.meta["medium"] == "air"
    back = Spectrum.from_specutils(s1d)
    np.testing.assert_array_equal(back.wavelength, sp.wavelength)
    np.testing.assert_array_equal(back.flux, sp.flux)
    np.testing.assert_array_equal(back.sigma, sp.sigma)
    np.testing.assert_array_equal(back.good, sp.good)
    assert back.medium == "air" and back.meta["star_id"] == "4242"
    # a spectrum in nm with an inverse variance: converted to Angstrom and sigma
    cls = type(s1d)
    other = cls(spectral_axis=np.array([500.0, 500.1, 500.2]) * u.nm, flux=np.ones(3) * u.Jy,
                uncertainty=InverseVariance(np.array([4.0, 0.0, 100.0]) / u.Jy**2))
    got = Spectrum.from_specutils(other, medium="vacuum")
    np.testing.assert_allclose(got.wavelength, [5000.0, 5001.0, 5002.0], rtol=1e-12)
    np.testing.assert_allclose(got.sigma[[0, 2]], [0.5, 0.1])
    assert list(got.good) == [True, False, True]
    with pytest.raises(ConfigError, match="medium"):
        Spectrum.from_specutils(other)


def test_writers_refuse_what_the_formats_cannot_hold(tmp_path):
    sp = make_spectrum()
    write_eso_sdp(tmp_path / "a.fits", sp)
    with pytest.raises(StoreError, match="a.fits exists; pass overwrite=True"):
        write_eso_sdp(tmp_path / "a.fits", sp)
    write_eso_sdp(tmp_path / "a.fits", sp, overwrite=True, extra_header={"TELESCOP": "TEST"})
    assert fits.getheader(tmp_path / "a.fits")["TELESCOP"] == "TEST"
    no_frame = Spectrum(sp.wavelength, "air", sp.flux, sp.sigma, sp.good, {**sp.meta, "specsys": None})
    with pytest.raises(ConfigError, match=r"b.fits.*meta\['specsys'\]"):
        write_eso_sdp(tmp_path / "b.fits", no_frame)
    with pytest.raises(ConfigError, match="ERR"):
        write_eso_sdp(tmp_path / "b.fits", Spectrum(sp.wavelength, "air", sp.flux, None, None, sp.meta))
    with pytest.raises(ConfigError, match="writer's own keyword"):
        write_eso_sdp(tmp_path / "b.fits", sp, extra_header={"SPECSYS": "TOPOCENT"})
    assert not (tmp_path / "b.fits").exists() and not list(tmp_path.glob(".b.fits*"))
    with pytest.raises(ConfigError, match=r"named \.\.\._LR1\.fits"):
        write_4most_l1(tmp_path / "star.fits", sp, "red")
    uneven = Spectrum(np.cumsum(np.linspace(0.04, 0.06, 50)) + 5160, "air", np.ones(50), np.ones(50))
    with pytest.raises(ConfigError, match="not uniformly sampled"):
        write_4most_l1_multi(tmp_path / "x_HG11.fits", [uneven], "green")


# --- bad input: each refused with the file and the problem named ---------------------------------------------------

def test_bad_truncated_fits(tmp_path):
    path = write_eso_sdp(tmp_path / "whole.fits", make_spectrum())
    data = path.read_bytes()
    (tmp_path / "cut.fits").write_bytes(data[:-5000])
    with pytest.raises(GridError, match=r"cut.fits is truncated: HDU 1 \(SPECTRUM\) needs \d+ bytes, the file has \d+"):
        read_spectra(tmp_path / "cut.fits")
    (tmp_path / "header_cut.fits").write_bytes(data[:2880 + 400])  # the table's header cut in the middle
    with pytest.raises(GridError, match="header_cut.fits is truncated or damaged: 400 byte"):
        identify(tmp_path / "header_cut.fits")
    (tmp_path / "stub.fits").write_bytes(data[:1000])
    with pytest.raises(GridError, match="stub.fits is not a readable FITS file"):
        read_spectra(tmp_path / "stub.fits")


@pytest.mark.parametrize("drop, message", [
    ("WAVE", r"no WAVE column; an ESO SDP spectrum needs WAVE, FLUX and ERR \(columns here: FLUX, ERR, QUAL\)"),
    ("FLUX", r"no FLUX \(or FLUX_REDUCED\) column"),
    ("ERR", r"column FLUX has no error column ERR"),
])
def test_bad_sdp_missing_columns(tmp_path, drop, message):
    n = 100
    arrays = {"WAVE": 5000 + np.arange(n) * 0.1, "FLUX": np.ones(n), "ERR": np.ones(n), "QUAL": np.zeros(n)}
    cols = [fits.Column(name=k, format=f"{n}D", array=[v]) for k, v in arrays.items() if k != drop]
    path = sdp_file(tmp_path / "sdp.fits", [], [], [], columns=cols, ucd=None)
    with pytest.raises(GridError, match=r"sdp.fits HDU 1 \(SPECTRUM\): " + message):
        read_spectra(path)


def test_bad_4most_missing_error_and_flux_columns(tmp_path):
    n = 100
    cols = [fits.Column(name="WAVE", format=f"{n}D", array=[6100 + 0.05 * np.arange(n)]), fits.Column(name="FLUX", format=f"{n}E", array=[np.ones(n)])]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="PHASE3SPECTRUM")]).writeto(tmp_path / "s_LR1.fits")
    with pytest.raises(GridError, match=r"s_LR1.fits HDU 1 \(PHASE3SPECTRUM\): no ERR_FLUX or FLUX_IVAR column"):
        read_spectra(tmp_path / "s_LR1.fits")
    path = write_4most_l1_multi(tmp_path / "m_HG11.fits", _multi_spectra(2), "green")
    with fits.open(path) as h:
        st = h["SPECTAB"]
        h["SPECTAB"] = fits.BinTableHDU.from_columns([c for c in st.columns if c.name != "FLUX"], header=st.header, name="SPECTAB")
        h.writeto(tmp_path / "noflux_HG11.fits")
    with pytest.raises(GridError, match=r"noflux_HG11.fits HDU 2 \(SPECTAB\): no FLUX column"):
        list_spectra(tmp_path / "noflux_HG11.fits")


def test_bad_wave_not_increasing(tmp_path):
    wave = 5000 + 0.1 * np.arange(100)
    wave[[40, 41]] = wave[[41, 40]]
    path = sdp_file(tmp_path / "order.fits", wave, np.ones(100), np.ones(100))
    with pytest.raises(GridError, match=r"wavelength of .*order.fits HDU 1 row 0 must increase; it does not at index 41 \(5004.1000 -> 5004.0000 A\)"):
        read_spectra(path)


def test_bad_all_pixels_masked(tmp_path):
    path = sdp_file(tmp_path / "dead.fits", 5000 + 0.1 * np.arange(50), np.ones(50), np.ones(50), np.full(50, 2))
    with pytest.raises(GridError, match=r"dead.fits HDU 1 row 0: all 50 pixels are masked \(flagged by the file \(QUAL != 0\): 50\)"):
        read_spectra(path)
    path = sdp_file(tmp_path / "nan.fits", 5000 + 0.1 * np.arange(50), np.full(50, np.nan), np.ones(50))
    with pytest.raises(GridError, match=r"nan.fits HDU 1 row 0: all 50 pixels are masked \(flux NaN or infinite: 50\)"):
        read_spectra(path)


def test_bad_arrays_of_different_lengths(tmp_path):
    path = sdp_file(tmp_path / "ragged.fits", 5000 + 0.1 * np.arange(100), np.ones(99), np.ones(100))
    with pytest.raises(GridError, match=r"ragged.fits HDU 1 row 0: the arrays must have one value per pixel, but WAVE has 100, FLUX has 99, ERR has 100"):
        read_spectra(path)


def _rewrite_fibmetatab(src, dst, rows):
    with fits.open(src) as h:
        h["FIBMETATAB"].data = h["FIBMETATAB"].data[rows]
        h.writeto(dst)


def test_bad_fibmetatab_and_spectab_that_do_not_match(tmp_path):
    path = write_4most_l1_multi(tmp_path / "m_HG11.fits", _multi_spectra(4), "green")
    _rewrite_fibmetatab(path, tmp_path / "lost_HG11.fits", [0, 1, 3])  # SPECUID 5002 has no FIBMETATAB row
    for call in (read_spectra, list_spectra):
        with pytest.raises(GridError, match=r"lost_HG11.fits: 1 SPECTAB row\(s\) have no FIBMETATAB row, first row 2 \(SPECUID 5002\)"):
            call(tmp_path / "lost_HG11.fits")
    with fits.open(path) as h:
        h["FIBMETATAB"].data["SPECUID"][3] = 7777
        h.writeto(tmp_path / "stranger_HG11.fits")
    with pytest.raises(GridError, match=r"stranger_HG11.fits: 1 FIBMETATAB row\(s\) name a SPECUID that SPECTAB does not hold, first row 3 \(SPECUID 7777\)"):
        read_spectra(tmp_path / "stranger_HG11.fits")
    _rewrite_fibmetatab(path, tmp_path / "twice_HG11.fits", [0, 1, 2, 3, 3])
    with pytest.raises(GridError, match=r"twice_HG11.fits: FIBMETATAB repeats SPECUID\(s\) \['5003'\]"):
        read_spectra(tmp_path / "twice_HG11.fits")


def test_bad_nm_labelled_as_angstrom(tmp_path):
    wave_nm = 500 + 0.01 * np.arange(200)
    path = sdp_file(tmp_path / "label.fits", wave_nm, np.ones(200), np.ones(200), wave_unit="Angstrom",
                    primary={"WAVELMIN": 500.0, "WAVELMAX": float(wave_nm[-1])})
    with pytest.raises(GridError, match=r"label.fits HDU 1 row 0: the wavelengths read as 'Angstrom' span 500-501.99 A, but "
                                        r"WAVELMIN/WAVELMAX = 500/501.99 nm say 5000-5019.9 A \(a factor 10 too small: nm labelled as Angstrom\?\)"):
        read_spectra(path)
    # 4MOST L1 without WAVELMIN/WAVELMAX: the values lie outside what 4MOST can see
    n = 100
    cols = [fits.Column(name="WAVE", format=f"{n}D", unit="Angstrom", array=[516 + 0.005 * np.arange(n)]),
            fits.Column(name="FLUX", format=f"{n}E", array=[np.ones(n)]), fits.Column(name="ERR_FLUX", format=f"{n}E", array=[np.ones(n)])]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="PHASE3SPECTRUM")]).writeto(tmp_path / "s_LG1.fits")
    with pytest.raises(GridError, match=r"s_LG1.fits HDU 1 row 0: the wavelengths read as 'Angstrom' span 516-516.495 A, outside the "
                                        r"3000-11000 A 4MOST can see: a unit mislabelled"):
        read_spectra(tmp_path / "s_LG1.fits")
    # a multi file whose WAVELMIN/SPEC_BIN hold Angstrom under the unit nm
    path = write_4most_l1_multi(tmp_path / "m_HG11.fits", _multi_spectra(2, grid_shift=True), "green")
    with fits.open(path) as h:
        h["FIBMETATAB"].data["WAVELMIN"] *= 10
        h["FIBMETATAB"].data["SPEC_BIN"] *= 10
        h.writeto(tmp_path / "a_as_nm_HG11.fits")
    with pytest.raises(GridError, match=r"a_as_nm_HG11.fits HDU 2 row 0 \(SPECUID 5000\): the wavelengths read as 'nm \(WAVELMIN, SPEC_BIN\)' span 51600.*outside"):
        read_spectra(tmp_path / "a_as_nm_HG11.fits")


def test_bad_unknown_specsys_is_refused(tmp_path):
    path = sdp_file(tmp_path / "frame.fits", 5000 + 0.1 * np.arange(50), np.ones(50), np.ones(50), primary={"SPECSYS": "HELIOCENTRIC"})
    for call in (read_spectra, list_spectra):
        with pytest.raises(GridError, match=r"frame.fits HDU 1: SPECSYS 'HELIOCENTRIC' is not a spectral reference frame of the FITS standard "
                                            r"\(TOPOCENT, GEOCENTR, BARYCENT, HELIOCEN, .*\); refusing to guess"):
            call(path)
    (sp,) = read_spectra(sdp_file(tmp_path / "ok.fits", 5000 + 0.1 * np.arange(50), np.ones(50), np.ones(50), primary={"SPECSYS": "heliocen"}))
    assert sp.meta["specsys"] == "HELIOCEN"


def test_bad_multi_without_wavelmin_or_spec_bin(tmp_path):
    path = write_4most_l1_multi(tmp_path / "m_HG11.fits", _multi_spectra(2, grid_shift=True), "green")  # no SPECTAB WCS either
    with fits.open(path) as h:
        fib = h["FIBMETATAB"]
        h["FIBMETATAB"] = fits.BinTableHDU.from_columns([c for c in fib.columns if c.name != "SPEC_BIN"], name="FIBMETATAB")
        h.writeto(tmp_path / "nobin_HG11.fits")
    with pytest.raises(GridError, match=r"nobin_HG11.fits HDU 3 \(FIBMETATAB\): no SPEC_BIN column, and SPECTAB gives FLUX no wavelength WCS"):
        read_spectra(tmp_path / "nobin_HG11.fits")
    # with one grid the writer also gives the column WCS, which then places the pixels; both must agree
    path = write_4most_l1_multi(tmp_path / "one_HG11.fits", _multi_spectra(2), "green")
    with fits.open(path) as h:
        fib = h["FIBMETATAB"]
        h["FIBMETATAB"] = fits.BinTableHDU.from_columns([c for c in fib.columns if c.name not in ("WAVELMIN", "SPEC_BIN")], name="FIBMETATAB")
        h.writeto(tmp_path / "wcs_HG11.fits")
    np.testing.assert_allclose(read_spectra(tmp_path / "wcs_HG11.fits")[1].wavelength, WL, rtol=0, atol=1e-8)
    with fits.open(path) as h:
        h["SPECTAB"].header["1CRVL1"] += 0.01  # 0.1 A: two pixels off
        h.writeto(tmp_path / "disagree_HG11.fits")
    with pytest.raises(GridError, match=r"disagree_HG11.fits HDU 2 row 0 \(SPECUID 5000\): FIBMETATAB WAVELMIN/SPEC_BIN .* disagree with the SPECTAB wavelength WCS"):
        read_spectra(tmp_path / "disagree_HG11.fits")


def test_bad_non_fits_file_with_a_fits_name(tmp_path):
    (tmp_path / "spectrum.fits").write_text("wavelength flux\n5000 1\n5001 1\n")
    with pytest.raises(GridError, match=r"spectrum.fits has a FITS name but is not a FITS file: it begins with b'wavelength flux"):
        read_spectra(tmp_path / "spectrum.fits")
    for fmt in ("fits", "eso-sdp", "4most-l1-multi"):
        with pytest.raises(GridError, match=r"spectrum.fits is not a FITS file|spectrum.fits is not a FITS file"):
            read_spectra(tmp_path / "spectrum.fits", format=fmt)


def test_bad_text_with_a_non_numeric_error_column(tmp_path):
    (tmp_path / "s.txt").write_text("# wavelength flux sigma\n5000.0 1.0 0.01\n5000.1 0.9 n/a\n5000.2 0.9 0.01\n")
    with pytest.raises(GridError, match=r"s.txt is not a text spectrum .*: line 3, column 3 \(sigma\), the flux error, holds 'n/a', not a number"):
        read_spectra(tmp_path / "s.txt")


def test_bad_which_and_ucd_and_missing_hdus(tmp_path):
    path = write_4most_l1_multi(tmp_path / "m_HG11.fits", _multi_spectra(3), "green")
    with pytest.raises(ConfigError, match=r"which=3 is out of range: .*m_HG11.fits holds 3 spectrum/spectra \(indices 0..2\)"):
        read_spectra(path, which=[0, 3])
    assert [s.meta["row"] for s in read_spectra(path, which=-1)] == [2]
    with fits.open(path) as h:
        del h["FIBMETATAB"]
        h.writeto(tmp_path / "half_HG11.fits")
    with pytest.raises(GridError, match=r"half_HG11.fits: no FIBMETATAB HDU"):
        read_spectra(tmp_path / "half_HG11.fits")
    path = sdp_file(tmp_path / "freq.fits", 5000 + 0.1 * np.arange(50), np.ones(50), np.ones(50), ucd="em.freq")
    with pytest.raises(GridError, match=r"freq.fits HDU 1 column WAVE \(TUCD\): the spectral axis has UCD 'em.freq', not a wavelength"):
        read_spectra(path)
