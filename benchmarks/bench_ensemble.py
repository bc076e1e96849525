"""Sampling with MAP from an ensemble (`cinn.ensemble`) against one network and against the straightforward pooling.

Side by side in one run, spectrum by spectrum interleaved (one torch thread = one core), 4096 draws per spectrum,
K networks of the reference recipe's size (6 blocks of width 128, feature net 256 -> 64; 25,200 pixels), random
weights (timing does not depend on training):
- one network: `Posterior.sample(..., return_log_q=True)` and the MAP rule (what `summarize` does for the MAP);
- pooled: each of the K networks makes n/K draws and ranks them by its own density (no mixture density: the MAP rule
  then compares densities of different posteriors, which is what the ensemble avoids);
- ensemble: `Ensemble.sample` (n/K draws from each member, every draw's density the mixture's, K forward passes by
  `FastReverse.forward`), and the same with FrEIA's forward pass for the densities (the straightforward way; what
  `cinn.ensemble` did first). Both give the same densities to float32 rounding (checked).

Run: `python -m benchmarks ensemble [--members 3] [--spectra 6] [--samples 4096]`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

RECIPE = dict(n_blocks=6, subnet_width=128, subnet_layers=3, feature_layers=(256,), n_features=64)


def _members(k: int, n_pix: int):
    from cinn.model import FastReverse

    from .bench_inference import _posterior

    posts = []
    for i in range(k):
        post, _ = _posterior(n_pix, config=RECIPE)
        g = torch.Generator().manual_seed(100 + i)  # other weights per member
        with torch.no_grad():
            for p in post.model.parameters():
                if p.dtype.is_floating_point:
                    p.add_(0.02 * torch.randn(p.shape, generator=g))
        post._fast = FastReverse(post.model)  # it holds its own copies of the weights
        post.model_id = f"random-{i}"
        posts.append(post)
    return posts


def _freia_log_q(post, values, snr, y):
    """A member's flow density of points y (S, m, d) by FrEIA's forward pass with the condition repeated per row."""
    from cinn.model import log_normal

    out = np.empty(y.shape[:2], dtype=np.float32)
    with torch.inference_mode():
        c = post._conditions(values, snr)
        for j in range(y.shape[0]):
            z, logdet = post.model.flow(torch.from_numpy(np.ascontiguousarray(y[j])), c=[c[j:j + 1].expand(y.shape[1], -1)])
            out[j] = (log_normal(z) + logdet.float()).numpy()
    return out


def main(argv=None) -> dict:
    from cinn.ensemble import Ensemble
    from cinn.posterior import map_index

    ap = argparse.ArgumentParser(prog="python -m benchmarks ensemble")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--spectra", type=int, default=6)
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--pixels", type=int, default=25200)
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        posts = _members(args.members, args.pixels)
        ens = Ensemble(posts, posts[0].model_dir, "bench-ensemble", "none")

        class FreiaDensity(Ensemble):
            _member_log_q = staticmethod(_freia_log_q)

        ens_freia = FreiaDensity(posts, posts[0].model_dir, "bench-ensemble-freia", "none")
        rng = np.random.default_rng(0)
        flux = (1.0 + 0.1 * rng.standard_normal((args.spectra, args.pixels))).astype(np.float32)
        snr = np.exp(rng.uniform(np.log(10), np.log(1000), args.spectra))
        n, k = args.samples, args.members

        def one(j):
            s, lq = posts[0].sample(flux[j:j + 1], snr[j:j + 1], n=n, seed=7, keys=[j], return_log_q=True)
            return map_index(lq, posts[0].in_bounds(s))

        def pooled(j):
            parts = [p.sample(flux[j:j + 1], snr[j:j + 1], n=n // k, seed=7 + i, keys=[j], return_log_q=True) for i, p in enumerate(posts)]
            s, lq = np.concatenate([a for a, _ in parts], axis=1), np.concatenate([b for _, b in parts], axis=1)
            return map_index(lq, posts[0].in_bounds(s))

        def mixture(j, which=ens):
            s, lq = which.sample(flux[j:j + 1], snr[j:j + 1], n=n, seed=7, keys=[j], return_log_q=True)
            return map_index(lq, which.in_bounds(s)), lq

        runs = {"one network": one, f"pooled: {k} networks, each draw ranked by its own density": pooled,
                f"ensemble of {k}, densities by FrEIA's forward pass": lambda j: mixture(j, ens_freia),
                f"ensemble of {k}, densities by FastReverse.forward (cinn.ensemble)": mixture}
        worst = max(float(np.max(np.abs(mixture(j)[1] - mixture(j, ens_freia)[1]))) for j in range(min(2, args.spectra)))
        for f in runs.values():  # warm-up
            f(0)
        cpu = {name: [] for name in runs}
        for j in range(args.spectra):
            for name, f in runs.items():
                c0 = time.process_time()
                f(j)
                cpu[name].append(time.process_time() - c0)
    finally:
        torch.set_num_threads(threads)
    base = statistics.median(cpu["one network"])
    print(f"max |log density difference| between the two density passes: {worst:.1e} (float32 rounding)")
    print(f"ensemble sampling with MAP: {args.spectra} spectra x {n} draws, {args.pixels} pixels, networks of the reference recipe's "
          f"size ({RECIPE['n_blocks']} blocks of {RECIPE['subnet_width']}, feature net 256 -> 64), random weights, 1 torch thread")
    print(f"{'what':62s} {'CPU s/spectrum (median)':>24s} {'x one network':>14s}")
    out = {}
    for name, times in cpu.items():
        med = statistics.median(times)
        out[name] = med
        print(f"{name:62s} {med:24.3f} {med / base:14.2f}")
    return out


if __name__ == "__main__":
    main()
