"""The cINN configuration: one frozen dataclass whose defaults are the published method's.

Load from JSON or YAML with `CINNConfig.from_file(path)`; unknown keys are refused (a typo must not
silently fall back to a default). See docs/cinn.md for the meaning of every key.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from gridkit.errors import ConfigError
from gridkit.schema import LABEL_NAMES


@dataclass(frozen=True)
class CINNConfig:
    # -- architecture -------------------------------------------------------------------------
    #: number of (PermuteRandom + GLOWCouplingBlock) pairs
    n_blocks: int = 16
    #: width of the hidden layers of every coupling subnet
    subnet_width: int = 512
    #: fully connected layers of every coupling subnet, counting its input and output layers (>= 2): the
    #: published "three fully connected layers of 512" are in -> 512 -> 512 -> out, i.e. 2 hidden layers of
    #: 512 (the convention of the Heidelberg cINN codes, where `internal_layer = 3` builds exactly that)
    subnet_layers: int = 3
    #: hidden layers of the feature network (ReLU), input = standardized flux + standardized log10 S/N
    feature_layers: tuple[int, ...] = (2048, 1024, 512)
    #: size of the condition the feature network hands to every coupling block
    n_features: int = 256
    #: > 0: the standardized flux enters the feature network as its coefficients on this many principal components
    #: of the training split's flux (a fixed basis fitted before training, stored with the weights); with a few
    #: hundred training models the feature network's first layer otherwise holds most of the parameters and learns
    #: the training spectra by heart. 0: the whole spectrum (the published method)
    flux_components: int = 0
    #: soft clamp alpha of the coupling scale (FrEIA's atan clamp)
    clamp: float = 1.9
    #: seed of the weights' initialisation and of the fixed random permutations
    init_seed: int = 0

    # -- targets ------------------------------------------------------------------------------
    labels: tuple[str, ...] = LABEL_NAMES
    #: labels learnt as log10(value)
    log_labels: tuple[str, ...] = ("teff", "vbroad")
    #: vbroad (and any log label) is floored at this value before log10, so vbroad = 0 is allowed
    log_floor: float = 0.1
    #: None (the published method): the flow learns the (log10) labels on the whole real line, and its smooth tails
    #: put draws beyond the training bounds of every label whose posterior reaches them (an unconstrained abundance:
    #: all of its 13 labels add up in f_reject). A number m > 0: each label is learnt through a logit of its training
    #: range widened by m of that range on each side, so no draw falls beyond the widened range; the training bounds
    #: still reject the draws in the margin, which is where the draws of a spectrum unlike the training set go
    label_margin: float | None = None

    # -- training -----------------------------------------------------------------------------
    lr: float = 2.299e-3
    betas: tuple[float, float] = (0.8, 0.8)
    weight_decay: float = 2.34e-7
    lr_decay: float = 0.95
    epochs: int = 120
    batches_per_epoch: int = 128
    batch_size: int = 1024
    #: variance of the latent perturbation of the reverse loss: dz ~ N(0, reverse_noise * I)
    reverse_noise: float = 1e-5
    reverse_weight: float = 1.0
    grad_clip: float = 10.0
    #: None (the published method): the weights validated, kept as the best and written are the optimiser's. A decay d
    #: in (0, 1): they are an exponential moving average of the optimiser's weights over its steps (Polyak averaging),
    #: w_avg <- d w_avg + (1 - d) w after every step, starting at the first step's weights; the optimiser itself goes
    #: on from its own weights. It smooths the epoch-to-epoch noise of a small grid's training (docs/science.md)
    weight_average: float | None = None
    #: epochs without a better validation loss before stopping
    patience: int = 10
    #: consecutive non-finite losses (batches skipped) before training stops with an error
    max_nonfinite: int = 20
    #: fractions of models in train/test/validation
    split: tuple[float, float, float] = (0.75, 0.20, 0.05)
    split_seed: int = 42
    #: train on only the first N models of the training split, in a fixed order seeded by split_seed (so a smaller N is
    #: a subset of a larger one); everything fitted on the training split (label standardization, flux normalisation,
    #: the flux_components basis, label bounds and quantiles) uses these N only, and split.json records them as the
    #: 'train' ids. The test and validation splits are unchanged (a learning curve on the same test split). None: all
    #: of the training split. Epochs and batches_per_epoch are not scaled: the same number of gradient steps
    train_models: int | None = None
    #: a trained model's directory whose test and validation splits this training keeps (its split.json, checked against
    #: its model.json): every other model of the store trains, and `split` is not used. For a grid that grew, or one with
    #: models added: the new network is measured on the same held-out models as the old. None: split by `split`
    split_from: str | None = None
    seed: int = 0
    #: validation samples per epoch (the first ones of a fixed, seeded draw from the validation split)
    val_samples: int = 8192
    mixed_precision: bool = False
    #: "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"

    # -- loader -------------------------------------------------------------------------------
    #: "auto": the stored (model, snr, wavelength) cube, or dynamic noise if the store is a noiseless (model, wavelength) grid;
    #: "stored" or "dynamic" force one (dynamic on a cube uses the highest-S/N copy as noiseless flux)
    loader: str = "auto"
    #: dynamic mode: S/N per Angstrom drawn log-uniform in this range
    snr_range: tuple[float, float] = (10.0, 1000.0)
    #: dynamic mode: noisy copies drawn per model each time its chunk is read
    copies_per_model: int = 4
    #: masking augmentation: each training spectrum has a fraction of its pixels, drawn uniformly up to this, masked
    #: (runs of `mask_run` pixels) and fed as the training mean, as masked pixels of observed spectra are at inference
    #: (cinn.transforms.InputScaler.fill_masked); 0: none (the published method's training)
    mask_fraction: float = 0.0
    mask_run: int = 16
    #: samples held in the shuffle buffer (whole chunks are read into it, then shuffled)
    shuffle_buffer: int = 16384
    #: ... but at most this many MB of them per loader process: 16384 spectra of the published 25,200 pixels are
    #: 1.65 GB, and each of `num_workers` holds one (256 MB: 2,661 of them, ~21 chunks of 32 models x 4 noisy copies)
    shuffle_buffer_mb: float = 256.0
    num_workers: int = 2
    #: batches each worker prepares ahead
    prefetch: int = 2
    #: "spawn" or "forkserver" (zarr v3 and CUDA do not survive fork)
    worker_start: str = "spawn"

    def __post_init__(self):
        for name in ("feature_layers", "labels", "log_labels", "betas", "split", "snr_range"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        positive_int = ("n_blocks", "subnet_width", "subnet_layers", "n_features", "epochs", "batches_per_epoch", "batch_size",
                        "patience", "val_samples", "copies_per_model", "shuffle_buffer", "prefetch", "max_nonfinite", "mask_run")
        for name in positive_int:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.flux_components, int) or isinstance(self.flux_components, bool) or self.flux_components < 0:
            raise ConfigError(f"flux_components must be an integer >= 0 (0: no compression), got {self.flux_components!r}")
        if self.train_models is not None and (not isinstance(self.train_models, int) or isinstance(self.train_models, bool)
                                              or self.train_models < 1):
            raise ConfigError(f"train_models must be a positive integer (or None: the whole training split), got {self.train_models!r}")
        if self.split_from is not None and (not isinstance(self.split_from, str) or not self.split_from.strip()):
            raise ConfigError(f"split_from must be None or the path of a trained model's directory, got {self.split_from!r}")
        if isinstance(self.shuffle_buffer_mb, bool) or not isinstance(self.shuffle_buffer_mb, (int, float)) or not 0 < self.shuffle_buffer_mb < float("inf"):
            raise ConfigError(f"shuffle_buffer_mb must be a number > 0 (MB of samples per loader process), got {self.shuffle_buffer_mb!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ConfigError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        if self.subnet_layers < 2:
            raise ConfigError(f"subnet_layers counts a subnet's fully connected layers including input and output, so it must be >= 2, got {self.subnet_layers!r}")
        if any((not isinstance(w, int)) or w < 1 for w in self.feature_layers):
            raise ConfigError(f"feature_layers must be positive integers, got {self.feature_layers!r}")
        if not self.clamp > 0:
            raise ConfigError(f"clamp must be > 0, got {self.clamp!r}")
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"labels must be at least 2 distinct names, got {self.labels!r}")
        unknown = [name for name in self.log_labels if name not in self.labels]
        if unknown:
            raise ConfigError(f"log_labels {unknown} are not in labels {self.labels}")
        if self.label_margin is not None and (isinstance(self.label_margin, bool) or not isinstance(self.label_margin, (int, float))
                                              or not 0 < self.label_margin < float("inf")):
            raise ConfigError(f"label_margin must be None (no logit) or a number > 0 (fraction of each label's range), got {self.label_margin!r}")
        if self.weight_average is not None and (isinstance(self.weight_average, bool) or not isinstance(self.weight_average, (int, float))
                                                or not 0 < self.weight_average < 1):
            raise ConfigError(f"weight_average must be None (the optimiser's weights) or a decay in (0, 1) per step, got {self.weight_average!r}")
        if not self.log_floor > 0:
            raise ConfigError(f"log_floor must be > 0, got {self.log_floor!r}")
        if not self.lr > 0 or not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr must be > 0 and lr_decay in (0, 1], got lr={self.lr!r}, lr_decay={self.lr_decay!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two values in [0, 1), got {self.betas!r}")
        if len(self.split) != 3 or any(f < 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6 or self.split[0] <= 0:
            raise ConfigError(f"split must be three fractions (train, test, validation) summing to 1, got {self.split!r}")
        if len(self.snr_range) != 2 or not 0 < self.snr_range[0] <= self.snr_range[1]:
            raise ConfigError(f"snr_range must be (low, high) with 0 < low <= high, got {self.snr_range!r}")
        if not 0.0 <= float(self.mask_fraction) < 1.0:
            raise ConfigError(f"mask_fraction must be in [0, 1), got {self.mask_fraction!r}")
        if self.loader not in ("auto", "stored", "dynamic"):
            raise ConfigError(f"loader must be 'auto', 'stored' or 'dynamic', got {self.loader!r}")
        if self.worker_start not in ("spawn", "forkserver"):
            raise ConfigError(f"worker_start must be 'spawn' or 'forkserver' (zarr v3 and CUDA do not survive fork), got {self.worker_start!r}")
        if self.reverse_noise < 0 or self.reverse_weight < 0 or not self.grad_clip > 0:
            raise ConfigError("reverse_noise and reverse_weight must be >= 0 and grad_clip > 0, got "
                              f"{self.reverse_noise!r}, {self.reverse_weight!r}, {self.grad_clip!r}")

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "CINNConfig":
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown cINN config key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid cINN config: {exc}") from exc

    @classmethod
    def from_file(cls, path) -> "CINNConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"config file {path} is not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
        return cls.from_dict(data)

    def replace(self, **changes) -> "CINNConfig":
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)


def as_config(config) -> CINNConfig:
    """A CINNConfig from None (defaults), a CINNConfig, a mapping or a path to a JSON/YAML file."""
    if config is None:
        return CINNConfig()
    if isinstance(config, CINNConfig):
        return config
    if isinstance(config, Mapping):
        return CINNConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        return CINNConfig.from_file(config)
    raise ConfigError(f"config must be None, a CINNConfig, a mapping or a file path, got {type(config).__name__}")


__all__ = ["CINNConfig", "as_config"]
