"""`fourmostify_store`: observed spectrum files to a survey store through the restartable writer."""
from __future__ import annotations

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
from .snr import MAX_ESTIMATED_SNR, estimate_snr
from .spectrum import spectrum_dataset


def _read(path):
    """(wavelength, flux, meta) of a spectrum file as it is: the format's raw reader from gridkit.io, so that
    NaN (masked) pixels and repeated wavelengths reach `spectrum_dataset`, which reports them instead of failing."""
    from .. import io as _io

    return _io.READERS[_io.spectrum_format(path)](path)


def _file_row(path, cfg: _fm.FourmostifyConfig) -> dict:
    wl, flux, meta = _read(path)
    meta = dict(meta or {})
    r_in = cfg.input_resolving_power if cfg.input_resolving_power is not None else meta.get("resolving_power")
    if r_in is None:
        raise ConfigError(f"{path}: the native resolving power is not in the file; pass input_resolving_power (--input-resolving-power)")
    ds = spectrum_dataset(wl, flux, name=str(path))
    if cfg.input_resolving_power is None:
        ds.attrs["resolving_power"] = r_in
    res = _fm.apply(ds, cfg).compute()
    f = res.flux.values[0]
    s = float(res.snr.values[0])
    if not np.isfinite(s):  # estimate it from the data
        s = estimate_snr(f, res[WAVELENGTH].values, cfg.snr_convention, name=str(path))
    return {"flux": f, "snr": s, "n_missing": int(np.isnan(f).sum()), "n_duplicates": int(ds.attrs["n_duplicate_wavelengths"]),
            "ra": float(meta.get("ra", np.nan)), "dec": float(meta.get("dec", np.nan))}


def fourmostify_file(path, input_resolving_power=None, *, instrument="4most-hr", arms=None, snr=None, input_snr=None, seed=0,
                     snr_convention=noise.PER_ANGSTROM) -> dict:
    """One spectrum file through `fourmostify`: dict with flux (on the instrument grid), snr, n_missing,
    ra, dec. Without `snr`/`input_snr`, the S/N is estimated with DER_SNR."""
    cfg = _fm.FourmostifyConfig(input_resolving_power=input_resolving_power, instrument=instrument, arms=arms, snr=snr,
                                input_snr=input_snr, seed=seed, snr_convention=snr_convention)
    return _file_row(path, cfg)


class FourmostifyRegion:
    """make_region of `fourmostify_store`: reads its spectra files inside the worker."""

    def __init__(self, paths: Sequence[str], config: _fm.FourmostifyConfig):
        self.paths, self.config = [str(p) for p in paths], config

    def inputs(self, i: int, sl: slice) -> str:
        """The bytes of the region's files: a region written from files that changed since is written again."""
        return _store.digest([sha256_file(p) for p in self.paths[sl]])

    def __call__(self, i: int, sl: slice) -> xr.Dataset:
        rows = [_file_row(p, self.config) for p in self.paths[sl]]
        return xr.Dataset(
            {
                "flux": (("star", WAVELENGTH), np.stack([r["flux"] for r in rows]).astype(np.float32)),
                "snr": (("star",), np.array([r["snr"] for r in rows], dtype=np.float64)),
                "n_missing": (("star",), np.array([r["n_missing"] for r in rows], dtype=np.int32)),
                "n_duplicate_wavelengths": (("star",), np.array([r["n_duplicates"] for r in rows], dtype=np.int32)),
                "ra": (("star",), np.array([r["ra"] for r in rows], dtype=np.float64)),
                "dec": (("star",), np.array([r["dec"] for r in rows], dtype=np.float64)),
            },
            coords={"star": np.arange(sl.start, sl.stop)},
        )


def _star_ids(paths: list[str], star_ids) -> list[str]:
    ids = [str(s) for s in star_ids] if star_ids is not None else [Path(p).name.split(".")[0] for p in paths]
    if len(ids) != len(paths):
        raise ConfigError(f"star_ids must have one id per file ({len(paths)}), got {len(ids)}")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ConfigError(f"star ids must be unique; duplicated: {', '.join(uniq[counts > 1][:5])} (pass star_ids)")
    return ids


def _template(paths: list[str], ids: list[str], cfg: _fm.FourmostifyConfig, region_size: int) -> xr.Dataset:
    import dask.array as dsa

    inst = _instruments.get(cfg.instrument)
    target = inst.wavelength(cfg.arms)
    n = len(paths)

    def zeros(dtype=np.float64):
        return dsa.zeros(n, dtype=dtype, chunks=region_size)

    source = "given" if cfg.snr is not None or cfg.input_snr is not None else f"DER_SNR estimate (at most {MAX_ESTIMATED_SNR:g})"
    return xr.Dataset(
        {
            "flux": (("star", WAVELENGTH), dsa.zeros((n, target.size), dtype=np.float32, chunks=(region_size, -1)),
                     {"long_name": "continuum-normalised flux", "units": "1", "missing": "NaN"}),
            "snr": (("star",), zeros(), {"long_name": "signal-to-noise ratio", "convention": cfg.snr_convention, "source": source}),
            "n_missing": (("star",), zeros(np.int32), {"long_name": "missing (NaN) pixels on the instrument grid"}),
            "n_duplicate_wavelengths": (("star",), zeros(np.int32), {"long_name": "input samples at a repeated wavelength, merged into their mean"}),
            "ra": (("star",), zeros(), {"units": "deg"}),
            "dec": (("star",), zeros(), {"units": "deg"}),
            "star_id": (("star",), np.array(ids, dtype=object)),
            "source_file": (("star",), np.array([str(Path(p).resolve()) for p in paths], dtype=object)),
        },
        coords={"star": np.arange(n), WAVELENGTH: (WAVELENGTH, target, wavelength_attrs(inst.medium))},
        attrs={"instrument": inst.name, "arms": ",".join(cfg.arms), "resolving_power": float(inst.resolving_power),
               "input_resolving_power": float("nan") if cfg.input_resolving_power is None else float(cfg.input_resolving_power),
               "snr_convention": cfg.snr_convention, "kind": "survey"},
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
) -> Path:
    """Observed spectra files (text two-column or FITS 1-D, read by gridkit.io) to a survey store:
    flux(star, wavelength) on the instrument grid (NaN where missing), snr(star), star_id(star),
    n_missing(star), ra/dec(star) (NaN where the file has none). Restartable like every gridkit store."""
    out = Path(out)
    paths = [str(p) for p in paths]
    if not paths:
        raise ConfigError("no spectra given")
    for p in paths:
        if not Path(p).exists():
            raise GridError(f"spectrum file {p} does not exist")
    ids = _star_ids(paths, star_ids)
    check_output(out, paths)
    if out.exists() and not overwrite:
        try:
            _store.open_region_store(out)
        except StoreError:
            raise StoreError(f"output {out} exists; pass overwrite=True (--overwrite) to replace it") from None
    cfg = _fm.FourmostifyConfig(input_resolving_power=input_resolving_power, instrument=instrument, arms=arms, snr=snr,
                                input_snr=input_snr, seed=seed, snr_convention=snr_convention)
    _file_row(paths[0], cfg)  # the first spectrum all the way through before anything is written (resolving power, coverage)
    for p in paths[1:]:  # every other file read and checked: a bad file is named before anything is written
        wl, flux, _ = _read(p)
        spectrum_dataset(wl, flux, name=str(p))
    template = _template(paths, ids, cfg, region_size)
    fp = _store.fingerprint("fourmostify", [str(Path(p).resolve()) for p in paths], ids, cfg.to_dict(), region_size)
    rs, _ = _store.create(out, template, dim="star", region_size=region_size, fingerprint=fp, overwrite=overwrite, inputs=paths)
    failures = _store.write_regions(rs, FourmostifyRegion(paths, cfg), client=client, progress=progress, desc="fourmostify",
                                    on_error="record")
    if failures:
        raise StoreError(f"{len(failures)} region(s) of {out} failed (rerun to retry): {next(iter(failures.values()))}")
    return out
