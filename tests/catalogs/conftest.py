"""Fixtures of the catalog tests (the synthetic catalog itself is in catalog_fakes.py)."""
from __future__ import annotations

import pytest

from catalog_fakes import make_catalog, write_catalog


@pytest.fixture
def catalog_path(tmp_path):
    return write_catalog(make_catalog(), tmp_path / "catalog.zarr")
