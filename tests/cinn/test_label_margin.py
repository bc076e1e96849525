"""Labels learnt through a logit of their widened training range (`label_margin`): the transform is exact (inverse,
Jacobian, densities that integrate to one), round-trips through model.json, keeps every draw inside the widened range,
and old models (no logit) load unchanged."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cinn
from cinn.config import CINNConfig
from cinn.transforms import LabelTransform
from gridkit.errors import ConfigError

NAMES = ("teff", "c_fe", "vbroad")


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(0)
    return np.column_stack([rng.uniform(4000, 7000, 400), rng.uniform(-0.5, 0.5, 400), rng.uniform(1, 25, 400)])


@pytest.fixture(scope="module", params=[None, 0.05], ids=["no-logit", "margin-0.05"])
def transform(request, labels):
    return LabelTransform.fit(labels, NAMES, ("teff", "vbroad"), 0.1, request.param)


def test_forward_and_inverse_are_each_others_inverse_and_targets_are_standardized(transform, labels):
    y = transform.forward(labels)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(transform.inverse(y), labels, rtol=1e-12)
    in_torch = transform.inverse_torch(torch.from_numpy(y[:50].astype(np.float32))).numpy()
    assert np.all(np.abs(in_torch - labels[:50]) <= 2e-6 * np.abs(labels[:50]) + 1e-6 * np.ptp(labels, axis=0))  # float32


def test_log_abs_det_is_the_log_of_the_jacobian(transform, labels):
    x = labels[:20]
    numeric = np.zeros(len(x))
    for i, step in enumerate((0.01, 1e-5, 1e-4)):
        e = np.zeros(3)
        e[i] = step
        numeric += np.log(np.abs((transform.forward(x + e)[:, i] - transform.forward(x - e)[:, i]) / (2 * step)))
    np.testing.assert_allclose(transform.log_abs_det_forward(x), numeric, rtol=1e-6, atol=1e-6)


def test_a_normal_density_in_y_is_a_normalised_density_in_physical_units(labels):
    """N(0, 1) in every target mapped to physical units with the Jacobian integrates to one over the label's support
    (the logit's support with a margin), e.g. log_prob of the posterior is a density of the physical label."""
    lt = LabelTransform.fit(labels[:, 1:2], ("c_fe",), (), 0.1, 0.05)
    x = np.linspace(lt.lower[0], lt.upper[0], 400_001)[1:-1, None]
    dens = np.exp(-0.5 * lt.forward(x)[:, 0] ** 2) / np.sqrt(2 * np.pi) * np.exp(lt.log_abs_det_forward(x))
    assert abs(np.trapezoid(dens, x[:, 0]) - 1.0) < 1e-4
    # beyond the support: no density, and a finite (clipped) target so a validation loss stays finite
    out = np.array([[lt.upper[0] + 0.1], [lt.lower[0] - 0.1]])
    assert np.all(np.isfinite(lt.forward(out))) and np.all(lt.log_abs_det_forward(out) == -np.inf)


def test_every_target_maps_into_the_widened_training_range(labels):
    lt = LabelTransform.fit(labels, NAMES, ("teff", "vbroad"), 0.1, 0.05)
    lo, hi = labels.min(axis=0), labels.max(axis=0)
    # the support: the training range widened by 5 % of it on each side (log10 range for the log labels)
    lg = np.array([True, False, True])
    base_lo, base_hi = lo.copy(), hi.copy()
    base_lo[lg], base_hi[lg] = np.log10(lo[lg]), np.log10(hi[lg])
    np.testing.assert_allclose(lt.lower, base_lo - 0.05 * (base_hi - base_lo))
    np.testing.assert_allclose(lt.upper, base_hi + 0.05 * (base_hi - base_lo))
    phys = lt.inverse(np.array([[-1e6] * 3, [-5.0] * 3, [0.0] * 3, [5.0] * 3, [1e6] * 3]))
    support = np.where(lg, 10.0 ** np.stack([lt.lower, lt.upper]), np.stack([lt.lower, lt.upper]))
    assert np.all(np.isfinite(phys))
    np.testing.assert_allclose(phys[[0, -1]], support, rtol=1e-12)  # the ends of the support, not beyond
    assert np.all(phys[1] > support[0]) and np.all(phys[3] < support[1])
    assert np.all(phys[2] > lo) and np.all(phys[2] < hi)


def test_json_round_trip_and_models_without_a_logit_load_as_before(transform, labels):
    back = LabelTransform.from_json(json.loads(json.dumps(transform.to_json())))
    np.testing.assert_array_equal(back.forward(labels), transform.forward(labels))
    old = {k: v for k, v in transform.to_json().items() if not k.startswith("logit_")}
    assert LabelTransform.from_json(old).lower is None
    assert ("logit_lower" in transform.to_json()) == (transform.lower is not None)


@pytest.mark.parametrize("bad", [0, -0.1, float("inf"), True, "0.05"])
def test_a_bad_margin_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match="label_margin"):
        CINNConfig(label_margin=bad)


def test_a_label_with_one_value_cannot_take_a_logit():
    lab = np.column_stack([np.linspace(0, 1, 10), np.full(10, 0.2)])
    with pytest.raises(ConfigError, match=r"label_margin.*\['b'\]"):
        LabelTransform.fit(lab, ("a", "b"), (), 0.1, 0.05)


@pytest.fixture(scope="module")
def margin_model(toy_cube, tiny_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("margin") / "model"
    cinn.train(toy_cube, out, config={**tiny_config, "label_margin": 0.05, "epochs": 4}, progress=False)
    return out


def test_a_trained_model_keeps_every_draw_in_the_widened_range(margin_model, toy_cube):
    import xarray as xr

    post = cinn.load(margin_model)
    lt = post.label_transform
    assert lt.lower is not None and json.loads((margin_model / "model.json").read_text())["config"]["label_margin"] == 0.05
    cube = xr.open_zarr(toy_cube, consolidated=False)
    flux = cube.flux.isel(model=slice(0, 8), snr=0).values
    snr = np.full(8, float(cube.snr.values[0]))
    s, lq = post.sample(flux, snr, n=512, seed=3, return_log_q=True)
    support = np.where(lt.log, 10.0 ** np.stack([lt.lower, lt.upper]), np.stack([lt.lower, lt.upper]))
    assert np.all(s >= support[0] * (1 - 1e-9)) and np.all(s <= support[1] * (1 + 1e-9))
    # log_prob in physical units = the sampler's flow density + the logit's Jacobian (the one transform both use);
    # below log_floor a log label's transform is flat and its density undefined (the toy has vbroad = 0 models)
    lp = post.log_prob(s[:2], flux[:2], snr[:2])
    defined = np.all(s[:2][..., lt.log] > lt.floor, axis=-1)
    assert defined.mean() > 0.5
    np.testing.assert_allclose(lp[defined], (lq[:2] + lt.log_abs_det_forward(s[:2]))[defined], atol=2e-3)
    ds = post.summarize(flux, snr, n=512, seed=3)
    assert np.all(np.isfinite(ds.teff.values)) and np.all((ds.f_reject.values >= 0) & (ds.f_reject.values < 1))


def test_the_logged_validation_nll_in_physical_units_is_the_change_of_variables(margin_model, toy_cube, tiny_config):
    """log.csv's val_nll_physical = the flow's NLL less log |dy/dlabel|, here with the Jacobian of the label transform
    (log10 + logit + standardisation) taken by finite differences, on the validation batches the training scored."""
    import csv
    import itertools
    import math

    from cinn.checkpoint import MODEL_WEIGHTS, load_tensors
    from cinn.train import Trainer

    cfg = CINNConfig.from_dict({**tiny_config, "label_margin": 0.05, "epochs": 4})
    trainer = Trainer(toy_cube, margin_model.parent / "rescore", cfg, progress=False)
    with open(margin_model / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    meta = json.loads((margin_model / "model.json").read_text())
    best = next(r for r in rows if int(r["epoch"]) == meta["training"]["best_epoch"])
    weights = load_tensors(margin_model / MODEL_WEIGHTS, meta["files"][MODEL_WEIGHTS], "model.json")
    trainer.model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("_gridkit.")})  # not its arrays
    nll, _, physical = trainer.validate()
    assert nll == pytest.approx(float(best["val_nll"]), abs=1e-5)
    assert physical == pytest.approx(float(best["val_nll_physical"]), abs=1e-5)

    lt, d = trainer.ltf, len(cfg.labels)
    n_batches = max(1, math.ceil(cfg.val_samples / cfg.batch_size))
    tot_nll = tot_logjac = 0.0
    n = 0
    trainer.model.eval()
    for x, cond in itertools.islice(trainer.stream("validation", epoch=-1, shuffle=False), n_batches):
        with torch.no_grad():
            batch_nll, _ = trainer.losses(x, cond, None)
        lab = lt.inverse(x.numpy())
        # forward differences: vbroad = 0 models sit at log_floor, where the transform's slope is its right-hand one
        h = 1e-5 * np.maximum(np.abs(lab), 1.0)
        dy = np.stack([(lt.forward(lab + h * e)[:, i] - lt.forward(lab)[:, i]) / h[:, i] for i, e in enumerate(np.eye(d))],
                      axis=1)  # the transform acts label by label
        tot_nll += float(batch_nll) * x.shape[0]
        tot_logjac += float(np.log(np.abs(dy)).sum())
        n += x.shape[0]
    assert physical == pytest.approx((tot_nll - tot_logjac / d) / n, abs=2e-3)
    assert abs(physical - nll) > 0.2  # the logit and the standardisation move the NLL: the columns differ


def test_evaluate_scores_the_truths_with_a_density_and_counts_the_others(margin_model, toy_cube, tmp_path):
    """nll.csv of a margin network on the toy cube (which has vbroad = 0 models): a truth at or below log_floor, or
    outside the logit's support, has no density and is counted in n_undefined; the others' mean is log_prob's."""
    import csv

    import xarray as xr

    from cinn.evaluate.report import evaluate

    post = cinn.load(margin_model)
    lt = post.label_transform
    evaluate(margin_model, toy_cube, tmp_path / "report", samples=32, saliency=False, calibrated=False)
    cube = xr.open_zarr(toy_cube, consolidated=False)
    sub = cube.sel(model=cinn.read_split(margin_model)["test"])
    truth = np.stack([sub[n].values.astype(np.float64) for n in post.label_names], axis=1)
    support = np.where(lt.log, 10.0 ** np.stack([lt.lower, lt.upper]), np.stack([lt.lower, lt.upper]))
    defined = np.all(~lt.log | (truth > lt.floor), axis=1) & np.all((truth > support[0]) & (truth < support[1]), axis=1)
    assert 0 < defined.sum() < defined.size  # both kinds are in the test split
    with open(tmp_path / "report" / "nll.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        snr = float(row["snr"])
        assert int(row["n_undefined"]) == int((~defined).sum())
        lp = post.log_prob(truth[defined], sub.flux.sel(snr=snr).values[defined], np.full(int(defined.sum()), snr))
        assert float(row["nll"]) == pytest.approx(-lp.mean() / truth.shape[1], rel=1e-6)
