"""The toy training data of the cINN tests, in a module of its own so that tests can build stores of their own
with it (conftest.py files of several folders share one module name).

The toy: continuum-normalised spectra on 0.25 A pixels, 5000-5035 A, with Gaussian absorption lines whose
equivalent widths follow a curve of growth of a line strength that depends on Teff (excitation/ionisation,
different for low- and high-excitation lines), log g (ionised lines), [Fe/H] (all metal lines), [X/Fe] for the
Mg, Ca, Ti and Mn lines, vmic (saturated lines) and vbroad (line width); noise sigma = |flux| / S/N_pixel
with S/N per Angstrom converted to per pixel (gridkit.kernels.noise).
"""
from __future__ import annotations

import numpy as np

from gridkit.schema import LABEL_NAMES, from_arrays

N_MODELS = 3000
SNR = (25.0, 60.0, 150.0)
WAVE = np.arange(5000.0, 5035.0, 0.25)
#: (centre A, element, excitation sensitivity, gravity sensitivity, base log strength)
LINES = (
    (5002.0, "fe", 1.2, 0.0, 0.3), (5005.5, "fe", -1.0, 0.0, 0.0), (5008.0, "fe2", 0.3, -0.6, -0.2),
    (5011.0, "mg", 0.5, 0.2, 0.2), (5014.5, "fe", 0.8, 0.0, 0.6), (5017.0, "ca", 0.6, 0.0, 0.0),
    (5020.0, "ti", 1.5, 0.0, -0.3), (5023.5, "fe2", -0.2, -0.7, 0.1), (5026.0, "mn", 0.9, 0.0, -0.1),
    (5029.0, "fe", -0.5, 0.0, -0.4), (5032.0, "fe", 0.2, 0.3, 0.9),
)
ABUND = {"mg": "mg_fe", "ca": "ca_fe", "ti": "ti_fe", "mn": "mn_fe"}


def toy_labels(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lab = {
        "teff": rng.uniform(4200, 6800, n), "logg": rng.uniform(1.0, 5.0, n), "feh": rng.uniform(-2.0, 0.5, n),
        "vmic": rng.uniform(0.5, 2.5, n), "vbroad": np.where(rng.random(n) < 0.2, 0.0, rng.uniform(1.0, 20.0, n)),
    }
    for name in LABEL_NAMES[5:]:
        lab[name] = rng.uniform(-0.3, 0.4, n) if name != "li_fe" else rng.uniform(-0.5, 2.0, n)
    return lab


def toy_flux(lab: dict[str, np.ndarray], wave: np.ndarray = WAVE) -> np.ndarray:
    n = lab["teff"].size
    flux = np.ones((n, wave.size))
    theta = (lab["teff"] - 5500.0) / 1000.0
    for centre, elem, t_sens, g_sens, base in LINES:
        logs = base + lab["feh"] - t_sens * theta + g_sens * (lab["logg"] - 3.0)
        if elem in ABUND:
            logs = logs + lab[ABUND[elem]]
        s = 10.0**logs
        width = np.sqrt(0.12**2 + (centre * lab["vbroad"] / 2.998e5 / 1.6) ** 2 + (0.02 * lab["vmic"]) ** 2)
        ew = width * np.log1p(s) * (1 + 0.15 * lab["vmic"] * (s > 1))  # curve of growth: linear then log, vmic lifts the flat part
        depth = np.minimum(ew / (width * np.sqrt(2 * np.pi)), 0.95)
        flux *= 1.0 - depth[:, None] * np.exp(-0.5 * ((wave[None, :] - centre) / width[:, None]) ** 2)
    return flux.astype(np.float32)


def write_toy(path, n_models: int = N_MODELS, snr=SNR, noiseless: bool = False, seed: int = 1, region_size: int = 150):
    from gridkit.grid import write_grid
    from gridkit.kernels.noise import apply_noise, snr_per_pixel
    from gridkit.kernels.rebin import pixel_widths
    from gridkit.store import rng_for

    lab = toy_labels(n_models, seed)
    flux = toy_flux(lab)
    base = from_arrays(WAVE, flux, lab, attrs={"instrument": "toy", "arms": ["toy"]}, resolving_power=20000.0)
    if noiseless:
        write_grid(base, path, region_size=region_size)
        return path
    snr_pix = snr_per_pixel(np.asarray(snr), pixel_widths(WAVE))  # (n_snr, n_wave)
    draws = rng_for(seed, 7).standard_normal((n_models, len(snr), WAVE.size))
    noisy = apply_noise(flux[:, None, :], snr_pix[None], draws).astype(np.float32)
    cube = base.drop_vars("flux").assign_coords(snr=("snr", np.asarray(snr, dtype=float), {"units": "1", "convention": "per_angstrom"}))
    cube["flux"] = (("model", "snr", "wavelength"), noisy, base.flux.attrs)
    write_grid(cube, path, region_size=region_size)
    return path


#: a tiny network and a short training that runs in seconds on two cores
TINY = dict(n_blocks=4, subnet_width=64, subnet_layers=3, feature_layers=[128, 64], n_features=32, batch_size=256,
            batches_per_epoch=24, epochs=10, num_workers=0, shuffle_buffer=2048, val_samples=2048, lr=2e-3, betas=[0.9, 0.9],
            patience=20, device="cpu")
