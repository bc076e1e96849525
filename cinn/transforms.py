"""Target and input transforms of the cINN, fitted on the training split and stored with the model.

Labels:  y = (f(label) - mean) / std, with f = log10(max(label, log_floor)) for the log labels (teff,
         vbroad by default) and the identity otherwise; with a label margin m (`CINNConfig.label_margin`), f is
         followed by logit((f - lo) / (hi - lo)), [lo, hi] the label's training range (in f) widened by m of it on
         each side: the flow then lives on the whole real line while its draws stay inside [lo, hi]. vbroad = 0 (no rotation/macroturbulence) is
         allowed: it is floored at `log_floor` (0.1 km/s by default, two orders of magnitude below the
         4MOST HR resolution element of ~15 km/s, so the floor changes no spectrum) before log10; the
         inverse returns 10**y, i.e. values <= log_floor come back as ~log_floor.
Flux:    standardized per pixel, (flux - mean_pix) / std_pix, statistics computed out of core with dask.
S/N:     the condition sees log10(S/N per Angstrom), standardized.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridkit.errors import ConfigError, GridError

STD_FLOOR = 1e-6
#: labels beyond the logit's support are clipped this close to its ends (logit +-27.6; in float64 a physical label
#: still resolves 1 - u to ~1e-4 there, so draws of the flow map back to their own targets) before the logit
LOGIT_EPS = 1e-12


@dataclass
class LabelTransform:
    names: tuple[str, ...]
    log: np.ndarray  # bool (n_labels,)
    floor: float
    mean: np.ndarray  # (n_labels,) in transformed space
    std: np.ndarray
    #: (n_labels,) the logit's support [lower, upper] in log10/identity space; None: no logit (the published method)
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    @classmethod
    def fit(cls, labels: np.ndarray, names, log_labels, floor: float, margin: float | None = None) -> "LabelTransform":
        """margin: None (no logit) or > 0, the fraction of each label's training range (log10 range for log labels)
        added on both sides to make the logit's support."""
        names = tuple(names)
        log = np.array([n in log_labels for n in names], dtype=bool)
        labels = np.asarray(labels, dtype=np.float64)
        lower = upper = None
        if margin is not None:
            if not (np.isfinite(margin) and margin > 0):
                raise ConfigError(f"label_margin must be None or a number > 0, got {margin!r}")
            base = _pre(labels, log, floor)
            lo, hi = base.min(axis=0), base.max(axis=0)
            width = hi - lo
            if np.any(width <= 0):
                flat = [n for n, w in zip(names, width) if w <= 0]
                raise ConfigError(f"label_margin needs a range of values for every label; {flat} take one value in the training split")
            lower, upper = lo - margin * width, hi + margin * width
        pre = _pre(labels, log, floor, lower, upper)
        mean = pre.mean(axis=0)
        std = np.maximum(pre.std(axis=0), STD_FLOOR)
        return cls(names, log, float(floor), mean, std, lower, upper)

    def forward(self, labels: np.ndarray) -> np.ndarray:
        """Physical labels (..., n_labels) -> standardized targets (float64); with a logit, labels at or beyond its
        support's ends are clipped to within LOGIT_EPS of them (`log_abs_det_forward` gives them no density)."""
        return (_pre(np.asarray(labels, dtype=np.float64), self.log, self.floor, self.lower, self.upper) - self.mean) / self.std

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Standardized targets (..., n_labels) -> physical labels (float64)."""
        pre = np.asarray(y, dtype=np.float64) * self.std + self.mean
        if self.lower is not None:
            pre = self.lower + (self.upper - self.lower) * _sigmoid(pre)
        return np.where(self.log, 10.0 ** np.where(self.log, pre, 0.0), pre)

    def inverse_torch(self, y):
        """`inverse` in torch (float32, differentiable): for gradients of physical labels through the flow."""
        import torch

        def t(a):
            return torch.as_tensor(np.asarray(a, dtype=np.float32), device=y.device)
        pre = y * t(self.std) + t(self.mean)
        if self.lower is not None:
            pre = t(self.lower) + t(self.upper - self.lower) * torch.sigmoid(pre)
        log = torch.as_tensor(self.log, device=y.device)
        return torch.where(log, torch.pow(10.0, torch.where(log, pre, torch.zeros_like(pre))), pre)

    def log_abs_det_forward(self, labels: np.ndarray) -> np.ndarray:
        """log |d y / d label| summed over labels (...,): converts a density in y to one in physical units (-inf outside
        the logit's support, where the flow puts no density)."""
        lab = np.asarray(labels, dtype=np.float64)
        out = -np.log(self.std).sum() * np.ones(lab.shape[:-1])
        safe = np.maximum(lab, self.floor)
        # d log10(x) / dx = 1 / (x ln 10) above the floor; below it the transform is flat (density undefined: use the floor)
        out = out - np.sum(np.where(self.log, np.log(safe * np.log(10.0)), 0.0), axis=-1)
        if self.lower is not None:
            # d logit(u) / d base = 1 / (u (1 - u) (upper - lower)), u = (base - lower) / (upper - lower)
            width = self.upper - self.lower
            u = (_pre(lab, self.log, self.floor) - self.lower) / width
            with np.errstate(invalid="ignore", divide="ignore"):
                jac = np.where((u > 0) & (u < 1), -np.log(u) - np.log1p(-u) - np.log(width), -np.inf)
            out = out + np.sum(jac, axis=-1)
        return out

    def to_json(self) -> dict:
        out = {"names": list(self.names), "log": [bool(v) for v in self.log], "floor": self.floor,
               "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}
        if self.lower is not None:
            out["logit_lower"] = [float(v) for v in self.lower]
            out["logit_upper"] = [float(v) for v in self.upper]
        return out

    @classmethod
    def from_json(cls, d: dict) -> "LabelTransform":
        # models written before the logit have no logit_lower/upper: they load as before
        bounds = [np.asarray(d[k], dtype=np.float64) if k in d else None for k in ("logit_lower", "logit_upper")]
        return cls(tuple(d["names"]), np.asarray(d["log"], dtype=bool), float(d["floor"]),
                   np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64), *bounds)


def _pre(labels: np.ndarray, log: np.ndarray, floor: float, lower=None, upper=None) -> np.ndarray:
    base = np.where(log, np.log10(np.maximum(labels, floor)), labels)
    if lower is None:
        return base
    # clipped: a validation or test label beyond the support gets a large finite target, not +-inf (a NaN stays NaN)
    u = np.clip((base - lower) / (upper - lower), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(u) - np.log1p(-u)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


@dataclass
class InputScaler:
    """Per-pixel flux standardization and the S/N feature."""

    flux_mean: np.ndarray  # (n_wave,) float32
    flux_std: np.ndarray
    logsnr_mean: float
    logsnr_std: float

    def flux(self, flux: np.ndarray) -> np.ndarray:
        return ((np.asarray(flux, dtype=np.float32) - self.flux_mean) / self.flux_std).astype(np.float32, copy=False)

    def snr(self, snr: np.ndarray) -> np.ndarray:
        return ((np.log10(np.asarray(snr, dtype=np.float64)) - self.logsnr_mean) / self.logsnr_std).astype(np.float32)

    def fill_masked(self, flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flux with its masked (non-finite) pixels set to the training mean flux of the pixel, masked pixels per
        spectrum): THE rule for masked pixels. Standardized, they are 0, exactly what the training's masking
        augmentation (`mask_runs`) feeds the network, which thereby learns to read them as "no information"."""
        flux = np.asarray(flux, dtype=np.float32)
        bad = ~np.isfinite(flux)
        return np.where(bad, self.flux_mean, flux).astype(np.float32, copy=False), bad.sum(axis=-1).astype(np.int32)

    def condition_input(self, flux: np.ndarray, snr: np.ndarray) -> np.ndarray:
        """(n, n_wave) flux and (n,) S/N per Angstrom -> (n, n_wave + 1) float32 input of the feature network."""
        return np.concatenate([self.flux(flux), self.snr(snr)[:, None]], axis=1)

    def to_json(self) -> dict:
        return {"logsnr_mean": self.logsnr_mean, "logsnr_std": self.logsnr_std}


def mask_runs(rng: np.random.Generator, n_spectra: int, n_wave: int, max_fraction: float, run: int) -> np.ndarray:
    """(n_spectra, n_wave) bool: the pixels the training masks, as observed spectra are masked (runs of bad
    pixels, gaps, telluric bands): per spectrum a fraction drawn uniformly in [0, max_fraction], as runs of `run`
    pixels at random places. Masked pixels enter the network as the training mean (`InputScaler.fill_masked`)."""
    out = np.zeros((n_spectra, n_wave), dtype=bool)
    if max_fraction <= 0 or n_spectra == 0:
        return out
    n_runs = np.rint(rng.uniform(0.0, max_fraction, n_spectra) * n_wave / run).astype(int)
    starts = rng.integers(0, max(1, n_wave - run + 1), size=int(n_runs.sum()))
    rows = np.repeat(np.arange(n_spectra), n_runs)
    cols = starts[:, None] + np.arange(run)[None, :]
    out[np.repeat(rows, run), np.minimum(cols, n_wave - 1).ravel()] = True
    return out


def flux_statistics(flux, *, noise_var_factor: np.ndarray | float = 0.0, check=None, also=(), what: str = "flux"):
    """Per-pixel mean and std of a lazy flux (model, [snr,] wavelength) computed out of core with dask.

    noise_var_factor: (n_wave,) or scalar; adds mean(flux**2) * factor to the variance (dynamic noise:
    the expected variance of noise sigma = flux / snr_pixel).
    check: a lazy flux (model, [snr,] wavelength) whose every value must be finite (default: `flux`), e.g. the
    whole cube of which `flux` is the training split; it is checked in the same dask pass as the statistics
    (a chunk is read once), and a NaN/inf anywhere is a GridError naming `what`, the models (ids) and the
    pixels (wavelengths): statistics of non-finite data would make every loss NaN.
    also: further lazy dask collections computed in the same pass (they share its reads); their values follow
    (mean, std) in the returned tuple.
    """
    import dask

    arr = _dask(flux).astype(np.float64)
    axes = tuple(range(arr.ndim - 1))
    checked = flux if check is None else check
    found = nonfinite_lazy(checked)
    mean, sq, bad, *extra = dask.compute(arr.mean(axis=axes), (arr**2).mean(axis=axes), found, *also)
    raise_nonfinite(checked, bad, what)
    var = np.maximum(sq - mean**2, 0.0) + sq * np.asarray(noise_var_factor, dtype=np.float64)
    std = np.maximum(np.sqrt(var), 1e-3)  # a pixel constant across the grid must not blow up
    return (mean.astype(np.float32), std.astype(np.float32), *extra)


def flux_basis(flux, flux_mean: np.ndarray, flux_std: np.ndarray, components: int, *, max_models: int = 4096) -> np.ndarray:
    """(n_wave, components) orthonormal basis of the leading principal components of the standardized flux
    (model, wavelength) of the training split (its first `max_models` models: the basis of a large grid converges long
    before). From the eigenvectors of the (models x models) Gram matrix, so the memory is max_models x n_wave, not
    n_wave x n_wave; each vector's sign fixed (largest coefficient positive) so the basis is deterministic."""
    x = np.asarray(_dask(flux)[:max_models].compute(), dtype=np.float64)
    x = (x - np.asarray(flux_mean, dtype=np.float64)) / np.asarray(flux_std, dtype=np.float64)
    if components > min(x.shape):
        raise ConfigError(f"flux_components ({components}) must not exceed the number of training models ({x.shape[0]}) "
                          f"nor pixels ({x.shape[1]})")
    gram = x @ x.T
    values, vectors = np.linalg.eigh(gram)  # ascending
    order = np.argsort(values)[::-1][:components]
    values, vectors = values[order], vectors[:, order]
    if not np.all(values > 1e-12 * values[0]):
        raise ConfigError(f"the training flux spans fewer than {components} independent components: lower flux_components")
    basis = (x.T @ vectors) / np.sqrt(values)  # unit columns: x^T u / sigma
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(components)])
    return (basis * signs).astype(np.float32)


def _dask(flux):
    import dask.array as da

    arr = flux.data if hasattr(flux, "dims") else flux  # a DataArray's dask array (numpy arrays have a .data buffer too)
    return arr if isinstance(arr, da.Array) else da.from_array(np.asarray(arr))


def nonfinite_lazy(flux) -> tuple:
    """Lazy (count, per-row any, per-pixel any[, per-middle-index any]) of the NaN/inf values of a flux
    (row, [snr,] wavelength): what `raise_nonfinite` needs to name them, from one pass over the data."""
    import dask.array as da

    bad = ~da.isfinite(_dask(flux))
    rows, pix = tuple(range(1, bad.ndim)), tuple(range(bad.ndim - 1))
    mid = (bad.any(axis=(0, bad.ndim - 1)),) if bad.ndim == 3 else ()
    return (bad.sum(), bad.any(axis=rows), bad.any(axis=pix), *mid)


def raise_nonfinite(flux, found, what: str = "flux") -> None:
    """GridError naming the rows (model ids), pixels (wavelengths) and S/N of the NaN/inf values `found`
    (computed `nonfinite_lazy(flux)`) of `flux` (a DataArray names them by coordinate, an array by index)."""
    count, rows, pix, *mid = found
    if int(count) == 0:
        return
    dims = tuple(getattr(flux, "dims", ())) or (("model", "snr", "wavelength") if len(flux.shape) == 3 else ("model", "wavelength"))
    coords = getattr(flux, "coords", {})

    def named(mask, dim: str, noun: str, unit: str = "") -> str:
        idx = np.flatnonzero(np.asarray(mask))
        values = np.asarray(coords[dim].values)[idx] if dim in coords else idx
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[:8].tolist())
        label = dim if dim in coords else f"{dim} index"
        return f"{idx.size} {noun}(s) ({label} {shown}{', ...' if idx.size > 8 else ''}{unit})"

    where = f"{int(count)} NaN/inf flux value(s) in {named(rows, dims[0], 'model')} at {named(pix, dims[-1], 'pixel', ' A')}"
    if mid:
        where += f", at {named(mid[0], dims[1], 'S/N')}"
    raise GridError(f"{what} has {where}; statistics and losses of non-finite data are NaN: mask, interpolate or drop those "
                    "models, then train")


__all__ = ["LabelTransform", "InputScaler", "flux_statistics", "nonfinite_lazy", "raise_nonfinite"]
