"""`gridkit mock-survey cube.zarr --snr 250 --out survey.zarr`: a survey from a degraded grid that keeps the
true labels (`true_<label>`) for evaluation; the test split of `--model` by default, else every model."""
from __future__ import annotations

from ._common import (
    add_chunk,
    add_cluster_options,
    add_overwrite,
    add_progress,
    add_seed,
)


def register(sub):
    p = sub.add_parser("mock-survey", help="make a survey with known labels from a degraded grid", description=__doc__)
    p.add_argument("cube", help="degraded cube flux(model, snr, wavelength), or a noiseless grid (noise is then added)")
    p.add_argument("--out", required=True, help="survey Zarr store to write")
    p.add_argument("--snr", type=float, default=250.0, help="S/N per Angstrom (must be one of the cube's; default 250)")
    p.add_argument("--model", "--model-dir", dest="model_dir", default=None, help="take the models of this model directory's recorded split")
    p.add_argument("--split", choices=("train", "test", "validation"), default="test", help="which split of --model (default: test)")
    add_seed(p, "noise (noiseless grids only)")
    add_chunk(p, "stars", "1024")
    add_progress(p)
    add_overwrite(p)
    add_cluster_options(p, default_workers=0)
    p.set_defaults(func=_run)


def _run(args):
    from cinn.survey import mock_survey

    from ._common import client_from_args

    with client_from_args(args) as client:
        out = mock_survey(args.cube, args.out, snr=args.snr, split=args.split, model_dir=args.model_dir, seed=args.seed,
                          chunk=args.chunk, overwrite=args.overwrite, client=client, progress=not args.no_progress)
    print(f"survey written: {out}")
    return 0
