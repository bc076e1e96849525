"""One command-line grammar (README, "The command line"): every command that has an output takes it as `--out`,
items per task are `--chunk` everywhere, and `--workers`/`--scheduler`, `--seed`, `--overwrite`, `--no-progress`,
`--device` mean the same wherever they apply. Old spellings still parse, into the same option, with a deprecation
note on stderr, and stay out of --help. A refused rerun names the parameters that differ."""
from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pytest

import gridkit
from gridkit import store as S
from gridkit.cli import build_parser, main
from gridkit.errors import StoreError
from gridkit.schema import LABEL_NAMES


def subparsers(parser) -> dict[str, argparse.ArgumentParser]:
    """{'synth': parser, 'catalog export': parser, ...} of every (sub)command."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = subparsers(sub)
                out.update({f"{name} {k}": v for k, v in inner.items()} if inner else {name: sub})
    return out


COMMANDS = subparsers(build_parser())
WRITERS = ["synth", "merge-grids", "ingest", "degrade", "fourmostify", "train", "infer", "mock-survey", "evaluate", "ensemble", "tune", "demo",
           "catalog query", "catalog export", "catalog merge", "catalog calibrate"]
COMMON = {
    "--out": WRITERS,
    "--chunk": ["synth", "ingest", "degrade", "fourmostify", "mock-survey", "infer"],
    "--workers": ["synth", "merge-grids", "ingest", "degrade", "fourmostify", "mock-survey", "infer", "tune", "demo"],
    "--scheduler": ["synth", "merge-grids", "ingest", "degrade", "fourmostify", "mock-survey", "infer", "tune", "demo"],
    "--seed": ["synth", "degrade", "fourmostify", "mock-survey", "train", "infer", "evaluate", "calibrate-intervals", "tune", "demo"],
    "--overwrite": ["synth", "merge-grids", "ingest", "degrade", "fourmostify", "mock-survey", "infer", "evaluate", "calibrate-intervals", "ensemble",
                    "demo", "catalog query", "catalog export", "catalog merge", "catalog calibrate"],
    "--no-progress": ["synth", "merge-grids", "ingest", "degrade", "fourmostify", "mock-survey", "train", "infer", "evaluate", "tune",
                      "demo", "catalog merge"],
    "--device": ["train", "infer", "evaluate"],
}
DEPRECATED = {  # command: (old argv, new argv, dest)
    "synth": (["--models-per-region", "4"], ["--chunk", "4"], "chunk"),
    "degrade": (["--region-size", "4"], ["--chunk", "4"], "chunk"),
    "fourmostify": (["--region-size", "4"], ["--chunk", "4"], "chunk"),
    "evaluate": (["--labels", "teff,logg"], ["--label-names", "teff,logg"], "label_names"),
}
POSITIONALS = {"synth": [], "merge-grids": ["g.zarr"], "ingest": ["s.txt"], "degrade": ["b.zarr"], "fourmostify": ["s.fits"],
               "evaluate": ["bias", "c.zarr", "r.csv"]}
REQUIRED = {"ingest": ["--labels", "l.csv"]}


def visible_options(sub) -> set[str]:
    return {s for a in sub._actions if a.help is not argparse.SUPPRESS for s in a.option_strings}


@pytest.mark.parametrize("option", sorted(COMMON))
def test_every_command_takes_the_common_options_where_they_apply(option):
    missing = [cmd for cmd in COMMON[option] if option not in visible_options(COMMANDS[cmd])]
    assert not missing, f"{option} missing from {missing}"


def test_the_retired_names_are_hidden_everywhere():
    for cmd, sub in COMMANDS.items():
        shown = visible_options(sub) | set(sub.format_help().split())
        assert not {"--region-size", "--models-per-region"} & shown, cmd
    assert "--labels" not in visible_options(COMMANDS["evaluate"])


@pytest.mark.parametrize("cmd", sorted(DEPRECATED))
def test_old_spellings_still_parse_into_the_new_option_and_warn(cmd, capsys):
    old, new, dest = DEPRECATED[cmd]
    base = [cmd, *POSITIONALS[cmd], "--out", "o.zarr", *REQUIRED.get(cmd, [])]
    parser = build_parser()
    a = parser.parse_args(base + new)
    assert "deprecated" not in capsys.readouterr().err
    b = parser.parse_args(base + old)
    err = capsys.readouterr().err
    assert getattr(a, dest) == getattr(b, dest) and "deprecated" in err and old[0] in err and new[0] in err


def test_chunk_defaults_are_each_commands_own():
    parser = build_parser()
    assert parser.parse_args(["synth", "--out", "o"]).chunk == 16
    assert parser.parse_args(["degrade", "b", "--out", "o"]).chunk == 16
    assert parser.parse_args(["fourmostify", "s", "--out", "o"]).chunk == 64
    assert parser.parse_args(["ingest", "s", "--labels", "l", "--out", "o"]).chunk == 256
    assert parser.parse_args(["infer", "m", "s", "--out", "o"]).chunk is None  # the survey's chunk
    assert parser.parse_args(["mock-survey", "c", "--out", "o"]).chunk is None


@pytest.mark.parametrize("cmd", ["train", "infer", "evaluate"])
def test_device_is_checked_the_same_way_everywhere(cmd, capsys):
    pos = {"train": ["c"], "infer": ["m", "s"], "evaluate": ["m", "c"]}[cmd]
    parser = build_parser()
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        assert parser.parse_args([cmd, *pos, "--out", "o", "--device", ok]).device == ok
    with pytest.raises(SystemExit):
        parser.parse_args([cmd, *pos, "--out", "o", "--device", "gpu0"])
    assert "not a device" in capsys.readouterr().err


def test_train_seed_and_device_reach_the_config(tmp_path, monkeypatch):
    import cinn

    seen = {}
    monkeypatch.setattr(cinn, "train", lambda cube, out, config=None, **kw: seen.update(config=config, **kw) or out)
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"epochs": 3, "seed": 5}')
    assert main(["train", str(tmp_path / "c.zarr"), "--out", str(tmp_path / "m"), "--config", str(cfg), "--seed", "7", "--device", "cpu"]) == 0
    assert (seen["config"].seed, seen["config"].device, seen["config"].epochs) == (7, "cpu", 3)
    assert main(["train", str(tmp_path / "c.zarr"), "--out", str(tmp_path / "m"), "--config", str(cfg)]) == 0
    assert seen["config"] == str(cfg)  # without them the config file goes through as it is
    # the config file stays an input: an --out around it is refused before training
    assert main(["train", str(tmp_path / "c.zarr"), "--out", str(tmp_path), "--config", str(cfg), "--seed", "1"]) == 2


def test_train_refuses_seed_or_device_with_resume(tmp_path, capsys):
    assert main(["train", "c.zarr", "--out", str(tmp_path / "m"), "--resume", "--seed", "3"]) == 2
    assert "--resume continues with the checkpoint's config; drop --seed" in capsys.readouterr().err


def test_ingest_and_mock_survey_run_on_the_cluster_options(monkeypatch):
    seen = []
    import gridkit.commands._common as common

    monkeypatch.setattr(common, "client_from_args", lambda args, resources=None: seen.append(args.workers) or _Null())
    import cinn.survey
    import gridkit.io

    monkeypatch.setattr(gridkit.io, "ingest", lambda *a, **kw: seen.append(kw) or "g.zarr")
    monkeypatch.setattr(cinn.survey, "mock_survey", lambda *a, **kw: seen.append(kw) or "s.zarr")
    assert main(["ingest", "s.txt", "--labels", "l.csv", "--out", "g.zarr", "--workers", "2", "--chunk", "8", "--no-progress"]) == 0
    assert seen[0] == 2 and seen[1]["models_per_region"] == 8 and seen[1]["progress"] is False and "client" in seen[1]
    assert main(["mock-survey", "c.zarr", "--out", "s.zarr", "--workers", "3", "--chunk", "8", "--no-progress"]) == 0
    assert seen[2] == 3 and seen[3]["chunk"] == 8 and seen[3]["progress"] is False and "client" in seen[3]


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# ----------------------------------------------------------------------------------------- a refused rerun
def tiny_base(path, n=3):
    wl = np.arange(6090.0, 6800.0, 0.02)
    rng = np.random.default_rng(0)
    labels = {name: rng.uniform(0.1, 1.0, n) for name in LABEL_NAMES}
    labels["vbroad"] = np.full(n, 5.0)
    flux = 1 - 0.5 * np.exp(-0.5 * ((wl - 6500.0) / 0.05) ** 2)
    gridkit.from_arrays(wl, np.repeat(flux[None], n, 0), labels).to_zarr(path, zarr_format=3, consolidated=False)
    return path


def test_a_refused_rerun_names_the_parameters_that_differ(tmp_path, capsys):
    """`degrade` twice on one --out with another --seed and S/N: refused, naming seed and snr with both values."""
    base, out = tiny_base(tmp_path / "base.zarr"), tmp_path / "cube.zarr"
    common = ["degrade", str(base), "--out", str(out), "--arms", "red", "--workers", "0", "--no-progress"]
    assert main([*common, "--snr", "10", "--seed", "0"]) == 0
    capsys.readouterr()
    assert main([*common, "--snr", "10,20", "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "different job" in err and "seed: 1 (stored 0)" in err and "snr: [10.0, 20.0] (stored [10.0])" in err
    assert "input" not in err.split("different job")[1]  # only what differs
    assert main([*common, "--snr", "10", "--seed", "0", "--chunk", "2"]) == 2
    assert "chunk: 2 (stored 16)" in capsys.readouterr().err


def test_a_store_written_before_parameters_were_recorded_is_refused_with_the_fingerprints(tmp_path):
    import xarray as xr

    ds = xr.Dataset({"x": (("model",), np.arange(4.0))})
    rs, _ = S.create(tmp_path / "old.zarr", ds, dim="model", region_size=2, fingerprint="a" * 64)  # a plain str: no parameters
    S.release(rs.target)
    with pytest.raises(StoreError, match=r"different job \(fingerprint aaaaaaaaaaaa != "):
        S.create(tmp_path / "old.zarr", ds, dim="model", region_size=2, fingerprint=S.fingerprint("job", {"seed": 1}))
    rs, _ = S.create(tmp_path / "new.zarr", ds, dim="model", region_size=2, fingerprint=S.fingerprint("job", {"seed": 1, "files": list(range(500))}))
    S.release(rs.target)
    with pytest.raises(StoreError, match=r"different job \(seed: 2 \(stored 1\); files: sha256:[0-9a-f]{12} \(stored sha256:[0-9a-f]{12}\)\)"):
        S.create(tmp_path / "new.zarr", ds, dim="model", region_size=2, fingerprint=S.fingerprint("job", {"seed": 2, "files": list(range(501))}))


def test_job_parameters_name_positional_parts_by_job():
    p = S.fingerprint("infer", "m1", ["teff"], "/s.zarr", 4096, 3, 64).parameters()
    assert p == {"model": "m1", "labels": ["teff"], "survey": "/s.zarr", "samples": 4096, "seed": 3, "chunk": 64}
    extended = S.fingerprint(S.fingerprint("degrade", "/b.zarr", {"seed": 0, "r": float("inf")}, 16), "calibration v2").parameters()
    assert extended["seed"] == 0 and extended["r"] == "inf" and extended["chunk"] == 16 and "calibration v2" in extended.values()
    # the digest is the one stores were written with before: recording the parameters changes no fingerprint
    parts = ("degrade", "/b.zarr", {"seed": 0}, 16)
    assert S.fingerprint(*parts) == hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
