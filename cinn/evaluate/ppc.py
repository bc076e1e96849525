"""Posterior predictive check (cf. Ksoll et al. 2026, Fig. 7): re-simulate spectra from the posterior.

For each spectrum, the grid's own generator (read from the cube's attrs: the analytic one, or the
Turbospectrum backend where its programs exist) synthesises the spectrum at the MAP labels and at
`n_draws` posterior draws; the results go through the same degradation chain as the cube (resolution,
rotation with the label vbroad, instrument pixels; no noise), so they are directly comparable to the
input flux. Reported per spectrum: the rms of the residual flux (observed - MAP model), its reduced chi^2
with the noise sigma = model / (S/N per pixel) (about 1 when the MAP model explains the spectrum down to
the noise), and the fraction of pixels inside the 68 % posterior predictive band widened by the noise.
Where the true labels are known (test spectra), the same at the truth is the reference.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from gridkit.errors import BackendError, ConfigError

from .plotting import pyplot, save_figure

if TYPE_CHECKING:
    from cinn.posterior import Posterior

PROVENANCE_KEYS = ("synth", "synthesizer", "provenance", "synth_provenance", "generator")


def _provenance(attrs: Mapping) -> dict:
    """The generator's provenance dict from a grid's attrs: nested under one of PROVENANCE_KEYS (a dict or
    the JSON string `gridkit.synth.synthesize` writes, preferred: it holds the lists too) or flat (`backend`
    at the top level of the attrs)."""
    for key in PROVENANCE_KEYS:
        v = attrs.get(key)
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                continue
        if isinstance(v, Mapping) and "backend" in v:
            return dict(v)
    if "backend" in attrs:
        return dict(attrs)
    # grids written before the provenance record (e.g. ../shared/data/tsgrid-lte): the generator named in words
    text = " ".join(str(attrs.get(k, "")) for k in ("synthesizer", "generator")).lower()
    backend = "turbospectrum" if "turbospectrum" in text else "analytic" if "analytic" in text else ""
    if not backend:
        return {}
    prov = {"backend": backend, **{k: attrs[k] for k in ("step_angstrom", "wavelength_ranges") if k in attrs}}
    return prov


def _turbospectrum_from_provenance(prov: Mapping):
    """A TurbospectrumSynthesizer configured like the one that wrote `prov` (wavelength ranges, step, line
    lists, hydrogen lines, a fixed atmosphere) where those files exist here; defaults otherwise."""
    from gridkit.synth.turbospectrum import TurbospectrumSynthesizer

    kwargs: dict = {}
    if prov.get("wavelength_ranges"):
        kwargs["wavelength_ranges"] = [tuple(float(x) for x in r) for r in prov["wavelength_ranges"]]
    if prov.get("step_angstrom") is not None:
        kwargs["step"] = float(prov["step_angstrom"])
    home = prov.get("turbospectrum_home")
    if home and Path(str(home)).is_dir():
        kwargs["home"] = str(home)
    paths = [str(ll.get("path", "")) if isinstance(ll, Mapping) else str(ll) for ll in prov.get("linelists") or []]
    kwargs["hydrogen_lines"] = (not paths) or any(p.endswith("Hlinedata") for p in paths)
    metal = [p for p in paths if p and not p.endswith("Hlinedata")]
    default_ges = any(p.endswith("nlte_ges_linelist_jmg17feb2022_I_II") for p in metal) and len(metal) == 1
    if metal and not default_ges:
        missing = [p for p in metal if not Path(p).is_file()]
        if missing:
            raise BackendError(f"the grid's line list(s) {', '.join(missing)} do not exist here")
        kwargs["linelists"] = metal
    atm = str(prov.get("atmosphere", ""))
    if atm.startswith("user file "):
        kwargs["atmosphere"] = atm[len("user file "):]
    return TurbospectrumSynthesizer(**kwargs)


def generator_from_attrs(attrs: Mapping):
    """(generator, "") re-creating the synthesis backend that made a grid, or (None, reason)."""
    prov = _provenance(attrs)
    backend = str(prov.get("backend", "")).lower()
    if not backend:
        return None, "the cube's attrs do not say which generator made it (no 'backend' in its provenance)"
    if backend == "analytic":
        from gridkit.synth.analytic import AnalyticSynthesizer

        linelist = prov.get("linelist")
        if linelist is not None and not Path(str(linelist)).is_file():
            linelist = None  # the committed default table (provenance then holds a description, not a path)
        ranges = prov.get("wavelength_ranges") or prov.get("wavelength_range")
        kwargs = {"linelist": linelist, "balmer": bool(prov.get("balmer", True))}
        if ranges is not None:
            kwargs["wavelength_range"] = tuple(tuple(float(x) for x in r) for r in ranges)
        if prov.get("step_angstrom", prov.get("step")) is not None:
            kwargs["step"] = float(prov.get("step_angstrom", prov.get("step")))
        return AnalyticSynthesizer(**kwargs), ""
    if backend.startswith("turbospectrum"):
        try:
            gen = _turbospectrum_from_provenance(prov)
            gen.check()
            return gen, ""
        except Exception as exc:  # noqa: BLE001 - missing programs, atmospheres or line lists: skip the check, say why
            return None, f"the Turbospectrum backend cannot run here: {exc}"
    return None, f"generator {backend!r} is not supported by the posterior predictive check"


def resimulate(generator, labels: np.ndarray, label_names: Sequence[str], attrs: Mapping, wavelength: np.ndarray) -> np.ndarray:
    """Spectra (n, n_wave) at label rows (n, d): synthesised by `generator`, degraded like the cube (no
    noise), on `wavelength` (the cube's grid). Rows the generator cannot compute are NaN."""
    from gridkit.degradation import chain_options, degrade
    from gridkit.schema import check_same_wavelength, from_arrays
    from gridkit.synth.base import SynthesisSkipped

    labels = np.atleast_2d(np.asarray(labels, dtype=float))
    names = list(label_names)
    wl_gen = np.asarray(generator.wavelength(), dtype=float)
    flux = np.ones((labels.shape[0], wl_gen.size), dtype=np.float32)
    ok = np.ones(labels.shape[0], dtype=bool)
    for i, row in enumerate(labels):
        d = dict(zip(names, row.tolist()))
        if not all(np.isfinite(row)):
            ok[i] = False
            continue
        try:
            flux[i] = generator.synthesize(d)
        except SynthesisSkipped:
            ok[i] = False
    wavelength = np.asarray(wavelength, dtype=float)
    if ("instrument" not in attrs and "degrade_steps" not in attrs and wl_gen.shape == wavelength.shape
            and np.allclose(wl_gen, wavelength, rtol=1e-9, atol=0)):
        out = flux.astype(np.float64)  # a grid of the generator's own spectra (noise added, no degradation): nothing to repeat
        out[~ok] = np.nan
        return out
    lab = {n: labels[:, j] for j, n in enumerate(names)}
    if "vbroad" in lab:
        lab["vbroad"] = np.maximum(np.nan_to_num(lab["vbroad"], nan=0.0), 0.0)
    lab = {k: np.nan_to_num(v, nan=0.0) for k, v in lab.items()}
    opts = chain_options(attrs)  # the steps the cube recorded (attr degrade_steps)
    r_in = opts.pop("input_resolving_power", math.inf)
    base = from_arrays(wl_gen, flux, lab, resolving_power=r_in)
    deg = degrade(base, snr=None, input_resolving_power=r_in, **opts)
    out = np.asarray(deg.flux.values, dtype=np.float64)
    check_same_wavelength(deg.wavelength.values, wavelength, what="the re-simulated spectra", of="the cube",
                          hint="the cube's attrs (instrument, arms, degrade_steps) do not describe the chain that made it")
    out[~ok] = np.nan
    return out


@dataclass
class PPCResult:
    wavelength: np.ndarray
    observed: np.ndarray  # (S, W)
    snr: np.ndarray  # (S,)
    sigma: np.ndarray  # (S, W) noise 1-sigma at the MAP model
    map_labels: np.ndarray  # (S, d)
    map_flux: np.ndarray  # (S, W)
    band: np.ndarray  # (S, 3, W) 16/50/84 % of the re-simulated draws
    truth_flux: np.ndarray | None
    label_names: tuple
    instrument: dict = field(default_factory=dict)  # {"instrument", "arms"} of the cube: names the figure's arm panels

    def stats(self) -> list[dict]:
        rows = []
        for i in range(self.observed.shape[0]):
            r = self.observed[i] - self.map_flux[i]
            z = r / self.sigma[i]
            lo, hi = self.band[i, 0], self.band[i, 2]
            widened_lo = lo - self.sigma[i]
            widened_hi = hi + self.sigma[i]
            row = {"spectrum": i, "snr": float(self.snr[i]), "rms_map": float(np.sqrt(np.nanmean(r**2))),
                   "chi2_map": float(np.nanmean(z**2)), "rms_noise": float(np.sqrt(np.nanmean(self.sigma[i] ** 2))),
                   "frac_in_band68": float(np.nanmean((self.observed[i] >= widened_lo) & (self.observed[i] <= widened_hi)))}
            if self.truth_flux is not None:
                rt = self.observed[i] - self.truth_flux[i]
                row["rms_truth"] = float(np.sqrt(np.nanmean(rt**2)))
                # the cube's noise was drawn with sigma = noiseless flux / (S/N per pixel): at the truth, that flux is truth_flux
                sigma_t = np.abs(self.truth_flux[i]) * (self.sigma[i] / np.where(self.map_flux[i] != 0, np.abs(self.map_flux[i]), np.nan))
                row["chi2_truth"] = float(np.nanmean((rt / sigma_t) ** 2))
            for j, n in enumerate(self.label_names):
                row[f"map_{n}"] = float(self.map_labels[i, j])
            rows.append(row)
        return rows

    def write_table(self, path) -> Path:
        from astropy.table import Table

        path = Path(path)
        t = Table(rows=self.stats())
        t.meta["description"] = ("posterior predictive check: residual flux observed - model at the MAP (rms, reduced chi2 with the noise "
                                  "sigma), fraction of pixels inside the 68 % posterior predictive band widened by the noise")
        t.write(path, format="ascii.csv", overwrite=True)
        t.write(path.with_suffix(".ecsv"), format="ascii.ecsv", overwrite=True)
        return path


def posterior_predictive(post: Posterior, flux, snr, generator, attrs: Mapping, *, wavelength=None, n_draws: int = 16, samples: int = 1024,
                         seed: int = 0, keys=None, truth=None, convention: str | None = None) -> PPCResult:
    """Re-simulate spectra at the MAP and at `n_draws` posterior draws (of `samples`) for spectra `flux` (S, W)
    at `snr` (S,), with `generator` and the degradation chain described by `attrs` (a cube's attrs).
    truth: optional true labels (S, d) to re-simulate as the reference."""
    from gridkit.kernels.noise import snr_per_pixel
    from gridkit.kernels.rebin import pixel_widths

    values = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    wl = np.asarray(post.wavelength if wavelength is None else wavelength, dtype=float)
    snr = np.broadcast_to(np.asarray(snr, dtype=float), (values.shape[0],)).copy()
    if n_draws < 1 or samples < n_draws:
        raise ConfigError(f"need 1 <= n_draws <= samples, got n_draws={n_draws}, samples={samples}")
    keys = np.arange(values.shape[0]) if keys is None else np.asarray(keys)
    smp, log_q = post.sample(values, snr, n=int(samples), seed=seed, keys=keys, return_log_q=True)
    maps = post.map_estimate(smp, log_q)
    names = list(post.label_names)
    rng = np.random.default_rng(seed)
    map_flux = resimulate(generator, maps, names, attrs, wl)
    band = np.empty((values.shape[0], 3, wl.size))
    for i in range(values.shape[0]):
        pick = rng.choice(smp.shape[1], size=n_draws, replace=False)
        sims = resimulate(generator, smp[i, pick], names, attrs, wl)
        band[i] = np.nanquantile(sims, [0.16, 0.5, 0.84], axis=0)
    truth_flux = resimulate(generator, np.asarray(truth, dtype=float), names, attrs, wl) if truth is not None else None
    conv = convention or str(attrs.get("snr_convention", "per_angstrom"))
    snr_pix = snr_per_pixel(snr, pixel_widths(wl), conv)  # (S, W)
    sigma = np.abs(map_flux) / snr_pix
    instrument = {k: attrs[k] for k in ("instrument", "arms") if k in attrs}
    return PPCResult(wl, values, snr, sigma, maps, map_flux, band, truth_flux, tuple(names), instrument)


def line_abundances(generator, attrs: Mapping, wavelength, flux, labels, label_names: Sequence[str], label: str, values,
                    lines, *, half_width: float = 0.3) -> list[dict]:
    """Line by line, the value of `label` at which the grid's own physics reproduces each line of a spectrum: the
    spectrum is re-synthesised by `generator` at `labels` (d,) (e.g. the posterior medians) with `label` set to each of
    `values` (increasing), degraded like the cube whose `attrs` are given (`resimulate`), on `wavelength`; for each line
    centre of `lines` [A], the equivalent width of 1 - flux within +- `half_width` A is measured on `flux` (n_wave,)
    (continuum-normalised) and on each model, and `value` is where the models' width equals the observed one (linear
    interpolation). Where one abundance fits every line of an element, the values agree; a spread between lines that
    no spectrum of the grid has shows a mismatch of the grid's physics (line data, NLTE, blends it lacks).

    Returns one dict per line: line, n_pixels, ew_observed and ew_model (one per value) in mA, value, and `outside`:
    "" where the observed width lies within the models' range, "below" / "above" where it is weaker / stronger than
    every model (value NaN: at most values[0] / at least values[-1]), "not monotonic" where the models' widths do not
    grow with `label` over the values (a blend), "no pixels" where fewer than 3 finite pixels lie in the window."""
    from gridkit.kernels.rebin import pixel_widths

    names = list(label_names)
    if label not in names:
        raise ConfigError(f"label {label!r} is not one of the labels {', '.join(names)}")
    vals = np.asarray(values, dtype=float).ravel()
    if vals.size < 2 or not np.all(np.diff(vals) > 0):
        raise ConfigError(f"values of {label} must be at least two, increasing; got {vals.tolist()}")
    base = np.asarray(labels, dtype=float).ravel()
    if base.size != len(names):
        raise ConfigError(f"labels must hold one value per label ({len(names)}), got {base.size}")
    half_width = float(half_width)
    if not half_width > 0:
        raise ConfigError(f"half_width must be > 0 Angstrom, got {half_width}")
    wl = np.asarray(wavelength, dtype=float)
    obs = np.asarray(flux, dtype=float).ravel()
    if obs.shape != wl.shape:
        raise ConfigError(f"flux has {obs.size} pixels, the wavelength grid {wl.size}")
    rows = np.repeat(base[None, :], vals.size, axis=0)
    rows[:, names.index(label)] = vals
    models = resimulate(generator, rows, names, attrs, wl)  # (len(values), n_wave)
    widths = pixel_widths(wl)
    out = []
    for centre in np.atleast_1d(np.asarray(lines, dtype=float)):
        w = (np.abs(wl - centre) <= half_width) & np.isfinite(obs) & np.all(np.isfinite(models), axis=0)
        row = {"line": float(centre), "n_pixels": int(w.sum()), "ew_observed": float("nan"), "ew_model": [float("nan")] * vals.size,
               "value": float("nan"), "outside": ""}
        if w.sum() < 3:
            row["outside"] = "no pixels"
            out.append(row)
            continue
        ew_obs = float(np.sum((1.0 - obs[w]) * widths[w]) * 1e3)
        ew_mod = np.sum((1.0 - models[:, w]) * widths[w], axis=1) * 1e3
        row.update(ew_observed=ew_obs, ew_model=[float(e) for e in ew_mod])
        if not np.all(np.diff(ew_mod) > 0):
            row["outside"] = "not monotonic"
        elif ew_obs < ew_mod[0]:
            row["outside"] = "below"
        elif ew_obs > ew_mod[-1]:
            row["outside"] = "above"
        else:
            row["value"] = float(np.interp(ew_obs, ew_mod, vals))
        out.append(row)
    return out


def plot_ppc(res: PPCResult, path, *, model_ids=None, window: float = 25.0, max_spectra: int = 4,
             instrument: Mapping | None = None) -> Path:
    """Fig. 7 style: per spectrum (rows) and arm (columns, a `window`-A stretch around the deepest line of the
    MAP model), the observed flux, the MAP model and the 68 % predictive band; below, the residual flux with
    the +-1 sigma noise band. Arms named after `instrument` (keys `instrument`, `arms`; default: the cube's,
    kept in `res.instrument`), else by their wavelength range."""
    fig = ppc_figure(res, model_ids=model_ids, window=window, max_spectra=max_spectra, instrument=instrument)
    return save_figure(fig, path)


def ppc_figure(res: PPCResult, *, model_ids=None, window: float = 25.0, max_spectra: int = 4, instrument: Mapping | None = None):
    """The matplotlib figure `plot_ppc` writes (open: the caller saves or closes it)."""
    from .saliency import arm_ranges

    plt = pyplot()
    wl = res.wavelength
    arms = arm_ranges(wl, instrument if instrument is not None else res.instrument)[:3]
    n = min(res.observed.shape[0], max_spectra)
    fig = plt.figure(figsize=(max(5.5 * len(arms), 8.0), 3.3 * n + 0.4), constrained_layout=True)
    outer = fig.add_gridspec(n, len(arms))
    stats = res.stats()
    for i in range(n):
        for k, (arm, lo, hi) in enumerate(arms):
            inner = outer[i, k].subgridspec(2, 1, height_ratios=(2.2, 1), hspace=0.0)
            ax, axr = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
            m = (wl >= lo) & (wl <= hi)
            ref = res.map_flux[i].copy()
            ref[~m] = np.inf
            centre = wl[int(np.nanargmin(ref))] if np.isfinite(ref).any() else 0.5 * (lo + hi)
            c0 = float(np.clip(centre - window / 2, lo, max(lo, hi - window)))
            w = (wl >= c0) & (wl <= c0 + window)
            ax.fill_between(wl[w], res.band[i, 0, w], res.band[i, 2, w], color="C1", alpha=0.35, lw=0, label="68 % predictive")
            ax.plot(wl[w], res.observed[i, w], color="k", lw=0.7, label="spectrum")
            ax.plot(wl[w], res.map_flux[i, w], color="C3", lw=0.8, label="model at MAP")
            if res.truth_flux is not None:
                ax.plot(wl[w], res.truth_flux[i, w], color="C2", lw=1.0, ls="--", label="model at truth")
            ax.tick_params(labelbottom=False, labelsize=7)
            ax.set_xlim(wl[w][0], wl[w][-1])
            r = res.observed[i, w] - res.map_flux[i, w]
            axr.fill_between(wl[w], -res.sigma[i, w], res.sigma[i, w], color="0.8", lw=0)
            axr.plot(wl[w], r, color="k", lw=0.6)
            axr.axhline(0, color="C3", lw=0.6)
            axr.set_xlim(wl[w][0], wl[w][-1])
            axr.tick_params(labelsize=7)
            if k == 0:
                ax.set_ylabel("norm. flux", fontsize=8)
                axr.set_ylabel("obs − MAP", fontsize=8)
            if i == n - 1:
                axr.set_xlabel("wavelength [Å]", fontsize=8)
            sid = model_ids[i] if model_ids is not None else i
            ax.set_title(f"spectrum {sid}, S/N {res.snr[i]:g}, {arm}: rms {stats[i]['rms_map']:.4f}, χ²ᵣ {stats[i]['chi2_map']:.2f}", fontsize=8)
            if i == 0 and k == 0:
                ax.legend(fontsize=6, loc="lower left")
    fig.suptitle("Posterior predictive check (cf. Fig. 7): spectra re-simulated at the MAP and at posterior draws\n"
                 "with the grid's generator and degradation chain; below each: residual flux, grey = ±1σ noise", fontsize=10)
    return fig
