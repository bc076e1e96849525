"""ESO Science Data Products (SDP, Phase 3) 1-D spectra: reader (format 'eso-sdp') and writer.

The layout (ESO Science Data Products Standard, ESO-044286): a primary HDU without data holding the product's
keywords (PRODCATG = 'SCIENCE.SPECTRUM', SPECSYS, SPEC_RES, SPEC_BIN, SNR, WAVELMIN/WAVELMAX in nm, CONTNORM,
MJD-OBS, RA/DEC, OBJECT, ...) and one binary table (EXTNAME 'SPECTRUM'; the Gaia-ESO release writes
'PHASE3SPECTRUM') with one row whose cells hold the arrays WAVE, FLUX, ERR and optionally QUAL (0 = good),
or FLUX_REDUCED with ERR_REDUCED, and CONTINUUM.

Read: WAVE's unit from its TUNIT through astropy.units (nm and Angstrom; none: Angstrom); air or vacuum from its
TUCD ('em.wl;obs.atmos' air, 'em.wl' vacuum; none: air, the medium of ESO's optical pipelines, flagged
meta['medium_assumed']); the frame SPECSYS must be one of the FITS standard's (else GridError; absent: None).
Refused, naming the file: no WAVE, no FLUX/FLUX_REDUCED, no ERR/ERR_REDUCED next to it, arrays of different
lengths, wavelengths that contradict WAVELMIN/WAVELMAX (nm labelled as Angstrom or the reverse; without those
keywords: outside 0.1-30 micron), and everything `Spectrum` refuses. A table with several rows gives one
spectrum per row.

`write_eso_sdp(path, spectrum)` writes that layout (WAVE in Angstrom, float64; QUAL 0 where `good`, 1 elsewhere),
atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ConfigError, GridError, StoreError
from ..files import atomic_output
from .fitsfile import cells, flag, hdu_infos, keyword, number, open_fits
from .spectrum import Spectrum, base_meta, check_specsys, check_wavelength_scale, medium_from_ucd, selection, to_angstrom

PRODCATG = "SCIENCE.SPECTRUM"
EXTNAMES = ("SPECTRUM", "PHASE3SPECTRUM")
#: (flux column, its 1-sigma error column): the error comes from the same namespace as the flux
FLUX_PAIRS = (("FLUX", "ERR"), ("FLUX_REDUCED", "ERR_REDUCED"))
#: what ESO's spectrographs cover, Angstrom (UV to mid-infrared): the unit check without WAVELMIN/WAVELMAX
WINDOW = (1_000.0, 300_000.0)


def identify_eso_sdp(path) -> bool:
    """PRODCATG 'SCIENCE.SPECTRUM...' in the primary header, or a binary table named SPECTRUM/PHASE3SPECTRUM
    with a WAVE column."""
    infos = hdu_infos(path)
    if infos is None:
        return False
    if str(infos[0].header.get("PRODCATG", "")).strip().upper().startswith(PRODCATG):
        return True
    return any(i.kind == "bintable" and i.name in EXTNAMES and "WAVE" in i.columns for i in infos)


def _spectrum_hdu(infos, path):
    tables = [i for i in infos if i.kind == "bintable"]
    for pick in ([i for i in tables if i.name in EXTNAMES], [i for i in tables if "WAVE" in i.columns], tables):
        if pick:
            return pick[0]
    raise GridError(f"{path} holds no binary table: an ESO SDP spectrum is a primary HDU without data and a BINTABLE "
                    "(EXTNAME SPECTRUM) with the arrays WAVE, FLUX, ERR")


def _columns(info, path) -> dict:
    """{'wave', 'flux', 'err', 'qual', 'continuum'}: the column names (upper case) to read; GridError for missing ones."""
    where = f"{path} HDU {info.index} ({info.name or 'no EXTNAME'})"
    cols = set(info.columns)
    have = ", ".join(info.columns) or "none"
    if "WAVE" not in cols:
        raise GridError(f"{where}: no WAVE column; an ESO SDP spectrum needs WAVE, FLUX and ERR (columns here: {have})")
    pair = next(((f, e) for f, e in FLUX_PAIRS if f in cols), None)
    if pair is None:
        raise GridError(f"{where}: no FLUX (or FLUX_REDUCED) column; an ESO SDP spectrum needs WAVE, FLUX and ERR (columns here: {have})")
    if pair[1] not in cols:
        raise GridError(f"{where}: column {pair[0]} has no error column {pair[1]} (the 1-sigma error an ESO SDP spectrum "
                        f"must have; columns here: {have})")
    return {"wave": "WAVE", "flux": pair[0], "err": pair[1], "qual": "QUAL" if "QUAL" in cols else None,
            "continuum": "CONTINUUM" if "CONTINUUM" in cols else None}


def _meta(info, primary, path: Path, row: int, index: int) -> dict:
    """The meta of the spectrum in `row` of table `info`, from the headers only (shared by read and list)."""
    headers = (info.header, primary)
    loc = f"{path} HDU {info.index}"
    obj = keyword(headers, "OBJECT")
    obj = None if obj is None else str(obj).strip()
    unit = info.col_keyword("WAVE", "TUNIT")
    medium = medium_from_ucd(info.col_keyword("WAVE", "TUCD"), f"{loc} column WAVE (TUCD)")
    wmin, wmax = number(keyword(headers, "WAVELMIN")), number(keyword(headers, "WAVELMAX"))
    bin_nm = number(keyword(headers, "SPEC_BIN"))
    return base_meta(
        format="eso-sdp", source=str(path), hdu=info.index, row=row, index=index,
        star_id=obj or path.name.split(".")[0], object=obj,
        ra=number(keyword(headers, "RA")), dec=number(keyword(headers, "DEC")), mjd=number(keyword(headers, "MJD-OBS")),
        specsys=check_specsys(keyword(headers, "SPECSYS"), loc), resolving_power=number(keyword(headers, "SPEC_RES")),
        snr=number(keyword(headers, "SNR")), contnorm=flag(keyword(headers, "CONTNORM")),
        flux_unit=str(info.col_keyword(_flux_column(info), "TUNIT") or "").strip() or None,
        medium=medium or "air", medium_assumed=medium is None, wave_unit=str(unit).strip() if unit else None,
        prodcatg=keyword(headers, "PRODCATG"), instrument=keyword(headers, "INSTRUME"),
        n_pixels=info.repeat("WAVE"),
        wavelength_min=None if wmin is None else 10.0 * wmin, wavelength_max=None if wmax is None else 10.0 * wmax,
        spec_bin=None if bin_nm is None else 10.0 * bin_nm,
    )


def _flux_column(info) -> str:
    return next((f for f, _ in FLUX_PAIRS if f in info.columns), "FLUX")


def read_eso_sdp(path, which=None) -> list[Spectrum]:
    """The spectra (one per table row; one for a standard SDP file) of an ESO SDP file."""
    path = Path(path)
    infos = hdu_infos(path, required=True)
    info = _spectrum_hdu(infos, path)
    names = _columns(info, path)
    rows = selection(which, info.nrows, path)
    out = []
    with open_fits(path) as hdul:
        hdu = hdul[info.index]
        actual = info.names()
        where = f"{path} HDU {info.index}"
        read = {key: cells(hdu, actual[col], where, rows) for key, col in names.items() if col is not None}
    primary = infos[0].header
    for j, row in enumerate(rows):
        meta = _meta(info, primary, path, row, row)
        loc = f"{where} row {row}"
        lengths = {names[k]: read[k][j].size for k in read}
        if len(set(lengths.values())) > 1:
            raise GridError(f"{loc}: the arrays must have one value per pixel, but " + ", ".join(f"{c} has {n}" for c, n in lengths.items()))
        unit = meta.get("wave_unit")
        wl = to_angstrom(read["wave"][j], unit, f"{loc} column WAVE")
        check_wavelength_scale(wl, loc, unit or "Angstrom (no TUNIT)", wavelmin_nm=_nm(meta["wavelength_min"]),
                               wavelmax_nm=_nm(meta["wavelength_max"]), window=WINDOW, instrument="an ESO spectrograph")
        good = None if "qual" not in read else read["qual"][j] == 0
        if "continuum" in read:
            meta["continuum"] = read["continuum"][j]
        out.append(Spectrum(wl, meta.pop("medium"), read["flux"][j], read["err"][j], good, meta))
    return out


def _nm(angstrom):
    return None if angstrom is None else angstrom / 10.0


def list_eso_sdp(path) -> list[dict]:
    """The meta of each spectrum (table row) from the headers alone."""
    path = Path(path)
    infos = hdu_infos(path, required=True)
    info = _spectrum_hdu(infos, path)
    _columns(info, path)
    return [_meta(info, infos[0].header, path, row, row) for row in range(info.nrows)]


#: primary keywords the writer owns (extra_header may not set them)
_OWN = ("PRODCATG", "SPECSYS", "SPEC_RES", "SPEC_BIN", "SNR", "WAVELMIN", "WAVELMAX", "CONTNORM", "MJD-OBS", "RA", "DEC",
        "OBJECT", "VOCLASS", "PROCSOFT", "ORIGIN", "NAXIS", "EXTEND", "SIMPLE", "BITPIX", "SPEC_VAL", "SPEC_BW", "FLUXCAL")


def write_eso_sdp(path, spectrum: Spectrum, *, overwrite: bool = False, extra_header: Mapping | None = None) -> Path:
    """Write `spectrum` as an ESO SDP 1-D spectrum (see the module docstring), atomically.

    Needs spectrum.sigma (the ERR array), meta['specsys'] (SPECSYS, e.g. 'SOURCE' for a rest-frame synthetic
    spectrum) and meta['contnorm'] (CONTNORM, a bool); writes RA/DEC, MJD-OBS, OBJECT (meta 'object' or
    'star_id'), SPEC_RES and SNR when meta has them (SNR: otherwise the median flux/sigma of the good pixels).
    `extra_header`: further primary keywords (not the writer's own). StoreError when `path` exists and not
    `overwrite`; ConfigError for a spectrum that cannot be written as SDP."""
    from astropy.io import fits

    from .. import __version__

    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreError(f"{path} exists; pass overwrite=True to replace it")
    m = spectrum.meta
    if spectrum.sigma is None:
        raise ConfigError(f"write_eso_sdp({path}): an ESO SDP spectrum needs its error array (ERR); spectrum.sigma is None")
    specsys = check_specsys(m.get("specsys"), f"write_eso_sdp({path})")
    if specsys is None:
        raise ConfigError(f"write_eso_sdp({path}): set spectrum.meta['specsys'] (SPECSYS, e.g. 'SOURCE' for a rest-frame "
                          "model, 'BARYCENT' for a barycentric observation)")
    if not isinstance(m.get("contnorm"), (bool, np.bool_)):
        raise ConfigError(f"write_eso_sdp({path}): set spectrum.meta['contnorm'] to True or False (CONTNORM), got {m.get('contnorm')!r}")
    extra = dict(extra_header or {})
    clash = sorted(k for k in extra if str(k).upper() in _OWN)
    if clash:
        raise ConfigError(f"write_eso_sdp({path}): extra_header may not set the writer's own keyword(s) {clash}")
    wl = spectrum.wavelength
    wl_nm = wl / 10.0
    snr = m.get("snr")
    if snr is None:
        g = spectrum.good
        snr = float(np.median(spectrum.flux[g] / spectrum.sigma[g]))
    primary = fits.PrimaryHDU()
    h = primary.header
    h["PRODCATG"] = (PRODCATG, "Data product category")
    h["SPECSYS"] = (specsys, "Reference frame for spectral coordinates")
    h["WAVELMIN"] = (float(wl_nm[0]), "[nm] Minimum wavelength")
    h["WAVELMAX"] = (float(wl_nm[-1]), "[nm] Maximum wavelength")
    h["SPEC_BIN"] = (float(np.median(np.diff(wl_nm))), "[nm] Wavelength bin size")
    h["SPEC_VAL"] = (float(0.5 * (wl_nm[0] + wl_nm[-1])), "[nm] Mean wavelength")
    h["SPEC_BW"] = (float(wl_nm[-1] - wl_nm[0]), "[nm] Bandpass width")
    if m.get("resolving_power") is not None:
        h["SPEC_RES"] = (float(m["resolving_power"]), "Spectral resolving power")
    h["SNR"] = (float(snr), "Median signal to noise ratio per pixel")
    h["CONTNORM"] = (bool(m["contnorm"]), "True if normalised to the continuum")
    h["FLUXCAL"] = ("UNCALIBRATED", "Type of flux calibration")
    for key, name, comment in (("mjd", "MJD-OBS", "[d] Start of observations"), ("ra", "RA", "[deg] Target position (J2000)"),
                               ("dec", "DEC", "[deg] Target position (J2000)")):
        if m.get(key) is not None:
            h[name] = (float(m[key]), comment)
    obj = m.get("object") or m.get("star_id")
    if obj is not None:
        h["OBJECT"] = (str(obj), "Target designation")
    h["VOCLASS"] = ("SPECTRUM V2.0", "VO Data Model")
    h["PROCSOFT"] = (f"gridkit {__version__}", "Software that wrote this file")
    try:
        for key, value in extra.items():
            h[key] = value
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"write_eso_sdp({path}): extra_header: {exc}") from None
    n = wl.size
    cols = [
        fits.Column(name="WAVE", format=f"{n}D", unit="Angstrom", array=wl[None, :]),
        fits.Column(name="FLUX", format=f"{n}D", unit=m.get("flux_unit") or "", array=spectrum.flux[None, :]),
        fits.Column(name="ERR", format=f"{n}D", unit=m.get("flux_unit") or "", array=spectrum.sigma[None, :]),
        fits.Column(name="QUAL", format=f"{n}J", array=(~spectrum.good).astype(np.int32)[None, :]),
    ]
    table = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    t = table.header
    for i, (utype, ucd) in enumerate((
        ("spec:Data.SpectralAxis.Value", "em.wl;obs.atmos" if spectrum.medium == "air" else "em.wl"),
        ("spec:Data.FluxAxis.Value", "phot.flux.density;em.wl;arith.ratio" if m["contnorm"] else "phot.flux.density;em.wl"),
        ("spec:Data.FluxAxis.Accuracy.StatError", "stat.error;phot.flux.density;em.wl"),
        ("spec:Data.FluxAxis.Accuracy.QualityStatus", "meta.code.qual"),
    ), start=1):
        t[f"TUTYP{i}"] = utype
        t[f"TUCD{i}"] = ucd
    t["TDMIN1"] = float(wl[0])
    t["TDMAX1"] = float(wl[-1])
    t["NELEM"] = (n, "Length of the data arrays")
    with atomic_output(path) as tmp:
        fits.HDUList([primary, table]).writeto(tmp, checksum=True)
    return path


__all__ = ["identify_eso_sdp", "read_eso_sdp", "list_eso_sdp", "write_eso_sdp", "PRODCATG", "WINDOW"]
