"""Turbospectrum backend throughput: models per hour, serial (one core) vs a LocalCluster of 2 spawned workers
through `gridkit.synth.synthesize`, and the cost split of one model (atmosphere, babsma, bsyn, writing).

Setup: the shared grid's production configuration (green + red arms, 0.02 A, Gaia-ESO list + Hlinedata, MARCS
interpolation), N models drawn from the FGK prior within the MARCS coverage. Run from the repository root:

    GRIDKIT_TURBOSPECTRUM=$PWD/.cache/turbospectrum .venv/bin/python -m benchmarks.bench_turbospectrum [N]

Needs `make turbospectrum`. A few minutes with N = 4.
"""
from __future__ import annotations

import logging
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_DEFAULT = 4
RANGES = ("green", "red")
STEP = 0.02


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


def main(n: int | None = None) -> None:
    import dask
    from distributed import Client, LocalCluster

    from gridkit.errors import BackendError
    from gridkit.synth import synthesize
    from gridkit.synth.turbospectrum import TurbospectrumSynthesizer

    n = n or (int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else N_DEFAULT)
    syn = TurbospectrumSynthesizer(RANGES, STEP)
    try:
        syn.check()
    except BackendError as exc:
        print(f"skipped: {exc}")
        return
    labels = _labels(n, syn)
    n_wave = syn.wavelength().size

    # serial, one core: the straightforward loop, with the per-model cost split
    splits = []
    t0 = time.perf_counter()
    for i in range(n):
        _, timing = syn.synthesize_timed({k: float(v[i]) for k, v in labels.items()})
        splits.append(timing)
    serial = time.perf_counter() - t0
    write = _write_cost(n_wave)

    # LocalCluster of 2 spawned workers through the store driver
    out = Path(tempfile.mkdtemp(prefix="bench-ts-")) / "grid.zarr"
    try:
        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn", "distributed.worker.daemon": False}):
            with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
                client.submit(lambda: None).result()  # workers up before timing
                t0 = time.perf_counter()
                report = synthesize(labels, syn, out, models_per_region=1, client=client, progress=False)
                parallel = time.perf_counter() - t0
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)

    med = {k: statistics.median(s[k] for s in splits) for k in ("atmosphere", "babsma", "bsyn", "parse")}
    per_model = sum(med.values()) + write
    own, children = _rss_mb()
    arms = "+".join(RANGES)
    print(f"Turbospectrum backend, {arms} arms at {STEP} A ({n_wave} pixels), {n} models from the FGK prior, {report.n_ok} ok")
    print(f"{'what':<44} {'median':>10} {'baseline':>12} {'ratio':>7} {'peak RSS':>16}")
    rows = [
        ("atmosphere (interpol_modeles) s/model", med["atmosphere"], None),
        ("babsma s/model", med["babsma"], None),
        ("bsyn s/model (both arms)", med["bsyn"], None),
        ("parse output s/model", med["parse"], None),
        ("writing (store region) s/model", write, None),
    ]
    for what, value, _ in rows:
        print(f"{what:<44} {value:>10.3f} {'':>12} {'':>7} {'':>16}  ({100 * value / per_model:4.1f} %)")
    mph_serial = 3600.0 * n / serial
    mph_parallel = 3600.0 * n / parallel
    print(f"{'models/hour, LocalCluster 2 workers':<44} {mph_parallel:>10.0f} {mph_serial:>12.0f} {mph_parallel / mph_serial:>7.2f} "
          f"{f'{own:.0f}+{children:.0f} MB':>16}")
    print("baseline: the same models in a serial loop on one core; peak RSS: this process + largest child program")


if __name__ == "__main__":
    main()
