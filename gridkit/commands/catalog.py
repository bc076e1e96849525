"""`gridkit catalog query|export|merge|calibrate|info`: work with catalogs written by `gridkit infer`.

    gridkit catalog query catalog.zarr "teff > 5000 and feh < -1 and f_reject < 0.5" --columns teff,teff_p16,feh --out sel.fits
    gridkit catalog export catalog.zarr --out all.parquet
    gridkit catalog merge run1.zarr run2.zarr --out merged.zarr
    gridkit catalog calibrate catalog.zarr --calibration my-calibration --out calibrated.fits   (or --in-place)
    gridkit catalog info catalog.zarr

Queries use a small, safe grammar (comparisons, and/or/not, parentheses, arithmetic, numbers, column
names); see docs/catalogs.md. Exports: .fits, .parquet, .vot, .csv (units kept, quantiles flattened).
"""
from __future__ import annotations

import argparse

from ._common import add_overwrite, add_progress, deprecated, names


def register(sub):
    p = sub.add_parser("catalog", help="query, export, merge, calibrate catalogs", description=__doc__.split("\n\n")[0])
    cmds = p.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)

    q = cmds.add_parser("query", help="stars satisfying an expression, printed or written to a file")
    q.add_argument("catalog")
    q.add_argument("expr", help='e.g. "teff > 5000 and feh < -1 and f_reject < 0.5"')
    q.add_argument("--columns", type=names, default=None, help="comma-separated columns (default: all), e.g. teff,teff_p16,teff_p84")
    q.add_argument("--out", default=None, help="write to .fits/.parquet/.vot/.csv instead of printing")
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--max-rows", type=int, default=20, help="rows to print without --out (default 20; -1: all)")
    q.set_defaults(func=_reading(_query, lambda args: [args.catalog]))

    e = cmds.add_parser("export", help="write a catalog (or the stars satisfying --where) as FITS/Parquet/VOTable/CSV")
    e.add_argument("catalog")
    e.add_argument("out_positional", nargs="?", default=None, help=argparse.SUPPRESS)  # deprecated: `export CATALOG OUT`
    e.add_argument("--out", default=None, help="output file (required); the format follows the suffix (.fits .parquet .vot .csv)")
    e.add_argument("--columns", type=names, default=None)
    e.add_argument("--where", default=None, help="a query expression")
    add_overwrite(e)
    e.set_defaults(func=_reading(_export, lambda args: [args.catalog], _export_out))

    m = cmds.add_parser("merge", help="merge the catalogs of several runs into one Zarr catalog")
    m.add_argument("catalogs", nargs="+", help="input catalogs (Zarr)")
    m.add_argument("--out", default=None, help="merged Zarr catalog to write (required; deprecated: the first positional argument)")
    m.add_argument("--on-duplicate", choices=("error", "first"), default="error", help="a star_id in several inputs: error (default) or keep the first")
    add_progress(m)
    add_overwrite(m)
    m.set_defaults(func=_reading(_merge, lambda args: args.catalogs, _merge_out))

    c = cmds.add_parser("calibrate", help="apply a stored, named Eq. B.1 bias calibration as new columns <label>_cal")
    c.add_argument("catalog")
    c.add_argument("calibration_positional", nargs="?", default=None, metavar="CALIBRATION", help="same as --calibration")
    c.add_argument("--calibration", default=None, help="a calibration name (searched in $GRIDKIT_CALIBRATIONS, ~/.config/gridkit/calibrations) or a JSON path")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, help="write the calibrated catalog here (.zarr or an export format); one of --out or --in-place is required")
    where.add_argument("--in-place", action="store_true", help="add the columns to CATALOG itself (the input is changed)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out, and <label>_cal columns an earlier calibration wrote")
    c.set_defaults(func=_reading(_calibrate, lambda args: [args.catalog]))

    i = cmds.add_parser("info", help="size, labels, columns and provenance of a catalog")
    i.add_argument("catalog")
    i.add_argument("--counts", action=argparse.BooleanOptionalAction, default=None,
                   help="count the stars flagged per quality column (reads those columns); default: only for catalogs of "
                        f"at most {COUNT_MAX:,} stars, so that info stays instant on a survey-size catalog")
    i.set_defaults(func=_reading(_info, lambda args: [args.catalog]))


def _reading(run, inputs, prepare=None):
    """`run(args)`, with a catalog whose chunks cannot be decoded named with the chunk (gridkit.store.reading);
    `prepare(args)` first (the deprecated spellings of an action's output)."""
    def wrapped(args):
        from gridkit.store import reading

        if prepare is not None:
            prepare(args)
        with reading(inputs(args), "catalog"):
            return run(args)

    return wrapped


def _query(args):
    import catalogs
    from gridkit.files import check_output

    if args.out:
        check_output(args.out, [args.catalog])
    cat = catalogs.open(args.catalog)
    sel = catalogs.query(cat, args.expr, columns=args.columns)
    n = sel.sizes["star"]
    if args.out:
        catalogs.export(sel, args.out, columns=args.columns, overwrite=args.overwrite)
        print(f"{n} star(s) of {cat.sizes['star']} written to {args.out}")
    else:
        shown = sel if args.max_rows < 0 else sel.isel(star=slice(0, args.max_rows))  # read only the rows printed
        catalogs.to_table(shown, args.columns).pprint(max_lines=-1, max_width=-1)
        more = f" (the first {shown.sizes['star']} shown; --max-rows -1: all)" if shown.sizes["star"] < n else ""
        print(f"{n} star(s) of {cat.sizes['star']}{more}")
    return 0


def _export_out(args):
    """--out, or the deprecated second positional argument."""
    from gridkit.errors import ConfigError

    if args.out_positional is not None:
        if args.out is not None:
            raise ConfigError(f"give the output once: --out {args.out} (not also {args.out_positional})")
        deprecated("`catalog export CATALOG OUT`", "`catalog export CATALOG --out OUT`")
        args.out = args.out_positional
    if args.out is None:
        raise ConfigError("--out is required: the file to write (.fits .parquet .vot .csv)")


def _merge_out(args):
    """--out, or the deprecated first positional argument (`catalog merge OUT CATALOG...`)."""
    from gridkit.errors import ConfigError

    if args.out is None:
        if len(args.catalogs) < 2:
            raise ConfigError("--out is required: the merged Zarr catalog to write")
        deprecated("`catalog merge OUT CATALOG...`", "`catalog merge CATALOG... --out OUT`")
        args.out, args.catalogs = args.catalogs[0], args.catalogs[1:]


def _export(args):
    import catalogs
    from gridkit.files import check_output

    check_output(args.out, [args.catalog])
    path = catalogs.export(catalogs.open(args.catalog), args.out, columns=args.columns, where=args.where, overwrite=args.overwrite)
    print(f"written: {path}")
    return 0


def _merge(args):
    import catalogs

    merged = catalogs.merge(args.catalogs, args.out, on_duplicate=args.on_duplicate, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"{merged.sizes['star']} star(s) from {len(args.catalogs)} catalog(s) written to {args.out}")
    return 0


def _calibrate(args):
    from catalogs.calibrate import calibrate_catalog
    from gridkit.errors import ConfigError

    if (args.calibration is None) == (args.calibration_positional is None):
        raise ConfigError("give the calibration once: --calibration NAME_OR_FILE")
    if args.out is None and not args.in_place:
        raise ConfigError(f"give --out PATH for the calibrated catalog, or --in-place to add the columns to {args.catalog} itself")
    columns = calibrate_catalog(args.catalog, args.calibration or args.calibration_positional, args.out, overwrite=args.overwrite)
    if args.out is None:
        print(f"added {', '.join(columns)} to {args.catalog}")
    else:
        print(f"calibrated catalog written: {args.out}")
    return 0


#: `catalog info` counts flagged stars by default up to this size (25M stars: 3 s of reading, against 0.9 s to open)
COUNT_MAX = 1_000_000


def _info(args):
    import catalogs

    cat = catalogs.open(args.catalog)
    n = int(cat.sizes["star"])
    counts = args.counts if args.counts is not None else n <= COUNT_MAX
    print(catalogs.info(cat, counts=counts))
    if not counts and args.counts is None:
        print(f"(flag counts not read for {n:,} stars: pass --counts)")
    return 0
