"""Turbospectrum backend throughput: models per hour, serial (one core) vs a LocalCluster of 2 spawned workers
through `gridkit.synth.synthesize`, and the cost split of one model (atmosphere, babsma, bsyn, writing).

Setup: N models drawn from the FGK prior within the MARCS coverage, Gaia-ESO list + Hlinedata, MARCS
interpolation. Default: a 50 A window (6680-6730 A, Li 6708, Ca I 6717) at 0.01 A, a few minutes with N = 4;
`--production`: the shared grid's configuration (green + red arms at 0.02 A, ~15 s per model and core).
Run from the repository root:

    .venv/bin/python -m benchmarks.bench_turbospectrum [N] [--production]

Needs `make turbospectrum` (prints "skipped" without it). CPU only (no GPU is involved).
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_DEFAULT = 4
WINDOW = ([(6680.0, 6730.0)], 0.01)
PRODUCTION = (["green", "red"], 0.02)


def _labels(n: int, syn) -> dict[str, np.ndarray]:
    from gridkit.synth import sample_labels

    draws = sample_labels(8 * n, seed=2026)
    grid = syn.marcs_grid()
    keep = [i for i in range(8 * n) if grid.covers(draws["teff"][i], draws["logg"][i], draws["feh"][i])][:n]
    return {k: np.asarray(v)[keep] for k, v in draws.items()}


def _rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return own, children


def _write_cost(n_wave: int, repeats: int = 8) -> float:
    """Median seconds to write one model's region (float32 flux + status) through gridkit.store."""
    import dask.array as da
    import xarray as xr

    from gridkit import store

    folder = Path(tempfile.mkdtemp(prefix="bench-ts-write-"))
    try:
        template = xr.Dataset(
            {"flux": (("model", "wavelength"), da.zeros((repeats, n_wave), dtype=np.float32, chunks=(1, n_wave))),
             "status": (("model",), da.zeros(repeats, dtype=np.int8, chunks=1))},
            coords={"model": np.arange(repeats), "wavelength": np.arange(n_wave, dtype=float)},
        )
        rs, _ = store.create(folder / "w.zarr", template, dim="model", region_size=1, fingerprint="bench")
        times = []
        rng = np.random.default_rng(0)
        for i in range(repeats):
            part = xr.Dataset({"flux": (("model", "wavelength"), rng.random((1, n_wave), dtype=np.float32)),
                               "status": (("model",), np.zeros(1, np.int8))}, coords={"model": [i]})
            t0 = time.perf_counter()
            rs.write_region(i, part)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cpu_seconds() -> float:
    """CPU seconds (user + sys) of this process and its finished child programs (babsma, bsyn, interpol_modeles)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _warm_worker(syn) -> None:
    """What a worker does once before its first model: import the driver and store code, check the programs,
    load the MARCS index, describe and trim the line lists (cached on disk)."""
    import gridkit.store  # noqa: F401
    import gridkit.synth.api  # noqa: F401
    from gridkit.synth import ts_linelist

    syn.check()
    for a, b in syn.wavelength_ranges:
        for p in syn._linelist_paths():
            if not p.endswith("Hlinedata"):
                ts_linelist.trimmed(p, a, b)


def main(n: int | None = None) -> None:
    import dask
    from distributed import Client, LocalCluster

    from gridkit.errors import BackendError
    from gridkit.synth import synthesize
    from gridkit.synth.turbospectrum import TurbospectrumSynthesizer

    args = [a for a in sys.argv[1:] if a.isdigit()]
    n = n or (int(args[0]) if args else N_DEFAULT)
    ranges, step = PRODUCTION if "--production" in sys.argv[1:] else WINDOW
    syn = TurbospectrumSynthesizer(ranges, step)
    try:
        syn.check()
    except BackendError as exc:
        print(f"skipped: {exc}")
        return
    labels = _labels(n, syn)
    n_wave = syn.wavelength().size

    # serial, one core: the straightforward loop, with the per-model cost split
    splits = []
    t0, c0 = time.perf_counter(), _cpu_seconds()
    for i in range(n):
        _, timing = syn.synthesize_timed({k: float(v[i]) for k, v in labels.items()})
        splits.append(timing)
    serial, serial_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    write = _write_cost(n_wave)

    # LocalCluster of 2 spawned workers through the store driver
    out = Path(tempfile.mkdtemp(prefix="bench-ts-")) / "grid.zarr"
    try:
        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn", "distributed.worker.daemon": False}):
            with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
                t0 = time.perf_counter()
                client.run(_warm_worker, syn)  # per-worker one-time setup (imports, MARCS index, line-list checks)
                setup = time.perf_counter() - t0
                t0, c0, w0 = time.perf_counter(), _cpu_seconds(), sum(client.run(_cpu_seconds).values())
                report = synthesize(labels, syn, out, models_per_region=1, client=client, progress=False)
                parallel = time.perf_counter() - t0
                parallel_cpu = _cpu_seconds() - c0 + sum(client.run(_cpu_seconds).values()) - w0
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)

    med = {k: statistics.median(s[k] for s in splits) for k in ("atmosphere", "babsma", "bsyn", "parse")}
    per_model = sum(med.values()) + write
    own, children = _rss_mb()
    what = ", ".join(r if isinstance(r, str) else f"{r[0]:g}-{r[1]:g} A" for r in ranges)
    print(f"Turbospectrum backend, {what} at {step} A ({n_wave} pixels), {n} models from the FGK prior, {report.n_ok} ok")
    print(f"{'what':<44} {'median':>10} {'baseline':>12} {'ratio':>7} {'peak RSS':>16}")
    rows = [
        ("atmosphere (interpol_modeles) s/model", med["atmosphere"], None),
        ("babsma s/model", med["babsma"], None),
        ("bsyn s/model", med["bsyn"], None),
        ("parse output s/model", med["parse"], None),
        ("writing (store region) s/model", write, None),
    ]
    for what, value, _ in rows:
        print(f"{what:<44} {value:>10.3f} {'':>12} {'':>7} {'':>16}  ({100 * value / per_model:4.1f} %)")
    mph_serial = 3600.0 * n / serial
    mph_parallel = 3600.0 * n / parallel
    print(f"{'models/hour, LocalCluster 2 workers':<44} {mph_parallel:>10.0f} {mph_serial:>12.0f} {mph_parallel / mph_serial:>7.2f} "
          f"{f'{own:.0f}+{children:.0f} MB':>16}")
    print(f"{'CPU s/model (driver + workers + programs)':<44} {parallel_cpu / n:>10.2f} {serial_cpu / n:>12.2f} {parallel_cpu / serial_cpu:>7.2f}")
    print(f"{'models/hour on 2 idle cores, from CPU time':<44} {2 * 3600.0 * n / parallel_cpu:>10.0f} {3600.0 * n / serial_cpu:>12.0f} "
          f"{2 * serial_cpu / parallel_cpu:>7.2f}")
    print(f"{'LocalCluster worker setup (once per worker), s':<44} {setup:>10.2f}")
    print(f"baseline: the same models in a serial loop in this process (one core); both wall clock, workers warmed up "
          f"first; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; peak RSS: this process + largest child program")


if __name__ == "__main__":
    main()
