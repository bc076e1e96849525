"""`gridkit fourmostify`: observed spectra of higher resolution to a survey store on the instrument grid."""
from __future__ import annotations

from ._common import add_cluster_options, add_overwrite, names


def register(sub):
    parser = sub.add_parser(
        "fourmostify",
        help="convolve observed spectra down to an instrument, rebin to its arms, optionally add noise; report missing pixels",
        description="Observed spectra (text two-column or FITS 1-D) to a survey store flux(star, wavelength), snr(star), "
        "star_id(star), n_missing(star). Missing pixels (NaN, gaps, outside coverage) stay NaN and are reported.",
    )
    parser.add_argument("spectra", nargs="+", help="spectrum files")
    parser.add_argument("--out", required=True, help="output survey store (Zarr v3)")
    parser.add_argument("--input-resolving-power", type=float, default=None, help="native resolving power of the spectra (required unless the files state it)")
    parser.add_argument("--instrument", default="4most-hr")
    parser.add_argument("--arms", default=None, help="comma-separated arms (default for 4most-hr: green,red)")
    parser.add_argument("--snr", type=float, default=None, help="add noise to reach this S/N (default: no noise; S/N estimated with DER_SNR)")
    parser.add_argument("--input-snr", type=float, default=None, help="S/N of the input (the added noise is the quadrature difference)")
    parser.add_argument("--snr-per-pixel", action="store_true", help="S/N values per pixel instead of per Angstrom")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--star-ids", type=names, default=None, help="comma-separated star ids (default: file names)")
    parser.add_argument("--region-size", type=int, default=64, help="stars per chunk and per task")
    parser.add_argument("--report", default=None, help="also write the per-star missing-pixel report to this CSV file")
    parser.add_argument("--no-progress", action="store_true")
    add_cluster_options(parser, default_workers=0)  # spectra are small: threads of this process
    add_overwrite(parser)
    parser.set_defaults(func=_run)


def _run(args):
    import xarray as xr

    from ..degradation import PER_ANGSTROM, PER_PIXEL
    from ..observed import format_ranges, fourmostify_store, missing_report
    from ..files import atomic_output, check_output
    from ._common import client_from_args

    if args.report:
        check_output(args.report, [*args.spectra, args.out], "--report")
    with client_from_args(args) as client:
        out = fourmostify_store(
            args.spectra, args.out, args.input_resolving_power, instrument=args.instrument, arms=args.arms, snr=args.snr,
            input_snr=args.input_snr, seed=args.seed, snr_convention=PER_PIXEL if args.snr_per_pixel else PER_ANGSTROM,
            star_ids=args.star_ids, region_size=args.region_size, client=client, overwrite=args.overwrite, progress=not args.no_progress,
        )
    report = missing_report(xr.open_zarr(out, consolidated=False))
    n_pix = xr.open_zarr(out, consolidated=False).sizes["wavelength"]
    print(f"wrote {out}: {len(report)} spectra, {n_pix} pixels each")
    print("star_id, missing pixels, missing ranges [A]")
    for row in report:
        print(f"{row['star_id']}, {row['n_missing']}, {format_ranges(row['ranges'])}")
    if args.report:
        import csv

        with atomic_output(args.report) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["star_id", "n_missing", "missing_ranges_angstrom"])
            for row in report:
                w.writerow([row["star_id"], row["n_missing"], format_ranges(row["ranges"])])
    return 0
