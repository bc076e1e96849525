"""`synthesize`: labels + a backend -> a base grid store, one task per region of models, through gridkit.store.

Per model the backend either returns a flux or raises: `SynthesisSkipped` (labels it cannot compute) is
recorded as status 1, any other exception as status 2 (with on_model_error='record', the default); the
model's flux is NaN and the grid goes on. The store holds:

- `flux(model, wavelength)` float32, the labels along `model`, `status(model)` int8 (0 ok, 1 skipped, 2 failed);
- the reason of every model that is not ok in `_gridkit/models/<region>.json` ({model id: reason});
  read them with `model_failures(path)`; drop those models with `drop_failed(ds)`.

A rerun of the same job (same labels, backend and options) resumes: finished regions are not recomputed.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from .. import store as _store
from ..errors import ConfigError, GridError, StoreError
from ..files import atomic_write_text
from ..schema import FLUX_ATTRS, LABEL_NAMES, MODEL, WAVELENGTH, check_labels, check_wavelength, label_variables, wavelength_attrs
from .base import SynthesisSkipped, Synthesizer

STATUS_OK, STATUS_SKIPPED, STATUS_FAILED = 0, 1, 2
STATUS_ATTRS = {"long_name": "synthesis status", "units": "1", "flag_values": [0, 1, 2], "flag_meanings": "ok skipped failed"}
MODELS_FOLDER = "models"


@dataclass
class SynthesisReport:
    """What `synthesize` did: the store, how many models are ok, and the reasons of the others."""

    path: Path
    n_models: int
    resumed: bool
    not_ok: dict[int, str] = field(default_factory=dict)
    grown_from: int | None = None  # synthesize_prior: the number of models the store had when it grew

    @property
    def n_ok(self) -> int:
        return self.n_models - len(self.not_ok)


class _SynthRegion:
    """make_region for the store writer: synthesize the models of one region (picklable)."""

    def __init__(self, backend: Synthesizer, labels: dict[str, np.ndarray], model_ids: np.ndarray, n_wave: int, on_model_error: str, path: str,
                 kept: Mapping[int, int] | None = None):
        self.backend, self.labels, self.model_ids = backend, labels, model_ids
        self.n_wave, self.on_model_error, self.path = n_wave, on_model_error, path
        self.kept = {int(k): int(v) for k, v in (kept or {}).items()}  # region -> its models below this index are in the store already

    def __call__(self, i: int, sl: slice) -> xr.Dataset:
        n = sl.stop - sl.start
        flux = np.full((n, self.n_wave), np.nan, dtype=np.float32)
        status = np.zeros(n, dtype=np.int8)
        reasons: dict[str, str] = {}
        start = sl.start
        if i in self.kept:  # a grown grid: the models of this region written before it grew are read back, not recomputed
            start = min(self.kept[i], sl.stop)
            flux[: start - sl.start], status[: start - sl.start], reasons = _read_rows(Path(self.path), i, slice(sl.start, start), self.model_ids)
        for k, m in enumerate(range(start, sl.stop), start=start - sl.start):
            labels = {name: float(values[m]) for name, values in self.labels.items()}
            try:
                f = np.asarray(self.backend.synthesize(labels), dtype=np.float32)
                if f.shape != (self.n_wave,):
                    raise GridError(f"backend {self.backend.name!r} returned flux of shape {f.shape}, expected ({self.n_wave},)")
                if not np.all(np.isfinite(f)):
                    raise GridError(f"backend {self.backend.name!r} returned {int((~np.isfinite(f)).sum())} NaN/inf flux value(s)")
                flux[k] = f
            except SynthesisSkipped as exc:
                status[k], reasons[str(self.model_ids[m])] = STATUS_SKIPPED, f"skipped: {exc}"
            except Exception as exc:  # noqa: BLE001 - recorded, the grid goes on
                if self.on_model_error == "raise":
                    raise
                status[k], reasons[str(self.model_ids[m])] = STATUS_FAILED, f"failed: {type(exc).__name__}: {exc}"
        _write_reasons(Path(self.path), i, reasons)
        return xr.Dataset({"flux": ((MODEL, WAVELENGTH), flux), "status": ((MODEL,), status)}, coords={MODEL: self.model_ids[sl]})


def _read_rows(path: Path, region: int, rows: slice, model_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """flux, status and the reasons of the models `rows` of region `region`, as the store at `path` holds them."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    flux, status = np.asarray(group["flux"][rows], dtype=np.float32), np.asarray(group["status"][rows], dtype=np.int8)
    file = path / _store.RECORD_GROUP / MODELS_FOLDER / f"{region:08d}.json"
    old = json.loads(file.read_text()) if file.exists() else {}
    ids = {str(m) for m in model_ids[rows]}
    return flux, status, {k: v for k, v in old.items() if k in ids}


def _write_reasons(path: Path, region: int, reasons: Mapping[str, str]) -> None:
    atomic_write_text(path / _store.RECORD_GROUP / MODELS_FOLDER / f"{region:08d}.json", json.dumps(dict(reasons)))


def model_failures(path) -> dict[int, str]:
    """{model id: reason} of every model of the store at `path` that was skipped or failed."""
    folder = Path(path) / _store.RECORD_GROUP / MODELS_FOLDER
    out: dict[int, str] = {}
    for p in sorted(folder.glob("*.json")) if folder.exists() else ():
        out.update({int(k): v for k, v in json.loads(p.read_text()).items()})
    return out


def drop_failed(ds: xr.Dataset) -> xr.Dataset:
    """The grid without the models whose synthesis was skipped or failed (status != 0); unchanged if no status."""
    if "status" not in ds:
        return ds
    keep = np.flatnonzero(np.asarray(ds["status"].values) == STATUS_OK)
    return ds.isel({MODEL: keep})


def _resolve_backend(backend) -> Synthesizer:
    if isinstance(backend, str):
        from . import get_backend

        return get_backend(backend)
    for attr in ("wavelength", "synthesize", "provenance"):
        if not callable(getattr(backend, attr, None)):
            raise ConfigError(f"backend {backend!r} is not a Synthesizer (it lacks {attr}())")
    return backend


def synthesize(
    labels: Mapping[str, np.ndarray],
    backend,
    out,
    *,
    models_per_region: int = 16,
    client=None,
    overwrite: bool = False,
    progress: bool = True,
    on_model_error: str = "record",
    model=None,
    required_labels=LABEL_NAMES,
    attrs: Mapping | None = None,
    inputs: Sequence = (),
) -> SynthesisReport:
    """Synthesize one spectrum per label set into a base-grid Zarr v3 store at `out`; resume a previous run.

    labels: {name: (n,) values}, the 13 default labels required (`required_labels`); backend: a Synthesizer
    or a name of `BACKENDS`; models_per_region: models per task and per Zarr chunk; client: a distributed
    Client (default: local threads); on_model_error: 'record' (status 2, the grid goes on) or 'raise'.
    An existing `out` is resumed only if the same job made it, replaced only with overwrite=True. inputs: files the
    labels or options were read from (a label table, a prior): `out` may not be, contain or lie inside one.
    """
    if on_model_error not in ("record", "raise"):
        raise ConfigError(f"on_model_error must be 'record' or 'raise', got {on_model_error!r}")
    if not isinstance(models_per_region, (int, np.integer)) or models_per_region < 1:
        raise ConfigError(f"models_per_region must be a positive integer, got {models_per_region!r}")
    if not labels:
        raise GridError("labels is empty: give one array per label")
    n = len(np.atleast_1d(next(iter(labels.values()))))
    if n < 1:
        raise GridError("labels have no models")
    lab = check_labels(labels, n, required=required_labels)
    model_ids = np.arange(n) if model is None else np.asarray(model)
    if model_ids.shape != (n,) or len(np.unique(model_ids)) != n:
        raise GridError(f"model ids must be {n} unique values, got shape {model_ids.shape}")
    syn = _resolve_backend(backend)
    wl = check_wavelength(syn.wavelength(), name=f"wavelength of backend {syn.name!r}")
    prov = syn.provenance()
    out = Path(out)

    region = int(min(models_per_region, n))
    template = _template(lab, model_ids, syn, wl, prov, region, attrs)
    import hashlib

    label_hash = hashlib.sha256(b"".join(lab[k].tobytes() for k in sorted(lab)) + model_ids.tobytes()).hexdigest()
    fp = _store.fingerprint("synth", syn.name, prov, hashlib.sha256(wl.tobytes()).hexdigest(), label_hash, sorted(lab), region)
    rstore, resumed = _store.create(out, template, dim=MODEL, region_size=region, fingerprint=fp, overwrite=overwrite, inputs=inputs)
    maker = _SynthRegion(syn, lab, model_ids, wl.size, on_model_error, str(rstore.path))  # where it is written (aside, when overwriting)
    failures = _store.write_regions(rstore, maker, client=client, on_error="record" if on_model_error == "record" else "raise",
                                    progress=progress, desc=f"synth ({syn.name})")
    if failures:
        first = next(iter(failures.items()))
        raise StoreError(f"{len(failures)} region(s) of {out} could not be written (region {first[0]}: {first[1]}); rerun the same command to resume")
    return SynthesisReport(out, n, resumed, model_failures(out))


def _template(lab: Mapping[str, np.ndarray], model_ids: np.ndarray, syn, wl: np.ndarray, prov: dict, region: int, attrs: Mapping | None) -> xr.Dataset:
    """The base-grid template: lazy flux and status along `model` in chunks of `region`, the labels in memory."""
    import dask.array as da

    n = model_ids.size
    medium = prov.get("medium", "air")
    template = xr.Dataset(
        {
            "flux": ((MODEL, WAVELENGTH), da.zeros((n, wl.size), dtype=np.float32, chunks=(region, wl.size)), dict(FLUX_ATTRS)),
            "status": ((MODEL,), da.zeros(n, dtype=np.int8, chunks=region), dict(STATUS_ATTRS)),
        },
        coords={MODEL: (MODEL, model_ids, {"long_name": "model id"}), WAVELENGTH: (WAVELENGTH, wl, wavelength_attrs(medium))},
    )
    template = template.assign(label_variables(lab))
    template.attrs.update({
        "resolving_power": math.inf,
        "generator": f"gridkit.synth.synthesize (backend {syn.name})",
        "backend": syn.name,
        "provenance": json.dumps(prov, sort_keys=True, default=str),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "status_note": "models with status != 0 have NaN flux; drop them with gridkit.synth.drop_failed(ds)",
        **{k: v for k, v in prov.items() if isinstance(v, (str, int, float)) and k not in ("backend",)},
        **dict(attrs or {}),
    })
    return template
