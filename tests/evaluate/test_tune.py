"""Hyperparameter search: Optuna + HyperbandPruner on the per-epoch validation loss, journal storage shared
by Dask workers, and a best_config.json that `cinn.CINNConfig` (hence `gridkit train --config`) loads."""
from __future__ import annotations

import csv
import json

import pytest

from evaluate_helpers import TINY

SPACE = {"lr": ("float", 5e-4, 5e-3, True), "n_blocks": ("int", 2, 4, 2), "subnet_width": ("categorical", (32, 64)),
         "clamp": ("float", 1.0, 2.5, False), "weight_decay": ("float", 1e-8, 1e-5, True)}
BASE = {**TINY, "batches_per_epoch": 4, "val_samples": 512}


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_study_reports_every_epoch_prunes_and_writes_a_loadable_best_config(analytic_cube, tmp_path):
    import optuna

    import cinn
    from cinn.tune import BEST_CONFIG, STUDY_NAME, storage, tune

    res = tune(analytic_cube, tmp_path / "tune", n_trials=3, epochs=2, config=BASE, space=SPACE, seed=1, progress=False)
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage(tmp_path / "tune"))
    trials = study.get_trials()
    assert len(trials) == 3 == res["n_trials"] and res["n_complete"] >= 1
    for t in trials:
        # one report per epoch trained, equal to that epoch's validation NLL (physical units) in the trial's own log.csv
        log = [r for r in _rows(t.user_attrs["model_dir"] + "/log.csv") if int(r["epoch"]) >= 1]
        assert sorted(t.intermediate_values) == [int(r["epoch"]) for r in log]
        for r in log:
            assert t.intermediate_values[int(r["epoch"])] == pytest.approx(float(r["val_nll_physical"]))
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert len(log) == 2 and t.value == pytest.approx(min(float(r["val_nll_physical"]) for r in log))
        assert set(t.params) == set(SPACE) and t.params["subnet_width"] in (32, 64)
    cfg = cinn.CINNConfig.from_file(tmp_path / "tune" / BEST_CONFIG)
    best = study.best_trial
    assert cfg.lr == pytest.approx(best.params["lr"]) and cfg.n_blocks == best.params["n_blocks"]
    assert cfg.subnet_width == best.params["subnet_width"] and cfg.feature_layers == tuple(TINY["feature_layers"])
    assert res["best_value"] == pytest.approx(min(t.value for t in trials if t.value is not None))
    assert len(_rows(tmp_path / "tune" / "trials.csv")) == 3


def _bad_trial_stops(study, n: int = 6) -> list:
    """The epoch at which Hyperband prunes each of `n` trials far worse than every finished one (None: not pruned),
    in whichever bracket they land; 9 epochs."""
    import optuna

    stops = []
    for _ in range(n):
        bad = study.ask()
        stop = None
        for e in range(1, 10):
            bad.report(100.0 + e, e)
            if bad.should_prune():
                stop = e
                break
        stops.append(stop)
        study.tell(bad, state=optuna.trial.TrialState.PRUNED if stop else optuna.trial.TrialState.COMPLETE, values=None if stop else 109.0)
    return stops


def test_hyperband_prunes_a_trial_that_reports_worse_losses(tmp_path):
    """The pruner and storage as tune() configures them stop a trial far worse than finished ones at its first rung."""
    import optuna

    from cinn.tune import _study

    study = _study(tmp_path, epochs=9, seed=0, create=True)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    for _ in range(20):
        t = study.ask()
        for e in range(1, 10):
            t.report(1.0 / e, e)
            assert not t.should_prune()  # records the trial's value at each rung, as the tuning loop does
        study.tell(t, 1.0 / 9)
    stops = _bad_trial_stops(study)
    assert all(s is not None for s in stops), stops
    assert min(stops) < 9 and sum(s < 9 for s in stops) >= 3, stops


def test_trials_over_a_dask_cluster_share_the_journal(analytic_cube, tmp_path):
    from cinn.tune import tune
    from gridkit.cluster import dask_client

    with dask_client(n_workers=2, threads_per_worker=1, processes=False, quiet=True) as client:
        res = tune(analytic_cube, tmp_path / "tune", n_trials=2, epochs=1, config=BASE, space=SPACE, client=client, progress=False)
    assert res["n_trials"] == 2 and res["n_complete"] + res["n_pruned"] == 2
    assert json.loads((tmp_path / "tune" / "best_config.json").read_text())["num_workers"] == 0


def test_bad_space_and_arguments_are_refused(analytic_cube, tmp_path):
    from cinn.tune import check_space, tune
    from gridkit.errors import ConfigError

    with pytest.raises(ConfigError, match="not a cINN config key"):
        check_space({"learning_rate": ("float", 1e-4, 1e-2, True)})
    with pytest.raises(ConfigError, match="'lr'"):
        check_space({"lr": ("float", 0.0, 1e-2, True)})
    with pytest.raises(ConfigError, match="n_trials"):
        tune(analytic_cube, tmp_path / "t", n_trials=0)


def test_trials_whose_label_transforms_differ_are_ranked_in_physical_units(analytic_cube, tmp_path):
    """label_margin (and weight_average) searched: every report is the epoch's val_nll_physical, not the flow's own
    val_nll (whose units change with the margin), and best_config.json carries the chosen margin."""
    import optuna

    import cinn
    from cinn.tune import BEST_CONFIG, OBJECTIVE, STUDY_NAME, storage, tune

    space = {"label_margin": ("categorical", (None, 0.05)), "weight_average": ("categorical", (None, 0.9))}
    res = tune(analytic_cube, tmp_path / "tune", n_trials=4, epochs=2, config=BASE, space=space, seed=2, progress=False)
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage(tmp_path / "tune"))
    assert res["objective"] == OBJECTIVE == study.user_attrs["objective"] == "val_nll_physical"
    margins = set()
    for t in study.get_trials():
        log = [r for r in _rows(t.user_attrs["model_dir"] + "/log.csv") if int(r["epoch"]) >= 1]
        for r in log:
            assert t.intermediate_values[int(r["epoch"])] == pytest.approx(float(r["val_nll_physical"]))
            assert float(r["val_nll_physical"]) != pytest.approx(float(r["val_nll"]), abs=1e-3)
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.value == pytest.approx(min(float(r["val_nll_physical"]) for r in log))
        margins.add(t.params["label_margin"])
    assert margins == {None, 0.05}  # both transforms were trained and compared
    written = {r["number"]: r["label_margin"] for r in _rows(tmp_path / "tune" / "trials.csv")}
    assert {written[str(t.number)] for t in study.get_trials()} == {"null", "0.05"}  # "off" is written as the space writes it
    cfg = cinn.CINNConfig.from_file(tmp_path / "tune" / BEST_CONFIG)
    assert cfg.label_margin == study.best_trial.params["label_margin"]
    assert cfg.weight_average == study.best_trial.params["weight_average"]


def test_a_study_ranked_by_the_flows_own_nll_cannot_search_the_label_transform(analytic_cube, tmp_path):
    """A study begun before val_nll_physical (no "objective" attribute, trials already told) keeps its val_nll; adding
    label_margin to its space is refused by name, and the journal is left as it was."""
    import optuna

    from cinn.tune import STUDY_NAME, _study, objective_column, storage, tune
    from gridkit.errors import ConfigError

    (tmp_path / "old").mkdir()
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage(tmp_path / "old"), direction="minimize")
    study.tell(study.ask(), 1.0)
    before = (tmp_path / "old" / "study.journal").read_bytes()
    with pytest.raises(ConfigError, match="label_margin.*start a new study"):
        tune(analytic_cube, tmp_path / "old", n_trials=1, epochs=1, config=BASE, space={"label_margin": ("categorical", (None, 0.05))},
             progress=False)
    assert (tmp_path / "old" / "study.journal").read_bytes() == before
    assert objective_column(_study(tmp_path / "old", epochs=1)) == "val_nll"


def test_a_journal_without_a_study_is_a_new_study(analytic_cube, tmp_path):
    """A journal that holds no study (a first run stopped before create_study wrote it) does not stop the check of
    the objective: the study is created there, ranked by val_nll_physical, and may search the label transform."""
    import optuna

    from cinn.tune import OBJECTIVE, STUDY_NAME, storage, tune

    (tmp_path / "t").mkdir()
    storage(tmp_path / "t")  # the journal file, empty
    assert (tmp_path / "t" / "study.journal").is_file()
    with pytest.raises(KeyError):
        optuna.load_study(study_name=STUDY_NAME, storage=storage(tmp_path / "t"))
    res = tune(analytic_cube, tmp_path / "t", n_trials=1, epochs=1, config=BASE, space={"label_margin": ("categorical", (None, 0.05))},
               progress=False)
    assert res["objective"] == OBJECTIVE and res["n_complete"] == 1


def test_no_trial_is_pruned_before_min_epochs(tmp_path):
    """min_epochs is Hyperband's first rung: trials far worse than every finished one still run min_epochs epochs."""
    from cinn.tune import _study

    study = _study(tmp_path, epochs=9, seed=0, create=True, min_epochs=3)
    assert study.pruner._min_resource == 3
    for _ in range(10):
        t = study.ask()
        for e in range(1, 10):
            t.report(1.0 / e, e)
            t.should_prune()
        study.tell(t, 1.0 / 9)
    stops = _bad_trial_stops(study)
    assert all(s is not None and s >= 3 for s in stops), stops


def test_min_epochs_out_of_range_is_refused(analytic_cube, tmp_path):
    from cinn.tune import tune
    from gridkit.errors import ConfigError

    for bad in (0, 4, True):
        with pytest.raises(ConfigError, match="min_epochs"):
            tune(analytic_cube, tmp_path / "t", n_trials=1, epochs=3, min_epochs=bad, progress=False)
    assert not (tmp_path / "t").exists()


def test_the_cli_passes_min_epochs_and_names_a_bad_one(analytic_cube, tmp_path, capsys):
    from gridkit.cli import main

    assert main(["tune", str(analytic_cube), "--out", str(tmp_path / "t"), "--epochs", "2", "--min-epochs", "3", "--no-progress"]) == 2
    assert "--min-epochs" in capsys.readouterr().err and not (tmp_path / "t").exists()
