"""Dask clusters: a LocalCluster by default, any scheduler address, SLURM through dask-jobqueue.

Workers are separate processes started with `spawn` (distributed's default): zarr v3 and CUDA do not
survive `fork`. Tasks open their stores inside the worker.

`client_for` is the one rule that turns the `--workers/--scheduler` options of every command into a client:
a scheduler address or file connects to that cluster; `workers=0` runs the tasks on threads of this process
(no cluster); `workers=N` starts a LocalCluster of N worker processes; neither uses the command's default.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator, Mapping


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    resources: Mapping[str, float] | None = None,
    memory_limit: str | float = "auto",
    processes: bool = True,
    quiet: bool = False,
) -> Iterator["distributed.Client"]:  # noqa: F821
    """A distributed Client: connect to `scheduler` (an address like tcp://host:8786, or a path to a
    scheduler file), or start a LocalCluster with `n_workers` (default: the number of cores).
    Prints the dashboard address."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn", "distributed.worker.daemon": False,
                          "distributed.nanny.pre-spawn-environ": worker_environ()}):
        if scheduler:
            client = Client(scheduler_file=scheduler) if os.path.isfile(scheduler) else Client(scheduler)
            cluster = None
        else:
            cluster = LocalCluster(
                n_workers=n_workers or os.cpu_count() or 1,
                threads_per_worker=threads_per_worker,
                processes=processes,
                resources=dict(resources) if resources else None,
                memory_limit=memory_limit,
                dashboard_address=":0",
                silence_logs=logging.ERROR,  # a level, not "error": the workers call logger.setLevel with it
            )
            client = Client(cluster)
        if not quiet:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        try:
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


#: `workers` value meaning one LocalCluster worker process per core
AUTO = "auto"


@contextlib.contextmanager
def client_for(workers: int | str | None = None, scheduler: str | None = None, *, default_workers: int | str = AUTO,
               threads_per_worker: int = 1, resources: Mapping[str, float] | None = None, quiet: bool = False):
    """A context yielding the distributed Client the options ask for, or None to run tasks in this process.

    scheduler: address (tcp://host:8786) or scheduler file of a running cluster; workers: 0 (no cluster),
    N >= 1 (a LocalCluster of N processes) or "auto" (one per core); None: `default_workers`.
    """
    from .errors import ConfigError

    if scheduler and workers is not None:
        raise ConfigError(f"give --workers ({workers}) or --scheduler ({scheduler}), not both: a scheduler's cluster has its own workers")
    n = default_workers if workers is None else workers
    if n != AUTO and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ConfigError(f"workers (--workers) must be 0 (this process), a positive number or {AUTO!r}, got {n!r}")
    if isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ConfigError(f"threads per worker (--threads-per-worker) must be a positive integer, got {threads_per_worker!r}")
    if not scheduler and n == 0:
        yield None
        return
    with dask_client(scheduler=scheduler, n_workers=None if n == AUTO else n, threads_per_worker=threads_per_worker,
                     resources=resources, quiet=quiet) as client:
        yield client


def worker_environ() -> dict:
    """The environment of spawned workers: distributed's default without MALLOC_TRIM_THRESHOLD_. That setting
    disables glibc's dynamic mmap threshold, so every large temporary tensor (4096 samples x 512) is mmap'ed and
    zeroed afresh: cINN inference ran 2x slower in a worker than in a plain process (measured here)."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def slurm_cluster(cores: int = 8, memory: str = "32GB", walltime: str = "04:00:00", gpus: int = 0, jobs: int = 1, **kwargs):
    """A dask-jobqueue SLURMCluster scaled to `jobs` jobs; with gpus > 0, one worker process per GPU
    carrying the resource GPU=1. Connect with `Client(cluster)` or pass `cluster.scheduler_address`
    to `--scheduler`."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:  # pragma: no cover - optional extra
        raise ImportError("SLURM support needs dask-jobqueue: pip install 'gridkit[hpc]'") from exc
    extra = {}
    if gpus:
        extra = {"processes": gpus, "worker_extra_args": ["--resources", "GPU=1"], "job_extra_directives": [f"--gres=gpu:{gpus}"]}
    cluster = SLURMCluster(cores=cores, memory=memory, walltime=walltime, **extra, **kwargs)
    cluster.scale(jobs=jobs)
    return cluster
