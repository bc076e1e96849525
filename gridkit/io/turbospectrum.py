"""Reader of Turbospectrum output spectra (`.spec`, format 'turbospectrum'): wavelength [A, air], normalised
flux, absolute flux."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GridError
from .spectrum import Spectrum, base_meta, selection


def read_spec(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(wavelength [A], continuum-normalised flux, meta) of a Turbospectrum `.spec` file; meta holds the
    absolute flux (third column, erg s-1 cm-2 A-1) under `absolute_flux` when present."""
    path = Path(path)
    try:
        data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise GridError(f"{path} is not a Turbospectrum spectrum (numeric columns wavelength, normalised flux[, absolute flux]): {exc}") from None
    if data.shape[1] not in (2, 3) or data.shape[0] < 2:
        raise GridError(f"{path} must have 2 or 3 columns (wavelength, normalised flux, absolute flux) and >= 2 rows, got shape {data.shape}")
    meta = {"format": "turbospectrum", "source": str(path), "medium": "air", "units": "Angstrom"}
    if data.shape[1] == 3:
        meta["absolute_flux"] = data[:, 2]
    return data[:, 0], data[:, 1], meta


def turbospectrum_spectra(path, which=None) -> list[Spectrum]:
    """The spectrum of a `.spec` file as a one-item list (format 'turbospectrum' of the registry): air
    wavelengths, continuum-normalised flux (contnorm True), no error."""
    wl, flux, meta = read_spec(path)
    rows = selection(which, 1, path)
    meta = base_meta(**meta, index=0, star_id=Path(path).name.split(".")[0], contnorm=True, medium_assumed=False)
    spectrum = Spectrum(wl, meta.pop("medium"), flux, None, None, meta)
    return [spectrum for _ in rows]
