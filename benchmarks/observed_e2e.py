"""End to end on files: the test split of a trained model's cube written as 4MOST L1 multi-spectrum files (per arm;
each star with a radial velocity within +-150 km/s, a blaze-like continuum, Gaussian noise with its sigma at S/N 50
per A, 2 % quality-flagged pixels, a NaN gap), then `gridkit fourmostify --rv measure --normalise continuum` ->
`gridkit infer`; against the same stars fed directly through `gridkit mock-survey` (the cube's own noise at S/N 50).
Prints the per-label bias +- sigma of MAP - truth both ways and their ratio (the issue asks sigma within 1.2x).

    python -m benchmarks.observed_e2e [N_MODELS] [--out DIR]

Not a test (minutes of CPU); tests/test_observed_e2e.py runs it small, marked slow.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: a small network with masking augmentation and dynamic noise, trained on a noiseless cube normalised by the operator
NETWORK = {"n_blocks": 4, "subnet_width": 96, "subnet_layers": 3, "feature_layers": [256], "n_features": 48, "lr": 1e-3, "lr_decay": 0.97,
           "patience": 8, "val_samples": 1024, "shuffle_buffer": 4096, "loader": "dynamic", "copies_per_model": 4, "num_workers": 0,
           "snr_range": [30.0, 300.0], "mask_fraction": 0.05, "batch_size": 256, "batches_per_epoch": 32, "epochs": 20, "device": "cpu"}
SNR = 50.0


def rest_spectra(base, ids):
    """Per model id: (fine rest-frame wavelength, flux at R = 20000 with its rotation), the degradation chain up to its
    last convolution, on the 0.025 A working grid."""
    import gridkit
    from gridkit import instruments
    from gridkit.degradation import working_grid

    inst = instruments.get("4most-hr")
    sub = base.sel(model=list(ids)).load()
    work = working_grid(sub.wavelength.values, inst.select(None))
    fine = gridkit.to_resolution(sub, 80_000.0)
    fine = gridkit.rebin(fine, work)
    fine = gridkit.rotate(fine)
    fine = gridkit.to_resolution(fine, inst.resolving_power, 80_000.0).compute()
    return fine.wavelength.values, fine.flux.values.astype(np.float64)


def write_files(folder: Path, base, ids, seed: int = 7, per_file: int = 64) -> tuple[list[Path], dict]:
    from gridkit import instruments
    from gridkit.testing.fourmost_files import write_4most_l1_multi
    from gridkit.testing.observed import observe

    inst = instruments.get("4most-hr")
    pixels = {a.name: a.wavelength() for a in inst.select(None)}
    wl, fluxes = rest_spectra(base, ids)
    rng = np.random.default_rng(seed)
    truth_rv, files, obs = {}, [], []
    for k, (mid, flux) in enumerate(zip(ids, fluxes)):
        rv = float(rng.uniform(-150, 150))
        sid = f"mock-{mid}"
        truth_rv[sid] = rv
        obs.append(observe(wl, flux, pixels, rv=rv, snr=SNR, seed=seed * 100_000 + k,
                           meta={"star_id": sid, "specsys": "BARYCENT", "ra": float(rng.uniform(0, 360)), "dec": float(rng.uniform(-90, 20)),
                                 "mjd": 60600.0, "contnorm": False}))
    for j in range(0, len(obs), per_file):
        for a, arm in enumerate(pixels):
            files.append(write_4most_l1_multi(folder / f"ob{j // per_file:03d}_H{arm[0].upper()}11.fits", [o.spectra[a] for o in obs[j:j + per_file]], arm,
                                              overwrite=True))
    return files, truth_rv


def run(n_models: int = 800, out: Path | None = None, seed: int = 11) -> dict:
    import xarray as xr

    import catalogs
    import cinn
    from cinn.survey import infer, mock_survey
    from gridkit.degradation import degrade_store
    from gridkit.grid import open_grid
    from gridkit.observed import PrepareOptions, fourmostify_store
    from gridkit.synth import AnalyticSynthesizer, sample_labels, synthesize

    out = Path(out or tempfile.mkdtemp(prefix="observed-e2e-"))
    out.mkdir(parents=True, exist_ok=True)
    t = {}
    t0 = time.perf_counter()
    synthesize(sample_labels(n_models, seed=seed), AnalyticSynthesizer(), out / "base.zarr", models_per_region=32, progress=False)
    degrade_store(out / "base.zarr", out / "train.zarr", snr=None, normalise="continuum", region_size=32, progress=False)
    degrade_store(out / "base.zarr", out / "cube50.zarr", snr=[SNR], normalise="continuum", region_size=32, seed=seed, progress=False)
    t["grids"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if not (out / "model" / "model.json").exists():
        cinn.train(out / "train.zarr", out / "model", config=NETWORK, progress=False)
    t["train"] = time.perf_counter() - t0
    test_ids = cinn.read_split(out / "model")["test"]
    mock_survey(out / "cube50.zarr", out / "mock.zarr", snr=SNR, split="test", model_dir=out / "model", progress=False, overwrite=True)
    t0 = time.perf_counter()
    files, truth_rv = write_files(out / "files", open_grid(out / "base.zarr"), test_ids)
    fourmostify_store(files, out / "observed.zarr", progress=False, overwrite=True, prepare=PrepareOptions(rv="measure", normalise="continuum"))
    t["fourmostify"] = time.perf_counter() - t0
    for name in ("mock", "observed"):
        infer(out / "model", out / f"{name}.zarr", out / f"{name}-cat.zarr", samples=1024, chunk=64, seed=0, progress=False, overwrite=True)
    mock = catalogs.open(out / "mock-cat.zarr")
    obs = catalogs.open(out / "observed-cat.zarr")
    survey = xr.open_zarr(out / "observed.zarr", consolidated=False)
    ids = [str(s) for s in survey.star_id.values]
    truth = {str(s): i for i, s in enumerate(mock.star_id.values)}
    order = np.array([truth[s] for s in ids])
    rv_err = np.array([float(survey.rv.values[i]) - truth_rv[s] for i, s in enumerate(ids)])
    rows = {}
    for lab in catalogs.label_names(mock):
        true = mock[f"true_{lab}"].values[order]
        d_obs = obs[lab].values - true
        d_mock = mock[lab].values[order] - true
        ok = np.isfinite(d_obs) & np.isfinite(d_mock)
        rows[lab] = {"mock_bias": float(d_mock[ok].mean()), "mock_sigma": float(d_mock[ok].std(ddof=1)),
                     "observed_bias": float(d_obs[ok].mean()), "observed_sigma": float(d_obs[ok].std(ddof=1)),
                     "ratio": float(d_obs[ok].std(ddof=1) / d_mock[ok].std(ddof=1)), "n": int(ok.sum())}
    result = {"n_models": n_models, "n_test": len(ids), "rv_error_bias": float(rv_err.mean()), "rv_error_sigma": float(rv_err.std(ddof=1)),
              "labels": rows, "timings_s": {k: round(v, 1) for k, v in t.items()}, "folder": str(out), "sun": sun(out)}
    (out / "e2e.json").write_text(json.dumps(result, indent=1))
    return result


SUN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sun-uves" / "UVES_Sun-1_cleaned_norm.txt"


def sun(out: Path, rv: float = -38.7) -> dict | None:
    """The UVES Sun through the same model two ways: the plain text file (at rest, normalised by the operator), and as
    an ESO SDP archive spectrum times a blaze continuum and shifted by `rv` (RV measured and removed). Returns the RV
    found and, per label, both MAPs and whether the SDP run's MAP lies within the plain run's 68 % interval."""
    if not SUN.is_file():
        return None
    import catalogs
    from cinn.survey import infer
    from gridkit.io import write_eso_sdp
    from gridkit.io.spectrum import Spectrum
    from gridkit.kernels import frames
    from gridkit.observed import PrepareOptions, fourmostify_store, spectrum_dataset
    from gridkit.testing.observed import blaze_continuum

    data = np.loadtxt(SUN)
    ds = spectrum_dataset(data[:, 0], data[:, 1], name="uves")
    wl, flux = ds.wavelength.values, ds.flux.values[0].astype(np.float64)
    ok = np.isfinite(flux)
    cont = blaze_continuum(wl, np.random.default_rng(5))
    sigma = np.where(ok, np.abs(flux) * cont / 400.0, np.nan)
    path = write_eso_sdp(out / "sun-sdp.fits", Spectrum(frames.shift_wavelength(wl, rv), "air", flux * cont, sigma, ok,
                                                        meta={"star_id": "Sun", "specsys": "BARYCENT", "contnorm": False,
                                                              "resolving_power": 80000.0}), overwrite=True)
    opts = dict(progress=False, overwrite=True, snr=250.0)
    fourmostify_store([SUN], out / "sun-plain.zarr", 80000.0, star_ids=["Sun"], prepare=PrepareOptions(normalise="continuum"), **opts)
    fourmostify_store([path], out / "sun-sdp.zarr", prepare=PrepareOptions(rv="measure", normalise="continuum"), **opts)
    rows = {}
    for name in ("plain", "sdp"):
        infer(out / "model", out / f"sun-{name}.zarr", out / f"sun-{name}-cat.zarr", samples=4096, chunk=1, progress=False, overwrite=True)
    plain, sdp = catalogs.open(out / "sun-plain-cat.zarr"), catalogs.open(out / "sun-sdp-cat.zarr")
    for lab in ("teff", "logg", "feh"):
        q = plain[f"{lab}_quantiles"].values[0]
        rows[lab] = {"plain": float(plain[lab].values[0]), "sdp": float(sdp[lab].values[0]), "plain_p16": float(q[1]), "plain_p84": float(q[3]),
                     "inside": bool(q[1] <= float(sdp[lab].values[0]) <= q[3])}
    import xarray as xr

    return {"rv_true": rv, "rv": float(xr.open_zarr(out / "sun-sdp.zarr", consolidated=False).rv.values[0]), "labels": rows}


def table(result: dict) -> str:
    lines = [f"{result['n_test']} test stars of {result['n_models']} models, S/N {SNR:g} per A; RV error {result['rv_error_bias']:+.3f} +- "
             f"{result['rv_error_sigma']:.3f} km/s", "",
             f"{'label':8s} {'mock-survey bias +- sigma':>28s} {'L1 files bias +- sigma':>28s} {'sigma ratio':>12s}"]
    for lab, r in result["labels"].items():
        lines.append(f"{lab:8s} {r['mock_bias']:+12.4g} +- {r['mock_sigma']:<10.4g} {r['observed_bias']:+12.4g} +- {r['observed_sigma']:<10.4g} "
                     f"{r['ratio']:12.2f}")
    if result.get("sun"):
        sn = result["sun"]
        lines.append(f"\nUVES Sun as an ESO SDP file (continuum x blaze, RV {sn['rv_true']:+.1f} km/s): RV found {sn['rv']:+.2f} km/s")
        for lab, r in sn["labels"].items():
            lines.append(f"  {lab:5s} plain {r['plain']:.4g} [{r['plain_p16']:.4g}, {r['plain_p84']:.4g}]   SDP {r['sdp']:.4g}   inside 68 %: {r['inside']}")
    lines.append(f"\ntimings [s]: {result['timings_s']}")
    return "\n".join(lines)


def main() -> dict:
    argv = sys.argv[1:]
    out = None
    if "--out" in argv:
        i = argv.index("--out")
        out, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    args = argv
    result = run(int(args[0]) if args else 800, out)
    print(table(result))
    return result


if __name__ == "__main__":
    main()
