"""`gridkit train`: a thin layer over cinn.train (config file, overrides, --resume, clear errors)."""
import csv
import json

import cinn
from gridkit.cli import main


def _epochs(model_dir):
    with open(model_dir / "log.csv") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def test_gridkit_train_config_overrides_and_resume(toy_cube, tmp_path, tiny_config, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**tiny_config, "val_samples": 128, "epochs": 50}))
    out = tmp_path / "model"
    args = [str(toy_cube), "--out", str(out), "--config", str(cfg), "--batches-per-epoch", "2", "--batch-size", "64", "--no-progress"]
    assert main(["train", *args, "--epochs", "1"]) == 0
    assert "model written" in capsys.readouterr().out
    post = cinn.load(out)
    assert post.meta["config"]["batch_size"] == 64 and post.meta["config"]["batches_per_epoch"] == 2
    assert post.meta["config"]["subnet_width"] == tiny_config["subnet_width"] and _epochs(out) == [0, 1]
    # an existing model directory is never overwritten silently
    assert main(["train", *args, "--epochs", "1"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(toy_cube), "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert _epochs(out) == [0, 1, 2]
    assert main(["train", str(toy_cube), "--out", str(tmp_path / "m2"), "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml does not exist" in capsys.readouterr().err
    assert not (tmp_path / "m2" / "model.json").exists()


def test_seed_and_init_seed_on_the_command_line_equal_them_in_the_config(toy_cube, tmp_path, tiny_config, capsys):
    """An ensemble member from one config file: --seed S --init-seed S trains the same weights as the config with
    seed: S and init_seed: S, and other weights than --seed S alone (the initial weights differ); refused with --resume."""
    base = {**tiny_config, "val_samples": 128, "epochs": 1, "batches_per_epoch": 2, "batch_size": 64}
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "seeded.json").write_text(json.dumps({**base, "seed": 2, "init_seed": 2}))
    common = [str(toy_cube), "--no-progress"]
    assert main(["train", *common, "--out", str(tmp_path / "cli"), "--config", str(tmp_path / "base.json"), "--seed", "2", "--init-seed", "2"]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "cfg"), "--config", str(tmp_path / "seeded.json")]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "seed-only"), "--config", str(tmp_path / "base.json"), "--seed", "2"]) == 0
    ids = {name: cinn.load(tmp_path / name).model_id for name in ("cli", "cfg", "seed-only")}
    assert ids["cli"] == ids["cfg"] != ids["seed-only"]
    assert cinn.load(tmp_path / "cli").meta["config"]["init_seed"] == 2
    capsys.readouterr()
    assert main(["train", *common, "--out", str(tmp_path / "cli"), "--resume", "--init-seed", "3"]) == 2
    assert "drop --init-seed" in capsys.readouterr().err
