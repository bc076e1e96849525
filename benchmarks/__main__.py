"""Run every benchmark in turn: `python -m benchmarks` (or `make bench`)."""
import importlib
import pkgutil
import sys
from pathlib import Path

if __name__ == "__main__":
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    short = {n.removeprefix("bench_") for n in names}
    only = [a for a in sys.argv[1:] if a in short]
    sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a not in short)]  # the options, for the benchmark's own parser
    for name in names:
        if only and name.removeprefix("bench_") not in only:
            continue
        print(f"\n=== {name} ===", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        module.main()
