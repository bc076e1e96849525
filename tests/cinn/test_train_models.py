"""`train_models`: train on the first N models of the training split (nested subsets in the split's seeded order),
the same validation and test splits, everything fitted on the training split fitted on those N only, and split.json
recording them (the learning curve of docs/science.md)."""
import importlib
import json

import numpy as np
import pytest
import xarray as xr

import cinn
from cinn.config import CINNConfig
from cinn.data import split_models
from gridkit.errors import ConfigError

cinn_train = importlib.import_module("cinn.train")  # the module (cinn.train is also the train function)

IDS = np.array([f"m{i:04d}" for i in range(805)])


def test_smaller_n_is_a_subset_of_a_larger_one_and_test_validation_do_not_change():
    full = split_models(IDS, (0.75, 0.20, 0.05), 42)
    subsets = {n: split_models(IDS, (0.75, 0.20, 0.05), 42, train_models=n) for n in (1, 100, 200, 400, 604)}
    for n, split in subsets.items():
        assert split["train"].size == n
        assert np.array_equal(split["test"], full["test"]) and np.array_equal(split["validation"], full["validation"])
        assert set(split["train"]) <= set(full["train"])
    for small, large in ((1, 100), (100, 200), (200, 400), (400, 604)):
        assert set(subsets[small]["train"]) < set(subsets[large]["train"])
    assert np.array_equal(subsets[604]["train"], full["train"])
    # another seed: another subset (the order is the split's seeded permutation), still nested
    other = split_models(IDS, (0.75, 0.20, 0.05), 7, train_models=100)
    assert set(other["train"]) != set(subsets[100]["train"])
    assert set(other["train"]) <= set(split_models(IDS, (0.75, 0.20, 0.05), 7, train_models=200)["train"])


def test_bad_values_are_refused():
    with pytest.raises(ConfigError, match=r"train_models \(605\).*training split \(604"):
        split_models(IDS, (0.75, 0.20, 0.05), 42, train_models=605)
    for bad in (0, -3, 2.5, True, "100"):
        with pytest.raises(ConfigError, match="train_models"):
            CINNConfig(train_models=bad)
        with pytest.raises(ConfigError, match="train_models"):
            split_models(IDS, (0.75, 0.20, 0.05), 42, train_models=bad)
    assert CINNConfig.from_dict({"train_models": 100}).train_models == 100
    assert CINNConfig().train_models is None


def test_too_many_for_the_cube_is_refused_before_anything_is_written(toy_cube, tmp_path, tiny_config):
    n_train = split_models(xr.open_zarr(toy_cube, consolidated=False).model.values)["train"].size
    with pytest.raises(ConfigError, match=rf"train_models \({n_train + 1}\).*\({n_train} of"):
        cinn.train(toy_cube, tmp_path / "m", config={**tiny_config, "train_models": n_train + 1}, epochs=1, progress=False)
    assert not (tmp_path / "m").exists()


def test_a_training_run_fits_and_trains_on_those_models_only(toy_cube, tmp_path, tiny_config, monkeypatch):
    n = 120
    ds = xr.open_zarr(toy_cube, consolidated=False)
    ids = ds.model.values
    want = split_models(ids, train_models=n)
    full = split_models(ids)
    seen = {}  # the models each training-split fit was handed (flux statistics, PCA basis, label transform)

    def spy(name, fn, arg=0):
        def wrapped(*args, **kwargs):
            seen.setdefault(name, []).append(args[arg])
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(cinn_train, "flux_statistics", spy("flux_statistics", cinn_train.flux_statistics))
    monkeypatch.setattr(cinn_train, "flux_basis", spy("flux_basis", cinn_train.flux_basis))
    fit = cinn_train.LabelTransform.fit
    monkeypatch.setattr(cinn_train.LabelTransform, "fit", staticmethod(spy("label_fit", fit)))
    cfg = {**tiny_config, "train_models": n, "flux_components": 16, "batches_per_epoch": 2, "val_samples": 256}
    out = cinn.train(toy_cube, tmp_path / "m", config=cfg, epochs=1, progress=False)

    for name in ("flux_statistics", "flux_basis"):
        assert np.array_equal(np.sort(seen[name][0].model.values), want["train"]), name
    labels = np.stack([ds[k].sel(model=list(want["train"])).values for k in cinn.CINNConfig().labels], axis=1)
    assert np.allclose(np.sort(seen["label_fit"][0], axis=0), np.sort(labels, axis=0))

    doc = json.loads((out / "split.json").read_text())
    assert doc["train_models"] == n and doc["train_split_size"] == full["train"].size
    split = cinn.read_split(out)
    assert np.array_equal(split["train"], want["train"])
    assert np.array_equal(split["test"], full["test"]) and np.array_equal(split["validation"], full["validation"])
    meta = json.loads((out / "model.json").read_text())
    assert meta["config"]["train_models"] == n
    assert meta["training_data"]["split_sizes"]["train"] == n
    teff = ds["teff"].sel(model=list(want["train"])).values
    assert meta["bounds"]["teff"] == [pytest.approx(float(teff.min())), pytest.approx(float(teff.max()))]
    # the recorded split (ids + digests) is consistent: evaluation tools accept it
    assert np.array_equal(cinn.data.recorded_split(out)["train"][0], want["train"])
