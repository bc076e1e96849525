"""`gridkit fourmostify` (being built: its issue's owner replaces this module)."""


def register(sub):
    parser = sub.add_parser("fourmostify", help="(not yet available)")
    parser.set_defaults(func=_run)


def _run(args):
    from ..errors import GridkitError

    raise GridkitError("gridkit fourmostify is not available yet")
