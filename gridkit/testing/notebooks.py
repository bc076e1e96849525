"""Run the project's notebooks (notebooks/*.ipynb) the way CI does, and save them executed for the forge.

The notebooks read three environment variables: GRIDKIT_NB_SMALL=1 (a handful of models, seconds of training),
GRIDKIT_NB_WORKDIR (where they write; default ./notebook-output) and GRIDKIT_SHARED_DATA (the project's shared test
data; 'none' = absent, as in a user's clone: each notebook then generates what it needs).

Committed notebooks hold the outputs of a small run without the shared data, so that a reader sees what a user gets:

    python -m gridkit.testing.notebooks notebooks/*.ipynb        # re-execute and save (after editing a notebook)

Saving keeps figures (image/png) and text, drops what churns or weighs without informing (execution timings, the
xarray HTML repr next to its text repr, the kernel's version details, tqdm's warning where ipywidgets is missing),
replaces the work folder's absolute path by `notebook-output` and run-to-run noise (`CHURN`), and records a
checksum of the code cells (metadata gridkit.sources_sha256) that tests/test_notebooks.py compares, so that a
notebook edited but not re-executed is noticed.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

#: (pattern, replacement) for output text that differs from run to run without meaning anything
CHURN = [(r"(https?://(?:127\.0\.0\.1|localhost)):\d+", r"\1:8787"),  # the Dask dashboard's port
         (r'id="table\d+"', 'id="table"')]  # astropy's HTML table ids (from id())
#: what the committed outputs are made with
SAVE_ENV = {"GRIDKIT_NB_SMALL": "1", "GRIDKIT_SHARED_DATA": "none"}


def sources_sha256(nb) -> str:
    """Checksum of the code cells' sources, in order (what the outputs were computed from)."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode())
            h.update(b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def _environ(values: dict):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(path, workdir, *, small: bool = True, shared="none", timeout: int = 600):
    """Execute the notebook at `path` top to bottom in its folder, writing under `workdir`; shared: the shared data
    folder or 'none'. Returns the executed notebook (nbformat node); CellExecutionError names a failing cell."""
    import nbclient
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env = {"GRIDKIT_NB_SMALL": "1" if small else "0", "GRIDKIT_NB_WORKDIR": str(Path(workdir).resolve()),
           "GRIDKIT_SHARED_DATA": str(shared)}
    with _environ(env):
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def outputs(nb):
    """Every output of every code cell."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def output_text(out) -> str:
    """The text an output shows (stream text, text/plain of results, error messages)."""
    if out.get("output_type") == "stream":
        return out.get("text", "")
    if out.get("output_type") == "error":
        return f"{out.get('ename')}: {out.get('evalue')}"
    return str(out.get("data", {}).get("text/plain", ""))


def clean(nb, workdir, root=None):
    """Strip what churns from an executed notebook (see the module docstring), in place; returns it."""
    subs = [(str(Path(workdir).resolve()), "notebook-output")]
    if root is not None:
        subs.append((str(Path(root).resolve()), "."))

    def scrub(text):
        for a, b in subs:
            text = text.replace(a, b)
        for pattern, b in CHURN:
            text = re.sub(pattern, b, text)
        return text

    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        # tqdm's warning where ipywidgets is not installed (the test environment): not what a reader's Jupyter shows
        cell.outputs = [o for o in cell.get("outputs", [])
                        if not (o.get("name") == "stderr" and "TqdmWarning: IProgress" in o.get("text", ""))]
        for out in cell.outputs:
            if "text" in out:
                out["text"] = scrub(out["text"])
            data = out.get("data", {})
            if "text/html" in data and "text/plain" in data and "xr-wrap" in data["text/html"]:
                del data["text/html"]  # the xarray repr: 10+ kB of CSS and random element ids per dataset
            for mime in ("text/plain", "text/html"):
                if mime in data:
                    data[mime] = scrub(data[mime])
            out.get("metadata", {}).pop("execution", None)
    info = nb.metadata.get("language_info", {})
    nb.metadata["language_info"] = {k: info[k] for k in ("name", "file_extension", "mimetype") if k in info}
    nb.metadata["gridkit"] = {"sources_sha256": sources_sha256(nb), "executed_with": " ".join(f"{k}={v}" for k, v in SAVE_ENV.items())}
    return nb


def save_executed(path, *, timeout: int = 600) -> int:
    """Execute `path` as a user without the shared data would (SAVE_ENV), clean it and write it back; returns its size."""
    import nbformat

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="gridkit-nb-") as work:
        nb = execute(path, work, small=True, shared=SAVE_ENV["GRIDKIT_SHARED_DATA"], timeout=timeout)
        clean(nb, work, root=path.resolve().parents[1])
    text = nbformat.writes(nb)
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path.stat().st_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gridkit.testing.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    for p in args.notebooks:
        size = save_executed(p, timeout=args.timeout)
        print(f"{p}: executed and saved, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
