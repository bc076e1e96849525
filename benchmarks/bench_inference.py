"""cINN inference throughput per CPU core at 4096 samples per spectrum, on the published-size network.

Side by side in one run, spectrum by spectrum interleaved (so both see the same machine load):
- ours: the posterior's fast path as `Posterior.summarize` runs it (FastReverse: the condition's contribution to the first layer of every coupling
  subnet computed once per spectrum, no [x, c] concatenation of 4096 x 256, split weights contiguous),
- the straightforward approach: FrEIA's reverse pass per spectrum with the condition repeated 4096 times.
Both draw the same latents (seed, key), so the MAP sample index must be identical; the MAP values agree to
float32 rounding. Random weights (timing does not depend on training). One torch thread = one core.
No GPU is available here: the published GPU figure (10 s per 1000 spectra) is not measured.

Run: `python -m benchmarks inference` (env BENCH_SPECTRA=8, BENCH_SAMPLES=4096, BENCH_PIXELS=25200,
BENCH_SUBNET_LAYERS=3: the published subnets of 3 fully connected layers; 4 = the other reading, 3 hidden layers).
"""
from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PUBLISHED_MIN_PER_1000_CPU = 21.5


def _posterior(n_wave: int, subnet_layers: int | None = None, config: dict | None = None):
    """(Posterior with random weights far from the identity, its config): the published-size network, or `config`."""
    from cinn.config import CINNConfig
    from cinn.model import CINN
    from cinn.posterior import Posterior
    from cinn.transforms import LabelTransform
    from gridkit.schema import LABEL_NAMES

    cfg = CINNConfig(**(config or {}))  # published: 16 blocks, subnets in-512-512-out, feature net 2048-1024-512 -> 256
    if subnet_layers is not None:
        cfg = cfg.replace(subnet_layers=subnet_layers)
    model = CINN(cfg, n_wave)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # couplings far from the identity (the last subnet layers start near zero)
        for p in model.flow.parameters():
            if p.dtype.is_floating_point:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    d = len(LABEL_NAMES)
    lt = LabelTransform(tuple(LABEL_NAMES), np.zeros(d, bool), 0.1, np.zeros(d), np.ones(d))
    meta = {"label_names": list(LABEL_NAMES), "model_id": "random-weights", "label_transform": lt.to_json(),
            "input_scaler": {"logsnr_mean": 2.0, "logsnr_std": 0.5}, "bounds": {n: [-1e30, 1e30] for n in LABEL_NAMES}}
    extras = {"wavelength": np.linspace(5000.0, 6800.0, n_wave), "flux_mean": np.ones(n_wave, np.float32),
              "flux_std": np.full(n_wave, 0.1, np.float32)}
    return Posterior(model, meta, extras, Path(tempfile.gettempdir())), cfg


def _ours(post, flux, snr, n, seed, keys):
    """MAP (S, d) and its sample index (S,) by the posterior's fast path: exactly what `Posterior.summarize` does
    for the MAP (its quantiles add a few ms), i.e. the same job as `reference_summarize`."""
    from cinn.posterior import map_index

    phys, lq = post.sample(flux, snr, n=n, seed=seed, keys=keys, return_log_q=True)
    idx = map_index(lq, post.in_bounds(phys))
    return phys[np.arange(phys.shape[0]), idx], idx


def main(n_spectra: int | None = None, n_samples: int | None = None, n_pixels: int | None = None,
         subnet_layers: int | None = None) -> dict:
    from cinn.posterior import reference_summarize

    n_spectra = int(n_spectra or os.environ.get("BENCH_SPECTRA", 8))
    n = int(n_samples or os.environ.get("BENCH_SAMPLES", 4096))
    n_pix = int(n_pixels or os.environ.get("BENCH_PIXELS", 25200))
    layers = subnet_layers or os.environ.get("BENCH_SUBNET_LAYERS")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        post, cfg = _posterior(n_pix, int(layers) if layers else None)
        n_par = post.model.n_parameters()
        rng = np.random.default_rng(0)
        flux = (1.0 + 0.1 * rng.standard_normal((n_spectra, n_pix))).astype(np.float32)
        snr = np.exp(rng.uniform(np.log(10), np.log(1000), n_spectra))
        # warm-up (first-call allocations, MKL init)
        _ours(post, flux[:1], snr[:1], n, seed=0, keys=[0])
        reference_summarize(post, flux[:1], snr[:1], n=n, seed=0)
        t_fast, t_ref, c_fast, c_ref, maps_fast, maps_ref, idx_fast, idx_ref = [], [], [], [], [], [], [], []
        for j in range(n_spectra):
            t0, c0 = time.perf_counter(), time.process_time()
            m, i = _ours(post, flux[j:j + 1], snr[j:j + 1], n, seed=7, keys=[j])
            t_fast.append(time.perf_counter() - t0)
            c_fast.append(time.process_time() - c0)
            maps_fast.append(m[0])
            idx_fast.append(int(i[0]))
            t0, c0 = time.perf_counter(), time.process_time()
            m, _, i = reference_summarize(post, flux[j:j + 1], snr[j:j + 1], n=n, seed=7, keys=[j], return_index=True)
            t_ref.append(time.perf_counter() - t0)
            c_ref.append(time.process_time() - c0)
            maps_ref.append(m[0])
            idx_ref.append(int(i[0]))
        maps_fast, maps_ref = np.array(maps_fast), np.array(maps_ref)
    finally:
        torch.set_num_threads(threads)
    med_fast, med_ref = statistics.median(t_fast), statistics.median(t_ref)
    cpu_fast, cpu_ref = statistics.median(c_fast), statistics.median(c_ref)
    same_idx = idx_fast == idx_ref
    max_abs = float(np.max(np.abs(maps_fast - maps_ref)))  # labels in standardized units here (identity transform)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pub = PUBLISHED_MIN_PER_1000_CPU * 60 / 1000
    print(f"cINN inference, published-size network ({cfg.n_blocks} blocks, subnets of {cfg.subnet_layers} FC layers = "
          f"{cfg.subnet_layers - 1} hidden of {cfg.subnet_width}, "
          f"feature net {'-'.join(map(str, cfg.feature_layers))} -> {cfg.n_features}; {n_par / 1e6:.1f} M parameters), "
          f"{n_pix} pixels, {n} samples/spectrum, 1 torch thread (one CPU core), {n_spectra} spectra, random weights; no GPU here")
    print("CPU s = CPU time of this single-threaded process (the per-core cost, robust to other jobs on this shared machine)")
    print(f"{'what':58s} {'wall s/spec':>11s} {'CPU s/spec':>10s} {'CPU min/1000':>12s} {'ratio':>6s}")
    rows = [("straightforward: FrEIA reverse, condition repeated n times", med_ref, cpu_ref),
            ("ours: fast path of Posterior.summarize (FastReverse)", med_fast, cpu_fast)]
    for name, t, c in rows:
        print(f"{name:58s} {t:11.3f} {c:10.3f} {c * 1000 / 60:12.1f} {cpu_ref / c:6.2f}")
    print(f"{'published (Ksoll et al. 2026), one CPU core (other CPU)':58s} {'':11s} {pub:10.3f} {PUBLISHED_MIN_PER_1000_CPU:12.1f}")
    ratios = np.array(c_ref) / np.array(c_fast)
    print(f"per-spectrum CPU speed-up: median {statistics.median(ratios):.2f} (min {ratios.min():.2f}, max {ratios.max():.2f})")
    print(f"identical MAP sample for identical seeds: {same_idx} ({sum(a == b for a, b in zip(idx_fast, idx_ref))}/{n_spectra}); "
          f"max |MAP difference| {max_abs:.1e} in standardized label units (float32 rounding through 16 blocks); "
          f"peak RSS {rss:.0f} MiB")
    print(f"extrapolated to 1000 spectra on one core: ours {cpu_fast * 1000 / 60:.1f} min, straightforward "
          f"{cpu_ref * 1000 / 60:.1f} min, published {PUBLISHED_MIN_PER_1000_CPU} min")
    return {"fast_s": med_fast, "ref_s": med_ref, "fast_cpu_s": cpu_fast, "ref_cpu_s": cpu_ref, "speedup": cpu_ref / cpu_fast, "same_map_index": same_idx, "max_abs": max_abs}


if __name__ == "__main__":
    main()
