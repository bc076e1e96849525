"""Synthetic 4MOST Level-1 files, written as the L1 pipeline lays them out, for tests (the project's end-to-end
tests write the test split of a cube as such files) and for users who want files to try a reader on.

- `write_4most_l1(path, spectrum, arm)`: one spectrum per file, named `..._L{B,G,R,J}1.fits` (or `_H?1`): a
  primary HDU of keywords (ORIGIN, TELESCOP, INSTRUME, PRODCATG, OBJECT, RA, DEC, MJD-OBS, SPECUID, SPECSYS,
  SPEC_RES, SNR, WAVELMIN/WAVELMAX/SPEC_BIN in nm, CONTNORM) and the table PHASE3SPECTRUM (header OBJ_NME,
  OBJ_UID, SNR) with one row: WAVE (Angstrom, float64, TUCD by medium), FLUX, ERR_FLUX (float32), QUAL (int32,
  0 where `good`), FLUX_NOSS, ERR_FLUX_NOSS (no sky in a synthetic spectrum: copies of FLUX, ERR_FLUX).
- `write_4most_l1_multi(path, spectra, arm)`: one arm of many fibres, named with the setup code
  `..._H{B,G,R}11...fits` (or `_L?11`): PRIMARY, OBMETATAB (OBID, MJD-OBS), SPECTAB (SPECUID, FLUX, ERR_FLUX or
  FLUX_IVAR, QUAL; the FLUX column's wavelength axis type 1CTYPn 'AWAV'/'WAVE' and, when every spectrum shares
  one grid, its WCS 1CRVLn/1CDLTn/1CRPXn/1CUNIn in nm), FIBMETATAB (SPECUID, OBJ_UID, OBJ_NME, OBJ_RA, OBJ_DEC,
  WAVELMIN, WAVELMAX, SPEC_BIN in nm, SNR, FIB_ST = 2), PROVTAB (SPECUID, ESOFILENAME). The spectra must be
  uniformly sampled and of one length: pixel i lies at WAVELMIN + i * SPEC_BIN.

Spectrum meta used: star_id (OBJ_UID), object (OBJ_NME; default star_id), ra, dec, mjd, snr (default: the median
flux/sigma of the good pixels), resolving_power, specsys, contnorm, specuid (default: 1, 2, ... in order).
Both write atomically (gridkit.files.atomic_output) and refuse an existing file unless overwrite=True.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, StoreError
from ..files import atomic_output
from ..io.fourmost import ARM_CODES
from ..io.spectrum import Spectrum, check_specsys

_CODE = {v: k for k, v in ARM_CODES.items()}
_SINGLE = re.compile(r"_[HL]([BGRJ])1\.fits$", re.IGNORECASE)
_MULTI = re.compile(r"_[HL]([BGRJ])\d\d(?=[._])", re.IGNORECASE)


def _check_arm(path: Path, arm: str, pattern, example: str) -> None:
    if arm not in _CODE:
        raise ConfigError(f"arm must be one of {sorted(_CODE)}, got {arm!r}")
    m = pattern.search(path.name)
    if m is None or m.group(1).upper() != _CODE[arm]:
        raise ConfigError(f"{path}: a 4MOST L1 file of the {arm} arm is named {example.format(code=_CODE[arm])}; the "
                          "readers take the arm from that code")


def _prepare(path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreError(f"{path} exists; pass overwrite=True to replace it")
    return path


def _snr(sp: Spectrum) -> float:
    if sp.meta.get("snr") is not None:
        return float(sp.meta["snr"])
    g = sp.good
    return float(np.median(sp.flux[g] / sp.sigma[g]))


def _uid(value):
    """An integer id as int (FITS K column), anything else as text."""
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def write_4most_l1(path, spectrum: Spectrum, arm: str, *, overwrite: bool = False) -> Path:
    """One 4MOST L1 spectrum file (see the module docstring)."""
    from astropy.io import fits

    path = _prepare(path, overwrite)
    _check_arm(path, arm, _SINGLE, "..._L{code}1.fits")
    sp, m = spectrum, spectrum.meta
    if sp.sigma is None:
        raise ConfigError(f"write_4most_l1({path}): a 4MOST L1 spectrum needs its error (ERR_FLUX); spectrum.sigma is None")
    wl_nm = sp.wavelength / 10.0
    primary = fits.PrimaryHDU()
    h = primary.header
    h["ORIGIN"] = "ESO"
    h["TELESCOP"] = "ESO-VISTA"
    h["INSTRUME"] = "4MOST"
    h["PRODCATG"] = "SCIENCE.SPECTRUM"
    uid = m.get("star_id")
    obj = m.get("object") or uid
    if obj is not None:
        h["OBJECT"] = str(obj)
    for key, name in (("ra", "RA"), ("dec", "DEC"), ("mjd", "MJD-OBS"), ("resolving_power", "SPEC_RES")):
        if m.get(key) is not None:
            h[name] = float(m[key])
    h["SPECUID"] = _uid(m.get("specuid") or 1)
    specsys = check_specsys(m.get("specsys"), str(path))
    if specsys is not None:
        h["SPECSYS"] = specsys
    h["SNR"] = _snr(sp)
    h["WAVELMIN"] = (float(wl_nm[0]), "[nm] Minimum wavelength")
    h["WAVELMAX"] = (float(wl_nm[-1]), "[nm] Maximum wavelength")
    h["SPEC_BIN"] = (float(np.median(np.diff(wl_nm))), "[nm] Wavelength bin size")
    if m.get("contnorm") is not None:
        h["CONTNORM"] = bool(m["contnorm"])
    n = sp.wavelength.size
    unit = m.get("flux_unit") or ""
    qual = (~sp.good).astype(np.int32)
    cols = [
        fits.Column(name="WAVE", format=f"{n}D", unit="Angstrom", array=sp.wavelength[None, :]),
        fits.Column(name="FLUX", format=f"{n}E", unit=unit, array=sp.flux[None, :]),
        fits.Column(name="ERR_FLUX", format=f"{n}E", unit=unit, array=sp.sigma[None, :]),
        fits.Column(name="QUAL", format=f"{n}J", null=-1, array=qual[None, :]),
        fits.Column(name="FLUX_NOSS", format=f"{n}E", unit=unit, array=sp.flux[None, :]),
        fits.Column(name="ERR_FLUX_NOSS", format=f"{n}E", unit=unit, array=sp.sigma[None, :]),
    ]
    table = fits.BinTableHDU.from_columns(cols, name="PHASE3SPECTRUM")
    table.header["TUCD1"] = "em.wl;obs.atmos" if sp.medium == "air" else "em.wl"
    if obj is not None:
        table.header["OBJ_NME"] = str(obj)
    if uid is not None:
        table.header["OBJ_UID"] = _uid(uid)
    table.header["SNR"] = h["SNR"]
    with atomic_output(path) as tmp:
        fits.HDUList([primary, table]).writeto(tmp, checksum=True)
    return path


def _uniform(sp: Spectrum, i: int, path) -> tuple[float, float]:
    """(WAVELMIN, SPEC_BIN) in nm of a uniformly sampled spectrum; ConfigError otherwise."""
    wl = sp.wavelength
    step = (wl[-1] - wl[0]) / (wl.size - 1)
    if not np.allclose(np.diff(wl), step, rtol=1e-6, atol=0):
        raise ConfigError(f"write_4most_l1_multi({path}): spectrum {i} is not uniformly sampled; a multi-spectrum file places "
                          "pixel i at WAVELMIN + i * SPEC_BIN")
    return float(wl[0]) / 10.0, float(step) / 10.0


def write_4most_l1_multi(path, spectra: Sequence[Spectrum], arm: str, *, error: str = "ERR_FLUX", overwrite: bool = False) -> Path:
    """One 4MOST L1 multi-spectrum file of one arm (see the module docstring); `error`: 'ERR_FLUX' (1 sigma) or
    'FLUX_IVAR' (inverse variance, 0 where sigma is not finite)."""
    from astropy.io import fits

    path = _prepare(path, overwrite)
    _check_arm(path, arm, _MULTI, "..._H{code}11....fits")
    spectra = list(spectra)
    if not spectra:
        raise ConfigError(f"write_4most_l1_multi({path}): no spectra")
    if error not in ("ERR_FLUX", "FLUX_IVAR"):
        raise ConfigError(f"error must be 'ERR_FLUX' or 'FLUX_IVAR', got {error!r}")
    n = spectra[0].wavelength.size
    for i, sp in enumerate(spectra):
        if sp.wavelength.size != n:
            raise ConfigError(f"write_4most_l1_multi({path}): spectrum {i} has {sp.wavelength.size} pixels, spectrum 0 {n}: "
                              "SPECTAB holds arrays of one length")
        if sp.sigma is None:
            raise ConfigError(f"write_4most_l1_multi({path}): spectrum {i} has no sigma (ERR_FLUX)")
        if sp.medium != spectra[0].medium:
            raise ConfigError(f"write_4most_l1_multi({path}): spectrum {i} is in {sp.medium}, spectrum 0 in {spectra[0].medium}")
    grids = [_uniform(sp, i, path) for i, sp in enumerate(spectra)]
    specuids = [_uid(sp.meta.get("specuid") or i + 1) for i, sp in enumerate(spectra)]
    if len(set(map(str, specuids))) != len(specuids):
        raise ConfigError(f"write_4most_l1_multi({path}): SPECUIDs repeat: {specuids}")
    star_ids = [_uid(sp.meta.get("star_id") or f"obj{i}") for i, sp in enumerate(spectra)]
    medium = spectra[0].medium

    def num(key):
        return np.array([np.nan if sp.meta.get(key) is None else float(sp.meta[key]) for sp in spectra])

    mjd = num("mjd")
    ob = fits.BinTableHDU.from_columns([fits.Column(name="OBID", format="K", array=np.array([1])),
                                        fits.Column(name="MJD-OBS", format="D", unit="d",
                                                    array=np.array([np.nanmin(mjd) if np.isfinite(mjd).any() else np.nan]))],
                                       name="OBMETATAB")
    flux = np.stack([sp.flux for sp in spectra])
    sigma = np.stack([sp.sigma for sp in spectra])
    if error == "FLUX_IVAR":
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.where(np.isfinite(sigma) & (sigma > 0), 1.0 / sigma**2, 0.0)
    else:
        err = sigma
    unit = spectra[0].meta.get("flux_unit") or ""
    ivar_unit = f"({unit})**-2" if unit and error == "FLUX_IVAR" else ("" if error == "FLUX_IVAR" else unit)
    spectab = fits.BinTableHDU.from_columns([
        fits.Column(name="FLUX", format=f"{n}E", unit=unit, array=flux),
        fits.Column(name=error, format=f"{n}E", unit=ivar_unit, array=err),
        fits.Column(name="QUAL", format=f"{n}J", null=-1, array=np.stack([(~sp.good).astype(np.int32) for sp in spectra])),
        fits.Column(name="SPECUID", format="K" if all(isinstance(u, int) for u in specuids) else "32A", array=np.array(specuids)),
    ], name="SPECTAB")
    sh = spectab.header
    sh["1CTYP1"] = ("AWAV" if medium == "air" else "WAVE", "wavelength axis of FLUX")
    if len(set(grids)) == 1:
        sh["1CUNI1"] = "nm"
        sh["1CRPX1"] = 1.0
        sh["1CRVL1"] = grids[0][0]
        sh["1CDLT1"] = grids[0][1]
    specsys = {check_specsys(sp.meta.get("specsys"), str(path)) for sp in spectra}
    if len(specsys) == 1 and None not in specsys:
        sh["SPECSYS"] = specsys.pop()
    contnorm = {sp.meta.get("contnorm") for sp in spectra}
    if len(contnorm) == 1 and None not in contnorm:
        sh["CONTNORM"] = bool(contnorm.pop())
    text_uids = not all(isinstance(u, int) for u in star_ids)
    names = [str(sp.meta.get("object") or sid) for sp, sid in zip(spectra, star_ids)]
    lo = np.array([g[0] for g in grids])
    step = np.array([g[1] for g in grids])
    fib = fits.BinTableHDU.from_columns([
        fits.Column(name="SPECUID", format=spectab.columns["SPECUID"].format, array=np.array(specuids)),
        fits.Column(name="OBJ_UID", format="64A" if text_uids else "K", array=np.array([str(s) if text_uids else s for s in star_ids])),
        fits.Column(name="OBJ_NME", format="64A", array=np.array(names)),
        fits.Column(name="OBJ_RA", format="D", unit="deg", array=num("ra")),
        fits.Column(name="OBJ_DEC", format="D", unit="deg", array=num("dec")),
        fits.Column(name="WAVELMIN", format="D", unit="nm", array=lo),
        fits.Column(name="WAVELMAX", format="D", unit="nm", array=lo + (n - 1) * step),
        fits.Column(name="SPEC_BIN", format="D", unit="nm", array=step),
        fits.Column(name="SNR", format="E", array=np.array([_snr(sp) for sp in spectra])),
        fits.Column(name="SPEC_RES", format="E", array=num("resolving_power")),
        fits.Column(name="FIB_ST", format="I", array=np.full(len(spectra), 2, dtype=np.int16)),
    ], name="FIBMETATAB")
    prov = fits.BinTableHDU.from_columns([
        fits.Column(name="SPECUID", format=spectab.columns["SPECUID"].format, array=np.array(specuids)),
        fits.Column(name="ESOFILENAME", format="80A", array=np.array([f"{path.stem}_{u}.fits" for u in specuids])),
    ], name="PROVTAB")
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "ESO"
    primary.header["TELESCOP"] = "ESO-VISTA"
    primary.header["INSTRUME"] = "4MOST"
    with atomic_output(path) as tmp:
        fits.HDUList([primary, ob, spectab, fib, prov]).writeto(tmp, checksum=True)
    return path


__all__ = ["write_4most_l1", "write_4most_l1_multi"]
