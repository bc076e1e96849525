"""Cost of the NLL of the truth in `gridkit evaluate` (`nll.csv`: `Posterior.log_prob` of each spectrum's true labels,
one flow forward pass) and of the draws outside the bounds (`f_reject.csv`: `metrics.outside_bounds` of the draws)
beside what evaluate already spends per spectrum (`Posterior.sample` of `--samples` draws and the MAP from their
densities), in one run, interleaved, for the reference recipe's network (flux compressed to 128 components) and the
published network. Random weights (timing does not depend on training).
Run: `python -m benchmarks evaluate_nll [--spectra 32 --samples 1024 --repeats 5]`."""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main(argv=None) -> None:
    from benchmarks.bench_inference import _posterior
    from benchmarks.learning_curve import RECIPE
    from cinn.config import as_config
    from cinn.evaluate.metrics import outside_bounds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spectra", type=int, default=32)
    ap.add_argument("--samples", type=int, default=1024, help="evaluate's --samples (default 1024)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-wave", type=int, default=25200)
    args = ap.parse_args(argv)
    recipe = as_config(RECIPE).to_dict()  # configs/reference-tsgrid-lte.yaml
    rng = np.random.default_rng(0)
    flux = (1.0 + 0.1 * rng.standard_normal((args.spectra, args.n_wave))).astype(np.float32)
    snr = np.full(args.spectra, 250.0)
    keys = np.arange(args.spectra)
    print(f"torch threads {torch.get_num_threads()}; {args.spectra} spectra, {args.samples} draws; median of {args.repeats} repeats, "
          "ms per spectrum")
    print(f"{'network':<18} {'sample + MAP':>13} {'log_prob(truth)':>16} {'ratio':>7} {'outside_bounds':>15} {'ratio':>7}")
    for name, config in (("reference recipe", recipe), ("published", None)):
        post, cfg = _posterior(args.n_wave, config=config)
        if cfg.flux_components:
            post.model.set_flux_basis(torch.linalg.qr(torch.randn(args.n_wave, cfg.flux_components))[0].numpy())
        truth = rng.standard_normal((args.spectra, len(post.label_names)))

        drawn = {}

        def sample():
            drawn["draws"], log_q = post.sample(flux, snr, n=args.samples, seed=0, keys=keys, return_log_q=True)
            post.map_estimate(drawn["draws"], log_q)

        def nll():
            post.log_prob(truth, flux, snr)

        def outside():
            outside_bounds(drawn["draws"], post.bounds)

        sample(), nll(), outside()  # warm-up
        times = {"sample": [], "nll": [], "outside": []}
        for _ in range(args.repeats):
            for what, fn in (("sample", sample), ("nll", nll), ("outside", outside)):  # interleaved: load hits all alike
                t0 = time.perf_counter()
                fn()
                times[what].append((time.perf_counter() - t0) / args.spectra * 1e3)
        s, n, o = (statistics.median(times[k]) for k in ("sample", "nll", "outside"))
        print(f"{name:<18} {s:>13.2f} {n:>16.2f} {n / s:>7.3f} {o:>15.3f} {o / s:>7.4f}")


if __name__ == "__main__":
    main()
