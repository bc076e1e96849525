"""Readers: the real Turbospectrum benchmark, text and FITS round trips, label tables, clear errors."""
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from gridkit.errors import ConfigError, GridError
from gridkit.io import read_labels, read_spectrum, write_fits, write_text

SPEC = "turbospectrum-benchmark/5777g4.44z+0.00a+0.00t01_6700-6720_xit1.0.spec"


def test_reads_the_turbospectrum_solar_benchmark(shared_data):
    wl, flux, meta = read_spectrum(shared_data / SPEC)
    assert meta["format"] == "turbospectrum" and wl.size == 2001
    assert wl[0] == 6700.0 and wl[-1] == pytest.approx(6720.0) and np.allclose(np.diff(wl), 0.01)
    assert np.all((flux > 0.3) & (flux <= 1.0001))
    assert abs(wl[np.argmin(flux)] - 6717.68) < 0.02  # Ca I 6717.68, the deepest solar line here
    absolute = meta["absolute_flux"]
    assert absolute.shape == wl.shape and np.all(absolute > 0)
    # normalised = absolute / continuum: the continuum (absolute / normalised) is smooth
    cont = absolute / flux
    assert np.ptp(cont) / cont.mean() < 0.01


def test_text_round_trip_and_comma_separated(tmp_path):
    wl = np.linspace(5000, 5010, 501)
    flux = 1 - 0.5 * np.exp(-((wl - 5005) / 0.1) ** 2)
    write_text(tmp_path / "s.txt", wl, flux)
    w2, f2, meta = read_spectrum(tmp_path / "s.txt")
    np.testing.assert_allclose(w2, wl, atol=1e-6)
    np.testing.assert_allclose(f2, flux, rtol=1e-6)
    assert meta["format"] == "text"
    (tmp_path / "s.csv").write_text("# wavelength,flux\n" + "\n".join(f"{a},{b}" for a, b in zip(wl, flux)))
    w3, f3, _ = read_spectrum(tmp_path / "s.csv")
    np.testing.assert_allclose(f3, flux)
    (tmp_path / "s.dat").write_text("\n".join(f"{a} {b}" for a, b in zip(wl, flux)))
    np.testing.assert_allclose(read_spectrum(tmp_path / "s.dat", format="text")[1], flux)


@pytest.mark.parametrize("layout", ["table", "image"])
def test_fits_round_trip(tmp_path, layout):
    wl = 6000 + 0.02 * np.arange(1000)
    flux = 1 - 0.3 * np.exp(-((wl - 6010) / 0.2) ** 2)
    write_fits(tmp_path / "s.fits", wl, flux, layout=layout)
    w2, f2, meta = read_spectrum(tmp_path / "s.fits")
    np.testing.assert_allclose(w2, wl, atol=1e-8)
    np.testing.assert_allclose(f2, flux)
    assert meta["layout"] == layout


def test_fits_log_linear_image_and_nm_units(tmp_path):
    loglam = np.log10(5000) + 1e-5 * np.arange(300)
    hdu = fits.PrimaryHDU(np.ones(300))
    hdu.header.update({"CRVAL1": loglam[0], "CDELT1": 1e-5, "CRPIX1": 1, "DC-FLAG": 1})
    hdu.writeto(tmp_path / "log.fits")
    np.testing.assert_allclose(read_spectrum(tmp_path / "log.fits")[0], 10**loglam)
    t = Table({"WAVE": np.linspace(500, 501, 50), "FLUX": np.ones(50)})
    t["WAVE"].unit = "nm"
    t.write(tmp_path / "nm.fits")
    np.testing.assert_allclose(read_spectrum(tmp_path / "nm.fits")[0], np.linspace(5000, 5010, 50))


def test_bad_spectra_are_refused_with_the_file_and_value_named(tmp_path):
    (tmp_path / "unsorted.txt").write_text("5000.0 1\n5000.2 1\n5000.1 1\n")
    with pytest.raises(GridError, match=r"unsorted.txt.*increase.*index 2"):
        read_spectrum(tmp_path / "unsorted.txt")
    (tmp_path / "neg.txt").write_text("-1 1\n2 1\n")
    with pytest.raises(GridError, match="positive"):
        read_spectrum(tmp_path / "neg.txt")
    (tmp_path / "nan.spec").write_text("5000.0 1 1\n5000.1 nan 1\n")
    with pytest.raises(GridError, match=r"nan.spec.*NaN"):
        read_spectrum(tmp_path / "nan.spec")
    (tmp_path / "x.xyz").write_text("1 1\n2 1\n")
    with pytest.raises(ConfigError, match="extension"):
        read_spectrum(tmp_path / "x.xyz")
    with pytest.raises(GridError, match="does not exist"):
        read_spectrum(tmp_path / "missing.spec")
    (tmp_path / "words.txt").write_text("a b\nc d\n")
    with pytest.raises(GridError, match="words.txt"):
        read_spectrum(tmp_path / "words.txt")


@pytest.mark.parametrize("ext", ["csv", "ecsv", "fits"])
def test_read_labels_through_astropy(tmp_path, ext):
    t = Table({"file": ["a.spec", "b.spec"], "teff": [5000.0, 6000.0], "logg": [4.0, 2.5]})
    path = tmp_path / f"labels.{ext}"
    t.write(path)
    labels = read_labels(path)
    assert list(labels["file"]) == ["a.spec", "b.spec"]
    np.testing.assert_array_equal(labels["teff"], [5000.0, 6000.0])
    assert labels["teff"].dtype == np.float64


def test_fits_image_wcs_follows_the_fits_standard(tmp_path):
    """Image spectra are read through astropy.wcs: CD1_1 for the step, CUNIT1 in nm, and CTYPE1 = 'WAVE-LOG'
    with the standard's definition lambda = CRVAL1 exp(CDELT1 (p - CRPIX1) / CRVAL1) (Greisen et al. 2006)."""
    n = 400
    hdu = fits.PrimaryHDU(np.ones(n))
    hdu.header.update({"CTYPE1": "WAVE", "CUNIT1": "nm", "CRVAL1": 600.0, "CD1_1": 0.002, "CRPIX1": 1.0})
    hdu.writeto(tmp_path / "nm.fits")
    np.testing.assert_allclose(read_spectrum(tmp_path / "nm.fits")[0], 6000.0 + 0.02 * np.arange(n), rtol=1e-12)
    crval, cdelt = 5000.0, 0.05
    hdu = fits.PrimaryHDU(np.ones(n))
    hdu.header.update({"CTYPE1": "WAVE-LOG", "CUNIT1": "Angstrom", "CRVAL1": crval, "CDELT1": cdelt, "CRPIX1": 1.0})
    hdu.writeto(tmp_path / "log.fits")
    expected = crval * np.exp(cdelt * np.arange(n) / crval)
    np.testing.assert_allclose(read_spectrum(tmp_path / "log.fits")[0], expected, rtol=1e-10)
    hdu = fits.PrimaryHDU(np.ones(n))
    hdu.header.update({"CTYPE1": "WAVE", "CUNIT1": "s", "CRVAL1": 1.0, "CDELT1": 1.0})
    hdu.writeto(tmp_path / "time.fits")
    with pytest.raises(GridError, match="time.fits HDU 0.*WCS.*length"):
        read_spectrum(tmp_path / "time.fits")
    t = Table({"WAVE": np.linspace(1, 2, 50), "FLUX": np.ones(50)})
    t["WAVE"].unit = "s"
    t.write(tmp_path / "seconds.fits")
    with pytest.raises(GridError, match="seconds.fits HDU 1 column WAVE: wavelength unit 's' is not a length"):
        read_spectrum(tmp_path / "seconds.fits")


def test_fits_table_columns_of_text_are_refused_naming_file_and_column(tmp_path):
    wl = np.linspace(5000.0, 5010.0, 20)
    cases = {
        "text_flux.fits": ([fits.Column(name="wavelength", format="D", array=wl), fits.Column(name="flux", format="5A", array=np.array(["abc"] * 20))],
                           r"text_flux.fits HDU 1: column 'flux' must hold numbers, it holds text \(FITS format 5A, first value 'abc'\)"),
        "text_wave.fits": ([fits.Column(name="wave", format="5A", array=np.array(["x"] * 20)), fits.Column(name="flux", format="D", array=np.ones(20))],
                           r"text_wave.fits HDU 1: column 'wave' must hold numbers, it holds text"),
        # numbers written as text are still text: FITS has numeric column formats for numbers
        "digits.fits": ([fits.Column(name="wavelength", format="D", array=wl), fits.Column(name="flux", format="5A", array=np.array(["1.0"] * 20))],
                        r"digits.fits HDU 1: column 'flux' must hold numbers, it holds text"),
        "logical.fits": ([fits.Column(name="wavelength", format="D", array=wl), fits.Column(name="flux", format="L", array=np.ones(20, bool))],
                         r"logical.fits HDU 1: column 'flux' must hold numbers, it holds logical values"),
    }
    for name, (columns, message) in cases.items():
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]).writeto(tmp_path / name)
        with pytest.raises(GridError, match=message):
            read_spectrum(tmp_path / name)


def test_text_spectra_that_are_not_text_or_not_files_get_a_message(tmp_path):
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(GridError, match=r"binary.txt is not a text spectrum.*not UTF-8"):
        read_spectrum(tmp_path / "binary.txt")
    (tmp_path / "ragged.csv").write_text("5000,1\n5001,1\n5002\n")
    with pytest.raises(GridError, match=r"ragged.csv is not a text spectrum.*columns changed from 2 to 1 at row 3$"):
        read_spectrum(tmp_path / "ragged.csv")
    from gridkit.io import read_text

    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(GridError, match="folder.txt cannot be read"):
        read_text(tmp_path / "folder.txt")


def test_read_labels_names_the_column_row_and_value_that_is_not_a_number(tmp_path):
    (tmp_path / "labels.csv").write_text("name,teff,logg\na,5000,4.0\nb,abc,2.5\nc,5500,x\n")
    with pytest.raises(GridError, match=r"labels.csv: column 'teff' must hold numbers; 1 of 3 row\(s\) do not, first row 2: 'abc'"):
        read_labels(tmp_path / "labels.csv", numeric=["teff", "logg", "feh"])
    labels = read_labels(tmp_path / "labels.csv")  # without `numeric` text columns are text, as documented
    assert labels["teff"].tolist() == ["5000", "abc", "5500"] and labels["name"].tolist() == ["a", "b", "c"]
    (tmp_path / "empty.csv").write_text("teff,logg\n,4.0\n5000,4.5\n")
    assert np.isnan(read_labels(tmp_path / "empty.csv", numeric=["teff"])["teff"][0])  # an empty numeric cell: NaN (masked)
    (tmp_path / "blank.csv").write_text("teff,logg\n ,4.0\nfoo,4.5\n")
    with pytest.raises(GridError, match=r"column 'teff' must hold numbers; 2 of 2 row\(s\) do not, first row 1"):
        read_labels(tmp_path / "blank.csv", numeric=["teff"])


def test_check_labels_names_the_label_and_its_first_value_that_is_not_a_number():
    from gridkit.schema import check_labels

    with pytest.raises(GridError, match=r"label 'teff' must be numbers; 1 of 3 value\(s\) are not, first at index 1: 'abc'"):
        check_labels({"teff": np.array(["5000", "abc", "6000"]), "logg": np.ones(3)}, 3)
    with pytest.raises(GridError, match=r"label 'feh' must be numbers; 1 of 2 value\(s\) are not, first at index 0: \[1\]"):
        check_labels({"feh": np.array([[1], 1.0], dtype=object)}, 2)
    with pytest.raises(GridError, match=r"label 'feh' is NaN or infinite for 1 model\(s\), first at index 0"):
        check_labels({"feh": np.array([None, 1.0], dtype=object)}, 2)  # None is missing, as numpy reads it
    np.testing.assert_array_equal(check_labels({"teff": np.array(["5000", "6e3"])}, 2)["teff"], [5000.0, 6000.0])


def test_readers_give_observed_spectra_as_they_are_and_read_spectra_refuses_repeats(tmp_path):
    """gridkit.observed reads through READERS: repeated wavelengths (overlapping echelle orders, as in the shared
    UVES Sun) and NaN reach it unchanged, meta holds only what the file says; the Spectrum API refuses repeats."""
    from gridkit.io import READERS, read_spectra, spectrum_format

    (tmp_path / "orders.txt").write_text("5000.0 1.0\n5000.1 0.9\n5000.1 0.92\n5000.2 nan\n5000.3 1.0\n")
    path = tmp_path / "orders.txt"
    wl, flux, meta = READERS[spectrum_format(path)](path)
    np.testing.assert_array_equal(wl, [5000.0, 5000.1, 5000.1, 5000.2, 5000.3])
    assert np.isnan(flux[3]) and None not in meta.values() and np.isnan(float(meta.get("ra", np.nan)))
    assert meta["medium"] == "air" and "sigma" not in meta
    with pytest.raises(GridError, match=r"wavelength of .*orders.txt must increase; it does not at index 2"):
        read_spectra(path)
