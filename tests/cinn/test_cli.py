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
