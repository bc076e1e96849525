"""gridkit.cluster: spawned LocalCluster workers with an environment fit for torch."""
from __future__ import annotations

import os

from gridkit.cluster import dask_client, worker_environ


def _environ():
    import multiprocessing

    return {"MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "start_method": multiprocessing.get_start_method(allow_none=True)}


def test_workers_are_spawned_without_malloc_trim_threshold():
    # MALLOC_TRIM_THRESHOLD_ (distributed's default) made cINN inference 2x slower in a worker than in a plain process
    assert "MALLOC_TRIM_THRESHOLD_" not in worker_environ()
    with dask_client(n_workers=1, quiet=True) as client:
        (env,) = client.run(_environ).values()
    assert env["MALLOC_TRIM_THRESHOLD_"] is None
    assert env["OMP_NUM_THREADS"] == "1"  # one BLAS thread per worker thread, as distributed intends


def test_one_rule_turns_workers_and_scheduler_into_a_client():
    import pytest

    from gridkit.cluster import client_for
    from gridkit.errors import ConfigError

    with client_for(0) as client:  # --workers 0: this process
        assert client is None
    with client_for(None, default_workers=0) as client:  # the command's default
        assert client is None
    with client_for(1, quiet=True) as client:  # --workers N: a LocalCluster of N processes
        assert len(client.scheduler_info()["workers"]) == 1
    with client_for(None, default_workers=1, quiet=True) as client:
        assert len(client.scheduler_info()["workers"]) == 1
    for bad in (-1, 1.5, "two"):
        with pytest.raises(ConfigError, match="workers"):
            with client_for(bad):
                pass
    with pytest.raises(ConfigError, match="not both"):
        with client_for(2, "tcp://127.0.0.1:1"):
            pass


def test_every_command_takes_the_same_cluster_options():
    from gridkit.cli import build_parser

    parser = build_parser()
    for command in ("synth", "degrade", "fourmostify", "infer", "tune"):
        args = parser.parse_args([command, *_required(command), "--workers", "0"])
        assert args.workers == 0 and args.scheduler is None and args.default_workers in (0, "auto")
        assert parser.parse_args([command, *_required(command), "--workers", "auto"]).workers == "auto"


def _required(command):
    return {"synth": ["--out", "x.zarr", "--n-models", "2"], "degrade": ["in.zarr", "--out", "x.zarr"], "fourmostify": ["a.txt", "--out", "x.zarr"],
            "infer": ["model", "survey.zarr", "--out", "x.zarr"], "tune": ["cube.zarr", "--out", "t"]}[command]
