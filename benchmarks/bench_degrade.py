"""Out-of-core degradation: `gridkit degrade` (lazy Dask pipeline writing Zarr region by region) vs the
straightforward per-spectrum loop (PyAstronomy `instrBroadGaussFast` + `fastRotBroad` + `spectres` with fill,
results collected in memory and written at the end), on the same input, in one run.

The input is a base grid like the shared one (green + red arms with margins at 0.02 A, 59,000 pixels), made of
a few analytic spectra tiled to N models with vbroad drawn from the prior. Each (method, N, repeat) runs in its
own fresh subprocess, which reports its wall time and its peak RSS (`ru_maxrss`): the loop's memory grows with
N (the output cube is held in memory), ours does not (a region of models at a time). Output per model:
n_snr x 25,200 float32 (19 S/N: 1.9 MB), so the cube of N models is N x that.

    .venv/bin/python -m benchmarks.bench_degrade       # sizes 6,24,72 (+384 ours only), 19 S/N, ours x3 / loop x1 per size (~5 min)
    .venv/bin/python -m benchmarks.bench_degrade --sizes 50,200,800 --loop-repeats 3   # out of core at scale (long)

models/s per core divides by the cores the method uses (ours: a thread per core; the loop: one). No GPU is
involved. The machine may be shared: compare the two columns of one run, not runs of different days.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SNR = (10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 45, 50, 80, 100, 130, 180, 250, 1000)
SIZES = (6, 24, 72)
REPEATS = 3
#: the loop costs ~2 s per model (spectres is a Python loop over pixels): one run per size by default
LOOP_REPEATS = 1
#: sizes run with ours only (the loop would take ~2 s x N): the trend of its peak RSS further out
OURS_ONLY = (384,)
N_UNIQUE = 6
REGION = 16


# ------------------------------------------------------------------------------------------- input
def make_input(path: Path, n: int, seed: int = 0) -> None:
    """A base grid of n models: N_UNIQUE analytic spectra tiled, labels from the prior (vbroad varies)."""
    import gridkit
    from gridkit.synth import AnalyticSynthesizer, sample_labels

    syn = AnalyticSynthesizer()
    labels = sample_labels(n, seed=seed)
    unique = np.stack([syn.synthesize({k: float(v[i]) for k, v in labels.items()}) for i in range(min(N_UNIQUE, n))])
    flux = unique[np.arange(n) % unique.shape[0]]
    ds = gridkit.from_arrays(syn.wavelength(), flux, labels, attrs={"generator": "benchmarks.bench_degrade (analytic, tiled)"})
    gridkit.write_grid(ds, path, region_size=REGION)


# ------------------------------------------------------------------------------------------- the two methods
def run_ours(src: str, out: str, snr) -> dict:
    from gridkit.degradation import degrade_store

    t0 = time.perf_counter()
    degrade_store(src, out, "4most-hr", "green,red", list(snr), seed=0, region_size=REGION, progress=False)
    return {"seconds": time.perf_counter() - t0, "cores": os.cpu_count() or 1}


def _single_kernel_rotation(work: np.ndarray, flux: np.ndarray, vbroad: float, eps: float = 0.6) -> np.ndarray:
    """What PyAstronomy's fastRotBroad computes (one Gray kernel at the mean wavelength, on an evenly spaced
    grid), as one np.convolve instead of its per-pixel Python loop (O(n^2))."""
    dv = 299_792.458 * (work[1] - work[0]) / work.mean()  # km/s per pixel
    k = int(vbroad / dv) + 1
    x = np.arange(-k, k + 1) * dv / vbroad
    inside = np.abs(x) < 1
    g = np.where(inside, 2 * (1 - eps) * np.sqrt(np.where(inside, 1 - x**2, 0)) + 0.5 * math.pi * eps * np.where(inside, 1 - x**2, 0), 0)
    g /= g.sum()
    padded = np.concatenate([np.full(k, flux[0]), flux, np.full(k, flux[-1])])
    return np.convolve(padded, g, mode="same")[k:-k]


def run_loop(src: str, out: str, snr, rotation: str = "convolve", limit: int | None = None) -> dict:
    """The straightforward way: spectrum by spectrum, in memory, written at the end. rotation: 'fastRotBroad'
    (PyAstronomy's, a per-pixel Python loop) or 'convolve' (its single kernel applied with np.convolve)."""
    import xarray as xr
    from PyAstronomy import pyasl
    from spectres import spectres

    from gridkit import instruments

    t0 = time.perf_counter()
    base = xr.open_zarr(src, consolidated=False)
    wl = base.wavelength.values
    arms = instruments.FOURMOST_HR.select("green,red")
    r_eff = 1.0 / math.sqrt(1.0 / 20_000**2 - 1.0 / 80_000**2)
    snr = np.asarray(snr, dtype=float)
    cubes = []
    n = base.sizes["model"] if limit is None else min(limit, base.sizes["model"])
    base = base.isel(model=slice(0, n))
    for i in range(n):
        flux = base.flux[i].values.astype(np.float64)
        vbroad = float(base.vbroad.values[i])
        parts = []
        for arm in arms:
            m = (wl > arm.wl_min - 5) & (wl < arm.wl_max + 5)
            w, f = wl[m], flux[m]
            f = pyasl.instrBroadGaussFast(w, f, 80_000, edgeHandling="firstlast", equid=True, maxsig=5.0)
            work = np.arange(w[0] + 0.05, w[-1] - 0.05, 0.025)
            f = spectres(work, w, f, fill=np.nan, verbose=False)
            if vbroad > 0:
                f = pyasl.fastRotBroad(work, f, 0.6, vbroad) if rotation == "fastRotBroad" else _single_kernel_rotation(work, f, vbroad)
            f = pyasl.instrBroadGaussFast(work, f, r_eff, edgeHandling="firstlast", equid=True, maxsig=5.0)
            parts.append(spectres(arm.wavelength(), work, f, fill=np.nan, verbose=False))
        clean = np.concatenate(parts)
        rng = np.random.default_rng([0, i])
        noisy = clean[None, :] + rng.standard_normal((snr.size, clean.size)) * clean[None, :] / (snr[:, None] * math.sqrt(0.05))
        cubes.append(noisy.astype(np.float32))
    cube = xr.Dataset(
        {"flux": (("model", "snr", "wavelength"), np.stack(cubes))},
        coords={"model": base.model.values, "snr": snr, "wavelength": instruments.FOURMOST_HR.wavelength("green,red")},
    )
    for name in ("teff", "logg", "feh", "vbroad"):
        cube[name] = base[name].load()
    cube.to_zarr(out, zarr_format=3, consolidated=False)
    return {"seconds": time.perf_counter() - t0, "cores": 1, "n": n}


METHODS = {
    "ours": run_ours,
    "loop": run_loop,
    "pyasl": lambda src, out, snr: run_loop(src, out, snr, rotation="fastRotBroad", limit=PYASL_MODELS),
}
#: fastRotBroad loops over pixels in Python (O(n^2), ~10 s per arm): the all-PyAstronomy loop runs on this many models
PYASL_MODELS = 1


def _child(method: str, src: str, out: str, snr) -> None:
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res = METHODS[method](src, out, snr)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res["rss_after_imports_mb"] = rss0
    print("RESULT " + json.dumps(res), flush=True)


def measure(method: str, src: Path, out: Path, snr) -> dict:
    """Run one method in a fresh interpreter; its own peak RSS and wall time."""
    shutil.rmtree(out, ignore_errors=True)
    code = ("import gridkit, xarray, dask, zarr, PyAstronomy.pyasl, spectres, sys\n"
            "from benchmarks.bench_degrade import _child\n"
            f"_child({method!r}, {str(src)!r}, {str(out)!r}, {list(snr)!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"{method} on {src} failed:\n{proc.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(line[len("RESULT "):])


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="numbers of models (comma-separated)")
    p.add_argument("--repeats", type=int, default=REPEATS, help="runs of ours per size (median)")
    p.add_argument("--loop-repeats", type=int, default=LOOP_REPEATS, help="runs of the loop per size (median)")
    p.add_argument("--snr", default=",".join(map(str, SNR)), help="S/N values per A (default: the published 19)")
    p.add_argument("--ours-only", default=",".join(map(str, OURS_ONLY)), help="further sizes run with ours only ('' for none)")
    p.add_argument("--no-pyasl", action="store_true", help="skip the all-PyAstronomy loop (fastRotBroad, slow)")
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed at the end)")
    args = p.parse_args(sys.argv[1:] if argv is None and __name__ == "__main__" else argv or [])
    sizes = [int(x) for x in args.sizes.split(",")]
    snr = [float(x) for x in args.snr.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-degrade-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"degrade: base grid 59,000 px (green+red, 0.02 A) -> 4MOST HR green+red, {len(snr)} S/N, "
          f"output {len(snr) * 25_200 * 4 / 1e6:.2f} MB per model; {os.cpu_count()} cores; repeats ours {args.repeats}, loop {args.loop_repeats}", flush=True)
    rows, pyasl = [], None
    try:
        for n in sizes:
            src = work / f"base-{n}.zarr"
            if not src.exists():
                make_input(src, n)
            if pyasl is None and not args.no_pyasl:
                pyasl = measure("pyasl", src, work / "out-pyasl.zarr", snr)
                print(f"  all-PyAstronomy loop (fastRotBroad) on {pyasl['n']} models: {pyasl['seconds']:.1f} s", flush=True)
            got = {"ours": [], "loop": []}
            for r in range(args.repeats):
                got["ours"].append(measure("ours", src, work / "out-ours.zarr", snr))
                if r < args.loop_repeats:
                    got["loop"].append(measure("loop", src, work / "out-loop.zarr", snr))
            row = {"n": n}
            for method, runs in got.items():
                sec = statistics.median(r["seconds"] for r in runs)
                row[method] = {"seconds": sec, "per_core": n / sec / runs[0]["cores"], "cores": runs[0]["cores"],
                               "rss": statistics.median(r["peak_rss_mb"] for r in runs)}
            rows.append(row)
            print(f"  N={n}: ours {row['ours']['seconds']:.1f} s, {row['ours']['rss']:.0f} MB; "
                  f"loop {row['loop']['seconds']:.1f} s, {row['loop']['rss']:.0f} MB", flush=True)
        for n in [int(x) for x in args.ours_only.split(",") if x.strip()]:
            src = work / f"base-{n}.zarr"
            if not src.exists():
                make_input(src, n)
            r = measure("ours", src, work / "out-ours.zarr", snr)
            rows.append({"n": n, "ours": {"seconds": r["seconds"], "per_core": n / r["seconds"] / r["cores"], "cores": r["cores"],
                                          "rss": r["peak_rss_mb"]}, "loop": None})
            print(f"  N={n}: ours {r['seconds']:.1f} s, {r['peak_rss_mb']:.0f} MB (ours only, 1 run)", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    _table(rows, snr, pyasl)


def _table(rows, snr, pyasl=None) -> None:
    print()
    print("ours = gridkit degrade_store (dask, Zarr regions of 16 models, a thread per core); loop = per spectrum, PyAstronomy "
          "instrBroadGaussFast (maxsig=5) + fastRotBroad's kernel via np.convolve + spectres(fill=NaN), cube in memory, one to_zarr")
    print(f"{'models':>6} {'cube MB':>8} | {'ours s':>7} {'mod/s/core':>10} {'peak RSS MB':>11} | {'loop s':>7} {'mod/s/core':>10} "
          f"{'peak RSS MB':>11} | {'speed ratio':>11} {'RSS ratio':>9}")
    for r in rows:
        o, b = r["ours"], r["loop"]
        if b is None:
            print(f"{r['n']:>6} {r['n'] * len(snr) * 25_200 * 4 / 1e6:>8.0f} | {o['seconds']:>7.1f} {o['per_core']:>10.2f} {o['rss']:>11.0f} | "
                  f"{'(not run: ~2 s per model)':>31} |")
            continue
        print(f"{r['n']:>6} {r['n'] * len(snr) * 25_200 * 4 / 1e6:>8.0f} | {o['seconds']:>7.1f} {o['per_core']:>10.2f} {o['rss']:>11.0f} | "
              f"{b['seconds']:>7.1f} {b['per_core']:>10.2f} {b['rss']:>11.0f} | {o['per_core'] / b['per_core']:>10.2f}x {b['rss'] / o['rss']:>8.2f}x")
    if pyasl is not None:
        per_core = pyasl["n"] / pyasl["seconds"]
        print(f"{pyasl['n']:>6} {'':>8} | {'':>7} {'':>10} {'':>11} | {pyasl['seconds']:>7.1f} {per_core:>10.3f} {pyasl['peak_rss_mb']:>11.0f} | "
              f"{rows[0]['ours']['per_core'] / per_core:>10.1f}x {'':>9}  <- loop with PyAstronomy's fastRotBroad itself (vs ours at {rows[0]['n']})")
    both = [r for r in rows if r["loop"] is not None]
    if len(both) > 1:
        first, last = both[0], both[-1]
        print(f"peak RSS from {first['n']} to {last['n']} models: ours x{last['ours']['rss'] / first['ours']['rss']:.2f}, "
              f"loop x{last['loop']['rss'] / first['loop']['rss']:.2f}; ours from {first['n']} to {rows[-1]['n']}: "
              f"x{rows[-1]['ours']['rss'] / first['ours']['rss']:.2f} (ours holds at most threads x 16 models; speed ratio = "
              f"ours / loop per core, RSS ratio = loop / ours)")


if __name__ == "__main__":
    main()
