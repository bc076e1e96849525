"""The Turbospectrum backend against real physics: the official v19.1 benchmark, the shared tsgrid-lte grid,
line-strength responses, bad input, and a tiny grid through the store driver on spawned Dask workers.

Tests that run the programs skip with the install command where `make turbospectrum` has not been run.
"""
from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from gridkit.errors import BackendError, ConfigError
from gridkit.synth.base import SynthesisSkipped, Synthesizer
from gridkit.synth.marcs import Atmosphere
from gridkit.synth.turbospectrum import ENV_HOME, PROGRAMS, TurbospectrumSynthesizer, default_home

pytestmark = pytest.mark.turbospectrum

BENCH = "turbospectrum-benchmark"
BENCH_SPEC = "5777g4.44z+0.00a+0.00t01_6700-6720_xit1.0.spec"
BENCH_MODEL = "5777g4.44z+0.00a+0.00t01-ref107857.marcs-binary"
BENCH_LIST = "vald-6700-6720.list"
SUN = dict(teff=5777.0, logg=4.44, feh=0.0, vmic=1.0)
ALL_LABELS = ("teff", "logg", "feh", "vmic", "vbroad", "c_fe", "n_fe", "mg_fe", "si_fe", "ca_fe", "ti_fe", "mn_fe", "li_fe")


@pytest.fixture(scope="session")
def ts_home() -> Path:
    """The Turbospectrum home. Skips where the programs are not built, unless GRIDKIT_TURBOSPECTRUM names a home
    explicitly (as `make test` does after `make turbospectrum`): then a missing build fails instead of
    silently skipping the real-physics tests."""
    home = default_home()
    missing = [p for p in PROGRAMS if not os.access(home / "bin" / p, os.X_OK)]
    if missing:
        message = f"Turbospectrum programs {missing} not built in {home}: run `make turbospectrum` (or set GRIDKIT_TURBOSPECTRUM)"
        if os.environ.get(ENV_HOME):
            pytest.fail(f"{ENV_HOME} is set but {message}")
        pytest.skip(message)
    return home


@pytest.fixture(scope="module")
def li_window(ts_home) -> TurbospectrumSynthesizer:
    """6700-6720 A at 0.02 A with the default Gaia-ESO list and MARCS grid: Li 6708, Ca I 6717.7, Fe I lines."""
    return TurbospectrumSynthesizer([(6700.0, 6720.0)], 0.02)


def equivalent_width(syn: TurbospectrumSynthesizer, flux: np.ndarray, centre: float, half_width: float) -> float:
    """Equivalent width in mA of the absorption within centre +- half_width (continuum-normalised flux)."""
    wl = syn.wavelength()
    sel = np.abs(wl - centre) <= half_width
    return float(np.sum(1.0 - flux[sel]) * syn.step * 1000.0)


# -- no programs needed ---------------------------------------------------------------------------
def test_missing_programs_raise_backend_error_with_install_command(tmp_path):
    syn = TurbospectrumSynthesizer([(6700.0, 6720.0)], 0.01, home=tmp_path / "nowhere")
    with pytest.raises(BackendError, match=r"make turbospectrum") as err:
        syn.synthesize(SUN)
    assert "babsma_lu" in str(err.value) and str(tmp_path / "nowhere") in str(err.value)
    with pytest.raises(BackendError, match=r"make turbospectrum"):
        syn.provenance()  # what the driver calls first: the error comes before any store is written


def test_is_a_picklable_synthesizer_with_the_cli_option_names(tmp_path):
    syn = TurbospectrumSynthesizer(wavelength_range=["green", (6700, 6720)], step=0.02, home=tmp_path)
    assert isinstance(syn, Synthesizer)
    clone = pickle.loads(pickle.dumps(syn))
    assert clone.wavelength_ranges == ((5150.0, 5740.0), (6700.0, 6720.0))
    wl = clone.wavelength()
    assert wl[0] == 5150.0 and wl[-1] == pytest.approx(6720.0) and np.all(np.diff(wl) > 0)
    assert wl.size == int(round(590 / 0.02)) + 1 + int(round(20 / 0.02)) + 1
    assert TurbospectrumSynthesizer((6700, 6720), 0.01, home=tmp_path).wavelength().size == 2001  # one bare pair


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(wavelength_ranges=[(6720, 6700)]), r"wavelength_ranges\[0\] = \(6720.0, 6700.0\)"),
        (dict(wavelength_ranges=["infrared"]), r"wavelength_ranges\[0\] = 'infrared' is not an arm name"),
        (dict(wavelength_ranges=[(6700, 6720), (6710, 6730)]), r"overlap"),
        (dict(step=0.0), r"step must be a positive number"),
        (dict(linelists=["/no/such/list"]), r"linelists\[0\] = '/no/such/list' does not exist"),
        (dict(atmosphere="/no/such/model"), r"atmosphere = '/no/such/model' does not exist"),
    ],
)
def test_bad_options_are_config_errors_naming_the_argument(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TurbospectrumSynthesizer(**{"home": tmp_path, **kwargs})


# -- the official benchmark and the shared grid -----------------------------------------------------
def test_reproduces_the_official_v19_benchmark(ts_home, shared_data):
    """babsma + bsyn v20 on the v19.1 benchmark inputs (VALD list, MARCS binary model, vmic 1) give the
    shared `.spec` to 0.002 in normalised flux, on the same wavelengths."""
    bench = shared_data / BENCH
    syn = TurbospectrumSynthesizer([(6700.0, 6720.0)], 0.01, linelists=[bench / BENCH_LIST], atmosphere=bench / BENCH_MODEL)
    flux = syn.synthesize(SUN)
    ref = np.loadtxt(bench / BENCH_SPEC)
    np.testing.assert_allclose(syn.wavelength(), ref[:, 0], atol=1e-6)
    assert flux.dtype == np.float32
    assert np.max(np.abs(flux - ref[:, 1])) <= 0.002
    # the lines are really there: Li 6707.8, Ca I 6717.7 (depth > 0.3)
    assert ref[:, 1].min() < 0.7 and flux.min() < 0.7


def test_reproduces_a_model_of_the_shared_tsgrid_lte_grid(ts_home, shared_data):
    """The documented recipe (MARCS interpolation, GES + Hlinedata, A(X) = A_sun + [Fe/H] + [X/Fe]) gives back
    a model of the shared grid, with its non-solar abundances, in a window with Li, Ca, Fe and [O I] 6300."""
    import xarray as xr

    ds = xr.open_zarr(shared_data / "tsgrid-lte" / "grid.zarr", consolidated=False)
    m = ds.sel(model=762)  # 5815 K, 4.36, [Fe/H] -0.04, [Li/Fe] +1.74, [Mg/Fe] +0.45, [Ti/Fe] -0.22 ...
    labels = {k: float(m[k].values) for k in ALL_LABELS}
    syn = TurbospectrumSynthesizer([(6296.0, 6304.0), (6700.0, 6720.0)], 0.02)
    flux = syn.synthesize(labels)
    ref = m.flux.sel(wavelength=syn.wavelength(), method="nearest", tolerance=1e-3).values
    assert np.max(np.abs(flux - ref)) <= 0.003
    assert ref.min() < 0.8  # a window with real lines


def test_text_marcs_atmosphere_equals_the_interpolation_at_a_grid_node(li_window, ts_home):
    """--atmosphere with a MARCS text model and the interpolated grid agree where no interpolation happens."""
    li_window.check()
    node = li_window.marcs_grid().path(next(m for m in li_window.marcs_grid().models if (m.geometry, m.teff, m.logg, m.feh, m.alpha) == ("p", 5750.0, 4.5, 0.0, 0.0)))
    labels = dict(teff=5750.0, logg=4.5, feh=0.0, vmic=1.0)
    direct = TurbospectrumSynthesizer([(6700.0, 6720.0)], 0.02, atmosphere=node).synthesize(labels)
    assert np.max(np.abs(direct - li_window.synthesize(labels))) <= 1e-3


# -- physics --------------------------------------------------------------------------------------
def test_lines_deepen_with_abundance(li_window):
    """Ca I 6717.69 grows with [Ca/Fe] and every line of the window with [Fe/H] (at fixed [X/Fe])."""
    weak = li_window.synthesize({**SUN, "ca_fe": -0.3})
    strong = li_window.synthesize({**SUN, "ca_fe": 0.5})
    ew_weak, ew_strong = equivalent_width(li_window, weak, 6717.69, 0.6), equivalent_width(li_window, strong, 6717.69, 0.6)
    assert ew_strong > 1.2 * ew_weak > 0
    poor = li_window.synthesize({**SUN, "feh": -1.0})
    total = lambda f: float(np.sum(1.0 - f))  # noqa: E731
    assert total(poor) < 0.6 * total(weak)


def test_li_6708_responds_to_li_fe(li_window):
    """A(Li) = 1.05 + [Fe/H] + [Li/Fe]: no line at [Li/Fe] = -1.5, a strong doublet at +2.0, nothing else moves."""
    ew = {}
    spectra = {}
    for li in (-1.5, 0.0, 2.0):
        spectra[li] = li_window.synthesize({**SUN, "li_fe": li})
        ew[li] = equivalent_width(li_window, spectra[li], 6707.85, 0.35)
    assert ew[-1.5] < 3.0 < ew[0.0] < ew[2.0] and ew[2.0] > 100.0
    far = np.abs(li_window.wavelength() - 6707.85) > 1.0
    assert np.max(np.abs(spectra[2.0][far] - spectra[-1.5][far])) < 0.01


def test_halpha_wings_widen_with_teff(ts_home):
    """Halpha's wings (4-11 A from the core) deepen monotonically from 5000 K to 6500 K (dwarfs)."""
    syn = TurbospectrumSynthesizer([(6545.0, 6580.0)], 0.05)
    wl = syn.wavelength()
    wings = ((wl > 6552) & (wl < 6558)) | ((wl > 6568) & (wl < 6574))
    depth = [float(np.mean(1.0 - syn.synthesize(dict(teff=t, logg=4.4, feh=0.0, vmic=1.0))[wings])) for t in (5000.0, 5800.0, 6500.0)]
    assert depth[0] < depth[1] < depth[2]
    assert depth[2] > 1.5 * depth[0]


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "labels, match",
    [
        (dict(teff=9000.0, logg=4.0, feh=0.0, vmic=1.0), r"teff=9000 outside 2800..8000"),
        (dict(teff=4500.0, logg=3.2, feh=0.0, vmic=1.5), r"outside the spherical MARCS grid.*logg=3.2 outside"),
        (dict(teff=5000.0, logg=4.4, feh=-3.0, vmic=1.0), r"feh=-3 outside -2.5..1"),
    ],
)
def test_labels_outside_the_atmosphere_grid_are_skipped_with_a_reason(li_window, labels, match):
    with pytest.raises(SynthesisSkipped, match=match):
        li_window.synthesize(labels)


def test_a_line_list_outside_the_range_is_a_clear_error(ts_home, shared_data):
    vald = shared_data / BENCH / BENCH_LIST
    syn = TurbospectrumSynthesizer([(5000.0, 5020.0)], 0.01, linelists=[vald])
    with pytest.raises(ConfigError, match=r"linelists: vald-6700-6720.list \(6700.0-6719.9 A\) has no lines in the requested wavelength range 5000.00-5020.00 A"):
        syn.synthesize(SUN)
    blue = TurbospectrumSynthesizer(["blue"], 0.01)  # the Gaia-ESO list starts at 4200 A
    with pytest.raises(ConfigError, match=r"covers only part of the requested wavelength range 3916.00-4365.00 A"):
        blue.provenance()


def test_missing_labels_are_a_config_error(li_window):
    with pytest.raises(ConfigError, match=r"missing: vmic"):
        li_window.synthesize(dict(teff=5777.0, logg=4.44, feh=0.0))


def test_prior_draws_are_restricted_to_the_marcs_coverage(ts_home):
    """sample_labels_within_coverage keeps the prior's draws that have MARCS models around them and draws the others
    again from (seed, i, attempt); the draws it replaces really are skipped by the backend."""
    from gridkit.synth import sample_labels
    from gridkit.synth.turbospectrum import sample_labels_within_coverage

    syn = TurbospectrumSynthesizer([(6700.0, 6720.0)], 0.02)
    draws = sample_labels(120, seed=5)
    mask = syn.covers(draws)
    assert 0.8 < mask.mean() < 1.0  # the prior's giants with 3.0 < log g < 3.4 fall in the gap between the families
    gap = np.flatnonzero(~mask)
    assert np.all((draws["logg"][gap] > 3.0) & (draws["logg"][gap] < 3.5))
    with pytest.raises(SynthesisSkipped, match="outside the spherical MARCS grid"):
        syn.synthesize({k: float(v[gap[0]]) for k, v in draws.items()})
    kept = sample_labels_within_coverage(120, seed=5, synthesizer=syn)
    assert syn.covers(kept).all()
    for k in ("teff", "logg", "feh", "li_fe"):
        np.testing.assert_array_equal(kept[k][mask], draws[k][mask])  # a covered draw is kept as it is, in its place
        assert not np.any(kept[k][~mask] == draws[k][~mask])


def test_cli_synth_with_linelist_and_atmosphere(ts_home, shared_data, tmp_path, capsys):
    """`gridkit synth --backend turbospectrum --labels ... --wavelength-range A B --step --linelist --atmosphere`
    writes the official benchmark's spectrum into a grid store (local threads)."""
    import xarray as xr

    from gridkit.cli import main

    bench = shared_data / BENCH
    (tmp_path / "sun.csv").write_text(",".join(ALL_LABELS) + "\n" + "5777,4.44,0.0,1.0,2.0,0,0,0,0,0,0,0,0\n")
    argv = ["synth", "--backend", "turbospectrum", "--labels", str(tmp_path / "sun.csv"), "--wavelength-range", "6705", "6712",
            "--step", "0.01", "--linelist", str(bench / BENCH_LIST), "--atmosphere", str(bench / BENCH_MODEL),
            "--out", str(tmp_path / "sun.zarr"), "--no-progress"]
    assert main(argv) == 0
    assert "1 of 1 models synthesized (turbospectrum)" in capsys.readouterr().out
    ds = xr.open_zarr(tmp_path / "sun.zarr", consolidated=False)
    ref = np.loadtxt(bench / BENCH_SPEC)
    ref = ref[(ref[:, 0] > 6704.995) & (ref[:, 0] < 6712.005)]
    np.testing.assert_allclose(ds.wavelength.values, ref[:, 0], atol=1e-6)
    assert np.max(np.abs(ds.flux.values[0] - ref[:, 1])) <= 0.002 and ref[:, 1].min() < 0.9  # Li 6708 and Fe I 6710
    assert BENCH_MODEL in ds.attrs["provenance"] and BENCH_LIST in ds.attrs["provenance"]


# -- through the store driver on spawned Dask workers ----------------------------------------------
def spawned_local_cluster(n_workers: int):
    """The LocalCluster of the CLI (gridkit.cluster.dask_client): spawned worker processes, one thread each."""
    from gridkit.cluster import dask_client

    return dask_client(n_workers=n_workers, threads_per_worker=1, quiet=True)


class BrokenAtmosphereAt(TurbospectrumSynthesizer):
    """The real backend, except that the model with teff == `broken_teff` gets a corrupt atmosphere file: babsma
    really fails on it (a failure the backend detects, like a crashed program on a cluster node)."""

    broken_teff = 5500.0

    def _atmosphere(self, lab, work):
        if lab["teff"] == self.broken_teff:
            path = work / "model.interpol"
            path.write_text("this is not a model atmosphere\n")
            return Atmosphere(path, marcs_file=False, spherical=False, description="corrupt on purpose")
        return super()._atmosphere(lab, work)


def test_tiny_grid_on_a_local_cluster_records_skips_failures_and_resumes(ts_home, tmp_path):
    """Four models on 2 spawned workers into a Zarr store: two computed, one outside the MARCS grid (skipped with
    its reason), one whose babsma run fails (recorded, the grid goes on); a rerun recomputes nothing."""
    from gridkit.synth import STATUS_FAILED, STATUS_OK, STATUS_SKIPPED, model_failures, synthesize
    import json
    import xarray as xr

    rows = [
        dict(teff=5777.0, logg=4.44, feh=0.0, vmic=1.0),  # the Sun
        dict(teff=4800.0, logg=2.5, feh=-0.5, vmic=1.5),  # a giant (spherical models)
        dict(teff=4500.0, logg=3.2, feh=0.0, vmic=1.5),  # between the spherical and plane-parallel grids: skipped
        dict(teff=BrokenAtmosphereAt.broken_teff, logg=4.3, feh=0.0, vmic=1.0),  # babsma fails: recorded
    ]
    labels = {k: np.array([r.get(k, 0.0) for r in rows]) for k in ALL_LABELS}
    labels["vbroad"][:] = 5.0
    syn = BrokenAtmosphereAt([(6700.0, 6715.0)], 0.02)
    out = tmp_path / "grid.zarr"
    with spawned_local_cluster(2) as client:
        report = synthesize(labels, syn, out, models_per_region=1, client=client, progress=False)
        assert not report.resumed and report.n_ok == 2
        assert set(report.not_ok) == {2, 3}
        assert report.not_ok[2].startswith("skipped:") and "outside the spherical MARCS grid" in report.not_ok[2]
        assert report.not_ok[3].startswith("failed: BackendError: babsma_lu failed for teff=5500")
        stamps = {p: p.stat().st_mtime_ns for p in (out / "flux").rglob("*") if p.is_file() and p.name != "zarr.json"}
        assert len(stamps) >= 2  # the chunks of the two computed models at least
        t0 = time.perf_counter()
        again = synthesize(labels, syn, out, models_per_region=1, client=client, progress=False)
        assert again.resumed and again.not_ok == report.not_ok
        assert time.perf_counter() - t0 < 30.0  # one synthesis alone takes seconds; nothing is recomputed
        assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no flux chunk rewritten
    ds = xr.open_zarr(out, consolidated=False)
    np.testing.assert_array_equal(ds.status.values, [STATUS_OK, STATUS_OK, STATUS_SKIPPED, STATUS_FAILED])
    assert model_failures(out) == report.not_ok
    assert ds.wavelength.attrs["medium"] == "air"
    flux = ds.flux.values
    assert np.all(np.isfinite(flux[:2])) and np.all(np.isnan(flux[2:]))
    # the grid's Sun is the backend's Sun (no driver-side mangling); the giant's lines are stronger than the Sun's
    np.testing.assert_allclose(flux[0], syn.synthesize(rows[0]), atol=1e-6)
    assert np.sum(1.0 - flux[1]) > np.sum(1.0 - flux[0])
    prov = json.loads(ds.attrs["provenance"])
    assert prov["linelists"][0]["file"] == "nlte_ges_linelist_jmg17feb2022_I_II" and prov["linelists"][1]["file"] == "Hlinedata"
    assert any(v.startswith("turbospectrum==") for v in prov["versions"])


# -- the UVES Sun -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_solar_model_matches_the_uves_sun_over_the_green_arm(ts_home, shared_data, tmp_path):
    """benchmarks/solar_uves_check.py: solar labels, MARCS grid, 5150-5740 A at 0.01 A, degraded with
    gridkit.degrade (to_resolution R = 20000, rebin to the 4MOST HR green-arm pixels), against the UVES Sun
    through gridkit.observed.fourmostify_file: rms <= 0.03 (0.025 measured; missing molecules such as MgH and
    C2, and line-list imperfections, set the floor). Fresh synthesis (no cache)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "solar_uves_check.py"
    spec = importlib.util.spec_from_file_location("solar_uves_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.check(uves=shared_data / "sun-uves" / "UVES_Sun-1_cleaned_norm.txt", cache=tmp_path / "sun.npz")
    print(f"UVES Sun vs Turbospectrum, green arm at R=20000: rms = {result['rms']:.4f}")
    assert result["n_missing"] == 0 and result["n_pixels"] == 11_400
    assert result["rms"] <= 0.03
    assert abs(result["mean"]) < 0.01  # no continuum offset
    # the lines are there in both: the Mg b triplet (5167.3, 5172.7, 5183.6 A) is deep in each
    wl = result["wavelength"]
    for centre in (5167.32, 5172.68, 5183.60):
        near = np.abs(wl - centre) < 0.3
        assert result["model"][near].min() < 0.45 and result["observed"][near].min() < 0.45
