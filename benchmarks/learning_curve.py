"""Learning curve: sigma (MAP - truth) and coverage of the 68 % interval against the number of training models, on one
fixed test split (issue 13: "how big a grid must be for a target accuracy"). docs/science.md, "Learning curve".

Each point is the reference recipe (configs/reference-tsgrid-lte.yaml) plus `train_models: N` (the first N models of the
training split in the split's seeded order, so the subsets are nested; validation and test splits unchanged; epochs and
batches_per_epoch unchanged, i.e. the same number of gradient steps for every N), trained on the noiseless grid, its
intervals calibrated on an independent cube of other models of the same recipe, evaluated on the test split of the cube:

    gridkit train NOISELESS --out DIR/lcN --config DIR/lcN.yaml --no-progress
    gridkit calibrate-intervals DIR/lcN EXTRA_CUBE --samples 1024
    gridkit evaluate DIR/lcN CUBE --out DIR/lcN-report --split test --snr 50,100,250 --samples 1024 \
        --saliency-spectra 0 --ppc 0 --no-progress

Rerun the whole curve (steps whose output exists are skipped; training wall time is written to DIR/lcN.time.json),
then plot; or only plot from existing reports (REPORT: N=path of an evaluate report directory, repeatable):

    python -m benchmarks.learning_curve run --noiseless /tmp/ts13/noiseless.zarr --cube /tmp/ts13/cube.zarr \
        --extra /tmp/ts13/extra_cube.zarr --dir /tmp/ts13/lc --n 200,400,100
    python -m benchmarks.learning_curve plot --dir /tmp/ts13/lc --n 100,200,400 \
        --report 604=/tmp/ts13/pca128-x-report --out docs/figures/learning_curve.png

The 604-model point of docs/science.md is the reference network (all 604 training models) calibrated on the same
extra cube (/tmp/ts13/pca128-x-report). `plot` also prints the markdown table of docs/science.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from gridkit.schema import LABEL_NAMES

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "reference-tsgrid-lte.yaml"
LABELS = LABEL_NAMES  # the 13 labels of the reports' columns
MAIN = ("teff", "logg", "feh", "mg_fe", "ca_fe")
TEX = {"teff": r"$T_\mathrm{eff}$ [K]", "logg": r"$\log g$", "feh": "[Fe/H]", "vmic": r"$v_\mathrm{mic}$", "vbroad": r"$v_\mathrm{broad}$",
       "c_fe": "[C/Fe]", "n_fe": "[N/Fe]", "mg_fe": "[Mg/Fe]", "si_fe": "[Si/Fe]", "ca_fe": "[Ca/Fe]", "ti_fe": "[Ti/Fe]",
       "mn_fe": "[Mn/Fe]", "li_fe": "[Li/Fe]"}


def gridkit(*args) -> None:
    """Run the gridkit CLI with this interpreter (and its PYTHONPATH)."""
    cmd = [sys.executable, "-c", "import sys; from gridkit.cli import main; sys.argv[0] = 'gridkit'; sys.exit(main())", *map(str, args)]
    print("+ gridkit", " ".join(map(str, args)), flush=True)
    subprocess.run(cmd, check=True)


def curve_config(recipe, n: int) -> str:
    """The recipe's YAML + `train_models: n`; where the recipe's flux_components would exceed the n training models
    (a basis of 128 principal components needs > 128 spectra), flux_components drops to the largest multiple of 32
    below n (96 for n = 100), the only change of the network."""
    import yaml

    text = Path(recipe).read_text().rstrip("\n")
    extra = f"\n# learning curve: the first {n} models of the training split\ntrain_models: {n}\n"
    fc = int((yaml.safe_load(text) or {}).get("flux_components", 0))
    if fc >= n:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("flux_components:"))
        extra += f"# the recipe's {fc} principal components need more than {n} training spectra\nflux_components: {(n - 1) // 32 * 32}\n"
    return text + extra


def run(noiseless, cube, extra, out_dir, ns, recipe=RECIPE, samples=1024) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in ns:
        name = out_dir / f"lc{n}"
        config = out_dir / f"lc{n}.yaml"
        if not config.exists():
            config.write_text(curve_config(recipe, n))
        if not (name / "model.json").exists():
            t0 = time.time()
            gridkit("train", noiseless, "--out", name, "--config", config, "--no-progress")
            wall = time.time() - t0
            (out_dir / f"lc{n}.time.json").write_text(json.dumps({"train_models": n, "train_wall_s": round(wall, 1),
                                                                   "finished": time.strftime("%Y-%m-%d %H:%M:%S")}))
        if not (name / "calibration.json").exists():
            gridkit("calibrate-intervals", name, extra, "--samples", samples)
        report = out_dir / f"lc{n}-report"
        if not (report / "summary.json").exists():
            gridkit("evaluate", name, cube, "--out", report, "--split", "test", "--snr", "50,100,250", "--samples", samples,
                    "--saliency-spectra", "0", "--ppc", "0", "--no-progress")


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def read_report(report) -> dict:
    """{'sigma': {snr: {label: sigma}}, 'bias': ..., 'cov': {snr: mean |c68 - 0.68|}, 'cov_raw': (uncalibrated),
    'cov68': {snr: {label: c68}}} of one evaluate report directory."""
    report = Path(report)
    out = {"sigma": {}, "bias": {}, "cov": {}, "cov_raw": {}, "cov68": {}}
    for r in _rows(report / "residuals.csv"):
        snr = float(r["snr"])
        out["sigma"][snr] = {k: float(r[f"{k}_sigma"]) for k in LABELS}
        out["bias"][snr] = {k: float(r[f"{k}_mean"]) for k in LABELS}
    for key, fname in (("cov", "coverage.csv"), ("cov_raw", "coverage_uncalibrated.csv")):
        for r in _rows(report / fname):
            if abs(float(r["level"]) - 0.68) < 1e-9:
                snr = float(r["snr"])
                out[key][snr] = sum(abs(float(r[k]) - 0.68) for k in LABELS) / len(LABELS)
                if key == "cov":
                    out["cov68"][snr] = {k: float(r[k]) for k in LABELS}
    return out


def train_info(model_dir, time_json=None) -> dict:
    """epochs run, best epoch, sum of the epochs' seconds (log.csv) and the wall time of `gridkit train` where recorded."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "model.json").read_text()) if (model_dir / "model.json").exists() else {}
    tr = meta.get("training", {})
    rows = _rows(model_dir / "log.csv") if (model_dir / "log.csv").exists() else []
    info = {"epochs_run": tr.get("epochs_run"), "best_epoch": tr.get("best_epoch"),
            "epoch_seconds": round(sum(float(r["seconds"]) for r in rows), 1) if rows else None, "train_wall_s": None}
    if time_json is not None and Path(time_json).exists():
        info["train_wall_s"] = json.loads(Path(time_json).read_text())["train_wall_s"]
    return info


def plot(points: dict, out) -> None:
    """points: {N: read_report(...)}. Three panels: sigma at S/N 250 (solid) and 50 (dashed) of the main labels and of the
    others, each divided by its value at the largest N; mean |coverage68 - 0.68| over the 13 labels, calibration on/off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(points)
    ref = ns[-1]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    others = [k for k in LABELS if k not in MAIN]
    for ax, group, title in ((axes[0], MAIN, "main labels"), (axes[1], others, "other labels")):
        for i, k in enumerate(group):
            color = f"C{i}"
            for snr, ls in ((250.0, "-"), (50.0, "--")):
                y = [points[n]["sigma"][snr][k] / points[ref]["sigma"][snr][k] for n in ns]
                ax.plot(ns, y, ls, marker="o", color=color,
                        label=f"{TEX[k]} (σ={points[ref]['sigma'][250.0][k]:.3g} at N={ref}, S/N 250)" if snr == 250.0 else None)
        guide = [(n / ref) ** -0.5 for n in ns]
        ax.plot(ns, guide, ":", color="0.5", label="∝ N^-1/2 (guide)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
        lo, hi = ax.get_ylim()
        ticks = [t for t in (0.7, 0.8, 1, 1.5, 2, 3, 4, 6, 8, 12, 16) if lo <= t <= hi]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel("training models N")
        ax.set_ylabel(f"σ(MAP − truth) / σ at N = {ref}")
        ax.set_title(f"{title}: S/N 250 solid, S/N 50 dashed")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    for snr, ls in ((250.0, "-"), (50.0, "--")):
        ax.plot(ns, [points[n]["cov"][snr] for n in ns], ls, marker="o", color="C0", label=f"calibrated, S/N {snr:g}")
        ax.plot(ns, [points[n]["cov_raw"][snr] for n in ns], ls, marker="s", color="C3", label=f"uncalibrated, S/N {snr:g}")
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("training models N")
    ax.set_ylabel("mean over 13 labels of |coverage68 − 0.68|")
    ax.set_title("68 % interval coverage (test split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("Learning curve: reference recipe, nested subsets of the training split, same 161-model test split")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def slopes(points: dict, snr: float = 250.0) -> dict:
    """Per label, the least-squares slope of log sigma against log N (sigma ∝ N^slope) over all points."""
    import numpy as np

    ns = sorted(points)
    x = np.log(ns)
    return {k: float(np.polyfit(x, np.log([points[n]["sigma"][snr][k] for n in ns]), 1)[0]) for k in LABELS}


def table(points: dict, infos: dict) -> str:
    head = ("| N models | σ Teff [K] | σ log g | σ [Fe/H] | σ [Mg/Fe] | σ [Ca/Fe] | mean abs(c68 − 0.68) calibrated / uncalibrated "
            "(S/N 250; S/N 50) | epochs (best) | training wall time |")
    lines = [head, "|" + "---|" * 9]
    for n in sorted(points):
        p, info = points[n], infos.get(n, {})
        s = p["sigma"][250.0]
        wall = info.get("train_wall_s")
        wall = f"{wall / 60:.0f} min" if wall else "–"
        lines.append(f"| {n} | {s['teff']:.1f} | {s['logg']:.3f} | {s['feh']:.3f} | {s['mg_fe']:.3f} | {s['ca_fe']:.3f} | "
                     f"{p['cov'][250.0]:.3f} / {p['cov_raw'][250.0]:.3f}; {p['cov'][50.0]:.3f} / {p['cov_raw'][50.0]:.3f} | "
                     f"{info.get('epochs_run', '–')} ({info.get('best_epoch', '–')}) | {wall} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train, calibrate and evaluate each N, then plot")
    r.add_argument("--noiseless", required=True)
    r.add_argument("--cube", required=True)
    r.add_argument("--extra", required=True, help="cube of other models of the same recipe, for calibrate-intervals")
    r.add_argument("--recipe", default=str(RECIPE))
    r.add_argument("--samples", type=int, default=1024)
    p = sub.add_parser("plot", help="only plot (and print the table) from existing reports")
    for a in (r, p):
        a.add_argument("--dir", required=True, help="where lcN.yaml, lcN/, lcN-report/ are (written by run)")
        a.add_argument("--n", default="100,200,400", help="comma-separated N")
        a.add_argument("--report", action="append", default=[], help="N=REPORT_DIR[:MODEL_DIR]: an extra point (e.g. the full split)")
        a.add_argument("--out", default=str(ROOT / "docs" / "figures" / "learning_curve.png"))
    args = ap.parse_args(argv)
    ns = [int(v) for v in args.n.split(",") if v]
    d = Path(args.dir)
    if args.cmd == "run":
        run(args.noiseless, args.cube, args.extra, d, ns, args.recipe, args.samples)
    points, infos = {}, {}
    for n in ns:
        if (d / f"lc{n}-report" / "summary.json").exists():
            points[n] = read_report(d / f"lc{n}-report")
            infos[n] = train_info(d / f"lc{n}", d / f"lc{n}.time.json")
        else:
            print(f"no report for N={n} in {d}: left out", file=sys.stderr)
    for spec in args.report:
        n, _, rest = spec.partition("=")
        rep, _, model = rest.partition(":")
        points[int(n)] = read_report(rep)
        infos[int(n)] = train_info(model) if model else {}
    if len(points) >= 2:
        plot(points, args.out)
        print(f"wrote {args.out}")
    print(table(points, infos))
    if len(points) >= 2:
        print("slope of log sigma vs log N:", {snr: {k: round(v, 2) for k, v in slopes(points, snr).items()} for snr in (250.0, 50.0)})
    print(json.dumps({n: {"sigma250": points[n]["sigma"][250.0], "sigma50": points[n]["sigma"][50.0],
                          "bias250": points[n]["bias"][250.0], "cov68_250": points[n]["cov68"][250.0]} for n in sorted(points)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
