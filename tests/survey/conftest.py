"""Fixtures: a small survey on a fake model's grid (fast machinery tests), and a real tiny cINN trained on
an analytic grid with a mock survey of its test split (built once per session, ~20 s)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))  # `fakes` importable here and (through spawn) on the workers

from fakes import write_fake_model  # noqa: E402

WAVE = np.linspace(5000.0, 5010.0, 41)


def make_survey(path, n=60, seed=0, wave=WAVE, chunk=16, ids=None, snr=None, extra=True):
    from gridkit import store

    rng = np.random.default_rng(seed)
    flux = (1 - 0.5 * rng.random((n, wave.size)) * rng.random((n, 1))).astype("f4")
    ds = xr.Dataset(
        {"flux": (("star", "wavelength"), flux, {"units": "1", "long_name": "normalised flux"}),
         "snr": ("star", rng.uniform(30, 300, n) if snr is None else snr, {"units": "1", "long_name": "S/N per A"}),
         "star_id": ("star", np.array(ids if ids is not None else [f"4MOST-{i:06d}" for i in range(n)], dtype=object))},
        coords={"star": np.arange(n), "wavelength": ("wavelength", wave, {"units": "Angstrom"})},
    )
    if extra:
        ds["ra"] = ("star", rng.uniform(0, 360, n), {"units": "deg", "long_name": "right ascension"})
        ds["dec"] = ("star", rng.uniform(-90, 30, n), {"units": "deg", "long_name": "declination"})
        ds["field"] = ("star", np.array([f"F{i % 3}" for i in range(n)], dtype=object))
    ds["flux"] = ds.flux.chunk({"star": chunk})
    store.write_dataset(ds, path, dim="star", region_size=chunk, progress=False)
    return path


@pytest.fixture
def fake_setup(tmp_path):
    """(model_dir, survey path) of a fake model and a 60-star survey on its grid."""
    return write_fake_model(tmp_path / "model", WAVE), make_survey(tmp_path / "survey.zarr")


#: a tiny network and a short training: seconds on two cores
TINY = dict(n_blocks=2, subnet_width=32, subnet_layers=2, feature_layers=[64], n_features=16, batch_size=128,
            batches_per_epoch=6, epochs=2, num_workers=0, shuffle_buffer=512, val_samples=256, lr=2e-3, betas=[0.9, 0.9],
            patience=20, device="cpu")


@pytest.fixture(scope="session")
def analytic_model(tmp_path_factory):
    """(model_dir, cube path, mock survey path): a tiny cINN on an analytic grid, and a mock survey of its test split."""
    import torch

    import cinn
    from cinn.survey import mock_survey
    from gridkit.degrade import add_noise
    from gridkit.grid import open_grid, write_grid
    from gridkit.synth import AnalyticSynthesizer, sample_labels, synthesize

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("survey")
    synthesize(sample_labels(800, seed=1), AnalyticSynthesizer(wavelength_range=((5160.0, 5200.0),), step=0.1), root / "base.zarr",
               progress=False, models_per_region=100)
    write_grid(add_noise(open_grid(root / "base.zarr"), snr=[50.0, 250.0], seed=0), root / "cube.zarr")
    cinn.train(root / "cube.zarr", root / "model", config=TINY, progress=False)
    mock_survey(root / "cube.zarr", root / "survey.zarr", snr=250, model_dir=root / "model", chunk=40)
    return root / "model", root / "cube.zarr", root / "survey.zarr"
