"""`gridkit mock-survey` (being built: its issue's owner replaces this module)."""


def register(sub):
    parser = sub.add_parser("mock-survey", help="(not yet available)")
    parser.set_defaults(func=_run)


def _run(args):
    from ..errors import GridkitError

    raise GridkitError("gridkit mock-survey is not available yet")
