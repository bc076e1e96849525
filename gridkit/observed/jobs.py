"""`fourmostify_store`: observed spectrum files to a survey store through the restartable writer."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from .. import instruments as _instruments
from .. import store as _store
from ..errors import ConfigError, GridError, StoreError
from ..files import check_output, sha256_file
from ..kernels import noise
from ..schema import WAVELENGTH, wavelength_attrs
from . import pipeline as _fm
from .prepare import PrepareOptions, prepare_star
from .spectrum import spectrum_dataset


#: formats read as they are (repeated wavelengths of overlapping echelle orders merged here, NaN kept as missing)
RAW_FORMATS = ("text", "fits", "turbospectrum")
#: formats whose spectra are joined into stars by their object id (arms in separate files or rows)
OBJECT_FORMATS = ("4most-l1", "4most-l1-multi")


def _read_raw(path, fmt: str):
    """A one-spectrum file of a generic format as a Spectrum, its repeated wavelengths merged into their mean
    (NaN-aware) and counted in meta['n_duplicates']."""
    from .. import io as _io
    from ..io.spectrum import Spectrum

    wl, flux, meta = _io.READERS[fmt](path)
    sigma = meta.pop("sigma", None)
    ds = spectrum_dataset(wl, flux, name=str(path))  # checks and merges repeated wavelengths
    n_dup = int(ds.attrs["n_duplicate_wavelengths"])
    if n_dup and sigma is not None:  # errors of merged samples: not propagated; S/N from the flux itself (DER_SNR)
        sigma = None
    medium = meta.get("medium", "air")
    keep = {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return Spectrum(ds.wavelength.values, medium, ds.flux.values[0].astype(np.float64), sigma,
                    meta={**keep, "source": str(path), "format": fmt, "n_duplicates": n_dup,
                          "star_id": Path(path).name.split(".")[0]})


def read_star(refs: Sequence[tuple[str, int]]) -> list:
    """The spectra (gridkit.io Spectrum) of one star: refs are (file, index of the spectrum in the file)."""
    from ..io import registry

    out = []
    for path, index in refs:
        fmt = registry.identify(path)
        out.append(_read_raw(path, fmt) if fmt in RAW_FORMATS else registry.read_spectra(path, fmt, which=[index])[0])
    return out


@dataclass
class Plan:
    """The stars of a set of files: (star id, [(file, index)]) in a stable order, and the files that failed."""

    stars: list[tuple[str, list[tuple[str, int]]]]
    failures: list[tuple[str, str]]
    #: per star, what the files state of it: object name, SPECSYS, wavelength medium
    info: dict[str, dict[str, str]]

    @property
    def files(self) -> list[str]:
        return sorted({p for _, refs in self.stars for p, _ in refs})


def plan(paths: Sequence, star_ids: Sequence[str] | None = None, *, skip_bad_files: bool = False, check=None) -> Plan:
    """Which spectra of `paths` make which star. Every file is read once and checked (`check(spectra)` on each
    star's spectra too, when given): a file that cannot be read is named with its problem, and either refused
    (GridError) or, with `skip_bad_files`, left out and reported in `Plan.failures`. Spectra of the 4MOST L1 formats
    are joined by their object id (arms in separate files or rows); any other file is one star named after the
    file (or `star_ids`, one per file)."""
    from ..io import registry

    if star_ids is not None and len(star_ids) != len(paths):
        raise ConfigError(f"star_ids must have one id per file ({len(paths)}), got {len(star_ids)}")
    if star_ids is not None and len(set(map(str, star_ids))) != len(star_ids):
        uniq, counts = np.unique([str(s) for s in star_ids], return_counts=True)
        raise ConfigError(f"star ids must be unique; duplicated: {', '.join(uniq[counts > 1][:5])} (pass star_ids)")
    stars: dict[str, list[tuple[str, int]]] = {}
    by_file: dict[str, str] = {}  # star id -> the generic file it was named after
    info: dict[str, dict[str, str]] = {}
    failures = []
    for k, path in enumerate(paths):
        try:
            fmt = registry.identify(path)
            spectra = [_read_raw(path, fmt)] if fmt in RAW_FORMATS else registry.read_spectra(path, fmt)
            metas = [{**sp.meta, "medium": sp.medium, "index": i} for i, sp in enumerate(spectra)]
        except (GridError, ConfigError) as exc:
            if not skip_bad_files:
                raise
            failures.append((str(path), str(exc)))
            continue
        for m in metas:
            if star_ids is not None:
                sid = str(star_ids[k])
            elif fmt in OBJECT_FORMATS:
                sid = str(m["star_id"])
            else:  # one star per file, named after it: two files of one name are two stars of one id
                sid = Path(path).name.split(".")[0]
                if by_file.setdefault(sid, str(path)) != str(path):
                    raise ConfigError(f"star ids must be unique; duplicated: {sid} ({by_file[sid]}, {path}) (pass star_ids)")
            stars.setdefault(sid, []).append((str(path), int(m["index"])))
            seen = info.setdefault(sid, {"object": str(m.get("object") or ""), "frame_in": str(m.get("specsys") or "unknown").upper(),
                                         "medium_in": m["medium"]})
            if m["medium"] not in seen["medium_in"].split(","):
                seen["medium_in"] += "," + m["medium"]
    if not stars:
        raise GridError(f"none of the {len(paths)} file(s) holds a readable spectrum: " + "; ".join(f"{p}: {e}" for p, e in failures[:5]))
    return Plan(list(stars.items()), failures, info)


def fourmostify_file(path, input_resolving_power=None, *, instrument="4most-hr", arms=None, snr=None, input_snr=None, seed=0,
                     snr_convention=noise.PER_ANGSTROM, prepare: PrepareOptions | None = None) -> dict:
    """One spectrum file (one star) through the preparation: dict with flux (on the instrument grid), snr, rv,
    n_missing, ra, dec, ... (see `gridkit.observed.prepare.prepare_star`). Without `snr`/`input_snr` or errors in
    the file, the S/N is estimated with DER_SNR."""
    cfg = _fm.FourmostifyConfig(input_resolving_power=input_resolving_power, instrument=instrument, arms=arms, snr=snr,
                                input_snr=input_snr, seed=seed, snr_convention=snr_convention)
    return prepare_star(read_star([(str(path), 0)]), cfg, prepare)


#: per-star columns of a survey written by `fourmostify_store`: name -> (dtype, attrs)
COLUMNS = {
    "snr": (np.float64, {"long_name": "signal-to-noise ratio per Angstrom the network is given", "units": "1"}),
    "snr_header": (np.float64, {"long_name": "signal-to-noise ratio stated by the file (NaN: none)", "units": "1"}),
    "rv": (np.float64, {"long_name": "radial velocity removed (barycentric where the spectrum was topocentric; NaN: not measured)", "units": "km s-1"}),
    "rv_err": (np.float64, {"long_name": "1-sigma uncertainty of rv", "units": "km s-1"}),
    "barycentric_correction": (np.float64, {"long_name": "barycentric correction added to a topocentric rv", "units": "km s-1"}),
    "n_masked": (np.int32, {"long_name": "input pixels masked (quality flags, non-finite flux or error, user masks)", "units": "1"}),
    "n_missing": (np.int32, {"long_name": "missing (NaN) pixels on the instrument grid", "units": "1"}),
    "n_duplicate_wavelengths": (np.int32, {"long_name": "input samples at a repeated wavelength, merged into their mean", "units": "1"}),
    "ra": (np.float64, {"long_name": "right ascension", "units": "deg"}),
    "dec": (np.float64, {"long_name": "declination", "units": "deg"}),
    "mjd": (np.float64, {"long_name": "modified Julian date of the observation", "units": "d"}),
}
#: row keys of `prepare_star` for the columns whose names differ
_ROW_KEY = {"n_duplicate_wavelengths": "n_duplicates"}


class FourmostifyRegion:
    """make_region of `fourmostify_store`: reads and prepares its stars' spectra inside the worker."""

    def __init__(self, stars: Sequence[tuple[str, list]], config: _fm.FourmostifyConfig, prepare: PrepareOptions):
        self.stars, self.config, self.prepare = [(s, [(str(p), int(i)) for p, i in refs]) for s, refs in stars], config, prepare

    def inputs(self, i: int, sl: slice) -> str:
        """The bytes of the region's files: a region written from files that changed since is written again."""
        return _store.digest([sha256_file(p) for p in sorted({p for _, refs in self.stars[sl] for p, _ in refs})])

    def __call__(self, i: int, sl: slice) -> xr.Dataset:
        rows = [prepare_star(read_star(refs), self.config, self.prepare) for _, refs in self.stars[sl]]
        data = {"flux": (("star", WAVELENGTH), np.stack([r["flux"] for r in rows]).astype(np.float32))}
        for name, (dtype, _) in COLUMNS.items():
            data[name] = (("star",), np.array([r[_ROW_KEY.get(name, name)] for r in rows], dtype=dtype))
        return xr.Dataset(data, coords={"star": np.arange(sl.start, sl.stop)})


def _template(the_plan: Plan, cfg: _fm.FourmostifyConfig, prepare: PrepareOptions, region_size: int) -> xr.Dataset:
    import dask.array as dsa

    inst = _instruments.get(cfg.instrument)
    target = inst.wavelength(cfg.arms)
    n = len(the_plan.stars)
    source = "given" if cfg.snr is not None or cfg.input_snr is not None else "from the errors per pixel over good pixels, else DER_SNR"
    data = {"flux": (("star", WAVELENGTH), dsa.zeros((n, target.size), dtype=np.float32, chunks=(region_size, -1)),
                     {"long_name": "continuum-normalised flux" + (" (gridkit continuum operator)" if prepare.normalise == "continuum" else ""),
                      "units": "1", "missing": "NaN"})}
    for name, (dtype, attrs) in COLUMNS.items():
        data[name] = (("star",), dsa.zeros(n, dtype=dtype, chunks=region_size),
                      {**attrs, **({"convention": cfg.snr_convention, "source": source} if name == "snr" else {})})
    for name, long_name in (("object", "object name stated by the file"), ("frame_in", "SPECSYS of the input (UNKNOWN: not stated)"),
                            ("medium_in", "wavelength medium of the input")):
        data[name] = (("star",), np.array([the_plan.info[s][name] for s, _ in the_plan.stars], dtype=object), {"long_name": long_name, "units": "1"})
    data["star_id"] = (("star",), np.array([s for s, _ in the_plan.stars], dtype=object), {"long_name": "star identifier", "units": "1"})
    data["source_file"] = (("star",), np.array([";".join(dict.fromkeys(str(Path(p).resolve()) for p, _ in refs)) for _, refs in the_plan.stars],
                                               dtype=object), {"long_name": "input file(s)", "units": "1"})
    return xr.Dataset(
        data,
        coords={"star": np.arange(n), WAVELENGTH: (WAVELENGTH, target, wavelength_attrs(inst.medium))},
        attrs={"instrument": inst.name, "arms": ",".join(cfg.arms), "resolving_power": float(inst.resolving_power),
               "input_resolving_power": float("nan") if cfg.input_resolving_power is None else float(cfg.input_resolving_power),
               "snr_convention": cfg.snr_convention, "kind": "survey", "normalisation": prepare.normalisation,
               "prepare": json.dumps(prepare.to_dict()), "failed_files": json.dumps(the_plan.failures)},
    )


def fourmostify_store(
    paths: Sequence,
    out,
    input_resolving_power: float | None = None,
    *,
    instrument="4most-hr",
    arms=None,
    snr: float | None = None,
    input_snr: float | None = None,
    seed: int = 0,
    snr_convention: str = noise.PER_ANGSTROM,
    star_ids: Sequence[str] | None = None,
    region_size: int = 64,
    client=None,
    overwrite: bool = False,
    progress: bool = True,
    prepare: PrepareOptions | None = None,
    skip_bad_files: bool = False,
) -> Path:
    """Observed spectrum files (any format of `gridkit.io`: ESO SDP, 4MOST L1 single and multi-spectrum, FITS, text,
    Turbospectrum) to a survey store, star by star through `gridkit.observed.prepare` (masks, frame, RV, resolution,
    pixels, continuum, S/N): flux(star, wavelength) on the instrument grid (NaN where missing), star_id, snr, rv,
    rv_err, n_masked, n_missing, ra, dec, mjd, ... (`COLUMNS`). Every file is read and checked first: a bad file is
    refused (GridError naming it) or, with `skip_bad_files`, left out and listed in the survey's `failed_files` attr;
    nothing is written before. Restartable like every gridkit store."""
    out = Path(out)
    paths = [str(p) for p in paths]
    if not paths:
        raise ConfigError("no spectra given")
    for p in paths:
        if not Path(p).exists():
            raise GridError(f"spectrum file {p} does not exist")
    check_output(out, paths)
    if out.exists() and not overwrite:
        try:
            _store.open_region_store(out)
        except StoreError:
            raise StoreError(f"output {out} exists; pass overwrite=True (--overwrite) to replace it") from None
    cfg = _fm.FourmostifyConfig(input_resolving_power=input_resolving_power, instrument=instrument, arms=arms, snr=snr,
                                input_snr=input_snr, seed=seed, snr_convention=snr_convention)
    prepare = PrepareOptions() if prepare is None else prepare
    the_plan = plan(paths, star_ids, skip_bad_files=skip_bad_files)
    prepare_star(read_star(the_plan.stars[0][1]), cfg, prepare)  # the first star all the way through (resolution, coverage)
    template = _template(the_plan, cfg, prepare, region_size)
    fp = _store.fingerprint("fourmostify", [(s, [(str(Path(p).resolve()), i) for p, i in refs]) for s, refs in the_plan.stars], cfg.to_dict(),
                            prepare.to_dict(), region_size)
    rs, _ = _store.create(out, template, dim="star", region_size=region_size, fingerprint=fp, overwrite=overwrite, inputs=paths)
    failures = _store.write_regions(rs, FourmostifyRegion(the_plan.stars, cfg, prepare), client=client, progress=progress,
                                    desc="fourmostify", on_error="record")
    if failures:
        raise StoreError(f"{len(failures)} region(s) of {out} failed (rerun to retry): {next(iter(failures.values()))}")
    return out
