"""Nonlinear compression (appendix): the scheme, its quadrature, its ReLU construction, the claims."""

from dataclasses import replace

import pytest
import torch

import superposition as sp
from superposition.analysis.compression import (
    LINEAR_MSE,
    apply_construction,
    compress,
    decompress,
    ideal_mse,
    nonlinear_mse,
    relu_construction,
    soft_floor,
)
from superposition.experiments import compression as recipe
from superposition.models import forward


def test_soft_floor_is_the_floor_away_from_its_ramps():
    u = torch.tensor([0.2, 0.94, 1.0, 1.06, 2.5, 2.99], dtype=torch.float64)
    torch.testing.assert_close(soft_floor(u, 3, 0.1), torch.tensor([0.0, 0.0, 0.5, 1.0, 2.0, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="eps"):
        soft_floor(u, 3, 0.0)


def test_scheme_recovers_y_and_quantises_x():
    x, y = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64), torch.tensor([0.3, 0.7, 0.2], dtype=torch.float64)
    xh, yh = decompress(compress(x, y, 3, 1e-3), 3, 1e-3)
    torch.testing.assert_close(yh, y)
    torch.testing.assert_close(xh, torch.tensor([1 / 6, 0.5, 5 / 6], dtype=torch.float64))


def test_quadrature_converges_and_has_the_ideal_limit():
    assert nonlinear_mse(3, 0.1, grid=1024) == pytest.approx(nonlinear_mse(3, 0.1, grid=2048), abs=1e-5)
    assert nonlinear_mse(3, 1e-4) == pytest.approx(ideal_mse(3), rel=0.01)
    assert ideal_mse(3) == pytest.approx(1 / 216)
    # wider ramps cost more; the paper's case beats the best linear code 1/24
    assert nonlinear_mse(3, 0.01) < nonlinear_mse(3, 0.1) < nonlinear_mse(3, 0.5)
    assert nonlinear_mse(3, 0.1) < LINEAR_MSE


@pytest.mark.parametrize(("z", "eps"), [(2, 0.1), (3, 0.1), (3, 0.02), (5, 0.3)])
def test_relu_construction_is_the_scheme(z, eps):
    c = relu_construction(z, eps)
    assert c.neurons == 4 * (z - 1) + 2
    xy = torch.rand(4096, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(z))
    out, t = apply_construction(c, xy)
    xh, yh = decompress(compress(xy[:, 0], xy[:, 1], z, eps), z, eps)
    torch.testing.assert_close(out, torch.stack([xh, yh], -1), atol=1e-10, rtol=0)
    torch.testing.assert_close(t.squeeze(-1), compress(xy[:, 0], xy[:, 1], z, eps), atol=1e-12, rtol=0)


def test_construction_runs_in_the_engine_as_a_compressor():
    config = recipe.configs(quick=True)["nonlinear"]
    params = recipe.construction_params(relu_construction(3, 0.1), n_inst=2)
    assert set(params) == {k for k, _ in recipe.Compressor(2, 1).named_parameters()}
    xy = torch.rand(2, 512, 2, generator=torch.Generator().manual_seed(0))
    out = forward(config.model, params, xy).output
    xh, yh = decompress(compress(xy[..., 0].double(), xy[..., 1].double(), 3, 0.1), 3, 0.1)
    torch.testing.assert_close(out.double(), torch.stack([xh, yh], -1), atol=1e-4, rtol=0)


def test_bottleneck_folds_tell_a_folded_code_from_a_monotone_one():
    config = recipe.configs(quick=True)["nonlinear"]
    assert recipe.bottleneck_folds(config, recipe.construction_params(relu_construction(3, 0.1))) == (0.0, 0.0)
    folded = {k: torch.zeros(1, *v.shape) for k, v in recipe.Compressor(2, 1).state_dict().items()}
    folded["enc.weight"][0, 0, 0], folded["enc.bias"][0, 0] = 1.0, -0.5  # t = |x − 1/2|
    folded["enc.weight"][0, 1, 0], folded["enc.bias"][0, 1] = -1.0, 0.5
    folded["mid.weight"][0, 0, :2] = 1.0
    assert recipe.bottleneck_folds(config, folded) == (1.0, 0.0)


def _analysis(**changes):
    base = recipe.CompressionAnalysis(curve={3: [0.01]}, nonlinear=0.0125, nonlinear_x_units=0.024, ideal=1 / 216,
                                      relu_deviation=1e-14, relu_engine=(0.0126, 0.0001), neurons=10,
                                      trained_nonlinear=0.03, trained_nonlinear_all=[0.03, 0.04],
                                      trained_linear=1 / 24)
    return replace(base, **changes)


def test_claims_can_fail():
    assert recipe.beats_linear_claim(_analysis()).held
    assert not recipe.beats_linear_claim(_analysis(nonlinear=0.05)).held
    assert recipe.construction_claim(_analysis()).held
    assert not recipe.construction_claim(_analysis(relu_engine=(0.0140, 0.0001))).held  # 15 SE off
    assert not recipe.construction_claim(_analysis(relu_deviation=1e-3)).held
    assert recipe.learning_claim(_analysis()).held
    found = recipe.learning_claim(_analysis(trained_nonlinear=0.01, trained_nonlinear_all=[0.01, 0.02],
                                            trained_folds=(0.9, 0.5)))
    assert not found.held  # training found better
    assert "found a nonlinear code of its own (0.8× the construction's MSE; 1 of 2 restarts" in found.measured
    assert "90% of the lines along x and 50% along y, the construction's on 0% and 0%" in found.measured
    assert not recipe.learning_claim(_analysis(trained_linear=0.05)).held  # linear optimisation failed


@pytest.mark.slow
def test_compression_claims_on_a_small_seeded_run():
    runs = {}
    for name, cfg in recipe.configs(quick=True).items():
        runs[name] = sp.train(replace(cfg, train=replace(cfg.train, steps=min(cfg.train.steps, 1500))),
                              compile=False, progress=False)
    claims = recipe.RECIPE.claims(recipe.RECIPE.analysed(runs))
    failed = [f"{c.claim}: expected {c.expected}, measured {c.measured}" for c in claims if not c.held]
    assert len(claims) == 3 and not failed, "\n".join(failed)


def test_figures_draw_what_they_are_given():
    from matplotlib.figure import Figure

    from superposition.figures.compression import compression_figure, sensing_figure
    from superposition.figures.robustness import radius_figure

    fig = compression_figure([0.01, 0.1], {2: [0.011, 0.017], 3: [0.005, 0.0125]}, 1 / 24, {"trained": 0.03})
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 4
    with pytest.raises(ValueError, match="values"):
        compression_figure([0.01, 0.1], {2: [0.011]}, 1 / 24, {})
    assert isinstance(sensing_figure([1.0, 2.0, 3.0], [3.0, 5.0, 7.0], 2.0, 1.0, ["a", "b", "c"]), Figure)
    with pytest.raises(ValueError, match="one entry"):
        sensing_figure([1.0], [3.0, 5.0], 2.0, 1.0, ["a"])
    assert isinstance(radius_figure([0.0, 0.5, 1.0], torch.tensor([4.0, 2.0, 0.9]), 1.0, 0.8, 0.1), Figure)
    with pytest.raises(ValueError, match="radius"):
        radius_figure([0.0, 0.5], torch.tensor([4.0, 2.0, 0.9]), 1.0, 0.8, 0.1)
