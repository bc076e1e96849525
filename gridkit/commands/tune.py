"""`gridkit tune`: hyperparameter search for the cINN (Optuna + Hyperband on the per-epoch validation loss),
in this process or over a Dask cluster (cinn.tune.tune)."""
from __future__ import annotations

from ._common import add_cluster_options, add_progress


def register(sub):
    parser = sub.add_parser(
        "tune",
        help="search the cINN's hyperparameters (Optuna, Hyperband pruning), optionally over a Dask cluster",
        description="Run an Optuna study (TPE sampler, HyperbandPruner on the validation NLL of every epoch, in physical label "
        "units so that label_margin can be searched) over lr, n_blocks, subnet_width, clamp and weight_decay (or --space), "
        "each trial a training of up to --epochs epochs. The study is kept in "
        "TUNE_DIR/study.journal (a rerun continues it); TUNE_DIR/best_config.json feeds `gridkit train --config`. See docs/evaluate.md.",
    )
    parser.add_argument("input", help="training cube flux(model, snr, wavelength) or noiseless grid (Zarr)")
    parser.add_argument("--out", required=True, help="tune directory (study journal, trials, best_config.json)")
    parser.add_argument("--trials", type=int, default=20, help="trials to run (default 20)")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs per trial, Hyperband's maximum resource (default 30)")
    parser.add_argument("--config", default=None, help="base config (JSON/YAML) the searched parameters replace (default: published defaults)")
    parser.add_argument("--batches-per-epoch", type=int, default=None, help="override the base config's batches per epoch")
    parser.add_argument("--space", default=None, help='search space JSON file: {"lr": ["float", 1e-4, 1e-2, true], "n_blocks": ["int", 4, 16, 2], '
                        '"subnet_width": ["categorical", [128, 256]]} (default: lr, n_blocks, subnet_width, clamp, weight_decay)')
    parser.add_argument("--min-epochs", type=int, default=1, help="epoch of Hyperband's first rung, its minimum resource (default 1); "
                        "raise it past ~3/(1 - d) steps when weight_average is searched: an average keeps its first weights for that long")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    add_cluster_options(parser, default_workers=0)  # each worker runs one trial at a time; a scheduler's workers must share the tune dir
    add_progress(parser)
    parser.set_defaults(func=_run)


def _run(args):
    import json
    from pathlib import Path

    from cinn.config import as_config
    from cinn.tune import tune

    from ..errors import ConfigError

    space = None
    if args.space:
        try:
            space = json.loads(Path(args.space).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--space {args.space}: cannot read a JSON search space: {exc}") from None
    config = as_config(args.config).replace(batches_per_epoch=args.batches_per_epoch)
    kwargs = dict(n_trials=args.trials, epochs=args.epochs, config=config, space=space, seed=args.seed, progress=not args.no_progress,
                  min_epochs=args.min_epochs)
    from ._common import client_from_args

    with client_from_args(args) as client:
        res = tune(args.input, args.out, client=client, **kwargs)
    print(f"{res['n_trials']} trials ({res['n_complete']} complete, {res['n_pruned']} pruned); table {res['trials_csv']}")
    if res["best_config"]:
        print(f"best validation NLL {res['best_value']:.4g} (trial {res['best_trial']}): {json.dumps(res['best_params'])}")
        print(f"wrote {res['best_config']}; train with: gridkit train CUBE --out MODEL_DIR --config {res['best_config']}")
    else:
        print("no trial completed: rerun with more --trials or --epochs")
    return 0
