"""The published chain (`degrade`) and its store (`degrade_store`, `gridkit degrade`): equivalent widths kept
by every step, the final LSF, the cube's data model, restartability bit for bit, bad input refused before
anything is written, and the shared real-physics grid."""
import importlib
import math
import re

import numpy as np
import pytest
import xarray as xr

import gridkit
from gridkit import instruments
from gridkit.cli import main
from gridkit.errors import ConfigError, GridError, StoreError
from gridkit.kernels import rebin as kr
from gridkit.schema import LABEL_NAMES
from gridkit.testing import failing_regions

D = importlib.import_module("gridkit.degradation")
J = importlib.import_module("gridkit.degradation.jobs")
LINES = (5170.0, 5400.0, 5720.0, 6110.0, 6500.0, 6780.0)


def base_grid(n=4, vbroad=(0.0, 6.0, 14.0, 25.0), sigma=0.02, depth=0.7):
    """A base grid like the shared one: 0.02 A steps over 5150-5740 and 6090-6800 A in one axis, lines in both arms."""
    wl = np.concatenate([np.arange(5150.0, 5740.0, 0.02), np.arange(6090.0, 6800.0, 0.02)])
    one = np.ones(wl.size)
    for c in LINES:
        one -= depth * np.exp(-0.5 * ((wl - c) / sigma) ** 2)
    rng = np.random.default_rng(0)
    labels = {name: rng.uniform(0.1, 1.0, n) for name in LABEL_NAMES}
    labels["vbroad"] = np.resize(np.asarray(vbroad, float), n)
    return gridkit.from_arrays(wl, np.repeat(one[None], n, 0), labels, model=np.arange(100, 100 + n))


def equivalent_widths(ds, half=2.5):
    wl = ds.wavelength.values
    width = kr.pixel_widths(wl)
    fl = np.asarray(ds.flux.values, dtype=float)
    return np.array([[((1 - f) * width)[np.abs(wl - c) < half].sum() for c in LINES] for f in fl])


def test_equivalent_widths_conserved_by_every_step():
    ds = base_grid()
    ref = equivalent_widths(ds)
    hr = instruments.FOURMOST_HR
    work = D.working_grid(ds.wavelength.values, hr.select("green,red"))
    steps = {}
    x = gridkit.to_resolution(ds, 80_000)
    steps["R=80000"] = x
    x = gridkit.rebin(x, work)
    steps["0.025 A"] = x
    x = gridkit.rotate(x)
    steps["rotation"] = x
    x = gridkit.to_resolution(x, 20_000)
    steps["R=20000"] = x
    x = gridkit.rebin(x, hr.wavelength("green,red"))
    steps["pixels"] = x
    for name, step in steps.items():
        np.testing.assert_allclose(equivalent_widths(step.compute()), ref, rtol=0.002, err_msg=name)
    one_call = gridkit.degrade(ds, snr=None).compute()
    np.testing.assert_array_equal(one_call.flux.values, x.compute().flux.values)  # degrade is exactly that chain


def test_final_lsf_is_the_instruments():
    ds = base_grid(n=1, vbroad=(0.0,), sigma=0.002)
    out = gridkit.degrade(ds, snr=None).compute()
    wl, fl = out.wavelength.values, out.flux.values[0].astype(float)
    from scipy.optimize import curve_fit

    for c in LINES:
        m = np.abs(wl - c) < 1.0
        (cc, s, d), _ = curve_fit(lambda x, c0, s0, d0: 1 - d0 * np.exp(-0.5 * ((x - c0) / s0) ** 2), wl[m], fl[m], p0=(c, 0.1, 0.3))
        # lambda/R and the two boxcars of the 0.025 A working pixels and the 0.05 A instrument pixels
        expected = 2.3548 * math.sqrt((c / 20_000 / 2.3548) ** 2 + (0.05**2 + 0.025**2) / 12)
        assert 2.3548 * abs(s) == pytest.approx(expected, rel=0.01), c


def test_cube_data_model_and_laziness():
    ds = base_grid().chunk({"model": 2})
    cube = gridkit.degrade(ds, arms="green", snr=[10, 100], seed=5)
    assert cube.flux.dims == ("model", "snr", "wavelength")
    assert cube.flux.chunks[0] == (2, 2) and len(cube.flux.chunks[2]) == 1
    assert cube.sizes["wavelength"] == 11_400
    assert cube.attrs["instrument"] == "4most-hr" and cube.attrs["arms"] == "green" and cube.attrs["resolving_power"] == 20_000
    assert cube.snr.attrs["convention"] == "per_angstrom"
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(cube[name].values, ds[name].values)
    gridkit.validate_grid(cube.compute(), kind="cube")


def test_store_resume_equals_uninterrupted(tmp_path, monkeypatch):
    src = tmp_path / "base.zarr"
    gridkit.write_grid(base_grid(n=5), src)
    a = D.degrade_store(src, tmp_path / "a.zarr", snr=[12, 250], region_size=2, progress=False)
    got = gridkit.open_grid(a, kind="cube")
    direct = gridkit.degrade(xr.open_zarr(src, consolidated=False), snr=[12, 250]).compute()
    np.testing.assert_array_equal(got.flux.values, direct.flux.values)
    assert got.flux.encoding["chunks"] == (2, 2, 25_200)
    # interrupt: region 1 fails, is recorded; rerun resumes and writes the same bytes
    with failing_regions(J.DegradeRegion, [1]), pytest.raises(StoreError, match="1 region"):
        D.degrade_store(src, tmp_path / "b.zarr", snr=[12, 250], region_size=2, progress=False, on_error="record")
    with pytest.raises(StoreError, match="incomplete"):
        gridkit.open_grid(tmp_path / "b.zarr")
    D.degrade_store(src, tmp_path / "b.zarr", snr=[12, 250], region_size=2, progress=False)
    np.testing.assert_array_equal(gridkit.open_grid(tmp_path / "b.zarr").flux.values, got.flux.values)


def _store_with(tmp_path, name, ds):
    path = tmp_path / name
    ds.to_zarr(path, zarr_format=3, consolidated=False)
    return path


def test_bad_input_refused_before_anything_is_written(tmp_path):
    good = base_grid(n=2)
    out = tmp_path / "out.zarr"
    cases = {
        "nan flux": (good.assign(flux=good.flux.where(good.wavelength != good.wavelength[100])), {}, GridError, "NaN/inf values in 2 model"),
        "missing label": (good.drop_vars("vbroad"), {}, GridError, "lacks label variable.*vbroad"),
        "nan label": (good.assign(teff=("model", [np.nan, 1.0])), {}, GridError, "label 'teff' is NaN"),
        "unsorted": (good.isel(wavelength=np.r_[1, 0, 2:good.sizes["wavelength"]]), {}, GridError, "wavelength must increase"),
        "non-positive": (good.assign_coords(wavelength=good.wavelength - 5150.0), {}, GridError, "wavelength must be positive"),
        "R too high": (good, {"input_resolving_power": 15_000}, ConfigError, "must be below the input's resolving power \\(15000\\)"),
        "outside": (good, {"arms": "blue"}, GridError, "arm 'blue' \\(3926-4355 A\\) is not covered"),
        "snr": (good, {"snr": [10, 0]}, ConfigError, "snr must be finite and > 0; got 0"),
    }
    for name, (ds, kwargs, exc, msg) in cases.items():
        src = _store_with(tmp_path, name.replace(" ", "_") + ".zarr", ds)
        with pytest.raises(exc, match=msg):
            D.degrade_store(src, out, progress=False, **kwargs)
        assert not out.exists(), name
    # an existing output: refused unless overwrite
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    src = _store_with(tmp_path, "good.zarr", good)
    with pytest.raises(StoreError, match="exists; pass overwrite=True"):
        D.degrade_store(src, out, snr=[10], progress=False)
    assert (out / "precious.txt").exists()
    D.degrade_store(src, out, snr=[10], progress=False, overwrite=True)
    assert gridkit.open_grid(out).sizes["snr"] == 1
    with pytest.raises(StoreError, match="different job"):
        D.degrade_store(src, out, snr=[20], progress=False)


def test_cli(tmp_path, capsys):
    src = _store_with(tmp_path, "base.zarr", base_grid(n=3))
    out = tmp_path / "cube.zarr"
    assert main(["degrade", str(src), "--out", str(out), "--arms", "red", "--snr", "10,250", "--workers", "0", "--no-progress"]) == 0
    cube = gridkit.open_grid(out)
    assert cube.flux.shape == (3, 2, 13_800) and cube.attrs["arms"] == "red"
    assert main(["degrade", str(src), "--out", str(out), "--snr", "0", "--workers", "0"]) == 2
    assert "snr must be finite and > 0" in capsys.readouterr().err


@pytest.mark.shared
def test_shared_real_grid(shared_data, tmp_path):
    grid = xr.open_zarr(shared_data / "tsgrid-lte" / "grid.zarr", consolidated=False)
    few = grid.isel(model=slice(0, 3)).load()
    for v in few.variables.values():
        v.encoding = {}
    src = _store_with(tmp_path, "few.zarr", few)
    out = tmp_path / "cube.zarr"
    assert main(["degrade", str(src), "--out", str(out), "--snr", "30,1000", "--workers", "0", "--no-progress"]) == 0
    cube = gridkit.open_grid(out)
    assert cube.flux.shape == (3, 2, 25_200)
    np.testing.assert_array_equal(cube.model.values, grid.model.values[:3])
    clean = gridkit.degrade(few, snr=None).compute()
    assert np.isfinite(clean.flux.values).all()
    # real lines: the equivalent width over each arm is kept by the chain (0.2 %), continuum stays at 1
    for arm in instruments.FOURMOST_HR.select("green,red"):
        m_in = (few.wavelength.values > arm.wl_min + 2) & (few.wavelength.values < arm.wl_max - 2)
        m_out = (clean.wavelength.values > arm.wl_min + 2) & (clean.wavelength.values < arm.wl_max - 2)
        ew_in = ((1 - few.flux.values[:, m_in]) * 0.02).sum(axis=1)
        ew_out = ((1 - clean.flux.values[:, m_out].astype(float)) * 0.05).sum(axis=1)
        np.testing.assert_allclose(ew_out, ew_in, rtol=0.002)
    assert np.percentile(clean.flux.values, 99.5) == pytest.approx(1.0, abs=0.01)
    # the noise at S/N 1000 per A is sigma = flux / (1000 sqrt(0.05)): tiny; at 30 per A it is visible
    resid = cube.flux.values[:, 0].astype(float) - clean.flux.values
    assert (resid / clean.flux.values).std() == pytest.approx(1 / (30 * math.sqrt(0.05)), rel=0.02)


@pytest.mark.slow
def test_store_on_a_local_cluster(tmp_path):
    from gridkit.cluster import dask_client

    src = tmp_path / "base.zarr"
    gridkit.write_grid(base_grid(n=4), src)
    with dask_client(n_workers=2, quiet=True) as client:
        D.degrade_store(src, tmp_path / "c.zarr", snr=[20], region_size=1, client=client, progress=False)
    D.degrade_store(src, tmp_path / "t.zarr", snr=[20], region_size=1, progress=False)
    np.testing.assert_array_equal(gridkit.open_grid(tmp_path / "c.zarr").flux.values, gridkit.open_grid(tmp_path / "t.zarr").flux.values)


def test_cli_synth_then_degrade_end_to_end(tmp_path, capsys):
    """The documented chain: `gridkit synth --backend analytic` -> `gridkit degrade --instrument 4most-hr --arms
    green,red --snr 10,250`; both outputs open with gridkit.open_grid and the cube is the base grid degraded."""
    base, cube = tmp_path / "base.zarr", tmp_path / "train.zarr"
    assert main(["synth", "--backend", "analytic", "--n-models", "3", "--seed", "7", "--out", str(base), "--no-progress"]) == 0
    assert main(["degrade", str(base), "--instrument", "4most-hr", "--arms", "green,red", "--snr", "10,250", "--out", str(cube),
                 "--workers", "0", "--no-progress"]) == 0
    b, c = gridkit.open_grid(base), gridkit.open_grid(cube)
    assert b.flux.dims == ("model", "wavelength") and c.flux.dims == ("model", "snr", "wavelength")
    assert c.flux.shape == (3, 2, 25_200) and c.snr.values.tolist() == [10.0, 250.0]
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(c[name].values, b[name].values)
    clean = gridkit.degrade(b, snr=None).compute().flux.values
    resid = c.flux.values[:, 1].astype(float) - clean
    assert (resid / clean).std() == pytest.approx(1 / (250 * math.sqrt(0.05)), rel=0.02)  # S/N 250 per A
    assert main(["degrade", str(base), "--snr", "10,250", "--out", str(cube), "--workers", "0", "--seed", "1"]) == 2
    assert "different job" in capsys.readouterr().err  # an existing output of another job is refused


@pytest.mark.shared
def test_open_grid_reads_the_shared_scaled_integer_grid(shared_data):
    grid = gridkit.open_grid(shared_data / "tsgrid-lte" / "grid.zarr")  # uint16 with scale_factor on disk
    assert grid.sizes["model"] == 805 and grid.flux.dims == ("model", "wavelength")
    assert grid.flux.encoding["dtype"] == np.dtype("uint16")
    few = grid.isel(model=[0, 400, 804]).flux.values
    assert np.isfinite(few).all() and 0 < few.min() and few.max() <= 1.32  # decoded normalised flux
    cube = gridkit.degrade(grid.isel(model=[0, 400, 804]), snr=[50])
    assert cube.flux.shape == (3, 1, 25_200) and np.isfinite(cube.flux.values).all()


def test_chain_recorded_as_steps_and_repeated_from_them():
    """The chain is provenance a program can read: `degrade_steps` lists each step with its parameters, and
    `chain_options` turns them back into the options that repeat the same chain bit for bit on other spectra."""
    import json

    ds = base_grid(n=2)
    opts = dict(intermediate_resolving_power=None, working_step=0.02, limb_darkening=0.3, arms="green")
    cube = gridkit.degrade(ds, snr=[50.0], seed=3, **opts)
    steps = json.loads(cube.attrs[D.STEPS_ATTR])
    assert [s["op"] for s in steps] == ["rebin", "rotate", "to_resolution", "rebin", "add_noise"]
    assert steps[0]["max_step_angstrom"] == 0.02 and steps[1]["limb_darkening"] == 0.3 and steps[1]["vbroad"] == "label"
    assert steps[2] == {"op": "to_resolution", "resolving_power": 20000.0, "input_resolving_power": None}  # null: unbroadened
    assert steps[4]["snr"] == [50.0] and steps[4]["seed"] == 3
    assert cube.attrs["degrade_chain"].startswith("ln-lambda grid of <= 0.02 A -> rotation (Gray, limb darkening 0.3) -> R=20000")
    again = D.chain_options(cube.attrs)
    assert again["intermediate_resolving_power"] is None and again["working_step"] == 0.02 and again["limb_darkening"] == 0.3
    np.testing.assert_array_equal(gridkit.degrade(ds, snr=None, **again).flux.values, gridkit.degrade(ds, snr=None, **opts).flux.values)
    published = gridkit.degrade(ds, snr=None)
    assert json.loads(published.attrs[D.STEPS_ATTR])[0] == {"op": "to_resolution", "resolving_power": 80000.0, "input_resolving_power": None}
    assert D.chain_options(published.attrs)["intermediate_resolving_power"] == 80000.0


def test_a_huge_input_resolving_power_is_effectively_infinite(tmp_path, capsys):
    """R_in = 1e300 used to overflow (1/R_in**2) into a traceback; the kernel's width sqrt(1/R^2 - 1/R_in^2) is
    1/R for any R_in that large, so the cube equals the one from an unbroadened (R_in = inf) input."""
    from gridkit.kernels.lsf import kernel_sigma_lnlambda

    assert kernel_sigma_lnlambda(20_000, 1e300) == kernel_sigma_lnlambda(20_000)
    assert kernel_sigma_lnlambda(20_000, 1.7e308) == kernel_sigma_lnlambda(20_000)
    assert 0 < kernel_sigma_lnlambda(1e300, 2e300) < 1e-300  # both huge: tiny but a width, no overflow
    assert kernel_sigma_lnlambda(20_000, 40_000) == pytest.approx(math.sqrt(1 / 20_000**2 - 1 / 40_000**2) / (2 * math.sqrt(2 * math.log(2))), rel=1e-12)
    src = _store_with(tmp_path, "base.zarr", base_grid(n=2))
    common = ["--arms", "red", "--snr", "50", "--workers", "0", "--no-progress"]
    assert main(["degrade", str(src), "--out", str(tmp_path / "huge.zarr"), "--input-resolving-power", "1e300", *common]) == 0
    assert main(["degrade", str(src), "--out", str(tmp_path / "inf.zarr"), "--input-resolving-power", "inf", *common]) == 0
    assert "Traceback" not in capsys.readouterr().err
    np.testing.assert_array_equal(gridkit.open_grid(tmp_path / "huge.zarr").flux.values, gridkit.open_grid(tmp_path / "inf.zarr").flux.values)


@pytest.mark.parametrize("argv, message", [
    (["--snr", "1e308"], "snr must be at most 1e\\+15"),
    (["--snr", "1e300,20"], "snr must be at most 1e\\+15"),
    (["--input-resolving-power", "nan"], "input_resolving_power must be > 0"),
    (["--input-resolving-power=-1e300"], "input_resolving_power must be > 0"),
    (["--input-resolving-power", "1e-300"], "must be below the input's resolving power"),
])
def test_absurd_numbers_are_refused_with_a_message_and_nothing_written(tmp_path, capsys, argv, message):
    src = _store_with(tmp_path, "base.zarr", base_grid(n=2))
    out = tmp_path / "cube.zarr"
    assert main(["degrade", str(src), "--out", str(out), "--workers", "0", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
    assert not out.exists()


def test_an_snr_so_low_that_the_noise_overflows_is_refused(tmp_path, capsys):
    """`--snr 1e-300` wrote a cube of inf with only a warning; now refused before anything is written."""
    src = tmp_path / "base.zarr"
    gridkit.write_grid(base_grid(n=2), src)
    assert main(["degrade", str(src), "--out", str(tmp_path / "c.zarr"), "--snr", "1e-300", "--workers", "0", "--no-progress"]) == 2
    assert "snr must be at least 0.001" in capsys.readouterr().err
    assert not (tmp_path / "c.zarr").exists()
    cube = gridkit.degrade(base_grid(n=2), snr=[0.001]).compute()  # the lowest accepted S/N gives finite noise
    assert np.isfinite(cube.flux.values).all()


def test_the_continuum_operator_as_a_degrade_option_is_recorded_and_equals_the_kernel():
    """`normalise='continuum'` applies the operator observed spectra go through, on the instrument's pixels before the
    noise; the cube records it (normalisation attr, degrade_steps) and chain_options repeats it."""
    import json

    from gridkit.kernels import continuum

    ds = base_grid(n=2)
    plain = gridkit.degrade(ds, snr=None).compute()
    normed = gridkit.degrade(ds, snr=None, normalise="continuum").compute()
    want = continuum.normalise(plain.wavelength.values, plain.flux.values.astype(float))[0].astype(np.float32)
    np.testing.assert_array_equal(normed.flux.values, want)
    assert normed.attrs["normalisation"].startswith("continuum {") and plain.attrs["normalisation"] == "none"
    assert json.loads(normed.attrs[D.STEPS_ATTR])[-1]["op"] == "normalise"
    np.testing.assert_array_equal(gridkit.degrade(ds, snr=None, **D.chain_options(normed.attrs)).flux.values, normed.flux.values)
    with pytest.raises(ConfigError, match="normalise must be"):
        gridkit.degrade(ds, normalise="spline")
