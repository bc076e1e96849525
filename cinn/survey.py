"""Survey inference: a survey store -> a catalog store, chunk by chunk, restartable and deterministic.

`infer` writes the catalog's template up front (star_id, snr and the survey's per-star columns in full; the
posterior summaries as placeholders), then one task per chunk of stars computes `Posterior.summarize` for
its stars and writes its own aligned region through `gridkit.store` (completion record, resume, refusal to
mix). The draws of star j depend only on (seed, j) (`keys` = the star's index in the survey), so any
chunking, any worker and any resume give the same catalog.

The model is loaded once per worker process (a module-level cache keyed by model dir and model id), never
shipped with the tasks: a task carries the model dir path and the expected model id only. On a Dask
cluster whose workers declare the resource `GPU` (`dask worker --resources GPU=1`, one worker per GPU), the
tasks ask for `GPU=1` and the model runs on CUDA; otherwise on CPU.

`mock_survey` turns a degraded cube (or a noiseless grid) into a survey that keeps the true labels as
`true_<label>` columns, for evaluation: by default the test split of a model directory.
"""
from __future__ import annotations

import datetime as _dt
import shlex
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import xarray as xr

from catalogs.schema import QUANTILES
from gridkit import store as _store
from gridkit.errors import ConfigError, ExtrapolationWarning, GridError, StoreError
from gridkit.files import check_output
from gridkit.schema import STAR, WAVELENGTH, as_text, check_normalisation, check_same_wavelength, label_attrs

DEFAULT_CHUNK = 1024
OUTPUT_DTYPE = np.float32

# -- per-process caches (one model per worker process) ---------------------------------------------
_LOCK = threading.Lock()
_POSTERIORS: dict = {}
_SURVEYS: dict = {}
LOADS: dict = {"count": 0}  # models loaded by this process: in all, and per model dir (tests check "once per worker")


def default_loader(model_dir):
    import cinn

    return cinn.load(model_dir)


def _worker_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "cpu"
    if not torch.cuda.is_available():
        return "cpu"
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return "cuda"  # local threads on a machine with a GPU
    return "cuda" if worker.state.total_resources.get("GPU", 0) > 0 else "cpu"


def cached_posterior(model_dir, model_id: str, loader: Callable | None = None, device: str = "auto"):
    """The Posterior of `model_dir` for this process, loaded on first use; refuses a model dir whose model
    id changed since the job started."""
    device = _worker_device(device)
    key = (str(Path(model_dir).resolve()), model_id, device)
    with _LOCK:
        post = _POSTERIORS.get(key)
        if post is None:
            post = (loader or default_loader)(model_dir)
            if str(post.model_id) != str(model_id):
                raise StoreError(f"model_dir {model_dir} now holds model {post.model_id}, but this job started with {model_id}; refusing to mix models")
            if device != "cpu":
                post.to(device)
            post.warn_extrapolation = False  # `infer` checked the whole survey's S/N once
            _limit_threads()
            _POSTERIORS[key] = post
            LOADS["count"] += 1
            LOADS[key[0]] = LOADS.get(key[0], 0) + 1
    return post


def _limit_threads() -> None:
    """On a Dask worker, let torch use the worker's threads only (several workers share the cores)."""
    try:
        import torch
        from distributed import get_worker

        torch.set_num_threads(max(1, int(get_worker().state.nthreads)))
    except (ImportError, ValueError):
        pass


def _survey(path, source: str = "") -> xr.Dataset:
    """The survey at `path` opened once per process and job input: `source` (the survey's content digest, computed once
    per job by the client) is part of the key, so a survey rebuilt at the same path is opened afresh."""
    key = (str(Path(path).resolve()), source)
    with _LOCK:
        ds = _SURVEYS.get(key)
        if ds is None:
            ds = xr.open_zarr(key[0], consolidated=False, chunks=None)  # lazily indexed: a task reads its rows only
            _SURVEYS[key] = ds
    return ds


#: attributes by which xarray would transform values on writing (CF encoding): a variable carrying one is written by xarray
_CF_ENCODING = {"scale_factor", "add_offset", "dtype", "calendar", "_Unsigned", "missing_value"}
_CATALOGS: dict = {}  # {(store path, fingerprint): (identity of its record, {name: zarr array})}: one opened catalog per process


def _opened_catalog(path: Path, fingerprint: str) -> dict:
    """The arrays of the catalog store at `path`, opened once per process (write_empty_chunks on, as gridkit writes every
    chunk). Reopened when the store's record (a file of < 1 kB, read per region) changed since: the store was replaced
    (its creation time) or its template rewritten."""
    import zarr

    ident = (path / _store.RECORD_GROUP / "zarr.json").read_bytes()  # fingerprint, size, creation time, template digest
    key = (str(path), fingerprint)
    with _LOCK:
        hit = _CATALOGS.get(key)
        if hit is not None and hit[0] == ident:
            return hit[1]
    group = zarr.open_group(str(path), mode="r+")
    arrays = {name: arr.with_config({"write_empty_chunks": True}) for name, arr in group.arrays()}
    with _LOCK:
        _CATALOGS[key] = (ident, arrays)
    return arrays


class CatalogStore(_store.RegionStore):
    """The RegionStore of an `infer` catalog that writes a region's summaries straight into its Zarr arrays, opened once
    per worker process, all variables at once. xarray's region write (`RegionStore.write_region`) reopens the group and
    every array and writes them one by one: 0.35 s per chunk against 0.07 s (docs/survey.md, Performance). Same bytes,
    same completion record and content digest; a region with a variable that is not plain numeric, not in the store, of
    another dtype or with CF encoding attributes goes through `RegionStore.write_region` unchanged."""

    @classmethod
    def of(cls, store: _store.RegionStore) -> CatalogStore:
        return cls(store.path, store.dim, store.region_size, store.n, store.fingerprint, store.final)

    def write_region(self, i: int, ds: xr.Dataset, inputs: str = "") -> None:
        sl = self.regions[i]
        keep = [k for k, v in ds.variables.items() if self.dim in v.dims and k != self.dim]
        part = ds[keep].drop_vars([c for c in ds[keep].coords if c != self.dim], errors="ignore")
        if part.sizes.get(self.dim) != sl.stop - sl.start:
            return super().write_region(i, ds, inputs)  # which raises, naming the sizes
        part = part.drop_vars(self.dim, errors="ignore")
        writes = self._plan(part, sl)
        if writes is None:
            return super().write_region(i, ds, inputs)
        import asyncio

        from zarr.core.sync import sync

        async def _all():
            await asyncio.gather(*(arr._async_array.setitem(sel, values) for arr, sel, values in writes))

        sync(_all())
        self.mark("done", i, {"inputs": inputs, "content": _store._dataset_digest(part)})

    def _plan(self, part: xr.Dataset, sl: slice) -> list | None:
        """[(array, selection, values)] of the region's variables, or None when one of them needs xarray's encoding."""
        arrays = _opened_catalog(Path(self.path), self.fingerprint)
        out = []
        for name, var in part.variables.items():
            arr = arrays.get(str(name))
            values = np.asarray(var.values)
            if (arr is None or values.dtype.kind not in "biuf" or np.dtype(arr.dtype) != values.dtype
                    or tuple(getattr(arr.metadata, "dimension_names", None) or ()) != tuple(var.dims)
                    or _CF_ENCODING & set(arr.attrs) or not _plain_fill(arr, values.dtype)):
                return None
            sel = tuple(sl if d == self.dim else slice(None) for d in var.dims)
            if tuple(len(range(*s.indices(n))) for s, n in zip(sel, arr.shape)) != values.shape:
                return None
            out.append((arr, sel, values))
        return out


def _plain_fill(arr, dtype: np.dtype) -> bool:
    """True when xarray writes values of this array as they are: no _FillValue attribute, or NaN for floats."""
    if "_FillValue" not in arr.attrs:
        return True
    return dtype.kind == "f" and np.isnan(np.asarray(arr.fill_value, dtype=dtype))


class InferChunk:
    """make_region of `infer`: the posterior summaries of one chunk of stars. Small and picklable."""

    def __init__(self, model_dir, model_id, survey_path, samples, seed, label_names, loader=None, device="auto", missing="impute",
                 source: str = "", calibrated: bool = True, keep_samples: int = 0):
        self.keep_samples = int(keep_samples)
        self.model_dir, self.model_id, self.survey_path = str(model_dir), str(model_id), str(survey_path)
        self.samples, self.seed, self.label_names = int(samples), int(seed), tuple(label_names)
        self.loader, self.device, self.missing, self.source, self.calibrated = loader, device, missing, source, calibrated

    def inputs(self, i: int, sl: slice) -> str:
        """The survey's content digest: a chunk inferred from a survey that changed since is inferred again."""
        return self.source

    def __dask_tokenize__(self):
        """A deterministic token (names the map_blocks graph of `cinn.summarize_dataset`: equal jobs, equal names)."""
        loader = None if self.loader is None else f"{getattr(self.loader, '__module__', '')}.{getattr(self.loader, '__qualname__', repr(self.loader))}"
        return ("InferChunk", self.model_dir, self.model_id, self.survey_path, self.samples, self.seed, self.label_names, loader,
                self.device, self.missing, self.source, bool(self.calibrated), self.keep_samples)

    def __call__(self, i: int, sl: slice) -> xr.Dataset:
        survey = _survey(self.survey_path, self.source)
        with _store.reading(self.survey_path, "survey", ["flux", "snr"], sl):
            flux = np.asarray(survey["flux"].isel({STAR: sl}).values, dtype=np.float32)
            snr = np.asarray(survey["snr"].isel({STAR: sl}).values, dtype=np.float64)
        return self.summarize(flux, snr, np.arange(sl.start, sl.stop, dtype=np.int64))

    def summarize(self, flux: np.ndarray, snr: np.ndarray, keys: np.ndarray) -> xr.Dataset:
        """The catalog rows of the stars `keys` (their rows in the survey) from their flux (n, n_wave) and snr (n,),
        with this worker's cached model: what `infer` writes for a region and `cinn.summarize_dataset` computes
        for a block, by the one function `summarize_rows`."""
        post = cached_posterior(self.model_dir, self.model_id, self.loader, self.device)
        return summarize_rows(post, flux, snr, keys, samples=self.samples, seed=self.seed, label_names=self.label_names,
                              missing=self.missing, calibrated=self.calibrated, keep_samples=self.keep_samples)


def summarize_rows(post, flux, snr, keys, *, samples: int, seed: int, label_names, missing: str = "impute",
                   calibrated: bool = True, keep_samples: int = 0) -> xr.Dataset:
    """The catalog's posterior summaries of one chunk of stars: the per-chunk computation of `infer` (one region)
    and of `cinn.summarize_dataset` (one map_blocks block), shared so both give the same bytes.

    flux: (n, n_wave) float32 on the model's grid (NaN = missing pixel); snr: (n,) per Angstrom; keys: (n,) the stars'
    rows in the survey (their draws depend on (seed, key) only). Returns a Dataset along `star` (coordinate = keys)
    with <label>, <label>_quantiles(star, quantile), <label>_unconstrained, f_reject, flag_extrapolated, flag_snr_outside,
    flag_missing_flux, n_imputed; with keep_samples > 0 also samples(star, draw, label) and samples_in_bounds(star, draw).

    <label>_unconstrained: p84 - p16 of the (calibrated) quantiles >= UNCONSTRAINED_FRACTION x the label's p84 - p16 over
    the training split (`post.prior_width68`; False without one, or where the star has no quantiles). flag_snr_outside:
    the S/N lies outside the training S/N range `post.snr_range` (False when the model does not record it).
    """
    flux = np.asarray(flux, dtype=np.float32)
    snr = np.asarray(snr, dtype=np.float64)
    keys = np.asarray(keys, dtype=np.int64)
    n_missing = (~np.isfinite(flux)).sum(axis=1).astype(np.int32)
    if missing == "impute":  # the one rule for masked pixels (the training's masking augmentation feeds the same)
        flux, n_missing = post.scaler.fill_masked(flux)
    # a spectrum with missing pixels (NaN from `gridkit fourmostify` outside its coverage) is not inferred:
    # its row gets NaN summaries, f_reject 1 and flag_missing_flux, and the rest of the chunk goes on
    ok = np.isfinite(flux).all(axis=1) & np.isfinite(snr) & (snr > 0)
    n, nq = flux.shape[0], len(QUANTILES)
    out = {}
    keep = {"keep": int(keep_samples)} if keep_samples else {}  # a posterior without `keep` serves catalogs without samples
    summary = (post.summarize(flux[ok], snr[ok], n=samples, seed=seed, keys=keys[ok], calibrated=calibrated, **keep)
               if ok.any() else None)
    prior = getattr(post, "prior_width68", None)
    for name in label_names:
        maps, quants = np.full(n, np.nan, dtype=OUTPUT_DTYPE), np.full((n, nq), np.nan, dtype=OUTPUT_DTYPE)
        if summary is not None:
            maps[ok] = np.asarray(summary[name].values, dtype=OUTPUT_DTYPE)
            quants[ok] = np.asarray(summary[f"{name}_quantiles"].transpose(..., "quantile").values, dtype=OUTPUT_DTYPE)
        out[name] = ((STAR,), maps)
        out[f"{name}_quantiles"] = ((STAR, "quantile"), quants)
        out[f"{name}_unconstrained"] = ((STAR,), _unconstrained(quants, None if prior is None else prior[list(post.label_names).index(name)]))
    f_reject, flag = np.ones(n, dtype=OUTPUT_DTYPE), np.ones(n, dtype=bool)
    if summary is not None:
        f_reject[ok] = np.asarray(summary["f_reject"].values, dtype=OUTPUT_DTYPE)
        flag[ok] = np.asarray(summary["flag_extrapolated"].values, dtype=bool)
    out["f_reject"] = ((STAR,), f_reject)
    out["flag_extrapolated"] = ((STAR,), flag)
    from .posterior import snr_outside

    out["flag_snr_outside"] = ((STAR,), snr_outside(snr, getattr(post, "snr_range", None)))
    out["flag_missing_flux"] = ((STAR,), ~ok)
    out["n_imputed"] = ((STAR,), n_missing if missing == "impute" else np.zeros(n, dtype=np.int32))
    coords = {STAR: keys}
    if keep_samples:
        d = len(label_names)
        draws, inside = np.full((n, keep_samples, d), np.nan, dtype=OUTPUT_DTYPE), np.zeros((n, keep_samples), dtype=bool)
        if summary is not None:
            at = [list(summary["label"].values).index(x) for x in label_names]
            draws[ok] = np.asarray(summary["samples"].transpose(..., "draw", "label").values, dtype=OUTPUT_DTYPE)[..., at]
            inside[ok] = np.asarray(summary["samples_in_bounds"].transpose(..., "draw").values, dtype=bool)
        out["samples"] = ((STAR, "draw", "label"), draws)
        out["samples_in_bounds"] = ((STAR, "draw"), inside)
        from .posterior import sample_coords

        coords.update({k: v[:2] for k, v in sample_coords(label_names, keep_samples).items()})
    return xr.Dataset(out, coords=coords)


#: the variables of a catalog inferred with keep_samples > 0
SAMPLE_VARIABLES = ("samples", "samples_in_bounds")
#: a label is unconstrained when its posterior's central 68 % width is at least this fraction of the prior's (training split's)
UNCONSTRAINED_FRACTION = 0.8


def _unconstrained(quants: np.ndarray, prior_width) -> np.ndarray:
    """bool (n,): p84 - p16 of quantiles (n, len(QUANTILES)) >= UNCONSTRAINED_FRACTION x prior_width (all False without one)."""
    if prior_width is None or not np.isfinite(prior_width) or prior_width <= 0:
        return np.zeros(quants.shape[0], dtype=bool)
    width = quants[:, QUANTILES.index(0.84)].astype(np.float64) - quants[:, QUANTILES.index(0.16)]
    with np.errstate(invalid="ignore"):
        return np.isfinite(width) & (width >= UNCONSTRAINED_FRACTION * float(prior_width))


# -- validation ----------------------------------------------------------------------------------
def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_keep(keep_samples, samples: int) -> int:
    keep = _check_int("keep_samples", keep_samples, 0)
    if keep > samples:
        raise ConfigError(f"keep_samples must be <= samples ({samples}): it keeps that many of each star's draws; got {keep}")
    return keep


def open_survey(path) -> xr.Dataset:
    """Open and validate a survey store (flux(star, wavelength), snr(star), unique star_id(star)), lazily."""
    from gridkit.schema import validate_grid

    path = Path(path)
    ds = _store.open_complete(path, "survey_path")
    checked = validate_grid(ds, kind="survey")
    if checked["snr"].dims != (STAR,) or checked["star_id"].dims != (STAR,):
        raise GridError(f"survey {path}: snr and star_id must be 1-D along 'star', got {ds['snr'].dims} and {ds['star_id'].dims}")
    return ds


def _passthrough(survey: xr.Dataset, reserved: set[str]) -> dict[str, xr.Variable]:
    out = {}
    for name, var in survey.variables.items():
        name = str(name)
        if name in (STAR, WAVELENGTH, "flux") or var.dims != (STAR,):
            continue
        if name in reserved and name not in ("star_id", "snr"):
            raise GridError(f"survey column {name!r} has the name of a catalog output; rename it in the survey")
        values = var.values
        if values.dtype.kind in "OUST" or str(values.dtype).startswith("StringDType"):
            values = as_text(values)
        attrs = dict(var.attrs)
        attrs.setdefault("long_name", _DEFAULT_LONG.get(name, name))
        attrs.setdefault("units", _DEFAULT_UNITS.get(name, "1"))
        out[name] = xr.Variable((STAR,), values, attrs)
    return out


_DEFAULT_LONG = {"star_id": "star identifier (from the survey)", "snr": "signal-to-noise ratio per Angstrom of the input spectrum",
                 "ra": "right ascension", "dec": "declination"}
_DEFAULT_UNITS = {"ra": "deg", "dec": "deg"}


def _template(survey, post, survey_path, model_dir, n, chunk, samples, seed, command, keep_samples: int = 0,
              missing: str = "impute") -> xr.Dataset:
    import dask.array as da

    import gridkit

    labels = tuple(post.label_names)
    reserved = (set(labels) | {f"{x}_quantiles" for x in labels} | {f"{x}_unconstrained" for x in labels}
                | {"f_reject", "flag_extrapolated", "flag_snr_outside", "flag_missing_flux", "n_imputed", "quantile", *SAMPLE_VARIABLES})
    data = {}
    for name in labels:
        attrs = label_attrs(name)
        data[name] = xr.Variable((STAR,), da.zeros(n, dtype=OUTPUT_DTYPE, chunks=chunk),
                                 {**attrs, "long_name": f"{attrs['long_name']} (maximum a posteriori)"})
        data[f"{name}_quantiles"] = xr.Variable((STAR, "quantile"), da.zeros((n, len(QUANTILES)), dtype=OUTPUT_DTYPE, chunks=(chunk, -1)),
                                                {**attrs, "long_name": f"{attrs['long_name']}, posterior quantiles"})
        data[f"{name}_unconstrained"] = xr.Variable(
            (STAR,), da.zeros(n, dtype=bool, chunks=chunk),
            {"units": "1", "long_name": f"{attrs['long_name']} unconstrained: posterior p84 - p16 >= {UNCONSTRAINED_FRACTION:g} x that "
                                        "of the training labels (the prior)"})
    data["f_reject"] = xr.Variable((STAR,), da.zeros(n, dtype=OUTPUT_DTYPE, chunks=chunk),
                                   {"units": "1", "long_name": "fraction of posterior samples outside the training label bounds"})
    data["flag_extrapolated"] = xr.Variable((STAR,), da.zeros(n, dtype=bool, chunks=chunk),
                                            {"units": "1", "long_name": "more than half of the posterior samples outside the training label bounds"})
    data["flag_snr_outside"] = xr.Variable((STAR,), da.zeros(n, dtype=bool, chunks=chunk),
                                           {"units": "1", "long_name": "S/N per Angstrom outside the model's training S/N range (an extrapolation)"})
    data["flag_missing_flux"] = xr.Variable((STAR,), da.zeros(n, dtype=bool, chunks=chunk),
                                            {"units": "1", "long_name": "spectrum has non-finite flux or S/N: not inferred (labels NaN, f_reject 1)"})
    data["n_imputed"] = xr.Variable((STAR,), da.zeros(n, dtype=np.int32, chunks=chunk),
                                    {"units": "1", "long_name": "missing flux pixels replaced by the training mean flux (infer missing='impute')"})
    coords = {}
    if keep_samples:
        from .posterior import SAMPLES_ATTRS, SAMPLES_IN_BOUNDS_ATTRS, sample_coords

        coords = sample_coords(labels, keep_samples)
        data["samples"] = xr.Variable((STAR, "draw", "label"), da.zeros((n, keep_samples, len(labels)), dtype=OUTPUT_DTYPE,
                                                                       chunks=(chunk, -1, -1)), dict(SAMPLES_ATTRS))
        data["samples_in_bounds"] = xr.Variable((STAR, "draw"), da.zeros((n, keep_samples), dtype=bool, chunks=(chunk, -1)),
                                                dict(SAMPLES_IN_BOUNDS_ATTRS))
    data.update(_passthrough(survey, reserved))
    attrs = {
        "title": "gridkit stellar-label catalog",
        "Conventions": "CF-1.10",
        "model_id": str(post.model_id),
        "model_hash": _model_hash(post),
        "model_dir": str(Path(model_dir).resolve()),
        "survey": str(Path(survey_path).resolve()),
        "gridkit_version": gridkit.__version__,
        "date_created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "samples": int(samples),
        "seed": int(seed),
        "keep_samples": int(keep_samples),
        "missing": str(missing),
        "unconstrained_fraction": UNCONSTRAINED_FRACTION,
        "chunk": int(chunk),
        "label_names": list(labels),
        "map_estimate": "posterior sample of highest flow density among the samples inside the training bounds",
        "history": "gridkit infer",
    }
    return xr.Dataset(
        data,
        coords={STAR: (STAR, np.arange(n), {"long_name": "row in the survey", "units": "1"}),
                "quantile": ("quantile", np.array(QUANTILES), {"long_name": "posterior quantile", "units": "1"}), **coords},
        attrs=attrs,
    )


def _model_hash(post) -> str:
    """sha256 of the weights that run: the one `cinn.load` computed from the bytes it loaded (`weights_sha256`), never
    a value read from model.json; the model id for a custom loader whose posterior records no hash."""
    digest = getattr(post, "weights_sha256", None)
    return f"sha256:{digest}" if digest else str(post.model_id)


def gpu_resources(client) -> dict | None:
    """{'GPU': 1} when some worker of the cluster declares a GPU resource, else None."""
    if client is None:
        return None
    workers = client.scheduler_info(n_workers=-1).get("workers", {}) if _takes_n_workers(client) else client.scheduler_info().get("workers", {})
    return {"GPU": 1} if any((w.get("resources") or {}).get("GPU", 0) >= 1 for w in workers.values()) else None


def _takes_n_workers(client) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


# -- the job -------------------------------------------------------------------------------------
def infer(
    model_dir,
    survey_path,
    out,
    *,
    samples: int = 4096,
    chunk: int | None = None,
    seed: int = 0,
    client=None,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    loader: Callable | None = None,
    device: str = "auto",
    n_threads: int = 1,
    missing: str = "impute",
    calibrated: bool = True,
    keep_samples: int = 0,
) -> Path:
    """Infer the labels of every star of `survey_path` with the model in `model_dir`; write the catalog `out`.

    samples: posterior draws per star; chunk: stars per task and per Zarr chunk (default: the survey's chunk
    along `star`, at most 1024); seed: the catalog is a function of (model, survey, samples, seed);
    client: a distributed Client (GPU workers through the `GPU` resource), default: `n_threads` local
    threads; overwrite: replace an existing `out` (otherwise it is resumed if the same job made it, and
    refused if not); loader: model_dir -> Posterior (default `cinn.load`); device: 'auto' (CUDA on GPU
    workers), 'cpu' or 'cuda'. missing: 'impute' (default: masked pixels take the training mean flux, as the
    training's masking augmentation feeds them; counted in n_imputed) or 'flag' (a spectrum with missing pixels is not
    inferred, its row is NaN with flag_missing_flux). calibrated: apply the model's interval calibration
    (`cinn.calibration`, when one was fitted; recorded in the catalog's attr `interval_calibration`). keep_samples: store
    the first N of each star's draws as `samples(star, draw, label)` float32 (all N, those outside the training bounds too,
    which `samples_in_bounds(star, draw)` tells apart; calibrated like the quantiles), default 0: none. Returns the catalog
    path. Everything is validated before anything is written.
    """
    samples = _check_int("samples", samples, 1)
    keep_samples = _check_keep(keep_samples, samples)
    seed = _check_int("seed", seed, 0)
    if missing not in ("flag", "impute"):
        raise ConfigError(f"missing must be 'flag' (spectra with missing pixels are not inferred) or 'impute', got {missing!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    import dask

    # the preparation below reads small per-star columns: in this process, not as hundreds of tiny tasks on the cluster
    with dask.config.set(scheduler="synchronous"):
        store, make_region, labels = _prepare(model_dir, survey_path, out, samples, chunk, seed, client, overwrite, progress, command,
                                              loader, device, missing, calibrated, keep_samples)
    failures = _store.write_regions(store, make_region, client=client, n_threads=n_threads, on_error="record", progress=progress,
                                    desc="infer", resources=gpu_resources(client))
    if failures:
        first = sorted(failures)[0]
        raise StoreError(f"{len(failures)} of {len(store.regions)} chunk(s) of {out} failed (rerun the same command to retry them); "
                         f"chunk {first}: {failures[first]}")
    return Path(out)


def _prepare(model_dir, survey_path, out, samples, chunk, seed, client, overwrite, progress, command, loader, device, missing="impute",
             calibrated=True, keep_samples=0):
    """Validate everything, write the template (or find the one to resume); return (store, make_region, labels)."""
    model_dir, survey_path, out = Path(model_dir), Path(survey_path), Path(out)
    if not model_dir.is_dir():
        raise StoreError(f"model_dir {model_dir} does not exist or is not a directory")
    check_output(out, [survey_path, model_dir])
    survey = open_survey(survey_path)
    post = (loader or default_loader)(model_dir)
    model_id, labels = str(post.model_id), tuple(post.label_names)
    check_same_wavelength(survey[WAVELENGTH].values, post.wavelength, what=f"survey {survey_path}", of=f"model_dir {model_dir}")
    check_normalisation(survey.attrs.get("normalisation", "none"), getattr(post, "normalisation", "none"), f"the spectra of survey {survey_path}")
    from .posterior import snr_outside_training

    message = snr_outside_training(np.asarray(survey["snr"].values, dtype=np.float64), getattr(post, "snr_range", None))
    if message:
        warnings.warn(f"survey {survey_path}: {message}", ExtrapolationWarning, stacklevel=3)
    post.warn_extrapolation = False
    n = int(survey.sizes[STAR])
    if n == 0:
        raise GridError(f"survey {survey_path} has no stars")
    if chunk is None:
        native = survey["flux"].encoding.get("chunks") or (n,)
        chunk = max(1, min(int(native[0]), DEFAULT_CHUNK, n))
    chunk = _check_int("chunk", chunk, 1)
    chunk = min(chunk, n)
    if out.exists() and not overwrite:
        _refuse_other_model(out, post, model_dir)
    fp = _store.fingerprint("infer", str(post.model_id), list(post.label_names), str(survey_path.resolve()), samples, seed, chunk,
                            *(() if missing == "flag" and not keep_samples else (missing,)),
                            *(({"keep_samples": keep_samples},) if keep_samples else ()))  # 0: the fingerprint of catalogs before it
    calibration = getattr(post, "calibration", None) if calibrated else None
    if calibration is not None:  # a refitted calibration is another job
        fp = _store.fingerprint(fp, {"interval calibration": calibration.summary()})
    template = _template(survey, post, survey_path, model_dir, n, chunk, samples, seed, command, keep_samples=keep_samples, missing=missing)
    template.attrs["interval_calibration"] = "none" if calibration is None else calibration.summary()
    from catalogs.schema import catalog_encoding  # one shard per region when chunk is a multiple of CHUNK_ROWS stars above it

    store, resumed = _store.create(out, template, dim=STAR, region_size=chunk, fingerprint=fp, overwrite=overwrite,
                                   inputs=[survey_path, model_dir], encoding=catalog_encoding(template, chunk))
    store = CatalogStore.of(store)  # regions written through one opened catalog per worker process
    if progress:
        done = len(store.done())
        print(f"gridkit infer: {n} stars in {len(store.regions)} chunks of {chunk}"
              + (f"; resuming, {done} chunk(s) already done" if resumed else "") + f" -> {out}", file=sys.stderr)
    if client is None and _worker_device(device) == "cpu":  # local threads share this process's copy
        with _LOCK:
            _POSTERIORS.setdefault((str(model_dir.resolve()), model_id, "cpu"), post)
    del post  # distributed workers load their own copy, once per worker process, never shipped with the tasks
    make_region = InferChunk(model_dir.resolve(), model_id, survey_path.resolve(), samples, seed, labels, loader=loader, device=device,
                             source=_store.digest(_store.store_identity(survey_path)),
                             missing=missing, calibrated=calibrated, keep_samples=keep_samples)
    return store, make_region, labels


def _refuse_other_model(out: Path, post, model_dir) -> None:
    import zarr

    try:
        attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    except Exception:  # noqa: BLE001 - not a Zarr store: gridkit.store refuses it with its own message
        return
    old = attrs.get("model_id")
    if old is not None and str(old) != str(post.model_id):
        raise StoreError(f"catalog {out} was made by model {old}, not by model_dir {model_dir} (model {post.model_id}); "
                         "refusing to mix models in one catalog. Choose another --out or pass overwrite=True (--overwrite)")


# -- mock survey ---------------------------------------------------------------------------------
def mock_survey(
    cube_path,
    out,
    *,
    snr: float = 250.0,
    split: str | None = "test",
    model_dir=None,
    models: Iterable | None = None,
    seed: int = 0,
    id_prefix: str = "mock-",
    chunk: int | None = None,
    overwrite: bool = False,
    client=None,
    progress: bool = False,
) -> Path:
    """A survey from a degraded cube (flux(model, snr, wavelength): the spectra at S/N `snr`) or from a
    noiseless grid (flux(model, wavelength): Gaussian noise at S/N `snr` per Angstrom added, seeded per model).

    Stars: the `split` ('train', 'test', 'validation') of `model_dir`'s recorded split when model_dir is
    given, else `models` (ids) when given, else every model. Keeps the true labels as `true_<label>` and the
    grid's model id as `model`; star_id is `<id_prefix><model id>`.
    """
    from gridkit.grid import open_grid
    from gridkit.schema import label_names

    cube_path, out = Path(cube_path), Path(out)
    if not (isinstance(snr, (int, float, np.number)) and np.isfinite(snr) and snr > 0):
        raise ConfigError(f"snr must be a finite number > 0, got {snr!r}")
    seed = _check_int("seed", seed, 0)
    ds = open_grid(cube_path)
    if ds.flux.dims[0] != "model":
        raise GridError(f"cube_path {cube_path} must be a grid or cube along 'model', got flux{ds.flux.dims}")
    labels = label_names(ds, "model")
    if not labels:
        raise GridError(f"cube_path {cube_path} has no label variables to keep as true labels")
    wanted = _selected_models(np.asarray(ds["model"].values), cube_path, split, model_dir, models)
    ds = ds.sel(model=wanted)
    flux, noise = _spectra_at(ds, float(snr), seed, cube_path)
    n = wanted.size
    flux = flux.rename({"model": STAR}).drop_vars(STAR, errors="ignore")
    survey = xr.Dataset(
        {"flux": flux.variable.copy(deep=False),
         "snr": ((STAR,), np.full(n, float(snr)), {"units": "1", "long_name": "signal-to-noise ratio per Angstrom"}),
         "star_id": ((STAR,), np.array([f"{id_prefix}{m}" for m in wanted.tolist()], dtype=object), {"units": "1", "long_name": "star identifier"}),
         "model": ((STAR,), wanted, {"units": "1", "long_name": f"model id in {cube_path.name}"})},
        coords={STAR: np.arange(n), WAVELENGTH: ds[WAVELENGTH]},
        attrs={"kind": "mock survey", "source": str(cube_path.resolve()), "split": split if model_dir is not None else "",
               "model_dir": str(model_dir or ""), "snr": float(snr), "noise": noise,
               **{k: v for k, v in ds.attrs.items() if k in ("instrument", "arms", "resolving_power", "snr_convention", "normalisation")}},
    )
    for name in labels:
        survey[f"true_{name}"] = ((STAR,), np.asarray(ds[name].values), {**label_attrs(name), "long_name": f"true {label_attrs(name)['long_name']}"})
    region = max(1, min(n, chunk or DEFAULT_CHUNK))
    survey["flux"] = survey["flux"].chunk({STAR: region, WAVELENGTH: -1})
    _store.write_dataset(survey, out, dim=STAR, region_size=region, overwrite=overwrite, client=client, progress=progress, desc="mock-survey",
                         inputs=[cube_path, *([model_dir] if model_dir else [])],
                         fingerprint_parts=("mock_survey", str(cube_path.resolve()),
                                            float(snr), split, str(model_dir or ""), _store.fingerprint(wanted.tolist()), seed, id_prefix))
    return out


def _selected_models(ids: np.ndarray, cube_path, split, model_dir, models) -> np.ndarray:
    """The model ids of a mock survey: `model_dir`'s recorded `split`, else `models`, else all `ids`. With
    `model_dir`, the cube must hold that split's models, each with the id AND the labels it had in the training
    data (model.json records a digest of them): the split of one cube names other models in another."""
    if model_dir is not None:
        if split not in ("train", "test", "validation"):
            raise ConfigError(f"split must be 'train', 'test' or 'validation', got {split!r}")
        from cinn.checkpoint import MODEL_JSON, read_json
        from cinn.data import model_digests, recorded_split
        from gridkit.grid import open_grid

        meta = read_json(Path(model_dir) / MODEL_JSON)
        wanted, recorded = recorded_split(model_dir, meta)[split]
    elif models is not None:
        wanted = np.asarray(list(models))
    else:
        wanted = ids
    missing = np.setdiff1d(wanted, ids)
    if missing.size:
        raise GridError(f"{missing.size} model id(s) of the selection are not in {cube_path}, e.g. {missing[:5].tolist()}")
    if wanted.size == 0:
        raise GridError("the selection of models is empty")
    if model_dir is not None:
        names = list(meta.get("label_names") or [])
        ds = open_grid(cube_path)
        lacking = [n for n in names if n not in ds]
        if lacking:
            raise GridError(f"cube_path {cube_path} lacks the label(s) {', '.join(lacking)} of model_dir {model_dir}")
        index = {v: i for i, v in enumerate(ids.tolist())}
        at = np.array([index[v] for v in wanted.tolist()], dtype=np.int64)
        labels = np.stack([np.asarray(ds[n].values, dtype=np.float64)[at] for n in names], axis=1)
        other = model_digests(wanted, labels) != recorded
        if other.any():
            raise GridError(f"cube_path {cube_path} is not the data model_dir {model_dir} was trained on: {int(other.sum())} of the "
                            f"{wanted.size} '{split}' model ids have other labels there than in training (e.g. model "
                            f"{wanted[other][0]}), so they are other models; use the cube the model was trained on (or a copy "
                            "or re-noised version of its grid), or select models by id without the model directory")
    return wanted


def _spectra_at(ds: xr.Dataset, snr: float, seed: int, cube_path) -> tuple[xr.DataArray, str]:
    """flux(model, wavelength) at S/N `snr`: the cube's own copy, or noise added to a noiseless grid; and a note."""
    from gridkit.degradation import add_noise
    from gridkit.schema import SNR

    if SNR in ds.flux.dims:
        have = np.asarray(ds[SNR].values, dtype=float)
        hit = np.flatnonzero(np.isclose(have, snr, rtol=1e-6))
        if not hit.size:
            raise GridError(f"snr={snr:g} is not an S/N of cube {cube_path}; it has {', '.join(f'{s:g}' for s in have)}")
        return ds.flux.isel({SNR: int(hit[0])}, drop=True), f"the cube's own noise at S/N {snr:g}"
    flux = add_noise(ds, snr=[snr], seed=seed).flux.isel({SNR: 0}, drop=True)
    return flux, f"Gaussian noise at S/N {snr:g} per Angstrom added (seed {seed})"


__all__ = ["infer", "mock_survey", "open_survey", "InferChunk", "summarize_rows", "cached_posterior", "gpu_resources", "QUANTILES"]
