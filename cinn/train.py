"""Training: maximum likelihood + reverse loss, Adam with exponential decay, validation every epoch, early
stopping, gradient clipping, a non-finite guard, checkpoints every epoch and an exact resume.

Fails safe: the whole training data is checked finite before anything is written (and every chunk read again
as it is read), the best epoch is the best finite validation loss (none: TrainingError, no model), a fresh run
that fails removes what it created, and a resume refuses a checkpoint whose training data changed.

Resume = uninterrupted: every random draw of epoch e (data order, noise, the reverse loss's dz) is a
function of (seed, e) only, the learning rate is lr * lr_decay**e, and the checkpoint holds weights, Adam's
state and the early-stopping state; so continuing from the end of epoch e repeats what an uninterrupted
run would have done (bit for bit on the same machine and thread count).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from catalogs.schema import QUANTILES
from gridkit.errors import ConfigError, GridkitError, StoreError
from gridkit.files import atomic_output, check_output, jsonable
from gridkit.schema import label_attrs
from gridkit.store import _aside, _lock, _recover, _remove, reading, release, swap_into_place

from . import checkpoint as ck
from .config import CINNConfig, as_config
from .data import (SPLIT_FILE, CubeStream, buffer_samples, flux_digest, flux_digest_lazy, inverse_snr2_loguniform, logsnr_moments, make_loader, model_digests,
                   open_training_store, read_split, split_digest, split_from_model, split_info, split_models, write_split)
from .model import CINN
from .transforms import LabelTransform, flux_basis, flux_statistics

#: val_nll is the flow's NLL per label in its standardized (log/logit) targets, the early-stopping score; val_nll_physical
#: is the same NLL in the physical labels' units (less the label transform's log-Jacobian): comparable between networks
#: whose label transforms differ (label_margin, log_labels), as cinn.tune's trials must be
LOG_FIELDS = ("epoch", "lr", "train_loss", "train_nll", "train_reverse", "val_nll", "val_reverse", "skipped", "seconds",
              "val_nll_physical")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r} is not a torch device: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
    return dev


def data_hash(store, content: str | None = None) -> str:
    """sha256 of what defines the training data: store metadata (zarr.json files), model ids, labels, S/N values,
    wavelengths and the flux content (`content`: `cinn.data.flux_digest` of the flux, computed here with one
    read of the store when None; training computes it in the pass of its flux statistics). A changed flux value
    changes the hash."""
    if content is None:
        import dask

        content = flux_digest(dask.compute(flux_digest_lazy(store.flux))[0], store.flux)
    h = hashlib.sha256()
    for meta in sorted(Path(store.path).rglob("zarr.json")):
        rel = meta.relative_to(store.path).as_posix()
        if rel.startswith("_gridkit/"):
            continue
        h.update(rel.encode())
        h.update(meta.read_bytes())
    for arr in (store.model_ids.astype(str), store.labels, store.wavelength, store.snr if store.snr is not None else np.zeros(0)):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(content.encode())
    return h.hexdigest()


def _positions(store, ids) -> np.ndarray:
    index = {v: i for i, v in enumerate(store.model_ids.tolist())}
    return np.sort(np.array([index[v] for v in np.asarray(ids).tolist()], dtype=np.int64))


class Trainer:
    """One training run. on_epoch: called as on_epoch(row) after every epoch (row: that epoch's log.csv row,
    checkpoint already written); it may raise to stop the run (hyperparameter search prunes trials this way)."""

    def __init__(self, cube_path, out_dir, cfg: CINNConfig, progress: bool = True, on_epoch=None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.progress = progress
        self.on_epoch = on_epoch
        self.store = open_training_store(cube_path, cfg.labels, cfg.loader)
        st = self.store
        # recorded by run(), nothing is written here; with train_models, "train" is the subset used, the single source of
        # everything fitted on the training split below (label transform, bounds, quantiles, flux statistics, flux basis)
        digests = model_digests(st.model_ids, st.labels)
        if cfg.split_from is None:
            self.split = split_models(st.model_ids, cfg.split, cfg.split_seed, train_models=cfg.train_models)
        else:
            self.split = split_from_model(st.model_ids, digests, cfg.split_from, cfg.split_seed, cfg.train_models)
        whole_train = len(st.model_ids) - self.split["test"].size - self.split["validation"].size  # before train_models
        self.split_info = split_info(cfg.split_seed, cfg.split, cfg.train_models, whole_train, cfg.split_from)
        self.pos = {k: _positions(st, v) for k, v in self.split.items()}
        index = {v: i for i, v in enumerate(st.model_ids.tolist())}
        #: per split, the digest of each model's (id, labels), aligned with self.split's ids (split.json, model.json)
        self.split_digests = {k: digests[[index[v] for v in ids.tolist()]] for k, ids in self.split.items()}
        train_labels = st.labels[self.pos["train"]]
        self.ltf = LabelTransform.fit(train_labels, cfg.labels, cfg.log_labels, cfg.log_floor, cfg.label_margin)
        self.bounds = {n: [float(train_labels[:, i].min()), float(train_labels[:, i].max())] for i, n in enumerate(cfg.labels)}
        #: the training split's label quantiles (the prior the network learnt): the reference width of a catalog's
        #: <label>_unconstrained flag (cinn.survey.summarize_rows)
        self.label_quantiles = {"levels": list(QUANTILES),
                                "values": {n: [float(v) for v in np.quantile(train_labels[:, i], QUANTILES)] for i, n in enumerate(cfg.labels)}}
        self.targets = self.ltf.forward(st.labels).astype(np.float32)
        # one pass over the store: the training split's statistics, every value of the store checked finite (a NaN
        # anywhere is a GridError naming models and pixels, before anything is written) and the flux's content digest
        what = f"training data {st.path}"
        with reading(st.path, "training data", ["flux"]):  # a chunk that fails its checksum is named
            if st.mode == "stored":
                self.flux_mean, self.flux_std, blocks = flux_statistics(st.flux.isel(model=self.pos["train"]), check=st.flux,
                                                                        also=(flux_digest_lazy(st.flux),), what=what)
            else:
                base = st.flux if st.flux.ndim == 2 else st.flux.isel(snr=st.noiseless_snr_index)
                factor = inverse_snr2_loguniform(*cfg.snr_range) / st.pixel_width
                self.flux_mean, self.flux_std, blocks = flux_statistics(base.isel(model=self.pos["train"]), noise_var_factor=factor,
                                                                        check=st.flux, also=(flux_digest_lazy(st.flux),), what=what)
        self.logsnr = logsnr_moments(st, cfg.snr_range)
        self.device = resolve_device(cfg.device)
        if cfg.flux_components > min(self.pos["train"].size, st.wavelength.size):
            raise ConfigError(f"flux_components ({cfg.flux_components}) must not exceed the number of training models "
                              f"({self.pos['train'].size}) nor pixels ({st.wavelength.size})")
        self.model = CINN(cfg, st.wavelength.size)
        if cfg.flux_components:
            base = st.flux if st.flux.ndim == 2 else st.flux.isel(snr=int(np.argmax(st.snr)))  # the least noisy copy
            self.model.set_flux_basis(flux_basis(base.isel(model=self.pos["train"]), self.flux_mean, self.flux_std, cfg.flux_components))
        self.model = self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        #: the averaged weights (cfg.weight_average), one per floating-point parameter; None until the first step
        self.averaged: list[torch.Tensor] | None = None
        self.data_hash = data_hash(st, flux_digest(blocks, st.flux))

    # -- streams -------------------------------------------------------------------------------
    def stream(self, split: str, epoch: int, shuffle: bool, max_batches: int | None = None) -> CubeStream:
        st, cfg = self.store, self.cfg
        return CubeStream(
            path=st.path, mode=st.mode, positions=self.pos[split], n_model=st.n_model, chunk=st.chunk, targets=self.targets,
            flux_mean=self.flux_mean, flux_std=self.flux_std, logsnr_mean=self.logsnr[0], logsnr_std=self.logsnr[1],
            batch_size=cfg.batch_size, snr=st.snr, pixel_width=st.pixel_width, snr_range=cfg.snr_range,
            copies_per_model=cfg.copies_per_model, noiseless_snr_index=st.noiseless_snr_index, shuffle=shuffle,
            shuffle_buffer=buffer_samples(cfg, self.flux_mean.size + self.targets.shape[1] + 1), seed=cfg.seed, epoch=epoch, max_batches=max_batches, model_ids=st.model_ids,
            wavelength=st.wavelength, mask_fraction=cfg.mask_fraction, mask_run=cfg.mask_run,
        )

    # -- losses --------------------------------------------------------------------------------
    def losses(self, x, cond, gen: torch.Generator | None):
        cfg = self.cfg
        amp = cfg.mixed_precision
        dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype, enabled=amp):
            c = self.model.condition(cond)
            z, logdet = self.model.flow(x, c=[c])
        z, logdet = z.float(), logdet.float()  # densities in float32
        d = x.shape[1]
        nll = (0.5 * (z * z).sum(1) - logdet).mean() / d
        if cfg.reverse_weight > 0:
            if gen is not None:
                dz = torch.randn(z.shape, generator=gen, device=z.device) * math.sqrt(cfg.reverse_noise)
            else:
                dz = torch.zeros_like(z)
            with torch.autocast(self.device.type, dtype=dtype, enabled=amp):
                x_rec, _ = self.model.flow(z + dz, c=[c], rev=True)
            rev = ((x.float() - x_rec.float()) ** 2).mean()
        else:
            rev = torch.zeros((), device=z.device)
        return nll, rev

    @torch.no_grad()
    def validate(self) -> tuple[float, float, float]:
        """(NLL, reverse loss, NLL in physical label units) per label on the validation split's first val_samples."""
        if self.pos["validation"].size == 0:
            return float("nan"), float("nan"), float("nan")
        self.model.eval()
        stream = self.stream("validation", epoch=-1, shuffle=False)
        n_batches = max(1, math.ceil(self.cfg.val_samples / self.cfg.batch_size))
        tot_nll = tot_rev = tot_jac = 0.0
        n = 0
        for x, cond in itertools.islice(stream, n_batches):
            # p(label) = p(y) |dy/dlabel|: the change of variables from the flow's targets to physical labels
            tot_jac += float(self.ltf.log_abs_det_forward(self.ltf.inverse(x.numpy())).sum())
            x, cond = x.to(self.device), cond.to(self.device)
            nll, rev = self.losses(x, cond, None)
            tot_nll += float(nll) * x.shape[0]
            tot_rev += float(rev) * x.shape[0]
            n += x.shape[0]
        self.model.train()
        return tot_nll / n, tot_rev / n, (tot_nll - tot_jac / len(self.cfg.labels)) / n

    # -- the loop ------------------------------------------------------------------------------
    def run(self, resume: bool) -> Path:
        from tqdm.auto import tqdm

        cfg = self.cfg
        state = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [], "files": {}, "stopped": False}
        if resume:
            extra: dict[str, torch.Tensor] = {}
            saved = ck.load_checkpoint(self.out, self.model, self.optimizer, extra)
            if extra:
                self.averaged = [extra[f"averaged.{i}"].to(self.device) for i in range(len(extra))]
            self._check_same_data(saved)
            self._check_same_split()
            state.update(saved)
        else:
            write_split(self.out, self.split, self.split_info, self.split_digests)
        if not state["history"]:
            v_nll, v_rev, v_phys = self.validate()
            state["history"].append(_row(0, float("nan"), float("nan"), float("nan"), float("nan"), v_nll, v_rev, 0, 0.0, v_phys))
        self._write_log(state["history"])
        pin = self.device.type == "cuda"
        bar = tqdm(total=cfg.epochs * cfg.batches_per_epoch, initial=state["epoch"] * cfg.batches_per_epoch, disable=not self.progress,
                   desc="training", unit="batch")
        self.model.train()
        nonfinite_run = 0
        train_stream = self.stream("train", state["epoch"], True, max_batches=cfg.batches_per_epoch)
        loader = make_loader(train_stream, num_workers=cfg.num_workers, prefetch=cfg.prefetch, start_method=cfg.worker_start,
                             pin_memory=pin)
        try:
            while state["epoch"] < cfg.epochs and not state["stopped"]:
                epoch = state["epoch"]
                t0 = time.perf_counter()
                lr = cfg.lr * cfg.lr_decay**epoch
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                gen = torch.Generator(device=self.device)
                gen.manual_seed(int.from_bytes(hashlib.sha256(f"{cfg.seed}-{epoch}".encode()).digest()[:8], "little") >> 1)
                train_stream.set_epoch(epoch)  # before iter(): the (persistent) workers restart their streams at it
                sums = np.zeros(3)
                n_ok = skipped = 0
                for x, cond in itertools.islice(iter(loader), cfg.batches_per_epoch):
                    x = x.to(self.device, non_blocking=True)
                    cond = cond.to(self.device, non_blocking=True)
                    self.optimizer.zero_grad(set_to_none=True)
                    nll, rev = self.losses(x, cond, gen)
                    loss = nll + cfg.reverse_weight * rev
                    ok = bool(torch.isfinite(loss))
                    if ok:
                        loss.backward()
                        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                        ok = bool(torch.isfinite(norm))
                    if not ok:  # guard: skip the step, stop if it keeps happening
                        self.optimizer.zero_grad(set_to_none=True)
                        skipped += 1
                        nonfinite_run += 1
                        if nonfinite_run > cfg.max_nonfinite:
                            raise ck.TrainingError(f"{nonfinite_run} consecutive batches gave a non-finite loss or gradient at epoch "
                                                   f"{epoch + 1}; lower lr (now {lr:.3g}) or grad_clip ({cfg.grad_clip})")
                    else:
                        nonfinite_run = 0
                        self.optimizer.step()
                        self._average()
                        sums += [float(loss.detach()), float(nll.detach()), float(rev.detach())]
                        n_ok += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.3f}", epoch=epoch + 1)
                self._swap_averaged()  # the averaged weights are validated and kept as the best ...
                v_nll, v_rev, v_phys = self.validate()
                tr = sums / max(n_ok, 1)
                state["epoch"] = epoch + 1
                state["history"].append(_row(epoch + 1, lr, tr[0], tr[1], tr[2], v_nll, v_rev, skipped, time.perf_counter() - t0,
                                              v_phys))
                # the best epoch: the lowest FINITE validation NLL (without a validation split: the last finite training loss)
                has_val = self.pos["validation"].size > 0
                score = v_nll if has_val else (float(tr[0]) if n_ok else math.nan)
                if math.isfinite(score) and (score < state["best_val"] or not has_val):
                    state["best_val"], state["best_epoch"], state["bad_epochs"] = score, epoch + 1, 0
                    state["files"]["best.safetensors"] = ck.save_best(self.out, self.model)
                else:
                    state["bad_epochs"] += 1
                if state["bad_epochs"] >= cfg.patience:
                    state["stopped"] = True
                self._swap_averaged()  # ... and the optimiser goes on from its own
                averaged = {f"averaged.{i}": t for i, t in enumerate(self.averaged or [])}
                ck.save_checkpoint(self.out, self.model, self.optimizer, {**state, "config": cfg.to_dict(), "data_hash": self.data_hash},
                                   averaged)
                self._write_log(state["history"])
                if self.on_epoch is not None:
                    self.on_epoch(dict(state["history"][-1]))
        finally:
            bar.close()
            del loader  # stops the workers
        if not state["files"].get("best.safetensors"):
            kind = "val_nll" if self.pos["validation"].size else "train_loss"
            losses = ", ".join(f"{r[kind]}" for r in state["history"][1:][-5:])
            raise ck.TrainingError(f"no epoch of {state['epoch']} gave a finite {'validation' if kind == 'val_nll' else 'training'} "
                                   f"loss (last {kind}: {losses}); no model written. The training data were checked finite: lower lr "
                                   f"(now {cfg.lr:.3g}) or grad_clip ({cfg.grad_clip})")
        self.write_model(ck.load_best(self.out, state["files"]["best.safetensors"]), state)
        return self.out

    def _averaged_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.is_floating_point()]  # not FrEIA's integer permutations

    @torch.no_grad()
    def _average(self) -> None:
        """One step of the weights' moving average (cfg.weight_average), started at the first step's weights."""
        if self.cfg.weight_average is None:
            return
        params = self._averaged_parameters()
        if self.averaged is None:
            self.averaged = [p.detach().clone() for p in params]
            return
        d = float(self.cfg.weight_average)
        for a, p in zip(self.averaged, params):
            a.mul_(d).add_(p.detach(), alpha=1.0 - d)

    @torch.no_grad()
    def _swap_averaged(self) -> None:
        """Exchange the model's weights with the averaged ones (twice: back to the optimiser's)."""
        if self.averaged is None:
            return
        for a, p in zip(self.averaged, self._averaged_parameters()):
            held = p.detach().clone()
            p.copy_(a)
            a.copy_(held)

    def _check_same_data(self, saved: dict) -> None:
        """Refuse to resume a checkpoint trained on other data than the store now holds (StoreError)."""
        recorded = saved.get("data_hash")
        where = self.out / ck.CKPT_DIR / ck.STATE
        if recorded is None:
            raise StoreError(f"cannot resume: {where} records no hash of its training data (written before gridkit recorded it), so a "
                             f"change of {self.store.path} cannot be ruled out; start afresh without --resume (another --out)")
        if recorded != self.data_hash:
            raise StoreError(f"the training data changed since this checkpoint: {self.store.path} now hashes to {self.data_hash[:16]}, "
                             f"the checkpoint in {where} was trained on data hashing to {str(recorded)[:16]} (flux, labels, model "
                             "ids, S/N or wavelengths differ); resuming would mix two data sets: start afresh without --resume "
                             "(another --out)")

    def _check_same_split(self) -> None:
        """Refuse to resume where the split now drawn differs from the one the checkpoint recorded (a `split_from` model
        directory retrained or replaced since): the validation and training models must stay those of the first epochs."""
        recorded = read_split(self.out)
        changed = [k for k in self.split if not np.array_equal(np.asarray(recorded[k]).astype(str), self.split[k].astype(str))]
        if changed:
            raise StoreError(f"cannot resume: the {' and '.join(changed)} models differ from those {self.out / SPLIT_FILE} recorded when "
                             f"this training started (split_from {self.cfg.split_from} changed since?); start afresh without --resume "
                             "(another --out)")

    def _write_log(self, history) -> None:
        with atomic_output(self.out / "log.csv") as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows(history)

    def write_model(self, state_dict, state) -> str:
        st, cfg = self.store, self.cfg
        meta = {
            "config": cfg.to_dict(),
            "label_names": list(cfg.labels),
            "label_attrs": {n: label_attrs(n) for n in cfg.labels},
            "label_transform": self.ltf.to_json(),
            "input_scaler": {"logsnr_mean": self.logsnr[0], "logsnr_std": self.logsnr[1], "snr_convention": "per_angstrom"},
            "bounds": self.bounds,
            "label_quantiles": self.label_quantiles,
            # S/N per Angstrom the network saw: the stored copies, or the range of the dynamic noise
            "snr_range": ([float(np.min(st.snr)), float(np.max(st.snr))] if st.mode == "stored" else [float(v) for v in cfg.snr_range]),
            "n_wave": int(st.wavelength.size),
            "instrument": {k: jsonable(st.attrs.get(k)) for k in ("instrument", "arms", "resolving_power") if k in st.attrs},
            # how the training flux was normalised: spectra to infer must be prepared the same way (checked by infer)
            "normalisation": str(st.attrs.get("normalisation", "none")),
            "training_data": {"path": str(st.path), "hash": self.data_hash, "mode": st.mode, "n_model": st.n_model,
                              "split_sizes": {k: int(v.size) for k, v in self.pos.items()},
                              # per split, sha256 of its models' (id, labels) digests (split.json holds them per model)
                              "split_digests": {k: split_digest(v) for k, v in self.split_digests.items()}},
            "training": {"epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
                         "best_val_nll": state["best_val"] if self.pos["validation"].size else None,
                         "early_stopped": bool(state["stopped"]), "device": str(self.device)},
            "versions": ck.package_versions(),
        }
        return ck.write_model(self.out, state_dict, wavelength=st.wavelength, flux_mean=self.flux_mean, flux_std=self.flux_std, meta=meta)


def _row(epoch, lr, loss, nll, rev, v_nll, v_rev, skipped, secs, v_phys) -> dict:
    return {"epoch": epoch, "lr": lr, "train_loss": loss, "train_nll": nll, "train_reverse": rev, "val_nll": v_nll,
            "val_reverse": v_rev, "skipped": skipped, "seconds": round(secs, 3), "val_nll_physical": v_phys}


def train(cube_path, out_dir, config=None, epochs=None, batches_per_epoch=None, batch_size=None, resume=False, progress=True,
          overwrite=False) -> Path:
    """Train a cINN on a cube (or noiseless grid, dynamic noise) and write the model directory `out_dir`.

    config: None (published defaults), a CINNConfig, a mapping or a JSON/YAML path; epochs,
    batches_per_epoch, batch_size override it. resume: continue from out_dir/checkpoint (the saved config is
    used; only `epochs` may change), with results identical to an uninterrupted run.

    overwrite: replace an existing model directory, only once the new model is complete. The old `out_dir` stays
    untouched while the new one is trained into the hidden sibling `.<name>.overwrite` (gridkit.store's
    convention); at the end the two are swapped with two renames via `.<name>.replaced`, so an interruption
    leaves one of the two whole (the next run on `out_dir` restores the old one if the swap was cut between its
    renames). If the overwrite run fails or is interrupted, the staging directory is removed (an overwrite is not
    resumable; one left by a killed process is removed when the next overwrite starts) and `out_dir` is as it
    was. overwrite with resume is a ConfigError. One job per output: the run holds the lock `.<name>.lock`
    beside `out_dir` while it writes (a second job on it is refused).
    """
    out = Path(out_dir)
    if overwrite and resume:
        raise ConfigError("overwrite (--overwrite) and resume (--resume) exclude each other: --resume continues the training in "
                          "--out, --overwrite replaces it with a new one; pass one of them")
    config_file = config if isinstance(config, (str, os.PathLike)) else None
    check_output(out, [cube_path, config_file], what="out_dir (--out)")  # never write into, onto or around an input
    staging = _aside(out, "overwrite")  # where an overwrite trains the new model until it is complete
    if overwrite:
        check_output(staging, [cube_path, config_file], what="out_dir (--out) staging directory")
    if out.exists() and not out.is_dir():
        raise StoreError(f"out_dir {out} exists and is not a directory")
    overrides = {"epochs": epochs, "batches_per_epoch": batches_per_epoch, "batch_size": batch_size}
    if resume:
        state_path = out / ck.CKPT_DIR / ck.STATE
        if not state_path.is_file():
            raise StoreError(f"cannot resume: {state_path} does not exist (train without resume first)")
        saved_state = ck.read_json(state_path)
        saved = CINNConfig.from_dict(ck.upgrade_config(saved_state["config"], int(saved_state.get("format_version", 1))))
        cfg = saved.replace(epochs=epochs)
        if config is not None and as_config(config).replace(epochs=cfg.epochs) != cfg:
            raise ConfigError(f"resume: the config given differs from the one {out} was trained with; resume without a config")
        for key in ("batches_per_epoch", "batch_size"):
            if overrides[key] is not None and overrides[key] != getattr(saved, key):
                raise ConfigError(f"resume: {key}={overrides[key]} differs from the checkpoint's {getattr(saved, key)}")
    else:
        cfg = as_config(config).replace(**overrides)
        _refuse_existing(out, overwrite)
    # everything is validated (config, the whole training data: finite, labels, split) before anything is written
    trainer = Trainer(cube_path, out, cfg, progress=progress)
    made = [p for p in out.parents if not p.exists()]  # parents the lock creates, innermost first
    _lock(out)  # one job per output (after validation: a refused run creates nothing, not even a parent folder)
    ok = False
    try:
        _recover(out)  # a swap of an earlier overwrite cut between its renames: put the old model back
        if out.exists() and not out.is_dir():
            raise StoreError(f"out_dir {out} exists and is not a directory")
        if resume:  # continues the checkpoint in place; a failure leaves it as the last finished epoch wrote it
            return trainer.run(resume=True)
        _refuse_existing(out, overwrite)  # again, under the lock
        result = _train_aside(trainer, out, staging) if overwrite and out.exists() else _train_fresh(trainer, out)
        ok = True
        return result
    finally:
        release(out)
        if not ok and not out.exists():  # a failed run leaves no folder it made
            for parent in made:
                with contextlib.suppress(OSError):
                    parent.rmdir()


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if not overwrite and ((out / ck.MODEL_JSON).exists() or (out / ck.CKPT_DIR).exists()):
        raise StoreError(f"out_dir {out} already holds a model or checkpoint; pass resume=True (--resume) to continue it, "
                         "overwrite=True (--overwrite) to replace it once the new model is complete, or choose another directory")


def _train_fresh(trainer: Trainer, out: Path) -> Path:
    def resumable(exc: BaseException) -> bool:
        """Keep a fresh run's output after an interruption (not a refusal of data or losses) once it holds a checkpoint."""
        keep = not isinstance(exc, GridkitError) and (out / ck.CKPT_DIR / ck.STATE).is_file()
        if keep:
            exc.add_note(f"gridkit: {out} keeps the checkpoint of the last finished epoch; continue with resume=True (--resume)")
        return keep

    with ck.created_output(out, keep=resumable):  # a failure removes what this run created, nothing else
        return trainer.run(resume=False)


def _train_aside(trainer: Trainer, out: Path, staging: Path) -> Path:
    """Train into `staging` while `out` stays untouched, then swap them (gridkit.store's overwrite). Any failure
    removes `staging` and leaves `out` as it was."""
    if staging.exists() or staging.is_symlink():  # left by an overwrite that was killed: not resumable, start afresh
        _remove(staging)
    trainer.out = staging
    with ck.created_output(staging):  # a failure (or an interruption) removes the staging directory
        trainer.run(resume=False)
    return swap_into_place(staging, out)


__all__ = ["train", "Trainer", "resolve_device", "data_hash"]
