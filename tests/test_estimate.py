"""The loss estimator: accurate to its stated standard error, which is at most 1% down to p = 0.001."""

import pytest
import torch

import superposition as sp
from superposition.analysis.decomposition import linear_loss_terms
from superposition.data import draw, feature_spec
from superposition.estimate import _per_example_loss, estimate_loss
from superposition.models import init_params

PROBABILITIES = (1.0, 0.1, 0.01, 0.001)


def case(kind, n=20, m=5, probs=PROBABILITIES, **data):
    config = sp.RunConfig(model=sp.ModelConfig(kind, n, m),
                          data=sp.DataConfig(feature_probability=probs, importance_decay=0.8, **data))
    params = init_params(config.model, sp.data.instances(config).init_seeds)
    params["b"] = -0.1 * torch.rand(params["b"].shape, generator=torch.Generator().manual_seed(3))
    return config, params


def independent_estimate(config, params, samples):
    spec = feature_spec(config, stream=11)  # a stream the estimator never uses
    losses = [_per_example_loss(config, params, draw(spec, torch.tensor(i), 50_000, config.data))
              for i in range(samples // 50_000)]
    every = torch.cat(losses, 1)
    return every.mean(1), every.std(1) / every.shape[1] ** 0.5


@pytest.mark.parametrize("kind", ["linear", "relu_output", "relu_hidden", "abs_mlp"])
def test_the_estimate_has_at_most_1_percent_standard_error_and_agrees_with_a_million_samples(kind):
    config, params = case(kind)
    est = estimate_loss(config, params)
    assert (est.se <= 0.01 * est.mean).all(), (est.se / est.mean).tolist()
    config_rare, params_rare = case(kind, probs=(0.001,))
    rare = estimate_loss(config_rare, params_rare)
    mean, se = independent_estimate(config_rare, params_rare, 1_000_000)
    assert abs(rare.mean.item() - mean.item()) <= 2 * (se.item() ** 2 + rare.se.item() ** 2) ** 0.5


def test_the_estimate_of_a_linear_model_equals_its_closed_form():
    config, params = case("linear", signed=True)
    est = estimate_loss(config, params)
    spec = feature_spec(config)
    exact = linear_loss_terms(params["W"], params["b"], spec.importance, spec.probability, signed=True).total
    assert ((est.mean - exact).abs() <= 3 * est.se + 1e-4 * exact).all(), (est.mean / exact).tolist()


def test_other_distributions_and_finite_data_are_estimated_too():
    config, params = case("relu_output", distribution="correlated", set_size=4)
    est = estimate_loss(config, params, max_samples=1 << 17)
    # plain Monte Carlo: 1% where sets are common, and otherwise the error of the sample cap, reported
    assert (est.se[:2] <= 0.01 * est.mean[:2]).all() and (est.se[2:] > 0).all()
    finite = sp.RunConfig(model=config.model, data=sp.DataConfig(feature_probability=(0.1,), n_train=50))
    est = estimate_loss(finite, {k: v[:1] for k, v in params.items()})
    assert est.se.item() == 0.0 and est.mean.item() > 0


def test_metrics_record_each_loss_with_its_standard_error():
    run = sp.train(sp.RunConfig(data=sp.DataConfig(feature_probability=(1.0, 0.01)), train=sp.TrainConfig(steps=50)),
                   progress=False)
    assert len(run.metrics.final_loss_se) == 2
    assert all(0 < se <= 0.01 * loss for loss, se in zip(run.metrics.final_loss, run.metrics.final_loss_se,
                                                          strict=True))


def test_a_saved_best_of_n_run_can_be_evaluated_directly():
    from superposition.estimate import estimate_loss
    from superposition.train import evaluate_run, saved_instances_config

    config = sp.RunConfig(data=sp.DataConfig(feature_probability=(1.0, 0.1), importance=((1.0,) * 5, (2.0,) * 5)),
                          train=sp.TrainConfig(steps=40, restarts=3))
    run = sp.train(config, progress=False)
    assert evaluate_run(run).shape == (2,)
    again = estimate_loss(saved_instances_config(run), run.params)
    final, se = torch.tensor(run.metrics.final_loss).double(), torch.tensor(run.metrics.final_loss_se).double()
    assert ((again.mean - final).abs() <= 2 * se).all()  # the same estimator (it may stop after other draws)


@pytest.mark.parametrize("kind", ["linear", "relu_output", "relu_hidden"])
def test_single_feature_losses_in_closed_form_equal_fine_quadrature(kind, monkeypatch):
    from superposition import estimate as estimate_module

    config = sp.RunConfig(model=sp.ModelConfig(kind, n_features=12, n_hidden=3),
                          data=sp.DataConfig(feature_probability=(0.1, 0.02), importance_decay=0.8))
    gen = torch.Generator().manual_seed(3)
    params = {k: torch.randn(v.shape, generator=gen) * 0.6 for k, v in init_params(config.model, [0, 1]).items()}
    importance = feature_spec(config).importance
    closed = estimate_module._single_feature_losses(config, params, importance)
    monkeypatch.setattr(estimate_module, "CLOSED_FORM_KINDS", ())
    monkeypatch.setattr(estimate_module, "NODES", 4096)
    quadrature = estimate_module._single_feature_losses(config, params, importance)
    assert (params["b"] > 0).any() and (params["b"] < 0).any()
    torch.testing.assert_close(closed, quadrature.double(), rtol=1e-5, atol=1e-7)
