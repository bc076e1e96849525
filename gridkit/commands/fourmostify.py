"""`gridkit fourmostify`: observed spectra (4MOST L1, ESO SDP, FITS, text; globs of thousands) to a survey store on the
instrument's pixels: masked, in the grid's frame, at rest, continuum-normalised, with their S/N (see docs/observed.md)."""
from __future__ import annotations

from ._common import (
    add_chunk,
    add_cluster_options,
    add_overwrite,
    add_progress,
    add_seed,
    names,
)


def register(sub):
    parser = sub.add_parser(
        "fourmostify",
        help="prepare observed spectra for the network: masks, frame, RV, resolution, pixels, continuum, S/N -> a survey store",
        description="Observed spectra (4MOST L1 single or multi-spectrum files, ESO SDP 1-D spectra, FITS, text, Turbospectrum) to "
        "a survey store flux(star, wavelength), star_id, snr, rv, rv_err, n_masked, n_missing, ra, dec, mjd. Masked pixels "
        "(quality flags, NaN, gaps, outside coverage) stay NaN and are reported. A file that cannot be read is named and left "
        "out (--stop-on-bad-file: refuse instead); nothing is written before every file is read.",
    )
    parser.add_argument("spectra", nargs="+", help="spectrum files (shell globs expanded; quoted globs are expanded here)")
    parser.add_argument("--out", required=True, help="output survey store (Zarr v3)")
    parser.add_argument("--input-resolving-power", type=float, default=None, help="native resolving power of the spectra (required unless the files state it)")
    parser.add_argument("--instrument", default="4most-hr")
    parser.add_argument("--arms", default=None, help="comma-separated arms (default for 4most-hr: green,red)")
    parser.add_argument("--snr", type=float, default=None, help="add noise to reach this S/N (default: no noise; S/N estimated with DER_SNR)")
    parser.add_argument("--input-snr", type=float, default=None, help="S/N of the input (the added noise is the quadrature difference)")
    parser.add_argument("--snr-per-pixel", action="store_true", help="S/N values per pixel instead of per Angstrom")
    add_seed(parser, "added noise")
    parser.add_argument("--star-ids", type=names, default=None, help="comma-separated star ids (default: file names)")
    add_chunk(parser, "stars", 64, old=("--region-size",))
    parser.add_argument("--report", default=None, help="also write the per-star missing-pixel report to this CSV file")
    prep = parser.add_argument_group("preparation")
    prep.add_argument("--rv", choices=("none", "measure", "header"), default="none",
                      help="measure: the RV by cross-correlation and chi-square against templates, removed; header: the file's RV keyword; "
                           "none (default): the spectra are at rest")
    prep.add_argument("--rv-range", type=float, nargs=2, default=(-500.0, 500.0), metavar=("LO", "HI"), help="km/s searched (default -500 500)")
    prep.add_argument("--no-barycentric", action="store_true", help="report a topocentric spectrum's RV as measured (default: barycentric)")
    prep.add_argument("--normalise", choices=("none", "continuum"), default="none",
                      help="continuum: the continuum operator on the instrument's pixels (train on a cube degraded with --normalise "
                           "continuum); none (default): the flux is continuum-normalised already")
    prep.add_argument("--mask-tellurics", action="store_true", help="mask the telluric bands in the arms (observed frame)")
    prep.add_argument("--mask-hydrogen", action="store_true", help="mask the cores of the hydrogen lines (star's frame)")
    prep.add_argument("--mask", default=None, help="more intervals to mask, observed frame, A: '6860-6880,7590-7700'")
    prep.add_argument("--stop-on-bad-file", action="store_true", help="refuse the whole set when a file cannot be read (default: leave it out)")
    prep.add_argument("--failures", default=None, help="write the files left out, with their problem, to this CSV file")
    add_progress(parser)
    add_cluster_options(parser, default_workers=0)  # spectra are small: threads of this process
    add_overwrite(parser)
    parser.set_defaults(func=_run)


def _intervals(text):
    from ..errors import ConfigError

    out = []
    for part in (text or "").split(","):
        if part.strip():
            try:
                lo, hi = (float(v) for v in part.split("-"))
            except ValueError:
                raise ConfigError(f"--mask: {part.strip()!r} is not an interval LO-HI in Angstrom") from None
            out.append((lo, hi))
    return tuple(out)


def _paths(items):
    import glob

    from ..errors import GridError

    out = []
    for item in items:
        found = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
        if not found:
            raise GridError(f"no file matches {item!r}")
        out.extend(found)
    return out


def _run(args):
    import csv
    import json

    import xarray as xr

    from ..degradation import PER_ANGSTROM, PER_PIXEL
    from ..files import atomic_output, check_output
    from ..observed import (
        PrepareOptions,
        format_ranges,
        fourmostify_store,
        missing_report,
    )
    from ._common import client_from_args

    spectra = _paths(args.spectra)
    for path, what in ((args.report, "--report"), (args.failures, "--failures")):
        if path:
            check_output(path, [*spectra, args.out], what)
    prepare = PrepareOptions(normalise=args.normalise, rv=args.rv, rv_range=tuple(args.rv_range), barycentric=not args.no_barycentric,
                             mask_tellurics=args.mask_tellurics, mask_hydrogen=args.mask_hydrogen, mask_intervals=_intervals(args.mask))
    with client_from_args(args) as client:
        out = fourmostify_store(
            spectra, args.out, args.input_resolving_power, instrument=args.instrument, arms=args.arms, snr=args.snr,
            input_snr=args.input_snr, seed=args.seed, snr_convention=PER_PIXEL if args.snr_per_pixel else PER_ANGSTROM,
            star_ids=args.star_ids, region_size=args.chunk, client=client, overwrite=args.overwrite, progress=not args.no_progress,
            prepare=prepare, skip_bad_files=not args.stop_on_bad_file,
        )
    survey = xr.open_zarr(out, consolidated=False)
    report = missing_report(survey)
    failed = json.loads(survey.attrs.get("failed_files", "[]"))
    print(f"wrote {out}: {len(report)} star(s) from {len(spectra) - len(failed)} file(s), {survey.sizes['wavelength']} pixels each")
    print("star_id, missing pixels, missing ranges [A]")
    for row in report[:20]:
        print(f"{row['star_id']}, {row['n_missing']}, {format_ranges(row['ranges'])}")
    if len(report) > 20:
        print(f"... {len(report) - 20} more (--report FILE writes them all)")
    for path, problem in failed[:20]:
        print(f"left out: {path}: {problem}")
    if failed:
        print(f"{len(failed)} file(s) could not be read and were left out" + (f"; listed in {args.failures}" if args.failures else " (--failures FILE lists them)"))
    if args.report:
        with atomic_output(args.report) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["star_id", "n_missing", "missing_ranges_angstrom"])
            for row in report:
                w.writerow([row["star_id"], row["n_missing"], format_ranges(row["ranges"])])
    if args.failures:
        with atomic_output(args.failures) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "problem"])
            w.writerows(failed)
    return 0
