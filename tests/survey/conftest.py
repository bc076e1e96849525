"""Fixtures: a small survey on a fake model's grid (fast machinery tests), and a real tiny cINN trained on
an analytic grid with a mock survey of its test split (built once per session, ~20 s)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `survey_fakes` importable here and (through spawn) on the workers

from survey_fakes import SAMPLES, WAVE, make_survey, write_fake_model  # noqa: E402,F401


@pytest.fixture
def fake_setup(tmp_path):
    """(model_dir, survey path) of a fake model and a 60-star survey on its grid."""
    return write_fake_model(tmp_path / "model", WAVE), make_survey(tmp_path / "survey.zarr")


#: a tiny network and a short training: seconds on two cores
TINY = dict(n_blocks=2, subnet_width=32, subnet_layers=3, feature_layers=[64], n_features=16, batch_size=128,
            batches_per_epoch=6, epochs=2, num_workers=0, shuffle_buffer=512, val_samples=256, lr=2e-3, betas=[0.9, 0.9],
            patience=20, device="cpu")


@pytest.fixture(scope="session")
def analytic_model(tmp_path_factory):
    """(model_dir, cube path, mock survey path): a tiny cINN on an analytic grid, and a mock survey of its test split."""
    import torch

    import cinn
    from cinn.survey import mock_survey
    from gridkit.degradation import add_noise
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




@pytest.fixture(scope="session")
def real_catalog(analytic_model, tmp_path_factory):
    """The catalog of the mock survey by the tiny cINN, inferred in this process (chunks of 16 stars)."""
    from cinn.survey import infer

    model_dir, _, survey_path = analytic_model
    out = tmp_path_factory.mktemp("catalog") / "catalog.zarr"
    return infer(model_dir, survey_path, out, samples=SAMPLES, chunk=16, seed=0, progress=False, command="pytest real_catalog")


@pytest.fixture(scope="session")
def two_workers():
    """A LocalCluster of 2 spawned worker processes x 1 thread (shared: starting one costs seconds)."""
    from gridkit.cluster import dask_client

    here = str(Path(__file__).parent)
    with dask_client(n_workers=2, threads_per_worker=1, quiet=True, memory_limit="1GiB") as client:
        client.run(lambda: sys.path.insert(0, here))  # survey_fakes on the workers
        yield client
