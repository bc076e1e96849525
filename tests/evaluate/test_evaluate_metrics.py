"""The evaluation metrics against truth computed by hand or known in closed form.

Calibration is checked on an exactly calibrated toy: a Gaussian prior theta ~ N(0, 1), one observation
x ~ N(theta, s^2); the exact posterior is N(x / (1 + s^2), s^2 / (1 + s^2)). Sampling it gives uniform SBC
ranks and nominal coverage; a posterior that is too narrow gives U-shaped ranks and low coverage.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cinn.evaluate import metrics
from gridkit.errors import ConfigError


def test_residual_mean_and_sigma_by_hand():
    pred = np.array([[1.0, 10.0], [2.0, 10.0], [4.0, 13.0]])
    truth = np.array([[0.0, 10.0], [1.0, 10.0], [2.0, 10.0]])
    mean, sigma = metrics.residual_stats(pred, truth)
    # residuals: column 0 -> 1, 1, 2 ; column 1 -> 0, 0, 3
    assert mean == pytest.approx([4 / 3, 1.0])
    assert sigma[0] == pytest.approx(np.sqrt(((1 - 4 / 3) ** 2 * 2 + (2 - 4 / 3) ** 2) / 2))
    assert sigma[1] == pytest.approx(np.sqrt((1 + 1 + 4) / 2))


def test_residual_stats_ignore_nan_and_one_star_has_nan_sigma():
    mean, sigma = metrics.residual_stats([1.0, np.nan, 3.0], [0.0, 0.0, 0.0])
    assert mean == pytest.approx(2.0) and sigma == pytest.approx(np.sqrt(2.0))
    _, sigma1 = metrics.residual_stats([1.0], [0.0])
    assert np.isnan(sigma1)


def test_nrmse_is_rmse_over_the_range_of_the_truths():
    truth = np.array([4000.0, 5000.0, 6000.0, 7000.0])
    pred = truth + np.array([100.0, -100.0, 100.0, -100.0])
    assert metrics.nrmse(pred, truth) == pytest.approx(100.0 / 3000.0)
    assert metrics.nrmse(pred, truth, scale=1000.0) == pytest.approx(0.1)
    # a label whose truths are all equal has no range: NaN, not inf
    assert np.isnan(metrics.nrmse([1.0, 2.0], [1.0, 1.0]))


def test_nrmse_is_invariant_to_units():
    rng = np.random.default_rng(1)
    truth = rng.uniform(4000, 7000, 200)
    pred = truth + rng.normal(0, 50, 200)
    assert metrics.nrmse(pred, truth) == pytest.approx(metrics.nrmse(pred / 1000, truth / 1000))


def test_shape_mismatch_names_the_shapes():
    with pytest.raises(ConfigError, match=r"\(3,\) and \(2,\)"):
        metrics.residual_stats([1, 2, 3], [1, 2])
    with pytest.raises(ConfigError, match="level"):
        metrics.central_interval(np.zeros((2, 5)), 1.5)
    with pytest.raises(ConfigError, match="upper must be >= lower"):
        metrics.interval_width([1.0, 2.0], [2.0, 1.0])


def test_central_interval_of_a_gaussian():
    rng = np.random.default_rng(0)
    s = rng.normal(3.0, 2.0, size=(4, 200_000))
    lo, hi = metrics.central_interval(s, 0.6827)
    assert lo == pytest.approx(np.full(4, 1.0), abs=0.03)
    assert metrics.interval_width(lo, hi) == pytest.approx(np.full(4, 4.0), abs=0.05)


def _gaussian_toy(n_star=2000, n_samples=400, s=0.5, width_factor=1.0, seed=0, n_label=2):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n_star, n_label))
    x = theta + rng.normal(scale=s, size=theta.shape)
    mu = x / (1 + s**2)
    sd = np.sqrt(s**2 / (1 + s**2)) * width_factor
    samples = mu[:, None, :] + sd * rng.normal(size=(n_star, n_samples, n_label))
    return samples, theta


def test_coverage_of_an_exactly_calibrated_gaussian_posterior_is_nominal():
    samples, theta = _gaussian_toy()
    levels = (0.5, 0.68, 0.9, 0.95)
    cov = metrics.coverage(samples, theta, levels)
    assert cov.shape == (4, 2)
    tol = 4 * metrics.coverage_error(np.array(levels), theta.shape[0])[:, None] + 0.01
    assert np.all(np.abs(cov - np.array(levels)[:, None]) < tol)
    # the same from ranks
    ranks = metrics.sbc_ranks(samples, theta)
    assert np.allclose(metrics.coverage_from_ranks(ranks, samples.shape[1], levels), cov, atol=0.02)


def test_the_chance_of_a_calibrated_coverage_within_a_tolerance_is_the_binomial_mass():
    # 10 stars at 50 % +- 0.1: 4, 5 or 6 inside, (210 + 252 + 210) / 1024
    assert metrics.coverage_within_probability(0.5, 10, 0.1) == pytest.approx(672 / 1024, rel=1e-12)
    # the acceptance's 68 % +- 0.05 over a 161-model test split, against simulated calibrated test sets
    k = np.random.default_rng(0).binomial(161, 0.68, size=200_000)
    simulated = np.mean(np.abs(k / 161 - 0.68) <= 0.05)
    assert metrics.coverage_within_probability(0.68, 161, 0.05) == pytest.approx(simulated, abs=0.005)
    assert 0.80 < simulated < 0.85


def test_the_exact_posterior_has_the_lowest_nll_and_its_value_is_the_closed_form():
    """-log p(truth) / n_label of the Gaussian toy's exact posterior: its expectation is the posterior's entropy per label,
    0.5 log(2 pi e v), v = s^2 / (1 + s^2); too narrow, too wide or shifted posteriors score worse (a proper score)."""
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    s, n = 0.5, 20000
    theta = rng.normal(size=(n, 2))
    x = theta + rng.normal(scale=s, size=theta.shape)
    mu, sd = x / (1 + s**2), np.sqrt(s**2 / (1 + s**2))

    def score(width=1.0, shift=0.0):
        return metrics.nll_per_label(norm.logpdf(theta, mu + shift, sd * width).sum(axis=1), 2)

    exact = score()
    assert exact["nll"] == pytest.approx(0.5 * np.log(2 * np.pi * np.e * sd**2), abs=3 * exact["nll_error"])
    assert exact["n_undefined"] == 0 and 0 < exact["nll_error"] < 0.01
    for other in (score(width=0.7), score(width=1.4), score(shift=0.2)):
        assert other["nll"] > exact["nll"] + 5 * exact["nll_error"]


def test_nll_counts_the_spectra_without_a_density():
    out = metrics.nll_per_label(np.array([-2.0, np.nan, -4.0, -np.inf]), 2)
    assert out == {"nll": 1.5, "nll_error": pytest.approx(np.std([1.0, 2.0], ddof=1) / np.sqrt(2)), "nll_median": 1.5, "n_undefined": 2}
    with pytest.raises(ConfigError, match="log_prob must be"):
        metrics.nll_per_label(np.zeros((2, 2)), 2)


def test_overconfident_posterior_undercovers_and_underconfident_overcovers():
    narrow, theta = _gaussian_toy(width_factor=0.5)
    wide, _ = _gaussian_toy(width_factor=2.0)
    assert np.all(metrics.coverage(narrow, theta, [0.68]) < 0.5)
    assert np.all(metrics.coverage(wide, theta, [0.68]) > 0.9)


def test_sbc_ranks_are_uniform_for_a_calibrated_toy_and_not_for_a_biased_one():
    samples, theta = _gaussian_toy()
    ranks = metrics.sbc_ranks(samples, theta)
    assert ranks.min() >= 0 and ranks.max() <= samples.shape[1]
    _, p = metrics.rank_uniformity(ranks, samples.shape[1], n_bins=20)
    assert np.all(p > 1e-3)
    biased = samples + 0.5
    _, p_biased = metrics.rank_uniformity(metrics.sbc_ranks(biased, theta), samples.shape[1], n_bins=20)
    assert np.all(p_biased < 1e-6)


def test_sbc_rank_by_hand():
    samples = np.array([[0.0, 1.0, 2.0, 3.0], [5.0, 6.0, 7.0, 8.0]])
    assert metrics.sbc_ranks(samples, np.array([2.5, 4.0])).tolist() == [3, 0]


def test_sbc_ranks_among_the_draws_in_bounds():
    samples = np.array([[0.0, 1.0, 2.0, 3.0], [5.0, 6.0, 7.0, 8.0]])
    every = np.ones((2, 4), bool)
    assert metrics.sbc_ranks(samples, np.array([2.5, 4.0]), every).tolist() == [3, 0]  # all counted: the plain rank
    # star 0 counts draws 1 and 2 only: the truth 2.5 is above both (rank 2 of {0, 1, 2}), on the 0..4 scale floor(2 * 5 / 3) = 3
    some = np.array([[False, True, True, False], [True] * 4])
    assert metrics.sbc_ranks(samples, np.array([2.5, 4.0]), some).tolist() == [3, 0]
    assert metrics.sbc_ranks(samples, np.array([1.5, 4.0]), some).tolist() == [1, 0]
    with pytest.raises(ConfigError, match="in_bounds"):
        metrics.sbc_ranks(samples, np.array([2.5, 4.0]), some[:, :3])


def test_ranks_among_the_draws_in_bounds_are_those_of_the_truncated_posterior():
    """theta ~ U(-1, 1), x ~ N(theta, 0.5): the posterior is N(x, 0.5) truncated to [-1, 1]. A flow's draws are such
    exact posterior draws plus tails beyond the bounds (here 30 % of them, spread over 1 < |draw| < 3). Counting the
    draws in bounds (the published rejection), the ranks are uniform; counting all, the truths never rank among the
    tails and the ranks are not."""
    from scipy import stats

    rng = np.random.default_rng(3)
    theta = rng.uniform(-1, 1, 4000)
    x = theta + 0.5 * rng.standard_normal(4000)
    exact = stats.truncnorm.rvs((-1 - x[:, None]) / 0.5, (1 - x[:, None]) / 0.5, loc=x[:, None], scale=0.5,
                                size=(4000, 255), random_state=rng)
    tails = rng.choice([-1.0, 1.0], size=(4000, 255)) * rng.uniform(1.0001, 3.0, size=(4000, 255))
    draws = np.where(rng.random((4000, 255)) < 0.3, tails, exact)
    in_bounds = np.abs(draws) <= 1.0
    _, p_kept = metrics.rank_uniformity(metrics.sbc_ranks(draws, theta, in_bounds), 255, n_bins=16)
    _, p_all = metrics.rank_uniformity(metrics.sbc_ranks(draws, theta), 255, n_bins=16)
    assert p_kept > 0.01 and p_all < 1e-6


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 200), st.integers(1, 60), st.integers(2, 30))
def test_rank_histogram_counts_every_star_once(n_star, n_samples, n_bins):
    ranks = np.random.default_rng(n_star).integers(0, n_samples + 1, size=n_star)
    counts, edges = metrics.rank_histogram(ranks, n_samples, n_bins)
    assert counts.sum() == n_star
    assert edges[0] == 0 and edges[-1] == n_samples + 1


def test_binned_median():
    x = np.array([0.0, 0.1, 0.6, 0.9, 1.0])
    y = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    med, counts = metrics.binned_median(x, y, np.array([0.0, 0.5, 1.0]))
    assert counts.tolist() == [2, 3] and med.tolist() == [2.0, 7.0]


def test_outside_bounds_counts_each_side_and_each_draw_once():
    """Fractions of draws below / above each label's bounds, and f_reject = the draws outside in any label: a draw
    outside in two labels counts once; a draw on a bound is inside (the catalogs' `in_bounds`)."""
    from cinn.evaluate.metrics import outside_bounds

    bounds = np.array([[0.0, 1.0], [-1.0, 1.0]])
    s = np.array([[[0.5, 0.0], [-0.1, 0.0], [1.2, 2.0], [0.0, 1.0]],      # one below, one above in both labels, one on the bounds
                  [[2.0, -3.0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]])     # one outside in both labels
    below, above, f = outside_bounds(s, bounds)
    np.testing.assert_allclose(below, [[0.25, 0.0], [0.0, 0.25]])
    np.testing.assert_allclose(above, [[0.25, 0.25], [0.25, 0.0]])
    np.testing.assert_allclose(f, [0.5, 0.25])
    with pytest.raises(ConfigError, match="bounds"):
        outside_bounds(s, bounds[:1])
