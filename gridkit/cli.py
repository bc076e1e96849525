"""The `gridkit` command: a thin layer over the Python API. Each subcommand lives in
`gridkit/commands/<name>.py` with `register(subparsers)`; heavy imports happen inside the command."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import GridkitError

COMMANDS = ("synth", "ingest", "degrade", "fourmostify", "train", "infer", "mock_survey", "catalog", "evaluate", "calibrate_intervals", "tune", "demo")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="gridkit", description="Synthetic spectral grids to stellar-label catalogs.")
    parser.add_argument("--version", action="version", version=f"gridkit {__version__}")
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
