"""Sampling with MAP from an ensemble (`cinn.ensemble`) against one network and against the straightforward pooling.

Side by side in one run, spectrum by spectrum interleaved (one torch thread = one core), 4096 draws per spectrum,
K networks of the reference recipe (`configs/reference-tsgrid-lte.yaml`: 6 blocks of width 128, the flux on 128
principal components, feature net 256 -> 64; 25,200 pixels), random weights (timing does not depend on training):
- one network: `Posterior.sample(..., return_log_q=True)` and the MAP rule (what `summarize` does for the MAP);
- pooled: each of the K networks makes n/K draws and ranks them by its own density (no mixture density: the MAP rule
  then compares densities of different posteriors, which is what the ensemble avoids);
- ensemble: `Ensemble.sample` (n/K draws from each member, every draw's density the mixture's: under its own member
  that of the sampling pass, under the K - 1 others their forward pass by `FastReverse.forward`); the same with all
  K forward passes over every draw (`cinn.ensemble` until 2026-12-04); and with FrEIA's forward pass for all K (the
  straightforward way; what `cinn.ensemble` did first). All give the same densities to float32 rounding (checked).

Run: `python -m benchmarks ensemble [--members 3] [--spectra 6] [--samples 4096]`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

def _members(k: int, n_pix: int):
    from cinn.config import as_config
    from cinn.model import FastReverse

    from .bench_inference import _posterior
    from .learning_curve import RECIPE

    recipe = as_config(RECIPE).to_dict()  # configs/reference-tsgrid-lte.yaml (flux on 128 principal components)
    posts = []
    for i in range(k):
        post, cfg = _posterior(n_pix, config=recipe)
        if cfg.flux_components:  # an orthonormal basis, as the training's PCA gives
            basis = torch.linalg.qr(torch.randn(n_pix, cfg.flux_components, generator=torch.Generator().manual_seed(200 + i)))[0]
            post.model.set_flux_basis(basis.numpy())
        g = torch.Generator().manual_seed(100 + i)  # other weights per member
        with torch.no_grad():
            for p in post.model.parameters():
                if p.dtype.is_floating_point:
                    p.add_(0.02 * torch.randn(p.shape, generator=g))
        post._fast = FastReverse(post.model)  # it holds its own copies of the weights
        post.model_id = f"random-{i}"
        posts.append(post)
    return posts


def _freia_log_q(post, values, snr, y, conditions=None):
    """A member's flow density of points y (S, m, d) by FrEIA's forward pass with the condition repeated per row."""
    from cinn.model import log_normal

    out = np.empty(y.shape[:2], dtype=np.float32)
    with torch.inference_mode():
        c = post._conditions(values, snr) if conditions is None else conditions
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

        class AllMembers(Ensemble):
            """Every draw's density by all K members' forward passes (its own member's too)."""

            def _sample_flow(self, values, snr, keys, n, seed, stream=()):
                ys = np.empty((values.shape[0], n, len(self.label_names)), dtype=np.float32)
                for i, (member, (a, b)) in enumerate(zip(self.members, self._split(n))):
                    ys[:, a:b] = member._sample_flow(values, snr, keys, b - a, seed, (*stream, i))[0]
                return ys, self._log_q(values, snr, ys)

        class FreiaDensity(AllMembers):
            _member_log_q = staticmethod(_freia_log_q)

        ens_all = AllMembers(posts, posts[0].model_dir, "bench-ensemble-all", "none")
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
                f"ensemble of {k}, {k} density passes by FrEIA's forward": lambda j: mixture(j, ens_freia),
                f"ensemble of {k}, {k} density passes by FastReverse.forward": lambda j: mixture(j, ens_all),
                f"ensemble of {k}, own density + {k - 1} passes (cinn.ensemble)": mixture}
        checks = [(mixture(j), mixture(j, ens_all), mixture(j, ens_freia)) for j in range(min(2, args.spectra))]
        worst = max(float(np.max(np.abs(a[1] - b[1]))) for ours, *others in checks for a, b in ((ours, o) for o in others))
        same_map = all(np.array_equal(ours[0], o[0]) for ours, *others in checks for o in others)
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
    print(f"max |log density difference| between the density passes: {worst:.1e} (float32 rounding); same MAP draw: {same_map}")
    print(f"ensemble sampling with MAP: {args.spectra} spectra x {n} draws, {args.pixels} pixels, networks of the reference recipe "
          "(configs/reference-tsgrid-lte.yaml), random weights, 1 torch thread")
    print(f"{'what':62s} {'CPU s/spectrum (median)':>24s} {'x one network':>14s}")
    out = {}
    for name, times in cpu.items():
        med = statistics.median(times)
        out[name] = med
        print(f"{name:62s} {med:24.3f} {med / base:14.2f}")
    return out


if __name__ == "__main__":
    main()
