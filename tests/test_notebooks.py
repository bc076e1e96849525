"""The notebooks under notebooks/ run top to bottom on small sizes (GRIDKIT_NB_SMALL=1)."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("GRIDKIT_NB_SMALL", "1")
    monkeypatch.setenv("GRIDKIT_NB_WORKDIR", str(tmp_path))
    monkeypatch.setenv("GRIDKIT_SHARED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert any(p.suffix == ".png" for p in tmp_path.iterdir()), "each notebook saves at least one figure"


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4
