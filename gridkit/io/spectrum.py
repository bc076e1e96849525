"""One observed or synthetic 1-D spectrum as the readers return it, and the rules every reader shares.

`Spectrum(wavelength, medium, flux, sigma=None, good=None, meta=None)`:

- `wavelength`: Angstrom, float64, 1-D, finite, positive, strictly increasing (GridError naming the file, HDU and
  row otherwise; repeated wavelengths of overlapping echelle orders are refused here: `gridkit.io.READERS` reads
  such files as they are for `gridkit.observed`, which merges them);
- `medium`: 'air' or 'vacuum';
- `flux`: float64, one value per wavelength, NaN allowed;
- `sigma`: the 1-sigma flux error (float64, one per wavelength), or None when the file has none;
- `good`: bool, the usable pixels: the file's mask (QUAL == 0) AND finite flux AND, when there is a sigma, finite
  sigma > 0 (an inverse variance of 0 gives sigma = inf: not good). A spectrum without a single usable pixel is refused (GridError);
- `meta`: dict with at least the keys of `META_KEYS` (None where the file does not say): star_id, object, ra,
  dec (deg), mjd, specsys, resolving_power, snr (the file's own), source (file), format, hdu, row, index (the
  spectrum's position in its file), arm, contnorm (bool or None), medium_assumed (True when the file did not
  state air or vacuum and the format's default was taken), flux_unit.

Shared rules: `to_angstrom` (astropy.units; power-of-ten factors applied exactly), `medium_from_ucd` (the IVOA
UCD of a wavelength column: 'em.wl;obs.atmos' is air, 'em.wl' vacuum), `check_specsys` (the frames of the FITS
standard, Greisen et al. 2006 table 12; anything else is refused), `check_wavelength_scale` (a wavelength column
whose values contradict WAVELMIN/WAVELMAX or the range an instrument can see: nm labelled as Angstrom or the
reverse).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import ConfigError, GridError
from ..schema import check_wavelength

MEDIA = ("air", "vacuum")

#: spectral reference frames of the FITS standard (WCS paper III, Greisen et al. 2006, table 12): SPECSYS values
SPECSYS_VALUES = ("TOPOCENT", "GEOCENTR", "BARYCENT", "HELIOCEN", "LSRK", "LSRD", "GALACTOC", "LOCALGRP", "CMBDIPOL", "SOURCE")

#: keys every Spectrum.meta holds (None where the file does not say)
META_KEYS = ("star_id", "object", "ra", "dec", "mjd", "specsys", "resolving_power", "snr", "source", "format", "hdu", "row",
             "index", "arm", "contnorm", "medium_assumed", "flux_unit")


def base_meta(**known) -> dict:
    """A meta dict with every key of META_KEYS (None unless given) and the given ones."""
    meta = dict.fromkeys(META_KEYS)
    meta.update(known)
    return meta


def where(meta: Mapping) -> str:
    """'file.fits HDU 1 row 3' for messages: the source, HDU and row that meta names."""
    out = str(meta.get("source") or "spectrum")
    if meta.get("hdu") is not None:
        out += f" HDU {meta['hdu']}"
    if meta.get("row") is not None:
        out += f" row {meta['row']}"
    return out


@dataclass(eq=False)
class Spectrum:
    """One 1-D spectrum: wavelength [A] (strictly increasing), medium, flux, sigma, good (usable pixels), meta.
    See the module docstring for what each field holds and what is refused."""

    wavelength: np.ndarray
    medium: str
    flux: np.ndarray
    sigma: np.ndarray | None = None
    good: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.meta = base_meta(**(self.meta or {}))
        name = where(self.meta)
        if self.medium not in MEDIA:
            raise GridError(f"{name}: medium must be 'air' or 'vacuum', got {self.medium!r}")
        self.wavelength = check_wavelength(self.wavelength, name=f"wavelength of {name}")
        n = self.wavelength.size
        self.flux = _same_length(self.flux, n, "flux", name)
        if self.sigma is not None:
            self.sigma = _same_length(self.sigma, n, "sigma", name)
        flagged = np.zeros(n, bool) if self.good is None else ~_same_length(self.good, n, "good", name, dtype=bool)
        bad_flux = ~np.isfinite(self.flux)
        bad_sigma = np.zeros(n, bool) if self.sigma is None else ~(np.isfinite(self.sigma) & (self.sigma > 0))
        self.good = ~(flagged | bad_flux | bad_sigma)
        if not self.good.any():
            raise GridError(f"{name}: all {n} pixels are masked ({mask_reasons(flagged, bad_flux, bad_sigma)}); "
                            "the spectrum holds nothing usable")

    @property
    def n_good(self) -> int:
        return int(self.good.sum())

    def masked_flux(self) -> np.ndarray:
        """The flux with NaN wherever the pixel is not `good`."""
        return np.where(self.good, self.flux, np.nan)

    def to_specutils(self):
        """This spectrum as a specutils Spectrum1D (`specutils.Spectrum` from specutils 2): spectral axis in
        Angstrom, flux in meta['flux_unit'] (dimensionless when unknown), StdDevUncertainty from sigma, mask True
        where the pixel is not good, meta with 'medium' added."""
        import astropy.units as u
        from astropy.nddata import StdDevUncertainty

        cls = _specutils_class()
        unit = u.Unit(self.meta.get("flux_unit") or "")
        return cls(spectral_axis=self.wavelength * u.AA, flux=self.flux * unit, mask=~self.good,
                   uncertainty=None if self.sigma is None else StdDevUncertainty(self.sigma * unit),
                   meta={**self.meta, "medium": self.medium})

    @classmethod
    def from_specutils(cls, sp, medium: str | None = None) -> Spectrum:
        """A Spectrum from a 1-D specutils Spectrum1D: the spectral axis converted to Angstrom (a decreasing one,
        e.g. in frequency, is refused), the uncertainty (StdDev, Variance or InverseVariance) as sigma, the mask
        (True = bad) as `good`, meta copied. `medium`: 'air' or 'vacuum'; default sp.meta['medium'] (ConfigError
        when neither says: specutils does not record it)."""
        import astropy.units as u
        from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty

        meta = dict(getattr(sp, "meta", None) or {})
        medium = medium if medium is not None else meta.pop("medium", None)
        meta.pop("medium", None)
        if medium not in MEDIA:
            raise ConfigError(f"from_specutils: medium must be 'air' or 'vacuum' (pass medium= or set sp.meta['medium']), got {medium!r}")
        flux = sp.flux
        if flux.ndim != 1:
            raise ConfigError(f"from_specutils: a 1-D spectrum is needed, got flux of shape {flux.shape}")
        wl = sp.spectral_axis.to_value(u.AA, equivalencies=u.spectral())
        unc, sigma = sp.uncertainty, None
        if unc is not None:
            arr = np.asarray(unc.array, dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                if isinstance(unc, StdDevUncertainty):
                    sigma = arr
                elif isinstance(unc, VarianceUncertainty):
                    sigma = np.sqrt(arr)
                elif isinstance(unc, InverseVariance):
                    sigma = 1.0 / np.sqrt(arr)
                else:
                    raise ConfigError(f"from_specutils: uncertainty of type {type(unc).__name__} is not supported "
                                      "(StdDevUncertainty, VarianceUncertainty or InverseVariance)")
        good = None if sp.mask is None else ~np.asarray(sp.mask, dtype=bool)
        if str(flux.unit) and flux.unit != u.dimensionless_unscaled:
            meta["flux_unit"] = flux.unit.to_string()
        meta.setdefault("source", "specutils")
        return cls(wl, medium, np.asarray(flux.value, dtype=np.float64), sigma, good, meta)


def selection(which, n: int, path) -> list[int]:
    """The spectrum indices `which` asks for among the `n` of file `path`: None = all, an int, or a sequence of
    ints (negative ones count from the end); ConfigError naming the file and its count for any outside."""
    if which is None:
        return list(range(n))
    items = [which] if isinstance(which, (int, np.integer)) else list(which)
    out = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ConfigError(f"which must be spectrum indices (ints), got {i!r} for {path}")
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise ConfigError(f"which={i} is out of range: {path} holds {n} spectrum/spectra (indices 0..{n - 1})")
        out.append(j)
    return out


def _same_length(values, n: int, what: str, name: str, dtype=np.float64) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1 or arr.size != n:
        raise GridError(f"{name}: {what} has {arr.size} values (shape {arr.shape}) for {n} wavelengths")
    return arr


def mask_reasons(flagged: np.ndarray, bad_flux: np.ndarray, bad_sigma: np.ndarray) -> str:
    """'flagged by the file: 3, flux not finite: 2, sigma not finite and > 0: 1' (the non-zero counts)."""
    parts = [(int(flagged.sum()), "flagged by the file (QUAL != 0)"), (int(bad_flux.sum()), "flux NaN or infinite"),
             (int(bad_sigma.sum()), "sigma not finite and > 0 (inverse variance <= 0)")]
    return ", ".join(f"{text}: {count}" for count, text in parts if count) or "none"


def _specutils_class():
    try:
        import specutils
    except ImportError:  # pragma: no cover - specutils is a dependency
        raise ConfigError("Spectrum.to_specutils needs specutils (pip install 'specutils>=1.12')") from None
    return getattr(specutils, "Spectrum", None) or specutils.Spectrum1D


def to_angstrom(values, unit, where: str) -> np.ndarray:
    """Wavelengths in `unit` (astropy unit or FITS unit text; empty: Angstrom) as Angstrom, float64. A factor
    that is a power of ten (nm, um, cm, m) is applied as that exact power: astropy's nm -> Angstrom factor is
    9.999999999999998, which would move every value by one unit in the last place. GridError naming `where`
    when the unit is not a length."""
    import astropy.units as u

    values = np.asarray(values, dtype=np.float64)
    if unit is None or str(unit).strip() in ("", "1"):
        return values
    try:
        scale = u.Unit(unit).to(u.AA)
    except (ValueError, u.UnitConversionError) as exc:
        raise GridError(f"{where}: wavelength unit {str(unit)!r} is not a length ({exc})") from None
    power = round(math.log10(scale))
    if math.isclose(scale, 10.0**power, rel_tol=1e-12):
        return values * 10.0**power if power >= 0 else values / 10.0**-power
    return values * scale


def medium_from_ucd(ucd, where: str) -> str | None:
    """'air' for a UCD with the word obs.atmos ('em.wl;obs.atmos'), 'vacuum' for 'em.wl' without it, None when
    there is no UCD; GridError for a UCD that is not a wavelength (em.freq, em.energy, ...)."""
    text = str(ucd or "").strip()
    if not text:
        return None
    words = [w.strip().lower() for w in text.split(";")]
    if words[0] != "em.wl":
        raise GridError(f"{where}: the spectral axis has UCD {text!r}, not a wavelength (em.wl); it cannot be read as one")
    return "air" if "obs.atmos" in words else "vacuum"


def check_specsys(value, where: str) -> str | None:
    """The SPECSYS value (upper case) when it is a frame of the FITS standard, None when absent; GridError
    otherwise: the wavelengths' frame would be unknown, and a guess is wrong by up to ~30 km/s."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().upper()
    if text not in SPECSYS_VALUES:
        raise GridError(f"{where}: SPECSYS {value!r} is not a spectral reference frame of the FITS standard "
                        f"({', '.join(SPECSYS_VALUES)}); refusing to guess the frame of the wavelengths")
    return text


def check_wavelength_scale(wavelength, where: str, unit_label: str, *, wavelmin_nm=None, wavelmax_nm=None,
                           window: tuple[float, float] | None = None, instrument: str = "") -> None:
    """Refuse (GridError) wavelengths [A] whose scale contradicts the file: their first and last values differ
    by more than a factor 1.5 from WAVELMIN/WAVELMAX [nm] when those are given, else they leave `window` [A]
    (what `instrument` can see). Such a file holds nm labelled as Angstrom (a factor 10) or the reverse."""
    wl = np.asarray(wavelength, dtype=np.float64)
    finite = wl[np.isfinite(wl)]
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())
    given = [(v, k) for v, k in ((wavelmin_nm, lo), (wavelmax_nm, hi)) if v is not None and np.isfinite(v) and v > 0]
    if given:
        ratios = [k / (10.0 * float(v)) for v, k in given]
        if all(1 / 1.5 <= r <= 1.5 for r in ratios):
            return
        r = ratios[0]
        hint = (" (a factor 10 too small: nm labelled as Angstrom?)" if 0.07 < r < 0.14 else
                " (a factor 10 too large: Angstrom labelled as nm?)" if 7 < r < 14 else "")
        keys = f"WAVELMIN/WAVELMAX = {wavelmin_nm:.6g}/{wavelmax_nm:.6g} nm"
        raise GridError(f"{where}: the wavelengths read as {unit_label!r} span {lo:.6g}-{hi:.6g} A, but {keys} "
                        f"say {10 * (wavelmin_nm or 0):.6g}-{10 * (wavelmax_nm or 0):.6g} A{hint}; fix the unit of the column")
    if window is not None and (lo < window[0] or hi > window[1]):
        raise GridError(f"{where}: the wavelengths read as {unit_label!r} span {lo:.6g}-{hi:.6g} A, outside the "
                        f"{window[0]:g}-{window[1]:g} A {instrument or 'the instrument'} can see: a unit mislabelled "
                        "(nm as Angstrom, or Angstrom as nm)?")


__all__ = ["Spectrum", "MEDIA", "SPECSYS_VALUES", "META_KEYS", "base_meta", "to_angstrom", "medium_from_ucd", "check_specsys",
           "check_wavelength_scale", "mask_reasons", "selection"]
