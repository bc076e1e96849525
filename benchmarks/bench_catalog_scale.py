"""Catalogs at survey scale: open, id lookup, queries, exports and merge of catalogs of 1M and 4M stars (25M with
`--big`), with the wall time and peak RSS of each step, next to the old in-memory way where that is cheap.

Setup: a catalog in the `gridkit infer` schema (10 labels: MAP + 5 quantiles each, f_reject, flags, n_imputed, snr,
ra, dec; float32 like infer), written through gridkit's region writer (`gridkit.store.create` + `write_regions`,
as `gridkit infer` and `catalogs.merge` write) in regions of `SHARD_ROWS` stars, one Zarr shard per region and
variable (`catalogs.schema.catalog_encoding`). Values are random and non-repeating: labels drawn per star,
quantiles around them with random widths, star ids `4MOST-J<9 digits>` in a random order (unique). The star_id
index is written after the catalog (as `catalogs.merge` does; its build is timed).

Every step runs in a fresh subprocess, which reports the step's own wall time and the process's peak RSS
(VmHWM, imports included: the `baseline` row is a process that only imports and opens nothing). Medians of
`--repeats` runs (merge, the index build and the full export: one run; above 2M stars every export: one run). The old way (before issue 14,
up to 4M stars): `open` + an eager
pandas index of every star_id; lookup through a dict of all ids; query + export through one in-memory table.
The stores go under --root (default /tmp) and are deleted at the end.

    .venv/bin/python -m benchmarks.bench_catalog_scale                 # 1M and 4M
    .venv/bin/python -m benchmarks.bench_catalog_scale --sizes 1000000 --repeats 1
    .venv/bin/python -m benchmarks.bench_catalog_scale --big           # also 25M (needs ~15 GB of disk)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

LABELS = ("teff", "logg", "feh", "vmic", "vbroad", "c_fe", "mg_fe", "si_fe", "ca_fe", "ti_fe")
RANGES = {"teff": (3500, 7000), "logg": (0.5, 5.0), "feh": (-3.0, 0.5), "vmic": (0.5, 2.5), "vbroad": (2, 30)}
WIDTH = {"teff": 80.0, "logg": 0.15, "feh": 0.08, "vmic": 0.2, "vbroad": 3.0}
QUERIES = {
    "q1 (issue example)": "teff > 5000 and feh < -1 and f_reject < 0.5",
    "q2 (10%)": "feh < -2.65",
    "q3 (quantile arithmetic)": "not flag_extrapolated and (logg >= 4 or teff_p84 - teff_p16 < 150)",
}
EXPORT_WHERE = QUERIES["q2 (10%)"]
#: above this many stars the old in-memory ways are not run
OLD_WAY_MAX = 4_000_000
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- the catalog
class _Region:
    """make_region of the synthetic catalog: random labels, quantiles and flags of rows `sl`, from (seed, region)."""

    def __init__(self, n: int, seed: int, prefix: str):
        self.n, self.seed, self.prefix = n, seed, prefix

    def __call__(self, i: int, sl: slice):
        import xarray as xr

        from catalogs.schema import QUANTILES
        from gridkit.store import rng_for

        rng = rng_for(self.seed, i)
        m = sl.stop - sl.start
        z = np.array([-1.96, -1.0, 0.0, 1.0, 1.96])
        data = {}
        for label in LABELS:
            lo, hi = RANGES.get(label, (-0.5, 0.6))
            centre = rng.uniform(lo, hi, m)
            width = WIDTH.get(label, 0.1) * rng.uniform(0.5, 1.5, (m, 1))
            data[label] = (("star",), (centre + rng.normal(0, 0.2, m) * width[:, 0]).astype("f4"))
            data[f"{label}_quantiles"] = (("star", "quantile"), (centre[:, None] + width * z[None, :] * rng.uniform(0.8, 1.2, (m, len(QUANTILES)))).astype("f4"))
        data["f_reject"] = (("star",), rng.beta(0.5, 4, m).astype("f4"))
        data["flag_extrapolated"] = (("star",), rng.random(m) < 0.05)
        data["flag_missing_flux"] = (("star",), rng.random(m) < 0.001)
        data["n_imputed"] = (("star",), rng.poisson(0.3, m).astype("i4"))
        return xr.Dataset(data)


def _template(n: int, region: int, seed: int, prefix: str):
    import dask.array as da
    import xarray as xr

    from catalogs.schema import QUANTILES
    from gridkit.schema import label_attrs

    rng = np.random.default_rng(seed)
    data = {}
    for label in LABELS:
        attrs = label_attrs(label) if label in RANGES or label.endswith("_fe") else {"units": "1", "long_name": label}
        data[label] = (("star",), da.zeros(n, dtype="f4", chunks=region), attrs)
        data[f"{label}_quantiles"] = (("star", "quantile"), da.zeros((n, len(QUANTILES)), dtype="f4", chunks=(region, -1)), attrs)
    data["f_reject"] = (("star",), da.zeros(n, dtype="f4", chunks=region), {"units": "1", "long_name": "fraction rejected"})
    data["flag_extrapolated"] = (("star",), da.zeros(n, dtype=bool, chunks=region), {"units": "1", "long_name": "extrapolated"})
    data["flag_missing_flux"] = (("star",), da.zeros(n, dtype=bool, chunks=region), {"units": "1", "long_name": "missing flux"})
    data["n_imputed"] = (("star",), da.zeros(n, dtype="i4", chunks=region), {"units": "1", "long_name": "imputed pixels"})
    # the survey's columns, in memory in the template (as infer writes them)
    ids = np.array([f"{prefix}{k:09d}" for k in rng.permutation(n)], dtype=object)
    data["star_id"] = (("star",), ids, {"units": "1", "long_name": "star identifier (from the survey)"})
    data["snr"] = (("star",), rng.uniform(10, 300, n).astype("f4"), {"units": "1", "long_name": "S/N"})
    data["ra"] = (("star",), rng.uniform(0, 360, n), {"units": "deg", "long_name": "right ascension"})
    data["dec"] = (("star",), rng.uniform(-90, 30, n), {"units": "deg", "long_name": "declination"})
    return xr.Dataset(data, coords={"star": np.arange(n), "quantile": ("quantile", np.array(QUANTILES), {"units": "1"})},
                      attrs={"title": "gridkit stellar-label catalog (benchmark)", "model_id": "bench", "label_names": list(LABELS)})


def build(path: Path, n: int, seed: int = 0, prefix: str = "4MOST-J") -> dict:
    """Write the synthetic catalog; returns {seconds, files}."""
    from catalogs.schema import SHARD_ROWS, catalog_encoding
    from gridkit import store

    region = min(SHARD_ROWS, n)
    t = time.perf_counter()
    template = _template(n, region, seed, prefix)
    rs, _ = store.create(path, template, dim="star", region_size=region, fingerprint=f"bench-{n}-{seed}",
                         encoding=catalog_encoding(template, region))
    del template
    store.write_regions(rs, _Region(n, seed, prefix), progress=False, n_threads=2)
    return {"seconds": time.perf_counter() - t, "files": count_files(path)}


def count_files(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


# ---------------------------------------------------------------------------------------------- steps
PRELUDE = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
import importlib
import catalogs
import astropy.io.fits, astropy.table, dask.array, pyarrow.parquet  # imported up front: a step's time is its own work
try:
    import distributed  # dask imports it on the first compute when installed
except ImportError:
    pass
Q = importlib.import_module("catalogs.query")  # the grammar module (catalogs.query the attribute is the function)
path, arg = sys.argv[1], sys.argv[2]
"""

STEPS = {
    "baseline (imports)": "t = time.perf_counter()",
    "open": "t = time.perf_counter(); cat = catalogs.open(path)",
    "open, old (eager id index)": """
cat = None
t = time.perf_counter()
from catalogs.schema import as_str
from gridkit import store
cat = store.open_complete(path, "catalog").set_coords("star_id")
cat = cat.drop_indexes("star_id", errors="ignore").assign_coords(star_id=("star", as_str(cat["star_id"].values))).set_xindex("star_id")
""",
    "info": "t = time.perf_counter(); text = catalogs.info(catalogs.open(path))",
    "index build (once, at write)": "t = time.perf_counter(); catalogs.build_index(path)",
    "lookup 1 id (first, after open)": "cat = catalogs.open(path); t = time.perf_counter(); out = catalogs.select(cat, star_id=[arg]); out.teff.values",
    "lookup 1 id (next)": "cat = catalogs.open(path); catalogs.select(cat, star_id=[arg]); t = time.perf_counter(); out = catalogs.select(cat, star_id=[arg]); out.teff.values",
    "lookup 1000 ids": "cat = catalogs.open(path); ids = arg.split(','); t = time.perf_counter(); out = catalogs.select(cat, star_id=ids); out.teff.values",
    "cat.sel(star_id=...) 1 id": "cat = catalogs.open(path); t = time.perf_counter(); out = cat.sel(star_id=[arg]); out.teff.values",
    "lookup 1 id, old (dict of all ids)": """
from catalogs.schema import as_str
cat = catalogs.open(path)
t = time.perf_counter()
have = as_str(cat["star_id"].values); pos = {s: i for i, s in enumerate(have)}
out = cat.isel(star=[pos[arg]]); out.teff.values
""",
    "export parquet (10%)": f"cat = catalogs.open(path); t = time.perf_counter(); catalogs.export(cat, arg + '.parquet', where={EXPORT_WHERE!r}, overwrite=True)",
    "export parquet (10%), old (in memory)": f"""
import importlib; ex = importlib.import_module("catalogs.export")
cat = catalogs.open(path); t = time.perf_counter()
sel = cat.isel(star=np.flatnonzero(np.asarray(Q.evaluate(Q.parse({EXPORT_WHERE!r}), lambda n: catalogs.column(cat, n).data))))
ex.write_table(ex.to_table(sel), arg + '.old.parquet', overwrite=True)
""",
    "export FITS (10%)": f"cat = catalogs.open(path); t = time.perf_counter(); catalogs.export(cat, arg + '.fits', where={EXPORT_WHERE!r}, overwrite=True)",
    "export FITS (10%), old (in memory)": f"""
import importlib; ex = importlib.import_module("catalogs.export")
cat = catalogs.open(path); t = time.perf_counter()
sel = cat.isel(star=np.flatnonzero(np.asarray(Q.evaluate(Q.parse({EXPORT_WHERE!r}), lambda n: catalogs.column(cat, n).data))))
ex.write_table(ex.to_table(sel), arg + '.old.fits', overwrite=True)
""",
    "export parquet (all)": "cat = catalogs.open(path); t = time.perf_counter(); catalogs.export(cat, arg + '.all.parquet', overwrite=True)",
    "merge (+ 10% new stars)": "t = time.perf_counter(); out = catalogs.merge([path, arg + '.extra.zarr'], arg + '.merged.zarr', overwrite=True)",
}
for _name, _expr in QUERIES.items():
    STEPS[f"query {_name}"] = f"cat = catalogs.open(path); t = time.perf_counter(); sel = catalogs.query(cat, {_expr!r}); n = sel.sizes['star']"
STEPS[f"query {list(QUERIES)[0]}, old (one dask graph)"] = f"""
cat = catalogs.open(path); t = time.perf_counter()
mask = np.asarray(Q.evaluate(Q.parse({list(QUERIES.values())[0]!r}), lambda n: catalogs.column(cat, n).data))
sel = cat.isel(star=np.flatnonzero(mask)); n = sel.sizes['star']
"""

EPILOGUE = """
wall = time.perf_counter() - t
try:  # VmHWM: this process's own peak (ru_maxrss of an exec'd child starts at its parent's RSS on Linux)
    rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
except (OSError, StopIteration):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "rss_mb": rss}))
"""


def run_step(name: str, path: Path, arg: str) -> dict:
    code = PRELUDE + textwrap.dedent(STEPS[name]) + EPILOGUE
    proc = subprocess.run([sys.executable, "-c", code, str(path), arg], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" in r] or runs
    if "error" in ok[0]:
        return ok[0]
    return {"wall": statistics.median(r["wall"] for r in runs), "rss_mb": max(r["rss_mb"] for r in runs)}


def bench_size(n: int, root: Path, repeats: int) -> list[tuple[str, dict, str]]:
    import zarr

    path = root / f"catalog_{n}.zarr"
    extra = root / f"scratch_{n}"
    rows = []
    built = build(path, n)
    rows.append(("write catalog (region writer, 2 threads)", {"wall": built["seconds"], "rss_mb": float("nan")}, f"{built['files']} files"))
    build(Path(str(extra) + ".extra.zarr"), max(n // 10, 1), seed=1, prefix="4MOST-K")  # the second input of merge: new stars
    ids = zarr.open_array(str(path / "star_id"), mode="r")
    rng = np.random.default_rng(5)
    one = str(ids[int(rng.integers(n))])
    many = ",".join(str(ids[int(k)]) for k in rng.choice(n, size=min(1000, n), replace=False))
    order = ["baseline (imports)", "index build (once, at write)", "open", "open, old (eager id index)", "info",
             "lookup 1 id (first, after open)", "lookup 1 id (next)", "cat.sel(star_id=...) 1 id", "lookup 1000 ids",
             "lookup 1 id, old (dict of all ids)", *[f"query {q}" for q in QUERIES], f"query {list(QUERIES)[0]}, old (one dask graph)",
             "export parquet (10%)", "export parquet (10%), old (in memory)", "export FITS (10%)", "export FITS (10%), old (in memory)",
             *(["export parquet (all)"] if n <= 1_000_000 else []), "merge (+ 10% new stars)"]
    if n > OLD_WAY_MAX:  # the old ways hold every id (or the whole selection) in memory: minutes and GBs at 25M
        order = [name for name in order if ", old" not in name]
    for name in order:
        once = name.startswith(("index build", "merge", "export parquet (all)")) or (n > 2_000_000 and name.startswith("export"))
        arg = many if name == "lookup 1000 ids" else one if ("lookup" in name or "sel(" in name) else str(extra)
        res = _median([run_step(name, path, arg) for _ in range(1 if once else repeats)])
        note = ""
        if name.startswith("merge") and "error" not in res:
            note = f"{count_files(Path(str(extra) + '.merged.zarr'))} files"
        if name.startswith("export") and "error" not in res:
            suffix = {"export parquet (10%)": ".parquet", "export FITS (10%)": ".fits", "export parquet (all)": ".all.parquet"}.get(name)
            if suffix:
                note = f"{os.path.getsize(str(extra) + suffix) / 1e6:.0f} MB"
        rows.append((name, res, note))
        print(f"  {n:>10,d}  {name:<42s} {_fmt(res)}  {note}", flush=True)
    for p in root.glob(f"scratch_{n}*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    shutil.rmtree(path)
    return rows


def _fmt(res: dict) -> str:
    if "error" in res:
        return f"error: {res['error'][:80]}"
    rss = "" if res["rss_mb"] != res["rss_mb"] else f"{res['rss_mb']:8.0f} MB"
    return f"{res['wall']:9.3f} s {rss:>11s}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,4000000", help="comma-separated star counts (default 1M,4M)")
    parser.add_argument("--big", action="store_true", help="also 25M stars (~15 GB of disk under --root)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default="/tmp")
    args = parser.parse_args(sys.argv[1:] if argv is None and __name__ == "__main__" else (argv or []))
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    if args.big:
        sizes.append(25_000_000)
    root = Path(tempfile.mkdtemp(prefix="bench_catalog_scale_", dir=args.root))
    results = {}
    try:
        for n in sizes:
            print(f"catalog of {n:,d} stars under {root} (free: {shutil.disk_usage(root).free / 1e9:.0f} GB)", flush=True)
            results[n] = bench_size(n, root, args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("\n| step | " + " | ".join(f"{n / 1e6:g}M stars: s / peak RSS MB" for n in sizes) + " | note |")
    print("|---|" + "---|" * (len(sizes) + 1))
    names = list(dict.fromkeys(r[0] for n in sizes for r in results[n]))
    table = {n: {r[0]: r for r in results[n]} for n in sizes}
    for name in names:
        cells = [_fmt(table[n][name][1]).replace("  ", " ").strip() if name in table[n] else "-" for n in sizes]
        note = next((table[n][name][2] for n in reversed(sizes) if name in table[n] and table[n][name][2]), "")
        print(f"| {name} | " + " | ".join(cells) + f" | {note} |")

if __name__ == "__main__":
    main()
