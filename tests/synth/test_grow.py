"""Growing a grid from a declared prior: model i's labels depend on (seed, i) only, a rerun with more models extends
the store without touching or recomputing the models already there, an interrupted growth finishes on a rerun as
if it had not been interrupted, the prior (ranges, populations, coverage) is respected, bad priors are named, and
grids made in pieces merge into one.

The analytic backend makes the store tests fast; the Turbospectrum test (2 -> 4 models in a 2 A window) skips where
`make turbospectrum` has not been run.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from gridkit import LABEL_NAMES, open_grid
from gridkit.cli import main
from gridkit.errors import ConfigError, GridError, StoreError
from gridkit.synth import AnalyticSynthesizer, LabelPrior, Prior, merge_grids, sample_labels, synthesize_prior
from gridkit.synth.prior import A_LI_SUN

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "priors"
TINY = CONFIGS / "tiny-test.yaml"
WINDOW = ((6700.0, 6712.0),)


class Counting(AnalyticSynthesizer):
    """The analytic backend, counting the models it computes (threads of this process share the counter)."""

    def synthesize(self, labels):
        self.calls.append(labels["teff"])
        return super().synthesize(labels)


@pytest.fixture
def backend():
    b = Counting(wavelength_range=WINDOW, step=0.05)
    b.calls = []
    return b


def chunk_bytes(path: Path, var: str = "flux") -> dict[str, bytes]:
    """{chunk key: bytes} of a variable. (A write killed mid-chunk can leave zarr's temporary `<key>.<uuid>.partial`
    beside the chunk, which the rerun rewrites whole: not a chunk, left out.)"""
    return {str(p.relative_to(path / var)): p.read_bytes() for p in sorted((path / var / "c").rglob("*")) if p.is_file() and p.suffix != ".partial"}


def load(path) -> xr.Dataset:
    return xr.open_zarr(path, consolidated=False).load()


# -- draws ------------------------------------------------------------------------------------------
def test_the_shipped_example_is_the_shared_grids_prior_bit_for_bit():
    """configs/priors/tsgrid-lte.yaml draws exactly the labels of LabelPrior() (the default of `gridkit synth`), and
    the shared grid's labels lie inside its ranges."""
    prior = Prior.from_file(CONFIGS / "tsgrid-lte.yaml")
    a, b = prior.sample(400, seed=3), sample_labels(400, seed=3)
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(a[name], b[name])
    assert {k: v for k, v in prior.to_dict().items() if k != "name"} == {k: v for k, v in LabelPrior().to_prior().to_dict().items() if k != "name"}
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "tsgrid-lte" / "grid.zarr"
    if shared.is_dir():
        ds = xr.open_zarr(shared, consolidated=False)
        for name in ("teff", "logg", "feh", "vmic", "vbroad", "c_fe", "mn_fe", "li_fe"):
            lo, hi = prior.bounds(name)
            values = ds[name].values
            assert values.min() >= lo - 1e-3 and values.max() <= hi + 1e-3, name


def test_model_i_depends_only_on_seed_and_i_also_inside_a_coverage():
    """The first n models of 2n draws are the n models, with or without a coverage that rejects draws; a covered
    draw stays in its place; another seed gives other labels."""
    prior = Prior.from_file(TINY)
    small, big = prior.sample(50, seed=9), prior.sample(100, seed=9)
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(big[name][:50], small[name])
    assert not np.array_equal(prior.sample(50, seed=10)["teff"], small["teff"])

    def covers(labels):  # a hole in the middle of the dwarfs' Teff range
        return ~((labels["teff"] > 5600) & (labels["teff"] < 5900))

    inside_small, inside_big = prior.sample(50, seed=9, covers=covers), prior.sample(100, seed=9, covers=covers)
    assert covers(inside_big).all()
    kept = covers(small)
    assert 0 < kept.sum() < 50
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(inside_big[name][:50], inside_small[name])
        np.testing.assert_array_equal(inside_small[name][kept], small[name][kept])


def test_draws_respect_the_ranges_and_the_population_weights():
    """600 draws of the tiny prior: every label inside its population's range, fixed labels exact, [Fe/H] a
    normal truncated to [-1, 0.3], A(Li) stored as li_fe = A(Li) - A_sun - [Fe/H], and the clump fraction within
    3 binomial standard deviations of its weight 0.3."""
    prior = Prior.from_file(TINY)
    n = 600
    lab = prior.sample(n, seed=1, with_population=True)
    pop = lab["population"]
    frac = (pop == 1).mean()
    assert abs(frac - 0.3) < 3 * np.sqrt(0.3 * 0.7 / n)
    for k, p in enumerate(prior.populations):
        sel = pop == k
        for name, d in p.labels:
            values = (lab["li_fe"][sel] + A_LI_SUN + lab["feh"][sel]) if name == "a_li" else lab[name][sel]
            assert values.min() >= d.lo - 1e-12 and values.max() <= d.hi + 1e-12, (p.name, name)
            if d.kind == "fixed":
                assert np.all(values == d.lo)
    assert abs(lab["feh"].mean() - (-0.2)) < 0.05 and lab["feh"].std() < 0.3  # truncated: narrower than sigma
    assert lab["teff"][pop == 1].max() <= 5000 and lab["teff"][pop == 0].min() >= 5400


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["labels"].update(tau=[0, 1]), r"prior\.labels: unknown label\(s\) \['tau'\]; known: teff, logg"),
        (lambda d: d["populations"][0]["labels"].update(teff=[6200.0, 5400.0]), r"populations\[dwarfs\]\.labels\.teff\.uniform: min 6200 > max 5400"),
        (lambda d: d["populations"][1].update(weight=0.2), r"weights sum to 0.9 \(dwarfs 0.7, clump 0.2\); they must sum to 1"),
        (lambda d: d["labels"].pop("mn_fe"), r"populations\[dwarfs\]: no distribution for label\(s\) mn_fe"),
        (lambda d: d["labels"].update(feh={"gauss": [0, 1]}), r"prior\.labels\.feh: unknown distribution 'gauss'"),
        (lambda d: d["labels"].update(feh={"normal": {"mean": 0, "min": -1, "max": 1}}), r"labels\.feh\.normal needs exactly the keys"),
        (lambda d: d["labels"].update(li_fe=[0, 1]), r"lithium as a_li .* or li_fe .*, not both"),
        (lambda d: d["populations"][0]["labels"].update(vmic=[-1.0, 1.0]), r"populations\[dwarfs\]\.labels\.vmic: min -1 must be >= 0"),
        (lambda d: d.update(sigma=1), r"prior: unknown key\(s\) \['sigma'\]"),
    ],
)
def test_bad_priors_are_config_errors_naming_the_place(edit, match):
    import yaml

    data = yaml.safe_load(TINY.read_text())
    edit(data)
    with pytest.raises(ConfigError, match=match):
        Prior.from_dict(data)


def test_bad_prior_files_and_a_prior_outside_the_coverage(tmp_path):
    (tmp_path / "broken.yaml").write_text("labels: [teff\n")
    with pytest.raises(ConfigError, match=r"prior file .*broken.yaml is not valid YAML"):
        Prior.from_file(tmp_path / "broken.yaml")
    (tmp_path / "min-max.yaml").write_text(TINY.read_text().replace("teff: [4600.0, 5000.0]", "teff: [5000.0, 4600.0]"))
    with pytest.raises(ConfigError, match=r"prior min-max.yaml.populations\[clump\].labels.teff.uniform: min 5000 > max 4600"):
        Prior.from_file(tmp_path / "min-max.yaml")
    with pytest.raises(ConfigError, match=r"lies outside the coverage of the hot-stars model: 0 of 1000 draws fall inside it"):
        Prior.from_file(TINY).sample(5, seed=1, covers=lambda lab: lab["teff"] > 8000, coverage="the coverage of the hot-stars model")


# -- growing a store --------------------------------------------------------------------------------
def test_growing_keeps_the_first_models_and_equals_a_fresh_grid(tmp_path, backend):
    """5 models in regions of 4, then 10: the full region's chunks keep their bytes, the partial region's 5th model
    is read back (not recomputed: 5 + 5 models computed in all), and the grown grid equals a fresh one of 10."""
    grid = tmp_path / "grid.zarr"
    r1 = synthesize_prior(TINY, 5, 1, backend, grid, models_per_region=4, progress=False)
    assert r1.n_ok == 5 and r1.grown_from is None
    before, first = chunk_bytes(grid), load(grid)
    r2 = synthesize_prior(TINY, 10, 1, backend, grid, models_per_region=4, progress=False)
    assert r2.grown_from == 5 and r2.n_models == 10
    assert len(backend.calls) == 10  # 5, then only the 5 new ones
    after, grown = chunk_bytes(grid), load(grid)
    assert after["c/0/0"] == before["c/0/0"]  # region 0 untouched
    np.testing.assert_array_equal(grown.flux.values[:5], first.flux.values)  # bit for bit
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(grown[name].values[:5], first[name].values)
    synthesize_prior(TINY, 10, 1, backend, tmp_path / "fresh.zarr", models_per_region=4, progress=False)
    fresh = load(tmp_path / "fresh.zarr")
    assert chunk_bytes(tmp_path / "fresh.zarr") == after
    for name in grown.variables:
        np.testing.assert_array_equal(grown[name].values, fresh[name].values)
    assert open_grid(grid).sizes["model"] == 10  # complete, no chunk missing
    # the same command again resumes and computes nothing
    r3 = synthesize_prior(TINY, 10, 1, backend, grid, models_per_region=4, progress=False)
    assert r3.resumed and r3.grown_from is None and len(backend.calls) == 20  # 10 so far: this grid, then the fresh one


def test_another_prior_seed_size_or_region_is_refused_naming_what_differs(tmp_path, backend):
    import yaml

    grid = tmp_path / "grid.zarr"
    synthesize_prior(TINY, 4, 1, backend, grid, models_per_region=2, progress=False)
    with pytest.raises(StoreError, match=r"different job: seed 2 \(the store's: 1\)"):
        synthesize_prior(TINY, 8, 2, backend, grid, models_per_region=2, progress=False)
    data = yaml.safe_load(TINY.read_text())
    data["populations"][0]["weight"], data["populations"][1]["weight"] = 0.6, 0.4
    with pytest.raises(StoreError, match=r"the prior differs \(populations\[dwarfs\]\.weight: 0.6 vs the store's 0.7\)"):
        synthesize_prior(data, 8, 1, backend, grid, models_per_region=2, progress=False)
    with pytest.raises(StoreError, match=r"--chunk 4 \(the store's: 2\)"):
        synthesize_prior(TINY, 8, 1, backend, grid, models_per_region=4, progress=False)
    with pytest.raises(StoreError, match=r"the wavelength grid differs"):
        synthesize_prior(TINY, 8, 1, AnalyticSynthesizer(wavelength_range=WINDOW, step=0.1), grid, models_per_region=2, progress=False)
    with pytest.raises(StoreError, match=r"holds 4 models of this prior and seed; a grid only grows \(asked for 3\)"):
        synthesize_prior(TINY, 3, 1, backend, grid, models_per_region=2, progress=False)
    assert open_grid(grid).sizes["model"] == 4  # untouched by the refusals


KILLER = """
import os, sys
from gridkit.synth import AnalyticSynthesizer, synthesize_prior

class KillAt(AnalyticSynthesizer):
    def synthesize(self, labels):
        if labels["teff"] == {teff!r}:
            os.kill(os.getpid(), 9)  # SIGKILL while the grown grid's regions are computed
        return super().synthesize(labels)

synthesize_prior({prior!r}, 10, 1, KillAt(wavelength_range={window!r}, step=0.05), {out!r}, models_per_region=2, progress=False)
"""


def test_sigkill_during_growth_then_rerun_equals_a_fresh_run(tmp_path, backend):
    """3 -> 10 models (regions of 2: model 2 is kept in a partial region) killed (SIGKILL) at model 8, then the same
    command again: the grid equals one made in one go."""
    grid = tmp_path / "grid.zarr"
    synthesize_prior(TINY, 3, 1, backend, grid, models_per_region=2, progress=False)
    teff8 = float(Prior.from_file(TINY).sample(10, 1)["teff"][8])
    script = KILLER.format(teff=teff8, prior=str(TINY), window=WINDOW, out=str(grid))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == -9, proc.stderr[-2000:]
    with pytest.raises(StoreError, match="incomplete"):
        open_grid(grid)
    synthesize_prior(TINY, 10, 1, backend, grid, models_per_region=2, progress=False)
    synthesize_prior(TINY, 10, 1, backend, tmp_path / "fresh.zarr", models_per_region=2, progress=False)
    assert chunk_bytes(grid) == chunk_bytes(tmp_path / "fresh.zarr")
    a, b = load(grid), load(tmp_path / "fresh.zarr")
    for name in b.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_growth_interrupted_while_resizing_is_finished_by_the_rerun(tmp_path, backend, monkeypatch):
    """An interruption between resizing two arrays leaves a store that the rerun (same n) finishes; another n is
    refused until then; the result equals a fresh grid."""
    grid = tmp_path / "grid.zarr"
    synthesize_prior(TINY, 3, 1, backend, grid, models_per_region=2, progress=False)
    real, calls = zarr.Array.resize, []

    def flaky(self, shape):
        calls.append(shape)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed while growing")
        return real(self, shape)

    monkeypatch.setattr(zarr.Array, "resize", flaky)
    with pytest.raises(KeyboardInterrupt):
        synthesize_prior(TINY, 7, 1, backend, grid, models_per_region=2, progress=False)
    monkeypatch.setattr(zarr.Array, "resize", real)
    with pytest.raises(StoreError, match=r"was being grown to 7 models when it was interrupted; rerun with --n-models 7"):
        synthesize_prior(TINY, 9, 1, backend, grid, models_per_region=2, progress=False)
    report = synthesize_prior(TINY, 7, 1, backend, grid, models_per_region=2, progress=False)
    assert report.n_ok == 7
    synthesize_prior(TINY, 7, 1, backend, tmp_path / "fresh.zarr", models_per_region=2, progress=False)
    assert chunk_bytes(grid) == chunk_bytes(tmp_path / "fresh.zarr")
    a, b = load(grid), load(tmp_path / "fresh.zarr")
    for name in b.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_cli_grows_a_grid_and_merges_pieces(tmp_path, capsys):
    """`gridkit synth --prior P --n-models N` then a larger N grows the grid; `gridkit merge-grids` joins two pieces
    drawn with other seeds, refuses the same piece twice and a piece on another wavelength grid."""
    common = ["synth", "--prior", str(TINY), "--wavelength-range", "6700", "6712", "--step", "0.05", "--chunk", "2", "--no-progress"]
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    assert main([*common, "--n-models", "3", "--seed", "1", "--out", str(a)]) == 0
    assert main([*common, "--n-models", "5", "--seed", "1", "--out", str(a)]) == 0
    assert "grown from 3 to 5 models (the first 3 kept)" in capsys.readouterr().out
    assert main([*common, "--n-models", "5", "--seed", "2", "--out", str(a)]) == 2
    assert "seed 2 (the store's: 1)" in capsys.readouterr().err
    assert main([*common, "--n-models", "4", "--seed", "2", "--out", str(b)]) == 0
    merged = tmp_path / "merged.zarr"
    assert main(["merge-grids", str(a), str(b), "--out", str(merged), "--no-progress"]) == 0
    assert "9 models from 2 grids" in capsys.readouterr().out
    m, ga, gb = open_grid(merged), open_grid(a), open_grid(b)
    np.testing.assert_array_equal(m.flux.values, np.concatenate([ga.flux.values, gb.flux.values]))
    np.testing.assert_array_equal(m.teff.values, np.concatenate([ga.teff.values, gb.teff.values]))
    assert list(m.source.values) == [0] * 5 + [1] * 4 and list(m.source_model.values) == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    assert list(m.model.values) == list(range(9))
    assert main(["merge-grids", str(a), str(a), "--out", str(tmp_path / "twice.zarr"), "--no-progress"]) == 2
    assert "5 label set(s) appear more than once, e.g. model 0 of" in capsys.readouterr().err
    other = tmp_path / "other.zarr"
    assert main([*common[:4], "6700", "6712", "--step", "0.1", "--n-models", "2", "--seed", "3", "--out", str(other), "--no-progress"]) == 0
    with pytest.raises(GridError, match=r"has another wavelength grid \(121 points"):
        merge_grids([a, other])
    recipe = open_grid(b).assign_attrs(generator="somebody else")
    with pytest.raises(GridError, match=r"another recipe than .*a.zarr \(attr 'generator'"):
        merge_grids([a, recipe])
    assert not (tmp_path / "twice.zarr").exists()
    # --keep-ids: the inputs' ids stay (a network's recorded split keeps naming its models); shared ids are refused
    assert main(["merge-grids", str(a), str(b), "--keep-ids", "--out", str(tmp_path / "kept.zarr"), "--no-progress"]) == 2
    assert "keep_ids: 4 model id(s) appear in more than one input" in capsys.readouterr().err
    assert not (tmp_path / "kept.zarr").exists()
    shifted = open_grid(b).assign_coords(model=open_grid(b).model + 100)
    kept = merge_grids([a, shifted], tmp_path / "kept.zarr", keep_ids=True)
    assert list(kept.model.values) == [0, 1, 2, 3, 4, 100, 101, 102, 103]
    assert list(kept.source_model.values) == [0, 1, 2, 3, 4, 100, 101, 102, 103]
    np.testing.assert_array_equal(kept.flux.values, m.flux.values)


# -- Turbospectrum: the acceptance test ------------------------------------------------------------------
@pytest.mark.turbospectrum
def test_turbospectrum_grid_grows_from_2_to_4_models(tmp_path):
    """The tiny prior with the Turbospectrum backend (6707-6709 A at 0.05 A), regions of 3: 2 models, then 4. The
    first 2 keep their flux bit for bit and are not recomputed (read back from the partial region), every model
    lies inside the prior's ranges and the MARCS coverage and was synthesized, and Li 6708 is there."""
    from gridkit.synth.turbospectrum import ENV_HOME, PROGRAMS, TurbospectrumSynthesizer, default_home

    missing = [p for p in PROGRAMS if not os.access(default_home() / "bin" / p, os.X_OK)]
    if missing:  # as tests/synth/test_turbospectrum.py: a home named explicitly must be built
        message = f"Turbospectrum programs {missing} not built in {default_home()}: run `make turbospectrum`"
        if os.environ.get(ENV_HOME):
            pytest.fail(f"{ENV_HOME} is set but {message}")
        pytest.skip(message)

    class CountingTS(TurbospectrumSynthesizer):
        def synthesize(self, labels):
            self.calls.append(labels["teff"])
            return super().synthesize(labels)

    syn = CountingTS([(6707.0, 6709.0)], 0.05)
    syn.calls = []
    grid = tmp_path / "ts.zarr"
    r1 = synthesize_prior(TINY, 2, 7, syn, grid, models_per_region=3, progress=False)
    assert r1.n_ok == 2
    first = load(grid)
    r2 = synthesize_prior(TINY, 4, 7, syn, grid, models_per_region=3, progress=False)
    assert r2.grown_from == 2 and r2.n_ok == 4, r2.not_ok
    assert len(syn.calls) == 4  # 2 + the 2 new ones
    grown = load(grid)
    np.testing.assert_array_equal(grown.flux.values[:2], first.flux.values)
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(grown[name].values[:2], first[name].values)
    prior = Prior.from_file(TINY)
    for name in LABEL_NAMES:
        lo, hi = prior.bounds(name)
        assert np.all((grown[name].values >= lo) & (grown[name].values <= hi)), name
    assert syn.covers({k: grown[k].values for k in LABEL_NAMES}).all()
    assert np.all(grown.status.values == 0) and np.isfinite(grown.flux.values).all()
    assert grown.flux.values.min() < 0.99  # real lines (Li 6708, Fe I 6707.4) in the window
