"""Helpers of the evaluation tests (a unique module name: conftest.py files of several folders would clash).

A tiny analytic grid degraded to a narrow test spectrograph, and a tiny cINN trained on it, shared by the
evaluation tests (built once per session, ~15 s on one core).

The grid is made by the real chain: `gridkit.synth.synthesize` with the analytic backend over 6090-6170 A,
`gridkit.degrade_store` to a constant-R spectrograph (R = 20000, 6100-6160 A, ~490 pixels) with noise at
three S/N. Its attrs carry the generator's provenance and the degradation chain, so the posterior
predictive check can re-simulate its spectra.
"""
from __future__ import annotations

import numpy as np

from gridkit import instruments

INSTRUMENT = "evaltest-narrow"
instruments.register(instruments.constant_r(20000.0, 6100.0, 6160.0, name=INSTRUMENT))

N_MODELS = 400
SNR = (30.0, 100.0, 300.0)
TINY = dict(n_blocks=4, subnet_width=64, subnet_layers=3, feature_layers=[128, 64], n_features=32, batch_size=256,
            batches_per_epoch=16, epochs=8, num_workers=0, shuffle_buffer=2048, val_samples=1024, lr=2e-3, betas=[0.9, 0.9],
            patience=20, device="cpu", split=[0.7, 0.2, 0.1])


def build_cube(folder, n_models: int = N_MODELS, snr=SNR, seed: int = 3):
    from gridkit.degradation import degrade_store
    from gridkit.synth import AnalyticSynthesizer, sample_labels, synthesize

    syn = AnalyticSynthesizer(wavelength_range=((6090.0, 6170.0),), step=0.02)
    base, cube = folder / "base.zarr", folder / "cube.zarr"
    synthesize(sample_labels(n_models, seed=seed), syn, base, progress=False, models_per_region=100)
    degrade_store(base, cube, INSTRUMENT, snr=list(snr), progress=False, region_size=100)
    return cube


def truths(ds, names):
    return np.stack([np.asarray(ds[n].values, dtype=float) for n in names], axis=1)
