"""Ensembles (`cinn.ensemble`, `gridkit ensemble`): the equal-weight mixture of networks of one training set, used
like one model: each member makes its share of the draws, every draw gets the mixture's density, the draws do not
depend on the chunking, and an ensemble is calibrated, inferred with and evaluated like a model directory; members
that cannot be mixed, or changed since, are refused by name."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr

import cinn
from cinn.checkpoint import ModelDirError
from cinn.ensemble import Ensemble, load_ensemble, write_ensemble
from gridkit.errors import ConfigError


@pytest.fixture(scope="module")
def second(toy_cube, tiny_config, tmp_path_factory):
    """A second network of the same data and split: other seeds."""
    out = tmp_path_factory.mktemp("ens") / "second"
    cinn.train(toy_cube, out, config={**tiny_config, "seed": 1, "init_seed": 1, "epochs": 3}, progress=False)
    return out


@pytest.fixture(scope="module")
def ensemble(trained, second, tmp_path_factory):
    return write_ensemble([trained, second], tmp_path_factory.mktemp("ens") / "ensemble")


@pytest.fixture(scope="module")
def some(toy_cube):
    ds = xr.open_zarr(toy_cube, consolidated=False).isel(model=slice(0, 6), snr=1)
    return ds.flux.values, np.full(6, float(ds.snr)), np.stack([ds[n].values for n in ("teff", "logg", "feh")], axis=1)


def test_each_member_makes_its_share_and_every_draw_gets_the_mixture_density(ensemble, some):
    flux, snr, _ = some
    ens = cinn.load(ensemble)
    assert isinstance(ens, Ensemble) and len(ens.members) == 2 and ens.model_id.startswith("ens-")
    samples, log_q = ens.sample(flux, snr, n=64, seed=3, return_log_q=True)
    values, s = ens.check_inputs(flux, snr)
    keys = np.arange(6)
    shares = [(0, 32), (32, 64)]
    own = {}
    for k, (a, b) in enumerate(shares):  # member k's draws: its own latents rng_for(seed, key, k)
        y, own[k] = ens.members[k]._sample_flow(values, s, keys, 32, 3, (k,))
        np.testing.assert_array_equal(samples[:, a:b], ens.label_transform.inverse(y))
    y_all, lq_flow = ens._sample_flow(values, s, keys, 64, 3)
    np.testing.assert_array_equal(lq_flow, log_q)
    # every draw's density: under its own member that of the sampling pass, under the other member its forward pass
    expected = np.empty((2, 6, 64))
    for k, (a, b) in enumerate(shares):
        expected[k, :, a:b] = own[k]
        other = slice(*shares[1 - k])
        expected[k, :, other] = ens.members[k]._log_q(values, s, y_all[:, other])
    np.testing.assert_array_equal(log_q, (np.logaddexp(expected[0], expected[1]) - np.log(2)).astype(np.float32))
    # which is log of the mean of the members' densities, each by its forward pass, to float32 rounding
    per = np.stack([m._log_q(values, s, y_all).astype(np.float64) for m in ens.members])
    np.testing.assert_allclose(log_q, np.log(np.exp(per).mean(axis=0)), rtol=1e-5, atol=1e-5)
    # and in physical units, log_prob is that of the mixture of the members' log_prob
    lab = samples[:, :5]
    lp = ens.log_prob(lab, flux, snr)
    np.testing.assert_allclose(lp, np.log(np.mean([np.exp(m.log_prob(lab, flux, snr)) for m in ens.members], axis=0)), rtol=1e-6, atol=1e-6)
    # the mixture differs from either member alone (the test could fail)
    assert not np.allclose(per[0], per[1], atol=0.1)


def test_summaries_do_not_depend_on_the_chunking_and_the_map_is_the_densest_draw_in_bounds(ensemble, some):
    flux, snr, _ = some
    ens = cinn.load(ensemble)
    whole = ens.summarize(flux, snr, n=64, seed=2, keys=np.arange(10, 16))
    halves = [ens.summarize(flux[i:i + 3], snr[i:i + 3], n=64, seed=2, keys=np.arange(10 + i, 13 + i)) for i in (0, 3)]
    for name in ("teff", "teff_quantiles", "f_reject"):
        np.testing.assert_array_equal(whole[name].values, np.concatenate([h[name].values for h in halves]))
    samples, log_q = ens.sample(flux, snr, n=64, seed=2, keys=np.arange(10, 16), return_log_q=True)
    np.testing.assert_array_equal(ens.map_estimate(samples, log_q)[:, 0], whole.teff.values)


def test_an_ensemble_is_calibrated_inferred_with_and_evaluated_like_a_model(ensemble, toy_cube, tmp_path):
    import catalogs
    from cinn.evaluate.report import evaluate, fit_interval_calibration
    from cinn.survey import infer, mock_survey

    work = tmp_path / "ensemble"
    shutil.copytree(ensemble, work)
    ens_json = json.loads((ensemble / "ensemble.json").read_text())
    for m in ens_json["members"]:  # the copy refers to the same members
        m["path"] = str((ensemble / m["path"]).resolve())
    (work / "ensemble.json").write_text(json.dumps(ens_json))
    cal = fit_interval_calibration(work, toy_cube, split="validation", samples=64)
    ens = cinn.load(work)
    assert ens.calibration is not None and cal.model_id == ens.model_id
    survey = mock_survey(toy_cube, tmp_path / "s.zarr", snr=60.0, models=cinn.read_split(work)["test"][:40])
    cat = catalogs.open(infer(work, survey, tmp_path / "cat.zarr", samples=64, chunk=20, progress=False))
    assert cat.attrs["model_id"] == ens.model_id and json.loads(cat.attrs["interval_calibration"])["n_spectra"] == cal.n_spectra
    direct = ens.summarize(xr.open_zarr(survey, consolidated=False).flux.values, np.full(40, 60.0), n=64, keys=np.arange(40))
    np.testing.assert_allclose(cat.teff_quantiles.values, direct.teff_quantiles.values.astype(np.float32))
    paths = evaluate(work, toy_cube, tmp_path / "report", samples=64, split="test", snr=[60.0], saliency=False, max_spectra=30)
    assert "coverage_ecsv" in paths


def test_the_saliency_of_an_ensemble_is_the_mean_of_its_members(ensemble, some):
    from cinn.evaluate.saliency import mean_label_gradients

    flux, snr, _ = some
    ens = cinn.load(ensemble)
    g, mu = mean_label_gradients(ens, flux[:2], snr[:2], n_latent=4)
    parts = [mean_label_gradients(m, flux[:2], snr[:2], n_latent=4) for m in ens.members]
    np.testing.assert_allclose(g, (parts[0][0] + parts[1][0]) / 2, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(mu, (parts[0][1] + parts[1][1]) / 2)


def test_members_that_cannot_be_mixed_are_refused_by_name(trained, second, toy_cube, tiny_config, tmp_path):
    other = tmp_path / "margin"
    cinn.train(toy_cube, other, config={**tiny_config, "epochs": 1, "batches_per_epoch": 2, "label_margin": 0.05}, progress=False)
    with pytest.raises(ConfigError, match="label transform"):
        write_ensemble([trained, other], tmp_path / "e1")
    with pytest.raises(ConfigError, match="at least two"):
        write_ensemble([trained], tmp_path / "e2")
    with pytest.raises(ConfigError, match="given twice"):
        write_ensemble([trained, trained], tmp_path / "e3")
    with pytest.raises(ConfigError, match="never writes over its inputs"):
        write_ensemble([trained, second], trained / "ensemble")
    made = write_ensemble([trained, second], tmp_path / "e4")
    with pytest.raises(ConfigError, match="itself an ensemble"):
        write_ensemble([made, trained], tmp_path / "e5")
    with pytest.raises(ConfigError, match="exists"):
        write_ensemble([second, trained], made)
    before = cinn.load(made).model_id
    write_ensemble([second, trained], made, overwrite=True)  # the order is part of the ensemble (draws are made in it)
    assert cinn.load(made).model_id != before
    assert not list(tmp_path.glob(".e4*"))  # nothing staged is left behind


def test_a_member_that_changed_since_is_refused(trained, second, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(trained, a)
    shutil.copytree(second, b)
    ens = write_ensemble([a, b], tmp_path / "ens")
    assert load_ensemble(ens).model_id == cinn.load(ens).model_id
    shutil.rmtree(b)
    shutil.copytree(trained, b)  # b now holds another network
    with pytest.raises(ModelDirError, match="rebuild the ensemble"):
        cinn.load(ens)
    shutil.rmtree(b)
    with pytest.raises(ModelDirError, match="does not exist"):
        cinn.load(ens)


def test_the_single_network_loader_names_an_ensemble_directory(ensemble):
    from cinn.posterior import load as load_one

    with pytest.raises(ModelDirError, match="ensemble of model directories: load it with cinn.load"):
        load_one(ensemble)


def test_the_command_line_writes_an_ensemble(trained, second, tmp_path, capsys):
    from gridkit.cli import main

    assert main(["ensemble", str(trained), str(second), "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert cinn.load(tmp_path / "e").model_id in out and "calibrate-intervals" in out
