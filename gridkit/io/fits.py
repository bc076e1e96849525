"""Reader and writer of generic 1-D FITS spectra (format 'fits': any FITS file no other format claims).

Two layouts are read (the first HDU with data that fits):
- a binary table with a wavelength column (wavelength, wave, lambda, lam; or loglam = log10 wavelength) and a
  flux column (flux, flux_norm, normalised_flux), case-insensitive; the wavelength unit from the column's
  TUNIT through astropy.units (none: Angstrom); an error column when there is one: sigma, err, error, err_flux,
  flux_err, flux_error, uncertainty (1 sigma) or ivar, flux_ivar (inverse variance: sigma = 1/sqrt(ivar));
  air or vacuum from the wavelength column's TUCD ('em.wl;obs.atmos' air, 'em.wl' vacuum);
- a 1-D image with a spectral world coordinate system, evaluated by astropy.wcs (CRVAL1, CDELT1 or CD1_1,
  CRPIX1, CTYPE1 and CUNIT1 as the FITS standard defines them, e.g. CTYPE1 = 'WAVE-LOG' for logarithmic
  sampling); the IRAF/SDSS convention DC-FLAG = 1 (the linear coordinate is log10 of the wavelength) too. An
  image without CUNIT1 and without a standard spectral CTYPE1 is read in Angstrom, as such files are written.
  CTYPE1 'AWAV...' is air, 'WAVE...' vacuum (the standard's meaning, Greisen et al. 2006).
Without a statement of the medium the spectrum is taken as air (meta['medium_assumed'] = True), the medium of
the project's grids.

`read_fits(path) -> (wavelength, flux, meta)`: the spectrum as it is in the file (for gridkit.observed);
`fits_spectra(path, which=None) -> [Spectrum]`: the registry's reader; `write_fits(...)`: table or image.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import GridError
from .fitsfile import column, keyword, number, open_fits
from .spectrum import Spectrum, base_meta, medium_from_ucd, selection, to_angstrom

WAVE_COLUMNS = ("wavelength", "wave", "lambda", "lam", "loglam")
FLUX_COLUMNS = ("flux", "flux_norm", "normalised_flux", "normalized_flux")
SIGMA_COLUMNS = ("sigma", "err", "error", "err_flux", "flux_err", "flux_error", "uncertainty")
IVAR_COLUMNS = ("ivar", "flux_ivar")


def _table(hdu, path: Path, k: int):
    names = {n.lower(): n for n in hdu.columns.names}
    wcol = next((names[n] for n in WAVE_COLUMNS if n in names), None)
    fcol = next((names[n] for n in FLUX_COLUMNS if n in names), None)
    if wcol is None or fcol is None:
        return None
    where = f"{path} HDU {k}"
    wl = column(hdu, wcol, where)
    flux = column(hdu, fcol, where)
    if wcol.lower() == "loglam":
        wl = 10.0**wl
    wl = to_angstrom(wl, hdu.columns[wcol].unit, f"{path} HDU {k} column {wcol}")
    sigma = None
    scol = next((names[n] for n in SIGMA_COLUMNS if n in names), None)
    icol = next((names[n] for n in IVAR_COLUMNS if n in names), None)
    if scol is not None:
        sigma = column(hdu, scol, where)
    elif icol is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma = 1.0 / np.sqrt(column(hdu, icol, where))
    ucd = hdu.header.get(f"TUCD{hdu.columns.names.index(wcol) + 1}")
    medium = medium_from_ucd(ucd, f"{path} HDU {k} column {wcol}")
    return wl, flux, sigma, medium, {"layout": "table"}


def _image(hdu, path: Path, k: int):
    from astropy.wcs import WCS, FITSFixedWarning

    h = hdu.header
    flux = np.asarray(hdu.data).astype(np.float64).ravel()
    if "CRVAL1" not in h or ("CDELT1" not in h and "CD1_1" not in h):
        raise GridError(f"{path} HDU {k}: a 1-D image spectrum needs a wavelength WCS (CRVAL1 and CDELT1 or CD1_1)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # wcslib's notes on non-standard keywords of old files
        try:
            wcs = WCS(h, naxis=[1])
        except Exception as exc:  # noqa: BLE001 - astropy raises several types for a broken WCS
            raise GridError(f"{path} HDU {k}: the wavelength WCS is not readable: {' '.join(str(exc).split())}") from None
    world = wcs.wcs_pix2world(np.arange(flux.size, dtype=np.float64), 0)[0]
    if int(h.get("DC-FLAG", 0)) == 1:  # IRAF/SDSS: the linear coordinate is log10(wavelength)
        world = 10.0**world
    unit = wcs.wcs.cunit[0]
    wl = to_angstrom(world, unit if str(unit) else None, f"{path} HDU {k} CUNIT1")
    ctype = str(h.get("CTYPE1", "")).upper()
    medium = "air" if ctype.startswith("AWAV") else "vacuum" if ctype.startswith("WAVE") else None
    return wl, flux, None, medium, {"layout": "image"}


def _parts(path):
    """(wavelength [A], flux, sigma or None, medium or None, meta) of the first HDU holding a 1-D spectrum."""
    from astropy.io import fits

    path = Path(path)
    with open_fits(path) as hdus:
        primary = hdus[0].header
        for k, hdu in enumerate(hdus):
            if hdu.data is None:
                continue
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                found = _table(hdu, path, k)
            else:
                data = np.asarray(hdu.data)
                found = _image(hdu, path, k) if data.ndim == 1 or (data.ndim == 2 and 1 in data.shape) else None
            if found is None:
                continue
            wl, flux, sigma, medium, extra = found
            headers = (hdu.header, primary)
            obj = keyword(headers, "OBJECT")
            meta = base_meta(format="fits", source=str(path), hdu=k, row=None, index=0, units="Angstrom",
                             object=None if obj is None else str(obj).strip(), star_id=path.name.split(".")[0],
                             ra=number(keyword(headers, "RA")), dec=number(keyword(headers, "DEC")),
                             mjd=number(keyword(headers, "MJD-OBS")), resolving_power=number(keyword(headers, "SPEC_RES")),
                             medium=medium or "air", medium_assumed=medium is None, **extra)
            return wl, flux, sigma, meta
    raise GridError(f"{path} holds no 1-D spectrum: no table with columns {WAVE_COLUMNS}/{FLUX_COLUMNS} and no 1-D image")


def read_fits(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(wavelength [A], flux, meta) of a generic FITS spectrum as it is (no checks of the wavelengths: see
    gridkit.io.READERS); meta['sigma'] holds the error column when there is one."""
    wl, flux, sigma, meta = _parts(path)
    meta = {k: v for k, v in meta.items() if v is not None}  # what the file says: meta.get(key, default) works
    if sigma is not None:
        meta["sigma"] = sigma
    return wl, flux, meta


def fits_spectra(path, which=None) -> list[Spectrum]:
    """The spectrum of a generic FITS file as a one-item list (format 'fits' of the registry)."""
    wl, flux, sigma, meta = _parts(path)
    rows = selection(which, 1, path)
    spectrum = Spectrum(wl, meta.pop("medium"), flux, sigma, None, meta)
    return [spectrum for _ in rows]


def write_fits(path, wavelength, flux, *, layout: str = "table", medium: str = "air", overwrite: bool = False) -> None:
    """Write a 1-D spectrum: layout 'table' (columns wavelength [Angstrom] with TUCD 'em.wl;obs.atmos' for air or
    'em.wl' for vacuum, flux) or 'image' (linear WCS, CTYPE1 'AWAV' for air or 'WAVE' for vacuum; the
    wavelength must be uniformly spaced)."""
    from astropy.io import fits

    if medium not in ("air", "vacuum"):
        raise GridError(f"medium must be 'air' or 'vacuum', got {medium!r}")
    wl, fl = np.asarray(wavelength, np.float64), np.asarray(flux, np.float64)
    if layout == "table":
        hdu = fits.BinTableHDU.from_columns([fits.Column(name="wavelength", format="D", unit="Angstrom", array=wl),
                                             fits.Column(name="flux", format="D", array=fl)])
        hdu.header["TUCD1"] = "em.wl;obs.atmos" if medium == "air" else "em.wl"
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=overwrite)
    elif layout == "image":
        steps = np.diff(wl)
        if not np.allclose(steps, steps[0], rtol=1e-6):
            raise GridError("layout 'image' needs a uniformly spaced wavelength; use layout='table'")
        hdu = fits.PrimaryHDU(fl)
        hdu.header.update({"CRVAL1": wl[0], "CDELT1": float(steps[0]), "CRPIX1": 1.0, "CTYPE1": "AWAV" if medium == "air" else "WAVE",
                           "CUNIT1": "Angstrom"})
        hdu.writeto(path, overwrite=overwrite)
    else:
        raise GridError(f"layout must be 'table' or 'image', got {layout!r}")
