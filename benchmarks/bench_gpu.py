"""GPU readiness: what the published-size cINN does on a CUDA device, written to one JSON file.

Three measurements, each timed on the device, figures in the JSON (and one table on stdout):

1. inference throughput of the published-size network (16 blocks, subnets 512 wide, feature net 2048-1024-512 -> 256;
   random weights, 25200 pixels) at 4096 samples per spectrum, spectra batched as `Posterior.summarize` batches them
   on a GPU (groups of up to 64 spectra), in float32 (TF32 off), TF32 matmuls, and bf16 autocast; for TF32 and bf16
   the fraction of spectra whose MAP (in the flow's standardized label space) differs from float32's by more than
   `--tolerance` (and the fraction whose MAP is another sample);
2. one epoch of training of the published network (`cinn.train`, published batch size and batches per epoch) on a
   generated cube (analytic grid, noise at S/N 50 and 250) of the same pixel count;
3. `gridkit infer` with one GPU worker (a LocalCluster worker declaring `GPU=1`, `--gpu-workers`) on a mock survey of
   10,000 stars (the cube's noiseless spectra again with fresh noise at S/N 250) with the trained network: stars/s.

Without CUDA it prints that it skips and exits 0. `--device cpu --tiny` runs every step at toy sizes on the CPU: a
check that the code path works end to end where there is no GPU (the CI test does that); its figures mean nothing.

    python -m benchmarks gpu [--out PATH] [--stars 10000] [--spectra 256] [--samples 4096] [--tolerance 0.01]
    python -m benchmarks gpu --device cpu --tiny --out /tmp/gpu-smoke.json

Output: --out, else $OUT/gpu.json where $OUT is set, else benchmarks/results/gpu.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SKIP_MESSAGE = "gpu benchmark: no CUDA device here (torch.cuda.is_available() is False); skipped"
PUBLISHED_S_PER_1000_GPU = 10.0  # "10 s per 1000 spectra" on one GPU (Ksoll et al. 2026)
#: toy sizes of `--tiny`: each step seconds on a CPU
TINY_NET = dict(n_blocks=2, subnet_width=32, subnet_layers=3, feature_layers=(64,), n_features=16)
TINY_TRAIN = dict(batch_size=64, batches_per_epoch=4, val_samples=64, num_workers=0, shuffle_buffer=256)


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="JSON to write (default: $OUT/gpu.json, else benchmarks/results/gpu.json)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available, else skip")
    p.add_argument("--tiny", action="store_true", help="toy sizes (a smoke test of the code path, e.g. with --device cpu)")
    p.add_argument("--stars", type=int, default=None, help="stars of the mock survey (default 10000; tiny 64)")
    p.add_argument("--spectra", type=int, default=None, help="spectra per throughput measurement (default 256; tiny 4)")
    p.add_argument("--samples", type=int, default=None, help="posterior samples per spectrum (default 4096; tiny 64)")
    p.add_argument("--models", type=int, default=None, help="models of the generated grid (default 1000; tiny 120)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each throughput variant (median reported)")
    p.add_argument("--tolerance", type=float, default=0.01, help="MAP difference (standardized label units) counted as differing")
    p.add_argument("--skip", nargs="*", default=(), choices=("inference", "train", "survey"), help="steps to leave out")
    return p.parse_args([a for a in argv if a != "gpu"])


def _out_path(arg) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu.json"
    return Path(__file__).resolve().parent / "results" / "gpu.json"


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# -- 1. inference throughput -----------------------------------------------------------------------
def _random_posterior(n_wave: int, device: str, tiny: bool):
    """A Posterior of the published-size network (or the tiny one) with random weights far from the identity."""
    from .bench_inference import _posterior

    post, cfg = _posterior(n_wave, config=TINY_NET if tiny else None)
    post = post.to(device)
    post.warn_extrapolation = False
    return post, cfg


class _Precision:
    """float32 (TF32 off), TF32 matmuls, or bf16 autocast, restored on exit."""

    def __init__(self, kind: str, device: str):
        self.kind, self.device = kind, device

    def __enter__(self):
        import torch

        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
        tf32 = self.kind == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        self.autocast = torch.autocast(self.device, dtype=torch.bfloat16) if self.kind == "bf16" else None
        if self.autocast is not None:
            self.autocast.__enter__()
        return self

    def __exit__(self, *exc):
        import torch

        if self.autocast is not None:
            self.autocast.__exit__(*exc)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, precision = self.saved
        torch.set_float32_matmul_precision(precision)


def _draws(post, flux, snr, n, seed, keys):
    """(y (S, n, d) flow space float32, log q (S, n) float32, MAP index (S,)): the posterior's own batched pass."""
    from cinn.posterior import map_index

    y, lq = post._sample_flow(flux, snr, keys, n, seed)  # groups of spectra on a GPU, as summarize runs it
    y, lq = np.asarray(y, dtype=np.float32), np.asarray(lq, dtype=np.float32)
    idx = map_index(lq, np.isfinite(lq) & np.isfinite(y).all(axis=-1))
    return y, lq, idx


def bench_inference(device: str, tiny: bool, spectra: int, samples: int, repeats: int, tolerance: float) -> dict:
    import torch

    n_pix = 200 if tiny else 25200
    post, cfg = _random_posterior(n_pix, device, tiny)
    rng = np.random.default_rng(0)
    flux = (1.0 + 0.1 * rng.standard_normal((spectra, n_pix))).astype(np.float32)
    snr = np.exp(rng.uniform(np.log(10), np.log(1000), spectra))
    keys = np.arange(spectra)
    out = {"network": {"n_blocks": cfg.n_blocks, "subnet_width": cfg.subnet_width, "subnet_layers": cfg.subnet_layers,
                       "feature_layers": list(cfg.feature_layers), "n_features": cfg.n_features, "pixels": n_pix,
                       "parameters": int(post.model.n_parameters()), "weights": "random"},
           "spectra": spectra, "samples": samples, "spectra_per_pass": post._group_size(samples), "repeats": repeats, "variants": {}}
    reference = None
    for kind in ("float32", "tf32", "bf16"):
        with _Precision(kind, device):
            g = min(spectra, post._group_size(samples))
            _draws(post, flux[:g], snr[:g], samples, 0, keys[:g])  # warm-up: kernels, allocator, cuBLAS plans
            times = []
            for _ in range(repeats):
                _sync(device)
                t = time.perf_counter()
                y, _, idx = _draws(post, flux, snr, samples, 7, keys)
                _sync(device)
                times.append(time.perf_counter() - t)
        med = statistics.median(times)
        row = {"seconds": med, "spectra_per_s": spectra / med, "s_per_1000": 1000 * med / spectra,
               "finite_fraction": float(np.isfinite(y).all(axis=-1).mean())}
        maps = y[np.arange(spectra), np.maximum(idx, 0)]
        if reference is None:
            reference = (maps, idx)
        else:
            diff = np.abs(maps - reference[0]).max(axis=1)
            row.update(map_differs_fraction=float(np.mean(~(diff <= tolerance))), map_other_sample_fraction=float(np.mean(idx != reference[1])),
                       map_max_abs_difference=float(np.nanmax(diff)) if np.isfinite(diff).any() else None, tolerance=tolerance)
        out["variants"][kind] = row
    # the production path itself (summarize: MAP, quantiles, f_reject) in float32, for the published comparison
    with _Precision("float32", device):
        _sync(device)
        t = time.perf_counter()
        post.summarize(flux, snr, n=samples, seed=7, keys=keys)
        _sync(device)
        dt = time.perf_counter() - t
    out["summarize_float32"] = {"seconds": dt, "spectra_per_s": spectra / dt, "s_per_1000": 1000 * dt / spectra,
                                "published_s_per_1000": PUBLISHED_S_PER_1000_GPU}
    if device == "cuda":
        out["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


# -- 2. one epoch of training, 3. gridkit infer on a GPU worker -----------------------------------------
def _grid(root: Path, models: int, tiny: bool) -> tuple[Path, Path]:
    """A noiseless analytic grid of `models` models (~25200 pixels; tiny: 201) and a cube of it at S/N 50 and 250."""
    from gridkit.degradation import add_noise
    from gridkit.grid import open_grid, write_grid
    from gridkit.synth import AnalyticSynthesizer, sample_labels, synthesize

    # the analytic model's default ranges (the green and red arms with margins, 1300 A) in steps giving ~25200 pixels
    synth = AnalyticSynthesizer(wavelength_range=((5160.0, 5180.0),), step=0.1) if tiny else AnalyticSynthesizer(step=0.0516)
    synthesize(sample_labels(models, seed=1), synth, root / "base.zarr", progress=False, models_per_region=max(1, min(100, models // 8)))
    write_grid(add_noise(open_grid(root / "base.zarr"), snr=[50.0, 250.0], seed=0), root / "cube.zarr")
    return root / "base.zarr", root / "cube.zarr"


def bench_train(root: Path, cube: Path, device: str, tiny: bool) -> tuple[dict, Path]:
    import cinn
    from cinn.config import CINNConfig

    config = {**(TINY_NET if tiny else {}), **(TINY_TRAIN if tiny else {}), "epochs": 1, "device": device}
    cfg = CINNConfig(**config)
    _sync(device)
    t = time.perf_counter()
    model_dir = cinn.train(cube, root / "model", config=config, progress=False)
    _sync(device)
    dt = time.perf_counter() - t
    seen = cfg.batch_size * cfg.batches_per_epoch
    return ({"seconds": dt, "batch_size": cfg.batch_size, "batches_per_epoch": cfg.batches_per_epoch, "samples_per_s": seen / dt,
             "mixed_precision": cfg.mixed_precision, "note": "wall time of cinn.train for one epoch: data loading, the epoch, "
                                                             "validation and writing the model directory"}, Path(model_dir))


def _mock_survey(base: Path, out: Path, stars: int, chunk: int, snr: float = 250.0) -> Path:
    """`stars` stars: the grid's noiseless spectra in turn (star i = model i mod M) with fresh Gaussian noise at S/N
    `snr` per Angstrom (seeded per star), written through the store writer like any survey."""
    import xarray as xr

    from gridkit import store
    from gridkit.grid import open_grid

    grid = open_grid(base)
    flux = np.asarray(grid.flux.values, dtype=np.float32)
    wave = grid.wavelength.values
    step = float(np.median(np.diff(wave)))
    sigma = 1.0 / (snr * np.sqrt(step))  # S/N per Angstrom -> per pixel
    rows = np.arange(stars) % flux.shape[0]
    noisy = np.empty((stars, wave.size), dtype=np.float32)
    for lo in range(0, stars, chunk):
        hi = min(stars, lo + chunk)
        noisy[lo:hi] = flux[rows[lo:hi]] * (1 + sigma * store.rng_for(0, lo).standard_normal((hi - lo, wave.size), dtype=np.float32))
    ds = xr.Dataset({"flux": (("star", "wavelength"), noisy, {"units": "1", "long_name": "normalised flux"}),
                     "snr": ("star", np.full(stars, snr), {"units": "1", "long_name": "S/N per A"}),
                     "star_id": ("star", np.array([f"gpu-bench-{i:07d}" for i in range(stars)], dtype=object))},
                    coords={"star": np.arange(stars), "wavelength": ("wavelength", wave, {"units": "Angstrom"})})
    ds["flux"] = ds.flux.chunk({"star": chunk})
    store.write_dataset(ds, out, dim="star", region_size=chunk, progress=False)
    return out


def bench_survey(root: Path, base: Path, model_dir: Path, device: str, stars: int, samples: int, tiny: bool) -> dict:
    import catalogs
    from gridkit.cli import main as gridkit

    chunk = 16 if tiny else 1000
    t = time.perf_counter()
    survey = _mock_survey(base, root / "survey.zarr", stars, chunk)
    setup = time.perf_counter() - t
    argv = ["infer", str(model_dir), str(survey), "--out", str(root / "catalog.zarr"), "--samples", str(samples), "--chunk", str(chunk),
            "--workers", "1", "--threads-per-worker", "1", "--gpu-workers", "--device", "auto" if device == "cuda" else "cpu", "--no-progress"]
    t = time.perf_counter()
    rc = gridkit(argv)
    dt = time.perf_counter() - t
    if rc != 0:
        raise RuntimeError(f"gridkit {' '.join(argv)} exited {rc}")
    cat = catalogs.open(root / "catalog.zarr")
    finite = float(np.isfinite(cat["teff"].values).mean())
    return {"stars": stars, "samples": samples, "chunk": chunk, "seconds": dt, "stars_per_s": stars / dt, "s_per_1000": 1000 * dt / stars,
            "survey_setup_seconds": setup, "finite_teff_fraction": finite, "command": "gridkit " + " ".join(argv),
            "note": "wall time of the command: LocalCluster start (1 worker, GPU=1), the model loaded once on the worker, every chunk"}


# -- main -----------------------------------------------------------------------------------------------
def _environment(device: str) -> dict:
    import torch

    env = {"device": device, "torch": torch.__version__, "python": platform.python_version(), "host": platform.node(),
           "cpu_count": os.cpu_count()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30, cuda=torch.version.cuda,
                   capability=f"{props.major}.{props.minor}")
    return env


def main(argv=None) -> int:
    import torch

    args = _parse(sys.argv[1:] if argv is None else list(argv))
    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        print(f"{SKIP_MESSAGE} (`python -m benchmarks gpu --device cpu --tiny` checks the code path on the CPU)")
        return 0
    if device == "cuda" and not torch.cuda.is_available():
        print(f"{SKIP_MESSAGE}; --device cuda cannot run here")
        return 0
    tiny = args.tiny
    stars = args.stars or (64 if tiny else 10_000)
    spectra = args.spectra or (4 if tiny else 256)
    samples = args.samples or (64 if tiny else 4096)
    models = args.models or (120 if tiny else 1000)
    out_path = _out_path(args.out)
    result = {"benchmark": "gpu", "tiny": tiny, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "environment": _environment(device)}
    print(f"gpu benchmark on {result['environment'].get('gpu', device)}{' (tiny sizes: a smoke test)' if tiny else ''} -> {out_path}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        if "inference" not in args.skip:
            result["inference"] = bench_inference(device, tiny, spectra, samples, args.repeats, args.tolerance)
            _write(out_path, result)
        if not {"train", "survey"} <= set(args.skip):
            t = time.perf_counter()
            base, cube = _grid(root, models, tiny)
            result["grid"] = {"models": models, "seconds": time.perf_counter() - t}
            result["train"], model_dir = bench_train(root, cube, device, tiny)
            _write(out_path, result)
            if "survey" not in args.skip:
                result["survey"] = bench_survey(root, base, model_dir, device, stars, samples, tiny)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        _write(out_path, result)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _table(result)
    return 0


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float))
    os.replace(tmp, path)


def _table(result: dict) -> None:
    print(f"\n{'what':62s} {'median s':>9s} {'per s':>9s} {'s/1000':>8s} {'vs f32':>7s}")
    inf = result.get("inference")
    if inf:
        base = inf["variants"]["float32"]["seconds"]
        for kind, row in inf["variants"].items():
            extra = (f"  MAP differs (> {row['tolerance']:g}): {row['map_differs_fraction']:.1%}, other sample: "
                     f"{row['map_other_sample_fraction']:.1%}") if "tolerance" in row else ""
            what = f"inference {kind} ({inf['spectra']} spectra x {inf['samples']} samples)"
            print(f"{what:62s} {row['seconds']:9.3f} "
                  f"{row['spectra_per_s']:9.1f} {row['s_per_1000']:8.2f} {base / row['seconds']:7.2f}{extra}")
        s = inf["summarize_float32"]
        print(f"{'Posterior.summarize float32 (MAP + quantiles)':62s} {s['seconds']:9.3f} {s['spectra_per_s']:9.1f} {s['s_per_1000']:8.2f}"
              f"   published: {s['published_s_per_1000']:g} s/1000")
    if "train" in result:
        t = result["train"]
        what = f"train one epoch ({t['batches_per_epoch']} batches x {t['batch_size']})"
        print(f"{what:62s} {t['seconds']:9.2f} {t['samples_per_s']:9.0f}")
    if "survey" in result:
        s = result["survey"]
        what = f"gridkit infer, 1 GPU worker, {s['stars']} stars x {s['samples']} samples"
        print(f"{what:62s} {s['seconds']:9.2f} "
              f"{s['stars_per_s']:9.1f} {s['s_per_1000']:8.2f}")
    print(f"peak RSS {result.get('peak_rss_mib', 0):.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
