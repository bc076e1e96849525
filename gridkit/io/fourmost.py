"""4MOST Level-1 spectra: one spectrum per file (format '4most-l1') and one arm of many fibres per file
('4most-l1-multi').

'4most-l1' (`..._L{B,G,R,J}1.fits`: blue, green, red, joined arms): a primary HDU of keywords and a binary
table PHASE3SPECTRUM with one row: WAVE, FLUX, ERR_FLUX (or FLUX_IVAR), QUAL (0 = good), FLUX_NOSS and
ERR_FLUX_NOSS (before sky subtraction; not read). WAVE in the unit of its TUNIT (Angstrom in the L1 products).

'4most-l1-multi' (one file per arm and exposure set, e.g. `20221110_HB11_20251102.fits`): HDUs OBMETATAB (the
observation: MJD-OBS), SPECTAB (one row per spectrum: SPECUID, FLUX, ERR_FLUX or FLUX_IVAR, QUAL),
FIBMETATAB (one row per spectrum: SPECUID, OBJ_UID, OBJ_NME, OBJ_RA, OBJ_DEC, WAVELMIN, SPEC_BIN, SNR, ...)
and PROVTAB. There is no WAVE column: pixel i of a spectrum lies at WAVELMIN + i * SPEC_BIN (nm unless the
columns' TUNIT says otherwise), from its FIBMETATAB row; a file without those columns may give the FLUX column's
wavelength WCS instead (1CRVLn, 1CDLTn, 1CRPXn, 1CUNIn of the SPECTAB header), and where both are given they
must agree. SPECTAB and FIBMETATAB rows are matched by SPECUID, never by position. `list_spectra` reads
FIBMETATAB, OBMETATAB, the SPECTAB header and its SPECUID column only, never the flux arrays.

Both: air or vacuum from the UCD of WAVE (TUCDn) or the CTYPE of the multi file's wavelength axis ('AWAV' air,
'WAVE' vacuum); a file that states neither is taken as vacuum, 4MOST's stated convention for L1 wavelengths in
this project's brief (the public L1 readers we found state no medium), flagged meta['medium_assumed'] = True.
The arm from the file name code (B, G, R, J), else from the wavelengths (within one 4MOST HR arm: that arm;
across several: 'joined'). meta['star_id'] is OBJ_UID (TRG_UID), the key that joins the arms of one object.
Wavelengths outside 3000-11000 A (what 4MOST sees, with margin) are refused: nm labelled as Angstrom or the
reverse.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import GridError
from ..instruments import FOURMOST_HR
from .fitsfile import cells, column, flag, hdu_infos, keyword, number, open_fits, text_values
from .spectrum import (Spectrum, base_meta, check_specsys, check_wavelength_scale, medium_from_ucd, selection, to_angstrom)

#: what 4MOST can see, Angstrom, with margin: wavelengths outside were read in the wrong unit
WINDOW = (3_000.0, 11_000.0)
ARM_CODES = {"B": "blue", "G": "green", "R": "red", "J": "joined"}
_NAME_CODE = re.compile(r"_[HL]([BGRJ])\d{1,2}(?=[._])", re.IGNORECASE)
ERROR_COLUMNS = ("ERR_FLUX", "FLUX_IVAR")
MULTI_HDUS = ("OBMETATAB", "SPECTAB", "FIBMETATAB", "PROVTAB")


def arm_from_name(path) -> str | None:
    match = _NAME_CODE.search(Path(path).name)
    return ARM_CODES[match.group(1).upper()] if match else None


def arm_of(path, lo: float | None, hi: float | None) -> str | None:
    """The arm the file name names, else the 4MOST HR arm holding lo..hi [A] ('joined' across arms), else None."""
    arm = arm_from_name(path)
    if arm is not None or lo is None or hi is None:
        return arm
    inside = [a.name for a in FOURMOST_HR.arms if a.wl_min - 5 <= lo and hi <= a.wl_max + 5]
    if inside:
        return inside[0]
    touched = [a.name for a in FOURMOST_HR.arms if lo <= a.wl_max and hi >= a.wl_min]
    return "joined" if len(touched) > 1 else None


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


# --- one spectrum per file ------------------------------------------------------------------------------------

def identify_l1(path) -> bool:
    """A binary table with WAVE and FLUX and 4MOST's error column (ERR_FLUX or FLUX_IVAR), or named
    PHASE3SPECTRUM without ESO's ERR column."""
    infos = hdu_infos(path)
    if infos is None:
        return False
    for i in infos:
        if i.kind != "bintable" or "WAVE" not in i.columns:
            continue
        if any(c in i.columns for c in ERROR_COLUMNS) or (i.name == "PHASE3SPECTRUM" and "ERR" not in i.columns):
            return True
    return False


def _l1_hdu(infos, path):
    tables = [i for i in infos if i.kind == "bintable"]
    pick = [i for i in tables if i.name == "PHASE3SPECTRUM"] or [i for i in tables if "WAVE" in i.columns]
    if not pick:
        raise GridError(f"{path} holds no PHASE3SPECTRUM table with a WAVE column (a 4MOST L1 spectrum)")
    info = pick[0]
    where = f"{path} HDU {info.index} ({info.name or 'no EXTNAME'})"
    have = ", ".join(info.columns)
    for col in ("WAVE", "FLUX"):
        if col not in info.columns:
            raise GridError(f"{where}: no {col} column; a 4MOST L1 spectrum needs WAVE, FLUX and ERR_FLUX or FLUX_IVAR (columns here: {have})")
    if not any(c in info.columns for c in ERROR_COLUMNS):
        raise GridError(f"{where}: no ERR_FLUX or FLUX_IVAR column (the flux error a 4MOST L1 spectrum must have; columns here: {have})")
    return info


def _l1_meta(info, primary, path: Path) -> dict:
    headers = (info.header, primary)
    loc = f"{path} HDU {info.index}"
    uid = _text(keyword(headers, "OBJ_UID", "TRG_UID"))
    obj = _text(keyword(headers, "OBJ_NME", "TRG_NME", "IAU_NAME", "OBJECT"))
    unit = info.col_keyword("WAVE", "TUNIT")
    medium = medium_from_ucd(info.col_keyword("WAVE", "TUCD"), f"{loc} column WAVE (TUCD)")
    wmin, wmax = number(keyword(headers, "WAVELMIN")), number(keyword(headers, "WAVELMAX"))
    lo, hi = (None if wmin is None else 10 * wmin), (None if wmax is None else 10 * wmax)
    return base_meta(
        format="4most-l1", source=str(path), hdu=info.index, row=0, index=0,
        star_id=uid or obj or path.name.split(".")[0], object=obj, obj_uid=uid,
        specuid=_text(keyword(headers, "SPECUID")),
        ra=number(keyword(headers, "RA")), dec=number(keyword(headers, "DEC", "DECL")), mjd=number(keyword(headers, "MJD-OBS")),
        specsys=check_specsys(keyword(headers, "SPECSYS"), loc), resolving_power=number(keyword(headers, "SPEC_RES")),
        snr=number(keyword(headers, "SNR")), contnorm=flag(keyword(headers, "CONTNORM")), arm=arm_of(path, lo, hi),
        flux_unit=_text(info.col_keyword("FLUX", "TUNIT")),
        medium=medium or "vacuum", medium_assumed=medium is None, wave_unit=_text(unit),
        n_pixels=info.repeat("WAVE"), wavelength_min=lo, wavelength_max=hi,
    )


def read_l1(path, which=None) -> list[Spectrum]:
    path = Path(path)
    infos = hdu_infos(path, required=True)
    info = _l1_hdu(infos, path)
    rows = selection(which, 1, path)
    meta = _l1_meta(info, infos[0].header, path)
    err = "ERR_FLUX" if "ERR_FLUX" in info.columns else "FLUX_IVAR"
    loc = f"{path} HDU {info.index} row 0"
    with open_fits(path) as hdul:
        hdu = hdul[info.index]
        actual = info.names()
        where = f"{path} HDU {info.index}"
        got = {c: cells(hdu, actual[c], where, [0])[0] for c in ("WAVE", "FLUX", err, "QUAL") if c in actual}
    lengths = {c: v.size for c, v in got.items()}
    if len(set(lengths.values())) > 1:
        raise GridError(f"{loc}: the arrays must have one value per pixel, but " + ", ".join(f"{c} has {n}" for c, n in lengths.items()))
    wl = to_angstrom(got["WAVE"], meta["wave_unit"], f"{loc} column WAVE")
    lo, hi = meta["wavelength_min"], meta["wavelength_max"]
    check_wavelength_scale(wl, loc, meta["wave_unit"] or "Angstrom (no TUNIT)", wavelmin_nm=None if lo is None else lo / 10,
                           wavelmax_nm=None if hi is None else hi / 10, window=WINDOW, instrument="4MOST")
    if meta["arm"] is None:
        meta["arm"] = arm_of(path, float(np.nanmin(wl)), float(np.nanmax(wl)))
    sigma = _sigma(got[err], err)
    good = got["QUAL"] == 0 if "QUAL" in got else None
    medium = meta.pop("medium")
    return [Spectrum(wl, medium, got["FLUX"], sigma, good, dict(meta)) for _ in rows]


def list_l1(path) -> list[dict]:
    path = Path(path)
    infos = hdu_infos(path, required=True)
    return [_l1_meta(_l1_hdu(infos, path), infos[0].header, path)]


def _sigma(values: np.ndarray, name: str) -> np.ndarray:
    if name == "FLUX_IVAR":
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 / np.sqrt(values)
    return values


# --- many spectra per file ------------------------------------------------------------------------------------

def identify_l1_multi(path) -> bool:
    """An HDU named SPECTAB or FIBMETATAB."""
    infos = hdu_infos(path)
    return infos is not None and any(i.name in ("SPECTAB", "FIBMETATAB") for i in infos)


def _multi_hdus(infos, path) -> dict:
    found = {i.name: i for i in infos if i.name in MULTI_HDUS}
    for name in ("SPECTAB", "FIBMETATAB"):
        if name not in found:
            raise GridError(f"{path}: no {name} HDU; a 4MOST L1 multi-spectrum file has SPECTAB (the spectra) and FIBMETATAB "
                            f"(their wavelengths and objects), with OBMETATAB and PROVTAB (HDUs here: {', '.join(i.name for i in infos)})")
    spectab = found["SPECTAB"]
    have = ", ".join(spectab.columns)
    for col in ("SPECUID", "FLUX"):
        if col not in spectab.columns:
            raise GridError(f"{path} HDU {spectab.index} (SPECTAB): no {col} column (columns here: {have})")
    if not any(c in spectab.columns for c in ERROR_COLUMNS):
        raise GridError(f"{path} HDU {spectab.index} (SPECTAB): no ERR_FLUX or FLUX_IVAR column (the flux error; columns here: {have})")
    if "SPECUID" not in found["FIBMETATAB"].columns:
        raise GridError(f"{path} HDU {found['FIBMETATAB'].index} (FIBMETATAB): no SPECUID column: its rows cannot be matched to the "
                        f"spectra (columns here: {', '.join(found['FIBMETATAB'].columns)})")
    return found


def _unique(uids: list[str], what: str, path) -> None:
    seen, dup = set(), []
    for u in uids:
        if u in seen:
            dup.append(u)
        seen.add(u)
    if dup:
        raise GridError(f"{path}: {what} repeats SPECUID(s) {sorted(set(dup))[:5]}: each spectrum needs its own")


def _plan(hdul, found, path: Path) -> list[dict]:
    """Per SPECTAB row, its meta (from FIBMETATAB, OBMETATAB, headers) including the wavelength rule."""
    spectab, fibinfo = found["SPECTAB"], found["FIBMETATAB"]
    st_hdu, fib_hdu = hdul[spectab.index], hdul[fibinfo.index]
    st_cols, fib_cols = spectab.names(), fibinfo.names()
    spec_uids = text_values(st_hdu, st_cols["SPECUID"])
    fib_uids = text_values(fib_hdu, fib_cols["SPECUID"])
    _unique(spec_uids, "SPECTAB", path)
    _unique(fib_uids, "FIBMETATAB", path)
    spec_set, fib_set = set(spec_uids), set(fib_uids)
    orphans = [(r, u) for r, u in enumerate(fib_uids) if u not in spec_set]
    if orphans:
        raise GridError(f"{path}: {len(orphans)} FIBMETATAB row(s) name a SPECUID that SPECTAB does not hold, first row "
                        f"{orphans[0][0]} (SPECUID {orphans[0][1]}): the file is incomplete or its tables do not belong together")
    unknown = [(r, u) for r, u in enumerate(spec_uids) if u not in fib_set]
    if unknown:
        raise GridError(f"{path}: {len(unknown)} SPECTAB row(s) have no FIBMETATAB row, first row {unknown[0][0]} (SPECUID "
                        f"{unknown[0][1]}): their wavelengths and objects are unknown")
    fib_row = {u: r for r, u in enumerate(fib_uids)}
    where_fib = f"{path} HDU {fibinfo.index} (FIBMETATAB)"

    def fib_column(*names, text=False):
        name = next((fib_cols[n] for n in names if n in fib_cols), None)
        if name is None:
            return None
        return text_values(fib_hdu, name) if text else column(fib_hdu, name, where_fib)

    wavelmin, spec_bin = fib_column("WAVELMIN"), fib_column("SPEC_BIN")
    unit = None
    if wavelmin is not None and spec_bin is not None:
        units = {str(fibinfo.col_keyword(c, "TUNIT") or "").strip() for c in ("WAVELMIN", "SPEC_BIN")}
        if len(units) > 1:
            raise GridError(f"{where_fib}: WAVELMIN and SPEC_BIN are in different units {sorted(units)}")
        unit = units.pop() or "nm"
    wcs = _column_wcs(spectab.header, st_cols["FLUX"], spectab.col_number("FLUX"), path, spectab.index)
    if wavelmin is None or spec_bin is None:
        if wcs is None or wcs[0] is None:
            missing = [c for c, v in (("WAVELMIN", wavelmin), ("SPEC_BIN", spec_bin)) if v is None]
            raise GridError(f"{where_fib}: no {' and no '.join(missing)} column, and SPECTAB gives FLUX no wavelength WCS "
                            "(1CRVLn, 1CDLTn): the pixels of the spectra cannot be placed (wavelength_i = WAVELMIN + i * SPEC_BIN)")
        wavelmin, spec_bin, unit = np.full(len(fib_uids), wcs[0]), np.full(len(fib_uids), wcs[1]), wcs[2]
    medium = wcs[3] if wcs is not None else None
    uid, name = fib_column("OBJ_UID", "TRG_UID", text=True), fib_column("OBJ_NME", "TRG_NME", "IAU_NAME", "OBJECT", text=True)
    ra, dec = fib_column("OBJ_RA", "RA"), fib_column("OBJ_DEC", "DEC", "DECL")
    snr, res, fib_st = fib_column("SNR"), fib_column("SPEC_RES"), fib_column("FIB_ST")
    mjd_col = fib_column("MJD-OBS", "MJD_OBS")
    mjd = None
    if "OBMETATAB" in found:
        ob = hdul[found["OBMETATAB"].index]
        ob_cols = found["OBMETATAB"].names()
        key = next((ob_cols[k] for k in ("MJD-OBS", "MJD_OBS") if k in ob_cols), None)
        if key is not None:
            values = column(ob, key, f"{path} HDU {found['OBMETATAB'].index} (OBMETATAB)")
            mjd = float(np.nanmin(values)) if np.isfinite(values).any() else None
    prov = {}
    if "PROVTAB" in found:
        pv = hdul[found["PROVTAB"].index]
        pv_cols = found["PROVTAB"].names()
        if "SPECUID" in pv_cols and "ESOFILENAME" in pv_cols:
            prov = dict(zip(text_values(pv, pv_cols["SPECUID"]), text_values(pv, pv_cols["ESOFILENAME"])))
    primary = hdul[0].header
    specsys = check_specsys(keyword((spectab.header, primary), "SPECSYS"), f"{path} HDU {spectab.index}")
    n_pix = spectab.repeat("FLUX")
    out = []
    for row, u in enumerate(spec_uids):
        f = fib_row[u]
        lo_native, step_native = float(wavelmin[f]), float(spec_bin[f])
        loc = f"{path} HDU {spectab.index} row {row} (SPECUID {u})"
        if not (np.isfinite(lo_native) and np.isfinite(step_native) and step_native > 0 and lo_native > 0):
            raise GridError(f"{loc}: WAVELMIN {lo_native} and SPEC_BIN {step_native} must be finite and > 0")
        if wcs is not None and wcs[0] is not None:
            _check_agree(loc, lo_native, step_native, unit, wcs)
        lo = float(to_angstrom(lo_native, unit, f"{where_fib} WAVELMIN"))
        hi = None if n_pix is None else float(to_angstrom(lo_native + (n_pix - 1) * step_native, unit, f"{where_fib} SPEC_BIN"))
        oid = uid[f] if uid is not None and uid[f] else None
        obj = name[f] if name is not None and name[f] else None
        out.append(base_meta(
            format="4most-l1-multi", source=str(path), hdu=spectab.index, row=row, index=row, specuid=u, obj_uid=oid,
            star_id=oid or obj or u, object=obj, ra=_num(ra, f), dec=_num(dec, f), mjd=_num(mjd_col, f) if mjd_col is not None else mjd,
            snr=_num(snr, f), resolving_power=_num(res, f) if res is not None else number(keyword((spectab.header, primary), "SPEC_RES")),
            specsys=specsys, contnorm=flag(keyword((spectab.header, primary), "CONTNORM")), arm=arm_of(path, lo, hi),
            flux_unit=_text(spectab.col_keyword("FLUX", "TUNIT")), fib_st=None if _num(fib_st, f) is None else int(fib_st[f]),
            esofilename=prov.get(u), medium=medium or "vacuum", medium_assumed=medium is None, n_pixels=n_pix,
            wavelength_min=lo, wavelength_max=hi, wave_unit=unit, wavelmin_native=lo_native, spec_bin_native=step_native,
        ))
    return out


def _num(values, i):
    return None if values is None else number(values[i])


def _column_wcs(header, name: str, n: int, path, k):
    """(CRVAL at pixel 0 or None, CDELT or None, unit or None, medium or None) of the wavelength WCS of column n
    of a table (keywords 1CRVLn, 1CDLTn, 1CRPXn, 1CUNIn, 1CTYPn), or None when it has none of them."""
    crval, cdelt = header.get(f"1CRVL{n}"), header.get(f"1CDLT{n}")
    ctype = str(header.get(f"1CTYP{n}", "")).strip().upper()
    medium = "air" if ctype.startswith("AWAV") else "vacuum" if ctype.startswith("WAVE") else None
    if crval is None or cdelt is None:
        return None if medium is None else (None, None, None, medium)
    unit = header.get(f"1CUNI{n}")
    if not unit:
        raise GridError(f"{path} HDU {k}: the wavelength WCS of column {name} has no unit (1CUNI{n})")
    crpix = float(header.get(f"1CRPX{n}", 1.0))
    return float(crval) + (1.0 - crpix) * float(cdelt), float(cdelt), str(unit).strip(), medium


def _check_agree(loc, lo, step, unit, wcs) -> None:
    lo_w = float(to_angstrom(wcs[0], wcs[2], loc))
    step_w = float(to_angstrom(wcs[1], wcs[2], loc))
    lo_f, step_f = float(to_angstrom(lo, unit, loc)), float(to_angstrom(step, unit, loc))
    if abs(lo_w - lo_f) > 0.5 * step_f or abs(step_w - step_f) > 1e-6 * step_f:
        raise GridError(f"{loc}: FIBMETATAB WAVELMIN/SPEC_BIN ({lo_f:.6f} A + i * {step_f:.6g} A) disagree with the SPECTAB wavelength "
                        f"WCS ({lo_w:.6f} A + i * {step_w:.6g} A)")


def read_l1_multi(path, which=None) -> list[Spectrum]:
    """The spectra of the SPECTAB rows `which` (all by default); only those rows' arrays are read."""
    path = Path(path)
    infos = hdu_infos(path, required=True)
    found = _multi_hdus(infos, path)
    spectab = found["SPECTAB"]
    rows = selection(which, spectab.nrows, path)
    err = "ERR_FLUX" if "ERR_FLUX" in spectab.columns else "FLUX_IVAR"
    out = []
    with open_fits(path) as hdul:
        plan = _plan(hdul, found, path)
        hdu = hdul[spectab.index]
        actual = spectab.names()
        where = f"{path} HDU {spectab.index}"
        got = {c: cells(hdu, actual[c], where, rows) for c in ("FLUX", err, "QUAL") if c in actual}
    for j, row in enumerate(rows):
        meta = dict(plan[row])
        loc = f"{where} row {row} (SPECUID {meta['specuid']})"
        lengths = {c: v[j].size for c, v in got.items()}
        if len(set(lengths.values())) > 1:
            raise GridError(f"{loc}: the arrays must have one value per pixel, but " + ", ".join(f"{c} has {n}" for c, n in lengths.items()))
        n = got["FLUX"][j].size
        native = meta.pop("wavelmin_native") + np.arange(n) * meta.pop("spec_bin_native")
        wl = to_angstrom(native, meta["wave_unit"], loc)
        check_wavelength_scale(wl, loc, f"{meta['wave_unit']} (WAVELMIN, SPEC_BIN)", window=WINDOW, instrument="4MOST")
        good = got["QUAL"][j] == 0 if "QUAL" in got else None
        out.append(Spectrum(wl, meta.pop("medium"), got["FLUX"][j], _sigma(got[err][j], err), good, meta))
    return out


def list_l1_multi(path) -> list[dict]:
    """The meta of every SPECTAB row without reading the flux arrays."""
    path = Path(path)
    found = _multi_hdus(hdu_infos(path, required=True), path)
    with open_fits(path) as hdul:
        plan = _plan(hdul, found, path)
    for meta in plan:
        meta.pop("wavelmin_native"), meta.pop("spec_bin_native")
    return plan


__all__ = ["identify_l1", "read_l1", "list_l1", "identify_l1_multi", "read_l1_multi", "list_l1_multi", "arm_from_name", "arm_of",
           "ARM_CODES", "WINDOW"]
