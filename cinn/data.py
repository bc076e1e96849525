"""Training data: the split by model, and a Zarr-backed streaming loader that never loads the whole cube.

Two modes:
- "stored":  the degraded cube flux(model, snr, wavelength); a sample is one (model, snr) spectrum.
- "dynamic": a noiseless grid flux(model, wavelength) (or the highest-S/N copy of a cube); every time a
  chunk is read, each model gets `copies_per_model` noisy copies at S/N per Angstrom drawn log-uniform in
  `snr_range`, noise sigma = |flux| / S/N_pixel (gridkit.kernels.noise, the published Eq. 1).

The loader (`CubeStream`, a torch IterableDataset) reads whole chunks along `model` in a random order,
shuffles them through a buffer of `shuffle_buffer` samples, and yields ready batches (standardized targets
and the feature network's input). Worker processes start with spawn/forkserver and open the store
themselves. Every draw depends only on (seed, epoch, worker, pass, chunk), so a stream is reproducible
(resume = uninterrupted).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gridkit.errors import ConfigError, GridError, StoreError
from gridkit.files import atomic_write_text
from gridkit.kernels import noise
from gridkit.schema import decode_packed
from gridkit.store import reading, rng_for

from .transforms import mask_runs

SPLITS = ("train", "test", "validation")
SPLIT_FILE = "split.json"


# -- split ---------------------------------------------------------------------------------------
def split_models(model_ids, fractions=(0.75, 0.20, 0.05), seed: int = 42, out_dir=None,
                 train_models: int | None = None) -> dict[str, np.ndarray]:
    """Split model ids into train/test/validation (a model's S/N copies never cross splits).

    Returns {split: sorted model ids}; with `out_dir`, the split is also recorded in out_dir/split.json.
    train_models: keep only the first N training models in the split's seeded order (the permutation that
    made the split), so a smaller N is a subset of a larger one; test and validation do not change with it.
    ConfigError where N < 1 or N exceeds the training split.
    """
    ids = np.asarray(model_ids)
    n = ids.size
    if n < 3:
        raise GridError(f"need at least 3 models to split into train/test/validation, got {n}")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise ConfigError(f"split fractions must be three values >= 0 summing to 1, got {tuple(fractions)}")
    if np.unique(ids).size != n:
        raise GridError("model ids must be unique to split by model")
    order = rng_for(seed, 0x5917).permutation(n)
    n_test = int(round(fractions[1] * n))
    n_val = max(1, int(round(fractions[2] * n))) if fractions[2] > 0 else 0
    n_train = n - n_test - n_val
    if n_train < 1:
        raise GridError(f"no training models left with {n} models and fractions {tuple(fractions)}")
    parts = {"train": order[:n_train], "test": order[n_train:n_train + n_test], "validation": order[n_train + n_test:]}
    if train_models is not None:
        if not isinstance(train_models, (int, np.integer)) or isinstance(train_models, bool) or train_models < 1:
            raise ConfigError(f"train_models must be a positive integer (or None: the whole training split), got {train_models!r}")
        if train_models > n_train:
            raise ConfigError(f"train_models ({int(train_models)}) exceeds the training split ({n_train} of {n} models with "
                              f"fractions {tuple(fractions)}): pass at most {n_train} or None")
        parts["train"] = parts["train"][:int(train_models)]  # the permutation's order: nested subsets
    split = {k: np.sort(ids[v]) for k, v in parts.items()}
    if out_dir is not None:
        write_split(out_dir, split, split_info(seed, fractions, train_models, n_train))
    return split


def split_from_model(model_ids, digests, model_dir, seed: int = 42, train_models: int | None = None) -> dict[str, np.ndarray]:
    """Keep the test and validation splits a trained model recorded (`model_dir`/split.json, checked against its
    model.json): every other model of the store trains. A network retrained on a grown grid (more models, the first
    ones unchanged) or on a grid with more models added is then measured on the same held-out models as the first.

    model_ids (n,) and digests (n,): the store's ids and their `model_digests` (in the training's label order).
    Every kept model must be in the store with the same labels under the same id (GridError naming them otherwise).
    train_models: the first N training models in an order seeded by `seed`, as `split_models` does.
    Returns {split: sorted model ids}."""
    ids = np.asarray(model_ids)
    if np.unique(ids).size != ids.size:
        raise GridError("model ids must be unique to split by model")
    from .checkpoint import MODEL_JSON

    if not (Path(model_dir) / MODEL_JSON).is_file():
        raise StoreError(f"split_from: {model_dir} is not a trained model directory (it has no {MODEL_JSON})")
    recorded = recorded_split(model_dir)
    index = {v: i for i, v in enumerate(ids.tolist())}
    held = set()
    for k in ("test", "validation"):
        kept, dig = recorded[k]
        missing = [v for v in kept.tolist() if v not in index]
        if missing:
            raise GridError(f"split_from: {len(missing)} of the {kept.size} {k} models of {model_dir} are not in this store "
                            f"(ids {', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''}): a kept split needs "
                            "them all (merge-grids renumbers the models unless --keep-ids; a grid grown with synth --n-models keeps its ids)")
        changed = [v for v, d in zip(kept.tolist(), dig.tolist()) if str(digests[index[v]]) != d]
        if changed:
            raise GridError(f"split_from: {len(changed)} of the {kept.size} {k} models of {model_dir} have other labels in this store under "
                            f"the same id (ids {', '.join(map(str, changed[:5]))}{', ...' if len(changed) > 5 else ''}), or the "
                            "labels are learnt in another order: not the same models")
        held.update(kept.tolist())
    train = np.array([v for v in ids.tolist() if v not in held], dtype=ids.dtype)
    if train.size == 0:
        raise GridError(f"split_from: no training models left: every model of the store is in the test or validation split of {model_dir}")
    if train_models is not None:
        if train_models > train.size:
            raise ConfigError(f"train_models ({int(train_models)}) exceeds the training models ({train.size}: the store's models "
                              f"outside {model_dir}'s test and validation splits): pass at most {train.size} or None")
        train = np.sort(train)[rng_for(seed, 0x5917).permutation(train.size)[:int(train_models)]]
    return {"train": np.sort(train), "test": np.sort(recorded["test"][0]), "validation": np.sort(recorded["validation"][0])}


def split_info(seed, fractions, train_models: int | None = None, n_train: int | None = None, split_from=None) -> dict:
    """What split.json records beside the ids: the seed, the fractions (or, with `split_from`, the model directory whose
    test and validation splits were kept) and, with `train_models`, that N and the size of the whole training split it
    was drawn from (split.json's 'train' holds the N ids actually used)."""
    info = {"seed": int(seed)}
    if split_from is None:
        info["fractions"] = [float(f) for f in fractions]
    else:
        info["split_from"] = str(Path(split_from).resolve())
    if train_models is not None:
        info["train_models"] = int(train_models)
        info["train_split_size"] = None if n_train is None else int(n_train)
    return info


def write_split(out_dir, split: dict, info: dict | None = None, digests: dict | None = None) -> Path:
    """Record `split` ({split: model ids}) in out_dir/split.json, with `digests` ({split: `model_digests` of those
    models, aligned with the ids}) where given."""
    doc = {**(info or {}), **{k: np.asarray(split[k]).tolist() for k in SPLITS}}
    if digests is not None:
        doc["digests"] = {k: [str(v) for v in digests[k]] for k in SPLITS}
    return atomic_write_text(Path(out_dir) / SPLIT_FILE, json.dumps(doc))


def read_split(model_dir) -> dict[str, np.ndarray]:
    """{'train'|'test'|'validation': model ids} recorded by training in model_dir/split.json."""
    return {k: v[0] for k, v in _read_split_doc(model_dir).items()}


def _read_split_doc(model_dir) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    path = Path(model_dir) / SPLIT_FILE
    if not path.is_file():
        raise StoreError(f"{path} does not exist: model_dir {model_dir} has no recorded split")
    try:
        doc = json.loads(path.read_text())
        digests = doc.get("digests")
        out = {k: (np.asarray(doc[k]), None if digests is None else np.asarray(digests[k], dtype=str)) for k in SPLITS}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{path} is corrupt: {exc}") from exc
    for k, (ids, dig) in out.items():
        if dig is not None and dig.shape != ids.shape:
            raise StoreError(f"{path} is corrupt: {dig.size} digests for the {ids.size} '{k}' models")
    return out


def model_digests(ids, labels) -> np.ndarray:
    """What identifies each model of a grid across copies, re-noised cubes and re-chunkings: the first 16 hex
    digits of sha256(id, labels rounded to float32) per model. ids (n,), labels (n, n_labels) physical units
    (in the model's label order). Returns (n,) str."""
    ids = np.asarray(ids).reshape(-1)
    lab = np.ascontiguousarray(np.asarray(labels, dtype=np.float64).astype("<f4") + np.float32(0.0))  # -0.0 is 0.0
    if lab.ndim != 2 or lab.shape[0] != ids.size:
        raise GridError(f"labels must have shape (n_model={ids.size}, n_labels), got {lab.shape}")
    return np.array([hashlib.sha256(str(m).encode() + b"\0" + lab[i].tobytes()).hexdigest()[:16] for i, m in enumerate(ids.tolist())],
                    dtype=str)


def split_digest(digests) -> str:
    """sha256 of one split's per-model digests in the split's order (model.json records it per split)."""
    return hashlib.sha256("\n".join(str(d) for d in np.asarray(digests).tolist()).encode()).hexdigest()


def recorded_split(model_dir, meta: dict | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (model ids, `model_digests` of their (id, labels) in the training data)} of a model directory:
    split.json's per-model digests, checked against the per-split digests model.json recorded at training
    (`meta`: model.json, read when None). StoreError for a model directory that records none (trained
    before gridkit recorded them) or whose split.json does not match its model.json."""
    from .checkpoint import MODEL_JSON, read_json

    model_dir = Path(model_dir)
    meta = read_json(model_dir / MODEL_JSON) if meta is None else meta
    recorded = (meta.get("training_data") or {}).get("split_digests")
    doc = _read_split_doc(model_dir)
    if not recorded or any(dig is None for _, dig in doc.values()):
        raise StoreError(f"model_dir {model_dir} records no digest of its split's models (id and labels; trained before gridkit "
                         "recorded them), so its training models cannot be told apart from other models with the same ids: "
                         "retrain it with this gridkit")
    for k, (_, dig) in doc.items():
        if split_digest(dig) != recorded.get(k):
            raise StoreError(f"{model_dir / SPLIT_FILE} does not match {model_dir / MODEL_JSON}: the '{k}' models recorded there "
                             "differ from those the model was trained with (was split.json replaced?)")
    return doc


# -- the training store --------------------------------------------------------------------------
@dataclass
class TrainingStore:
    """What the trainer needs to know about a cube or noiseless grid (labels are small: held in memory)."""

    path: Path
    mode: str  # "stored" | "dynamic"
    model_ids: np.ndarray
    labels: np.ndarray  # (n_model, n_labels) float64, physical units
    label_names: tuple[str, ...]
    snr: np.ndarray | None  # (n_snr,) per Angstrom (stored cube), None for a noiseless grid
    wavelength: np.ndarray
    pixel_width: np.ndarray
    chunk: int  # models per chunk
    attrs: dict
    flux: object  # lazy DataArray
    noiseless_snr_index: int | None  # dynamic mode on a cube: the S/N copy used as noiseless

    @property
    def n_model(self) -> int:
        return int(self.model_ids.size)


def open_training_store(path, label_names, loader: str = "auto") -> TrainingStore:
    from gridkit.grid import open_grid
    from gridkit.kernels.rebin import pixel_widths
    from gridkit.schema import MODEL, SNR

    path = Path(path)
    ds = open_grid(path)
    dims = tuple(ds.flux.dims)
    if MODEL not in dims or dims[0] != MODEL:
        raise GridError(f"training data must be a cube flux(model, snr, wavelength) or a grid flux(model, wavelength); {path} has {dims}")
    missing = [n for n in label_names if n not in ds]
    if missing:
        raise GridError(f"training data {path} lacks label(s) {', '.join(missing)} required by the config's labels")
    is_cube = SNR in dims
    mode = ("stored" if is_cube else "dynamic") if loader == "auto" else loader
    if mode == "stored" and not is_cube:
        raise ConfigError(f"loader='stored' needs a cube flux(model, snr, wavelength); {path} is a noiseless grid {dims}: use loader 'dynamic'")
    lab = ds[list(label_names)].compute()  # one read of the (small) label arrays, not one dask compute per label
    labels = np.stack([np.asarray(lab[n].values, dtype=np.float64) for n in label_names], axis=1)
    wl = np.asarray(ds.wavelength.values, dtype=np.float64)
    snr = np.asarray(ds[SNR].values, dtype=np.float64) if is_cube else None
    chunks = ds.flux.encoding.get("chunks") or ds.flux.encoding.get("preferred_chunks")
    if isinstance(chunks, dict):
        chunk = int(chunks.get(MODEL, ds.sizes[MODEL]))
    elif chunks:
        chunk = int(chunks[0])
    else:
        chunk = int(ds.flux.data.chunks[0][0]) if hasattr(ds.flux.data, "chunks") else int(ds.sizes[MODEL])
    return TrainingStore(
        path=path, mode=mode, model_ids=np.asarray(ds[MODEL].values), labels=labels, label_names=tuple(label_names),
        snr=snr, wavelength=wl, pixel_width=pixel_widths(wl), chunk=max(1, chunk), attrs=dict(ds.attrs), flux=ds.flux,
        noiseless_snr_index=int(np.argmax(snr)) if (is_cube and mode == "dynamic") else None,
    )


def flux_digest_lazy(flux):
    """Lazy sha256 of every chunk of a flux (its values as read, dask chunk by chunk): computed in the pass of
    the flux statistics, it makes the training data's hash cover the flux itself (`flux_digest`)."""
    arr = flux.data if hasattr(flux, "dims") else flux

    def one(block):
        out = np.empty((1,) * block.ndim, dtype=object)
        out.flat[0] = hashlib.sha256(np.ascontiguousarray(block)).hexdigest()
        return out

    return arr.map_blocks(one, dtype=object, chunks=tuple((1,) * len(c) for c in arr.chunks))


def flux_digest(blocks: np.ndarray, flux) -> str:
    """sha256 of a flux's content from its computed `flux_digest_lazy` (chunk digests in order, shape, dtype)."""
    h = hashlib.sha256(f"{tuple(flux.shape)}|{np.dtype(flux.dtype).str}|".encode())
    for d in np.asarray(blocks).ravel().tolist():
        h.update(str(d).encode())
    return h.hexdigest()


def inverse_snr2_loguniform(lo: float, hi: float) -> float:
    """E[1 / S^2] for S log-uniform on [lo, hi]."""
    if hi <= lo * (1 + 1e-12):
        return 1.0 / lo**2
    return (lo**-2 - hi**-2) / (2.0 * math.log(hi / lo))


def logsnr_moments(store: TrainingStore, snr_range) -> tuple[float, float]:
    if store.mode == "stored":
        logs = np.log10(store.snr)
        return float(logs.mean()), float(max(logs.std(), 0.1))
    a, b = math.log10(snr_range[0]), math.log10(snr_range[1])
    return 0.5 * (a + b), max((b - a) / math.sqrt(12.0), 0.1)


# -- the streaming loader ------------------------------------------------------------------------
class CubeStream(torch.utils.data.IterableDataset):
    """Batches (targets (B, n_labels), condition input (B, n_wave + 1)) streamed from a Zarr store.

    positions: sorted positions along `model` of the models to use (one split). With `shuffle`, chunks
    are read in a random order, endlessly (pass after pass), through a shuffle buffer; without, one pass
    in order (evaluation). The store is opened lazily inside the process that iterates. `max_batches` (with
    shuffle): an iteration yields that many batches in all, each of `num_workers` loader workers its round-robin
    share, so the workers stop (idle, not prefetching past the epoch) when the epoch's batches are made.
    """

    def __init__(self, *, path, mode, positions, n_model, chunk, targets, flux_mean, flux_std, logsnr_mean, logsnr_std,
                 batch_size, snr=None, pixel_width=None, snr_range=(10.0, 1000.0), copies_per_model=1,
                 noiseless_snr_index=None, shuffle=True, shuffle_buffer=16384, seed=0, epoch=0, max_batches=None, model_ids=None,
                 wavelength=None, mask_fraction=0.0, mask_run=16):
        super().__init__()
        self.mask_fraction, self.mask_run = float(mask_fraction), int(mask_run)
        self.path = str(path)
        self.mode = mode
        self.positions = np.asarray(positions, dtype=np.int64)
        self.n_model, self.chunk = int(n_model), int(chunk)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.flux_mean = np.asarray(flux_mean, dtype=np.float32)
        self.flux_std = np.asarray(flux_std, dtype=np.float32)
        self.logsnr_mean, self.logsnr_std = float(logsnr_mean), float(logsnr_std)
        self.batch_size = int(batch_size)
        self.snr = None if snr is None else np.asarray(snr, dtype=np.float64)
        self.pixel_width = None if pixel_width is None else np.asarray(pixel_width, dtype=np.float64)
        self.snr_range = tuple(float(s) for s in snr_range)
        self.copies = int(copies_per_model)
        self.noiseless_snr_index = noiseless_snr_index
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self._epoch = types.SimpleNamespace(value=int(epoch))  # share_epoch swaps it for shared memory
        self.max_batches = None if max_batches is None else int(max_batches)
        self.model_ids = None if model_ids is None else np.asarray(model_ids)  # to name models in errors
        self.wavelength = None if wavelength is None else np.asarray(wavelength, dtype=np.float64)
        in_split = np.zeros(self.n_model, dtype=bool)
        in_split[self.positions] = True
        self._in_split = in_split
        starts = np.arange(0, self.n_model, self.chunk)
        self.chunks = [int(i) for i, s in enumerate(starts) if in_split[s:s + self.chunk].any()]
        self._array = None

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next iteration (seeds its chunk order, noise and shuffles)."""
        self._epoch.value = int(epoch)

    def share_epoch(self, context) -> None:
        """Hold the epoch in shared memory of `context` (a multiprocessing context), so that persistent loader
        workers, which keep their own copy of this stream, follow `set_epoch` at their next iteration."""
        if isinstance(self._epoch, types.SimpleNamespace):  # once: loaders made earlier keep following it
            self._epoch = context.RawValue("q", self.epoch)

    # reading --------------------------------------------------------------------------------
    def _flux_array(self):
        if self._array is None:
            import zarr

            self._array = zarr.open_group(self.path, mode="r", zarr_format=3)["flux"]
            self._attrs = dict(self._array.attrs)
        return self._array

    def _read(self, key) -> np.ndarray:
        """flux[key] as float32, decoded from its CF packing (gridkit.schema.decode_packed); a chunk that fails its
        checksum is named (gridkit.store.reading)."""
        rows = key[0] if isinstance(key, tuple) else key
        with reading(self.path, "training data", ["flux"], rows):
            return decode_packed(np.asarray(self._flux_array()[key]), self._attrs)

    def samples_per_chunk_pass(self) -> int:
        per_model = (self.snr.size if self.mode == "stored" else self.copies)
        return int(self.positions.size * per_model)

    def read_chunk(self, ci: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(targets (k, d), standardized flux (k, n_wave), log10 S/N feature (k,)) of one chunk's split models."""
        lo, hi = ci * self.chunk, min((ci + 1) * self.chunk, self.n_model)
        keep = np.flatnonzero(self._in_split[lo:hi])
        arr = self._flux_array()
        if self.mode == "stored":
            block = self._read(slice(lo, hi))[keep]  # (k_models, n_snr, n_wave): one whole chunk read
            self._check_finite(block, lo + keep, ci)
            k, n_snr, n_wave = block.shape
            flux = block.reshape(k * n_snr, n_wave)
            snr = np.tile(self.snr, k)
            targets = np.repeat(self.targets[lo + keep], n_snr, axis=0)
        else:
            block = self._read(slice(lo, hi)) if arr.ndim == 2 else self._read((slice(lo, hi), self.noiseless_snr_index))
            block = block[keep].astype(np.float32, copy=False)
            self._check_finite(block, lo + keep, ci)
            flux0 = np.repeat(block, self.copies, axis=0)
            a, b = np.log(self.snr_range[0]), np.log(self.snr_range[1])
            snr = np.exp(rng.uniform(a, b, size=flux0.shape[0]))
            snr_pix = noise.snr_per_pixel(snr, self.pixel_width, noise.PER_ANGSTROM).astype(np.float32)
            flux = noise.apply_noise(flux0, snr_pix, rng.standard_normal(flux0.shape, dtype=np.float32))  # float32 throughout
            targets = np.repeat(self.targets[lo + keep], self.copies, axis=0)
        fstd = ((flux - self.flux_mean) / self.flux_std).astype(np.float32, copy=False)
        if self.mask_fraction > 0:  # masked pixels as inference sees them: the training mean, 0 standardized
            fstd[mask_runs(rng, fstd.shape[0], fstd.shape[1], self.mask_fraction, self.mask_run)] = 0.0
        sfeat = ((np.log10(snr) - self.logsnr_mean) / self.logsnr_std).astype(np.float32)
        return targets, fstd, sfeat

    def _check_finite(self, block: np.ndarray, positions: np.ndarray, ci: int) -> None:
        """GridError naming the models (ids), pixels (wavelengths) and the store when a chunk read holds NaN/inf: the
        whole store was checked finite when training started, so it changed on disk since (or a chunk is missing)."""
        bad = ~np.isfinite(block)
        if not bad.any():
            return
        rows = bad.reshape(bad.shape[0], -1).any(axis=1)
        pix = np.flatnonzero(bad.reshape(-1, bad.shape[-1]).any(axis=0))
        ids = (self.model_ids[positions[rows]] if self.model_ids is not None else positions[rows]).tolist()
        where = ", ".join(f"{self.wavelength[i]:g}" for i in pix[:8]) + " A" if self.wavelength is not None else ", ".join(map(str, pix[:8]))
        raise GridError(f"training data {self.path} has {int(bad.sum())} NaN/inf flux value(s) in chunk {ci}: model(s) "
                        f"{', '.join(map(str, ids[:8]))}{', ...' if len(ids) > 8 else ''} at {pix.size} pixel(s) ({where}"
                        f"{', ...' if pix.size > 8 else ''}). It was checked finite when training started, so the store changed on "
                        "disk since: training stopped (no model written); fix the data and train afresh")

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        if not self.shuffle:  # in order: batches cut as soon as one is full, the last one partial
            buf = _ShuffleBuffer(self.batch_size, self.batch_size)
            for ci in self.chunks[wid::nw]:
                buf.add(*self.read_chunk(ci, rng_for(self.seed, self.epoch, 1, ci)))
                if buf.full:
                    yield from buf.batches(None)
            yield from buf.batches(None, final=True)
            return
        batches = self._shuffled(wid, nw)
        if self.max_batches is None:
            yield from batches
        else:  # the DataLoader takes batches from its workers round-robin: worker wid makes batches wid, wid + nw, ...
            yield from itertools.islice(batches, max(0, -(-(self.max_batches - wid) // nw)))

    def _shuffled(self, wid: int, nw: int):
        buf = _ShuffleBuffer(max(self.shuffle_buffer, self.batch_size), self.batch_size)
        counter = 0
        pass_ = 0
        while True:  # endless
            order = rng_for(self.seed, self.epoch, 2, pass_).permutation(len(self.chunks))
            mine = [self.chunks[i] for i in order][wid::nw]
            if not mine:
                if pass_ > 0 or nw == 1:
                    return
                mine = [self.chunks[order[wid % len(order)]]]  # more workers than chunks: reuse one
            for ci in mine:
                buf.add(*self.read_chunk(ci, rng_for(self.seed, self.epoch, 3, pass_, ci)))
                if buf.full:
                    yield from buf.batches(rng_for(self.seed, self.epoch, 4, wid, counter))
                    counter += 1
            pass_ += 1


class _ShuffleBuffer:
    """The shuffle buffer (and, unpermuted, the evaluation's batcher), held once: chunks are copied into preallocated arrays (grown only when a chunk does not
    fit), each batch is gathered from them through a seeded permutation, and the rest (< one batch) moves to the
    front. The batches are those of concatenating the parts and permuting (the rest first, then the new chunks)."""

    def __init__(self, size: int, batch_size: int):
        self.size, self.batch_size = int(size), int(batch_size)
        self.n = 0
        self.t = self.cond = None  # cond: the standardized flux with the S/N feature as its last column

    @property
    def full(self) -> bool:
        return self.n >= self.size

    def add(self, t, f, s) -> None:
        k = t.shape[0]
        if self.cond is None or self.n + k > self.cond.shape[0]:
            cap = max(self.size - 1 + k, self.n + k)  # a buffer just below `size` plus one more chunk
            cond = np.empty((cap, f.shape[1] + 1), dtype=np.float32)
            tt = np.empty((cap, t.shape[1]), dtype=np.float32)
            if self.n:
                cond[:self.n], tt[:self.n] = self.cond[:self.n], self.t[:self.n]
            self.cond, self.t = cond, tt
        self.cond[self.n:self.n + k, :-1] = f
        self.cond[self.n:self.n + k, -1] = s
        self.t[self.n:self.n + k] = t
        self.n += k

    def batches(self, rng, final: bool = False):
        """The full batches (permuted by `rng`; None: in order) and, where `final`, the rest as a last one."""
        order = rng.permutation(self.n) if rng is not None else np.arange(self.n)
        n_full = self.n // self.batch_size
        for i in range(n_full):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield torch.from_numpy(self.t[idx]), torch.from_numpy(self.cond[idx])
        rest = order[n_full * self.batch_size:]
        if final and rest.size:
            yield torch.from_numpy(self.t[rest]), torch.from_numpy(self.cond[rest])
            rest = rest[:0]
        self.cond[:rest.size], self.t[:rest.size] = self.cond[rest], self.t[rest]
        self.n = int(rest.size)


def buffer_samples(cfg, values_per_sample: int) -> int:
    """Samples a loader process buffers: `cfg.shuffle_buffer`, capped at `cfg.shuffle_buffer_mb` of float32 samples of
    `values_per_sample` values (flux, targets, S/N) and never below one batch."""
    cap = int(cfg.shuffle_buffer_mb * 2**20 // (4 * max(int(values_per_sample), 1)))
    return max(int(cfg.batch_size), min(int(cfg.shuffle_buffer), cap))


def make_loader(stream: CubeStream, *, num_workers: int, prefetch: int, start_method: str, pin_memory: bool = False):
    """A DataLoader over a CubeStream (which yields whole batches).

    With workers, they persist across epochs: starting spawned workers costs seconds (imports, opening the
    store) every epoch otherwise. Each `iter(loader)` restarts the workers' streams at the stream's current
    epoch (`stream.set_epoch`, shared with them), so epoch e's batches are the same as with fresh workers."""
    kwargs = {}
    if num_workers > 0:
        import multiprocessing as mp

        context = mp.get_context(start_method)
        stream.share_epoch(context)
        kwargs = {"multiprocessing_context": context, "prefetch_factor": prefetch, "persistent_workers": True}
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory, **kwargs)


__all__ = ["split_models", "split_from_model", "split_info", "read_split", "write_split", "recorded_split", "model_digests", "split_digest", "flux_digest_lazy",
           "flux_digest", "open_training_store", "TrainingStore", "CubeStream", "make_loader",
           "inverse_snr2_loguniform", "logsnr_moments", "SPLITS"]
