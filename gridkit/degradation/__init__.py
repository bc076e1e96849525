"""The lazy degradation pipeline: xarray/dask wrappers over `gridkit.kernels`, the published chain, its store job.

Every function takes and returns an `xarray.Dataset` whose flux is a dask array chunked along its first
dimension (model or star) with the whole wavelength axis in one chunk; nothing is computed until the
result is written or `.compute()`d. Coordinates, labels, units and provenance attrs are carried along.

- `to_resolution(ds, R)`      Gaussian LSF of FWHM = lambda/R at every lambda (on a uniform ln lambda grid)
- `rotate(ds, vbroad)`        classical (Gray) rotation profile, per model from the `vbroad` label
- `rebin(ds, wavelength)`     flux-conserving rebinning (one sparse matrix per grid pair)
- `add_noise(ds, snr, seed)`  sigma = flux / (S/N per pixel), a new `snr` dimension, deterministic
- `degrade(ds, ...)`          the published chain: R=80000 -> 0.025 A -> rotation -> R=20000 -> arm pixels -> noise
                              (options in `DegradeConfig`; steps recorded in attrs, read back by `chain_options`)
- `degrade_store(...)`        the store-writing entry point of `gridkit degrade` (restartable, see gridkit.store)

Modules: `params` (argument checks, each made once at the public entry point), `blocks` (numpy functions applied
per chunk, choosing the kernel), `ops` (the lazy wrappers), `config` (the published parameters), `chain` (the
published chain and its provenance), `jobs` (the store job). Observed spectra go through `gridkit.observed`.

A wavelength axis with gaps (steps much larger than its sampling, e.g. a grid holding two arms) is handled
segment by segment: no convolution ever smears across a gap, no rebinned pixel spans one.
"""
from __future__ import annotations

from .chain import STEPS_ATTR, chain_options, degrade, working_grid
from .config import DEFAULT_SNR, INTERMEDIATE_RESOLVING_POWER, WORKING_STEP, DegradeConfig
from .jobs import degrade_store
from .ops import PER_ANGSTROM, PER_PIXEL, SNR_CONVENTION_TEXT, add_noise, rebin, rotate, snr_key, to_resolution

__all__ = [
    "to_resolution", "rotate", "rebin", "add_noise", "degrade", "degrade_store", "DegradeConfig", "DEFAULT_SNR",
    "INTERMEDIATE_RESOLVING_POWER", "WORKING_STEP", "PER_ANGSTROM", "PER_PIXEL", "SNR_CONVENTION_TEXT", "working_grid", "snr_key",
    "chain_options", "STEPS_ATTR",
]
