"""`gridkit infer model_dir survey.zarr --out catalog.zarr`: posterior summaries of every star of a survey.

Tasks over chunks of stars on a Dask cluster (a LocalCluster by default, `--scheduler` for an existing one,
e.g. from dask-jobqueue with one worker per GPU started with `--resources GPU=1`); the model is loaded once
per worker; rerunning the same command resumes and skips finished chunks. See docs/survey.md.
"""
from __future__ import annotations

import shlex
import sys

from ._common import add_chunk, add_cluster_options, add_device, add_overwrite, add_progress


def register(sub):
    p = sub.add_parser("infer", help="infer stellar labels for every star of a survey (restartable)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="model directory written by `gridkit train`")
    p.add_argument("survey", help="survey store (from `gridkit fourmostify` or `gridkit mock-survey`)")
    p.add_argument("--out", required=True, help="catalog Zarr store to write (resumed if the same job made it)")
    p.add_argument("--samples", type=int, default=4096, help="posterior samples per star (default: 4096)")
    add_chunk(p, "stars", "the survey's chunk, at most 1024")
    p.add_argument("--seed", type=int, default=0, help="random seed; the catalog is a function of (model, survey, samples, seed)")
    add_device(p, help_default="auto: CUDA on workers with the GPU resource")
    p.add_argument("--gpu-workers", action="store_true", help="LocalCluster only: give each local worker the resource GPU=1 (one worker per GPU)")
    p.add_argument("--missing", choices=("flag", "impute"), default="impute",
                   help="spectra with missing (NaN) pixels: 'flag' leaves them uninferred (flag_missing_flux), 'impute' fills those "
                        "pixels with the training mean flux (the rule training's masking augmentation follows) and counts them in n_imputed (default: impute)")
    p.add_argument("--no-calibration", action="store_true",
                   help="do not apply the model's interval calibration (model_dir/calibration.json, from `gridkit calibrate-intervals`)")
    p.add_argument("--keep-samples", type=int, default=0, metavar="N",
                   help="store N of each star's posterior draws in the catalog, samples(star, draw, label) float32 (calibrated like "
                        "the quantiles; all N, samples_in_bounds marks those the quantiles count); default 0: none")
    add_progress(p)
    add_cluster_options(p, default_workers="auto")
    p.epilog = "--workers 0 runs the tasks on --threads-per-worker threads of this process, without a Dask cluster."
    add_overwrite(p)
    p.set_defaults(func=_run)


def _run(args, argv=None):
    from cinn.survey import infer

    from ..errors import ConfigError
    from ._common import client_from_args

    command = "gridkit " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if args.gpu_workers and (args.workers == 0 or args.scheduler):
        raise ConfigError("--gpu-workers needs a LocalCluster (--workers >= 1 or auto, no --scheduler)")
    with client_from_args(args, resources={"GPU": 1} if args.gpu_workers else None) as client:
        out = infer(args.model_dir, args.survey, args.out, samples=args.samples, chunk=args.chunk, seed=args.seed, client=client,
                    overwrite=args.overwrite, progress=not args.no_progress, command=command, device=args.device,
                    n_threads=max(1, args.threads_per_worker), missing=args.missing, calibrated=not args.no_calibration,
                    keep_samples=args.keep_samples)
    print(f"catalog written: {out}")
    return 0
