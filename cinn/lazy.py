"""Lazy survey inference in xarray: `summarize_dataset(model_dir, survey)` -> the catalog as a lazy Dataset.

    import cinn, catalogs
    survey = cinn.survey.open_survey("survey.zarr")            # or xr.open_zarr("survey.zarr")
    cat = cinn.summarize_dataset("model_dir", survey, samples=4096, seed=0)   # nothing computed yet
    cat.isel(star=slice(0, 10)).compute()                        # the chunk(s) holding these stars only
    cinn.write_catalog(cat, "catalog.zarr")                      # restartable, `catalogs.open` accepts it

The posterior summaries are `xarray.map_blocks` over the survey's chunks of stars; each block runs the same
per-chunk function as a region of `gridkit infer` (`InferChunk.summarize` -> `cinn.survey.summarize_rows`) with the
model loaded once per worker process (`cached_posterior`), and star j's draws depend only on (seed, j), j its row in
the survey: the values are those `infer` writes for the same model, survey, samples, seed, calibration and `missing`,
bit for bit. Variables and attrs are those of the `infer` catalog (its template, `cinn.survey._template`).

Building the Dataset reads the model's metadata (model.json, the wavelength grid) and the survey's per-star columns
(star_id, snr, ra, ...), never the weights nor the flux: the model is loaded by the first block a worker computes.
When the Dask client (given, or the current default one) has a worker declaring the resource `GPU`, the blocks are
annotated `resources={"GPU": 1}` (`dask.annotate`); the annotation is per task key and survives Dask's graph
optimisation (tested at the scheduler).

`gridkit infer` is the tool for a whole survey on a cluster (restartable tasks, completion record, resume);
this is the tool for Jupyter: look at a few stars, or feed the summaries into further lazy xarray work.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from catalogs.schema import QUANTILES, check_catalog
from gridkit import store as _store
from gridkit.errors import ConfigError, ExtrapolationWarning, GridError, StoreError
from gridkit.schema import STAR, WAVELENGTH, check_normalisation, check_same_wavelength

from . import survey as _survey

ROW = "_row"  # the stars' rows in the survey, carried into each block: the keys of their draws
#: variables of a catalog computed by the network (the rest comes from the survey)
SUMMARY_EXTRA = ("f_reject", "flag_extrapolated", "flag_snr_outside", "flag_missing_flux", "n_imputed", *_survey.SAMPLE_VARIABLES)


@dataclass(frozen=True)
class ModelInfo:
    """What a catalog's layout and provenance need from a model, read without loading its weights."""

    model_id: str
    label_names: tuple[str, ...]
    weights_sha256: str | None
    wavelength: np.ndarray
    normalisation: str = "none"
    snr_range: tuple[float, float] | None = None
    calibration: object | None = None

    @classmethod
    def of(cls, post) -> "ModelInfo":
        """The info of a loaded Posterior (or anything with its attributes)."""
        return cls(str(post.model_id), tuple(post.label_names), getattr(post, "weights_sha256", None), np.asarray(post.wavelength),
                   str(getattr(post, "normalisation", "none")), getattr(post, "snr_range", None), getattr(post, "calibration", None))


def model_info(model_dir, loader: Callable | None = None) -> ModelInfo:
    """The ModelInfo of `model_dir`: from model.json and the wavelength tensor of model.safetensors (the default);
    for a custom `loader`, from its `info(model_dir)` when it has one, else from the Posterior it loads (here, once)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise GridError(f"model_dir {model_dir} does not exist or is not a directory")
    if loader is not None:
        describe = getattr(loader, "info", None)
        return describe(model_dir) if describe is not None else ModelInfo.of(loader(model_dir))
    from .ensemble import is_ensemble, load_ensemble

    if is_ensemble(model_dir):  # its members' metadata, checked as it loads
        return ModelInfo.of(load_ensemble(model_dir))
    from safetensors import safe_open

    from .calibration import read as read_calibration
    from .checkpoint import EXTRA, MODEL_JSON, MODEL_WEIGHTS, ModelDirError, read_json

    meta = read_json(model_dir / MODEL_JSON)
    for key in ("model_id", "label_names", "files"):
        if key not in meta:
            raise ModelDirError(f"{model_dir / MODEL_JSON} is corrupt: key {key!r} is missing")
    try:
        with safe_open(str(model_dir / MODEL_WEIGHTS), framework="pt") as f:
            wavelength = f.get_tensor(EXTRA + "wavelength").numpy()
    except Exception as exc:  # safetensors raises its own types
        raise ModelDirError(f"{model_dir / MODEL_WEIGHTS} has no readable wavelength grid: {exc}") from exc
    snr_range = tuple(float(v) for v in meta["snr_range"]) if "snr_range" in meta else None
    return ModelInfo(str(meta["model_id"]), tuple(meta["label_names"]), (meta.get("files") or {}).get(MODEL_WEIGHTS), wavelength,
                     str(meta.get("normalisation", "none")), snr_range, read_calibration(model_dir, str(meta["model_id"])))


def _default_client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _block(block: xr.Dataset, task: "_survey.InferChunk") -> xr.Dataset:
    """One map_blocks block: the catalog rows of its stars, by the function `infer`'s regions run."""
    out = task.summarize(block["flux"].values, block["snr"].values, block[ROW].values)
    return out.assign_coords(quantile=("quantile", np.array(QUANTILES)))  # (and the samples' label, draw coordinates)


def summarize_dataset(
    model_dir,
    survey_ds,
    *,
    samples: int = 4096,
    seed: int = 0,
    calibrated: bool = True,
    missing: str = "impute",
    device: str = "auto",
    chunk: int | None = None,
    client=None,
    loader: Callable | None = None,
    command: str | None = None,
    keep_samples: int = 0,
) -> xr.Dataset:
    """The catalog of `survey_ds` by the model in `model_dir`, as a lazy Dataset (nothing is computed until asked).

    survey_ds: a survey Dataset (flux(star, wavelength), snr(star), star_id(star); e.g. `cinn.survey.open_survey(path)`
    or `xr.open_zarr(path)`) or the path of a survey store. samples, seed, calibrated, missing,
    device: as `cinn.survey.infer`; the values equal those `infer` writes with the same arguments (star j's draws
    depend on (seed, j), j its row in `survey_ds`: pass the whole survey and select stars from the result).
    chunk: stars per block (default: the survey's chunk along `star`, at most 1024, as `infer`). client: the Dask
    client whose GPU workers the blocks ask for (default: the current default client, if any). loader: model_dir ->
    Posterior (default `cinn.load`), run once per worker process; with an `info(model_dir)` attribute it also gives
    the metadata (see `model_info`). keep_samples: as `infer` (samples(star, draw, label) of the first N draws of each
    star). Write the result with `cinn.write_catalog` (restartable) or `.to_zarr(path)`.
    """
    import warnings

    import dask
    import dask.array as da

    samples = _survey._check_int("samples", samples, 1)
    seed = _survey._check_int("seed", seed, 0)
    keep_samples = _survey._check_keep(keep_samples, samples)
    if missing not in ("flag", "impute"):
        raise ConfigError(f"missing must be 'flag' (spectra with missing pixels are not inferred) or 'impute', got {missing!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if isinstance(survey_ds, xr.Dataset):
        survey, survey_path = survey_ds, survey_ds.encoding.get("source")
        from gridkit.schema import validate_grid

        validate_grid(survey, kind="survey")
    else:
        survey_path = survey_ds
        survey = _survey.open_survey(survey_ds)
    model_dir = Path(model_dir).resolve()
    info = model_info(model_dir, loader)
    what = f"survey {survey_path}" if survey_path else "the survey"
    check_same_wavelength(survey[WAVELENGTH].values, info.wavelength, what=what, of=f"model_dir {model_dir}")
    check_normalisation(survey.attrs.get("normalisation", "none"), info.normalisation, f"the spectra of {what}")
    from .posterior import snr_outside_training

    message = snr_outside_training(np.asarray(survey["snr"].values, dtype=np.float64), info.snr_range)
    if message:
        warnings.warn(f"{what}: {message}", ExtrapolationWarning, stacklevel=2)
    n = int(survey.sizes[STAR])
    if n == 0:
        raise GridError(f"{what} has no stars")
    if chunk is None:
        native = survey["flux"].encoding.get("chunks") or (survey["flux"].chunks[0][:1] if survey["flux"].chunks else (n,))
        chunk = max(1, min(int(native[0]), _survey.DEFAULT_CHUNK, n))
    chunk = min(_survey._check_int("chunk", chunk, 1), n)

    template = _survey._template(survey, info, survey_path or ".", model_dir, n, chunk, samples, seed,
                                 command or f"cinn.summarize_dataset(samples={samples}, seed={seed})", keep_samples=keep_samples,
                                 missing=missing)
    calibration = info.calibration if calibrated else None
    template.attrs.update(survey=str(Path(survey_path).resolve()) if survey_path else "(in-memory dataset)", history="cinn.summarize_dataset",
                          interval_calibration="none" if calibration is None else calibration.summary())
    summaries = [name for name in template.data_vars if name in info.label_names or name in SUMMARY_EXTRA
                 or name in {f"{x}_{suffix}" for x in info.label_names for suffix in ("quantiles", "unconstrained")}]
    spectra = xr.Dataset(
        {"flux": survey["flux"].variable.chunk({STAR: chunk, WAVELENGTH: -1}),
         "snr": survey["snr"].variable.chunk({STAR: chunk}),
         ROW: ((STAR,), da.arange(n, chunks=chunk, dtype=np.int64))},
        coords={STAR: template[STAR]},
    )
    task = _survey.InferChunk(model_dir, info.model_id, "", samples, seed, info.label_names, loader=loader, device=device,
                              missing=missing, calibrated=calibrated, keep_samples=keep_samples)
    client = client if client is not None else _default_client()
    resources = _survey.gpu_resources(client)
    with dask.annotate(resources=resources) if resources else contextlib.nullcontext():
        mapped = xr.map_blocks(_block, spectra, kwargs={"task": task}, template=template[summaries])
    if resources:
        first = summaries[0]
        _restrict_on_scheduler(client, mapped[first].data.name[len(first) + 1:], resources)  # the map_blocks layer's name
    return template.assign({name: mapped[name] for name in summaries})


class RestrictTasks:
    """A scheduler plugin giving the tasks of named graph layers (a map_blocks name `g`: keys `(g, i)` and
    `(<variable>-g, i)`) their resource restrictions, whatever became of the layer annotations: Dask's low-level
    fusion of array graphs (on by default) flattens the layers and drops their annotations before the graph reaches
    the scheduler (dask/dask#7036), so `dask.annotate` alone does not keep the blocks on the GPU workers."""

    name = "gridkit-restrict-tasks"

    def __init__(self, names: dict[str, dict]):
        self.names = dict(names)

    def update_graph(self, scheduler, *, tasks=(), **kwargs):  # called before the new tasks are scheduled
        for key in tasks:
            name = key[0] if isinstance(key, tuple) else key
            if not isinstance(name, str):
                continue
            for layer, resources in self.names.items():
                if name == layer or name.endswith("-" + layer):
                    ts = scheduler.tasks.get(key)
                    if ts is not None and not ts.resource_restrictions:
                        ts.resource_restrictions = dict(resources)
                    break


def _add_restriction(dask_scheduler=None, layer: str = "", resources: dict | None = None) -> None:
    """Runs on the scheduler: register RestrictTasks once, then add `layer` to it."""
    plugin = dask_scheduler.plugins.get(RestrictTasks.name)
    if plugin is None:
        from distributed.diagnostics.plugin import SchedulerPlugin

        plugin = type("RestrictTasksPlugin", (RestrictTasks, SchedulerPlugin), {})({})
        dask_scheduler.add_plugin(plugin, name=RestrictTasks.name)
    plugin.names[layer] = dict(resources or {})


def _restrict_on_scheduler(client, layer: str, resources: dict) -> None:
    """Ask the scheduler of `client` to give the tasks of `layer` these resources (`RestrictTasks`)."""
    import functools
    import warnings

    try:
        client.run_on_scheduler(functools.partial(_add_restriction, layer=layer, resources=dict(resources)))
    except Exception as exc:  # noqa: BLE001 - e.g. a remote scheduler without gridkit installed
        warnings.warn(f"could not ask the scheduler to keep the blocks on the GPU workers ({type(exc).__name__}: {exc}); compute "
                      "under dask.config.set({'optimization.fuse.active': False}) to keep their dask.annotate resources", stacklevel=3)


def write_catalog(cat: xr.Dataset, path, *, client=None, overwrite: bool = False, progress: bool = False) -> Path:
    """Write a lazy catalog (`summarize_dataset`) to the Zarr store `path` through `gridkit.store`'s restartable writer:
    one region per block, a completion record (`catalogs.open` checks it), resume of an interrupted write, refusal
    of another job's output. With a `client` that has GPU workers, the regions ask for `GPU=1`. Returns `path`."""
    check_catalog(cat, where="cat")
    path = Path(path)
    chunk = int(cat.attrs.get("chunk") or (cat[str(next(iter(cat.data_vars)))].chunks or ((cat.sizes[STAR],),))[0][0])
    lazy = {str(k): getattr(v.data, "name", "") for k, v in cat.variables.items() if v.chunks is not None}
    stable = {k: str(v) for k, v in cat.attrs.items() if k not in ("date_created", "command")}
    inputs = [Path(p) for p in (cat.attrs.get("survey"), cat.attrs.get("model_dir")) if p and Path(p).exists()]
    fp = _store.fingerprint("write_catalog", STAR, chunk, int(cat.sizes[STAR]), stable, lazy)
    store, _ = _store.create(path, cat, dim=STAR, region_size=chunk, fingerprint=fp, overwrite=overwrite, inputs=inputs)
    try:
        make_region = _store.SliceOf(cat, STAR, _store.digest([_store.store_identity(p) for p in inputs]), [p for p in inputs if p.is_dir()])
    except BaseException:
        _store.release(store.target)
        raise
    failures = _store.write_regions(store, make_region, client=client, progress=progress, desc="catalog",
                                    resources=_survey.gpu_resources(client))
    if failures:
        first = sorted(failures)[0]
        raise StoreError(f"{len(failures)} of {len(store.regions)} region(s) of {path} failed (call again to retry them); "
                                f"region {first}: {failures[first]}")
    return path


__all__ = ["summarize_dataset", "write_catalog", "model_info", "ModelInfo"]
