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
from gridkit.store import rng_for

SPLITS = ("train", "test", "validation")
SPLIT_FILE = "split.json"


# -- split ---------------------------------------------------------------------------------------
def split_models(model_ids, fractions=(0.75, 0.20, 0.05), seed: int = 42, out_dir=None) -> dict[str, np.ndarray]:
    """Split model ids into train/test/validation (a model's S/N copies never cross splits).

    Returns {split: sorted model ids}; with `out_dir`, the split is also recorded in out_dir/split.json.
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
    split = {k: np.sort(ids[v]) for k, v in parts.items()}
    if out_dir is not None:
        write_split(out_dir, split, {"seed": int(seed), "fractions": [float(f) for f in fractions]})
    return split


def write_split(out_dir, split: dict, info: dict | None = None) -> Path:
    doc = {**(info or {}), **{k: np.asarray(split[k]).tolist() for k in SPLITS}}
    return atomic_write_text(Path(out_dir) / SPLIT_FILE, json.dumps(doc))


def read_split(model_dir) -> dict[str, np.ndarray]:
    """{'train'|'test'|'validation': model ids} recorded by training in model_dir/split.json."""
    path = Path(model_dir) / SPLIT_FILE
    if not path.is_file():
        raise StoreError(f"{path} does not exist: model_dir {model_dir} has no recorded split")
    try:
        doc = json.loads(path.read_text())
        return {k: np.asarray(doc[k]) for k in SPLITS}
    except (ValueError, KeyError) as exc:
        raise StoreError(f"{path} is corrupt: {exc}") from exc


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
                 noiseless_snr_index=None, shuffle=True, shuffle_buffer=16384, seed=0, epoch=0, max_batches=None):
        super().__init__()
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
        """flux[key] as float32, decoded from its CF packing (gridkit.schema.decode_packed)."""
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
            k, n_snr, n_wave = block.shape
            flux = block.reshape(k * n_snr, n_wave)
            snr = np.tile(self.snr, k)
            targets = np.repeat(self.targets[lo + keep], n_snr, axis=0)
        else:
            block = self._read(slice(lo, hi)) if arr.ndim == 2 else self._read((slice(lo, hi), self.noiseless_snr_index))
            block = block[keep].astype(np.float32, copy=False)
            flux0 = np.repeat(block, self.copies, axis=0)
            a, b = np.log(self.snr_range[0]), np.log(self.snr_range[1])
            snr = np.exp(rng.uniform(a, b, size=flux0.shape[0]))
            snr_pix = noise.snr_per_pixel(snr, self.pixel_width, noise.PER_ANGSTROM).astype(np.float32)
            flux = noise.apply_noise(flux0, snr_pix, rng.standard_normal(flux0.shape, dtype=np.float32))  # float32 throughout
            targets = np.repeat(self.targets[lo + keep], self.copies, axis=0)
        fstd = (flux - self.flux_mean) / self.flux_std
        sfeat = ((np.log10(snr) - self.logsnr_mean) / self.logsnr_std).astype(np.float32)
        return targets, fstd.astype(np.float32, copy=False), sfeat

    def _batches(self, parts, rng, final: bool):
        """Concatenate buffered parts, shuffle, yield full batches (all of them where `final`), return the rest.

        The shuffle is a permutation of indices: each batch is gathered from the buffer (no shuffled copy of the
        whole buffer is made), so memory stays at about twice the buffer."""
        t = np.concatenate([p[0] for p in parts])
        f = np.concatenate([p[1] for p in parts])
        s = np.concatenate([p[2] for p in parts])
        parts[:] = []
        order = rng.permutation(t.shape[0]) if rng is not None else np.arange(t.shape[0])
        n_full = t.shape[0] // self.batch_size
        for i in range(n_full):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield _to_batch(t[idx], f[idx], s[idx])
        rest = order[n_full * self.batch_size:]
        if rest.size and final:
            yield _to_batch(t[rest], f[rest], s[rest])
        elif rest.size:
            parts[:] = [(t[rest], f[rest], s[rest])]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        if not self.shuffle:
            mine = self.chunks[wid::nw]
            parts: list = []
            for ci in mine:
                parts.append(self.read_chunk(ci, rng_for(self.seed, self.epoch, 1, ci)))
                if sum(p[0].shape[0] for p in parts) >= self.batch_size:
                    yield from self._batches(parts, None, final=False)
            if parts:
                yield from self._batches(parts, None, final=True)
            return
        batches = self._shuffled(wid, nw)
        if self.max_batches is None:
            yield from batches
        else:  # the DataLoader takes batches from its workers round-robin: worker wid makes batches wid, wid + nw, ...
            yield from itertools.islice(batches, max(0, -(-(self.max_batches - wid) // nw)))

    def _shuffled(self, wid: int, nw: int):
        parts = []
        n_buf = 0
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
                part = self.read_chunk(ci, rng_for(self.seed, self.epoch, 3, pass_, ci))
                parts.append(part)
                n_buf += part[0].shape[0]
                if n_buf >= max(self.shuffle_buffer, self.batch_size):
                    yield from self._batches(parts, rng_for(self.seed, self.epoch, 4, wid, counter), final=False)
                    counter += 1
                    n_buf = sum(p[0].shape[0] for p in parts)
            pass_ += 1


def _to_batch(t, f, s):
    cond = np.concatenate([f, s[:, None]], axis=1)
    return torch.from_numpy(np.ascontiguousarray(t)), torch.from_numpy(np.ascontiguousarray(cond))


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


__all__ = ["split_models", "read_split", "write_split", "open_training_store", "TrainingStore", "CubeStream", "make_loader",
           "inverse_snr2_loguniform", "logsnr_moments", "SPLITS"]
