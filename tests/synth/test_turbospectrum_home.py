"""Where the Turbospectrum programs live: `make turbospectrum` builds them where the backend looks by default,
so a fresh clone needs no environment variable (`make test` runs `make turbospectrum` first)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridkit.synth.turbospectrum import ENV_HOME, PROGRAMS, default_home

pytestmark = pytest.mark.turbospectrum

REPO = Path(__file__).resolve().parents[2]
LABELS = ("teff", "logg", "feh", "vmic", "vbroad", "c_fe", "n_fe", "mg_fe", "si_fe", "ca_fe", "ti_fe", "mn_fe", "li_fe")


def makefile_ts_home(env: dict[str, str]) -> Path:
    """The Makefile's TS_HOME in `env` (make evaluates it; no recipe runs)."""
    env = {k: v for k, v in env.items() if k not in ("TS_HOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "-s", "--no-print-directory", "--eval", "print-ts-home: ; @echo $(TS_HOME)", "print-ts-home"],
                         cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(
    "variables, expected",
    [
        ({}, "home/.cache/gridkit/turbospectrum"),
        ({"XDG_CACHE_HOME": "xdg"}, "xdg/gridkit/turbospectrum"),
        ({ENV_HOME: "ts"}, "ts"),
        ({ENV_HOME: "ts", "XDG_CACHE_HOME": "xdg"}, "ts"),
    ],
)
def test_make_builds_where_the_backend_looks(tmp_path, monkeypatch, variables, expected):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("XDG_CACHE_HOME", ENV_HOME):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, str(tmp_path / value))
    assert default_home() == tmp_path / expected
    assert makefile_ts_home(dict(os.environ)) == tmp_path / expected


def test_cli_synth_finds_the_programs_without_a_variable(tmp_path, monkeypatch):
    """`gridkit synth --backend turbospectrum` in a fresh process with no GRIDKIT_TURBOSPECTRUM: the default home,
    where `make turbospectrum` put the programs, is found."""
    import xarray as xr

    monkeypatch.delenv(ENV_HOME, raising=False)
    home = default_home()
    missing = [p for p in PROGRAMS if not os.access(home / "bin" / p, os.X_OK)]
    if missing and any(home.glob(".built-ts*")):  # make's stamp: a build was claimed there, so this is a failure
        pytest.fail(f"`make turbospectrum` left its stamp in {home} but not the programs {missing}: rm -rf it and rebuild")
    if missing:
        pytest.skip(f"Turbospectrum programs {missing} not built in the default home {home}: run `make turbospectrum`")
    (tmp_path / "sun.csv").write_text(",".join(LABELS) + "\n5777,4.44,0.0,1.0,2.0,0,0,0,0,0,0,0,0\n")
    script = Path(sys.executable).with_name("gridkit")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gridkit.cli"]
    out = tmp_path / "sun.zarr"
    run = subprocess.run([*command, "synth", "--backend", "turbospectrum", "--labels", str(tmp_path / "sun.csv"),
                          "--wavelength-range", "6700", "6702", "--step", "0.05", "--out", str(out), "--no-progress"],
                         env={k: v for k, v in os.environ.items() if k != ENV_HOME}, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr
    assert "1 of 1 models synthesized (turbospectrum)" in run.stdout
    ds = xr.open_zarr(out, consolidated=False)
    assert ds.sizes["wavelength"] == 41 and bool(np.all(np.isfinite(ds.flux.values)))
    assert f'"turbospectrum_home": "{home.resolve()}"' in ds.attrs["provenance"]
