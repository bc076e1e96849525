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
