"""`gridkit synth`: labels (drawn from the prior, or a table) -> base grid, with a chosen backend."""
from __future__ import annotations

from ..synth.ranges import ARMS, DEFAULT_RANGES, DEFAULT_STEP, parse_ranges
from ._common import add_cluster_options, add_overwrite


def register(sub):
    p = sub.add_parser("synth", help="synthesize a base grid (analytic model or Turbospectrum)",
                       description="Synthesize one spectrum per label set into a base grid (Zarr v3). Labels come from "
                                   "the FGK prior (--n-models, --seed) or a table (--labels). A rerun of the same "
                                   "command resumes; finished regions are not recomputed.")
    p.add_argument("--backend", choices=("analytic", "turbospectrum"), default="analytic")
    p.add_argument("--out", required=True, help="output Zarr store (e.g. base.zarr)")
    src = p.add_argument_group("labels")
    src.add_argument("--n-models", type=int, default=None, help="draw this many label sets from the prior (turbospectrum: within the MARCS coverage)")
    src.add_argument("--seed", type=int, default=0, help="seed of the prior draws")
    src.add_argument("--prior", default=None, help="JSON/YAML file of LabelPrior options (ranges, alpha_slope, ...)")
    src.add_argument("--labels", default=None, help="label table (CSV/ECSV/FITS) with the 13 label columns instead of the prior")
    wl = p.add_argument_group("wavelength grid")
    wl.add_argument("--wavelength-range", action="append", nargs="+", metavar="A B|ARM", default=None,
                    help=f"a range 'A B' (or 'A-B') in Angstrom or an arm name ({', '.join(ARMS)}); repeatable "
                         f"(default: {' and '.join(f'{lo:g}-{hi:g}' for lo, hi in DEFAULT_RANGES)})")
    wl.add_argument("--step", type=float, default=None, help=f"wavelength step in Angstrom (default {DEFAULT_STEP:g})")
    be = p.add_argument_group("backend options")
    be.add_argument("--linelist", action="append", default=None, help="line list (repeatable; analytic: one CSV in its own format)")
    be.add_argument("--atmosphere", default=None, help="model atmospheres (turbospectrum only)")
    p.add_argument("--models-per-region", type=int, default=16, help="models per task and Zarr chunk")
    p.add_argument("--no-progress", action="store_true")
    add_overwrite(p)
    add_cluster_options(p, default_workers=0)
    p.set_defaults(func=_run)


def _run(args):
    from .. import synth
    from ..errors import ConfigError
    from ..io import read_labels
    from ..schema import LABEL_NAMES

    if (args.labels is None) == (args.n_models is None):
        raise ConfigError("give exactly one of --n-models (draw from the prior) or --labels (a table)")
    if args.labels is not None:
        labels = read_labels(args.labels, numeric=LABEL_NAMES)
    else:
        prior = synth.LabelPrior.from_file(args.prior) if args.prior else synth.LabelPrior()
        labels = synth.sample_labels(args.n_models, args.seed, prior)
    # each occurrence of the option is one range: its words ('6700 6720', 'red', '6700-6720') as one string
    ranges = parse_ranges([" ".join(group) for group in args.wavelength_range], "--wavelength-range") if args.wavelength_range else None
    backend = synth.get_backend(args.backend, wavelength_range=ranges, step=args.step, linelist=args.linelist, atmosphere=args.atmosphere)
    if args.labels is None and args.backend == "turbospectrum":  # the prior restricted to the MARCS coverage
        from ..synth.turbospectrum import sample_labels_within_coverage

        labels = sample_labels_within_coverage(args.n_models, args.seed, prior, backend)
    labels = {k: v for k, v in labels.items() if k in LABEL_NAMES}
    from ._common import client_from_args

    with client_from_args(args) as client:
        report = synth.synthesize(labels, backend, args.out, models_per_region=args.models_per_region, overwrite=args.overwrite,
                                  progress=not args.no_progress, client=client,
                                  inputs=[f for f in (args.labels, args.prior, *(args.linelist or []), args.atmosphere) if f])
    print(f"{report.path}: {report.n_ok} of {report.n_models} models synthesized ({args.backend})" + (" (resumed)" if report.resumed else ""))
    for model, reason in list(report.not_ok.items())[:10]:
        print(f"  model {model}: {reason}")
    if len(report.not_ok) > 10:
        print(f"  ... {len(report.not_ok) - 10} more; see gridkit.synth.model_failures({str(report.path)!r})")
    return 0
