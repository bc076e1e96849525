"""weight_average: the weights validated, kept and written are a moving average of the optimiser's (Polyak
averaging), while the optimiser goes on from its own; the average survives a resume (resume equals uninterrupted)."""
import csv

import numpy as np
import pytest
import torch

import cinn
from cinn import checkpoint as ck
from cinn.config import CINNConfig
from gridkit.errors import ConfigError


def _val(model_dir):
    with open(model_dir / "log.csv") as fh:
        return [float(r["val_nll"]) for r in csv.DictReader(fh)]


def _checkpoint(model_dir, name=ck.LAST):
    files = ck.read_json(model_dir / ck.CKPT_DIR / ck.STATE)["files"]
    return ck.load_tensors(model_dir / ck.CKPT_DIR / name, files[name])


@pytest.fixture(scope="module")
def cfg(tiny_config):
    return {**tiny_config, "batches_per_epoch": 4, "val_samples": 256}


def test_the_written_weights_are_the_average_and_the_optimiser_keeps_its_own(toy_cube, tmp_path, cfg):
    plain = cinn.train(toy_cube, tmp_path / "plain", config=cfg, epochs=2, progress=False)
    avg = cinn.train(toy_cube, tmp_path / "avg", config={**cfg, "weight_average": 0.5}, epochs=2, progress=False)
    assert cinn.load(avg).model_id != cinn.load(plain).model_id
    assert _val(avg)[1:] != _val(plain)[1:]  # the averaged weights are validated
    tensors = _checkpoint(avg)
    raw = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    averaged = [v for k, v in sorted(tensors.items(), key=lambda kv: kv[0]) if k.startswith("extra.averaged.")]
    assert averaged, "the checkpoint holds the averaged weights"
    # the optimiser's own weights continue unaveraged: the same as without averaging (the average never feeds back)
    plain_raw = {k[6:]: v for k, v in _checkpoint(plain).items() if k.startswith("model.")}
    assert all(torch.equal(raw[k], plain_raw[k]) for k in raw)
    # the written model (the best epoch) is the averaged weights of that epoch, not the optimiser's
    best = _checkpoint(avg, ck.BEST)
    float_keys = [k for k, v in raw.items() if v.is_floating_point() and k in best]
    assert any(not torch.equal(best[k], raw[k]) for k in float_keys)
    assert ck.read_json(avg / "model.json")["training"]["best_epoch"] == 2  # the last epoch: its average is the checkpoint's
    assert len(averaged) == len(float_keys) and all(any(torch.equal(a, best[k]) for k in float_keys) for a in averaged)


def test_a_vanishing_average_is_the_optimisers_weights(toy_cube, tmp_path, cfg):
    plain = cinn.train(toy_cube, tmp_path / "plain", config=cfg, epochs=2, progress=False)
    # d = 1e-12: the average is the last step's weights, bit for bit (so the swaps put back what they took)
    tiny = cinn.train(toy_cube, tmp_path / "tiny", config={**cfg, "weight_average": 1e-12}, epochs=2, progress=False)
    assert cinn.load(tiny).model_id == cinn.load(plain).model_id
    assert _val(tiny) == _val(plain)


def test_resume_with_averaging_equals_uninterrupted(toy_cube, tmp_path, cfg):
    c = {**cfg, "weight_average": 0.7}
    full = cinn.train(toy_cube, tmp_path / "full", config=c, epochs=3, progress=False)
    part = cinn.train(toy_cube, tmp_path / "part", config=c, epochs=2, progress=False)
    cinn.train(toy_cube, part, epochs=3, resume=True, progress=False)
    assert cinn.load(full).model_id == cinn.load(part).model_id
    assert _val(full) == _val(part)
    a, b = _checkpoint(full), _checkpoint(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.9"])
def test_a_decay_outside_0_1_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match="weight_average"):
        CINNConfig(weight_average=bad)
    assert CINNConfig(weight_average=0.99).weight_average == 0.99 and np.isclose(CINNConfig().weight_average or 0, 0)
