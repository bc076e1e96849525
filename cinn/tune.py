"""Hyperparameter search for the cINN: an Optuna study with Hyperband pruning on the per-epoch validation loss,
optionally spread over a Dask cluster.

Each trial trains with `cinn.train.Trainer` (the training of `cinn.train`, unchanged) for up to `epochs`
epochs; after every epoch the validation NLL is reported to the trial and Optuna's HyperbandPruner stops
unpromising trials early (resource = epochs, min `min_epochs` (1), reduction factor 3). The objective is the best
validation NLL of the trial in the physical labels' units (log.csv's `val_nll_physical`: the flow's NLL less
the label transform's log-Jacobian), so that trials whose label transforms differ (`label_margin`, `log_floor`
in the space) are ranked by one density; a study begun before that column existed keeps ranking by
`val_nll`. The study lives in a journal file (`tune_dir/study.journal`, Optuna's JournalFileBackend with a
lock file), which every process can append to: with a Dask client, each worker runs its share of trials
against the same journal (the file must be on a filesystem all workers see, as with dask-jobqueue on a
cluster's shared disk). A rerun with the same `tune_dir` continues the study.

Writes, in `tune_dir`:
  study.journal         the Optuna study (open with `optuna.load_study(storage=JournalStorage(...))`)
  trials/NNNN/          each trial's model directory, its number in 4 digits (log.csv per epoch)
  trials.csv            one row per trial: number, state, value, epochs run, parameters
  best_config.json      the base config with the best trial's parameters: `gridkit train --config best_config.json`
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Mapping

from gridkit.errors import ConfigError
from gridkit.files import atomic_write_text, check_output

from .config import CINNConfig, as_config

STUDY_NAME = "gridkit-cinn"
JOURNAL = "study.journal"
BEST_CONFIG = "best_config.json"
#: the log.csv column the trials are ranked by (kept in the study's user attribute "objective")
OBJECTIVE = "val_nll_physical"
#: config keys that change the label transform: the flow's own NLL (val_nll) differs between their values by more than
#: the fit, so a study ranked by val_nll cannot search them
TRANSFORM_KEYS = ("label_margin", "log_labels", "log_floor")

#: the default search space: name -> ("float", lo, hi, log) | ("int", lo, hi, step) | ("categorical", choices)
DEFAULT_SPACE: dict[str, tuple] = {
    "lr": ("float", 1e-4, 1e-2, True),
    "n_blocks": ("int", 4, 20, 2),
    "subnet_width": ("categorical", (128, 256, 512, 1024)),
    "clamp": ("float", 1.0, 3.0, False),
    "weight_decay": ("float", 1e-8, 1e-4, True),
}


def check_space(space: Mapping | None) -> dict[str, tuple]:
    """A search space (default DEFAULT_SPACE) checked against CINNConfig's keys and the kinds above."""
    space = dict(DEFAULT_SPACE if space is None else space)
    known = set(CINNConfig().to_dict())
    if not space:
        raise ConfigError("the search space is empty")
    for name, spec in space.items():
        if name not in known:
            raise ConfigError(f"search space key {name!r} is not a cINN config key; known: {', '.join(sorted(known))}")
        spec = tuple(spec)
        kind = spec[0] if spec else None
        try:
            if kind == "float":
                ok = len(spec) == 4 and float(spec[1]) < float(spec[2]) and (float(spec[1]) > 0 or not spec[3])
            elif kind == "int":
                ok = len(spec) == 4 and int(spec[1]) <= int(spec[2]) and int(spec[3]) >= 1
            elif kind == "categorical":
                ok = len(spec) == 2 and len(tuple(spec[1])) >= 1
            else:
                ok = False
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"search space {name!r}: expected ('float', lo, hi, log) with lo < hi (lo > 0 if log), "
                              f"('int', lo, hi, step) or ('categorical', [choices]); got {spec!r}")
        space[name] = spec
    return space


def suggest(trial, space: Mapping[str, tuple]) -> dict:
    """Parameters of one trial drawn from `space`."""
    out = {}
    for name, spec in space.items():
        if spec[0] == "float":
            out[name] = trial.suggest_float(name, float(spec[1]), float(spec[2]), log=bool(spec[3]))
        elif spec[0] == "int":
            out[name] = trial.suggest_int(name, int(spec[1]), int(spec[2]), step=int(spec[3]))
        else:
            out[name] = trial.suggest_categorical(name, list(spec[1]))
    return out


def storage(tune_dir):
    """The study's journal storage in `tune_dir` (file backend with an open-lock: safe across processes)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(Path(tune_dir) / JOURNAL)
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def _study(tune_dir, epochs: int, seed: int | None = None, create: bool = False, min_epochs: int = 1):
    import optuna

    pruner = optuna.pruners.HyperbandPruner(min_resource=int(min_epochs), max_resource=int(epochs), reduction_factor=3)
    sampler = optuna.samplers.TPESampler(seed=seed)
    if create:
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage(tune_dir), direction="minimize", pruner=pruner,
                                    sampler=sampler, load_if_exists=True)
        if "objective" not in study.user_attrs and not study.get_trials(deepcopy=False):
            study.set_user_attr("objective", OBJECTIVE)
        return study
    return optuna.load_study(study_name=STUDY_NAME, storage=storage(tune_dir), pruner=pruner, sampler=sampler)


def objective_column(study) -> str:
    """The log.csv column `study` ranks its trials by: OBJECTIVE, or val_nll for a study begun before it existed."""
    return str(study.user_attrs.get("objective", "val_nll"))


def _existing_objective(tune_dir, epochs: int) -> str | None:
    """The objective column of the study in `tune_dir`; None where there is none yet: no journal, or one that a
    first run stopped before `create_study` wrote the study (optuna then raises KeyError on loading it)."""
    if not (Path(tune_dir) / JOURNAL).is_file():
        return None
    try:
        return objective_column(_study(tune_dir, epochs))
    except KeyError:
        return None


def _reporter(trial, rows: list, column: str):
    """on_epoch callback of cinn.train.Trainer: keep the epoch's log row in `rows`, report its validation NLL
    (`column`) to the Optuna trial, stop the run when Hyperband prunes it."""
    import optuna

    def on_epoch(row) -> None:
        rows.append(row)
        epoch, val = int(row["epoch"]), float(row[column])
        if not math.isfinite(val):
            raise optuna.TrialPruned(f"validation NLL is {val} at epoch {epoch}")
        trial.report(val, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned by Hyperband after epoch {epoch} (validation NLL {val:.4g})")

    return on_epoch


def run_trials(cube_path, tune_dir, n_trials: int, base: dict, space: dict, epochs: int, seed: int | None = None,
               min_epochs: int = 1) -> int:
    """Run `n_trials` trials of the study in `tune_dir` in this process (what each Dask task runs). Returns
    the number of trials run."""
    import optuna

    from .checkpoint import TrainingError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if seed is not None:  # a continued study must not repeat the draws of its first run
        seed = int(seed) + 100_003 * len(_study(tune_dir, epochs).get_trials(deepcopy=False))
    study = _study(tune_dir, epochs, seed, min_epochs=min_epochs)
    column = objective_column(study)
    from .train import Trainer

    base_cfg = CINNConfig.from_dict(base)

    def objective(trial):
        params = suggest(trial, space)
        cfg = base_cfg.replace(**params)
        out = Path(tune_dir) / "trials" / f"{trial.number:04d}"
        out.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("model_dir", str(out))
        rows: list = []
        trainer = Trainer(cube_path, out, cfg, progress=False, on_epoch=_reporter(trial, rows, column))
        try:
            trainer.run(resume=False)
        except TrainingError as exc:  # diverged: a bad corner of the space, not a failure of the search
            raise optuna.TrialPruned(str(exc)) from exc
        trial.set_user_attr("epochs_run", len(rows))
        vals = [float(r[column]) for r in rows if math.isfinite(float(r[column]))]
        if not vals:
            raise optuna.TrialPruned("no finite validation NLL")
        return min(vals)

    study.optimize(objective, n_trials=int(n_trials), catch=())
    return int(n_trials)



def tune(cube_path, tune_dir, *, n_trials: int = 20, epochs: int = 30, config=None, space: Mapping | None = None,
         client=None, n_workers: int | None = None, seed: int | None = 0, progress: bool = True, min_epochs: int = 1) -> dict:
    """Search the cINN's hyperparameters on `cube_path` with Optuna + Hyperband; write `tune_dir`.

    config: the base config (None: published defaults; a CINNConfig, mapping or JSON/YAML path) that the
    search space's parameters replace; `epochs` is the Hyperband maximum resource per trial.
    space: {config key: ('float', lo, hi, log) | ('int', lo, hi, step) | ('categorical', choices)},
    default DEFAULT_SPACE (lr, n_blocks, subnet_width, clamp, weight_decay).
    client: a dask.distributed Client: the trials are split over `n_workers` tasks (default: the
    cluster's worker count), each running its share against the shared journal; None: all in this process.
    min_epochs: Hyperband's minimum resource, the epoch of its first rung (default 1): raise it when a searched
    option starts slowly, as `weight_average` does (its first weights keep a share d^t of the average after t steps:
    5 % after ~3/(1 - d) steps).
    Returns {"best_value", "best_params", "best_config" (path), "n_complete", "n_pruned", "trials_csv"}.
    """
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"n_trials (--trials) must be a positive integer, got {n_trials!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or not 1 <= min_epochs <= epochs:
        raise ConfigError(f"min_epochs (--min-epochs) must be an integer from 1 to epochs ({epochs}), got {min_epochs!r}")
    base_cfg = as_config(config).replace(epochs=epochs)
    space = check_space(space)
    if client is not None and base_cfg.num_workers > 0:
        base_cfg = base_cfg.replace(num_workers=0)  # Dask workers are daemonic: no loader processes inside them
    base = base_cfg.to_dict()
    tune_dir = Path(tune_dir)
    check_output(tune_dir, [cube_path, config if isinstance(config, (str, os.PathLike)) else None], what="tune_dir (--out)")
    cube_path = str(Path(cube_path).resolve())
    from .data import open_training_store

    open_training_store(cube_path, base_cfg.labels, base_cfg.loader)  # a bad cube fails here, before anything is written
    searched = sorted(set(space) & set(TRANSFORM_KEYS))
    if searched and _existing_objective(tune_dir, epochs) not in (None, OBJECTIVE):
        raise ConfigError(f"{tune_dir} holds a study ranked by the flow's own val_nll (begun before gridkit ranked trials "
                          f"by {OBJECTIVE}); it cannot search {', '.join(searched)}, which change the label transform and so "
                          "that NLL's units: start a new study (another --out)")
    tune_dir.mkdir(parents=True, exist_ok=True)
    _study(tune_dir, epochs, seed, create=True)
    if client is None:
        run_trials(cube_path, str(tune_dir.resolve()), n_trials, base, space, epochs, seed, min_epochs)
    else:
        n_tasks = int(n_workers or max(1, len(client.scheduler_info().get("workers", {}))))
        n_tasks = max(1, min(n_tasks, n_trials))
        shares = [n_trials // n_tasks + (1 if i < n_trials % n_tasks else 0) for i in range(n_tasks)]
        futures = [client.submit(run_trials, cube_path, str(tune_dir.resolve()), k, base, space, epochs,
                                 None if seed is None else seed + i, min_epochs, pure=False, key=f"tune-trials-{i}")
                   for i, k in enumerate(shares)]
        if progress:
            try:
                from distributed import progress as dask_progress

                dask_progress(futures)
            except Exception:  # noqa: BLE001 - the bar is optional
                pass
        client.gather(futures)
    return summarize(tune_dir, base, epochs)


def summarize(tune_dir, base: Mapping | None = None, epochs: int | None = None) -> dict:
    """Write trials.csv and best_config.json of the study in `tune_dir`; return the summary."""
    import optuna

    tune_dir = Path(tune_dir)
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage(tune_dir))
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    path = tune_dir / "trials.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "state", "value", "epochs_reported", *names])
        for t in trials:
            # a parameter the trial did not draw is empty; a drawn None ("off", e.g. label_margin) is null, as in the space's JSON
            w.writerow([t.number, t.state.name, "" if t.value is None else t.value, len(t.intermediate_values),
                        *["" if n not in t.params else "null" if t.params[n] is None else t.params[n] for n in names]])
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    out = {"n_trials": len(trials), "n_complete": len(complete), "objective": objective_column(study),
           "n_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials), "trials_csv": str(path)}
    if not complete:
        out.update(best_value=None, best_params=None, best_config=None)
        return out
    best = study.best_trial
    if base is None:
        base = json.loads((tune_dir / BEST_CONFIG).read_text()) if (tune_dir / BEST_CONFIG).is_file() else CINNConfig().to_dict()
    cfg = CINNConfig.from_dict({**dict(base), **best.params})
    cfg_path = atomic_write_text(tune_dir / BEST_CONFIG, json.dumps(cfg.to_dict(), indent=1) + "\n")
    out.update(best_value=float(best.value), best_params=dict(best.params), best_trial=best.number, best_config=str(cfg_path),
               best_model_dir=best.user_attrs.get("model_dir"))
    return out


__all__ = ["tune", "run_trials", "summarize", "storage", "DEFAULT_SPACE", "check_space", "objective_column", "STUDY_NAME",
           "BEST_CONFIG", "OBJECTIVE", "TRANSFORM_KEYS"]
