"""Survey inference throughput: stars/s of `cinn.survey.infer` on a LocalCluster (1 and 2 spawned workers x 1
thread) next to the straightforward alternative, one process calling `Posterior.summarize` over the whole survey,
with the same model, stars and samples, in one run; and the cost of resuming.

Setup (built in a temporary folder, ~30 s): an analytic grid of 800 models (5160-5200 A, 0.1 A), noise at
S/N 250, a tiny cINN (the survey tests' configuration), a mock survey of N stars (all models), chunks of 100 stars. Timings exclude
cluster start-up; each worker loads the model once, on its first task (included in the first repeat).
No GPU on this machine: the GPU path (workers with `--resources GPU=1`) is not timed here.

    .venv/bin/python -m benchmarks survey          # or: .venv/bin/python -m benchmarks.bench_survey [N] [SAMPLES]

Two more modes (figures in docs/survey.md, Performance):

    .venv/bin/python -m benchmarks survey --published [--stars 64 --samples 4096 --chunk 8 --repeats 1]

the published-size network with random weights (25200 pixels, as bench_inference builds it): first the per-chunk cost
of a task outside the network (open the survey, read the rows, write the region with xarray as before and with
`cinn.survey.CatalogStore` now), then one process vs `infer` on 1 and 2 workers with each writer, interleaved.

    .venv/bin/python -m benchmarks survey --tiny-network [--stars 100000 --samples 64 --workers 2 --chunk 1024]

a large mock survey end to end through the CLI: the tiny network, a noiseless grid of N spectra (the 800 analytic
models tiled), `gridkit mock-survey --snr 250` then `gridkit infer --workers W` as child processes; wall time, peak
RSS (wait4: the command and its waited-for children, Dask workers included) and the files of each store.
"""
from __future__ import annotations

import itertools
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


def _options(args) -> dict:
    """--stars N --samples N --chunk N --repeats N (integers)."""
    out = {}
    for flag, value in itertools.pairwise(args):
        if flag.startswith("--") and flag[2:] in ("stars", "samples", "chunk", "repeats", "workers"):
            out[flag[2:]] = int(value)
    return out


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = [a for a in argv if a not in ("survey",)]  # `python -m benchmarks survey` passes the name through
    if "--published" in args:
        opts = _options(args)
        return published(opts.get("stars", 64), opts.get("samples", 4096), opts.get("chunk", 8), opts.get("repeats", 1))
    if "--tiny-network" in args:
        opts = _options(args)
        return end_to_end(opts.get("stars", 100_000), opts.get("samples", 64), opts.get("workers", 2), opts.get("chunk", 1024))
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


# -- published-size network: scaling table and per-chunk overhead --------------------------------------------------
PUBLISHED_PIXELS = 25200


def published_loader(model_dir):
    """Loader of `infer` for the benchmark: the published-size network with random weights (seeded: every worker
    builds the same one), on a 25200-pixel grid, as benchmarks/bench_inference.py builds it."""
    import torch

    from benchmarks.bench_inference import _posterior

    torch.manual_seed(0)
    post, _ = _posterior(PUBLISHED_PIXELS)
    post.model_dir = Path(model_dir)
    return post


def _published_survey(root: Path, n: int, chunk: int) -> tuple[Path, Path]:
    """An empty model dir (the loader builds the network) and a survey of n random spectra on its grid."""
    import xarray as xr

    from gridkit import store as _store
    from gridkit.schema import STAR, WAVELENGTH

    model_dir = root / "published-model"
    model_dir.mkdir()
    rng = np.random.default_rng(0)
    wave = np.linspace(5000.0, 6800.0, PUBLISHED_PIXELS)
    ds = xr.Dataset({"flux": ((STAR, WAVELENGTH), (1.0 + 0.1 * rng.standard_normal((n, PUBLISHED_PIXELS))).astype(np.float32)),
                     "snr": ((STAR,), np.exp(rng.uniform(np.log(10), np.log(1000), n))),
                     "star_id": ((STAR,), np.array([f"bench-{i}" for i in range(n)], dtype=object))},
                    coords={STAR: np.arange(n), WAVELENGTH: wave})
    ds["flux"] = ds["flux"].chunk({STAR: chunk})
    _store.write_dataset(ds, root / "published-survey.zarr", dim=STAR, region_size=chunk, progress=False,
                         fingerprint_parts=("bench-survey", n, chunk))
    return model_dir, root / "published-survey.zarr"


def _published_loop(model_dir, survey_path, samples: int) -> float:
    """One process: load the network, read the survey, one `Posterior.summarize` over every star (1 torch thread)."""
    import torch
    import xarray as xr

    torch.set_num_threads(1)
    t = time.perf_counter()
    post = published_loader(model_dir)
    post.warn_extrapolation = False
    ds = xr.open_zarr(survey_path, consolidated=False)
    post.summarize(ds.flux.values, ds.snr.values, n=samples, seed=0)
    return time.perf_counter() - t


def _published_infer(model_dir, survey_path, out: Path, samples: int, chunk: int, client, writer: str = "direct") -> float:
    """One `infer` run; writer 'xarray': regions written as before the overhead work (xarray's region write through
    `RegionStore.write_region`, reopening the catalog per chunk), 'direct': `cinn.survey.CatalogStore` (now)."""
    from cinn import survey

    shutil.rmtree(out, ignore_errors=True)
    original = survey.CatalogStore.__dict__["of"]
    if writer == "xarray":  # the plain RegionStore travels to the workers
        survey.CatalogStore.of = classmethod(lambda cls, store: store)
    try:
        t = time.perf_counter()
        survey.infer(model_dir, survey_path, out, samples=samples, chunk=chunk, client=client, progress=False, loader=published_loader)
        return time.perf_counter() - t
    finally:
        survey.CatalogStore.of = original


def chunk_overhead(survey_path, out: Path, chunk: int, repeats: int = 9) -> dict:
    """Per-chunk cost of `infer` apart from the network, in this process: what a task does around
    `Posterior.summarize` (open the survey, read its rows, write its region with the completion record), with the
    summaries replaced by zeros of the catalog's shape. Median seconds per chunk of each step."""
    import xarray as xr

    from cinn import survey as sv
    from gridkit import store as _store
    from gridkit.schema import LABEL_NAMES, STAR

    model_dir = survey_path.parent / "published-model"
    post = published_loader(model_dir)
    sv._POSTERIORS[(str(model_dir.resolve()), str(post.model_id), "cpu")] = post
    store, make_region, _ = sv._prepare(model_dir, survey_path, out, 64, chunk, 0, None, True, False, "bench", published_loader, "cpu")

    def fake_summary(flux, snr, keys):
        n = len(keys)
        data = {}
        for name in LABEL_NAMES:
            data[name] = ((STAR,), np.zeros(n, np.float32))
            data[f"{name}_quantiles"] = ((STAR, "quantile"), np.zeros((n, len(sv.QUANTILES)), np.float32))
        data.update(f_reject=((STAR,), np.zeros(n, np.float32)), flag_extrapolated=((STAR,), np.zeros(n, bool)),
                    flag_missing_flux=((STAR,), np.zeros(n, bool)), n_imputed=((STAR,), np.zeros(n, np.int32)))
        return xr.Dataset(data, coords={STAR: keys})

    steps: dict[str, list[float]] = {"open survey (cache cleared)": [], "read rows": [], "write region + record, xarray (before)": [],
                                     "write region + record, CatalogStore (now)": []}
    regions = store.regions
    xarray_store = _store.RegionStore(store.path, store.dim, store.region_size, store.n, store.fingerprint, store.final)
    for r in range(repeats):
        i = r % len(regions)
        sl = regions[i]
        sv._SURVEYS.clear()
        t = time.perf_counter()
        ds = sv._survey(make_region.survey_path, make_region.source)
        steps["open survey (cache cleared)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        flux = np.asarray(ds["flux"].isel({STAR: sl}).values, dtype=np.float32)
        snr = np.asarray(ds["snr"].isel({STAR: sl}).values, dtype=np.float64)
        steps["read rows"].append(time.perf_counter() - t)
        summary = fake_summary(flux, snr, np.arange(sl.start, sl.stop))
        for what, st in (("write region + record, xarray (before)", xarray_store), ("write region + record, CatalogStore (now)", store)):
            t = time.perf_counter()
            st.write_region(i, summary, make_region.inputs(i, sl))
            steps[what].append(time.perf_counter() - t)
    _store.release(store.target)
    return {k: _median(v) for k, v in steps.items()}


def published(n: int, samples: int, chunk: int, repeats: int) -> None:
    """The scaling table: stars/s of `infer` on 1 and 2 workers next to one process, published-size network."""
    from gridkit.cluster import dask_client

    root = Path(tempfile.mkdtemp(prefix="bench-survey-pub-"))
    try:
        model_dir, survey_path = _published_survey(root, n, chunk)
        over = chunk_overhead(survey_path, root / "overhead.zarr", chunk)
        print(f"per-chunk overhead of infer outside the network (chunks of {chunk} stars of {PUBLISHED_PIXELS} pixels, median s):")
        for what, s in over.items():
            print(f"  {what:50s} {s:8.3f}")
        print(f"published-size network, random weights, {n} stars, {samples} samples, chunks of {chunk}, {repeats} repeat(s), "
              "every timing includes loading the network (once per process)", flush=True)
        rows = [("single process, Posterior.summarize over the survey", [])]
        runs = []
        clients = {}
        import contextlib

        with contextlib.ExitStack() as stack:
            for workers in (1, 2):
                clients[workers] = stack.enter_context(dask_client(n_workers=workers, threads_per_worker=1, quiet=True))
                for writer, when in (("xarray", "before: xarray region writes"), ("direct", "now: one opened catalog per worker")):
                    rows.append((f"gridkit infer, {workers} worker(s) x 1 thread, {when}", []))
                    runs.append((workers, writer))
            for r in range(repeats):  # interleaved: each repeat runs every variant
                rows[0][1].append(_published_loop(model_dir, survey_path, samples))
                order = list(enumerate(runs, start=1))
                for k, (workers, writer) in (order if r % 2 == 0 else order[::-1]):  # reversed every other repeat: no order bias
                    rows[k][1].append(_published_infer(model_dir, survey_path, root / f"cat{workers}{writer}.zarr", samples, chunk,
                                                       clients[workers], writer))
                print("  repeat", r, ", ".join(f"{t[-1]:.1f} s" for _, t in rows), f"(load average {__import__('os').getloadavg()[0]:.1f})",
                      flush=True)
        base = _median(rows[0][1])
        print(f"\n{'what':70s} {'median s':>9s} {'stars/s':>8s} {'vs loop':>8s}")
        for what, times in rows:
            m = _median(times)
            print(f"{what:70s} {m:9.2f} {n / m:8.3f} {base / m:8.2f}")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- a large mock survey end to end -----------------------------------------------------------------------------------
def _run_measured(cmd: list[str]) -> tuple[float, float, int]:
    """Run a command; (wall s, peak RSS in MB of it and of its waited-for children such as spawned Dask workers, exit status)."""
    import os
    import subprocess

    t = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t, usage.ru_maxrss / 1024, proc.returncode


def _files(path: Path) -> int:
    return sum(len(files) for _, _, files in __import__("os").walk(path))


def end_to_end(n: int, samples: int, workers: int, chunk: int) -> None:
    """`gridkit mock-survey` and `gridkit infer` (CLI, child processes) on an n-star mock survey, tiny network: wall time,
    peak RSS (the command's process and its workers, wait4), the files of the survey and catalog stores."""
    import xarray as xr

    from gridkit.grid import open_grid, write_grid

    gridkit_cli = [str(Path(sys.executable).parent / "gridkit")]  # the console script of this environment
    root = Path(tempfile.mkdtemp(prefix="bench-survey-e2e-"))
    try:
        t = time.perf_counter()
        model_dir, _ = _setup(root, 800)
        base = open_grid(root / "base.zarr").load()
        reps = -(-n // base.sizes["model"])
        tiled = xr.concat([base] * reps, dim="model").isel(model=slice(0, n)).assign_coords(model=np.arange(n))
        write_grid(tiled, root / "grid.zarr")  # n noiseless spectra: the 800 analytic models in turn (noise is added per star)
        del base, tiled
        print(f"setup (tiny cINN on 800 analytic models; a noiseless grid of {n} spectra, 800 models tiled): "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        survey, catalog = root / f"survey-{n}.zarr", root / f"catalog-{n}.zarr"
        rows = []
        wall, rss, rc = _run_measured([*gridkit_cli, "mock-survey", str(root / "grid.zarr"), "--snr", "250", "--out", str(survey),
                                       "--chunk", str(chunk), "--no-progress"])
        rows.append(("gridkit mock-survey (noise at S/N 250, this process)", wall, rss, rc, _files(survey)))
        wall, rss, rc = _run_measured([*gridkit_cli, "infer", str(model_dir), str(survey), "--out", str(catalog), "--samples",
                                       str(samples), "--workers", str(workers), "--no-progress"])
        rows.append((f"gridkit infer ({samples} samples, LocalCluster {workers} workers)", wall, rss, rc, _files(catalog)))
        print(f"\n{n} stars, {_files(root / 'grid.zarr')} files in the input grid, chunks of {chunk} stars")
        print(f"{'what':58s} {'wall s':>8s} {'stars/s':>8s} {'peak RSS MB':>11s} {'exit':>5s} {'files':>6s}")
        for what, wall, rss, rc, files in rows:
            print(f"{what:58s} {wall:8.0f} {n / wall:8.0f} {rss:11.0f} {rc:5d} {files:6d}")
        if all(r[3] == 0 for r in rows):
            from catalogs import open as open_catalog

            cat = open_catalog(catalog)
            print(f"catalog: {cat.sizes['star']} stars, {len(cat.data_vars)} variables; "
                  f"teff finite for {int(np.isfinite(cat.teff.values).sum())}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
