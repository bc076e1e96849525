"""Ensembles: K trained networks whose posteriors are mixed with equal weights, used like one model.

One flow gives one posterior; networks trained with other seeds (or other architectures) on the same data give
others, and where they disagree the network is unsure (epistemic uncertainty, which a single flow lacks). The
ensemble's posterior is their equal-weight mixture, q(x | y) = (1/K) sum_k q_k(x | y).

- **Draws.** Of a spectrum's n draws, member k makes n_k (n split as evenly as possible, in member order) from
  its own latent draws `rng_for(seed, key, k)`: a spectrum's draws depend on (seed, key) only, whatever the chunking.
  (numpy's SeedSequence reads a trailing key 0 as none, so member 0's draws are the first of those it makes alone.)
- **Density and MAP.** Every draw's density is the mixture's, log (1/K) sum_k q_k: under the member that drew it
  the density of its sampling pass, under every other member that member's forward pass; the MAP rule is the single
  network's (the in-bounds draw of highest density), applied to that mixture density. Sampling costs about K times
  a single network (n/K draws from each member, then K - 1 density passes over the n draws). `log_prob` of given
  labels takes all K forward passes.
- **One training set.** The members must share the training data and split (split.json), the label transform,
  bounds, flux standardisation, wavelength grid and normalisation: the mixture then lives in one flow space, masked
  pixels are imputed alike, and `evaluate` knows the test split. Seeds, architectures and learning rates may differ.
- **On disk.** An ensemble directory holds `ensemble.json` (the members' paths relative to it, their model ids and
  the sha256 of their weights, and the ensemble's own model id) and the members' common `split.json`; a fitted
  `calibration.json` goes beside them (`gridkit calibrate-intervals ENSEMBLE CUBE`). `cinn.load` (this module's
  `load`) returns an `Ensemble` for it; `gridkit infer`, `evaluate`, `show` and `calibrate-intervals` take it like a model directory.
  A member whose weights changed since is refused (its sha256 no longer matches).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from gridkit.errors import ConfigError

from .checkpoint import ENSEMBLE_JSON as ENSEMBLE_FILE, ModelDirError
from .posterior import Posterior, load as load_model
FORMAT = "gridkit-cinn-ensemble"
VERSION = 1


def is_ensemble(model_dir) -> bool:
    return (Path(model_dir) / ENSEMBLE_FILE).is_file()


def load(model_dir, device: str | torch.device = "cpu") -> Posterior:
    """`cinn.load`: the `Posterior` of a model directory (`cinn.posterior.load`), or the `Ensemble` of an ensemble
    directory (`load_ensemble`)."""
    return load_ensemble(model_dir, device) if is_ensemble(model_dir) else load_model(model_dir, device)


class Ensemble(Posterior):
    """The equal-weight mixture of the posteriors of `members` (loaded `Posterior`s of one training set); the methods
    of `Posterior` (sample, summarize, log_prob, map_estimate, in_bounds) work on the mixture."""

    def __init__(self, members: list[Posterior], model_dir, model_id: str, weights_sha256: str):
        first = members[0]
        self.members = list(members)
        self.model = None  # no single network: code that needs one must go through the members
        self._fast = None
        meta = {**first.meta, "model_id": model_id, "ensemble": [m.model_id for m in members]}
        extras = {"wavelength": first.wavelength, "flux_mean": first.scaler.flux_mean, "flux_std": first.scaler.flux_std}
        self._describe(meta, extras, Path(model_dir), weights_sha256)

    def __repr__(self) -> str:
        return (f"Ensemble(model_id={self.model_id!r}, members={len(self.members)}, labels={len(self.label_names)}, "
                f"n_wave={self.wavelength.size}, device={self.device})")

    def to(self, device) -> "Ensemble":
        for m in self.members:
            m.to(device)
        self.device = torch.device(device)
        self.batch_spectra = self.device.type == "cuda"
        return self

    def _bytes_per_sample(self) -> int:
        return max(m._bytes_per_sample() for m in self.members)

    def _split(self, n: int) -> list[tuple[int, int]]:
        k = len(self.members)
        cuts = [n * i // k for i in range(k + 1)]
        return list(zip(cuts[:-1], cuts[1:]))

    def _sample_flow(self, values, snr, keys, n: int, seed: int, stream: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Member k's share of the draws from its own latents, and every draw's mixture density: under its own member
        the density of the sampling pass (as a single network's MAP uses it), under each other member that member's
        forward pass (K - 1 passes over the n draws, not K), with the conditions its sampling pass computed."""
        S, d, K = values.shape[0], len(self.label_names), len(self.members)
        ys = np.empty((S, n, d), dtype=np.float32)
        per = np.empty((K, S, n), dtype=np.float64)
        shares = self._split(n)
        conditions = [None] * K  # each member's feature-network conditions, from its sampling pass
        for i, (member, (a, b)) in enumerate(zip(self.members, shares)):
            if b > a:
                member.memory_cap = self.memory_cap  # the ensemble's memory setting holds for its members
                parts: list = []
                ys[:, a:b], per[i, :, a:b] = member._sample_flow(values, snr, keys, b - a, seed, (*stream, i), conditions=parts)
                conditions[i] = torch.cat(parts)
        for i, (member, (a, b)) in enumerate(zip(self.members, shares)):
            others = np.r_[0:a, b:n]
            if others.size:
                per[i][:, others] = self._member_log_q(member, values, snr, ys[:, others], conditions[i])
        return ys, _mixture(per)

    @staticmethod
    def _member_log_q(member: Posterior, values: np.ndarray, snr: np.ndarray, y: np.ndarray, conditions=None) -> np.ndarray:
        return member._log_q(values, snr, y, conditions)

    def _log_q(self, values: np.ndarray, snr: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The mixture's density log (1/K) sum_k q_k(y) (S, m) of points y (S, m, d) in the (common) flow space."""
        return _mixture(np.stack([self._member_log_q(m, values, snr, y).astype(np.float64) for m in self.members]))


def _mixture(per: np.ndarray) -> np.ndarray:
    """The equal-weight mixture's log density log (1/K) sum_k q_k (float32) of the members' log densities per (K, ...)."""
    from scipy.special import logsumexp

    return (logsumexp(per, axis=0) - np.log(per.shape[0])).astype(np.float32)


# ------------------------------------------------------------------------------------------------ on disk
def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _identity(members: list[tuple[str, str]]) -> tuple[str, str]:
    """(model id, weights sha256) of an ensemble of members [(model_id, weights sha256)] in order."""
    body = "\n".join(f"{mid} {sha}" for mid, sha in members)
    return "ens-" + _sha256(body)[:16], _sha256("\n".join(sha for _, sha in members))


def _check_compatible(posts: list[Posterior], dirs: list[Path]) -> None:
    first, d0 = posts[0], dirs[0]
    split0 = (d0 / "split.json").read_bytes() if (d0 / "split.json").is_file() else None
    if split0 is None:
        raise ConfigError(f"{d0} has no split.json: an ensemble's members must record their training split")
    for post, d in zip(posts[1:], dirs[1:]):
        checks = {
            "label names": post.label_names == first.label_names,
            "wavelength grid": post.wavelength.shape == first.wavelength.shape and np.array_equal(post.wavelength, first.wavelength),
            "label transform (log labels, label_margin, training statistics)": post.label_transform.to_json() == first.label_transform.to_json(),
            "training label bounds": np.array_equal(post.bounds, first.bounds),
            "flux standardisation (training data)": (np.array_equal(post.scaler.flux_mean, first.scaler.flux_mean)
                                                     and np.array_equal(post.scaler.flux_std, first.scaler.flux_std)
                                                     and post.scaler.to_json() == first.scaler.to_json()),
            "normalisation": post.normalisation == first.normalisation,
            "training S/N range": post.snr_range == first.snr_range,
            "training split (split.json)": (d / "split.json").is_file() and (d / "split.json").read_bytes() == split0,
        }
        differ = [what for what, same in checks.items() if not same]
        if differ:
            raise ConfigError(f"{d} cannot join an ensemble with {d0}: they differ in {', '.join(differ)}; an ensemble's members "
                              "are trained on the same data and split with the same label transform (seeds and architectures may differ)")


def write_ensemble(members, out, *, overwrite: bool = False) -> Path:
    """Write the ensemble directory `out` of the trained model directories `members` (at least two, in the order their
    draws are made); checks that they can be mixed (see the module docstring). Staged: `out` appears whole or not at
    all; an existing `out` is replaced only with `overwrite`, and never when it is (or holds) one of the members."""
    dirs = [Path(m) for m in members]
    out = Path(out)
    if len(dirs) < 2:
        raise ConfigError(f"an ensemble needs at least two model directories, got {len(dirs)}")
    resolved = [d.resolve() for d in dirs]
    if len(set(resolved)) != len(resolved):
        raise ConfigError("an ensemble's members must be distinct model directories; one is given twice")
    target = out.resolve()
    for d in resolved:
        if target == d or target in d.parents or d in target.parents:
            raise ConfigError(f"--out {out} is, holds or lies inside the member {d}: a command never writes over its inputs")
    for d in dirs:
        if is_ensemble(d):
            raise ConfigError(f"{d} is itself an ensemble: list its members instead")
    posts = [load_model(d) for d in dirs]
    if len({p.model_id for p in posts}) != len(posts):
        raise ConfigError("two members are the same model (equal model ids): an ensemble of copies adds nothing")
    _check_compatible(posts, dirs)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    model_id, weights = _identity([(p.model_id, p.weights_sha256 or "") for p in posts])
    doc = {"format": FORMAT, "version": VERSION, "model_id": model_id, "weights_sha256": weights,
           "members": [{"path": os.path.relpath(d, target), "model_id": p.model_id, "weights_sha256": p.weights_sha256}
                       for d, p in zip(resolved, posts)]}
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copyfile(dirs[0] / "split.json", stage / "split.json")
        (stage / ENSEMBLE_FILE).write_text(json.dumps(doc, indent=1) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
            os.replace(stage, out)
            shutil.rmtree(old)
        else:
            os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return out


def load_ensemble(model_dir, device: str | torch.device = "cpu") -> Ensemble:
    """The `Ensemble` of an ensemble directory: every member loaded (and integrity-checked) by `cinn.load`, its weights'
    sha256 checked against the one recorded when the ensemble was made; its calibration.json when fitted."""
    from .calibration import read as read_calibration

    model_dir = Path(model_dir)
    path = model_dir / ENSEMBLE_FILE
    try:
        doc = json.loads(path.read_text())
        entries = [(Path(e["path"]), str(e["model_id"]), e["weights_sha256"]) for e in doc["members"]]
        recorded_id = str(doc["model_id"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelDirError(f"{path} is unreadable or corrupt: {exc}") from exc
    if doc.get("format") != FORMAT:
        raise ModelDirError(f"{path} is not a gridkit ensemble (format {doc.get('format')!r})")
    posts = []
    for rel, mid, sha in entries:
        member_dir = rel if rel.is_absolute() else (model_dir / rel)
        if not member_dir.is_dir():
            raise ModelDirError(f"{path}: member {rel} ({member_dir}) does not exist; an ensemble refers to its members' folders")
        post = load_model(member_dir, device)
        if post.model_id != mid or (sha and post.weights_sha256 != sha):
            raise ModelDirError(f"{path}: member {member_dir} now holds model {post.model_id} (weights sha256 {post.weights_sha256}), "
                                f"not the {mid} (sha256 {sha}) the ensemble was made of; rebuild the ensemble")
        posts.append(post)
    model_id, weights = _identity([(p.model_id, p.weights_sha256 or "") for p in posts])
    if model_id != recorded_id:
        raise ModelDirError(f"{path} records model id {recorded_id}, but its members make {model_id}")
    ens = Ensemble(posts, model_dir, model_id, weights).to(device)
    ens.calibration = read_calibration(model_dir, model_id)
    return ens


__all__ = ["Ensemble", "load", "write_ensemble", "load_ensemble", "is_ensemble", "ENSEMBLE_FILE"]
