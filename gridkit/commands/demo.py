"""`gridkit demo`: the whole chain on the built-in analytic generator (see gridkit.demo)."""
from __future__ import annotations

from ._common import add_progress, floats, names


def register(sub):
    p = sub.add_parser(
        "demo",
        help="run the whole chain on the built-in default: synth -> degrade -> train -> evaluate -> mock survey -> infer -> catalog",
        description="Synthesize an analytic grid, degrade it to 4MOST HR, train a CPU-sized cINN, evaluate it, run a mock "
                    "survey through `infer` on a Dask LocalCluster, query the catalog; prints a results table and writes "
                    "figures. About 12 minutes on 2 cores with the defaults; rerunning resumes.",
    )
    p.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    p.add_argument("--models", type=int, default=None, help="models in the grid (default 2000)")
    p.add_argument("--snr", type=floats, default=None, help="S/N per Angstrom of the training cube, comma-separated (default 20,50,100,250)")
    p.add_argument("--arms", type=names, default=None, help="4MOST HR arms (default green,red)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 25; early stopping on the validation loss)")
    p.add_argument("--batches-per-epoch", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--samples", type=int, default=None, help="posterior draws per star of the survey (default 1024; published 4096)")
    p.add_argument("--workers", type=int, default=None, help="Dask LocalCluster workers (default 2)")
    p.add_argument("--scheduler", default=None, help="address or scheduler file of an existing Dask cluster")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--sun", default=None, help="an observed spectrum (text or FITS) to fourmostify and infer; 'none' to skip "
                                               "(default: the shared UVES Sun when present)")
    p.add_argument("--quick", action="store_true", help="a one-minute run on a few dozen models and a tiny network (a smoke test)")
    p.add_argument("--overwrite", action="store_true", help="start afresh (default: resume an existing --out)")
    add_progress(p)
    p.set_defaults(func=_run)


def _run(args):
    from ..demo import DemoConfig, run_demo

    over = {k: v for k, v in {
        "n_models": args.models, "snr": None if args.snr is None else tuple(args.snr), "arms": None if args.arms is None else tuple(args.arms),
        "epochs": args.epochs, "batches_per_epoch": args.batches_per_epoch, "batch_size": args.batch_size,
        "infer_samples": args.samples, "workers": args.workers, "seed": args.seed,
        "sun": None if args.sun == "none" else args.sun,
    }.items() if v is not None or (k == "sun" and args.sun == "none")}
    cfg = DemoConfig.quick(**over) if args.quick else DemoConfig(**over)
    run_demo(args.out, cfg, scheduler=args.scheduler, overwrite=args.overwrite, progress=not args.no_progress)
    return 0
