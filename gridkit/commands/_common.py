"""Options shared by several subcommands."""
from __future__ import annotations

import argparse


def add_cluster_options(parser: argparse.ArgumentParser, default_workers: int | str) -> None:
    """--workers / --threads-per-worker / --scheduler; `default_workers` is the command's default (see
    `gridkit.cluster.client_for`: 0 runs in this process, "auto" starts a LocalCluster of one worker per core)."""
    default = "this process, no cluster" if default_workers == 0 else (
        "a LocalCluster of one worker per core" if default_workers == "auto" else f"a LocalCluster of {default_workers} workers")
    group = parser.add_argument_group("Dask cluster")
    group.add_argument("--workers", type=_workers, default=None,
                       help=f"0: run the tasks on threads of this process; N: a LocalCluster of N worker processes; auto: one per core (default: {default})")
    group.add_argument("--threads-per-worker", type=int, default=1, help="threads of each worker (of this process with --workers 0)")
    group.add_argument("--scheduler", default=None, help="address (tcp://host:8786) or scheduler file of an existing cluster, e.g. one from dask-jobqueue")
    parser.set_defaults(default_workers=default_workers)


def _workers(text: str):
    return text if text == "auto" else int(text)


def client_from_args(args, resources=None):
    """The client of the cluster options (a context; None for this process), by the one rule of
    `gridkit.cluster.client_for`."""
    from ..cluster import client_for

    return client_for(args.workers, args.scheduler, default_workers=args.default_workers, threads_per_worker=args.threads_per_worker,
                      resources=resources)


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output (otherwise an existing output is resumed only if the same job made it)")


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]
