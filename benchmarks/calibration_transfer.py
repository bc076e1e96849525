"""Does an interval calibration fitted on one set of models hold on another? A permutation test (docs/science.md,
"Calibration": the test split of grid.zarr against extra.zarr).

The network's posterior is sampled once for every spectrum of both sets at each S/N (the in-bounds draws count, as in
the catalogs). The observed statistic: the calibration (`cinn.calibration.fit_draws`, scale + quantile remap) fitted on
the calibration set, applied to the test set; the mean over labels and S/N of the calibrated 68 % coverage, and the
number of (label, S/N) cells within 0.68 +- 0.05. The null distribution: the same after pooling both sets' models and
drawing, many times, a random "test" set of the test set's size (the rest calibrates). Under the hypothesis that the two
sets are exchangeable for this network (same recipe, prior and noise), the observed split is one such draw; a small
P(mean <= observed) says the test set's models are harder for the network than the calibration set's. The null also
gives the number of cells within +- 0.05 that a calibration right in expectation reaches on sets of this size.

    python -m benchmarks.calibration_transfer MODEL_DIR --test-cube cube.zarr --cal-cube extra_cube.zarr \
        --snr 50,100,250 --permutations 200 --out transfer.json

The test set is MODEL_DIR's test split in --test-cube; the calibration set is every model of --cal-cube that is not a
training or validation model of the network (by id and labels, as `gridkit calibrate-intervals` picks them). About
8 s per permutation for 161 + 342 models at 3 S/N on this 2-core machine, after ~2 min of sampling.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

LEVEL, TOLERANCE = 0.68, 0.05


def sample_set(post, cube_path, split: str, snrs, samples: int, seed: int) -> dict:
    """{snr: (draws (k, n, d), inside (k, n), truth (k, d))} of the models of `split` in the cube (`evaluate`'s choice)."""
    from cinn.evaluate.report import _open_cube, _select_spectra

    cube = _open_cube(post, Path(cube_path))
    spectra = _select_spectra(post, cube, cube_path, split, snrs)
    out = {}
    for s in spectra.snrs:
        summ = post.summarize(spectra.flux(cube, s), np.full(spectra.n, s), n=samples, seed=seed, keys=spectra.keys, calibrated=False,
                              keep=samples)
        out[float(s)] = (summ["samples"].values.astype(np.float64), summ["samples_in_bounds"].values, spectra.truth)
    return out


def coverage_after_fit(pool: dict, test: np.ndarray, labels, model_id: str) -> np.ndarray:
    """(n_snr, d) calibrated 68 % coverage on the models `test` (bool over the pool) of a calibration fitted on the rest."""
    from cinn import calibration

    rows = []
    for s, (draws, inside, truth) in pool.items():
        scale, pit = calibration.fit_draws(draws[~test], inside[~test], truth[~test])
        cal = calibration.Calibration(tuple(labels), np.array([s]), scale[None], model_id, int((~test).sum()), pit=pit[None])
        mapped = cal.apply_samples(draws[test], np.full(int(test.sum()), s), inside[test])
        q = calibration.quantiles_in_bounds(mapped, inside[test], [0.5 - LEVEL / 2, 0.5 + LEVEL / 2])
        rows.append(((truth[test] >= q[:, :, 0]) & (truth[test] <= q[:, :, 1])).mean(axis=0))
    return np.array(rows)


def main(argv=None) -> int:
    from tqdm.auto import tqdm

    import cinn

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--test-cube", required=True, help="cube holding the network's test split")
    p.add_argument("--cal-cube", required=True, help="cube of other models (the calibration set)")
    p.add_argument("--snr", default="50,100,250")
    p.add_argument("--permutations", type=int, default=200)
    p.add_argument("--samples", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)

    post = cinn.load(args.model_dir)
    post.calibration = None  # the raw posterior: the calibrations are fitted here
    snrs = [float(v) for v in args.snr.split(",")]
    t0 = time.perf_counter()
    test = sample_set(post, args.test_cube, "test", snrs, args.samples, args.seed)
    cal = sample_set(post, args.cal_cube, "test", snrs, args.samples, args.seed)  # another cube: its held-out models
    pool = {s: tuple(np.concatenate([a, b]) for a, b in zip(test[s], cal[s])) for s in snrs}
    n_test, n_all = test[snrs[0]][2].shape[0], pool[snrs[0]][2].shape[0]
    print(f"sampled {n_test} test + {n_all - n_test} calibration models x {len(snrs)} S/N in {time.perf_counter() - t0:.0f} s")

    def stats(mask):
        cov = coverage_after_fit(pool, mask, post.label_names, post.model_id)
        return cov, float(cov.mean()), int((np.abs(cov - LEVEL) <= TOLERANCE).sum())

    observed = np.zeros(n_all, dtype=bool)
    observed[:n_test] = True
    obs_cov, obs_mean, obs_cells = stats(observed)
    rng = np.random.default_rng(args.seed)
    means, cells = [], []
    for _ in tqdm(range(args.permutations), desc="permutations"):
        mask = np.zeros(n_all, dtype=bool)
        mask[rng.choice(n_all, n_test, replace=False)] = True
        _, m, c = stats(mask)
        means.append(m)
        cells.append(c)
    means, cells = np.array(means), np.array(cells)
    result = {
        "model_dir": str(args.model_dir), "n_test": n_test, "n_calibration": n_all - n_test, "snr": snrs, "permutations": args.permutations,
        "observed": {"mean_coverage": obs_mean, "cells_within": obs_cells, "coverage": obs_cov.tolist()},
        "null": {"mean_coverage_mean": float(means.mean()), "mean_coverage_std": float(means.std()),
                 "cells_within_median": float(np.median(cells)), "cells_within_5_95": [float(np.percentile(cells, 5)), float(np.percentile(cells, 95))],
                 "p_all_cells": float((cells == len(snrs) * len(post.label_names)).mean())},
        "p_mean_at_most_observed": float((means <= obs_mean).mean()),
        "p_cells_at_most_observed": float((cells <= obs_cells).mean()),
    }
    n_cells = len(snrs) * len(post.label_names)
    print(f"observed: mean calibrated 68 % coverage {obs_mean:.4f}, {obs_cells} of {n_cells} cells within {LEVEL} +- {TOLERANCE}")
    print(f"random splits ({args.permutations}): mean coverage {means.mean():.4f} +- {means.std():.4f}, P(<= observed) = "
          f"{result['p_mean_at_most_observed']:.3f}; cells within: median {np.median(cells):g} (5-95 %: "
          f"{np.percentile(cells, 5):g}-{np.percentile(cells, 95):g}), P(<= observed) = {result['p_cells_at_most_observed']:.3f}, "
          f"P(all {n_cells}) = {result['null']['p_all_cells']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
