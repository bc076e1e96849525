"""Hostile inputs to `evaluate`: the evaluated models are decided by the models (id AND labels against the model
directory's recorded split), never by a cube's path or hash, so a re-noised copy of the training grid is
evaluated on its test split only and a training model is never evaluated as held out; the report folder is
never an input or inside one; bad input is refused before the report folder exists, and a failure while
writing removes only what the run wrote."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr

import cinn
from cinn.evaluate.report import _select_spectra, evaluate
from gridkit.errors import ConfigError, GridError, StoreError
from gridkit.grid import open_grid, write_grid

QUICK = dict(samples=8, saliency=False, ppc=0)


def _tree(path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cubes(analytic_cube, tmp_path_factory):
    """Cubes made from the training cube: a re-noised copy (same models, other noise), a foreign one (the same model
    ids with other labels), one of training models only, and a mix of foreign and training models."""
    root = tmp_path_factory.mktemp("hostile-cubes")
    ds = xr.open_zarr(analytic_cube, consolidated=False).load()
    rng = np.random.default_rng(11)
    renoised = ds.copy()
    renoised["flux"] = ds.flux + (0.002 * rng.standard_normal(ds.flux.shape)).astype(np.float32)
    write_grid(renoised, root / "renoised.zarr")
    foreign = ds.copy()
    foreign["feh"] = ds.feh + 0.05  # other stars under the same ids
    write_grid(foreign, root / "foreign.zarr")
    return {"renoised": root / "renoised.zarr", "foreign": root / "foreign.zarr", "ds": ds, "root": root}


def _subset_cube(ds, path, positions, shift_ids=None):
    sub = ds.isel(model=positions)
    if shift_ids is not None:
        sub = sub.assign_coords(model=sub.model.values + shift_ids)
    write_grid(sub, path)
    return path


def _positions(ds, ids):
    index = {v: i for i, v in enumerate(ds.model.values.tolist())}
    return np.array([index[v] for v in np.asarray(ids).tolist()])


def test_a_renoised_copy_of_the_training_grid_is_evaluated_on_its_test_split_only(tiny_model, cubes, tmp_path):
    test_ids = cinn.read_split(tiny_model)["test"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "held out by construction" for a copy of the training data
        written = evaluate(tiny_model, cubes["renoised"], tmp_path / "report", **QUICK)
    meta = json.loads(written["summary_json"].read_text())
    assert meta["n_star"] == test_ids.size and meta["split"] == f"test split ({test_ids.size} models)"
    post = cinn.load(tiny_model)
    spectra = _select_spectra(post, open_grid(cubes["renoised"], kind="cube"), cubes["renoised"], "test")
    np.testing.assert_array_equal(np.sort(spectra.model_ids), np.sort(test_ids))


def test_another_cube_is_evaluated_whole_when_none_of_its_models_is_a_training_model(tiny_model, cubes):
    post = cinn.load(tiny_model)
    cube = open_grid(cubes["foreign"], kind="cube")
    with pytest.warns(UserWarning, match="holds none of the 'test' models"):
        spectra = _select_spectra(post, cube, cubes["foreign"], "test")
    assert spectra.n == cube.sizes["model"] and "none a training or validation model" in spectra.description


def test_training_models_in_another_cube_are_excluded_never_evaluated_as_held_out(tiny_model, cubes):
    post = cinn.load(tiny_model)
    ds, root = cubes["ds"], cubes["root"]
    split = cinn.read_split(tiny_model)
    trained_on = np.concatenate([split["train"][:30], split["validation"][:5]])
    only_training = _subset_cube(ds, root / "only_training.zarr", _positions(ds, trained_on))
    with pytest.raises(GridError, match="every model of .* is a training or validation model"):
        _select_spectra(post, open_grid(only_training, kind="cube"), only_training, "test")
    # a mix: 35 training/validation models of the network and 40 other stars
    other = ds.isel(model=_positions(ds, split["test"][:40])).assign(feh=lambda d: d.feh - 0.1)
    mixed = xr.concat([ds.isel(model=_positions(ds, trained_on)), other.assign_coords(model=other.model.values + 10_000)], dim="model")
    write_grid(mixed, root / "mixed.zarr")
    with pytest.warns(UserWarning, match="its 35 training or validation models of this network are excluded"):
        spectra = _select_spectra(post, open_grid(root / "mixed.zarr", kind="cube"), root / "mixed.zarr", "test")
    assert sorted(spectra.model_ids.tolist()) == sorted((split["test"][:40] + 10_000).tolist())
    # 'all' evaluates every model and says how many the network was trained or selected on
    spectra = _select_spectra(post, open_grid(root / "mixed.zarr", kind="cube"), root / "mixed.zarr", "all")
    assert spectra.n == 75 and "35 of them training or validation models" in spectra.description


def test_a_model_dir_without_split_digests_cannot_select_a_split(tiny_model, analytic_cube, tmp_path):
    old = tmp_path / "old_model"
    shutil.copytree(tiny_model, old)
    doc = json.loads((old / "split.json").read_text())
    del doc["digests"]  # as written before gridkit recorded them
    (old / "split.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="records no digest of its split's models"):
        evaluate(old, analytic_cube, tmp_path / "report", **QUICK)
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("where,word", [("model", "is the input"), ("inside-model", "lies inside the input"), ("cube", "is the input"),
                                        ("inside-cube", "lies inside the input"), ("around", "contains the input")])
def test_the_report_never_goes_onto_into_or_around_an_input(tiny_model, analytic_cube, tmp_path, where, word):
    root = tmp_path / "inputs"
    model, cube = root / "model", root / "cube.zarr"
    shutil.copytree(tiny_model, model)
    shutil.copytree(analytic_cube, cube)
    out = {"model": model, "inside-model": model / "report", "cube": cube, "inside-cube": cube / "report", "around": root}[where]
    before = _tree(root)
    with pytest.raises(StoreError, match=word):
        evaluate(model, cube, out, **QUICK)
    assert _tree(root) == before


@pytest.mark.parametrize("kwargs,error,match", [
    ({"cube_path": "nowhere.zarr"}, GridError, "does not exist"),
    ({"split": "holdout"}, ConfigError, "split must be"),
    ({"snr": [55.0]}, ConfigError, r"snr \[55.0\] not in the cube"),
    ({"figure_snr": float("nan")}, ConfigError, "figure_snr"),
    ({"ppc_draws": 0}, ConfigError, "ppc_draws"),
    ({"chunk": 0}, ConfigError, "chunk"),
])
def test_bad_input_is_refused_before_the_report_folder_exists(tiny_model, analytic_cube, tmp_path, kwargs, error, match):
    args = {"cube_path": analytic_cube, **kwargs}
    cube = args.pop("cube_path")
    cube = tmp_path / cube if isinstance(cube, str) else cube
    out = tmp_path / "deep" / "report"
    with pytest.raises(error, match=match):
        evaluate(tiny_model, cube, out, **{**QUICK, **args})
    assert not (tmp_path / "deep").exists()


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-folder"])
def test_a_failure_while_writing_removes_only_what_the_run_wrote(tiny_model, analytic_cube, tmp_path, monkeypatch, existing):
    import cinn.evaluate.report as report

    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(report, "make_figures", broken)  # after the tables are written
    out = tmp_path / "report"
    if existing:
        out.mkdir()
        (out / "notes.md").write_text("the user's own notes")
    with pytest.raises(OSError, match="disk full"):
        evaluate(tiny_model, analytic_cube, out, **QUICK, max_spectra=5)
    if existing:
        assert _tree(out) == {"notes.md": b"the user's own notes"}
    else:
        assert not out.exists()
