"""`gridkit train train.zarr --out model_dir`: train the cINN on a degraded cube (or a noiseless grid, with noise
drawn on the fly) and write a model directory (safetensors + JSON); `--resume` continues from its last checkpoint
with results identical to an uninterrupted run; `--overwrite` replaces an existing model directory only once the
new model is complete (trained aside until then). See docs/cinn.md.
"""
from __future__ import annotations

from pathlib import Path

from ._common import add_device, add_progress


def register(sub):
    p = sub.add_parser("train", help="train the cINN on a training cube (restartable with --resume)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("cube", help="training cube flux(model, snr, wavelength) or noiseless grid flux(model, wavelength) (Zarr)")
    p.add_argument("--out", required=True, help="model directory to write (or to continue with --resume)")
    p.add_argument("--config", default=None, help="JSON or YAML file of cINN config keys (default: the published configuration)")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (overrides the config; with --resume: the new total)")
    p.add_argument("--batches-per-epoch", type=int, default=None, help="batches per epoch (overrides the config)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per batch (overrides the config)")
    p.add_argument("--seed", type=int, default=None, help="seed of the batches and the noise drawn in training (overrides the config's seed; default 0)")
    p.add_argument("--init-seed", type=int, default=None, help="seed of the initial weights (overrides the config's init_seed; default 0): "
                                                               "with --seed, another member of an ensemble of seeds")
    add_device(p, default=None, help_default="the config's, auto")
    p.add_argument("--resume", action="store_true", help="continue from out/checkpoint (identical to an uninterrupted run; with "
                                                         "the checkpoint's config, seed and device)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory: the new model is trained aside "
                                                            "and replaces it only once complete (not with --resume)")
    add_progress(p)
    p.set_defaults(func=_run)


def _run(args):
    import cinn

    from ..errors import ConfigError

    config = args.config
    over = {k: v for k, v in {"seed": args.seed, "init_seed": args.init_seed, "device": args.device}.items() if v is not None}
    if over and args.resume:
        raise ConfigError(f"--resume continues with the checkpoint's config; drop {', '.join('--' + k.replace('_', '-') for k in over)}")
    if over:  # the config file stays an input: never written into, onto or around
        from cinn.config import as_config

        from ..files import check_output
        from ..store import _aside

        check_output(args.out, [args.cube, args.config], what="out_dir (--out)")
        if args.overwrite:
            check_output(_aside(Path(args.out), "overwrite"), [args.cube, args.config], what="out_dir (--out) staging directory")
        config = as_config(args.config).replace(**over)
    out = cinn.train(args.cube, args.out, config=config, epochs=args.epochs, batches_per_epoch=args.batches_per_epoch,
                     batch_size=args.batch_size, resume=args.resume, progress=not args.no_progress,
                     overwrite=args.overwrite)
    print(f"model written: {out}")
    return 0
