"""Survey inference throughput: stars/s of `cinn.survey.infer` on a LocalCluster (1 and 2 spawned workers x 1
thread) next to the straightforward alternative, one process calling `Posterior.summarize` over the whole survey,
with the same model, stars and samples, in one run; and the cost of resuming.

Setup (built in a temporary folder, ~30 s): an analytic grid of 800 models (5160-5200 A, 0.1 A), noise at
S/N 250, a tiny cINN (the survey tests' configuration), a mock survey of N stars (all models), chunks of 100 stars. Timings exclude
cluster start-up; each worker loads the model once, on its first task (included in the first repeat).
No GPU on this machine: the GPU path (workers with `--resources GPU=1`) is not timed here.

    .venv/bin/python -m benchmarks survey          # or: .venv/bin/python -m benchmarks.bench_survey [N] [SAMPLES]
"""
from __future__ import annotations

import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_DEFAULT = 800
SAMPLES_DEFAULT = 1024
REPEATS = 3
CHUNK = 100
PUBLISHED_PER_DAY = 4e6 / 0.5  # "4 million spectra in under half a day on one GPU"

TINY = dict(n_blocks=2, subnet_width=32, subnet_layers=3, feature_layers=[64], n_features=16, batch_size=128,
            batches_per_epoch=6, epochs=2, num_workers=0, shuffle_buffer=512, val_samples=256, lr=2e-3, betas=[0.9, 0.9],
            patience=20, device="cpu")


def _setup(root: Path, n: int) -> tuple[Path, Path]:
    import cinn
    from cinn.survey import mock_survey
    from gridkit.degradation import add_noise
    from gridkit.grid import open_grid, write_grid
    from gridkit.synth import AnalyticSynthesizer, sample_labels, synthesize

    synthesize(sample_labels(max(n, 800), seed=1), AnalyticSynthesizer(wavelength_range=((5160.0, 5200.0),), step=0.1), root / "base.zarr",
               progress=False, models_per_region=100)
    write_grid(add_noise(open_grid(root / "base.zarr"), snr=[50.0, 250.0], seed=0), root / "cube.zarr")
    cinn.train(root / "cube.zarr", root / "model", config=TINY, progress=False)
    mock_survey(root / "cube.zarr", root / "survey.zarr", snr=250, models=np.arange(n), chunk=CHUNK)
    return root / "model", root / "survey.zarr"


def _loop(model_dir, survey_path, samples: int) -> float:
    """The straightforward way: one process, the whole survey in memory, one summarize call."""
    import torch
    import xarray as xr

    import cinn

    torch.set_num_threads(1)
    t = time.perf_counter()
    post = cinn.load(model_dir)
    ds = xr.open_zarr(survey_path, consolidated=False)
    post.summarize(ds.flux.values, ds.snr.values, n=samples, seed=0)
    return time.perf_counter() - t


def _infer(model_dir, survey_path, out: Path, samples: int, client) -> float:
    from cinn.survey import infer

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    infer(model_dir, survey_path, out, samples=samples, chunk=CHUNK, client=client, progress=False)
    return time.perf_counter() - t


def _median(xs):
    return statistics.median(xs)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = [a for a in argv if a not in ("survey",)]  # `python -m benchmarks survey` passes the name through
    n = int(args[0]) if args else N_DEFAULT
    samples = int(args[1]) if len(args) > 1 else SAMPLES_DEFAULT
    from gridkit.cluster import dask_client
    from gridkit.store import open_region_store

    root = Path(tempfile.mkdtemp(prefix="bench-survey-"))
    try:
        t = time.perf_counter()
        model_dir, survey_path = _setup(root, n)
        print(f"setup (grid, tiny cINN, mock survey of {n} stars): {time.perf_counter() - t:.1f} s; {samples} samples per star, "
              f"chunks of {CHUNK}, {REPEATS} repeats", flush=True)
        rows = []
        loop = [_loop(model_dir, survey_path, samples) for _ in range(REPEATS)]
        rows.append(("single process, Posterior.summarize over the survey", loop))
        print(f"loop: {', '.join(f'{x:.2f}' for x in loop)} s", flush=True)
        for workers in (1, 2):
            with dask_client(n_workers=workers, threads_per_worker=1, quiet=True) as client:
                times = [_infer(model_dir, survey_path, root / f"cat{workers}.zarr", samples, client) for _ in range(REPEATS)]
                print(f"infer, {workers} worker(s): {', '.join(f'{x:.2f}' for x in times)} s", flush=True)
                rows.append((f"gridkit infer, LocalCluster {workers} worker(s) x 1 thread", times))
                if workers == 2:  # resume: a finished job, and a job killed half-way (half the completion record gone)
                    out = root / "cat2.zarr"
                    from cinn.survey import infer

                    t = time.perf_counter()
                    infer(model_dir, survey_path, out, samples=samples, chunk=CHUNK, client=client, progress=False)
                    rerun_done = time.perf_counter() - t
                    store = open_region_store(out)
                    half = sorted(store.done())[::2]
                    for i in half:
                        (out / "_gridkit" / "done" / f"{i:08d}.json").unlink()
                    t = time.perf_counter()
                    infer(model_dir, survey_path, out, samples=samples, chunk=CHUNK, client=client, progress=False)
                    resumed = time.perf_counter() - t
                    resumed_fraction = len(half) / len(store.regions)
        base = _median(loop)
        print(f"\n{'what':58s} {'median s':>9s} {'stars/s':>8s} {'vs loop':>8s} {'stars/day':>10s}")
        for what, times in rows:
            m = _median(times)
            print(f"{what:58s} {m:9.2f} {n / m:8.1f} {base / m:8.2f} {86400 * n / m:10.3g}")
        print(f"\nresume: rerun of a finished catalog {rerun_done:.2f} s (nothing recomputed); after losing "
              f"{resumed_fraction:.0%} of the chunks {resumed:.2f} s = {resumed / (_median(rows[2][1]) * resumed_fraction):.2f} x "
              f"the fresh run's time for that many chunks")
        print(f"published: 4 million spectra in under half a day on one GPU = {PUBLISHED_PER_DAY:.3g} stars/day "
              f"({PUBLISHED_PER_DAY / 86400:.0f} stars/s); this machine: 2 shared CPU cores, tiny network, no GPU")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process: {own:.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
