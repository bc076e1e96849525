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
