"""Run every benchmark in turn: `python -m benchmarks` (or `make bench`)."""
import importlib
import pkgutil
import sys
from pathlib import Path

if __name__ == "__main__":
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_"))
    only = sys.argv[1:]
    for name in names:
        if only and name.removeprefix("bench_") not in only:
            continue
        print(f"\n=== {name} ===", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        module.main()
