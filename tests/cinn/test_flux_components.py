"""Flux compression (`flux_components`): the standardized flux enters the feature network as its coefficients on
the leading principal components of the training split, a fixed orthonormal basis fitted before training, saved with
the weights and used identically after loading; deterministic; refused when it cannot be fitted."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import cinn
from cinn.config import CINNConfig
from cinn.transforms import flux_basis
from gridkit.errors import ConfigError


@pytest.fixture(scope="module")
def compressed(toy_cube, tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("pca") / "model"
    cinn.train(toy_cube, out, config={**tiny_config, "flux_components": 12}, progress=False)
    return out


def test_the_basis_is_the_leading_principal_components_of_the_training_flux():
    rng = np.random.default_rng(0)
    wave = np.arange(200) / 200
    # three orthogonal patterns with decreasing amplitudes, plus a little noise: the basis must find them in that order
    patterns = np.stack([np.sin(2 * np.pi * wave), np.cos(6 * np.pi * wave), np.sin(10 * np.pi * wave)])
    coef = rng.standard_normal((300, 3)) * np.array([5.0, 2.0, 1.0])
    flux = coef @ patterns + 0.01 * rng.standard_normal((300, 200))
    basis = flux_basis(flux, np.zeros(200), np.ones(200), 3)
    assert basis.shape == (200, 3)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-5)
    for j in range(3):
        unit = patterns[j] / np.linalg.norm(patterns[j])
        assert abs(float(basis[:, j] @ unit)) > 0.99, j
    np.testing.assert_array_equal(basis, flux_basis(flux, np.zeros(200), np.ones(200), 3))  # deterministic, signs fixed


def test_a_compressed_model_round_trips_and_samples_identically(compressed, toy_cube):
    post = cinn.load(compressed)
    basis = post.model.flux_basis
    assert post.model.config.flux_components == 12 and tuple(basis.shape) == (post.wavelength.size, 12)
    np.testing.assert_allclose((basis.T @ basis).numpy(), np.eye(12), atol=1e-5)
    assert post.model.features[0].in_features == 13  # 12 coefficients + the S/N
    ds = xr.open_zarr(toy_cube, consolidated=False).isel(model=slice(0, 3), snr=-1)
    a = post.summarize(ds.flux.values, np.full(3, float(ds.snr)), n=64, seed=3)
    b = cinn.load(compressed).summarize(ds.flux.values, np.full(3, float(ds.snr)), n=64, seed=3)
    for lab in post.label_names:
        np.testing.assert_array_equal(a[lab].values, b[lab].values)
    # the condition depends on the flux only through its projection: a change orthogonal to the basis changes nothing
    cond = torch.from_numpy(post.scaler.condition_input(ds.flux.values, np.full(3, float(ds.snr))))
    ortho = torch.randn(post.wavelength.size)
    ortho -= basis @ (basis.T @ ortho)
    moved = cond.clone()
    moved[:, :-1] += ortho
    with torch.no_grad():
        torch.testing.assert_close(post.model.condition(cond), post.model.condition(moved), atol=1e-4, rtol=1e-4)


def test_bad_settings_are_refused(toy_cube, tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="flux_components must be an integer >= 0"):
        CINNConfig(flux_components=-1)
    with pytest.raises(ConfigError, match="flux_components must be an integer >= 0"):
        CINNConfig(flux_components=2.5)
    with pytest.raises(ConfigError, match="must not exceed the number of training models"):
        cinn.train(toy_cube, tmp_path / "m", config={**tiny_config, "flux_components": 100000}, progress=False)
    assert not (tmp_path / "m").exists()


def test_the_shipped_reference_recipe_is_a_valid_config():
    from pathlib import Path

    from cinn.config import as_config

    cfg = as_config(Path(__file__).parents[2] / "configs" / "reference-tsgrid-lte.yaml")
    assert cfg.flux_components == 128 and cfg.loader == "dynamic" and cfg.snr_range == (10.0, 1000.0)
