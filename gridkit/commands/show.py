"""`gridkit show catalog.zarr STAR_ID --out star.png`: one star's posterior as a corner plot, and its spectrum against
posterior-predictive spectra (`star_spectrum.png`).

The draws are those kept in the catalog (`gridkit infer --keep-samples N`), else re-drawn from the model and the survey
the catalog records, exactly as `gridkit infer` drew them (same seed, same key). See docs/survey.md.
"""
from __future__ import annotations

from ._common import names


def register(sub):
    p = sub.add_parser("show", help="corner plot and posterior-predictive spectrum of one catalog star", description=__doc__.split("\n\n")[0])
    p.add_argument("catalog", help="catalog Zarr store written by `gridkit infer`")
    p.add_argument("star_id", help="the star's star_id")
    p.add_argument("--model", default=None, help="model directory that made the catalog (default: the catalog's attr model_dir)")
    p.add_argument("--out", required=True, help="corner plot PNG; the spectrum figure goes beside it as <stem>_spectrum.png")
    p.add_argument("--label-names", type=names, default=None, help="comma-separated labels of the corner plot (default: teff,logg,feh,vmic,vbroad where present)")
    p.add_argument("--no-spectrum", action="store_true", help="only the corner plot")
    p.add_argument("--draws", type=int, default=16, help="posterior draws re-simulated for the predictive spectra (default: 16)")
    p.set_defaults(func=_run)


def _run(args):
    from cinn.evaluate.star import show_star
    from gridkit.files import check_output

    check_output(args.out, [args.catalog])
    done = show_star(args.catalog, args.star_id, args.out, model_dir=args.model, labels=args.label_names, spectrum=not args.no_spectrum,
                     n_draws=args.draws)
    print(f"corner plot ({done['n_draws']} draws, {done['source']}): {done['corner']}")
    if done["spectrum"]:
        print(f"spectrum against posterior-predictive spectra: {done['spectrum']}")
    for note in done["notes"]:
        print(note)
    return 0
