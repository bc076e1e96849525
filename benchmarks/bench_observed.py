"""Observed spectra to network input: spectra per second per core through read -> mask -> RV -> normalise -> rebin,
`gridkit fourmostify` (in this process, one thread) against a straightforward astropy + numpy loop (astropy.io.fits
reads, a boolean mask, np.correlate of the continuum-subtracted flux against the template on a uniform ln lambda
grid with the peak refined by a parabola, a cubic polynomial continuum per arm fitted to the pixels above a
running median, np.interp onto the instrument's pixels); and the peak memory of fourmostify as the number of
spectra grows (4MOST L1 multi-spectrum files of 250 fibres per arm).

    python -m benchmarks.bench_observed [N_SPECTRA] [--memory N_MEMORY | --memory-sizes N1,N2,...]

--memory N measures the peak memory at N/4, N/2 and N spectra; --memory-sizes at exactly those sizes; N_SPECTRA = 0
skips the speed comparison (a memory run only).

Also the RV error of both (the truth is known), so that speed is read next to what it buys.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PER_FILE = 250


def _files(folder: Path, n: int, seed: int = 3, snr: float = 50.0):
    """n stars as 4MOST L1 multi-spectrum files (per arm, PER_FILE fibres each): analytic spectra of random FGK labels,
    at random RVs within +-150 km/s, with blaze continua, noise, 2 % flagged pixels and a NaN gap."""
    import gridkit
    from gridkit import instruments
    from gridkit.synth import AnalyticSynthesizer, sample_labels
    from gridkit.testing.fourmost_files import write_4most_l1_multi
    from gridkit.testing.observed import observe

    inst = instruments.get("4most-hr")
    pixels = {a.name: a.wavelength() for a in inst.select(None)}
    syn = AnalyticSynthesizer()
    wl = syn.wavelength()
    labels = sample_labels(min(n, 50), seed=seed)  # 50 spectra, reused: the benchmark times the preparation, not synthesis
    fine = gridkit.to_resolution(gridkit.from_arrays(wl, np.stack([syn.synthesize({k: v[i] for k, v in labels.items()}) for i in range(min(n, 50))]),
                                                     {}), inst.resolving_power).compute().flux.values.astype(np.float64)
    rng = np.random.default_rng(seed)
    truth, files, batch = {}, [], []
    for k in range(n):
        rv = float(rng.uniform(-150, 150))
        sid = f"star{k:06d}"
        truth[sid] = rv
        batch.append(observe(wl, fine[k % fine.shape[0]], pixels, rv=rv, snr=snr, seed=k, meta={"star_id": sid, "specsys": "BARYCENT"}))
        if len(batch) == PER_FILE or k == n - 1:
            for a, arm in enumerate(pixels):
                files.append(write_4most_l1_multi(folder / f"ob{k // PER_FILE:04d}_H{arm[0].upper()}11.fits", [o.spectra[a] for o in batch], arm))
            batch = []
    return files, truth, (wl, fine[0])


def straightforward(files, template, pixels_out):
    """The loop a user would write with astropy and numpy: returns {star id: (rv, flux on the instrument's pixels)}."""
    from astropy.io import fits

    twl, tfl = template
    c = 299_792.458
    grid = np.exp(np.arange(np.log(5150.0), np.log(6800.0), 0.05 / 6000.0 / 1.5))
    t_on = np.interp(grid, twl, 1 - tfl)
    t_on -= t_on.mean()
    out = {}
    by_star: dict = {}
    for path in files:
        with fits.open(path) as hdul:
            spec, meta = hdul["SPECTAB"].data, hdul["FIBMETATAB"].data
            for row, m in zip(spec, meta):
                wl = (m["WAVELMIN"] + np.arange(row["FLUX"].size) * m["SPEC_BIN"]) * 10.0
                good = (row["QUAL"] == 0) & np.isfinite(row["FLUX"])
                by_star.setdefault(str(m["OBJ_UID"]), []).append((wl, np.asarray(row["FLUX"], float), good))
    for sid, parts in by_star.items():
        wl = np.concatenate([p[0] for p in parts])
        fl = np.concatenate([p[1] for p in parts])
        good = np.concatenate([p[2] for p in parts])
        norm = np.full(fl.size, np.nan)
        for p in parts:  # a cubic polynomial per arm through the pixels above a running median
            sel = (wl >= p[0][0]) & (wl <= p[0][-1])
            x, y, g = wl[sel], fl[sel], good[sel]
            med = np.convolve(np.where(g, y, np.nanmedian(y[g])), np.ones(101) / 101, mode="same")
            use = g & (y > med)
            coef = np.polyfit(x[use] - x.mean(), y[use], 3)
            norm[sel] = y / np.polyval(coef, x - x.mean())
        on = np.interp(grid, wl[good], 1 - norm[good], left=0, right=0)
        on -= on.mean()
        ccf = np.correlate(on, t_on, mode="full")
        lag = np.arange(-grid.size + 1, grid.size)
        win = np.abs(lag) < int(np.log(1 + 500 / c) / np.log(grid[1] / grid[0]))
        k = np.flatnonzero(win)[np.argmax(ccf[win])]
        y0, y1, y2 = ccf[k - 1], ccf[k], ccf[k + 1]
        shift = lag[k] + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
        rv = c * (np.exp(shift * np.log(grid[1] / grid[0])) - 1)
        out[sid] = (rv, np.interp(pixels_out, wl / (1 + rv / c), norm))
    return out


MEMORY_SCRIPT = """
import sys, resource, pathlib
from gridkit.observed import PrepareOptions, fourmostify_store
files = sorted(pathlib.Path(sys.argv[1]).glob('*.fits'))
fourmostify_store(files, sys.argv[2], progress=False, region_size=64, prepare=PrepareOptions(rv=sys.argv[3], normalise='continuum'))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def main(n: int | None = None, n_memory: int | None = None) -> dict:
    argv = [a for a in sys.argv[1:]]
    sizes = None
    if "--memory" in argv:
        i = argv.index("--memory")
        n_memory, argv = int(argv[i + 1]), argv[:i] + argv[i + 2:]
    if "--memory-sizes" in argv:
        i = argv.index("--memory-sizes")
        sizes, argv = sorted(int(k) for k in argv[i + 1].split(",")), argv[:i] + argv[i + 2:]
        n_memory = sizes[-1]
    n = int(n if n is not None else (argv[0] if argv else 200))
    folder = Path(tempfile.mkdtemp(prefix="bench-observed-"))
    result: dict = {"n": n}
    try:
        if n > 0:
            result.update(_speed(folder, n))
        if n_memory:
            result["memory"] = _memory(folder, n_memory, sizes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the generated files (GBs at 10,000 spectra) are not kept
    return result


def _speed(folder: Path, n: int) -> dict:
    """fourmostify against the straightforward loop on n spectra: times and RV errors (printed and returned)."""
    import xarray as xr

    from gridkit import instruments
    from gridkit.observed import PrepareOptions, fourmostify_store

    files, truth, template = _files(folder / "files", n)
    target = instruments.get("4most-hr").wavelength(None)
    t0 = time.perf_counter()
    fourmostify_store(files, folder / "ours.zarr", progress=False, region_size=64, prepare=PrepareOptions(rv="measure", normalise="continuum"),
                      client=None)
    ours = time.perf_counter() - t0
    s = xr.open_zarr(folder / "ours.zarr", consolidated=False)
    err_ours = np.array([float(s.rv.values[i]) - truth[str(sid)] for i, sid in enumerate(s.star_id.values)])
    t0 = time.perf_counter()
    base = straightforward(files, template, target)
    loop = time.perf_counter() - t0
    err_loop = np.array([base[sid][0] - truth[sid] for sid in truth])
    print(f"{n} spectra (green + red arms, S/N 50 per A, RV within +-150 km/s), one process, 2 cores machine")
    print(f"{'method':42s} {'spectra/s':>10s} {'RV error bias +- sigma [km/s]':>32s} {'max |error|':>12s}")
    print(f"{'gridkit fourmostify (threads of 1 process)':42s} {n / ours:10.2f} {err_ours.mean():+14.3f} +- {err_ours.std():<14.3f} {np.abs(err_ours).max():12.3f}")
    print(f"{'astropy + numpy loop (np.correlate, polyfit)':42s} {n / loop:10.2f} {err_loop.mean():+14.3f} +- {err_loop.std():<14.3f} {np.abs(err_loop).max():12.3f}")
    print(f"ratio (ours / loop) of spectra per second: {loop / ours:.2f}")
    return {"ours_s": ours, "loop_s": loop, "rv_ours": [float(err_ours.mean()), float(err_ours.std())],
            "rv_loop": [float(err_loop.mean()), float(err_loop.std())]}


def _memory(folder: Path, n_memory: int, sizes=None) -> list:
    """Peak RSS of fourmostify (a fresh process each) on the first k of n_memory spectra, k in `sizes` (default: a
    quarter, a half and all)."""
    mem_files, _, _ = _files(folder / "memory", n_memory)
    rows = []
    for k in (sizes or sorted({max(PER_FILE, n_memory // 4), max(PER_FILE, n_memory // 2), n_memory})):
        sub = folder / f"mem{k}"
        sub.mkdir()
        for f in mem_files[: 2 * (k // PER_FILE)]:
            (sub / f.name).symlink_to(f)
        t0 = time.perf_counter()
        rss = float(subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(sub), str(folder / f"m{k}.zarr"), "none"],
                                   capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        rows.append((k, rss, time.perf_counter() - t0))
        print(f"memory: {k} spectra -> peak RSS {rss:.0f} MB ({time.perf_counter() - t0:.0f} s, RV not measured)", flush=True)
    return rows


if __name__ == "__main__":
    main()
