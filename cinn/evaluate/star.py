"""One star of a catalog, for the astronomer looking at it: its posterior draws, a corner plot, and its spectrum
against posterior-predictive spectra (`gridkit show CATALOG STAR_ID`).

The draws are the ones the catalog's quantiles come from: kept in the catalog (`gridkit infer --keep-samples N`:
`samples(star, draw, label)`, `samples_in_bounds(star, draw)`), or else re-drawn from the model and the survey the
catalog records (attrs `model_dir`, `survey`, `samples`, `seed`, `missing`, `interval_calibration`) by the one
per-chunk function of `infer` (`cinn.survey.summarize_rows`), with the star's row in the survey as the key of its
draws: the same draws as `infer` made for that star, so the in-bounds ones have exactly the catalog's quantiles.
The corner plot shows the in-bounds draws (those the quantiles count), calibrated like the quantiles when the
catalog's were.

The spectrum figure reuses the posterior predictive check (`cinn.evaluate.ppc`): the grid's own generator, read
from the attrs of the cube the model was trained on (model.json `training_data.path`), re-simulates the MAP and a
few posterior draws through the cube's degradation chain; skipped, with the reason, where that generator cannot
run here or the cube is gone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from gridkit.errors import ConfigError, GridError, StoreError

from .plotting import pyplot, save_figure

#: labels of the corner plot by default: these, where the catalog has them, then others up to DEFAULT_MAX_LABELS
DEFAULT_LABELS = ("teff", "logg", "feh", "vmic", "vbroad")
DEFAULT_MAX_LABELS = 5


@dataclass
class StarPosterior:
    """The posterior draws of one catalog star (all the draws, and which of them the quantiles count)."""

    star_id: str
    row: int  # the star's row in the survey (the key of its draws)
    samples: xr.DataArray  # (draw, label), physical units, calibrated like the catalog's quantiles
    in_bounds: np.ndarray  # (draw,) bool: inside the training bounds (counted in the quantiles)
    quantiles: xr.DataArray  # (label, quantile): the catalog's
    source: str  # "kept in the catalog" or "re-drawn from the model"

    def plotted(self, labels: Sequence[str] | None = None) -> xr.DataArray:
        """The draws the corner plot shows: the in-bounds ones, (draw, label) for `labels` (default: all)."""
        out = self.samples.isel(draw=np.flatnonzero(self.in_bounds))
        return out if labels is None else out.sel(label=list(labels))


def _open(catalog, where: str | None = None) -> tuple[xr.Dataset, str]:
    import catalogs

    if isinstance(catalog, xr.Dataset):
        return catalog, where or "the catalog"
    return catalogs.open(catalog), where or f"catalog {catalog}"


def _label_names(cat: xr.Dataset) -> list[str]:
    from catalogs import label_names

    return label_names(cat)


def _row_of(cat: xr.Dataset, star_id: str, where: str) -> xr.Dataset:
    import catalogs

    try:
        one = catalogs.select(cat, star_id=[str(star_id)])
    except GridError:
        raise GridError(f"star_id {star_id!r} is not in {where} ({cat.sizes['star']} stars; e.g. "
                        f"{', '.join(str(s) for s in np.asarray(cat['star_id'].values[:3]).tolist())})") from None
    return one


def star_posterior(catalog, star_id: str, *, model_dir=None, post=None, where: str | None = None) -> StarPosterior:
    """The posterior draws of `star_id` in `catalog` (a path or an opened catalog, named `where` in errors): the kept
    ones when the catalog has them, else re-drawn (the model from `post`, else `model_dir`, else the catalog's attr
    model_dir). GridError for a star_id not in the catalog."""
    cat, where = _open(catalog, where)
    one = _row_of(cat, star_id, where).load()
    row = int(one["star"].values[0])
    if "flag_missing_flux" in one and bool(one["flag_missing_flux"].values[0]):
        raise GridError(f"star {star_id} of {where} was not inferred (flag_missing_flux: its spectrum has missing pixels)")
    labels = [str(x) for x in cat.attrs.get("label_names") or []] or _label_names(cat)
    quantiles = xr.concat([one[f"{x}_quantiles"].isel(star=0, drop=True) for x in labels], dim="label").assign_coords(label=labels)
    if "samples" in one.variables and int(one.sizes.get("draw", 0)) > 0:
        samples = one["samples"].isel(star=0, drop=True).astype(np.float64)
        inside = np.asarray(one["samples_in_bounds"].values[0], dtype=bool)
        return StarPosterior(str(star_id), row, samples, inside, quantiles, "kept in the catalog")
    rows = redraw(cat, [row], model_dir=model_dir, post=post, star_ids=[str(star_id)], where=where)
    samples = rows["samples"].isel(star=0, drop=True).astype(np.float64)
    inside = np.asarray(rows["samples_in_bounds"].values[0], dtype=bool)
    return StarPosterior(str(star_id), row, samples, inside, quantiles, "re-drawn from the model")


def _posterior(cat: xr.Dataset, model_dir=None, post=None):
    if post is None:
        import cinn

        model_dir = model_dir or cat.attrs.get("model_dir")
        if not model_dir or not Path(model_dir).is_dir():
            raise StoreError(f"the model directory {model_dir!r} does not exist: give the model that made the catalog (--model DIR)")
        post = cinn.load(model_dir)
    if "model_id" in cat.attrs and str(post.model_id) != str(cat.attrs["model_id"]):
        raise StoreError(f"the catalog was made by model {cat.attrs['model_id']}, not by {getattr(post, 'model_dir', model_dir)} "
                         f"(model {post.model_id}): give the model that made it (--model DIR)")
    return post


def redraw(cat: xr.Dataset, rows, *, model_dir=None, post=None, star_ids=None, where: str = "the catalog") -> xr.Dataset:
    """The catalog rows of the survey rows `rows` computed again as `infer` computed them, with all their draws kept
    (`summarize_rows(..., keep_samples=samples)`): samples(star, draw, label), samples_in_bounds(star, draw), ...
    The survey is the catalog's attr `survey`; `star_ids` (when given) are checked against the survey's."""
    from cinn.survey import open_survey, summarize_rows

    post = _posterior(cat, model_dir, post)
    path = cat.attrs.get("survey")
    if not path or not Path(path).exists():
        raise StoreError(f"the survey of {where} ({path!r}) does not exist here: infer with --keep-samples N to keep the draws "
                         "in the catalog, or make the survey available at that path")
    survey = open_survey(path)
    rows = np.asarray(rows, dtype=np.int64)
    sub = survey[["flux", "snr", "star_id"]].isel(star=rows).load()
    if star_ids is not None:
        have = [str(s) for s in sub["star_id"].values.tolist()]
        if have != [str(s) for s in star_ids]:
            raise StoreError(f"the survey {path} holds {have} at the row(s) {rows.tolist()} of {list(star_ids)}: it changed since the "
                             "catalog was inferred")
    calibrated = str(cat.attrs.get("interval_calibration", "none")) != "none"
    if calibrated:
        cal = getattr(post, "calibration", None)
        if cal is None or cal.summary() != cat.attrs["interval_calibration"]:
            raise StoreError(f"{where} was inferred with an interval calibration the model directory no longer holds (refitted or "
                             "removed): its draws cannot be made again")
    n = int(cat.attrs["samples"])
    return summarize_rows(post, sub["flux"].values, sub["snr"].values, rows, samples=n, seed=int(cat.attrs.get("seed", 0)),
                          label_names=tuple(post.label_names), missing=str(cat.attrs.get("missing", "impute")),
                          calibrated=calibrated, keep_samples=n)


def default_labels(available: Sequence[str]) -> list[str]:
    """Teff, log g, [Fe/H], vmic, vbroad where present, then the other labels, DEFAULT_MAX_LABELS in all."""
    first = [x for x in DEFAULT_LABELS if x in available]
    return (first + [x for x in available if x not in first])[:DEFAULT_MAX_LABELS]


def corner(samples: np.ndarray, names: Sequence[str], path, *, quantiles: np.ndarray | None = None, truths=None, title: str = "",
           bins: int = 30) -> Path:
    """A corner plot of `samples` (n, d) written to `path` (PNG): histograms on the diagonal (with the 16/50/84 %
    `quantiles` (d, 3) as dashed lines when given), 2-D histograms below it, `truths` (d,) as lines. Axis labels from
    `gridkit.schema.label_info`."""
    from .plotting import axis_label

    x = np.asarray(samples, dtype=np.float64)
    names = list(names)
    if x.ndim != 2 or x.shape[1] != len(names) or x.shape[0] < 2:
        raise ConfigError(f"corner needs samples (n >= 2, {len(names)}), got shape {x.shape}")
    d = len(names)
    plt = pyplot()
    size = 1.9 if d > 3 else 2.4
    fig, axes = plt.subplots(d, d, figsize=(size * d + 0.6, size * d + 0.6), squeeze=False)
    fig.subplots_adjust(left=0.13, bottom=0.13, right=0.97, top=0.92, wspace=0.06, hspace=0.06)
    lims = []
    for j in range(d):
        lo, hi = np.nanmin(x[:, j]), np.nanmax(x[:, j])
        pad = 0.02 * (hi - lo) if hi > lo else max(abs(lo) * 1e-3, 1e-3)
        lims.append((lo - pad, hi + pad))
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(x[:, j], bins=bins, range=lims[j], histtype="step", color="k", lw=0.9)
                if quantiles is not None:
                    for q in np.asarray(quantiles)[j]:
                        ax.axvline(q, color="C0", ls="--", lw=0.8)
                ax.set_yticks([])
            else:
                ax.hist2d(x[:, j], x[:, i], bins=bins, range=[lims[j], lims[i]], cmap="Greys")
                ax.set_ylim(lims[i])
                if truths is not None and np.isfinite(truths[i]):
                    ax.axhline(truths[i], color="C3", lw=0.8)
            if truths is not None and np.isfinite(truths[j]):
                ax.axvline(truths[j], color="C3", lw=0.8)
            ax.set_xlim(lims[j])
            ax.tick_params(labelsize=7)
            if i == d - 1:
                ax.set_xlabel(axis_label(names[j]), fontsize=8)
                ax.tick_params(axis="x", labelrotation=45)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(axis_label(names[i]), fontsize=8)
            elif j > 0:
                ax.set_yticklabels([])
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def spectrum_path(out) -> Path:
    """Where the spectrum figure of `show_star(out=...)` goes: `<stem>_spectrum<suffix>` beside the corner plot."""
    out = Path(out)
    return out.with_name(f"{out.stem}_spectrum{out.suffix or '.png'}")


def show_star(catalog, star_id: str, out, *, model_dir=None, labels: Sequence[str] | None = None, spectrum: bool = True,
              n_draws: int = 16, post=None) -> dict:
    """Write the corner plot of `star_id`'s posterior to `out` and, where the grid's generator runs here, its spectrum
    against posterior-predictive spectra to `spectrum_path(out)`. Returns {"corner": path, "spectrum": path or None,
    "source": where the draws came from, "notes": [...], "n_draws": draws plotted}."""
    cat, where = _open(catalog)
    available = [str(x) for x in cat.attrs.get("label_names") or []] or _label_names(cat)
    labels = default_labels(available) if not labels else [str(x) for x in labels]
    unknown = [x for x in labels if x not in available]
    if unknown:
        raise ConfigError(f"labels {', '.join(unknown)} are not in {where}; it has {', '.join(available)}")
    needs_model = "samples" not in cat.variables or spectrum
    if needs_model and post is None:
        try:
            post = _posterior(cat, model_dir)
        except StoreError:
            if "samples" not in cat.variables:
                raise
            post = None
    star = star_posterior(cat, star_id, model_dir=model_dir, post=post, where=where)
    shown = star.plotted(labels)
    if shown.sizes["draw"] < 2:
        raise GridError(f"star {star_id}: {shown.sizes['draw']} of its draws lie inside the training bounds; nothing to plot")
    from catalogs.schema import QUANTILES

    q = star.quantiles.sel(label=labels).isel(quantile=[QUANTILES.index(v) for v in (0.16, 0.5, 0.84)]).values
    one = _row_of(cat, star_id, where)
    truths = np.array([float(one[f"true_{x}"].values[0]) if f"true_{x}" in one else np.nan for x in labels])
    snr = float(one["snr"].values[0]) if "snr" in one else float("nan")
    title = (f"{star_id} (S/N {snr:g}): {shown.sizes['draw']} posterior draws, {star.source}\n"
             "dashed: catalog 16/50/84 %" + (", red: true labels" if np.isfinite(truths).any() else ""))
    paths = {"corner": corner(shown.values, labels, out, quantiles=q, truths=truths if np.isfinite(truths).any() else None, title=title),
             "spectrum": None, "source": star.source, "notes": [], "n_draws": int(shown.sizes["draw"])}
    if spectrum:
        if post is None:
            paths["notes"].append("spectrum figure skipped: the model directory is not available")
        else:
            paths["spectrum"], note = _spectrum_figure(cat, star, post, spectrum_path(out), n_draws, where)
            if note:
                paths["notes"].append(note)
    return paths


def _spectrum_figure(cat: xr.Dataset, star: StarPosterior, post, path: Path, n_draws: int, where: str):
    """(path, "") of the star's spectrum against posterior-predictive spectra, or (None, why it was skipped)."""
    from cinn.survey import open_survey
    from gridkit.grid import open_grid

    from .ppc import generator_from_attrs, plot_ppc, posterior_predictive

    cube_path = (getattr(post, "meta", {}).get("training_data") or {}).get("path")
    if not cube_path or not Path(cube_path).exists():
        return None, f"spectrum figure skipped: the model's training cube {cube_path!r} (its generator and degradation chain) is not here"
    attrs = open_grid(cube_path).attrs
    gen, why = generator_from_attrs(attrs)
    if gen is None:
        return None, f"spectrum figure skipped: {why}"
    survey_path = cat.attrs.get("survey")
    if not survey_path or not Path(survey_path).exists():
        return None, f"spectrum figure skipped: the survey of {where} ({survey_path!r}) is not here"
    one = open_survey(survey_path)[["flux", "snr"]].isel(star=[star.row]).load()
    flux, _ = post.scaler.fill_masked(np.asarray(one["flux"].values, dtype=np.float32))
    n = int(cat.attrs.get("samples", 1024))
    res = posterior_predictive(post, flux, one["snr"].values, gen, attrs, wavelength=post.wavelength, n_draws=min(n_draws, n),
                               samples=n, seed=int(cat.attrs.get("seed", 0)), keys=[star.row])
    return plot_ppc(res, path, model_ids=[star.star_id], max_spectra=1), ""


__all__ = ["StarPosterior", "star_posterior", "redraw", "corner", "show_star", "spectrum_path", "default_labels"]
