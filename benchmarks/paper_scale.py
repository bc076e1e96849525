"""The paper-scale path on one modest machine (issue 14): the published training set's size, 29,548 models, through
the CLI as a user runs it, one step per child process, with wall time, peak memory and disk of each step.

    .venv/bin/python -m benchmarks.paper_scale run --root /scratch/paper [--models 29548 --cube-minutes 20]
    .venv/bin/python -m benchmarks.paper_scale table --root /scratch/paper      # the Markdown table of a run

Steps (each a `gridkit` command; `--steps` picks some; a step already recorded in ROOT/paper_scale.json is skipped
unless `--redo`, and each command itself resumes where it stopped):

1. `synth`: the noiseless base grid, analytic backend, the default prior, green + red at 0.02 A (~65,000 pixels).
2. `noiseless`: `degrade --no-noise` to the 4MOST HR pixels (green + red, R = 20000): flux(model, wavelength).
3. `train`: one epoch of the published configuration (128 batches of 1024, 16 coupling blocks) from the noiseless
   grid, noise drawn on the fly (the `dynamic` loader); the published 120 epochs cost 120 times this.
4. `cube`: the stored 19-S/N cube (`degrade`, float32, 25,200 pixels x 19 S/N per model: 1.9 MB per model, 56 GB
   for all). It runs for at most `--cube-minutes` and is then stopped (the store resumes later); the models written,
   the disk they take and the rate give the full cube's time and disk by linear extrapolation (the writer keeps one
   region per thread in memory, so neither its rate nor its memory depends on the number of models).

Memory: the peak of the summed PSS of the command and all its descendants (Dask workers, loader workers; shared pages
such as the batches torch passes through shared memory split among the processes that map them) and of their summed
RSS (which counts shared pages once per process), sampled every 0.5 s, and wait4's ru_maxrss (the largest single
process). Disk: the bytes the output's files occupy.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

STEPS = ("synth", "noiseless", "train", "cube")
PUBLISHED_MODELS = 29_548


def commands(root: Path, models: int, chunk: int, workers: int) -> dict[str, list[str]]:
    gk = str(Path(sys.executable).parent / "gridkit")  # this environment's console script
    cluster = ["--workers", str(workers)]
    return {
        "synth": [gk, "synth", "--backend", "analytic", "--n-models", str(models), "--seed", "0", "--out", str(root / "base.zarr"),
                  "--chunk", str(chunk), *cluster],
        "noiseless": [gk, "degrade", str(root / "base.zarr"), "--no-noise", "--out", str(root / "noiseless.zarr"),
                      "--chunk", str(chunk), *cluster],
        "train": [gk, "train", str(root / "noiseless.zarr"), "--out", str(root / "model"), "--epochs", "1", "--device", "cpu"],
        "cube": [gk, "degrade", str(root / "base.zarr"), "--out", str(root / "cube.zarr"), "--chunk", str(chunk), *cluster],
    }


OUTPUTS = {"synth": "base.zarr", "noiseless": "noiseless.zarr", "train": "model", "cube": "cube.zarr"}


def disk(path: Path) -> tuple[int, int]:
    """(bytes the files occupy on disk, number of files) under path."""
    size = files = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(folder, name)).st_blocks * 512
                files += 1
            except FileNotFoundError:
                pass
    return size, files


def run_measured(cmd: list[str], log: Path, budget_s: float | None = None) -> dict:
    """Run cmd (stdout/stderr to log); its wall time, the peak summed RSS and PSS of its process tree, wait4's largest
    process, the mean load average, the exit status; stopped (SIGINT, then SIGTERM) after budget_s if given."""
    import psutil

    t0 = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    top, peak, peak_pss, loads, stopped, t_stop = psutil.Process(proc.pid), 0, 0, [], False, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaps it: wait4's rusage covers its waited-for children
        if pid:
            break
        rss = pss = 0
        try:
            tree = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            try:
                full = p.memory_full_info()  # pss: shared pages (torch's shared-memory batches) split among their users
                rss, pss = rss + full.rss, pss + full.pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        peak, peak_pss = max(peak, rss), max(peak_pss, pss)
        loads.append(os.getloadavg()[0])
        now = time.perf_counter()
        if budget_s is not None and not stopped and now - t0 > budget_s:
            stopped, t_stop = True, now
            os.killpg(proc.pid, signal.SIGINT)  # the CLI stops its cluster; finished regions stay recorded
        elif stopped and now - t_stop > 120:
            os.killpg(proc.pid, signal.SIGTERM)
            t_stop = float("inf")
        time.sleep(0.5)
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    return {"wall_s": round(time.perf_counter() - t0, 1), "peak_rss_tree_mb": round(peak / 2**20), "peak_pss_tree_mb": round(peak_pss / 2**20),
            "max_process_rss_mb": round(usage.ru_maxrss / 1024), "rc": rc, "stopped_at_budget": stopped,
            "load_average_mean": round(sum(loads) / max(len(loads), 1), 2), "command": " ".join(cmd[1:])}


def _models_written(store: Path) -> int:
    from gridkit.errors import StoreError
    from gridkit.store import open_region_store

    try:
        rs = open_region_store(store)
    except StoreError:  # stopped before the store was created
        return 0
    return sum(rs.regions[i].stop - rs.regions[i].start for i in rs.done())


def run(root: Path, models: int, chunk: int, workers: int, cube_minutes: float, steps, redo: bool) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    record_path = root / "paper_scale.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record.setdefault("machine", {"cores": os.cpu_count(), "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)})
    record["models"] = models
    cmds = commands(root, models, chunk, workers)
    for step in steps:
        if step in record.get("steps", {}) and not redo:
            print(f"{step}: recorded already (--redo to run again)")
            continue
        print(f"{step}: {' '.join(cmds[step][1:])}", flush=True)
        if redo and (root / OUTPUTS[step]).exists():  # this benchmark's own output of an earlier run: measured afresh, not resumed
            print(f"  --redo: removing the earlier {root / OUTPUTS[step]}", flush=True)
            shutil.rmtree(root / OUTPUTS[step])
        m = run_measured(cmds[step], root / f"{step}.log", cube_minutes * 60 if step == "cube" else None)
        out = root / OUTPUTS[step]
        m["disk_bytes"], m["files"] = disk(out)
        if step == "cube":
            done = _models_written(out)
            m["models_written"] = done
            if done:
                m["extrapolated_full"] = {"wall_s": round(m["wall_s"] * models / done), "disk_bytes": round(m["disk_bytes"] * models / done)}
        record.setdefault("steps", {})[step] = m
        record_path.write_text(json.dumps(record, indent=2))
        print(f"  {m}", flush=True)
        if m["rc"] != 0 and not m["stopped_at_budget"]:
            raise SystemExit(f"{step} failed (exit {m['rc']}); see {root / (step + '.log')}")
    return record


def table(record: dict) -> str:
    rows = ["| step | wall | peak memory, all processes: PSS / RSS (largest process) | disk (files) | load average |", "|---|---|---|---|---|"]
    for step, m in record.get("steps", {}).items():
        wall = f"{m['wall_s'] / 60:.1f} min"
        if m.get("stopped_at_budget"):
            full = m.get("extrapolated_full", {})
            wall += f" for {m['models_written']:,} models (all {record['models']:,}: {full.get('wall_s', 0) / 60:.0f} min extrapolated)"
        size = f"{m['disk_bytes'] / 1e9:.2f} GB ({m['files']:,})"
        if m.get("stopped_at_budget") and m.get("extrapolated_full"):
            size += f"; all: {m['extrapolated_full']['disk_bytes'] / 1e9:.0f} GB"
        pss = f"{m['peak_pss_tree_mb']:,}" if "peak_pss_tree_mb" in m else "-"
        rows.append(f"| {step} | {wall} | {pss} / {m['peak_rss_tree_mb']:,} MB ({m['max_process_rss_mb']:,} MB) | {size} | {m['load_average_mean']} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("run", "table"))
    ap.add_argument("--root", type=Path, required=True, help="folder of the stores (needs ~16 GB plus the cube's part)")
    ap.add_argument("--models", type=int, default=PUBLISHED_MODELS)
    ap.add_argument("--chunk", type=int, default=32, help="models per task and Zarr chunk (default 32)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster workers of synth and degrade (default 2)")
    ap.add_argument("--cube-minutes", type=float, default=20.0, help="stop the 19-S/N cube after this long (default 20)")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    ap.add_argument("--redo", action="store_true", help="run recorded steps again (their earlier outputs under --root are removed first)")
    a = ap.parse_args(argv)
    if a.action == "table":
        print(table(json.loads((a.root / "paper_scale.json").read_text())))
        return
    steps = [s for s in a.steps.split(",") if s]
    if unknown := set(steps) - set(STEPS):
        ap.error(f"unknown step(s) {sorted(unknown)}; choose from {', '.join(STEPS)}")
    print(table(run(a.root, a.models, a.chunk, a.workers, a.cube_minutes, steps, a.redo)))


if __name__ == "__main__":
    main()
