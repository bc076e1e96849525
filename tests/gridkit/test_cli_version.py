"""`gridkit --version`: gridkit's version with the checkout's commit, and the versions of what the numbers depend on."""
from __future__ import annotations

import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

import gridkit
from gridkit import cli

ROOT = Path(cli.__file__).resolve().parent.parent


def run_version(capsys) -> list[str]:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code in (0, None)
    return capsys.readouterr().out.splitlines()


def test_version_names_gridkit_its_commit_and_each_dependency(capsys):
    lines = run_version(capsys)
    if (ROOT / ".git").exists() and shutil.which("git"):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        assert lines[0] == f"gridkit {gridkit.__version__} (git {head})"
    else:
        assert lines[0] == f"gridkit {gridkit.__version__}"
    got = dict(line.split(" ", 1) for line in lines[1:])
    for name in ("torch", "FrEIA", "zarr", "xarray", "dask", "numpy", "astropy"):
        assert got[name] == metadata.version(name), name
    assert "python" in got


def test_version_without_git_or_outside_a_checkout_still_works(capsys, monkeypatch, tmp_path):
    assert cli.git_commit(tmp_path) is None  # no .git: not a checkout
    (tmp_path / ".git").mkdir()
    assert cli.git_commit(tmp_path) is None  # a broken .git: git fails, quietly
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git on PATH at all
    assert cli.git_commit() is None
    assert run_version(capsys)[0] == f"gridkit {gridkit.__version__}"


def test_a_missing_dependency_is_reported_not_raised(capsys, monkeypatch):
    monkeypatch.setattr(cli, "VERSION_PACKAGES", cli.VERSION_PACKAGES + ("surely-not-a-gridkit-dependency",))
    assert "surely-not-a-gridkit-dependency not installed" in run_version(capsys)
