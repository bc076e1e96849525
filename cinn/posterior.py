"""The posterior API: `load(model_dir)` -> Posterior with sample / log_prob / summarize.

Reproducibility across chunking (what a restartable survey needs): the latent draws of spectrum j are
`rng_for(seed, keys[j])` standard normals (keys default to 0..n_spec-1), and every spectrum goes through the
network in a pass of its own shape, independent of what else is in the call: on CPU one spectrum per pass
(condition and samples in fresh, aligned buffers; a spectrum's n samples in blocks of `SAMPLE_BLOCK`), on GPU
groups of a fixed number of spectra, the last group padded to that size. Batched matrix products give
different float rounding for different batch shapes and memory alignments; with shapes fixed per spectrum,
a spectrum's samples, MAP and quantiles are bit-identical whatever the chunking, batch size or memory cap
(same machine, torch build and thread count; on GPU for a fixed memory cap). Spectra are not batched on CPU:
n = 4096 samples already make large matrices, so batching spectra gains nothing there.

MAP rule (the published one, the default): among the n samples inside the training bounds, the one of
highest posterior density under the flow, log q(x|y) = log N(z) - log|det dx/dz|, computed by the reverse
pass itself (the flow's log-determinant) in the flow's space (`LabelTransform`: standardized, log10 Teff/vbroad,
through a logit with a `label_margin`). It lives in `map_index` and is applied by `Posterior.map_estimate`,
which `summarize` and the evaluation share: `post.map_estimate(*post.sample(flux, snr, return_log_q=True))` is
the MAP of `summarize` from the same draws.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from catalogs.schema import EXTRAPOLATED_FRACTION, QUANTILES  # the quantile columns summarize writes and catalogs hold
from gridkit.errors import ExtrapolationWarning, GridError
from gridkit.schema import STAR, WAVELENGTH, check_same_wavelength, label_attrs
from gridkit.store import rng_for

from . import checkpoint as ck
from .calibration import quantiles_in_bounds
from .config import CINNConfig
from .model import CINN, FastReverse, log_normal
from .transforms import InputScaler, LabelTransform

DEFAULT_MEMORY_CAP = 1 << 30  # bytes of activations per pass (GPU groups of spectra; host memory of summarize)
#: samples of one spectrum per reverse pass: a constant (not the memory cap), so results never depend on it.
#: 1024 rows keep a subnet's 1024 x 512 activations in a core's cache: 1.27x faster on CPU than 4096 rows
#: (benchmarks/bench_inference.py), and on GPU still 64 spectra x 1024 rows per pass
SAMPLE_BLOCK = 1024
#: at most this many spectra per pass on GPU (1 on CPU)
MAX_GROUP = 64
#: spectra per feature-network pass on GPU in log_prob (1 on CPU)
COND_GROUP = 256


class Posterior:
    """A trained cINN ready for inference (see `load`)."""

    def __init__(self, model: CINN, meta: dict, extras: dict, model_dir: Path, weights_sha256: str | None = None):
        self.model = model.eval()
        self._describe(meta, extras, model_dir, weights_sha256)
        self._fast = FastReverse(self.model)

    def _describe(self, meta: dict, extras: dict, model_dir: Path, weights_sha256: str | None) -> None:
        """Everything but the network: labels, transforms, bounds, provenance (shared with `cinn.ensemble.Ensemble`)."""
        #: sha256 of the weights file these weights were loaded from, hashed by `load` as it read it (None: not loaded from a file)
        self.weights_sha256 = weights_sha256
        self.meta = meta
        self.model_dir = Path(model_dir)
        self.label_names: tuple[str, ...] = tuple(meta["label_names"])
        self.wavelength: np.ndarray = np.asarray(extras["wavelength"], dtype=np.float64)
        self.model_id: str = str(meta["model_id"])
        self.label_transform = LabelTransform.from_json(meta["label_transform"])
        sc = meta["input_scaler"]
        self.scaler = InputScaler(extras["flux_mean"], extras["flux_std"], float(sc["logsnr_mean"]), float(sc["logsnr_std"]))
        self.bounds = np.array([meta["bounds"][n] for n in self.label_names], dtype=np.float64)  # (d, 2)
        self.instrument = meta.get("instrument", {})
        #: how the training flux was normalised ('none' or the continuum operator): spectra must be prepared alike
        self.normalisation = str(meta.get("normalisation", "none"))
        #: (min, max) S/N per Angstrom seen in training (None for models written before it was recorded)
        self.snr_range = tuple(float(v) for v in meta["snr_range"]) if "snr_range" in meta else None
        #: (d,) central 68 % width (p84 - p16) of each label over the training split (the prior the network learnt; the
        #: reference of a catalog's <label>_unconstrained), and how it was obtained (`prior_width68_source`)
        self.prior_width68, self.prior_width68_source = _prior_width68(meta, self.label_names, self.bounds)
        #: warn (ExtrapolationWarning) when a call's S/N lie outside snr_range; `gridkit infer` checks the whole
        #: survey once instead and turns this off on its workers
        self.warn_extrapolation = True
        self.device = torch.device("cpu")
        self.memory_cap = DEFAULT_MEMORY_CAP
        self.batch_spectra = False
        #: the interval calibration fitted for this model (cinn.calibration), None when there is none
        self.calibration = None

    def __repr__(self) -> str:
        return f"Posterior(model_id={self.model_id!r}, labels={len(self.label_names)}, n_wave={self.wavelength.size}, device={self.device})"

    def to(self, device) -> "Posterior":
        self.device = torch.device(device)
        self.model.to(self.device)
        self.batch_spectra = self.device.type == "cuda"
        self._fast = FastReverse(self.model)
        return self

    # -- input checks ---------------------------------------------------------------------------
    def _inputs(self, flux, snr, keys=None):
        sync_thread_count()  # every public method starts here, on whatever thread calls it
        dim = STAR
        if isinstance(flux, xr.DataArray):
            if flux.ndim == 1:
                flux = flux.expand_dims(STAR)
            if flux.ndim != 2 or WAVELENGTH not in flux.dims:
                raise GridError(f"flux must have dims (star|model, wavelength), got {flux.dims}")
            flux = flux.transpose(..., WAVELENGTH)
            dim = str(flux.dims[0])
            if WAVELENGTH in flux.coords:
                check_same_wavelength(flux[WAVELENGTH].values, self.wavelength, what="the spectra", of="the model")
            values = np.asarray(flux.values, dtype=np.float32)
        else:
            values = np.asarray(flux, dtype=np.float32)
            if values.ndim == 1:
                values = values[None, :]
        if values.ndim != 2:
            raise GridError(f"flux must be 2-D (n_spectra, n_wavelength), got shape {values.shape}")
        if values.shape[1] != self.wavelength.size:
            raise GridError(f"flux has {values.shape[1]} pixels but the model's wavelength grid has {self.wavelength.size} "
                            f"({self.wavelength[0]:.3f}-{self.wavelength[-1]:.3f} A); put the spectra on the model's grid "
                            "with `gridkit fourmostify` (gridkit.fourmostify)")
        bad = ~np.isfinite(values)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise GridError(f"flux has NaN/inf in {rows.size} spectrum/spectra (first: row {int(rows[0])}, "
                            f"pixel {int(np.flatnonzero(bad[rows[0]])[0])}); mask or interpolate bad pixels first")
        s = np.asarray(snr.values if isinstance(snr, xr.DataArray) else snr, dtype=np.float64).reshape(-1)
        if s.size == 1 and values.shape[0] > 1:
            s = np.full(values.shape[0], s[0])
        if s.shape != (values.shape[0],):
            raise GridError(f"snr must have one value per spectrum ({values.shape[0]}), got shape {s.shape}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            i = int(np.flatnonzero(~(np.isfinite(s) & (s > 0)))[0])
            raise GridError(f"snr must be finite and > 0 (per Angstrom); snr[{i}] = {s[i]}")
        message = snr_outside_training(s, self.snr_range) if self.warn_extrapolation else None
        if message:
            warnings.warn(message, ExtrapolationWarning, stacklevel=3)
        k = np.arange(values.shape[0]) if keys is None else np.asarray(keys).reshape(-1)
        if k.shape != (values.shape[0],):
            raise GridError(f"keys must have one integer per spectrum ({values.shape[0]}), got shape {k.shape}")
        return values, s, k.astype(np.int64), dim

    # -- core ------------------------------------------------------------------------------------
    def _bytes_per_sample(self) -> int:
        return 4 * (4 * self.model.config.subnet_width + 8 * len(self.label_names))

    def _spectra_per_batch(self, n: int) -> int:
        """Spectra whose samples fit the memory cap (host-side batching of summarize)."""
        return max(1, int(self.memory_cap // max(self._bytes_per_sample() * n, 1)))

    def _group_size(self, n: int) -> int:
        """Spectra per network pass: 1 on CPU; on GPU as many as the memory cap allows (fixed for given n and cap)."""
        if not self.batch_spectra:
            return 1
        fit = int(self.memory_cap // max(self._bytes_per_sample() * min(n, SAMPLE_BLOCK), 1))
        return max(1, min(MAX_GROUP, fit))  # capped: the last group of a call is padded to this size

    def _fresh(self, array: np.ndarray) -> torch.Tensor:
        """A new tensor on the device (torch's own, aligned allocation) holding `array`: a pass never reads a view
        at an offset that depends on the chunking."""
        out = torch.empty(array.shape, dtype=torch.float32, device=self.device)
        out.copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
        return out

    def _padded(self, array: np.ndarray, size: int) -> np.ndarray:
        """`array` (m, ...) padded to `size` rows with copies of its first row (so a pass always has the same shape)."""
        if array.shape[0] == size:
            return array
        return np.concatenate([array, np.repeat(array[:1], size - array.shape[0], axis=0)])

    def _group_conditions(self, values: np.ndarray, snr: np.ndarray, lo: int, hi: int, size: int) -> torch.Tensor:
        """Feature-network conditions (size, n_features) of spectra lo..hi, padded to `size` rows. Each input row
        is computed on its own (numpy's vectorised log10 may round the tail of an array differently from its
        body: no result may depend on a spectrum's position)."""
        rows = np.concatenate([self.scaler.condition_input(values[j:j + 1], snr[j:j + 1]) for j in range(lo, hi)])
        return self.model.condition(self._fresh(self._padded(rows, size)))

    @torch.inference_mode()
    def _conditions(self, values: np.ndarray, snr: np.ndarray) -> torch.Tensor:
        """Feature-network conditions (n_spec, n_features), in groups of COND_GROUP on GPU (1 on CPU), padded."""
        S = values.shape[0]
        g = COND_GROUP if self.batch_spectra else 1
        return torch.cat([self._group_conditions(values, snr, i, min(S, i + g), g)[:min(g, S - i)] for i in range(0, S, g)])

    def _latents(self, keys: np.ndarray, n: int, seed: int, stream: tuple[int, ...] = ()) -> np.ndarray:
        d = len(self.label_names)
        return np.stack([rng_for(seed, int(k), *stream).standard_normal((n, d), dtype=np.float32) for k in keys])

    @torch.inference_mode()
    def _sample_flow(self, values, snr, keys, n: int, seed: int, stream: tuple[int, ...] = (), *,
                     conditions: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(y (S, n, d) in flow space, log q (S, n)) via the fast path; `stream`: further keys of the latent draws
        (an ensemble's member number), none for a single network. `conditions`: a list that receives the spectra's
        feature-network conditions, group by group (an ensemble's density passes reuse them).

        Spectra go through in groups of `_group_size(n)` (1 on CPU), the last group padded; a spectrum's n
        samples in blocks of SAMPLE_BLOCK. Every pass has a shape that depends on n only, so each spectrum's
        result is bit-identical whatever else is in the call (see the module docstring)."""
        S, d = values.shape[0], len(self.label_names)
        ys = np.empty((S, n, d), dtype=np.float32)
        lq = np.empty((S, n), dtype=np.float32)
        g = self._group_size(n)
        block = min(n, SAMPLE_BLOCK)
        for lo in range(0, S, g):
            hi = min(S, lo + g)
            m = hi - lo
            c = self._group_conditions(values, snr, lo, hi, g)
            if conditions is not None:
                conditions.append(c[:m])
            z_all = self._padded(self._latents(keys[lo:hi], n, seed, stream), g)
            for a in range(0, n, block):
                b = min(n, a + block)
                z = self._fresh(z_all[:, a:b])
                y, logdet = self._fast.reverse(z, c)
                logq = log_normal(z.reshape(-1, d)).reshape(g, b - a) - logdet
                ys[lo:hi, a:b] = y[:m].cpu().numpy()
                lq[lo:hi, a:b] = logq[:m].cpu().numpy()
        return ys, lq

    # -- public ----------------------------------------------------------------------------------
    def check_inputs(self, flux, snr) -> tuple[np.ndarray, np.ndarray]:
        """The checks every method runs on its inputs, for code that feeds the network itself (e.g. saliency).

        flux: (n_spec, n_wave) array or DataArray (star|model, wavelength) on the model's grid; snr: per Angstrom,
        one per spectrum or a scalar. Returns (flux (n_spec, n_wave) float32, snr (n_spec,) float64); raises
        GridError for a wrong grid, NaN/inf flux or S/N <= 0, warns (ExtrapolationWarning) for S/N outside
        `snr_range` where `warn_extrapolation`."""
        values, s, _, _ = self._inputs(flux, snr)
        return values, s

    def in_bounds(self, samples: np.ndarray) -> np.ndarray:
        """Which samples (..., n, n_labels) in physical units lie inside the training label bounds: bool (..., n)."""
        return np.all((samples >= self.bounds[:, 0]) & (samples <= self.bounds[:, 1]), axis=-1)


    def map_estimate(self, samples: np.ndarray, log_q: np.ndarray) -> np.ndarray:
        """The published MAP rule on draws from `sample(..., return_log_q=True)`: per spectrum, the sample of
        highest flow density `log_q` among those inside the training bounds (`map_index`); NaN where none is
        inside. samples (S, n, n_labels) physical, log_q (S, n). Returns (S, n_labels)."""
        best = map_index(log_q, self.in_bounds(samples))
        maps = samples[np.arange(samples.shape[0]), np.maximum(best, 0)]
        maps[best < 0] = np.nan
        return maps

    def sample(self, flux, snr, n: int = 4096, seed: int = 0, keys=None, *, return_log_q: bool = False, labelled: bool = False):
        """Posterior samples (n_spec, n, n_labels) in physical units (float64).

        With `labelled`, an `xarray.DataArray` (star|model, draw, label) instead: the label names as coordinate `label`,
        each label's units and long name as coordinates `label_units(label)` and `label_long_name(label)` and in the
        attrs (`label_units`: {label: units}); the spectra's own coordinate when `flux` is a DataArray that has one.

        With `return_log_q`, (samples, log_q): also the flow density of each sample, (n_spec, n) float32,
        log q = log N(z) - log|det dy/dz| in the flow's own space (`LabelTransform`), which the
        MAP rule ranks (`map_estimate`); the density in physical units is `log_prob` = log_q +
        `label_transform.log_abs_det_forward`. Spectrum j's draws depend on (seed, keys[j]) only."""
        values, s, k, dim = self._inputs(flux, snr, keys)
        n = _check_n(n)
        y, log_q = self._sample_flow(values, s, k, n, seed)
        samples = self.label_transform.inverse(y)
        if labelled:
            samples = self.labelled(samples, dim, flux)
        return (samples, log_q) if return_log_q else samples

    def labelled(self, samples: np.ndarray, dim: str = STAR, flux=None) -> xr.DataArray:
        """Samples (n_spec, n, n_labels) as a DataArray (dim, draw, label) with label names, units and long names."""
        coords = {**sample_coords(self.label_names, samples.shape[1])}
        if isinstance(flux, xr.DataArray) and dim in flux.coords:
            coords[dim] = flux[dim].values
        units = dict(zip(self.label_names, coords["label_units"][1]))
        return xr.DataArray(samples, dims=(dim, "draw", "label"), coords=coords, name="samples",
                            attrs={**SAMPLES_ATTRS, "label_units": units, "model_id": self.model_id})

    @torch.inference_mode()
    def _log_q(self, values: np.ndarray, snr: np.ndarray, y: np.ndarray, conditions: torch.Tensor | None = None) -> np.ndarray:
        """Flow density log q(y | spectrum) (S, m) of points y (S, m, d) in flow space, by the fast forward pass
        (`FastReverse.forward`): spectrum by spectrum, in blocks of SAMPLE_BLOCK rows (shapes fixed per spectrum, as
        in sampling). `conditions`: the spectra's feature-network conditions (S, n_features) where already computed."""
        S, m, d = y.shape
        out = np.empty((S, m), dtype=np.float32)
        c = self._conditions(values, snr) if conditions is None else conditions
        for j in range(S):
            for a in range(0, m, SAMPLE_BLOCK):
                b = min(m, a + SAMPLE_BLOCK)
                z, logdet = self._fast.forward(self._fresh(y[j:j + 1, a:b]), c[j:j + 1])
                out[j, a:b] = (log_normal(z.reshape(-1, d)) + logdet.reshape(-1)).cpu().numpy()
        return out

    def log_prob(self, labels, flux, snr) -> np.ndarray:
        """log p(labels | flux, snr) in physical units (per unit of each label), shape labels.shape[:-1].

        labels: (n_spec, n_labels) or (n_spec, m, n_labels) physical values (log labels must be > log_floor).
        """
        values, s, _, _ = self._inputs(flux, snr)
        lab = np.asarray(labels, dtype=np.float64)
        d = len(self.label_names)
        if lab.shape[-1] != d or lab.ndim not in (2, 3) or lab.shape[0] != values.shape[0]:
            raise GridError(f"labels must have shape (n_spec={values.shape[0]}, [m,] {d}), got {lab.shape}")
        squeeze = lab.ndim == 2
        lab3 = lab[:, None, :] if squeeze else lab
        y = self.label_transform.forward(lab3).astype(np.float32)
        lp = self._log_q(values, s, y).astype(np.float64) + self.label_transform.log_abs_det_forward(lab3)
        return lp[:, 0] if squeeze else lp

    def summarize(self, flux, snr, n: int = 4096, seed: int = 0, keys=None, calibrated: bool = True, keep: int = 0) -> xr.Dataset:
        """MAP, quantiles, f_reject and flag_extrapolated per spectrum (see the module docstring). With a calibration
        fitted for the model (`cinn.calibration`, model_dir/calibration.json) and `calibrated`, the quantiles are
        those of the calibrated draws (each spectrum's and label's monotone map: scale around the median, quantile
        remap); the MAP and f_reject are not changed.

        keep: also return the first `keep` of the n draws of each spectrum, `samples(dim, draw, label)` (all of them, the
        ones outside the training bounds too), and `samples_in_bounds(dim, draw)` (the draws the quantiles are computed
        from); calibrated like the quantiles (the map of all n draws), so that with keep = n the quantiles of the in-bounds
        kept draws are the quantiles returned."""
        values, s, k, dim = self._inputs(flux, snr, keys)
        n = _check_n(n)
        keep = int(keep)
        if not 0 <= keep <= n:
            raise GridError(f"keep (draws kept per spectrum) must lie in 0..n={n}, got {keep}")
        S, d = values.shape[0], len(self.label_names)
        kept = np.full((S, keep, d), np.nan) if keep else None
        kept_in = np.zeros((S, keep), dtype=bool) if keep else None
        maps = np.full((S, d), np.nan)
        quants = np.full((S, d, len(QUANTILES)), np.nan)
        f_reject = np.zeros(S)
        per = max(1, self._spectra_per_batch(n))
        for lo in range(0, S, per):  # bound host memory too: summarise a batch before sampling the next
            hi = min(S, lo + per)
            y, lq = self._sample_flow(values[lo:hi], s[lo:hi], k[lo:hi], n, seed)
            phys = self.label_transform.inverse(y)  # (b, n, d)
            inside = self.in_bounds(phys)
            f_reject[lo:hi] = 1.0 - inside.mean(axis=1)
            maps[lo:hi] = self.map_estimate(phys, lq)
            if calibrated and self.calibration is not None:  # each spectrum's monotone map, defined by its in-bounds draws
                phys = self.calibration.apply_samples(phys, s[lo:hi], inside)
            quants[lo:hi] = quantiles_in_bounds(phys, inside, QUANTILES)
            if keep:
                kept[lo:hi], kept_in[lo:hi] = phys[:, :keep], inside[:, :keep]
        out = self._dataset(maps, quants, f_reject, dim, flux)
        if keep:
            out = out.assign_coords(sample_coords(self.label_names, keep))
            out["samples"] = ((dim, "draw", "label"), kept, dict(SAMPLES_ATTRS))
            out["samples_in_bounds"] = ((dim, "draw"), kept_in, dict(SAMPLES_IN_BOUNDS_ATTRS))
        return out

    def _dataset(self, maps, quants, f_reject, dim, flux) -> xr.Dataset:
        coords = {"quantile": ("quantile", np.array(QUANTILES), {"long_name": "posterior quantile"})}
        if isinstance(flux, xr.DataArray) and dim in flux.coords:
            coords[dim] = flux[dim].values
        data = {}
        for i, name in enumerate(self.label_names):
            attrs = {**label_attrs(name), "description": "maximum a posteriori (sample of highest flow density)"}
            data[name] = ((dim,), maps[:, i], attrs)
            data[f"{name}_quantiles"] = ((dim, "quantile"), quants[:, i, :], {**label_attrs(name), "description": "posterior quantiles"})
        data["f_reject"] = ((dim,), f_reject, {"units": "1", "long_name": "fraction of posterior samples outside the training label bounds"})
        data["flag_extrapolated"] = ((dim,), f_reject > EXTRAPOLATED_FRACTION,
                                     {"long_name": "more than half of the samples outside the training bounds"})
        return xr.Dataset(data, coords=coords, attrs={"model_id": self.model_id})


#: attrs of kept posterior draws (`summarize(keep=)`, a catalog's `samples`): per-label units in the coordinate label_units
SAMPLES_ATTRS = {"long_name": "posterior draws (the first of each star's draws; calibrated when the quantiles are)",
                 "units": "those of each label: see the coordinate label_units"}
SAMPLES_IN_BOUNDS_ATTRS = {"long_name": "posterior draw inside the training label bounds (the draws the quantiles are computed from)",
                           "units": "1"}


def sync_thread_count() -> None:
    """Give the calling thread torch's intra-op thread count. A thread that never set it (`write_regions`' threads,
    dask's threaded scheduler, a notebook's executor) starts its OpenMP team at one thread per core, whatever
    `torch.set_num_threads` said on the main thread; on a busy machine its first thousands of small ops then ran up
    to 100x slower (the first chunk of 400 stars of `infer(client=None)`: 15 s instead of 0.9 s)."""
    torch.set_num_threads(torch.get_num_threads())


def sample_coords(label_names, n_draws: int) -> dict:
    """Coordinates of labelled draws: label (names), label_units(label), label_long_name(label), draw (0..n_draws-1)."""
    names = [str(x) for x in label_names]
    return {"label": ("label", np.array(names), {"long_name": "label", "units": "1"}),
            "label_units": ("label", np.array([label_attrs(x)["units"] for x in names]), {"long_name": "units of the label", "units": "1"}),
            "label_long_name": ("label", np.array([label_attrs(x)["long_name"] for x in names]), {"long_name": "long name of the label", "units": "1"}),
            "draw": ("draw", np.arange(int(n_draws)), {"long_name": "posterior draw", "units": "1"})}


def snr_outside(snr: np.ndarray, snr_range) -> np.ndarray:
    """bool per S/N: finite and outside the model's training range `snr_range` (all False when it is unknown)."""
    s = np.asarray(snr, dtype=np.float64)
    if snr_range is None:
        return np.zeros(s.shape, dtype=bool)
    lo, hi = snr_range
    return np.isfinite(s) & ((s < lo * (1 - 1e-9)) | (s > hi * (1 + 1e-9)))


def _prior_width68(meta: dict, names, bounds: np.ndarray) -> tuple[np.ndarray, str]:
    """(d,) p84 - p16 of each label over the training split (model.json `label_quantiles`, recorded by `cinn.train`);
    for models written before it was recorded, 0.68 x the bound range (the width of a uniform prior on the bounds)."""
    rec = meta.get("label_quantiles") or {}
    levels, values = [float(v) for v in rec.get("levels", [])], rec.get("values") or {}
    hits = [[i for i, q in enumerate(levels) if abs(q - want) < 1e-9] for want in (0.16, 0.84)]
    if all(hits) and all(n in values for n in names):
        i16, i84 = hits[0][0], hits[1][0]
        return np.array([float(values[n][i84]) - float(values[n][i16]) for n in names]), "training split quantiles (model.json label_quantiles)"
    return 0.68 * (bounds[:, 1] - bounds[:, 0]), "0.68 x training bounds (uniform prior; model.json records no label_quantiles)"


def snr_outside_training(snr: np.ndarray, snr_range) -> str | None:
    """A warning text when some S/N lie outside the model's training range (None when all inside or unknown)."""
    if snr_range is None:
        return None
    s = np.asarray(snr, dtype=np.float64)
    lo, hi = snr_range
    out = snr_outside(s, snr_range)
    if not out.any():
        return None
    return (f"{int(out.sum())} of {s.size} spectra have S/N outside the model's training range {lo:g}-{hi:g} per Angstrom "
            f"(theirs: {s[out].min():g}-{s[out].max():g}); their posteriors are extrapolations, check them or train on that S/N")


def map_index(logq: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The published MAP rule: per spectrum, the index of the sample of highest flow density among those inside
    the training bounds; -1 where none is inside. logq, inside: (S, n)."""
    masked = np.where(inside, logq, -np.inf)
    best = np.argmax(masked, axis=1)
    return np.where(inside.any(axis=1), best, -1)


def _check_n(n) -> int:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise GridError(f"n (samples per spectrum) must be a positive integer, got {n!r}")
    return int(n)


def load(model_dir, device: str | torch.device = "cpu") -> Posterior:
    """Load a model directory written by `cinn.train` (no pickles: safetensors + JSON, integrity-checked: the weights
    file is hashed as it is read and refused unless model.json records that sha256; `Posterior.weights_sha256`).
    `cinn.load` also takes an ensemble directory (`cinn.ensemble.load`)."""
    if (Path(model_dir) / ck.ENSEMBLE_JSON).is_file():
        raise ck.ModelDirError(f"{model_dir} is an ensemble of model directories: load it with cinn.load (cinn.ensemble.load)")
    meta, state, extras, digest = ck.read_model(model_dir, return_digest=True)
    try:
        cfg = CINNConfig.from_dict(meta["config"])
    except Exception as exc:  # noqa: BLE001
        raise ck.ModelDirError(f"{Path(model_dir) / ck.MODEL_JSON} holds an invalid config: {exc}") from exc
    n_wave = int(meta.get("n_wave", extras["wavelength"].size))
    model = CINN(cfg, n_wave)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ck.ModelDirError(f"{Path(model_dir) / ck.MODEL_WEIGHTS} does not match the config in model.json: {exc}") from exc
    post = Posterior(model, meta, extras, Path(model_dir), weights_sha256=digest).to(device)
    from .calibration import read as read_calibration

    post.calibration = read_calibration(model_dir, post.model_id)  # None when none was fitted
    return post


def reference_summarize(post: Posterior, flux, snr, n: int = 4096, seed: int = 0, keys=None,
                        return_index: bool = False) -> tuple[np.ndarray, ...]:
    """The straightforward approach, for benchmarks and tests: FrEIA's reverse pass spectrum by spectrum with the
    condition repeated n times. Returns (MAP (S, d) physical, log q (S, n)) [, MAP sample index (S,) with return_index]."""
    if getattr(post, "members", None):
        raise GridError("reference_summarize runs one network; pass one of the ensemble's members (Ensemble.members)")
    values, s, k, _ = post._inputs(flux, snr, keys)
    d = len(post.label_names)
    maps = np.full((values.shape[0], d), np.nan)
    lqs = np.empty((values.shape[0], n), dtype=np.float32)
    idx = np.full(values.shape[0], -1, dtype=np.int64)
    with torch.inference_mode():
        for j in range(values.shape[0]):
            cond_in = torch.from_numpy(post.scaler.condition_input(values[j:j + 1], s[j:j + 1])).to(post.device)
            c = post.model.condition(cond_in).repeat(n, 1)
            z = torch.from_numpy(rng_for(seed, int(k[j])).standard_normal((n, d), dtype=np.float32)).to(post.device)
            y, logdet = post.model.flow(z, c=[c], rev=True)
            lq = (log_normal(z) - logdet).cpu().numpy()
            phys = post.label_transform.inverse(y.cpu().numpy())
            lqs[j] = lq
            idx[j] = map_index(lq[None], post.in_bounds(phys)[None])[0]
            if idx[j] >= 0:
                maps[j] = phys[idx[j]]
    return (maps, lqs, idx) if return_index else (maps, lqs)


__all__ = ["Posterior", "load", "QUANTILES", "SAMPLE_BLOCK", "map_index", "reference_summarize", "snr_outside_training", "snr_outside"]
