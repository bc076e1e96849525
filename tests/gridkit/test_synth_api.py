"""`synthesize` through the store writer: a valid base grid, resume = uninterrupted, failed models recorded
and droppable, existing outputs refused, bad labels refused before writing, the CLI end to end."""
import json

import numpy as np
import pytest
import xarray as xr
from astropy.table import Table

from gridkit import LABEL_NAMES, open_grid
from gridkit.cli import main
from gridkit.errors import ConfigError, GridError, StoreError
from gridkit.synth import (BACKENDS, STATUS_FAILED, STATUS_SKIPPED, AnalyticSynthesizer, SynthesisSkipped, drop_failed, get_backend,
                           model_failures, sample_labels, synthesize)

RANGES = ((6550.0, 6575.0), (6700.0, 6720.0))


@pytest.fixture(scope="module")
def backend():
    return AnalyticSynthesizer(wavelength_range=RANGES, step=0.02)


def _read(path):
    return xr.open_zarr(path, consolidated=False)


def test_writes_a_valid_base_grid(tmp_path, backend):
    labels = sample_labels(10, seed=4)
    report = synthesize(labels, backend, tmp_path / "g.zarr", models_per_region=4, progress=False)
    assert report.n_ok == 10 and not report.resumed and report.not_ok == {}
    ds = open_grid(tmp_path / "g.zarr")
    assert ds.flux.dtype == np.float32 and ds.flux.dims == ("model", "wavelength")
    assert ds.flux.encoding["chunks"] == (4, backend.wavelength().size)  # chunked along model
    assert ds.attrs["resolving_power"] == np.inf and ds.attrs["backend"] == "analytic"
    assert json.loads(ds.attrs["provenance"])["n_lines"] > 0
    assert ds.wavelength.attrs == {"units": "Angstrom", "long_name": "wavelength", "medium": "air"}
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(ds[name].values, labels[name])
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert (ds.status.values == 0).all()
    for m in (0, 9):
        np.testing.assert_array_equal(ds.flux.values[m], backend.synthesize({k: v[m] for k, v in labels.items()}))


class Flaky:
    """A backend wrapper: skips teff > 6500, fails on model ids in `fail`, interrupts (BaseException) on `stop`."""

    name = "flaky"

    def __init__(self, inner, fail=(), stop=(), calls=None):
        self.inner, self.fail, self.stop, self.calls = inner, set(fail), set(stop), calls

    def wavelength(self):
        return self.inner.wavelength()

    def provenance(self):
        return {"backend": "flaky", **{k: v for k, v in self.inner.provenance().items() if k != "backend"}}

    def synthesize(self, labels):
        model = int(round(labels["vbroad"] * 1000))  # the tests encode the model id in vbroad
        if self.calls is not None:
            self.calls.append(model)  # list.append is atomic
        if model in self.stop:
            raise KeyboardInterrupt
        if model in self.fail:
            raise RuntimeError(f"boom {model}")
        if labels["teff"] > 6500:
            raise SynthesisSkipped(f"teff {labels['teff']:.0f} beyond the atmospheres")
        return self.inner.synthesize(labels)


def _labels(n):
    labels = sample_labels(n, seed=5)
    labels["vbroad"] = np.arange(n) / 1000.0
    labels["teff"][:] = 5500.0
    return labels


def test_failed_models_are_recorded_and_the_grid_goes_on(tmp_path, backend):
    labels = _labels(9)
    labels["teff"][2] = 6700.0
    report = synthesize(labels, Flaky(backend, fail={5}), tmp_path / "f.zarr", models_per_region=3, progress=False)
    assert report.n_ok == 7
    assert set(report.not_ok) == {2, 5} and "beyond the atmospheres" in report.not_ok[2] and "boom 5" in report.not_ok[5]
    assert model_failures(tmp_path / "f.zarr") == report.not_ok
    ds = open_grid(tmp_path / "f.zarr")
    assert ds.status.values[2] == STATUS_SKIPPED and ds.status.values[5] == STATUS_FAILED
    assert np.isnan(ds.flux.values[5]).all() and np.isfinite(ds.flux.values[4]).all()
    clean = drop_failed(ds)
    assert list(clean.model.values) == [0, 1, 3, 4, 6, 7, 8] and np.isfinite(clean.flux.values).all()
    with pytest.raises(RuntimeError, match="boom"):
        synthesize(labels, Flaky(backend, fail={5}), tmp_path / "r.zarr", models_per_region=3, progress=False, on_model_error="raise")


def test_resume_skips_finished_regions_and_equals_uninterrupted(tmp_path, backend):
    labels = _labels(12)
    full = synthesize(labels, Flaky(backend), tmp_path / "full.zarr", models_per_region=3, progress=False)
    assert full.n_ok == 12
    with pytest.raises(KeyboardInterrupt):
        synthesize(labels, Flaky(backend, stop={7}), tmp_path / "part.zarr", models_per_region=3, progress=False)
    from gridkit.store import open_region_store

    done = open_region_store(tmp_path / "part.zarr").done()
    assert 2 not in done and len(done) < 4
    calls = []
    report = synthesize(labels, Flaky(backend, calls=calls), tmp_path / "part.zarr", models_per_region=3, progress=False)
    assert report.resumed and report.n_ok == 12
    expected = [m for r in range(4) if r not in done for m in range(3 * r, 3 * r + 3)]
    assert sorted(calls) == expected  # finished regions are not recomputed
    np.testing.assert_array_equal(_read(tmp_path / "full.zarr").flux.values, _read(tmp_path / "part.zarr").flux.values)


def test_existing_output_refused_without_overwrite_and_bad_labels_before_writing(tmp_path, backend):
    out = tmp_path / "g.zarr"
    synthesize(sample_labels(3, seed=1), backend, out, progress=False)
    with pytest.raises(StoreError, match="different job"):
        synthesize(sample_labels(3, seed=2), backend, out, progress=False)
    synthesize(sample_labels(3, seed=2), backend, out, progress=False, overwrite=True)
    np.testing.assert_array_equal(_read(out).teff.values, sample_labels(3, seed=2)["teff"])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    with pytest.raises(StoreError, match="not a resumable"):
        synthesize(sample_labels(3), backend, foreign, progress=False)
    bad = sample_labels(4)
    bad["mg_fe"][1] = np.nan
    with pytest.raises(GridError, match="mg_fe"):
        synthesize(bad, backend, tmp_path / "bad.zarr", progress=False)
    with pytest.raises(GridError, match="li_fe"):
        synthesize({k: v for k, v in sample_labels(4).items() if k != "li_fe"}, backend, tmp_path / "bad.zarr", progress=False)
    with pytest.raises(ConfigError, match="on_model_error"):
        synthesize(sample_labels(4), backend, tmp_path / "bad.zarr", on_model_error="ignore")
    assert not (tmp_path / "bad.zarr").exists()


def test_backend_registry():
    assert set(BACKENDS) >= {"analytic", "turbospectrum"}
    syn = get_backend("analytic", wavelength_range=["red"], step=0.05)
    assert syn.wavelength()[0] == 6090.0
    with pytest.raises(ConfigError, match="turbospectrum"):
        get_backend("analytic", atmosphere="marcs/")
    with pytest.raises(ConfigError, match="backend"):
        get_backend("phoenix")


def test_cli_synth_end_to_end(tmp_path, capsys):
    out = tmp_path / "base.zarr"
    args = ["synth", "--backend", "analytic", "--n-models", "5", "--seed", "11", "--out", str(out),
            "--wavelength-range", "6700", "6720", "--wavelength-range", "6550-6575", "--step", "0.02", "--no-progress"]
    assert main(args) == 0
    ds = open_grid(out)
    np.testing.assert_array_equal(ds.teff.values, sample_labels(5, seed=11)["teff"])
    assert ds.wavelength.values[0] == 6550.0 and ds.wavelength.values[-1] == pytest.approx(6720.0)
    assert main(args) == 0 and "resumed" in capsys.readouterr().out  # a rerun of the same job resumes
    assert main([a if a != "11" else "12" for a in args]) == 2
    assert "different job" in capsys.readouterr().err
    # labels from a table
    Table(sample_labels(3, seed=1)).write(tmp_path / "labels.csv")
    assert main(["synth", "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "t.zarr"),
                 "--wavelength-range", "6700", "6720", "--no-progress"]) == 0
    np.testing.assert_allclose(open_grid(tmp_path / "t.zarr").feh.values, sample_labels(3, seed=1)["feh"])
    assert main(["synth", "--n-models", "2", "--out", str(tmp_path / "x.zarr"), "--atmosphere", "a"]) == 2
    assert main(["synth", "--out", str(tmp_path / "y.zarr")]) == 2
