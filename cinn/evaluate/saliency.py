"""Saliency of the cINN (Ksoll et al. 2026, Figs. A.4, A.5): which flux pixels move which label.

For each spectrum, the posterior mean of every label (over `n_latent` fixed latent draws, the same
draws for the whole computation) is differentiated with respect to every input flux pixel by torch
autograd through the feature network and the reverse flow. Per spectrum and label the gradient is
normalised by its largest absolute value over the pixels, so spectra of different labels and S/N weigh
equally; the median over the spectra of the absolute normalised gradient is the saliency in [0, 1] (1 =
the pixel that matters most for that spectrum, at every spectrum). The median of the signed normalised
gradient and the median raw gradient (label units per unit of normalised flux) are kept too.

Plotted per spectrograph arm, one panel per label, with the positions of strong lines of the element the
label measures marked (from the analytic generator's line list, Gaia-ESO lines; the Balmer lines for all).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import xarray as xr

from gridkit.errors import ConfigError
from gridkit.store import consolidate, vlen_strings
from gridkit.synth import physics

from .plotting import pyplot, save_figure

if TYPE_CHECKING:
    from cinn.posterior import Posterior

#: element whose lines each label mainly reads (Teff, log g, vmic, vbroad: iron lines and the Balmer lines)
LABEL_ELEMENT = {"teff": "Fe", "logg": "Fe", "feh": "Fe", "vmic": "Fe", "vbroad": "Fe", "c_fe": "C", "n_fe": "N", "mg_fe": "Mg",
                 "si_fe": "Si", "ca_fe": "Ca", "ti_fe": "Ti", "mn_fe": "Mn", "li_fe": "Li"}
#: Balmer line centres (air, A), marked for every label
BALMER = tuple(centre for centre, _ in physics.BALMER)


def _torch_inputs(post: Posterior, flux, snr):
    """(flux (S, n_wave), network S/N input (S, 1), flux mean, flux std) as tensors: the flux separate from its
    scaling, so that autograd differentiates with respect to the flux itself."""
    import torch

    values, s = post.check_inputs(flux, snr)
    sc = post.scaler
    fm = torch.from_numpy(np.asarray(sc.flux_mean, dtype=np.float32))
    fs = torch.from_numpy(np.asarray(sc.flux_std, dtype=np.float32))
    xs = torch.from_numpy(sc.snr(s))[:, None]
    return torch.from_numpy(values), xs, fm, fs


def mean_label_gradients(post: Posterior, flux, snr, *, n_latent: int = 32, seed: int = 0, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Gradients d<label>/d flux of the posterior mean of each label, per spectrum.

    flux (S, n_wave) on the model's grid, snr (S,) per Angstrom. Returns (gradients (S, d, n_wave) in label
    units per unit flux, posterior means (S, d)). Latents: `n_latent` standard normals from seed (the same
    for every spectrum), so the gradient is that of a fixed Monte-Carlo estimate of the mean."""
    import torch

    if n_latent < 1 or batch < 1:
        raise ConfigError(f"n_latent and batch must be >= 1, got {n_latent}, {batch}")
    members = getattr(post, "members", None)
    if members:  # an ensemble's posterior mean is the mean of its members' (equal weights): so are its gradients
        parts = [mean_label_gradients(m, flux, snr, n_latent=n_latent, seed=seed, batch=batch) for m in members]
        return np.mean([g for g, _ in parts], axis=0).astype(np.float32), np.mean([mu for _, mu in parts], axis=0)
    model = post.model
    lt = post.label_transform
    values, xs, fm, fs = _torch_inputs(post, flux, snr)
    S, W = values.shape
    d = len(post.label_names)
    gen = torch.Generator().manual_seed(int(seed))
    z0 = torch.randn(n_latent, d, generator=gen)
    grads = np.empty((S, d, W), dtype=np.float32)
    means = np.empty((S, d))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for lo in range(0, S, batch):
                hi = min(S, lo + batch)
                b = hi - lo
                f = values[lo:hi].clone().requires_grad_(True)
                cond_in = torch.cat([(f - fm) / fs, xs[lo:hi]], dim=1)
                c = model.condition(cond_in)
                c_rep = c[:, None, :].expand(b, n_latent, c.shape[1]).reshape(b * n_latent, -1)
                z = z0[None].expand(b, n_latent, d).reshape(b * n_latent, d)
                y, _ = model.flow(z, c=[c_rep], rev=True)
                phys = lt.inverse_torch(y.float().reshape(b, n_latent, d))
                m = phys.mean(dim=1)  # (b, d)
                means[lo:hi] = m.detach().double().numpy()
                for j in range(d):
                    (g,) = torch.autograd.grad(m[:, j].sum(), f, retain_graph=j < d - 1)
                    grads[lo:hi, j] = g.numpy()
    finally:
        model.train(was_training)
    return grads, means


def normalise(grads: np.ndarray) -> np.ndarray:
    """Gradients (S, d, n_wave) divided by their largest absolute value over the pixels (per spectrum, label)."""
    peak = np.max(np.abs(grads), axis=-1, keepdims=True)
    return np.divide(grads, peak, out=np.zeros_like(grads), where=peak > 0)


def saliency_maps(post: Posterior, flux, snr, *, n_latent: int = 32, seed: int = 0, batch: int = 8) -> xr.Dataset:
    """Median normalised gradients of the posterior-mean labels over the spectra given.

    Returns a Dataset on (label, wavelength): `saliency` = median |normalised gradient| in [0, 1],
    `saliency_signed` = median normalised gradient, `gradient` = median raw gradient (label units per unit flux).
    """
    grads, _ = mean_label_gradients(post, flux, snr, n_latent=n_latent, seed=seed, batch=batch)
    gn = normalise(grads)
    labels = list(post.label_names)
    return xr.Dataset(
        {
            "saliency": (("label", "wavelength"), np.median(np.abs(gn), axis=0).astype(np.float32),
                         {"long_name": "median over spectra of |d<label>/dflux| / max over pixels", "units": "1"}),
            "saliency_signed": (("label", "wavelength"), np.median(gn, axis=0).astype(np.float32),
                                {"long_name": "median over spectra of (d<label>/dflux) / max over pixels of |d<label>/dflux|", "units": "1"}),
            "gradient": (("label", "wavelength"), np.median(grads, axis=0).astype(np.float32),
                         {"long_name": "median over spectra of d<label>/dflux (label units per unit normalised flux)"}),
        },
        coords={"label": labels, "wavelength": ("wavelength", np.asarray(post.wavelength, dtype=float), {"units": "Angstrom"})},
        attrs={"n_spectra": int(grads.shape[0]), "n_latent": int(n_latent), "seed": int(seed), "model_id": post.model_id,
               "method": "torch autograd of the posterior mean (fixed latents) through the feature network and the reverse flow"},
    )


def write_saliency(ds: xr.Dataset, path) -> Path:
    path = Path(path)
    vlen_strings(ds).to_zarr(path, mode="w", consolidated=False, zarr_format=3)
    consolidate(path)
    return path


# ---------------------------------------------------------------------------------------------- line positions
def line_positions(wl_min: float, wl_max: float, element: str, n: int = 8) -> list[float]:
    """Wavelengths (air, A) of the `n` strongest lines of `element` in [wl_min, wl_max] for a solar-type star,
    from the analytic generator's line list (Gaia-ESO lines, committed with the package)."""
    from gridkit.synth.atomic import MASS, SOLAR_ABUNDANCES
    from gridkit.synth.linelist import load_lines

    lines = load_lines()
    sel = (lines["element"] == element) & (lines["wavelength"] >= wl_min) & (lines["wavelength"] <= wl_max)
    if not sel.any() or element not in SOLAR_ABUNDANCES:
        return []
    z, a_sun, chi_ion = SOLAR_ABUNDANCES[element]
    strength = physics.line_centre_strength(lines["wavelength"][sel], lines["chi_low"][sel], lines["loggf"][sel], lines["ion"][sel],
                                            np.full(sel.sum(), a_sun), np.full(sel.sum(), chi_ion), None, 5777.0, 4.44, 0.0, 1.0,
                                            masses=np.full(sel.sum(), MASS[element]))
    order = np.argsort(strength)[::-1][:n]
    return sorted(float(w) for w in lines["wavelength"][sel][order])


def arm_ranges(wavelength: np.ndarray, instrument: Mapping | None = None) -> list[tuple[str, float, float]]:
    """(name, lo, hi) of each arm covered by `wavelength`: from the instrument the model was trained for where
    registered (`instrument`: a cube's attrs or a model's `instrument` record, keys `instrument` and `arms`; e.g.
    "green", "red" for 4MOST HR), else from gaps in the wavelength grid (a step > 10 median steps starts a new
    arm), each named by its wavelength range ("5160-5730 Å")."""
    wl = np.asarray(wavelength, dtype=float)
    instrument = dict(instrument or {})
    try:
        from gridkit import instruments

        inst = instruments.get(instrument.get("instrument"))
        arms = instrument.get("arms")
        chosen = inst.select(arms if not isinstance(arms, list) else [str(a) for a in arms])
        out = [(a.name, a.wl_min, a.wl_max) for a in chosen if np.any((wl >= a.wl_min) & (wl <= a.wl_max))]
        if out:
            return out
    except Exception:  # noqa: BLE001 - unknown or missing instrument: infer from the grid
        pass
    steps = np.diff(wl)
    breaks = np.flatnonzero(steps > 10 * np.median(steps))
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, wl.size - 1]
    return [(f"{wl[a]:.0f}-{wl[b]:.0f} Å", float(wl[a]), float(wl[b])) for a, b in zip(starts, ends)]


def plot_saliency(ds: xr.Dataset, out_dir, *, instrument: Mapping | None = None, tag: str = "", labels: Sequence[str] | None = None,
                  n_lines: int = 8) -> dict[str, Path]:
    """One figure per arm (`figA4_saliency_<arm>[_tag].png`): per label the median |normalised gradient|
    against wavelength, strong lines of the label's element marked (red ticks), Balmer lines (blue)."""
    plt = pyplot()
    out_dir = Path(out_dir)
    labels = list(labels or ds["label"].values.tolist())
    wl = np.asarray(ds["wavelength"].values, dtype=float)
    paths = {}
    for arm, lo, hi in arm_ranges(wl, instrument):
        m = (wl >= lo) & (wl <= hi)
        fig, axes = plt.subplots(len(labels), 1, figsize=(14, 0.95 * len(labels) + 1.0), sharex=True)
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.5 / (0.95 * len(labels) + 1.0), top=1 - 0.45 / (0.95 * len(labels) + 1.0), hspace=0.12)
        axes = np.atleast_1d(axes)
        for ax, lab in zip(axes, labels):
            y = np.asarray(ds["saliency"].sel(label=lab).values)[m]
            ax.plot(wl[m], y, color="k", lw=0.5)
            top = max(float(np.nanmax(y)) if y.size else 1.0, 1e-3)
            el = LABEL_ELEMENT.get(lab)
            for w in line_positions(lo, hi, el, n_lines) if el else []:
                ax.axvline(w, ymin=0.82, ymax=1.0, color="C3", lw=1.0)
            for w in BALMER:
                if lo <= w <= hi:
                    ax.axvline(w, color="C0", lw=0.8, alpha=0.5)
            ax.set_ylim(0, top * 1.15)
            ax.set_xlim(wl[m][0], wl[m][-1])
            ax.text(0.002, 0.85, f"{lab}" + (f"  ({el} lines)" if el else ""), transform=ax.transAxes, fontsize=8, va="top",
                    bbox=dict(facecolor="white", alpha=0.7, lw=0))
            ax.tick_params(labelsize=7)
        axes[-1].set_xlabel("wavelength [Å]")
        fig.supylabel("median |∂label/∂flux| / max", fontsize=9, x=0.01)
        named = not arm.endswith(" Å")  # an instrument's arm, not a range inferred from the grid
        fig.suptitle(f"Saliency, {arm + ' arm' if named else 'spectrum'} ({lo:.0f}-{hi:.0f} Å), {ds.attrs.get('n_spectra', '?')} spectra"
                     + (f" at S/N {ds.attrs['snr']:g}" if "snr" in ds.attrs else "")
                     + "; red ticks: strongest lines of the label's element, blue: Balmer (cf. Figs. A.4, A.5)", fontsize=10)
        key = arm if named else f"{lo:.0f}-{hi:.0f}"  # file names without blanks or Å
        name = f"figA4_saliency_{key}" + (f"_{tag}" if tag else "")
        paths[f"saliency_{key}"] = save_figure(fig, out_dir / f"{name}.png")
    return paths
