"""Options shared by several subcommands: one grammar for every command (README, "Command line").

    --out PATH          every output (file, store or directory)
    --chunk N           items (models or stars) per task and per Zarr chunk
    --workers / --threads-per-worker / --scheduler      where the tasks run (commands whose work is split in tasks)
    --seed N            every random draw (commands that draw)
    --overwrite         replace an existing output (staged: the old one stays until the new one is whole)
    --no-progress       no progress bar
    --device DEVICE     torch device: auto (CUDA when available), cpu, cuda, cuda:N (commands that run the network)

Old spellings stay for one release as hidden options that print a deprecation note on stderr (`add_deprecated`).
"""
from __future__ import annotations

import argparse
import re
import sys


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


class _Deprecated(argparse.Action):
    """An old spelling of an option, kept for one release: hidden from --help, it stores into the new option's
    `dest` and says on stderr which spelling replaces it."""

    def __init__(self, option_strings, dest, new, nargs=None, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(option_string, self.new)
        setattr(namespace, self.dest, values)


def deprecated(old: str, new: str) -> None:
    """The note an old spelling prints (stderr; the command goes on)."""
    print(f"gridkit: DeprecationWarning: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


def add_deprecated(parser, *old: str, dest: str, new: str, **kwargs) -> None:
    """Old option strings `old` for the option `new` (its `dest`); `kwargs`: its type/nargs."""
    parser.add_argument(*old, dest=dest, action=_Deprecated, new=new, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def add_chunk(parser, items: str, default, old: tuple[str, ...] = ()) -> None:
    """--chunk N: `items` per task and per Zarr chunk; `old`: deprecated spellings of the command."""
    shown = default if isinstance(default, str) else f"{default}"
    parser.add_argument("--chunk", type=int, default=None if isinstance(default, str) else default,
                        help=f"{items} per task and per Zarr chunk (default: {shown})")
    if old:
        add_deprecated(parser, *old, dest="chunk", new="--chunk", type=int)


def add_seed(parser, what: str = "random draws") -> None:
    parser.add_argument("--seed", type=int, default=0, help=f"seed of the {what} (default 0)")


def add_progress(parser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?$")


def device(text: str) -> str:
    if not DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: auto, cpu, cuda, cuda:N or mps")
    return text


def add_device(parser, default: str | None = "auto", help_default: str = "auto") -> None:
    """--device: the torch device of the network (`default` None: the config's, shown as `help_default`)."""
    parser.add_argument("--device", type=device, default=default, metavar="{auto,cpu,cuda,cuda:N}",
                        help=f"torch device: auto (CUDA when available), cpu, cuda, cuda:N (default: {help_default})")
