"""`split_from`: a training keeps the test and validation splits another trained model recorded, and trains on every
other model of its store, so a network retrained on a grown grid (or one with models added) is measured on the same
held-out models. Checked: the kept splits, the training split, nested `train_models` subsets, refusals by name before
anything is written, and a resume refused when the kept split changed."""
import json

import numpy as np
import pytest
import xarray as xr

import cinn
from cinn.config import CINNConfig
from gridkit.errors import ConfigError, GridError, StoreError
from gridkit.grid import write_grid

QUICK = {"batches_per_epoch": 2, "val_samples": 256}


@pytest.fixture(scope="module")
def first(toy_cube, tmp_path_factory, tiny_config):
    """(model dir, its store): a network trained on the first 120 models of the toy cube (the grid before it grew)."""
    root = tmp_path_factory.mktemp("split_from")
    small = write_grid(xr.open_zarr(toy_cube, consolidated=False).isel(model=slice(0, 120)).load(), root / "small.zarr")
    return cinn.train(small, root / "first", config={**tiny_config, **QUICK}, epochs=1, progress=False), small


def test_the_grown_grid_keeps_the_test_and_validation_models_and_trains_on_all_others(first, toy_cube, tmp_path, tiny_config):
    model_a, _ = first
    kept = cinn.read_split(model_a)
    out = cinn.train(toy_cube, tmp_path / "b", config={**tiny_config, **QUICK, "split_from": str(model_a)}, epochs=1, progress=False)
    split = cinn.read_split(out)
    for k in ("test", "validation"):
        assert np.array_equal(split[k], kept[k])
    ids = xr.open_zarr(toy_cube, consolidated=False).model.values
    assert np.array_equal(split["train"], np.setdiff1d(ids, np.concatenate([kept["test"], kept["validation"]])))
    assert set(kept["train"]) < set(split["train"])  # the first network's training models, and the new ones
    doc = json.loads((out / "split.json").read_text())
    assert doc["split_from"] == str(model_a.resolve()) and "fractions" not in doc
    assert json.loads((out / "model.json").read_text())["config"]["split_from"] == str(model_a)
    # evaluation tools accept the recorded split (ids and digests consistent with model.json)
    assert np.array_equal(cinn.data.recorded_split(out)["test"][0], kept["test"])


def test_train_models_draws_nested_subsets_of_the_other_models(first, toy_cube):
    model_a, _ = first
    ds = xr.open_zarr(toy_cube, consolidated=False)
    ids = ds.model.values
    digests = cinn.data.model_digests(ids, np.stack([ds[k].values for k in CINNConfig().labels], axis=1))
    full = cinn.data.split_from_model(ids, digests, model_a)
    subsets = {n: cinn.data.split_from_model(ids, digests, model_a, 42, n) for n in (10, 50, full["train"].size)}
    assert set(subsets[10]["train"]) < set(subsets[50]["train"]) < set(full["train"])
    assert np.array_equal(subsets[full["train"].size]["train"], full["train"])
    assert all(np.array_equal(s["test"], full["test"]) for s in subsets.values())
    assert set(cinn.data.split_from_model(ids, digests, model_a, 7, 10)["train"]) != set(subsets[10]["train"])
    with pytest.raises(ConfigError, match=rf"train_models \({full['train'].size + 1}\) exceeds the training models \({full['train'].size}"):
        cinn.data.split_from_model(ids, digests, model_a, 42, full["train"].size + 1)


def test_missing_or_other_models_are_refused_by_name_before_anything_is_written(first, toy_cube, tmp_path, tiny_config):
    model_a, _ = first
    cfg = {**tiny_config, **QUICK, "split_from": str(model_a)}
    ds = xr.open_zarr(toy_cube, consolidated=False)
    later = write_grid(ds.isel(model=slice(120, None)).load(), tmp_path / "later.zarr")  # none of the first network's models
    with pytest.raises(GridError, match=r"split_from: \d+ of the \d+ test models of .* are not in this store \(ids "):
        cinn.train(later, tmp_path / "m1", config=cfg, epochs=1, progress=False)
    assert not (tmp_path / "m1").exists()
    test_id = cinn.read_split(model_a)["test"][0]
    relabelled = ds.load()
    relabelled["teff"] = relabelled["teff"].where(relabelled.model != test_id, relabelled["teff"] + 50.0)
    other = write_grid(relabelled, tmp_path / "other.zarr")
    with pytest.raises(GridError, match=rf"1 of the \d+ test models of .* have other labels in this store under the same id \(ids {test_id}\)"):
        cinn.train(other, tmp_path / "m2", config=cfg, epochs=1, progress=False)
    assert not (tmp_path / "m2").exists()
    with pytest.raises(StoreError, match=r"split_from: .*nowhere is not a trained model directory \(it has no model.json\)"):
        cinn.train(toy_cube, tmp_path / "m3", config={**cfg, "split_from": str(tmp_path / "nowhere")}, epochs=1, progress=False)
    for bad in ("", 3, "  "):
        with pytest.raises(ConfigError, match="split_from must be None or the path"):
            CINNConfig(split_from=bad)


def test_resume_is_refused_when_the_kept_split_changed(first, toy_cube, tmp_path, tiny_config):
    _, small = first
    model_a = cinn.train(small, tmp_path / "a", config={**tiny_config, **QUICK}, epochs=1, progress=False)
    cfg = {**tiny_config, **QUICK, "epochs": 2, "split_from": str(model_a)}
    out = cinn.train(toy_cube, tmp_path / "b", config=cfg, epochs=1, progress=False)
    cinn.train(small, model_a, config={**tiny_config, **QUICK, "split_seed": 7}, epochs=1, progress=False, overwrite=True)
    with pytest.raises(StoreError, match="cannot resume: the .*models differ from those .*split.json recorded"):
        cinn.train(toy_cube, out, epochs=2, resume=True, progress=False)
