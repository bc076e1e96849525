"""Options shared by several subcommands."""
from __future__ import annotations

import argparse
import contextlib


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Dask cluster (a LocalCluster by default)")
    group.add_argument("--workers", type=int, default=None, help="worker processes of the LocalCluster (default: number of cores)")
    group.add_argument("--threads-per-worker", type=int, default=1)
    group.add_argument("--scheduler", default=None, help="address (tcp://host:8786) or scheduler file of an existing cluster, e.g. one from dask-jobqueue")


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output (otherwise an existing output is resumed only if the same job made it)")


def cluster_from_args(args, resources=None):
    """A dask_client context for the cluster options."""
    from ..cluster import dask_client

    return dask_client(scheduler=args.scheduler, n_workers=args.workers, threads_per_worker=args.threads_per_worker, resources=resources)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


nullcontext = contextlib.nullcontext
