"""`gridkit degrade`: a base grid to a training cube with the published chain (see gridkit.degrade)."""
from __future__ import annotations

from ._common import (
    add_chunk,
    add_cluster_options,
    add_overwrite,
    add_progress,
    add_seed,
    floats,
)


def register(sub):
    from ..degradation import DEFAULT_SNR

    parser = sub.add_parser(
        "degrade",
        help="degrade a base grid to an instrument: R=80000 -> 0.025 A -> rotation -> instrument R -> arm pixels -> noise",
        description="Degrade a base grid flux(model, wavelength) into a cube flux(model, snr, wavelength), restartably "
        "(rerun the same command to resume).",
    )
    parser.add_argument("input", help="base grid (Zarr)")
    parser.add_argument("--out", required=True, help="output cube (Zarr v3)")
    parser.add_argument("--instrument", default="4most-hr", help="instrument name (default 4most-hr; also 4most-lr)")
    parser.add_argument("--arms", default=None, help="comma-separated arms (default for 4most-hr: green,red)")
    parser.add_argument("--snr", type=floats, default=list(DEFAULT_SNR), help="comma-separated S/N values (default: the published 19, per Angstrom)")
    parser.add_argument("--snr-per-pixel", action="store_true", help="read --snr as S/N per pixel instead of per Angstrom")
    parser.add_argument("--no-noise", action="store_true", help="write flux(model, wavelength) without noise")
    parser.add_argument("--normalise", choices=("none", "continuum"), default="none",
                        help="continuum: apply the continuum operator (gridkit.kernels.continuum) on the instrument's pixels, as "
                             "`gridkit fourmostify --normalise continuum` does to observed spectra (default none: the grid's own)")
    add_seed(parser, "noise (a function of seed, model id and S/N)")
    parser.add_argument("--input-resolving-power", type=float, default=None, help="resolving power of the input (default: its attrs, inf)")
    add_chunk(parser, "models", 16, old=("--region-size",))
    add_progress(parser)
    add_cluster_options(parser, default_workers="auto")
    add_overwrite(parser)
    parser.set_defaults(func=_run)


def _run(args):
    from ..degradation import PER_ANGSTROM, PER_PIXEL, degrade_store
    from ._common import client_from_args

    with client_from_args(args) as client:
        out = degrade_store(
            args.input, args.out, args.instrument, args.arms, None if args.no_noise else args.snr, seed=args.seed,
            snr_convention=PER_PIXEL if args.snr_per_pixel else PER_ANGSTROM, region_size=args.chunk, client=client,
            overwrite=args.overwrite, progress=not args.no_progress, input_resolving_power=args.input_resolving_power,
            normalise=args.normalise,
        )
    print(f"wrote {out}")
    return 0
