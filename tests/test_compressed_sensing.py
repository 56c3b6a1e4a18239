"""The compressed-sensing scaling (appendix): m* by interpolation, the fit, the claim, the configs."""

import math

import pytest

import superposition as sp
from superposition.analysis.sensing import linear_fit, relative_error, smallest_m
from superposition.experiments import compressed_sensing as recipe


def test_relative_error_is_one_for_the_zero_output():
    assert relative_error(0.1 / 3, 0.1) == pytest.approx(1.0)


def test_smallest_m_interpolates_in_logs():
    assert smallest_m([2, 4, 8], [0.5, 0.2, 0.05], 0.1) == pytest.approx(4 * 2 ** 0.5)  # halfway in log error
    assert smallest_m([2, 4], [0.05, 0.01], 0.1) == 2.0  # already recovered at the smallest m
    assert smallest_m([2, 4], [0.5, 0.3], 0.1) is None  # never
    assert smallest_m([8, 2, 4], [0.05, 0.5, 0.2], 0.1) == pytest.approx(4 * 2 ** 0.5)  # any order


def test_linear_fit_exact_and_noisy():
    exact = linear_fit([1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0, 9.0])
    assert (exact.slope, exact.intercept, exact.r2) == pytest.approx((2.0, 1.0, 1.0))
    assert exact.slope_ci == pytest.approx((2.0, 2.0))
    noisy = linear_fit([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 3.0, 2.0, 5.0, 4.0])
    assert noisy.slope == pytest.approx(0.8) and noisy.slope_ci[0] < 0.8 < noisy.slope_ci[1]
    assert noisy.r2 == pytest.approx(0.64)
    with pytest.raises(ValueError, match="3"):
        linear_fit([1.0, 2.0], [1.0, 2.0])


def _analysis(points):
    found = [(k * math.log(n / k), m) for n, k, m in points if m is not None]
    fit = linear_fit(*zip(*found, strict=True)) if len(found) >= 3 else None
    return recipe.SensingAnalysis(points, {}, fit)


def test_claim_can_fail():
    scaling = [(n, k, 1.0 + 1.5 * k * math.log(n / k)) for n in (32, 64) for k in (1, 2, 4, 8)]
    assert recipe.scaling_claim(_analysis(scaling)).held
    grid = [(n, k) for n in (32, 64) for k in (1, 2, 4)]
    flat = [(n, k, 5.0 + (0.3 if i % 2 else -0.3)) for i, (n, k) in enumerate(grid)]
    assert not recipe.scaling_claim(_analysis(flat)).held
    assert not recipe.scaling_claim(_analysis([(32, 1, None), (32, 2, 3.0)])).held


def test_a_power_law_in_n_is_named_as_the_cause():
    power = [(n, k, 4.0 * n**0.5 + 0.1 * k) for n in (32, 64, 128) for k in (1, 2, 4)]  # m* ≈ 4√n, whatever k
    growth = recipe.growth_in_n(_analysis(power))
    assert len(growth) == 6 and all(a == pytest.approx(0.5, abs=0.01) for *_, a in growth)
    claim = recipe.scaling_claim(_analysis(power))
    assert not claim.held and "m* grows like nᵃ with a = 0.49–0.50 over 6 doublings" in claim.measured
    assert "cause" not in recipe.scaling_claim(_analysis([(n, k, 1.0 + 1.5 * k * math.log(n / k))
                                                          for n in (32, 64) for k in (1, 2, 4, 8)])).measured


def test_configs_cover_the_grid():
    quick = recipe.configs(quick=True)
    assert len(quick) == sum(1 for n in recipe.N_QUICK for m in recipe.M_QUICK if m < n)
    cfg = quick["n32-m4"]
    assert (cfg.model.n_features, cfg.model.n_hidden) == (32, 4)
    assert cfg.data.feature_probability == tuple(k / 32 for k in recipe.K_QUICK)


@pytest.mark.slow
def test_quick_grid_needs_more_dimensions_for_denser_inputs():
    # At quick size the k·log(n/k) fit is not held (R² 0.24: m* grows faster with n than log(n/k));
    # what does hold is that m* rises with k at fixed n.
    runs = {name: sp.train(cfg, compile=False, progress=False) for name, cfg in recipe.configs(quick=True).items()}
    analysis = recipe.RECIPE.analysed(runs)
    m32 = [m for n, k, m in analysis.points if n == 32]
    assert None not in m32 and m32 == sorted(m32)
    (claim,) = recipe.RECIPE.claims(analysis)
    assert claim.held == (analysis.fit.r2 >= recipe.R2 and analysis.fit.slope_ci[0] > 0)
