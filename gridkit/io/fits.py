"""Reader and writer of 1-D FITS spectra.

Two layouts are read (the first HDU with data that fits):
- a binary table with a wavelength column (wavelength, wave, lambda, lam; or loglam = log10 wavelength) and a
  flux column (flux, flux_norm, normalised_flux), case-insensitive; the wavelength unit from the column's
  TUNIT through astropy.units (none: Angstrom);
- a 1-D image with a spectral world coordinate system, evaluated by astropy.wcs (CRVAL1, CDELT1 or CD1_1,
  CRPIX1, CTYPE1 and CUNIT1 as the FITS standard defines them, e.g. CTYPE1 = 'WAVE-LOG' for logarithmic
  sampling); the IRAF/SDSS convention DC-FLAG = 1 (the linear coordinate is log10 of the wavelength) too. An
  image without CUNIT1 and without a standard spectral CTYPE1 is read in Angstrom, as such files are written.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import GridError

WAVE_COLUMNS = ("wavelength", "wave", "lambda", "lam", "loglam")
FLUX_COLUMNS = ("flux", "flux_norm", "normalised_flux", "normalized_flux")


def to_angstrom(values: np.ndarray, unit, where: str) -> np.ndarray:
    """Wavelengths in `unit` (astropy unit or FITS unit text; empty: Angstrom) as Angstrom; GridError naming
    `where` when the unit is not a length."""
    import astropy.units as u

    if unit is None or str(unit).strip() in ("", "1"):
        return np.asarray(values, dtype=np.float64)
    try:
        return (np.asarray(values, dtype=np.float64) * u.Unit(unit)).to_value(u.AA)
    except (ValueError, u.UnitConversionError) as exc:
        raise GridError(f"{where}: wavelength unit {str(unit)!r} is not a length ({exc})") from None


def _numeric(hdu, name: str, path: Path, k: int) -> np.ndarray:
    """Column `name` of a table HDU as flat float64; GridError naming the file, HDU and column when it does not
    hold numbers (text, logical or complex values)."""
    values = np.asarray(hdu.data[name])
    if values.dtype.kind not in "iuf":
        kind = {"U": "text", "S": "text", "b": "logical values", "c": "complex numbers"}.get(values.dtype.kind, f"{values.dtype} values")
        first = values.ravel()[:1].tolist()
        raise GridError(f"{path} HDU {k}: column {name!r} must hold numbers, it holds {kind} (FITS format "
                        f"{hdu.columns[name].format}" + (f", first value {first[0]!r})" if first else ")"))
    return values.astype(np.float64).ravel()


def _table(hdu, path: Path, k: int):
    names = {n.lower(): n for n in hdu.columns.names}
    wcol = next((names[n] for n in WAVE_COLUMNS if n in names), None)
    fcol = next((names[n] for n in FLUX_COLUMNS if n in names), None)
    if wcol is None or fcol is None:
        return None
    wl = _numeric(hdu, wcol, path, k)
    flux = _numeric(hdu, fcol, path, k)
    if wcol.lower() == "loglam":
        wl = 10.0**wl
    wl = to_angstrom(wl, hdu.columns[wcol].unit, f"{path} HDU {k} column {wcol}")
    return wl, flux, {"format": "fits", "source": str(path), "hdu": k, "layout": "table", "units": "Angstrom"}


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
    return wl, flux, {"format": "fits", "source": str(path), "hdu": k, "layout": "image", "units": "Angstrom"}


def read_fits(path) -> tuple[np.ndarray, np.ndarray, dict]:
    from astropy.io import fits

    path = Path(path)
    try:
        hdus = fits.open(path, memmap=False)
    except OSError as exc:
        raise GridError(f"{path} is not a readable FITS file: {exc}") from None
    with hdus:
        for k, hdu in enumerate(hdus):
            if hdu.data is None:
                continue
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                found = _table(hdu, path, k)
                if found is not None:
                    return found
                continue
            data = np.asarray(hdu.data)
            if data.ndim == 1 or (data.ndim == 2 and 1 in data.shape):
                return _image(hdu, path, k)
    raise GridError(f"{path} holds no 1-D spectrum: no table with columns {WAVE_COLUMNS}/{FLUX_COLUMNS} and no 1-D image")


def write_fits(path, wavelength, flux, *, layout: str = "table", overwrite: bool = False) -> None:
    """Write a 1-D spectrum: layout 'table' (columns wavelength [Angstrom], flux) or 'image' (linear WCS; the
    wavelength must be uniformly spaced)."""
    from astropy.io import fits

    wl, fl = np.asarray(wavelength, np.float64), np.asarray(flux, np.float64)
    if layout == "table":
        hdu = fits.BinTableHDU.from_columns([fits.Column(name="wavelength", format="D", unit="Angstrom", array=wl),
                                             fits.Column(name="flux", format="D", array=fl)])
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=overwrite)
    elif layout == "image":
        steps = np.diff(wl)
        if not np.allclose(steps, steps[0], rtol=1e-6):
            raise GridError("layout 'image' needs a uniformly spaced wavelength; use layout='table'")
        hdu = fits.PrimaryHDU(fl)
        hdu.header.update({"CRVAL1": wl[0], "CDELT1": float(steps[0]), "CRPIX1": 1.0, "CTYPE1": "WAVE", "CUNIT1": "Angstrom"})
        hdu.writeto(path, overwrite=overwrite)
    else:
        raise GridError(f"layout must be 'table' or 'image', got {layout!r}")
