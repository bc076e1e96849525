"""The `gridkit` command: a thin layer over the Python API. Each subcommand lives in
`gridkit/commands/<name>.py` with `register(subparsers)`; heavy imports happen inside the command."""
from __future__ import annotations

import argparse
import importlib
import platform
import subprocess
import sys
from pathlib import Path

from .errors import GridkitError

COMMANDS = ("synth", "ingest", "degrade", "fourmostify", "train", "infer", "mock_survey", "catalog", "evaluate", "calibrate_intervals", "ensemble", "tune", "show", "demo")

#: Distributions whose versions `gridkit --version` reports: those a catalog's numbers depend on.
VERSION_PACKAGES = ("torch", "FrEIA", "zarr", "xarray", "dask", "numpy", "astropy")


def git_commit(root=None) -> str | None:
    """The short commit of the checkout gridkit runs from: `git rev-parse --short HEAD` in the package's parent
    directory (or `root`) when it has a `.git`; None when it is no checkout, or git is missing or fails."""
    root = Path(__file__).resolve().parent.parent if root is None else Path(root)
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def version_report() -> str:
    """`gridkit <version> (git <commit>)`, then one line `<package> <version>` per VERSION_PACKAGES (read from the
    installed metadata, nothing imported; "not installed" when absent) and Python's."""
    from importlib import metadata

    from . import __version__

    commit = git_commit()
    lines = [f"gridkit {__version__}" + (f" (git {commit})" if commit else "")]
    for name in VERSION_PACKAGES:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} not installed")
    lines.append(f"python {platform.python_version()}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """--version: print `version_report()` (computed only when asked) and exit 0."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_report())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridkit", description="Synthetic spectral grids to stellar-label catalogs.")
    parser.add_argument("--version", action=_VersionAction,
                        help="print the versions of gridkit (and its git commit in a checkout), torch, FrEIA, zarr, xarray, dask, numpy, astropy; exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"gridkit.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GridkitError as exc:
        print(f"gridkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gridkit {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
