"""Shared fixtures. Tests that read ../shared/data skip cleanly where it is absent (a user's clone)."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent (it exists in the project's CI and developer checkouts only)")
    return SHARED


def pytest_configure(config):
    # Under pytest-xdist (`make test` runs two workers on two cores) each worker gets one torch/BLAS thread, so the
    # workers do not oversubscribe the cores; Dask clusters started by tests still spawn their own processes.
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
