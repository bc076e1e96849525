"""Figures and a table of a `gridkit tune` study (docs/science.md, "Tuning study"): the validation NLL of every trial
per epoch (pruned trials end early), and each trial's best validation NLL against each searched parameter.
Run: `python -m benchmarks.tuning_figures TUNE_DIR --out docs/figures/tuning.png`."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read(tune_dir: Path) -> tuple[list[dict], list[str]]:
    with open(tune_dir / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    params = [k for k in rows[0] if k not in ("number", "state", "value", "epochs_reported")] if rows else []
    logs = {}
    for r in rows:
        log = tune_dir / "trials" / f"{int(r['number']):04d}" / "log.csv"  # cinn.tune's trial directories
        if log.exists():
            with open(log, newline="") as fh:
                logs[r["number"]] = [e for e in csv.DictReader(fh) if int(e["epoch"]) > 0]
    # the column the study ranked by (cinn.tune.objective_column): in physical label units where every log has it
    column = "val_nll_physical" if all(e.get("val_nll_physical") not in (None, "") for log in logs.values() for e in log) else "val_nll"
    for r in rows:
        r["curve"] = [(int(e["epoch"]), float(e[column])) for e in logs.get(r["number"], []) if e[column] not in ("", "nan")]
        # the best validation NLL of the trial's epochs (Optuna's value of a pruned trial is its last report)
        r["best"] = min(v for _, v in r["curve"]) if r["curve"] else (float(r["value"]) if r["value"] not in ("", None) else None)
    return rows, params


def plot(rows: list[dict], params: list[str], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["best"] is not None]
    ncol = 4
    nrow = 1 + -(-len(params) // ncol)
    fig = plt.figure(figsize=(3.3 * ncol, 3.0 * nrow))
    ax = fig.add_subplot(nrow, 1, 1)
    axes = [fig.add_subplot(nrow, ncol, ncol + i + 1) for i in range(len(params))]
    best = min(done, key=lambda r: r["best"]) if done else None
    for r in rows:
        if r["curve"]:
            e, v = zip(*r["curve"])
            ax.plot(e, v, lw=2 if r is best else 0.8, color="C3" if r is best else ("C0" if r["state"] == "COMPLETE" else "0.6"))
    ax.set(xlabel="epoch", ylabel="validation NLL", title="trials (red: best, grey: pruned)")
    for ax, p in zip(axes, params):
        xs = [r[p] for r in done]
        try:
            xs = [float(x) for x in xs]
        except ValueError:
            pass
        ax.scatter(xs, [r["best"] for r in done], c=["C0" if r["state"] == "COMPLETE" else "0.6" for r in done], s=18)
        if p in ("lr", "weight_decay"):
            ax.set_xscale("log")
        ax.set(xlabel=p, title=f"best val NLL vs {p}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def table(rows: list[dict], params: list[str], top: int = 8) -> str:
    done = sorted((r for r in rows if r["best"] is not None), key=lambda r: r["best"])
    head = "| trial | state | epochs | best val NLL | " + " | ".join(params) + " |"
    lines = [head, "|" + "---|" * (4 + len(params))]
    for r in done[:top]:
        vals = [f"{float(r[p]):.3g}" if p in ("lr", "weight_decay") else r[p] for p in params]
        lines.append(f"| {r['number']} | {r['state'].lower()} | {r['epochs_reported']} | {r['best']:.3f} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tune_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/tuning.png"))
    a = ap.parse_args(argv)
    rows, params = read(a.tune_dir)
    print(f"{len(rows)} trials ({sum(r['state'] == 'COMPLETE' for r in rows)} complete, {sum(r['state'] == 'PRUNED' for r in rows)} pruned)")
    print(table(rows, params))
    print(f"figure: {plot(rows, params, a.out)}")


if __name__ == "__main__":
    main()
