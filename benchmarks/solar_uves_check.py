"""Solar check of the Turbospectrum backend against the observed UVES Sun over the 4MOST HR green arm.

1. synthesize solar labels (Teff 5772 K, log g 4.44, [Fe/H] 0, vmic 1 km/s) from the MARCS grid with the
   default Gaia-ESO line list over 5150-5740 A at 0.01 A (the green arm plus margins for the convolution);
2. degrade it with the project's pipeline: `gridkit.degradation.to_resolution` to R = 20000, then `rebin` onto the
   green-arm pixels of `gridkit.instruments` (4most-hr, 0.05 A);
3. bring the UVES Sun (../shared/data/sun-uves) to the same pixels with `gridkit.observed.fourmostify_file`
   (native R taken as 100000: its exact value is not stated; the rms hardly depends on it at R = 20000);
4. print the rms of the difference over the arm (pixels finite in both) and plot to docs/figures/sun_uves_green.png.

The synthesis costs minutes of one core; its flux is cached in .cache/turbospectrum-sun-green.npz (keyed by the
configuration), so replotting is instant. Run from the repository root:

    nice -n 10 .venv/bin/python -m benchmarks.solar_uves_check

Returns (from `check()`) the rms and the per-pixel arrays; `tests/synth/test_turbospectrum.py` runs it as a slow test.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from gridkit.demo import (
    UVES_SUN_RESOLVING_POWER as UVES_RESOLVING_POWER,  # one value for the UVES Sun
)

ROOT = Path(__file__).resolve().parents[1]
UVES = ROOT.parent / "shared" / "data" / "sun-uves" / "UVES_Sun-1_cleaned_norm.txt"
SUN = dict(teff=5772.0, logg=4.44, feh=0.0, vmic=1.0)
RANGE = (5150.0, 5740.0)
STEP = 0.01
RESOLVING_POWER = 20_000.0
FIGURE = ROOT / "docs" / "figures" / "sun_uves_green.png"


def synthetic_sun(cache: Path | None = ROOT / ".cache" / "turbospectrum-sun-green.npz") -> tuple[np.ndarray, np.ndarray, dict]:
    """(wavelength, flux, provenance) of the solar synthesis, from the cache when the configuration matches."""
    from gridkit.synth.turbospectrum import TurbospectrumSynthesizer

    syn = TurbospectrumSynthesizer([RANGE], STEP)
    prov = syn.provenance()
    key = hashlib.sha256(json.dumps([SUN, prov], sort_keys=True, default=str).encode()).hexdigest()[:16]
    if cache is not None and cache.exists():
        data = np.load(cache, allow_pickle=False)
        if str(data["key"]) == key:
            return data["wavelength"], data["flux"], prov
    t0 = time.perf_counter()
    flux, timing = syn.synthesize_timed(SUN)
    print(f"synthesis: {time.perf_counter() - t0:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in timing.items())})", flush=True)
    wl = syn.wavelength()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, wavelength=wl, flux=flux, key=np.array(key))
        tmp.replace(cache)
    return wl, flux, prov


def check(uves: Path = UVES, cache: Path | None = ROOT / ".cache" / "turbospectrum-sun-green.npz") -> dict:
    """rms of (degraded synthesis - fourmostified UVES) over the green arm, and the arrays behind it."""
    from gridkit import instruments
    from gridkit.degradation import rebin, to_resolution
    from gridkit.observed import fourmostify_file
    from gridkit.schema import from_arrays

    wl, flux, _ = synthetic_sun(cache)
    arm = instruments.get("4most-hr").wavelength("green")
    model = from_arrays(wl, flux, {})
    model = rebin(to_resolution(model, RESOLVING_POWER), arm).flux.values[0]
    obs = fourmostify_file(uves, UVES_RESOLVING_POWER, arms="green")
    observed = obs["flux"]
    good = np.isfinite(model) & np.isfinite(observed)
    diff = model[good] - observed[good]
    return {
        "rms": float(np.sqrt(np.mean(diff**2))),
        "mean": float(np.mean(diff)),
        "n_pixels": int(good.sum()),
        "n_missing": int((~good).sum()),
        "wavelength": arm,
        "model": model,
        "observed": observed,
    }


def plot(result: dict, path: Path = FIGURE) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wl, synth, observed = result["wavelength"], result["model"], result["observed"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), dpi=100, gridspec_kw={"height_ratios": [1.2, 1.2, 0.8]})
    axes[0].plot(wl, observed, lw=0.3, color="k", label="UVES Sun (4MOST HR green, R=20000)")
    axes[0].plot(wl, synth, lw=0.3, color="C3", label="Turbospectrum v20, MARCS 5772/4.44/0.00, vmic 1, GES list")
    axes[0].set_ylabel("normalised flux")
    axes[0].set_title(f"Green arm 5160-5730 A at R = 20000: rms = {result['rms']:.4f} over {result['n_pixels']} pixels", fontsize=10)
    axes[0].legend(fontsize=7, loc="lower left")
    zoom = (wl > 5160) & (wl < 5200)
    axes[1].plot(wl[zoom], observed[zoom], lw=0.8, color="k")
    axes[1].plot(wl[zoom], synth[zoom], lw=0.8, color="C3")
    axes[1].set_ylabel("flux (Mg b region)")
    axes[2].plot(wl, synth - observed, lw=0.3, color="C0")
    axes[2].axhline(0, color="k", lw=0.5)
    axes[2].set_ylabel("synthetic - UVES")
    axes[2].set_xlabel("air wavelength [A]")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--no-cache", action="store_true", help="resynthesize even if the cached solar spectrum matches")
    args = parser.parse_args(argv)
    result = check(cache=None if args.no_cache else ROOT / ".cache" / "turbospectrum-sun-green.npz")
    print(f"UVES Sun vs Turbospectrum, 4MOST HR green arm at R = 20000: rms = {result['rms']:.4f}, mean difference "
          f"{result['mean']:+.4f} over {result['n_pixels']} pixels ({result['n_missing']} missing)")
    print(f"figure: {plot(result, args.figure)}")


if __name__ == "__main__":
    main()
