"""Post-hoc calibration of the posterior's credible intervals, fitted on held-out spectra, stored with the model.

A normalising flow trained on a few hundred models is rarely calibrated: its 68 % intervals hold the truth 45 % or
95 % of the time depending on the label and the S/N. The calibration rescales each label's posterior around its
median by a factor s(label, S/N): the quantiles become  q' = median + s (q - median).  For every S/N of the fitting
cube and every label, s is the factor that makes the central 68 % interval hold the truth of exactly 68 % of the
fitting spectra (side by side: a truth above the median is measured against q84 - median, one below against
median - q16); between the cube's S/N values s is interpolated in log10 S/N, beyond them held at the nearest.

What it guarantees: on spectra like the fitting ones (same grid, same noise model), the 68 % intervals hold the
truth 68 % of the time per label and S/N, and the other central intervals follow as far as the posterior's shape is
right (the evaluation reports 50, 90 and 95 % beside). What it cannot fix: a biased median (a systematic offset of
the network or of the grid against real stars) — scaling around the median widens intervals to cover a bias, it
does not remove it; nor spectra unlike the training grid (other physics, other normalisation, S/N outside).

`fit(post, flux, snr, truth)` fits one; `Calibration.apply(quantiles, snr)` rescales; `write`/`read` keep it as
`calibration.json` in the model directory, with the id of the model it belongs to, and its sha256 in
`calibration.sha256` beside it: `cinn.load` picks it up and `Posterior.summarize` / `gridkit infer` apply it
unless asked not to (`calibrated=False`, `--no-calibration`); catalogs record it in their attrs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridkit.errors import ConfigError
from gridkit.files import atomic_write_text

FILE = "calibration.json"
#: the level whose coverage the scale factors make exact
LEVEL = 0.68


@dataclass(frozen=True)
class Calibration:
    """Scale factors (n_snr, n_labels) of the posterior around its median at the S/N values `snr` (per A)."""

    labels: tuple[str, ...]
    snr: np.ndarray
    scale: np.ndarray
    model_id: str
    n_spectra: int
    source: str = ""

    def factors(self, snr) -> np.ndarray:
        """(S, n_labels) scale factors at the S/N `snr` (S,): interpolated in log10 S/N, held beyond the ends."""
        x = np.log10(np.asarray(snr, dtype=np.float64).reshape(-1))
        nodes = np.log10(self.snr)
        return np.stack([np.interp(x, nodes, self.scale[:, j]) for j in range(len(self.labels))], axis=1)

    def apply(self, quantiles: np.ndarray, snr, median_index: int) -> np.ndarray:
        """Quantiles (S, n_labels, n_q) rescaled around their median (the quantile at `median_index`)."""
        q = np.asarray(quantiles, dtype=np.float64)
        med = q[:, :, median_index:median_index + 1]
        return med + self.factors(snr)[:, :, None] * (q - med)

    def apply_samples(self, samples: np.ndarray, snr) -> np.ndarray:
        """Samples (S, n, n_labels) rescaled around their per-spectrum median (what `apply` does to quantiles)."""
        s = np.asarray(samples, dtype=np.float64)
        med = np.median(s, axis=1, keepdims=True)
        return med + self.factors(snr)[:, None, :] * (s - med)

    def to_json(self) -> dict:
        return {"method": f"scale around the median so that the central {LEVEL:.0%} interval is exact per label and S/N",
                "level": LEVEL, "labels": list(self.labels), "snr": [float(v) for v in self.snr],
                "scale": [[float(v) for v in row] for row in self.scale], "model_id": self.model_id, "n_spectra": int(self.n_spectra),
                "source": self.source}

    @classmethod
    def from_json(cls, doc: dict) -> "Calibration":
        try:
            snr = np.asarray(doc["snr"], dtype=np.float64)
            scale = np.asarray(doc["scale"], dtype=np.float64)
            labels = tuple(doc["labels"])
            if scale.shape != (snr.size, len(labels)) or not (np.all(np.isfinite(scale)) and np.all(scale > 0) and np.all(snr > 0)):
                raise ValueError(f"scale of shape {scale.shape} for {snr.size} S/N and {len(labels)} labels, finite and > 0")
            return cls(labels, snr, scale, str(doc["model_id"]), int(doc.get("n_spectra", 0)), str(doc.get("source", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"calibration is not valid: {exc}") from None

    def summary(self) -> str:
        """One line for a catalog's provenance."""
        return json.dumps({"level": LEVEL, "snr": [float(v) for v in self.snr], "scale": {lab: [round(float(v), 4) for v in self.scale[:, j]]
                                                                                         for j, lab in enumerate(self.labels)},
                           "n_spectra": int(self.n_spectra), "source": self.source})


def _sides(quantiles: np.ndarray, truth: np.ndarray, qs) -> np.ndarray:
    """(S, n_labels) how far the truth lies from the posterior median in units of the 68 % half-interval on its side,
    from quantiles (S, n_labels, n_q) at the levels `qs`."""
    q16, med, q84 = (quantiles[:, :, list(qs).index(q)] for q in (0.16, 0.5, 0.84))
    above = truth >= med
    width = np.where(above, q84 - med, med - q16)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 0, np.abs(truth - med) / width, np.nan)


def fit(post, flux, snr, truth, *, n: int = 1024, seed: int = 0, keys=None, source: str = "") -> Calibration:
    """The calibration of `post` from spectra `flux` (S, n_wave) at S/N `snr` (S,) with true labels `truth`
    (S, n_labels): per distinct S/N, the factor per label that makes the 68 % interval of `Posterior.summarize` (its
    own quantiles, uncalibrated) exact. Needs at least 20 spectra per S/N."""
    from catalogs.schema import QUANTILES

    values, s = post.check_inputs(flux, snr)
    t = np.asarray(truth, dtype=np.float64)
    if t.shape != (values.shape[0], len(post.label_names)):
        raise ConfigError(f"truth must have shape ({values.shape[0]}, {len(post.label_names)}), got {t.shape}")
    summ = post.summarize(values, s, n=n, seed=seed, keys=keys, calibrated=False)
    quants = np.stack([summ[f"{lab}_quantiles"].values for lab in post.label_names], axis=1)  # (S, d, n_q)
    levels = np.unique(s)
    scale = np.empty((levels.size, t.shape[1]))
    for i, level in enumerate(levels):
        sel = s == level
        if sel.sum() < 20:
            raise ConfigError(f"a calibration needs at least 20 spectra per S/N; S/N {level:g} has {int(sel.sum())}")
        scale[i] = np.nanquantile(_sides(quants[sel], t[sel], QUANTILES), LEVEL, axis=0)
    return Calibration(tuple(post.label_names), levels, np.maximum(scale, 1e-3), str(post.model_id), int(values.shape[0]), source)


def write(model_dir, cal: Calibration) -> Path:
    """Store `cal` as model_dir/calibration.json, with its sha256 beside it (calibration.sha256)."""
    text = json.dumps(cal.to_json(), indent=1)
    path = atomic_write_text(Path(model_dir) / FILE, text)
    atomic_write_text(Path(model_dir) / (FILE.replace(".json", ".sha256")), hashlib.sha256(text.encode()).hexdigest() + "\n")
    return path


def read(model_dir, model_id: str) -> Calibration | None:
    """The calibration stored in `model_dir`, checked (its sha256, that it belongs to `model_id`); None if there is none."""
    from .checkpoint import ModelDirError

    path = Path(model_dir) / FILE
    if not path.is_file():
        return None
    text = path.read_text()
    sha = Path(model_dir) / FILE.replace(".json", ".sha256")
    if not sha.is_file() or sha.read_text().strip() != hashlib.sha256(text.encode()).hexdigest():
        raise ModelDirError(f"{path} does not match its recorded sha256 ({sha.name}): corrupt or edited; fit it again "
                            "(gridkit calibrate-intervals) or remove both files")
    cal = Calibration.from_json(json.loads(text))
    if cal.model_id != str(model_id):
        raise ModelDirError(f"{path} was fitted for model {cal.model_id}, not this model ({model_id}): fit it again")
    return cal


__all__ = ["Calibration", "fit", "write", "read", "FILE", "LEVEL"]
