"""`gridkit evaluate`: the accuracy and calibration report of a trained cINN (cinn.evaluate.report.evaluate),
and `gridkit evaluate bias`: the Eq. B.1 bias calibration of a catalog against reference labels
(catalogs.bias.fit_bias_calibration), stored for `gridkit catalog calibrate`."""
from __future__ import annotations

from ._common import add_deprecated, add_device, add_progress, add_seed, floats, names

USAGE = """gridkit evaluate MODEL_DIR CUBE --out REPORT_DIR [options]
       gridkit evaluate bias CATALOG REFERENCE --out CAL.json [--name NAME] [--label-names teff,logg,feh]"""


def register(sub):
    parser = sub.add_parser(
        "evaluate",
        usage=USAGE,
        help="evaluate a trained cINN on held-out spectra (tables, figures, calibration); or fit a bias calibration",
        description="MODEL_DIR CUBE: per S/N and label, mean residual and scatter of MAP - truth (Table A.1), NRMSE (Table A.2), "
        "median 68 % interval width (Fig. A.2), coverage of central intervals and SBC ranks, saliency (Figs. A.4, A.5) and, "
        "with --ppc N, the posterior predictive check (Fig. 7); tables as ECSV + CSV, figures as PNG, summary.md. "
        "'bias CATALOG REFERENCE': fit X_cat - X_ref = a Teff + b per label (Eq. B.1) over the stars matched by id and "
        "write the calibration JSON that `gridkit catalog calibrate` applies. See docs/evaluate.md.",
    )
    parser.add_argument("inputs", nargs="+", metavar="MODEL_DIR CUBE | bias CATALOG REFERENCE",
                        help="a model directory and a cube flux(model, snr, wavelength) with true labels; or 'bias', a catalog and a reference table")
    parser.add_argument("--out", required=True, help="report directory (evaluate) or calibration JSON file / directory (bias)")
    ev = parser.add_argument_group("evaluate")
    ev.add_argument("--samples", type=int, default=1024, help="posterior draws per spectrum (default 1024)")
    ev.add_argument("--split", default="test", choices=("test", "validation", "train", "all"),
                    help="models of the training split to evaluate, matched by id and labels (default test; a cube holding none of them "
                    "is another cube: its models are used except the network's training and validation models; all: every model)")
    ev.add_argument("--snr", type=floats, default=None, help="comma-separated S/N values of the cube to evaluate (default all)")
    ev.add_argument("--snr-figure", type=float, default=250.0, help="S/N of Fig. 5, the SBC histograms, saliency and PPC (nearest in the cube; default 250)")
    ev.add_argument("--max-spectra", type=int, default=None, help="evaluate the first N models of the split only")
    ev.add_argument("--ppc", type=int, default=0, metavar="N", help="posterior predictive check on N spectra (default 0: off)")
    ev.add_argument("--ppc-draws", type=int, default=16, help="posterior draws re-simulated per PPC spectrum (default 16)")
    ev.add_argument("--saliency-spectra", type=int, default=64, help="spectra of the saliency median (default 64; 0: no saliency)")
    add_seed(ev, "posterior draws")
    add_device(ev)
    ev.add_argument("--no-calibration", action="store_true", help="evaluate the raw network, without the model's interval calibration")
    add_progress(ev)
    bi = parser.add_argument_group("bias")
    bi.add_argument("--name", default=None, help="calibration name (default: the --out file's stem, or 'bias')")
    bi.add_argument("--label-names", type=names, default=None, help="comma-separated labels to calibrate (default: every label in both tables)")
    add_deprecated(bi, "--labels", dest="label_names", new="--label-names", type=names)
    bi.add_argument("--reference-columns", default=None, help="label=column pairs, e.g. feh=fe_h,teff=teff (default: the Gaia benchmark table's)")
    bi.add_argument("--catalog-id", default="star_id", help="id column of the catalog (default star_id)")
    bi.add_argument("--reference-ids", type=names, default=None, help="id columns of the reference tried in turn (default hip,hd,source_id_gaiadr3,tmass_id,star_id,id,name)")
    bi.add_argument("--overwrite", action="store_true", help="replace an existing calibration file")
    parser.set_defaults(func=_run)


def _run(args):
    from ..errors import ConfigError

    if args.inputs[0] == "bias":
        if len(args.inputs) != 3:
            raise ConfigError(f"usage: {USAGE.splitlines()[1].strip()} (got {len(args.inputs) - 1} positional argument(s) after 'bias')")
        return _bias(args, *args.inputs[1:])
    if len(args.inputs) != 2:
        raise ConfigError(f"usage: {USAGE.splitlines()[0]} (got {len(args.inputs)} positional argument(s): {' '.join(args.inputs)})")
    return _evaluate(args, *args.inputs)


def _evaluate(args, model_dir, cube):
    from cinn.evaluate.report import evaluate
    from cinn.train import resolve_device

    from ..errors import ConfigError

    if args.saliency_spectra < 0:
        raise ConfigError(f"--saliency-spectra must be >= 0, got {args.saliency_spectra}")
    written = evaluate(model_dir, cube, args.out, samples=args.samples, split=args.split, snr=args.snr, seed=args.seed,
                       max_spectra=args.max_spectra, figure_snr=args.snr_figure, saliency=args.saliency_spectra > 0,
                       saliency_spectra=max(args.saliency_spectra, 1), ppc=args.ppc, ppc_draws=args.ppc_draws, device=str(resolve_device(args.device)),
                       progress=not args.no_progress, calibrated=not args.no_calibration)
    print(f"wrote {len(written)} files to {args.out}; see {written['summary_md']}")
    return 0


def _bias(args, catalog, reference):
    from pathlib import Path

    from catalogs.bias import fit_bias_calibration, write_calibration

    from ..errors import ConfigError

    refcols = None
    if args.reference_columns:
        try:
            refcols = dict(pair.split("=", 1) for pair in names(args.reference_columns))
        except ValueError:
            raise ConfigError(f"--reference-columns must be label=column pairs, got {args.reference_columns!r}") from None
    out = Path(args.out)
    name = args.name or (out.stem if out.suffix == ".json" else "bias")
    cal = fit_bias_calibration(catalog, reference, name=name, labels=args.label_names, reference_columns=refcols,
                               catalog_id=args.catalog_id, reference_ids=args.reference_ids, reference_name=str(reference))
    path = write_calibration(cal, out, overwrite=args.overwrite)
    print(f"Eq. B.1 calibration {cal['name']!r} from {cal['n']} matched stars ({cal['matched_on']}):")
    for lab, fit in cal["fit"].items():
        print(f"  {lab:8s} a = {fit['a']:+.4g} ± {fit['a_err']:.2g} /K   b = {fit['b']:+.4g} ± {fit['b_err']:.2g}   "
              f"rms {fit['rms_before']:.3g} -> {fit['rms_after']:.3g}")
    print(f"wrote {path}; apply with: gridkit catalog calibrate CATALOG --calibration {path} --out CALIBRATED.zarr (or --in-place)")
    return 0
