"""The notebooks under notebooks/ run top to bottom on small sizes (GRIDKIT_NB_SMALL=1) for a user without the project's
shared data (GRIDKIT_SHARED_DATA=none: each makes what it needs), show their figures inline, and are committed executed
that way, light enough to read on a forge. Re-execute and save after editing one:

    python -m gridkit.testing.notebooks notebooks/NAME.ipynb
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridkit.testing import notebooks as nbrun

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SHARED = ROOT.parent / "shared" / "data"
#: a committed notebook (outputs included) stays under this many bytes
MAX_BYTES = 300_000
IDS = [p.stem for p in NOTEBOOKS]


def _reads_shared(path) -> bool:
    """Whether a notebook's code asks for a file of the shared data (`shared("...")`)."""
    cells = json.loads(path.read_text())["cells"]
    return any('shared("' in "".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _check_outputs(nb, name):
    outs = nbrun.outputs(nb)
    errors = [nbrun.output_text(o) for o in outs if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors}"
    assert any("image/png" in o.get("data", {}) for o in outs), f"{name} shows no figure inline (image/png output)"
    # a message saying a cell did nothing ("shared data not here: skipped"); a table column named `skipped` is fine
    skipped = [line for o in outs for line in nbrun.output_text(o).lower().splitlines()
               if line.strip().startswith("skipped") or line.strip().endswith("skipped") or ": skipped" in line or "not here" in line]
    assert not skipped, f"{name}: a cell skipped its work instead of making what it needs: {skipped}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_for_a_user_without_the_shared_data(path, tmp_path):
    pytest.importorskip("nbclient")
    nb = nbrun.execute(path, tmp_path, small=True, shared="none")  # raises CellExecutionError naming the failing cell
    _check_outputs(nb, path.name)


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if _reads_shared(p)], ids=lambda p: p.stem)
def test_notebook_runs_with_the_shared_data(path, tmp_path, shared_data):
    """The branches that read the project's shared data (the Turbospectrum grid, the UVES Sun)."""
    pytest.importorskip("nbclient")
    nb = nbrun.execute(path, tmp_path, small=True, shared=shared_data)
    _check_outputs(nb, path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_executed_and_light(path):
    nbformat = pytest.importorskip("nbformat")
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size / 1e3:.0f} kB (limit {MAX_BYTES / 1e3:.0f} kB): smaller figures or fewer outputs"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    redo = f"re-execute and save it: python -m gridkit.testing.notebooks notebooks/{path.name}"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        f"{path.name} is not committed executed top to bottom; {redo}"
    assert nb.metadata.get("gridkit", {}).get("sources_sha256") == nbrun.sources_sha256(nb), \
        f"{path.name}: its code changed since its outputs were made; {redo}"
    _check_outputs(nb, path.name)
    text = path.read_text()
    for leak in ("/tmp/", "/home/", str(ROOT)):
        assert leak not in text, f"{path.name}: outputs name a local path ({leak!r}); {redo}"


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4
