"""`cinn.train(..., overwrite=True)` / `gridkit train --overwrite`: the old model directory is replaced only once
the new one is complete; a failed overwrite leaves it byte-identical; --overwrite with --resume is refused."""
import hashlib
import json
import os

import pytest

import cinn
from cinn import checkpoint as ck
from gridkit.cli import main
from gridkit.errors import ConfigError, StoreError


@pytest.fixture()
def quick(tiny_config):
    return {**tiny_config, "epochs": 1, "batches_per_epoch": 2, "val_samples": 128, "batch_size": 64}


def _digests(path) -> dict[str, str]:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def _hidden(parent) -> list[str]:
    return sorted(n for n in os.listdir(parent) if n.startswith("."))


def _seed(model_dir) -> int:
    return json.loads((model_dir / ck.MODEL_JSON).read_text())["config"]["seed"]


def test_overwrite_replaces_the_model_once_complete(toy_cube, tmp_path, quick):
    out = tmp_path / "A"
    cinn.train(toy_cube, out, config={**quick, "seed": 1}, progress=False)
    first = _digests(out)
    assert cinn.train(toy_cube, out, config={**quick, "seed": 2}, progress=False, overwrite=True) == out
    assert _seed(out) == 2
    now = _digests(out)
    assert now[ck.MODEL_WEIGHTS] != first[ck.MODEL_WEIGHTS]
    assert _hidden(tmp_path) == []  # no .A.overwrite, .A.replaced nor .A.lock left
    cinn.load(out)  # a whole, loadable model


def test_existing_model_without_overwrite_is_refused_naming_it(toy_cube, tmp_path, quick, capsys):
    out = tmp_path / "A"
    cinn.train(toy_cube, out, config=quick, progress=False)
    before = _digests(out)
    with pytest.raises(StoreError, match="--overwrite"):
        cinn.train(toy_cube, out, config=quick, progress=False)
    assert main(["train", str(toy_cube), "--out", str(out), "--seed", "3", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _digests(out) == before and _hidden(tmp_path) == []


def test_a_failed_overwrite_leaves_the_old_model_byte_identical(toy_cube, tmp_path, quick, monkeypatch):
    out = tmp_path / "A"
    cinn.train(toy_cube, out, config={**quick, "seed": 1}, progress=False)
    before = _digests(out)
    Trainer = cinn.train.__globals__["Trainer"]
    staged = []

    def fail(self, state_dict, state):  # after the staging directory holds a checkpoint, before the model is written
        staged.append(sorted(os.listdir(self.out)))
        assert self.out == tmp_path / ".A.overwrite"
        raise RuntimeError("boom")

    monkeypatch.setattr(Trainer, "write_model", fail)
    with pytest.raises(RuntimeError, match="boom"):
        cinn.train(toy_cube, out, config={**quick, "seed": 2}, progress=False, overwrite=True)
    assert ck.CKPT_DIR in staged[0]  # training did write into the staging directory
    assert _digests(out) == before
    assert _hidden(tmp_path) == []  # the staging directory is removed


def test_a_swap_cut_between_its_renames_is_undone(toy_cube, tmp_path, quick):
    out = tmp_path / "A"
    cinn.train(toy_cube, out, config=quick, progress=False)
    before = _digests(out)
    os.rename(out, tmp_path / ".A.replaced")  # as if killed between the two renames of the swap
    (tmp_path / ".A.overwrite").mkdir()
    with pytest.raises(StoreError, match="--overwrite"):  # the old model is put back first, then refused
        cinn.train(toy_cube, out, config=quick, progress=False)
    assert _digests(out) == before


def test_overwrite_with_resume_is_refused(toy_cube, tmp_path, quick, capsys):
    out = tmp_path / "A"
    with pytest.raises(ConfigError, match="--resume"):
        cinn.train(toy_cube, out, config=quick, resume=True, overwrite=True, progress=False)
    assert main(["train", str(toy_cube), "--out", str(out), "--resume", "--overwrite", "--no-progress"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert not out.exists()
