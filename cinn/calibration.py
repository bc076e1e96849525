"""Post-hoc calibration of the posterior's credible intervals, fitted on held-out spectra, stored with the model.

A normalising flow trained on a few hundred models is rarely calibrated: its 68 % intervals hold the truth 45 % or
95 % of the time depending on the label and the S/N, and its shape is off too (a Teff posterior too peaked in the
core). The calibration is a monotone map of each label's posterior, per S/N, in two steps fitted one after the other:

1. **scale** around the median by a factor s(label, S/N),  x' = median + s (x - median):  s makes the central 68 %
   interval hold the truth of exactly 68 % of the fitting spectra (side by side: a truth above the median is measured
   against q84 - median, one below against median - q16). It brings the draws' range over the truths.
2. **quantile remap** of the scaled posterior (Kuleshov et al. 2018, "Accurate uncertainties for deep learning using
   calibrated regression"): where the truths' probability integral transform (PIT, the level of the scaled
   posterior's quantile function at the truth) has the empirical quantile function G^-1, the calibrated quantile at level u is the scaled
   posterior's quantile at level G^-1(u). On the fitting spectra the PIT becomes uniform, so every central interval
   (50, 68, 90, 95 %) holds its level and the SBC ranks are flat, shape and median shifts included. G^-1 is
   tabulated at `PIT_LEVELS`; a calibration fitted before the remap existed (no `pit`) has the identity there.

Between the fitting S/N values both are interpolated in log10 S/N, beyond them held at the nearest. The map is
monotone per spectrum and label, so draws keep their ranks (correlations between labels stay) and the MAP and
f_reject are not changed.

What it guarantees: on spectra like the fitting ones (same grid, same noise model), the central intervals hold the
truth at their level per label and S/N in expectation over fitting sets, whatever their size (the empirical quantiles
are taken at the plotting positions i / (N + 1), as split-conformal intervals are), up to the fitting set's sampling
error (about sqrt(u (1 - u) / N) for N spectra per S/N). What it cannot fix: spectra unlike the fitting ones (other
physics, other normalisation, S/N outside); a median shifted by the remap is a shift learnt on the grid (the
network's average bias there), not a correction of the grid's systematics against real stars.

`fit(post, flux, snr, truth)` fits one; `Calibration.apply_samples(draws, snr, inside)` maps draws; `write`/`read` keep it as
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
#: nominal levels at which the quantile remap (the PIT's quantile function G^-1) is tabulated
PIT_LEVELS = np.linspace(0.0, 1.0, 41)


@dataclass(frozen=True)
class Calibration:
    """Scale factors (n_snr, n_labels) of the posterior around its median at the S/N values `snr` (per A), and the
    quantile remap `pit` (n_snr, n_labels, len(PIT_LEVELS)): the level of the scaled posterior's quantile that is the
    calibrated quantile at each of PIT_LEVELS (None: the identity)."""

    labels: tuple[str, ...]
    snr: np.ndarray
    scale: np.ndarray
    model_id: str
    n_spectra: int
    source: str = ""
    pit: np.ndarray | None = None

    def _interp(self, table: np.ndarray, snr) -> np.ndarray:
        """table (n_snr, ...) at the S/N `snr` (S,): linear in log10 S/N, held beyond the ends -> (S, ...)."""
        x = np.log10(np.asarray(snr, dtype=np.float64).reshape(-1))
        nodes = np.log10(self.snr)
        flat = table.reshape(table.shape[0], -1)
        return np.stack([np.interp(x, nodes, flat[:, j]) for j in range(flat.shape[1])], axis=1).reshape((x.size,) + table.shape[1:])

    def factors(self, snr) -> np.ndarray:
        """(S, n_labels) scale factors at the S/N `snr` (S,)."""
        return self._interp(self.scale, snr)

    def levels(self, snr, nominal) -> np.ndarray:
        """(S, n_labels, L) the levels of the scaled posterior's quantiles that are the calibrated quantiles at the
        `nominal` levels (L,), at the S/N `snr` (S,)."""
        nominal = np.asarray(nominal, dtype=np.float64)
        S, d = np.asarray(snr).reshape(-1).size, len(self.labels)
        if self.pit is None:
            return np.broadcast_to(nominal, (S, d, nominal.size)).copy()
        table = self._interp(self.pit, snr)  # (S, d, len(PIT_LEVELS)), monotone in the last axis
        if nominal.shape == PIT_LEVELS.shape and np.array_equal(nominal, PIT_LEVELS):
            return table
        return np.stack([[np.interp(nominal, PIT_LEVELS, table[i, j]) for j in range(d)] for i in range(S)])

    def apply_samples(self, samples: np.ndarray, snr, inside: np.ndarray | None = None) -> np.ndarray:
        """Draws (S, n, n_labels) calibrated: each spectrum's and label's monotone map (scale around the median of the
        `inside` draws, default all, then the remap), through the knots of PIT_LEVELS and extended beyond the draws'
        range with the scale's slope (`Posterior.summarize` takes its quantiles from the calibrated in-bounds draws)."""
        s = np.asarray(samples, dtype=np.float64)
        S, n, d = s.shape
        inside = np.ones((S, n), dtype=bool) if inside is None else np.asarray(inside, dtype=bool)
        f = self.factors(snr)
        lev = self.levels(snr, PIT_LEVELS)
        out = np.empty_like(s)
        for i in range(S):  # per spectrum: np.interp is C; a vectorised gather through double argsorts was 3x slower
            ref = s[i][inside[i]] if inside[i].any() else s[i]
            ref = np.sort(ref, axis=0)
            med = _at_levels(ref, np.full((d, 1), 0.5))[:, 0]
            xk = _at_levels(ref, np.broadcast_to(PIT_LEVELS, (d, PIT_LEVELS.size)))  # raw quantiles at the knots
            yk = med[:, None] + f[i][:, None] * (_at_levels(ref, lev[i]) - med[:, None])  # their calibrated values
            for j in range(d):
                x = s[i, :, j]
                y = np.interp(x, xk[j], yk[j])
                y = np.where(x < xk[j, 0], yk[j, 0] + f[i, j] * (x - xk[j, 0]), y)
                out[i, :, j] = np.where(x > xk[j, -1], yk[j, -1] + f[i, j] * (x - xk[j, -1]), y)
        return out

    def to_json(self) -> dict:
        doc = {"method": f"scale around the median so that the central {LEVEL:.0%} interval is exact per label and S/N, then "
                         "remap the quantile levels so that the truths' PIT is uniform (pit: G^-1 at pit_levels)",
               "level": LEVEL, "labels": list(self.labels), "snr": [float(v) for v in self.snr],
               "scale": [[float(v) for v in row] for row in self.scale], "model_id": self.model_id, "n_spectra": int(self.n_spectra),
               "source": self.source}
        if self.pit is not None:
            doc["pit_levels"] = [float(v) for v in PIT_LEVELS]
            doc["pit"] = [[[float(v) for v in lab] for lab in row] for row in self.pit]  # unrounded: read back identical
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> "Calibration":
        try:
            snr = np.asarray(doc["snr"], dtype=np.float64)
            scale = np.asarray(doc["scale"], dtype=np.float64)
            labels = tuple(doc["labels"])
            if scale.shape != (snr.size, len(labels)) or not (np.all(np.isfinite(scale)) and np.all(scale > 0) and np.all(snr > 0)):
                raise ValueError(f"scale of shape {scale.shape} for {snr.size} S/N and {len(labels)} labels, finite and > 0")
            pit = None
            if "pit" in doc:
                pit = np.asarray(doc["pit"], dtype=np.float64)
                if not np.allclose(np.asarray(doc.get("pit_levels", []), dtype=np.float64), PIT_LEVELS):
                    raise ValueError("pit_levels differ from this version's PIT_LEVELS")
                if pit.shape != (snr.size, len(labels), PIT_LEVELS.size) or not (np.all(np.isfinite(pit)) and np.all(np.diff(pit, axis=-1) >= 0)
                                                                                 and pit.min() >= 0 and pit.max() <= 1):
                    raise ValueError(f"pit of shape {pit.shape} must be ({snr.size}, {len(labels)}, {PIT_LEVELS.size}), "
                                     "finite, within 0..1 and non-decreasing")
            return cls(labels, snr, scale, str(doc["model_id"]), int(doc.get("n_spectra", 0)), str(doc.get("source", "")), pit)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"calibration is not valid: {exc}") from None

    def summary(self) -> str:
        """One line for a catalog's provenance (the remap table by its digest)."""
        doc = {"level": LEVEL, "snr": [float(v) for v in self.snr],
               "scale": {lab: [round(float(v), 4) for v in self.scale[:, j]] for j, lab in enumerate(self.labels)},
               "n_spectra": int(self.n_spectra), "source": self.source}
        if self.pit is not None:
            doc["pit_sha256"] = hashlib.sha256(json.dumps(self.to_json()["pit"]).encode()).hexdigest()
        return json.dumps(doc)


def _at_levels(sorted_x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles of each column of `sorted_x` (n, d), sorted along axis 0, at per-column `levels` (d, L), as np.quantile's
    default (linear) method computes them -> (d, L)."""
    n = sorted_x.shape[0]
    pos = np.clip(np.asarray(levels, dtype=np.float64), 0.0, 1.0) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    cols = np.arange(sorted_x.shape[1])[:, None]
    a, b = sorted_x[lo, cols], sorted_x[hi, cols]
    return a + (pos - lo) * (b - a)


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
    (S, n_labels): per distinct S/N and label, the scale factor that makes the 68 % interval of `Posterior.summarize`
    (its own draws, uncalibrated) exact, then the quantile function of the truths' PIT under the scaled draws (the
    remap). Needs at least 20 spectra per S/N."""
    values, s = post.check_inputs(flux, snr)
    t = np.asarray(truth, dtype=np.float64)
    if t.shape != (values.shape[0], len(post.label_names)):
        raise ConfigError(f"truth must have shape ({values.shape[0]}, {len(post.label_names)}), got {t.shape}")
    keys = np.arange(values.shape[0]) if keys is None else np.asarray(keys)
    levels = np.unique(s)
    d = t.shape[1]
    scale, pit = np.empty((levels.size, d)), np.empty((levels.size, d, PIT_LEVELS.size))
    for i, level in enumerate(levels):
        sel = np.flatnonzero(s == level)
        if sel.size < 20:
            raise ConfigError(f"a calibration needs at least 20 spectra per S/N; S/N {level:g} has {sel.size}")
        summ = post.summarize(values[sel], s[sel], n=n, seed=seed, keys=keys[sel], calibrated=False, keep=n)
        scale[i], pit[i] = fit_draws(summ["samples"].values, summ["samples_in_bounds"].values, t[sel])
    return Calibration(tuple(post.label_names), levels, scale, str(post.model_id), int(values.shape[0]), source, pit)


def quantiles_in_bounds(draws: np.ndarray, inside: np.ndarray, levels) -> np.ndarray:
    """(k, d, len(levels)) quantiles of each spectrum's in-bounds draws: draws (k, n, d), inside (k, n) bool; NaN for a
    spectrum with none. THE rule of the catalogs' quantiles, shared by `Posterior.summarize`, the calibration's fit and
    `evaluate` (per spectrum: each has its own number of in-bounds draws)."""
    k, _, d = draws.shape
    out = np.full((k, d, len(levels)), np.nan)
    for i in np.flatnonzero(np.asarray(inside).any(axis=1)):
        out[i] = np.quantile(draws[i][inside[i]], levels, axis=0).T
    return out


def fit_draws(draws: np.ndarray, inside: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One S/N's (scale (d,), pit (d, len(PIT_LEVELS))) from posterior draws (k, n, d) of k spectra, of which `inside`
    (k, n) count (the in-bounds ones), and their true labels (k, d): the scale that makes the central 68 % interval
    of the in-bounds draws hold the truth of 68 % of the spectra, then the quantile function of the truths' PIT under
    the scaled draws."""
    from catalogs.schema import QUANTILES

    draws, truth = np.asarray(draws, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    k, _, d = draws.shape
    quants = quantiles_in_bounds(draws, inside, QUANTILES)
    pits = np.full((k, d), np.nan)
    # the empirical quantiles take the order statistics at the plotting positions i / (k + 1) ("weibull"): the i-th of k
    # exchangeable values lies below a new one with probability i / (k + 1), so the intervals fitted on k spectra hold
    # the truth of a new spectrum at their level in expectation. numpy's default (linear) positions, (i - 1) / (k - 1),
    # make the remap's central u interval hold u (k - 1) / (k + 1) instead: 0.676 for k = 342, 0.615 for k = 20
    scale = np.maximum(np.nanquantile(_sides(quants, truth, QUANTILES), LEVEL, axis=0, method="weibull"), 1e-3)
    median = quants[:, :, QUANTILES.index(0.5)]
    for i in range(k):
        x = draws[i][inside[i]]
        if x.shape[0] == 0:
            continue
        raw_truth = median[i] + (truth[i] - median[i]) / scale  # the truth where the unscaled draws are compared with it
        # the level whose quantile (np.quantile's linear rule, as `_at_levels` reads it back) is the truth: a count of
        # the draws below it would put every calibrated quantile about one draw inward at the top
        x = np.sort(x, axis=0)
        grid = np.linspace(0.0, 1.0, x.shape[0])
        pits[i] = [np.interp(raw_truth[j], x[:, j], grid) for j in range(d)]
    table = np.nanquantile(pits, PIT_LEVELS, axis=0, method="weibull").T  # (d, L)
    # the ends extrapolated from their neighbours: the lowest and highest PIT are extremes of the Monte-Carlo noise too,
    # and would spread the calibrated posterior's extreme draws where no truth was
    table[:, 0], table[:, -1] = 2 * table[:, 1] - table[:, 2], 2 * table[:, -2] - table[:, -3]
    return scale, np.maximum.accumulate(np.clip(table, 0.0, 1.0), axis=1)


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


__all__ = ["Calibration", "fit", "fit_draws", "write", "read", "FILE", "LEVEL", "PIT_LEVELS"]
