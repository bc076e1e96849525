"""Session fixtures of the evaluation tests: a tiny analytic cube and a tiny cINN trained on it (see
evaluate_helpers.py)."""
from __future__ import annotations

import pytest

from evaluate_helpers import TINY, build_cube


@pytest.fixture(scope="session")
def analytic_cube(tmp_path_factory):
    return build_cube(tmp_path_factory.mktemp("evaluate"))


@pytest.fixture(scope="session")
def tiny_model(analytic_cube, tmp_path_factory):
    import torch

    import cinn

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("evaluate") / "model"
    cinn.train(analytic_cube, out, config=TINY, progress=False)
    return out
