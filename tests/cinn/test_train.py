"""Training on the toy cube: the validation loss falls, held-out Teff, log g and [Fe/H] are recovered far
better than the prior, the split is recorded by model, and resume equals uninterrupted."""
import csv

import numpy as np
import pytest
import xarray as xr

import cinn
from gridkit.errors import StoreError


def _log(model_dir):
    with open(model_dir / "log.csv") as fh:
        return list(csv.DictReader(fh))


def test_validation_loss_falls(trained):
    rows = _log(trained)
    initial, best = float(rows[0]["val_nll"]), min(float(r["val_nll"]) for r in rows[1:])
    print(f"validation NLL per dim: initial {initial:.3f}, best {best:.3f}")
    assert best < initial - 0.25


def test_recovers_teff_logg_feh_of_held_out_spectra_far_better_than_the_prior(trained, test_spectra):
    flux, snr, truth = test_spectra
    post = cinn.load(trained)
    ds = post.summarize(flux.isel(model=slice(0, 150)), snr[:150], n=512, seed=0)
    truth = truth[:150]
    for i, (name, max_ratio) in enumerate((("teff", 0.5), ("logg", 0.6), ("feh", 0.35))):
        rmse = float(np.sqrt(np.mean((ds[f"{name}_quantiles"].sel(quantile=0.5).values - truth[:, i]) ** 2)))
        rmse_map = float(np.sqrt(np.mean((ds[name].values - truth[:, i]) ** 2)))
        prior = float(truth[:, i].std())
        print(f"{name}: RMSE median {rmse:.3f}, MAP {rmse_map:.3f}, prior std {prior:.3f}")
        assert rmse < max_ratio * prior


def test_split_is_by_model_and_recorded(trained, toy_cube):
    split = cinn.read_split(trained)
    ids = xr.open_zarr(toy_cube, consolidated=False).model.values
    allids = np.concatenate([split["train"], split["test"], split["validation"]])
    assert np.array_equal(np.sort(allids), np.sort(ids))  # every model in exactly one split
    assert split["train"].size == pytest.approx(0.75 * ids.size, abs=1)
    assert split["test"].size == pytest.approx(0.20 * ids.size, abs=1)


def test_resume_equals_uninterrupted(toy_cube, tmp_path, tiny_config):
    cfg = {**tiny_config, "batches_per_epoch": 4, "val_samples": 256}
    full = cinn.train(toy_cube, tmp_path / "full", config=cfg, epochs=3, progress=False)
    part = cinn.train(toy_cube, tmp_path / "part", config=cfg, epochs=2, progress=False)
    cinn.train(toy_cube, part, epochs=3, resume=True, progress=False)
    a, b = cinn.load(full), cinn.load(part)
    assert a.model_id == b.model_id  # identical weight bytes
    assert [r["val_nll"] for r in _log(full)] == [r["val_nll"] for r in _log(part)]
    with pytest.raises(StoreError, match="resume"):
        cinn.train(toy_cube, full, config=cfg, progress=False)


def test_dynamic_noise_mode_trains_from_a_noiseless_grid(toy_grid, tmp_path, tiny_config):
    cfg = {**tiny_config, "batches_per_epoch": 3, "val_samples": 256, "copies_per_model": 2}
    out = cinn.train(toy_grid, tmp_path / "dyn", config=cfg, epochs=1, progress=False)
    post = cinn.load(out)
    assert post.meta["training_data"]["mode"] == "dynamic"
    assert post.scaler.logsnr_mean == pytest.approx(2.0)  # log10 S/N uniform over 10..1000
