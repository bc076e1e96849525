"""Growing a grid: labels drawn from a declared prior, and a rerun with more models extends the same store.

`synthesize_prior(prior, n, seed, backend, out)` draws model i's labels from (seed, i) alone (`Prior.sample`;
inside the backend's coverage, e.g. the MARCS grid of Turbospectrum, by redrawing from (seed, i, attempt)) and
writes them through `gridkit.synth.synthesize`'s region writer. The job's identity (its fingerprint, and the
store's attr `synth_job`) is the prior's content, the seed, the backend and its recipe (provenance), the wavelength
grid and the region size, *not* n. So:

- the same command again resumes; with a larger n it **grows** the store: the `model` arrays are resized, the new
  models' labels written, the new regions computed; the models already there are not recomputed and keep their
  bytes. A last region that was only partly filled (n not a multiple of the region size) is completed by reading its
  models back from the store and computing the new ones only (`_gridkit` attr `kept_rows`);
- a smaller n, another prior, seed, backend recipe, wavelength grid or region size is refused, naming what differs;
- growing is restartable: the target is recorded first (`_gridkit` attr `growing_to`), each step is idempotent,
  and a rerun after an interruption (SIGKILL included) finishes it; the result equals an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import zarr

from .. import store as _store
from ..errors import ConfigError, StoreError
from ..files import check_output
from ..schema import LABEL_NAMES, MODEL, check_labels, check_wavelength
from .api import SynthesisReport, _resolve_backend, _SynthRegion, _template, model_failures
from .prior import Prior, as_prior

#: the store attr that records the job a grown grid belongs to
JOB_ATTR = "synth_job"


def draw_labels(prior, n: int, seed: int, backend=None) -> dict[str, np.ndarray]:
    """n label sets from `prior` (a Prior, LabelPrior, mapping or file) for `backend`: inside its coverage when it has
    one (`backend.covers(labels) -> bool array`, e.g. the MARCS grid of Turbospectrum). Model i depends on (seed, i)."""
    prior = as_prior(prior)
    covers = getattr(backend, "covers", None) if backend is not None else None
    if covers is not None and hasattr(backend, "check"):
        backend.check()  # missing programs or atmospheres: the install command, before any drawing
    where = f"the coverage of the {getattr(backend, 'name', 'given')} backend" + (" (its MARCS model atmospheres)" if getattr(backend, "name", "") == "turbospectrum" else "")
    return prior.sample(n, seed, covers=covers, coverage=where)


def synthesize_prior(
    prior,
    n: int,
    seed: int,
    backend,
    out,
    *,
    models_per_region: int = 16,
    client=None,
    overwrite: bool = False,
    progress: bool = True,
    on_model_error: str = "record",
    inputs: Sequence = (),
) -> SynthesisReport:
    """A base grid of the first n models of (prior, seed) at `out`: created, resumed, or grown from fewer models.

    prior: a `Prior`, `LabelPrior`, mapping or YAML/JSON file; backend: a Synthesizer or a backend name. Returns the
    report (`grown_from`: the number of models the store had before, when it grew). See the module docstring."""
    if on_model_error not in ("record", "raise"):
        raise ConfigError(f"on_model_error must be 'record' or 'raise', got {on_model_error!r}")
    if not isinstance(models_per_region, (int, np.integer)) or models_per_region < 1:
        raise ConfigError(f"models_per_region must be a positive integer, got {models_per_region!r}")
    prior_obj: Prior = as_prior(prior)
    syn = _resolve_backend(backend)
    wl = check_wavelength(syn.wavelength(), name=f"wavelength of backend {syn.name!r}")
    prov = syn.provenance()
    labels = draw_labels(prior_obj, n, seed, syn)
    lab = check_labels(labels, int(n), required=LABEL_NAMES)
    region = int(models_per_region)
    job = {
        "prior": {k: v for k, v in prior_obj.to_dict().items() if k != "name"},  # the content, whatever the prior is called
        "seed": int(seed),
        "backend": syn.name,
        "recipe": _store.digest(_recipe(prov)),
        "wavelength": hashlib.sha256(np.ascontiguousarray(wl, dtype=np.float64).tobytes()).hexdigest(),
        "models_per_region": region,
    }
    fp = _store.fingerprint("synth-prior", job)
    model_ids = np.arange(int(n))
    out = Path(out)
    template = _template(lab, model_ids, syn, wl, prov, region, {JOB_ATTR: json.dumps(job, sort_keys=True),
                                                                 "label_prior": json.dumps(prior_obj.to_dict()), "label_seed": int(seed)})
    grown_from = None
    inputs = list(inputs)
    if not overwrite and (out.exists() or out.is_symlink()):
        check_output(out, inputs)
        _store._lock(out)
        try:
            grown_from = _prepare_existing(out, job, fp, int(n), region, lab)
        except BaseException:
            _store.release(out)
            raise
    rstore, resumed = _store.create(out, template, dim=MODEL, region_size=region, fingerprint=fp, overwrite=overwrite, inputs=inputs)
    zarr.open_group(str(rstore.path / _store.RECORD_GROUP), mode="r+").attrs["labelled"] = int(n)  # create wrote every label
    kept = _kept_rows(rstore.path)
    maker = _SynthRegion(syn, lab, model_ids, wl.size, on_model_error, str(rstore.path), kept=kept)
    failures = _store.write_regions(rstore, maker, client=client, on_error="record" if on_model_error == "record" else "raise",
                                    progress=progress, desc=f"synth ({syn.name})")
    if failures:
        first = next(iter(failures.items()))
        raise StoreError(f"{len(failures)} region(s) of {out} could not be written (region {first[0]}: {first[1]}); rerun the same command to resume")
    return SynthesisReport(out, int(n), resumed, model_failures(out), grown_from=grown_from)


def _recipe(prov: dict) -> dict:
    """The backend's provenance without where things are installed (the home, line-list paths): the same recipe on
    another machine or cluster is the same job."""
    out = {k: v for k, v in prov.items() if k not in ("turbospectrum_home",)}
    if isinstance(out.get("linelists"), list):
        out["linelists"] = [{k: v for k, v in item.items() if k != "path"} if isinstance(item, dict) else item for item in out["linelists"]]
    return out


def _prepare_existing(path: Path, job: dict, fp: str, n: int, region: int, lab: dict) -> int | None:
    """Check that the store at `path` belongs to this job, then grow it to n models if it has fewer (under the
    output's lock). Returns the number of models it had when it grew, else None."""
    try:
        rs = _store.open_region_store(path)
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except StoreError:
        raise StoreError(f"output {path} exists and is not a resumable gridkit store; pass overwrite=True (--overwrite) to replace it") from None
    old = json.loads(attrs[JOB_ATTR]) if JOB_ATTR in attrs else None
    if old is None:
        raise StoreError(f"output {path} exists and was not drawn from a prior (made from a label table or by another command); "
                         "refusing to mix. Choose another path or pass overwrite=True (--overwrite)")
    if old != job or rs.fingerprint != fp:
        raise StoreError(f"output {path} was made by a different job: {_differences(old, job)}; refusing to mix. Rerun with the "
                         "store's prior, seed and options to resume or grow it, or choose another path (or --overwrite)")
    record = zarr.open_group(str(path / _store.RECORD_GROUP), mode="r+")
    growing = record.attrs.get("growing_to")
    if growing is not None and int(growing) != n:
        raise StoreError(f"output {path} was being grown to {int(growing)} models when it was interrupted; rerun with "
                         f"--n-models {int(growing)} to finish that first")
    if n < rs.n:
        raise StoreError(f"output {path} holds {rs.n} models of this prior and seed; a grid only grows (asked for {n}). Its first "
                         f"{n} models are `gridkit.open_grid(path).isel(model=slice({n}))`")
    have = min(int(record.attrs.get("labelled", rs.n)), n)
    stored = zarr.open_group(str(path), mode="r")
    for name in LABEL_NAMES:
        values = np.asarray(stored[name][:have])
        if not np.array_equal(values, lab[name][:have]):
            i = int(np.flatnonzero(values != lab[name][:have])[0])
            raise StoreError(f"output {path}: the labels drawn now differ from the store's ({name} of model {i}: {lab[name][i]!r} now, "
                             f"{values[i]!r} stored; the prior sampler or the backend's coverage changed?); rebuild it with --overwrite")
    if n == rs.n and growing is None:
        return None
    _grow(path, rs, n, region)
    return rs.n


def _grow(path: Path, rs: _store.RegionStore, n: int, region: int) -> None:
    """Resize the `model` arrays of the store at `path` from rs.n to n models. Each step is idempotent and the target is
    recorded first, so an interrupted growth is finished by the next run."""
    _store.unconsolidate(path)  # the arrays change shape: no reader may see the old metadata
    record = zarr.open_group(str(path / _store.RECORD_GROUP), mode="r+")
    record.attrs["growing_to"] = int(n)
    kept = {str(k): int(v) for k, v in dict(record.attrs.get("kept_rows", {})).items()}
    record.attrs["labelled"] = min(int(record.attrs.get("labelled", rs.n)), rs.n)  # the rows whose labels are written
    last = rs.n // region
    if rs.n % region and last in rs.done():  # a partial last region: its models are kept, the region completed by reading them back
        kept[str(last)] = rs.n
        record.attrs["kept_rows"] = kept  # recorded before its marker goes: an interruption in between loses nothing
        rs._marker("done", last).unlink()
    group = zarr.open_group(str(path), mode="r+")
    for _, arr in group.arrays():
        names = getattr(arr.metadata, "dimension_names", None) or ()
        if names and names[0] == MODEL and arr.shape[0] != n:
            arr.resize((n, *arr.shape[1:]))
    record.attrs["n"] = int(n)  # the labels of the new models are written by the store's template refresh (`create`)
    record.attrs["template"] = ""
    del record.attrs["growing_to"]


def _kept_rows(path: Path) -> dict[int, int]:
    try:
        record = zarr.open_group(str(Path(path) / _store.RECORD_GROUP), mode="r")
    except Exception:  # noqa: BLE001 - a new store has none
        return {}
    return {int(k): int(v) for k, v in dict(record.attrs.get("kept_rows", {})).items()}


def _differences(old: dict, new: dict) -> str:
    parts = []
    if old.get("prior") != new.get("prior"):
        parts.append(f"the prior differs ({_prior_difference(old.get('prior') or {}, new['prior'])})")
    if old.get("seed") != new.get("seed"):
        parts.append(f"seed {new['seed']} (the store's: {old.get('seed')})")
    if old.get("backend") != new.get("backend"):
        parts.append(f"backend {new['backend']!r} (the store's: {old.get('backend')!r})")
    elif old.get("recipe") != new.get("recipe"):
        parts.append("the backend's recipe differs (line lists, atmospheres or program versions; see the store's attr 'provenance')")
    if old.get("wavelength") != new.get("wavelength"):
        parts.append("the wavelength grid differs (--wavelength-range, --step)")
    if old.get("models_per_region") != new.get("models_per_region"):
        parts.append(f"--chunk {new['models_per_region']} (the store's: {old.get('models_per_region')})")
    return "; ".join(parts) or "its fingerprint differs"


def _prior_difference(old: dict, new: dict, where: str = "") -> str:
    """The first place where two priors (their canonical dicts) differ, e.g. `populations[giants].weight: 0.3 vs the store's 0.35`."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            if old.get(k) != new.get(k):
                return _prior_difference(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for k, (a, b) in enumerate(zip(old, new)):
            if a != b:
                name = b.get("name", k) if isinstance(b, dict) else k
                return _prior_difference(a, b, f"{where}[{name}]")
    return f"{where}: {json.dumps(new)} vs the store's {json.dumps(old)}"
