"""`gridkit ingest`: spectra files (Turbospectrum .spec, text, FITS) + a label table -> base grid."""
from __future__ import annotations

import math

from ._common import add_chunk, add_cluster_options, add_overwrite, add_progress


def register(sub):
    p = sub.add_parser("ingest", help="turn spectra files and a label table into a base grid",
                       description="Read spectra (Turbospectrum .spec, two-column text, 1-D FITS; files or directories) "
                                   "sharing one wavelength grid, label them from a table (CSV/ECSV/FITS) by an id column "
                                   "(file/filename/spectrum/id) or by order, and write a base grid (Zarr v3).")
    p.add_argument("spectra", nargs="+", help="spectrum files or directories of them")
    p.add_argument("--labels", required=True, help="label table with the 13 label columns")
    p.add_argument("--out", required=True, help="output Zarr store")
    p.add_argument("--id-column", default=None, help="table column naming each row's spectrum file (default: file, filename, spectrum or id if present; else by order)")
    p.add_argument("--format", choices=("turbospectrum", "text", "fits"), default=None, help="spectrum format (default: from the extension)")
    p.add_argument("--medium", choices=("air", "vacuum"), default="air")
    p.add_argument("--resolving-power", type=float, default=math.inf, help="resolving power of the spectra (default: inf, unbroadened)")
    add_chunk(p, "models", 256)
    add_progress(p)
    add_overwrite(p)
    add_cluster_options(p, default_workers=0)
    p.set_defaults(func=_run)


def _run(args):
    from ..io import ingest
    from ._common import client_from_args

    with client_from_args(args) as client:
        out = ingest(args.spectra, args.labels, args.out, overwrite=args.overwrite, id_column=args.id_column, format=args.format,
                     medium=args.medium, resolving_power=args.resolving_power, models_per_region=args.chunk,
                     progress=not args.no_progress, client=client)
    print(f"{out}: base grid written")
    return 0
