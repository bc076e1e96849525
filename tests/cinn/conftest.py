"""A small but physical training cube for the cINN tests, and a tiny trained model shared by the tests.

The toy: continuum-normalised spectra on 0.25 A pixels, 5000-5035 A, with Gaussian absorption lines whose
equivalent widths follow a curve of growth of a line strength that depends on Teff (excitation/ionisation,
different for low- and high-excitation lines), log g (ionised lines), [Fe/H] (all metal lines), [X/Fe] for the
Mg, Ca, Ti and Mn lines, vmic (saturated lines) and vbroad (line width); noise sigma = |flux| / S/N_pixel
with S/N per Angstrom converted to per pixel (gridkit.kernels.noise). Built once per test session.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))  # `cinn_toy` importable by the tests of this folder

from cinn_toy import LABEL_NAMES, SNR, TINY, write_toy  # noqa: E402


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """The cINN tests' budget is for one core: one torch thread (also avoids OpenMP spin-waits on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_config():
    return dict(TINY)


@pytest.fixture(scope="session")
def toy_cube(tmp_path_factory):
    return write_toy(tmp_path_factory.mktemp("cinn") / "toy_cube.zarr")


@pytest.fixture(scope="session")
def toy_grid(tmp_path_factory):
    return write_toy(tmp_path_factory.mktemp("cinn") / "toy_grid.zarr", noiseless=True)


@pytest.fixture(scope="session")
def trained(toy_cube, tmp_path_factory):
    """(model_dir, cube path) of a tiny cINN trained on the toy cube."""
    import cinn

    out = tmp_path_factory.mktemp("cinn") / "model"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # session fixtures start before the package's one_torch_thread
    try:
        cinn.train(toy_cube, out, config=TINY, progress=False)
    finally:
        torch.set_num_threads(before)
    return out


@pytest.fixture(scope="session")
def test_spectra(toy_cube, trained):
    """(flux DataArray (model, wavelength), snr, true labels (n, 13)) of test-split models at one S/N."""
    import cinn

    ds = xr.open_zarr(toy_cube, consolidated=False)
    ids = cinn.read_split(trained)["test"]
    sub = ds.sel(model=ids)
    flux = sub.flux.isel(snr=1).load()
    truth = np.stack([sub[n].values for n in LABEL_NAMES], axis=1)
    return flux, np.full(ids.size, SNR[1]), truth
