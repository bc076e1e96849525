"""Cost of the interval calibration per spectrum, beside the scale step alone (the calibration before the quantile
remap): both map every draw of a spectrum (`Calibration.apply_samples`, what `Posterior.summarize` does before its
quantiles), on draws of the published shape (4096 draws x 13 labels), then the quantiles as summarize takes them.
Run: `python -m benchmarks calibration [--spectra 256 --repeats 5]`."""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _calibrations(d: int):
    from cinn import calibration

    rng = np.random.default_rng(0)
    k, n = 400, 512
    centre = rng.uniform(-5, 5, size=(k, 1, d))
    draws = centre + rng.standard_normal((k, n, d))
    truth = centre[:, 0] + 0.3 + rng.uniform(-2, 2, size=(k, d))
    scale, pit = calibration.fit_draws(draws, np.ones((k, n), bool), truth)
    labels = tuple(f"l{i}" for i in range(d))
    full = calibration.Calibration(labels, np.array([50.0]), scale[None], "bench", k, pit=pit[None])
    return calibration.Calibration(labels, np.array([50.0]), scale[None], "bench", k), full


def main(argv=None) -> None:
    from catalogs.schema import QUANTILES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spectra", type=int, default=256)
    ap.add_argument("--draws", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    d = 13
    scale_only, full = _calibrations(d)
    rng = np.random.default_rng(1)
    draws = rng.standard_normal((args.spectra, args.draws, d))
    inside = rng.random((args.spectra, args.draws)) > 0.02
    snr = np.full(args.spectra, 50.0)

    def quantiles(x):
        return [np.quantile(x[j][inside[j]], QUANTILES, axis=0) for j in range(x.shape[0])]

    times = {"quantiles only (no calibration)": [], "scale step alone + quantiles": [], "scale + quantile remap + quantiles": []}
    for _ in range(args.repeats):  # interleaved
        t0 = time.perf_counter()
        quantiles(draws)
        times["quantiles only (no calibration)"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        quantiles(scale_only.apply_samples(draws, snr, inside))
        times["scale step alone + quantiles"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        quantiles(full.apply_samples(draws, snr, inside))
        times["scale + quantile remap + quantiles"].append(time.perf_counter() - t0)
    base = statistics.median(times["quantiles only (no calibration)"])
    print(f"{args.spectra} spectra x {args.draws} draws x {d} labels, median of {args.repeats}:")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:36s} {1e3 * med / args.spectra:7.2f} ms per spectrum  ({med / base:4.2f}x the quantiles alone)")


if __name__ == "__main__":
    main()
