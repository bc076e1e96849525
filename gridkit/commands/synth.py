"""`gridkit synth`: labels (drawn from a prior, or a table) -> base grid, with a chosen backend; a rerun with more
models grows the grid. `gridkit merge-grids`: grids made in pieces -> one grid."""
from __future__ import annotations

from ..synth.ranges import ARMS, DEFAULT_RANGES, DEFAULT_STEP, parse_ranges
from ._common import add_chunk, add_cluster_options, add_overwrite, add_progress


def register(sub):
    p = sub.add_parser("synth", help="synthesize a base grid (analytic model or Turbospectrum)",
                       description="Synthesize one spectrum per label set into a base grid (Zarr v3). Labels come from "
                                   "a prior (--prior, default the shared grid's FGK prior; --n-models, --seed) or a table (--labels). "
                                   "A rerun of the same command resumes; finished regions are not recomputed. With a prior, a rerun "
                                   "with a larger --n-models grows the grid: its first models are kept as they are.")
    p.add_argument("--backend", choices=("analytic", "turbospectrum"), default="analytic")
    p.add_argument("--out", required=True, help="output Zarr store (e.g. base.zarr)")
    src = p.add_argument_group("labels")
    src.add_argument("--n-models", type=int, default=None, help="draw this many label sets from the prior (turbospectrum: within the MARCS "
                                                                "coverage); rerun with more to grow the grid")
    src.add_argument("--seed", type=int, default=0, help="seed of the prior draws")
    src.add_argument("--prior", default=None, help="YAML/JSON prior: label distributions and populations (e.g. configs/priors/tsgrid-lte.yaml, "
                                                   "the default); a file of LabelPrior options is read too")
    src.add_argument("--labels", default=None, help="label table (CSV/ECSV/FITS) with the 13 label columns instead of the prior")
    wl = p.add_argument_group("wavelength grid")
    wl.add_argument("--wavelength-range", action="append", nargs="+", metavar="A B|ARM", default=None,
                    help=f"a range 'A B' (or 'A-B') in Angstrom or an arm name ({', '.join(ARMS)}); repeatable "
                         f"(default: {' and '.join(f'{lo:g}-{hi:g}' for lo, hi in DEFAULT_RANGES)})")
    wl.add_argument("--step", type=float, default=None, help=f"wavelength step in Angstrom (default {DEFAULT_STEP:g})")
    be = p.add_argument_group("backend options")
    be.add_argument("--linelist", action="append", default=None, help="line list (repeatable; analytic: one CSV in its own format)")
    be.add_argument("--atmosphere", default=None, help="model atmospheres (turbospectrum only)")
    add_chunk(p, "models", 16, old=("--models-per-region",))
    add_progress(p)
    add_overwrite(p)
    add_cluster_options(p, default_workers=0)
    p.set_defaults(func=_run)

    m = sub.add_parser("merge-grids", help="merge base grids made in pieces into one grid",
                       description="Concatenate base grids with the same wavelength grid, labels and backend recipe (e.g. pieces "
                                   "drawn with other seeds on other clusters) into one grid; models are renumbered 0..n-1 (--keep-ids: "
                                   "not), source/source_model say where each comes from; a label set in two inputs is refused.")
    m.add_argument("grids", nargs="+", help="input base grids (Zarr)")
    m.add_argument("--out", required=True, help="output Zarr store")
    m.add_argument("--keep-ids", action="store_true",
                   help="keep the inputs' model ids (refused where two inputs share one): a network trained on the first "
                        "grid keeps naming the same models, e.g. for a training with split_from")
    add_progress(m)
    add_overwrite(m)
    add_cluster_options(m, default_workers=0)
    m.set_defaults(func=_merge)


def _run(args):
    from .. import synth
    from ..errors import ConfigError
    from ..io import read_labels
    from ..schema import LABEL_NAMES

    if (args.labels is None) == (args.n_models is None):
        raise ConfigError("give exactly one of --n-models (draw from the prior) or --labels (a table)")
    if args.labels is not None and args.prior is not None:
        raise ConfigError("--prior is used with --n-models only (--labels gives the labels)")
    # each occurrence of the option is one range: its words ('6700 6720', 'red', '6700-6720') as one string
    ranges = parse_ranges([" ".join(group) for group in args.wavelength_range], "--wavelength-range") if args.wavelength_range else None
    backend = synth.get_backend(args.backend, wavelength_range=ranges, step=args.step, linelist=args.linelist, atmosphere=args.atmosphere)
    inputs = [f for f in (args.labels, args.prior, *(args.linelist or []), args.atmosphere) if f]
    from ._common import client_from_args

    if args.labels is not None:
        labels = read_labels(args.labels, numeric=LABEL_NAMES)
        labels = {k: v for k, v in labels.items() if k in LABEL_NAMES}
        with client_from_args(args) as client:
            report = synth.synthesize(labels, backend, args.out, models_per_region=args.chunk, overwrite=args.overwrite,
                                      progress=not args.no_progress, client=client, inputs=inputs)
    else:
        prior = synth.Prior.from_file(args.prior) if args.prior else synth.LabelPrior().to_prior()
        with client_from_args(args) as client:
            report = synth.synthesize_prior(prior, args.n_models, args.seed, backend, args.out, models_per_region=args.chunk,
                                            overwrite=args.overwrite, progress=not args.no_progress, client=client, inputs=inputs)
    if report.grown_from is not None:
        print(f"{report.path}: grown from {report.grown_from} to {report.n_models} models (the first {report.grown_from} kept)")
    print(f"{report.path}: {report.n_ok} of {report.n_models} models synthesized ({args.backend})" + (" (resumed)" if report.resumed else ""))
    for model, reason in list(report.not_ok.items())[:10]:
        print(f"  model {model}: {reason}")
    if len(report.not_ok) > 10:
        print(f"  ... {len(report.not_ok) - 10} more; see gridkit.synth.model_failures({str(report.path)!r})")
    return 0


def _merge(args):
    from ..synth import merge_grids
    from ._common import client_from_args

    with client_from_args(args) as client:
        merged = merge_grids(args.grids, args.out, keep_ids=args.keep_ids, overwrite=args.overwrite, progress=not args.no_progress, client=client)
    print(f"{args.out}: {merged.sizes['model']} models from {len(args.grids)} grids")
    return 0
