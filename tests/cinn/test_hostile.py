"""Hostile inputs to training, model directories and mock surveys: each fails safe, with a clear error of the
package's own types naming the problem and the value, nothing deleted or overwritten, no output left half-written.

- non-finite training data (anywhere in a cube or noiseless grid, or appearing only in a chunk read) and runs
  whose validation losses are all non-finite never produce a model directory;
- the weights and checkpoint files are always hashed as loaded and refused unless the JSON records that hash;
  the posterior (and a catalog's model_hash) reports the hash of the bytes that run;
- train validates everything before it creates its output, removes only what it created on a failure, keeps
  a resumable checkpoint after an interruption, and never writes into, onto or around its inputs;
- resume refuses a checkpoint whose training data changed (one flux value);
- mock-survey --model refuses a cube whose models are not the model's training data (ids with other labels).
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil

import numpy as np
import pytest
import xarray as xr
import zarr

import cinn
from cinn import checkpoint as ck
from cinn.data import split_models
from gridkit.cli import main
from gridkit.errors import ConfigError, GridError, StoreError

from cinn_toy import TINY, WAVE, write_toy

QUICK = {**TINY, "epochs": 1, "batches_per_epoch": 2, "val_samples": 128, "batch_size": 64}


# -- helpers -------------------------------------------------------------------------------------------
@pytest.fixture()
def small_cube(tmp_path):
    """A 300-model toy cube (6 chunks of 50 models) of its own: tests change it."""
    return write_toy(tmp_path / "cube.zarr", n_models=300, region_size=50)


def _ids(path) -> np.ndarray:
    return np.asarray(xr.open_zarr(path, consolidated=False)["model"].values)


def _model_of(path, split: str, k: int = 3) -> tuple[int, int]:
    """(model id, position) of the k-th model of `split` as training splits the store (default fractions and seed)."""
    ids = _ids(path)
    m = split_models(ids, QUICK.get("split", (0.75, 0.20, 0.05)), 42)[split][k]
    return int(m), int(np.flatnonzero(ids == m)[0])


def _set_flux(path, index, value) -> None:
    """Rewrite one flux value in place with zarr (its chunk is rewritten on disk)."""
    arr = zarr.open_group(str(path), mode="r+", zarr_format=3)["flux"]
    arr[index] = value


def _tree(path) -> dict[str, bytes]:
    """Every file below `path` with its bytes: what 'nothing deleted or overwritten' compares."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- 1. non-finite training data and losses --------------------------------------------------------------
@pytest.mark.parametrize("split,value", [("train", np.nan), ("test", np.inf), ("validation", -np.inf)])
def test_a_non_finite_flux_value_anywhere_in_the_cube_is_refused_naming_model_and_wavelength(small_cube, tmp_path, split, value):
    m, pos = _model_of(small_cube, split)
    _set_flux(small_cube, (pos, 1, 20), value)
    out = tmp_path / "model"
    with pytest.raises(GridError) as err:
        cinn.train(small_cube, out, config=QUICK, progress=False)
    msg = str(err.value)
    assert "1 NaN/inf flux value(s)" in msg and f"(model {m})" in msg, msg
    assert f"(wavelength {WAVE[20]:g} A)" in msg and "(snr 60)" in msg and str(small_cube) in msg, msg
    assert "lower lr" not in msg
    assert not out.exists()  # no model directory, not even an empty one


def test_a_non_finite_value_in_a_noiseless_grid_is_refused(tmp_path):
    grid = write_toy(tmp_path / "grid.zarr", n_models=300, noiseless=True, region_size=50)
    m, pos = _model_of(grid, "train", 7)
    _set_flux(grid, (pos, 99), np.nan)
    out = tmp_path / "model"
    with pytest.raises(GridError, match=rf"\(model {m}\) at 1 pixel\(s\) \(wavelength {WAVE[99]:g} A\)"):
        cinn.train(grid, out, config={**QUICK, "copies_per_model": 2}, progress=False)
    assert not out.exists()


def test_cli_train_on_a_nan_cube_exits_2_and_writes_nothing(small_cube, tmp_path, capsys):
    m, pos = _model_of(small_cube, "train")
    _set_flux(small_cube, (pos, 0, 5), np.nan)
    out = tmp_path / "model"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(QUICK))
    assert main(["train", str(small_cube), "--out", str(out), "--config", str(cfg), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "model written" not in captured.out
    assert f"(model {m})" in captured.err and f"{WAVE[5]:g} A" in captured.err
    assert not out.exists()


def _corrupt_after_the_scan(monkeypatch, path, index):
    """Training checked the store finite when it started; a chunk replaced on disk afterwards holds a NaN."""
    init = cinn.train.__globals__["Trainer"].__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        _set_flux(path, index, np.nan)

    monkeypatch.setattr(cinn.train.__globals__["Trainer"], "__init__", patched)


def test_a_nan_that_appears_only_in_a_chunk_read_stops_training_naming_models_and_store(small_cube, tmp_path, monkeypatch):
    m, pos = _model_of(small_cube, "train", 11)
    _corrupt_after_the_scan(monkeypatch, small_cube, (pos, 2, 33))
    out = tmp_path / "model"
    with pytest.raises(GridError) as err:
        cinn.train(small_cube, out, config={**QUICK, "batches_per_epoch": 12}, progress=False)  # 12 x 64 spectra: every chunk read
    msg = str(err.value)
    assert f"model(s) {m} at 1 pixel(s) ({WAVE[33]:g} A)" in msg and str(small_cube) in msg and "changed on disk" in msg, msg
    assert "lower lr" not in msg
    assert not out.exists()


def test_a_run_whose_validation_losses_are_all_non_finite_writes_no_model(small_cube, tmp_path, monkeypatch):
    Trainer = cinn.train.__globals__["Trainer"]
    monkeypatch.setattr(Trainer, "validate", lambda self: (math.nan, math.nan, math.nan))
    out = tmp_path / "model"
    with pytest.raises(ck.TrainingError, match="no epoch of 2 gave a finite validation loss"):
        cinn.train(small_cube, out, config=QUICK, epochs=2, progress=False)
    assert not out.exists()


def test_the_best_epoch_is_the_best_finite_validation_loss(small_cube, tmp_path, monkeypatch):
    Trainer = cinn.train.__globals__["Trainer"]
    losses = iter([1.0, math.nan, 0.5, math.inf, 0.7])  # before training, then epochs 1..4

    def validate(self):
        v = next(losses)
        return v, 0.0, v

    monkeypatch.setattr(Trainer, "validate", validate)
    out = cinn.train(small_cube, tmp_path / "model", config=QUICK, epochs=4, progress=False)
    training = json.loads((out / "model.json").read_text())["training"]
    assert training["best_epoch"] == 2 and training["best_val_nll"] == 0.5


# -- 3. the hash check cannot be skipped ------------------------------------------------------------------
@pytest.fixture()
def model_copy(trained, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(trained, dst)
    return dst


def _swap_weights(model_dir) -> None:
    """Replace model.safetensors by other (valid, perturbed) weights of the same network."""
    meta, state, extras = ck.read_model(model_dir)
    state = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in state.items()}
    tensors = {**state, **{ck.EXTRA + k: __import__("torch").from_numpy(v) for k, v in extras.items()}}
    ck.save_tensors(model_dir / ck.MODEL_WEIGHTS, tensors, {"format": ck.FORMAT})


def _edit_json(path, **changes) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("files", [{}, {"model.safetensors": None}, {"model.safetensors": "abc"}, "sha256"],
                         ids=["no-record", "null-record", "not-a-sha256", "not-a-mapping"])
@pytest.mark.parametrize("swapped", [False, True], ids=["own-weights", "swapped-weights"])
def test_weights_without_a_recorded_sha256_are_refused(model_copy, files, swapped):
    if swapped:
        _swap_weights(model_copy)
    _edit_json(model_copy / "model.json", files=files)
    with pytest.raises(ck.ModelDirError, match="model.safetensors|'files'"):
        cinn.load(model_copy)


def test_swapped_weights_are_refused_and_a_wrong_model_id_too(model_copy):
    good = (model_copy / "model.json").read_text()
    _swap_weights(model_copy)
    with pytest.raises(ck.ModelDirError, match=r"model.safetensors is corrupt or was replaced: its sha256"):
        cinn.load(model_copy)
    # a model.json edited to the swapped file's hash still names the old model id: refused, the id would lie
    _edit_json(model_copy / "model.json", files={"model.safetensors": _sha256(model_copy / "model.safetensors")})
    with pytest.raises(ck.ModelDirError, match=r"model_id '[0-9a-f]{16}'.*does not name these weights"):
        cinn.load(model_copy)
    assert json.loads(good)["model_id"] != _sha256(model_copy / "model.safetensors")[:16]


def test_the_posterior_and_the_catalog_report_the_hash_of_the_bytes_loaded(trained):
    from cinn.survey import _model_hash

    post = cinn.load(trained)
    digest = _sha256(trained / "model.safetensors")  # computed here, independently of gridkit
    assert post.weights_sha256 == digest and post.model_id == digest[:16]
    assert _model_hash(post) == "sha256:" + digest
    post.meta["files"] = {}  # what a model.json claims after loading does not change what ran
    assert _model_hash(post) == "sha256:" + digest


def test_cli_evaluate_with_unverifiable_weights_exits_2_and_writes_no_report(model_copy, toy_cube, tmp_path, capsys):
    _swap_weights(model_copy)
    _edit_json(model_copy / "model.json", files={})
    out = tmp_path / "report"
    assert main(["evaluate", str(model_copy), str(toy_cube), "--out", str(out), "--samples", "8", "--no-progress"]) == 2
    assert "model.safetensors has no sha256 recorded" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("files", [{}, {"model.safetensors": None}], ids=["no-record", "null-record"])
def test_cli_infer_with_swapped_unverifiable_weights_exits_2_and_writes_no_catalog(trained, toy_cube, tmp_path, capsys, files):
    from cinn.survey import mock_survey

    survey = mock_survey(toy_cube, tmp_path / "survey.zarr", snr=60.0, model_dir=trained)
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    _swap_weights(model)
    _edit_json(model / "model.json", files=files)
    out = tmp_path / "catalog.zarr"
    assert main(["infer", str(model), str(survey), "--out", str(out), "--samples", "8", "--no-progress"]) == 2
    assert "model.safetensors has no sha256 recorded" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name,record", [("last.safetensors", None), ("best.safetensors", None), ("best.safetensors", "swap")])
def test_resume_checks_every_checkpoint_file_against_its_recorded_hash(model_copy, toy_cube, name, record):
    state_path = model_copy / ck.CKPT_DIR / ck.STATE
    state = json.loads(state_path.read_text())
    if record == "swap":  # best.safetensors replaced by other weights, its record kept
        shutil.copy(model_copy / ck.CKPT_DIR / ck.LAST, model_copy / ck.CKPT_DIR / ck.BEST)
    else:
        del state["files"][name]
    state_path.write_text(json.dumps(state))
    before = _tree(model_copy)
    with pytest.raises(ck.ModelDirError, match=name):
        cinn.train(toy_cube, model_copy, epochs=state["epoch"] + 1, resume=True, progress=False)
    assert _tree(model_copy) == before


# -- 4. validation before the output exists; a failure removes only what the run created -------------------
def test_train_refuses_bad_input_before_creating_its_output(small_cube, tmp_path):
    out = tmp_path / "deep" / "model"
    with pytest.raises(GridError, match="does not exist"):
        cinn.train(tmp_path / "nowhere.zarr", out, config=QUICK, progress=False)
    with pytest.raises(ConfigError, match="n_blocks"):
        cinn.train(small_cube, out, config={**QUICK, "n_blocks": 0}, progress=False)
    with pytest.raises(GridError, match="split into train/test/validation"):
        cinn.train(write_toy(tmp_path / "two.zarr", n_models=2), out, config=QUICK, progress=False)
    xr.open_zarr(small_cube, consolidated=False).drop_vars("feh").to_zarr(tmp_path / "nofeh.zarr", consolidated=False)
    with pytest.raises(GridError, match="feh"):
        cinn.train(tmp_path / "nofeh.zarr", out, config=QUICK, progress=False)
    assert not (tmp_path / "deep").exists()


def test_a_failed_run_in_an_existing_folder_removes_only_what_it_created(small_cube, tmp_path, monkeypatch):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    _, pos = _model_of(small_cube, "train", 5)
    _corrupt_after_the_scan(monkeypatch, small_cube, (pos, 0, 0))
    with pytest.raises(GridError, match="changed on disk"):
        cinn.train(small_cube, out, config={**QUICK, "batches_per_epoch": 12}, progress=False)
    assert _tree(out) == {"notes.txt": b"the user's own file"}


def test_an_interrupted_run_keeps_its_checkpoint_and_resumes(small_cube, tmp_path, monkeypatch):
    Trainer = cinn.train.__globals__["Trainer"]
    calls = []

    def interrupt(self, row):
        calls.append(row["epoch"])
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "__init__", _with_on_epoch(Trainer.__init__, interrupt))
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt) as err:
        cinn.train(small_cube, out, config=QUICK, epochs=2, progress=False)
    assert any("--resume" in note for note in getattr(err.value, "__notes__", []))
    assert (out / ck.CKPT_DIR / ck.STATE).is_file() and not (out / ck.MODEL_JSON).exists()
    monkeypatch.undo()
    cinn.train(small_cube, out, epochs=2, resume=True, progress=False)
    assert json.loads((out / ck.MODEL_JSON).read_text())["training"]["epochs_run"] == 2


def _with_on_epoch(init, hook):
    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.on_epoch = lambda row: hook(self, row)

    return patched


# -- 5. the output is never an input, inside one or around one ------------------------------------------
@pytest.mark.parametrize("where,word", [("cube", "is the input"), ("inside-cube", "lies inside the input"),
                                        ("around-cube", "contains the input"), ("config", "is the input"),
                                        ("around-config", "contains the input")])
def test_train_never_writes_onto_into_or_around_its_inputs(tmp_path, where, word):
    data = tmp_path / "data"
    cube = write_toy(data / "cube.zarr", n_models=300, region_size=50)
    cfg = data / "conf" / "cfg.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps(QUICK))
    out = {"cube": cube, "inside-cube": cube / "model", "around-cube": data, "config": cfg, "around-config": cfg.parent}[where]
    before = _tree(data)
    with pytest.raises(StoreError, match=word):
        cinn.train(cube, out, config=cfg, progress=False)
    assert _tree(data) == before


def test_tune_never_writes_into_its_cube(small_cube):
    from cinn.tune import tune

    before = _tree(small_cube)
    with pytest.raises(StoreError, match="lies inside the input"):
        tune(small_cube, small_cube / "tune", n_trials=1, epochs=1, config=QUICK, progress=False)
    assert _tree(small_cube) == before


# -- 6. resume refuses changed training data ---------------------------------------------------------------
def test_resume_after_one_flux_value_changed_is_refused_and_a_fresh_run_works(small_cube, tmp_path):
    out = cinn.train(small_cube, tmp_path / "model", config=QUICK, progress=False)
    _, pos = _model_of(small_cube, "test", 2)
    old = float(zarr.open_group(str(small_cube), mode="r")["flux"][pos, 1, 40])
    _set_flux(small_cube, (pos, 1, 40), old + 0.01)  # a test model: the split, labels and ids are all unchanged
    before = _tree(out)
    with pytest.raises(StoreError, match=r"the training data changed since this checkpoint: .*start afresh without --resume"):
        cinn.train(small_cube, out, epochs=2, resume=True, progress=False)
    assert _tree(out) == before
    fresh = cinn.train(small_cube, tmp_path / "fresh", config=QUICK, progress=False)
    assert cinn.load(fresh).meta["training_data"]["hash"] != cinn.load(out).meta["training_data"]["hash"]


def test_a_checkpoint_without_a_training_data_hash_is_not_resumed(model_copy, toy_cube):
    state_path = model_copy / ck.CKPT_DIR / ck.STATE
    state = json.loads(state_path.read_text())
    del state["data_hash"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(StoreError, match="records no hash of its training data"):
        cinn.train(toy_cube, model_copy, epochs=state["epoch"] + 1, resume=True, progress=False)


def test_the_data_hash_follows_the_content_not_the_path(small_cube, tmp_path):
    from cinn.data import open_training_store
    from cinn.train import data_hash

    labels = QUICK.get("labels", cinn.CINNConfig().labels)
    copy = tmp_path / "copy.zarr"
    shutil.copytree(small_cube, copy)
    h = data_hash(open_training_store(small_cube, labels))
    assert data_hash(open_training_store(copy, labels)) == h
    _set_flux(copy, (299, 2, 139), float(zarr.open_group(str(copy), mode="r")["flux"][299, 2, 139]) * 1.001)
    assert data_hash(open_training_store(copy, labels)) != h


# -- 8. mock-survey --model takes its split from the model's own training data only --------------------------
def test_mock_survey_refuses_a_cube_whose_models_have_other_labels(trained, tmp_path):
    from cinn.survey import mock_survey

    foreign = write_toy(tmp_path / "foreign.zarr", seed=2)  # the same model ids 0..2999, other stars
    out = tmp_path / "survey.zarr"
    with pytest.raises(GridError, match=r"is not the data model_dir .* was trained on: \d+ of the \d+ 'test' model ids have other labels"):
        mock_survey(foreign, out, snr=60.0, model_dir=trained)
    assert not out.exists()


def test_mock_survey_accepts_a_renoised_copy_of_the_training_grid(trained, toy_cube, tmp_path):
    from cinn.survey import mock_survey

    ds = xr.open_zarr(toy_cube, consolidated=False).load()
    rng = np.random.default_rng(5)
    ds["flux"] = ds.flux + (0.01 * rng.standard_normal(ds.flux.shape)).astype(np.float32)
    ds.to_zarr(tmp_path / "renoised.zarr", consolidated=False)
    out = mock_survey(tmp_path / "renoised.zarr", tmp_path / "survey.zarr", snr=60.0, model_dir=trained)
    got = np.asarray(xr.open_zarr(out, consolidated=False)["model"].values)
    np.testing.assert_array_equal(got, cinn.read_split(trained)["test"])


@pytest.mark.parametrize("edit", ["swap-test-and-train", "no-digests"])
def test_mock_survey_refuses_a_tampered_or_old_split(model_copy, toy_cube, tmp_path, edit):
    from cinn.survey import mock_survey

    path = model_copy / "split.json"
    doc = json.loads(path.read_text())
    if edit == "no-digests":  # as written before gridkit recorded them
        del doc["digests"]
        match = "records no digest of its split's models"
    else:
        doc["test"], doc["train"] = doc["train"], doc["test"]
        doc["digests"]["test"], doc["digests"]["train"] = doc["digests"]["train"], doc["digests"]["test"]
        match = "split.json does not match"
    path.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match=match):
        mock_survey(toy_cube, tmp_path / "survey.zarr", snr=60.0, model_dir=model_copy)
    assert not (tmp_path / "survey.zarr").exists()


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_cube_chunk_is_named_before_training_writes_anything(small_cube, tmp_path, how, capsys):
    chunk = next(p for p in sorted((small_cube / "flux" / "c").rglob("*")) if p.is_file())
    key = "flux/" + str(chunk.relative_to(small_cube / "flux"))
    if how == "flip":
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0x10
        chunk.write_bytes(bytes(data))
    elif how == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:9])
    else:
        chunk.unlink()
    out = tmp_path / "model"
    assert main(["train", str(small_cube), "--out", str(out), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"is damaged: chunk {key}" in err and "Traceback" not in err, err
    assert not out.exists()
