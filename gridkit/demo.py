"""The end-to-end demo (`gridkit demo`, the README's main job): every step of the toolkit on the built-in
analytic generator, sized to finish in about 12 minutes on 2 CPU cores (11.5 min measured on a fresh clone, 2026-12-03).

    synth (analytic, N models) -> degrade (4MOST HR green+red, a few S/N) -> train (CPU-sized cINN)
    -> evaluate (tables, calibration, figures) -> mock-survey -> infer (Dask LocalCluster) -> catalog query/export
    [-> the observed UVES Sun through fourmostify -> infer, when the spectrum is at hand]

Each stage writes a store a user can open with xarray; rerunning the same command resumes (the stores are
restartable, training resumes from its checkpoint, a finished stage is skipped). `DemoConfig` holds the sizes;
`--models`, `--epochs`, ... scale it up. The network is deliberately small (the published architecture is
`cinn.CINNConfig()`); the analytic spectra are a simplified model for tests and demos, not radiative transfer.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .files import check_output, jsonable

#: files the demo writes in its folder besides the stores and folders of `run_demo`
DEMO_FILES = ("summary.json", "query.fits", "catalog.csv", "catalog.csv-metadata.json")

#: a CPU-sized network (the published one is cinn.CINNConfig() with its defaults)
DEMO_NETWORK = {
    "n_blocks": 6, "subnet_width": 128, "subnet_layers": 3, "feature_layers": (256,), "n_features": 64,
    "lr": 1e-3, "lr_decay": 0.97, "patience": 6, "val_samples": 1024, "shuffle_buffer": 4096,
    "shuffle_buffer_mb": 512,  # all 4096 spectra (413 MB, one process), as the demo's documented results were made
    # noise drawn afresh at every read (S/N log-uniform over the cube's range, from its highest-S/N copy): with
    # a thousand models the network otherwise learns the noise of the few stored copies by heart
    "loader": "dynamic", "copies_per_model": 4,
    # loading in the training process: on 2 cores a loader worker competes with training (17-18 s per epoch
    # with one worker, 15-16 s without; the batches are the same)
    "num_workers": 0,
}
#: a network that trains in seconds, for `--quick` (tests, CI)
QUICK_NETWORK = {
    "n_blocks": 2, "subnet_width": 32, "subnet_layers": 2, "feature_layers": (64,), "n_features": 16,
    "val_samples": 64, "num_workers": 0, "shuffle_buffer": 512,
}


#: the resolving power taken for the shared UVES solar spectrum (../shared/data/sun-uves): the file does not state it (R of
#: order 10^5); every use (the demo, the docs, benchmarks/solar_uves_check.py, notebooks) takes this one value. Going to
#: R = 20000, 80,000 against 100,000 changes the kernel's FWHM by 1.2 %.
UVES_SUN_RESOLVING_POWER = 80_000.0


@dataclass(frozen=True)
class DemoConfig:
    n_models: int = 2000
    seed: int = 0
    arms: tuple[str, ...] = ("green", "red")
    #: S/N per Angstrom of the training cube (the published grid has 19 values from 10 to 1000)
    snr: tuple[float, ...] = (20.0, 50.0, 100.0, 250.0)
    epochs: int = 25
    batches_per_epoch: int = 32
    batch_size: int = 256
    network: dict = field(default_factory=lambda: dict(DEMO_NETWORK))
    #: posterior draws per spectrum for the evaluation and the survey (published: 4096)
    eval_samples: int = 512
    eval_spectra: int | None = None
    #: the evaluation's saliency maps, and the spectra of its posterior predictive check (slower diagnostics)
    saliency: bool = True
    ppc: int = 4
    survey_snr: float = 50.0
    infer_samples: int = 1024
    workers: int = 2
    query: str = "teff > 5500 and feh < -0.5 and f_reject < 0.5"
    #: the observed solar spectrum to run through fourmostify -> infer ('auto': ../shared/data/sun-uves when present)
    sun: str | None = "auto"
    sun_resolving_power: float = UVES_SUN_RESOLVING_POWER

    @classmethod
    def quick(cls, **overrides) -> "DemoConfig":
        """A run of about a minute: the whole chain on a few dozen models and a tiny network."""
        base = dict(n_models=64, snr=(50.0, 250.0), epochs=2, batches_per_epoch=4, batch_size=64, network=dict(QUICK_NETWORK),
                    eval_samples=64, eval_spectra=16, saliency=False, ppc=0, infer_samples=64, survey_snr=250.0, query="teff > 5000 and f_reject < 0.5")
        base.update(overrides)
        return cls(**base)

    def __post_init__(self):
        for name in ("n_models", "epochs", "batches_per_epoch", "batch_size", "eval_samples", "infer_samples", "workers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.n_models < 20:
            raise ConfigError(f"n_models must be at least 20 (the 75/20/5 split needs a few models in each part), got {self.n_models}")
        if not self.snr or any(not (s > 0) for s in self.snr):
            raise ConfigError(f"snr must be positive values, got {self.snr!r}")
        if float(self.survey_snr) not in [float(s) for s in self.snr]:
            raise ConfigError(f"survey_snr {self.survey_snr!r} must be one of the cube's S/N values {self.snr!r} (the mock survey takes those spectra)")


def _shared_sun() -> Path | None:
    here = Path(__file__).resolve().parents[2] / "shared" / "data" / "sun-uves" / "UVES_Sun-1_cleaned_norm.txt"
    return here if here.is_file() else None


class _Stages:
    """Times and announces the stages."""

    def __init__(self, log):
        self.log = log
        self.times: dict[str, float] = {}

    def __call__(self, name: str, what: str):
        stages = self

        class _Stage:
            def __enter__(self):
                stages.log(f"\n== {name}: {what}")
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                stages.times[name] = time.perf_counter() - self.t0
                if exc[0] is None:
                    stages.log(f"   {name} done in {stages.times[name]:.1f} s")

        return _Stage()


def run_demo(out="demo-output", config: DemoConfig | None = None, *, scheduler: str | None = None, overwrite: bool = False,
             progress: bool = True, log=None) -> dict:
    """Run the whole chain into the folder `out`; returns a summary (paths, timings, figures of merit), also
    written to `out/summary.json`. An existing `out` is resumed (overwrite=True starts afresh)."""
    from .cluster import client_for

    cfg = config or DemoConfig()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    p = {k: out / v for k, v in {"base": "base.zarr", "cube": "train.zarr", "model": "model", "report": "report",
                                   "survey": "survey.zarr", "catalog": "catalog.zarr", "figures": "figures",
                                   "sun_survey": "sun-survey.zarr", "sun_catalog": "sun-catalog.zarr"}.items()}
    sun = _shared_sun() if cfg.sun == "auto" else (Path(cfg.sun) if cfg.sun else None)
    check_output(out, [sun], "demo --out")
    if overwrite:  # only what the demo itself writes: a folder given by mistake keeps everything else
        for path in [*p.values(), *(out / f for f in DEMO_FILES)]:
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    p["figures"].mkdir(exist_ok=True)
    stage = _Stages(log)
    summary: dict = {"config": jsonable(dataclasses.asdict(cfg)), "paths": {k: str(v) for k, v in p.items()}}
    t_start = time.perf_counter()
    with client_for(None if scheduler else cfg.workers, scheduler, quiet=not progress) as client:
        _grid_stages(p, cfg, client, stage, progress)
    summary["training"] = _train_stage(p, cfg, stage, log, progress)
    summary["evaluation"] = _evaluate_stage(p, cfg, stage, log, progress)
    with client_for(None if scheduler else cfg.workers, scheduler, quiet=not progress) as client:
        summary.update(_survey_stages(p, cfg, client, stage, progress))
    summary.update(_catalog_stage(p, cfg, out, stage))
    summary["coverage68"] = _coverage68(p["report"])
    summary["timings_s"] = {**{k: round(v, 1) for k, v in stage.times.items()}, "total": round(time.perf_counter() - t_start, 1)}
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
    log("\n" + results_table(summary))
    return summary


def _grid_stages(p, cfg: DemoConfig, client, stage, progress) -> None:
    from .degradation import degrade_store
    from .synth import AnalyticSynthesizer, sample_labels, synthesize

    with stage("synth", f"{cfg.n_models} analytic spectra ({', '.join(cfg.arms)} arms, 0.02 A, unbroadened) -> {p['base']}"):
        labels = sample_labels(cfg.n_models, seed=cfg.seed)
        ranges = None if tuple(cfg.arms) == ("green", "red") else tuple(cfg.arms)
        backend = AnalyticSynthesizer() if ranges is None else AnalyticSynthesizer(wavelength_range=ranges)
        synthesize(labels, backend, p["base"], models_per_region=32, client=client, progress=progress)
    with stage("degrade", f"4MOST HR {'+'.join(cfg.arms)}, R=20000, S/N {', '.join(f'{s:g}' for s in cfg.snr)} per A -> {p['cube']}"):
        degrade_store(p["base"], p["cube"], "4most-hr", arms=list(cfg.arms), snr=list(cfg.snr), seed=cfg.seed, region_size=32,
                      client=client, progress=progress)


def _train_stage(p, cfg: DemoConfig, stage, log, progress) -> dict:
    import cinn

    with stage("train", f"cINN ({cfg.network.get('n_blocks')} coupling blocks), {cfg.epochs} epochs x {cfg.batches_per_epoch} batches of {cfg.batch_size} -> {p['model']}"):
        model_cfg = {**cfg.network, "seed": cfg.seed, "device": "auto"}
        if model_cfg.get("loader") == "dynamic":  # draw the training S/N over the cube's range
            model_cfg["snr_range"] = (float(min(cfg.snr)), float(max(cfg.snr)))
        if (p["model"] / "model.json").is_file() and not (p["model"] / "checkpoint").exists():
            log("   (already trained)")
        else:
            resume = (p["model"] / "checkpoint").exists()
            cinn.train(p["cube"], p["model"], config=None if resume else model_cfg, epochs=cfg.epochs,
                       batches_per_epoch=None if resume else cfg.batches_per_epoch, batch_size=None if resume else cfg.batch_size,
                       resume=resume, progress=progress)
        return _training_log(p["model"])


def _evaluate_stage(p, cfg: DemoConfig, stage, log, progress) -> dict:
    from cinn.evaluate.report import evaluate

    with stage("evaluate", f"test split, {cfg.eval_samples} posterior draws per spectrum -> {p['report']}"):
        done = p["report"] / "evaluation.json"
        if done.is_file() and done.stat().st_mtime > (p["model"] / "model.json").stat().st_mtime:
            log("   (already evaluated)")
            return json.loads(done.read_text())
        written = evaluate(p["model"], p["cube"], p["report"], samples=cfg.eval_samples, split="test", seed=cfg.seed,
                           max_spectra=cfg.eval_spectra, figure_snr=max(cfg.snr), saliency=cfg.saliency, ppc=cfg.ppc,
                           progress=progress)
        written = {k: str(v) for k, v in written.items()}
        done.write_text(json.dumps(written, indent=1))
        return written


def _survey_stages(p, cfg: DemoConfig, client, stage, progress) -> dict:
    from cinn.survey import infer, mock_survey

    from .observed import fourmostify_store

    found = {}
    with stage("mock-survey", f"the test split at S/N {cfg.survey_snr:g} per A, true labels kept -> {p['survey']}"):
        mock_survey(p["cube"], p["survey"], snr=cfg.survey_snr, split="test", model_dir=p["model"], seed=cfg.seed, progress=False)
    with stage("infer", f"{cfg.infer_samples} draws per star on the Dask cluster -> {p['catalog']}"):
        infer(p["model"], p["survey"], p["catalog"], samples=cfg.infer_samples, chunk=32, seed=cfg.seed, client=client,
              progress=progress, command="gridkit demo")
    sun = _shared_sun() if cfg.sun == "auto" else (Path(cfg.sun) if cfg.sun else None)
    if sun is not None and "green" in cfg.arms:
        with stage("sun", f"observed UVES Sun {sun.name}: fourmostify (R={cfg.sun_resolving_power:g}, S/N {max(cfg.snr):g}) -> infer"):
            # degraded to the cube's highest S/N: the network knows S/N only within its training range
            fourmostify_store([sun], p["sun_survey"], cfg.sun_resolving_power, arms=list(cfg.arms), snr=max(cfg.snr),
                              star_ids=["Sun-UVES"], client=None, overwrite=True, progress=False)
            found["sun"] = _sun(p, cfg, client, infer)
    return found


def _catalog_stage(p, cfg: DemoConfig, out: Path, stage) -> dict:
    import catalogs

    with stage("catalog", f"query {cfg.query!r}, export FITS + CSV, figures"):
        cat = catalogs.open(p["catalog"])
        hits = catalogs.query(cat, cfg.query)
        cols = [c for c in ("star_id", "snr", "teff", "teff_p16", "teff_p84", "logg", "feh", "feh_p16", "feh_p84", "f_reject")
                if c in catalogs.columns(cat)]
        catalogs.export(hits, out / "query.fits", columns=cols, overwrite=True)
        catalogs.export(cat, out / "catalog.csv", overwrite=True)
        return {"query": {"expression": cfg.query, "n_stars": int(cat.sizes["star"]), "n_selected": int(hits.sizes["star"]),
                          "fits": str(out / "query.fits"), "csv": str(out / "catalog.csv")},
                "catalog": _catalog_accuracy(cat),
                "figures": [str(f) for f in (_plot_spectra(p), _plot_catalog(cat, p["figures"] / "catalog_map_vs_truth.png"))]}


def _sun(p, cfg, client, infer) -> dict:
    import catalogs

    infer(p["model"], p["sun_survey"], p["sun_catalog"], samples=max(cfg.infer_samples, 1024), chunk=1, seed=cfg.seed,
          client=client, overwrite=True, progress=False, command="gridkit demo (Sun)", missing="impute")
    cat = catalogs.open(p["sun_catalog"])
    row = {k: float(cat[k].values[0]) for k in ("teff", "logg", "feh", "f_reject", "snr", "n_imputed") if k in cat}
    for k in ("teff", "logg", "feh"):
        q = cat[f"{k}_quantiles"].values[0]
        row[f"{k}_p16"], row[f"{k}_p84"] = float(q[1]), float(q[3])
    row["reference"] = {"teff": 5772.0, "logg": 4.44, "feh": 0.0}
    return row


def _training_log(model_dir: Path) -> dict:
    """Epochs and the validation negative log-likelihood at the first and last epoch, from the model's log.csv."""
    import csv

    path = model_dir / "log.csv"
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    if not rows:
        return {}
    val = [float(r["val_nll"]) for r in rows]
    best = int(np.nanargmin(val))
    return {"epochs": len(rows) - 1, "log": str(path), "validation_loss_first": val[0], "validation_loss_best": val[best],
            "best_epoch": int(rows[best]["epoch"]), "column": "val_nll"}


def _catalog_accuracy(cat) -> dict:
    """MAP - truth over the mock survey, per label: mean, standard deviation, and the fraction of stars whose
    truth lies inside the 16-84 % interval (68 % coverage)."""
    res = {}
    q = list(np.round(cat["quantile"].values, 4))
    lo, hi = q.index(0.16), q.index(0.84)
    import catalogs

    for lab in catalogs.label_names(cat):
        truth = f"true_{lab}"
        if truth not in cat:
            continue
        t = np.asarray(cat[truth].values, float)
        m = np.asarray(cat[lab].values, float)
        qs = np.asarray(cat[f"{lab}_quantiles"].values, float)
        ok = np.isfinite(m) & np.isfinite(t)
        d = m[ok] - t[ok]
        inside = (qs[ok, lo] <= t[ok]) & (t[ok] <= qs[ok, hi])
        res[lab] = {"bias": float(d.mean()), "sigma": float(d.std(ddof=1)) if d.size > 1 else float("nan"),
                    "prior_sigma": float(t.std(ddof=1)), "coverage68": float(inside.mean()), "n": int(ok.sum())}
    return res


def _coverage68(report: Path) -> dict:
    """The 68 % coverage per label at the figure S/N, from the evaluation's summary.json."""
    path = report / "summary.json"
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    return doc.get("coverage_68", {})


def _plot_spectra(p) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    base = xr.open_zarr(p["base"], consolidated=False)
    cube = xr.open_zarr(p["cube"], consolidated=False)
    snrs = cube["snr"].values
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), constrained_layout=True)
    windows = [(5180.0, 5190.0), (6555.0, 6575.0)]
    for ax, (a, b) in zip(axes, windows):
        for i in range(min(3, base.sizes["model"])):
            bw = base.wavelength.sel(wavelength=slice(a, b))
            bf = base.flux.isel(model=i).sel(wavelength=slice(a, b))
            line, = ax.plot(bw, bf, lw=0.6, alpha=0.6)
            cf = cube.flux.isel(model=i, snr=len(snrs) - 1).sel(wavelength=slice(a, b))
            lab = f"Teff {float(base.teff[i]):.0f} K, log g {float(base.logg[i]):.2f}, [Fe/H] {float(base.feh[i]):+.2f}"
            ax.plot(cf.wavelength, cf, color=line.get_color(), lw=1.2, drawstyle="steps-mid", label=lab)
        ax.set_xlabel("air wavelength [Å]")
        ax.set_ylabel("normalised flux")
        ax.set_xlim(a, b)
    axes[0].legend(fontsize=8, loc="lower left")
    axes[0].set_title(f"analytic spectra: unbroadened (thin) and 4MOST HR at S/N {snrs[-1]:g}/Å (steps)")
    path = p["figures"] / "spectra.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _label_text(cat, lab: str) -> tuple[str, str]:
    """(display name, " [unit]") of a catalog label, from the attrs `long_name` and `units` of its variables
    (the catalog is the one source of truth; no unit text for dimensionless labels)."""
    attrs = {**cat[f"true_{lab}"].attrs, **cat[lab].attrs} if f"true_{lab}" in cat else dict(cat[lab].attrs)
    long = str(attrs.get("long_name") or lab).split(" (maximum a posteriori)")[0]
    units = str(attrs.get("units") or "")
    return long, "" if units in ("", "1") else f" [{units}]"


def _plot_catalog(cat, path: Path) -> Path:
    """catalog_map_vs_truth.png: `_catalog_figure(cat)` written to `path`."""
    import matplotlib.pyplot as plt

    fig = _catalog_figure(cat)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _catalog_figure(cat):
    """MAP against the true label, with the 16-84 % intervals: one panel per label of the catalog with a
    `true_<label>` column (4 columns), axes labelled with the label's unit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import catalogs

    labs = [lab for lab in catalogs.label_names(cat) if f"true_{lab}" in cat]
    ncols = min(4, max(len(labs), 1))
    nrows = -(-max(len(labs), 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows + 0.4), constrained_layout=True, squeeze=False)
    for ax in axes.ravel()[len(labs):]:
        ax.set_visible(False)
    q = list(np.round(cat["quantile"].values, 4))
    for ax, lab in zip(axes.ravel(), labs):
        t = np.asarray(cat[f"true_{lab}"].values, float)
        m = np.asarray(cat[lab].values, float)
        qs = np.asarray(cat[f"{lab}_quantiles"].values, float)
        yerr = np.clip([m - qs[:, q.index(0.16)], qs[:, q.index(0.84)] - m], 0, None)  # the MAP may lie outside 16-84 %
        ax.errorbar(t, m, yerr=yerr, fmt=".", ms=3, lw=0.5, alpha=0.6)
        lo, hi = np.nanmin(t), np.nanmax(t)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        long, unit = _label_text(cat, lab)
        ax.set_title(long, fontsize=8)
        ax.set_xlabel(f"true {lab}{unit}", fontsize=8)
        ax.set_ylabel(f"MAP {lab}{unit}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"mock survey catalog: MAP with 16-84 % intervals ({cat.sizes['star']} stars)")
    return fig


def results_table(summary: dict) -> str:
    """The printed summary: accuracy of the mock survey against the truth, coverage, query, Sun, timings."""
    lines = ["Results (mock survey of the test split; MAP - truth)", "",
             f"{'label':8s} {'bias':>10s} {'sigma':>10s} {'prior sd':>10s} {'cover68':>8s}"]
    for lab, r in summary.get("catalog", {}).items():
        lines.append(f"{lab:8s} {r['bias']:10.3g} {r['sigma']:10.3g} {r['prior_sigma']:10.3g} {r['coverage68']:8.2f}")
    q = summary.get("query", {})
    if q:
        lines += ["", f"query {q['expression']!r}: {q['n_selected']} of {q['n_stars']} stars -> {q['fits']}"]
    sun = summary.get("sun")
    if sun:
        lines += ["", "observed Sun (UVES, fourmostified): " + ", ".join(
            f"{k} {sun[k]:.3g} [{sun[k + '_p16']:.3g}, {sun[k + '_p84']:.3g}] (ref {sun['reference'][k]:g})" for k in ("teff", "logg", "feh"))
            + f", f_reject {sun.get('f_reject', float('nan')):.2f}, {sun.get('n_imputed', 0):.0f} missing pixels imputed"]
    cov = summary.get("coverage68", {})
    if cov:
        lines += ["", "coverage of the 68 % intervals (evaluation, test split): " + ", ".join(f"{k} {v:.2f}" for k, v in cov.items())]
    tr = summary.get("training", {})
    if "validation_loss_first" in tr:
        lines += ["", f"training: {tr['epochs']} epochs, validation NLL per label {tr['validation_loss_first']:.3f} before training, "
                      f"best {tr['validation_loss_best']:.3f} at epoch {tr['best_epoch']} (the weights kept)"]
    t = summary.get("timings_s", {})
    if t:
        lines += ["", "timings [s]: " + ", ".join(f"{k} {v:g}" for k, v in t.items())]
    return "\n".join(lines)


__all__ = ["DemoConfig", "run_demo", "results_table", "DEMO_NETWORK", "QUICK_NETWORK"]
