"""Training-data loader throughput: spectra per second served from a cube on disk.

Side by side in one run, on one cube written to a temporary directory (flux(model, snr, wavelength), float32, the
published pixel count ~25,200 and 19 S/N values; one chunk = 8 models x 19 S/N x all pixels):
- ours: `CubeStream` through a torch DataLoader with 2 worker processes started with spawn (whole chunks in random
  order, a shuffle buffer, standardization, ready batches of 256), and the same stream in the main process;
- the straightforward alternative: per-sample random-access reads `flux[model, snr, :]` from the zarr array
  (what a map-style Dataset with a random sampler does): every spectrum decompresses a whole chunk.
Compared with what training consumes: ~600 spectra/s in the published run (128 batches of 1024 per epoch).
Worker start-up (spawn imports torch in each worker) is reported separately from the steady rate, side by side
with the start of a later epoch on the same (persistent) workers, which is what training does now.

Run: `python -m benchmarks loader` (env BENCH_MODELS=96, BENCH_PIXELS=25200).
"""
from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

TRAINING_CONSUMPTION = 600.0  # spectra/s, published run


def _write_cube(path: Path, n_models: int, n_pix: int, n_snr: int = 19, chunk: int = 8) -> None:
    import dask.array as da
    import xarray as xr

    from gridkit.grid import write_grid
    from gridkit.schema import LABEL_NAMES, from_arrays

    rng = np.random.default_rng(0)
    wave = np.linspace(5160.0, 6800.0, n_pix)
    labels = {name: rng.uniform(0.1, 1.0, n_models) for name in LABEL_NAMES}
    labels["teff"] = rng.uniform(4000, 7000, n_models)
    base = from_arrays(wave, np.ones((n_models, n_pix), np.float32), labels, resolving_power=20000.0)
    # lazy (dask), written chunk by chunk: the benchmark's own process never holds the cube either
    flux = 1.0 + 0.05 * da.random.default_rng(0).standard_normal((n_models, n_snr, n_pix), chunks=(chunk, n_snr, n_pix), dtype=np.float32)
    snr = np.geomspace(10, 1000, n_snr)
    cube = base.drop_vars("flux").assign_coords(snr=("snr", snr, {"units": "1", "convention": "per_angstrom"}))
    cube["flux"] = (("model", "snr", "wavelength"), flux, base.flux.attrs)
    write_grid(cube, path, region_size=chunk)
    del flux, cube
    xr.open_zarr(path, consolidated=False).close()


def _stream(store, batch_size):
    from cinn.data import CubeStream

    n_wave = store.wavelength.size
    return CubeStream(path=store.path, mode="stored", positions=np.arange(store.n_model), n_model=store.n_model, chunk=store.chunk,
                      targets=np.zeros((store.n_model, len(store.label_names))), flux_mean=np.ones(n_wave), flux_std=np.ones(n_wave),
                      logsnr_mean=2.0, logsnr_std=0.5, batch_size=batch_size, snr=store.snr, pixel_width=store.pixel_width,
                      shuffle=True, shuffle_buffer=4096, seed=0)


def _rate(iterable, n_batches, batch_size, warm=2):
    it = iter(iterable)
    t0 = time.perf_counter()
    for _ in range(warm):
        next(it)
    t1 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    t2 = time.perf_counter()
    return n_batches * batch_size / (t2 - t1), t1 - t0


def main(n_models: int | None = None, n_pixels: int | None = None) -> dict:
    import torch
    import zarr

    from cinn.data import make_loader, open_training_store
    from gridkit.schema import LABEL_NAMES

    n_models = int(n_models or os.environ.get("BENCH_MODELS", 96))
    n_pix = int(n_pixels or os.environ.get("BENCH_PIXELS", 25200))
    batch = 256
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cube.zarr"
        t0 = time.perf_counter()
        _write_cube(path, n_models, n_pix)
        t_write = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        store = open_training_store(path, LABEL_NAMES)
        n_spec = n_models * store.snr.size
        # ours, 2 spawned workers; then in-process
        n_batches = max(8, 3 * n_spec // batch)  # about three passes over the cube
        stream = _stream(store, batch)
        loader = make_loader(stream, num_workers=2, prefetch=4, start_method="spawn")
        workers_rate, workers_start = _rate(loader, n_batches, batch)
        stream.set_epoch(1)  # the next epoch on the same workers: they restart their streams, no respawn
        t0 = time.perf_counter()
        it = iter(loader)
        next(it), next(it)
        epoch_start = time.perf_counter() - t0
        del it, loader
        inproc_rate, _ = _rate(_stream(store, batch), n_batches, batch)
        # straightforward: per-sample random access (median of repeats over random samples)
        arr = zarr.open_group(str(path), mode="r", zarr_format=3)["flux"]
        rng = np.random.default_rng(1)
        times = []
        for _ in range(40):
            m, s = int(rng.integers(n_models)), int(rng.integers(store.snr.size))
            t0 = time.perf_counter()
            spec = np.asarray(arr[m, s, :])
            times.append(time.perf_counter() - t0)
        naive_rate = 1.0 / statistics.median(times)
        assert spec.shape == (n_pix,)
    torch.set_num_threads(threads)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"loader throughput: cube of {n_models} models x {store.snr.size} S/N x {n_pix} pixels float32 ({size_mb:.0f} MB on disk, "
          f"written in {t_write:.1f} s), chunks of {store.chunk} models, batches of {batch}; machine: 2 shared cores, no GPU")
    print(f"{'what':62s} {'spectra/s':>10s} {'vs naive':>9s} {'vs 600/s':>9s}")
    rows = [("straightforward: per-sample random-access zarr read (median)", naive_rate),
            ("ours: CubeStream in the main process", inproc_rate),
            ("ours: CubeStream + DataLoader, 2 spawned workers", workers_rate)]
    for name, r in rows:
        print(f"{name:62s} {r:10.0f} {r / naive_rate:9.1f} {r / TRAINING_CONSUMPTION:9.2f}")
    print(f"published training consumption: {TRAINING_CONSUMPTION:.0f} spectra/s; peak RSS of the main process {rss:.0f} MiB "
          f"(cube: {n_spec * n_pix * 4 / 2**20:.0f} MiB)")
    print(f"start of an epoch (to its first 2 batches): fresh spawned workers {workers_start:.2f} s, persistent workers "
          f"{epoch_start:.2f} s ({workers_start / epoch_start:.0f}x; fresh workers every epoch was the straightforward way)")
    return {"naive": naive_rate, "inproc": inproc_rate, "workers": workers_rate, "startup_s": workers_start, "epoch_start_s": epoch_start}


if __name__ == "__main__":
    main()
