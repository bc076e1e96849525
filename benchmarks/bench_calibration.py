"""Cost of the interval calibration per spectrum (`Calibration.apply_samples`, what `Posterior.summarize` does to the
draws before taking their quantiles), beside the scale step alone (the calibration before the quantile remap) and
beside the quantiles themselves, on draws of the published shape (4096 draws x 13 labels): spectra whose draws are
all in bounds and spectra with some out of bounds (the quantiles vectorised over spectra in the first case).
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
    snr = np.full(args.spectra, 50.0)
    cases = {"every draw in bounds": np.ones((args.spectra, args.draws), bool),
             "2 % of the draws out of bounds": rng.random((args.spectra, args.draws)) > 0.02}
    print(f"{args.spectra} spectra x {args.draws} draws x {d} labels, ms per spectrum, median of {args.repeats}:")
    for case, inside in cases.items():
        times = {"quantiles (no calibration)": [], "scale step alone": [], "scale + quantile remap": []}
        for _ in range(args.repeats):  # interleaved
            t0 = time.perf_counter()
            if inside.all():
                np.quantile(draws, QUANTILES, axis=1)
            else:
                [np.quantile(draws[j][inside[j]], QUANTILES, axis=0) for j in range(args.spectra)]
            times["quantiles (no calibration)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            scale_only.apply_samples(draws, snr, inside)
            times["scale step alone"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            full.apply_samples(draws, snr, inside)
            times["scale + quantile remap"].append(time.perf_counter() - t0)
        base = statistics.median(times["quantiles (no calibration)"])
        print(f"  {case}:")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"    {name:28s} {1e3 * med / args.spectra:7.2f}  ({med / base:4.2f}x the quantiles)")


if __name__ == "__main__":
    main()
