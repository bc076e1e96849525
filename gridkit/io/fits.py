"""Reader and writer of 1-D FITS spectra.

Two layouts are read (the first HDU with data that fits):
- a binary table with a wavelength column (wavelength, wave, lambda, lam; or loglam = log10 wavelength) and a
  flux column (flux, flux_norm, normalised_flux), case-insensitive;
- a 1-D image with a linear or log-linear wavelength WCS: CRVAL1, CDELT1 (or CD1_1), CRPIX1 (default 1);
  log10 steps when CTYPE1 is 'WAVE-LOG' or DC-FLAG = 1; CUNIT1 'nm' or 'm' converted to Angstrom.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GridError

WAVE_COLUMNS = ("wavelength", "wave", "lambda", "lam", "loglam")
FLUX_COLUMNS = ("flux", "flux_norm", "normalised_flux", "normalized_flux")
_UNIT = {"angstrom": 1.0, "a": 1.0, "nm": 10.0, "um": 1e4, "m": 1e10, "": 1.0}


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
                names = {n.lower(): n for n in hdu.columns.names}
                wcol = next((names[n] for n in WAVE_COLUMNS if n in names), None)
                fcol = next((names[n] for n in FLUX_COLUMNS if n in names), None)
                if wcol is None or fcol is None:
                    continue
                wl = np.asarray(hdu.data[wcol], dtype=np.float64).ravel()
                flux = np.asarray(hdu.data[fcol], dtype=np.float64).ravel()
                if wcol.lower() == "loglam":
                    wl = 10.0**wl
                unit = (hdu.columns[wcol].unit or "").strip().lower()
                wl = wl * _UNIT.get(unit, 1.0)
                return wl, flux, {"format": "fits", "source": str(path), "hdu": k, "layout": "table", "units": "Angstrom"}
            data = np.asarray(hdu.data)
            if data.ndim == 1 or (data.ndim == 2 and 1 in data.shape):
                h = hdu.header
                flux = data.astype(np.float64).ravel()
                if "CRVAL1" not in h:
                    raise GridError(f"{path} HDU {k}: a 1-D image spectrum needs a wavelength WCS (CRVAL1, CDELT1/CD1_1)")
                step = h.get("CDELT1", h.get("CD1_1"))
                if step is None:
                    raise GridError(f"{path} HDU {k}: no CDELT1 or CD1_1 wavelength step")
                pix = np.arange(flux.size) + 1 - float(h.get("CRPIX1", 1.0))
                x = float(h["CRVAL1"]) + float(step) * pix
                log = str(h.get("CTYPE1", "")).upper().startswith("WAVE-LOG") or int(h.get("DC-FLAG", 0)) == 1
                wl = 10.0**x if log else x
                wl = wl * _UNIT.get(str(h.get("CUNIT1", "")).strip().lower(), 1.0)
                return wl, flux, {"format": "fits", "source": str(path), "hdu": k, "layout": "image", "units": "Angstrom"}
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
