"""Adversarial vulnerability: the no-superposition reference, the measure on constructed weights,
the `adversarial` recipe's claims (constructed to fail and hold, and on a small seeded run)."""

from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

import superposition as sp
from superposition.analysis import adversarial as adv
from superposition.analysis.adversarial import (
    features_per_dimension,
    log_correlation,
    orthogonal_reference,
    relative_vulnerability,
    vulnerability,
)
from superposition.attacks import attack_radius
from superposition.experiments import adversarial as recipe
from superposition.experiments import get_recipe, run_recipe
from superposition.figures.robustness import adversarial_figure


def sparse_inputs(inst=2, batch=512, n=4, p=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(inst, batch, n, generator=gen) * (torch.rand(inst, batch, n, generator=gen) < p)


def test_orthogonal_reference_keeps_the_most_valuable_features_orthonormal():
    importance = torch.tensor([[1.0, 0.5, 0.9, 0.1], [0.2, 0.3, 0.4, 0.5]])
    ref = orthogonal_reference(importance, torch.full((2, 4), 0.1), n_hidden=2)
    kept = ref["W"].norm(dim=-1) > 0
    assert kept.tolist() == [[True, False, True, False], [False, False, True, True]]
    torch.testing.assert_close(ref["W"].transpose(1, 2) @ ref["W"], torch.eye(2).expand(2, 2, 2))
    torch.testing.assert_close(ref["b"], torch.where(kept, 0.0, 0.05))  # dropped features: their mean p/2


@pytest.mark.parametrize("kind", ["linear", "relu_output"])
def test_reference_vulnerability_is_the_top_importance_times_the_squared_radius(kind):
    x = sparse_inputs()
    importance = torch.tensor([[1.0, 0.8, 0.6, 0.4], [0.5, 2.0, 0.1, 0.1]])
    ref = orthogonal_reference(importance, torch.full((2, 4), 0.3), n_hidden=2)
    v = vulnerability(kind, ref, x, importance, eps=0.1)
    r = attack_radius(x, 0.1)
    torch.testing.assert_close(v.increase, importance.max(-1).values * r**2 / 4, rtol=1e-4, atol=0)
    torch.testing.assert_close(v.radius, r)


def test_antipodal_pairs_double_the_vulnerability_and_the_features_per_dimension():
    # At most one feature on per input: the pairs reproduce every input exactly, as the reference
    # does its kept features, so the attack alone makes the difference.
    x = sparse_inputs(inst=1)
    x = torch.where(torch.arange(4) == torch.randint(0, 4, (1, 512, 1), generator=torch.Generator().manual_seed(1)),
                    x, 0.0)
    importance = torch.ones(1, 4)
    pairs = {"W": torch.tensor([[[1.0, 0], [-1, 0], [0, 1], [0, -1]]]), "b": torch.zeros(1, 4)}
    rel = relative_vulnerability("relu_output", pairs, x, importance, torch.full((1, 4), 0.3))
    assert 1.9 < float(rel.ratio) < 2.5  # the attack moves a pair's output by √2 r: twice the loss
    assert float(features_per_dimension(pairs["W"])) == 2.0
    same = orthogonal_reference(importance, torch.full((1, 4), 0.3), 2)
    rel = relative_vulnerability("relu_output", same, x, importance, torch.full((1, 4), 0.3))
    assert float(rel.ratio) == pytest.approx(1.0)


def test_vulnerability_is_the_same_in_chunks(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    params = {"W": torch.randn(2, 4, 2, generator=gen), "b": torch.randn(2, 4, generator=gen) * 0.1}
    x, importance = sparse_inputs(batch=300), torch.ones(2, 4)
    whole = vulnerability("relu_output", params, x, importance)
    monkeypatch.setattr(adv, "CHUNK", 64)
    chunked = vulnerability("relu_output", params, x, importance)
    torch.testing.assert_close(chunked.increase, whole.increase)
    assert (whole.attacked >= whole.clean).all()


def test_log_correlation():
    a = torch.tensor([1.0, 2.0, 4.0, 8.0])
    assert log_correlation(a, a**1.5) == pytest.approx(1.0)
    assert log_correlation(a, 1 / a) == pytest.approx(-1.0)


def test_claims_can_fail():
    t = torch.tensor
    assert recipe.rise_claim(t([1.0, 2.0, 4.5]), [1.0, 0.3, 0.1]).held
    assert not recipe.rise_claim(t([1.0, 1.5, 2.0]), [1.0, 0.3, 0.1]).held  # rises too little
    assert not recipe.rise_claim(t([2.0, 6.5, 8.0]), [1.0, 0.3, 0.1]).held  # dense model already vulnerable
    fpd = t([1.0, 2.0, 3.5])
    assert recipe.tracking_claim(t([1.0, 4.1, 11.0]), fpd).held
    assert not recipe.tracking_claim(t([5.0, 1.0, 2.0]), fpd).held
    standard = (t([1.0, 2.0, 4.0]), t([1.0, 4.0, 10.0]))
    assert recipe.training_claim(standard, (t([1.0, 1.8, 3.4]), t([0.9, 3.0, 7.0]))).held
    assert not recipe.training_claim(standard, (t([1.0, 2.0, 3.9]), t([0.9, 3.0, 7.0]))).held  # no fewer features
    assert not recipe.training_claim(standard, (t([1.0, 1.8, 3.4]), t([0.9, 4.5, 10.0]))).held  # more vulnerable
    assert not recipe.training_claim(standard, (t([1.0, 2.3, 3.0]), t([0.9, 3.0, 7.0]))).held  # more at one p


def test_adversarial_figure():
    t = torch.tensor
    fig = adversarial_figure([1.0, 0.1], {"standard": t([1.0, 5.0]), "adversarial": t([0.9, 3.0])},
                             {"standard": t([1.0, 3.0]), "adversarial": t([1.0, 2.5])})
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert [line.get_label() for line in fig.axes[0].lines[:2]] == ["standard", "adversarial"]
    with pytest.raises(ValueError, match="same"):
        adversarial_figure([1.0, 0.1], {"standard": t([1.0, 5.0])}, {"other": t([1.0, 3.0])})


@pytest.mark.slow
def test_adversarial_claims_hold_on_a_small_run():
    runs = {}
    for name, cfg in recipe.configs(quick=True).items():
        if name == "radius":
            continue  # its own test below (one attack norm per configuration)
        data = replace(cfg.data, feature_probability=(1.0, 0.3, 0.1))
        # Few, small, fast steps: the adversarial step attacks every example along all 20 directions.
        train = replace(cfg.train, steps=800, batch_size=256, lr=5e-3)
        runs[name] = sp.train(replace(cfg, data=data, train=train), compile=False, progress=False)
    claims = recipe.RECIPE.claims(recipe.RECIPE.analysed(runs))
    failed = [f"{c.claim}: expected {c.expected}, measured {c.measured}" for c in claims if not c.held]
    assert len(claims) == 3 and not failed, "\n".join(failed)


@pytest.mark.slow
def test_radius_claim_holds_on_the_quick_sweep():
    run = sp.train(recipe.configs(quick=True)["radius"], progress=False)
    claim = recipe.radius_claim(recipe.radius_sweep(run))
    assert claim.held, claim.measured


def _sweep(fpd, radius=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)):
    n = len(radius)
    return recipe.RadiusSweep(tuple(radius), torch.tensor(fpd), torch.full((n,), 5), torch.zeros(n), torch.ones(n))


def test_radius_claim_can_fail():
    assert recipe.radius_claim(_sweep([4.0, 3.5, 2.8, 1.7, 0.98, 0.9])).held  # gone at 80%
    assert not recipe.radius_claim(_sweep([4.0, 3.5, 0.9, 0.8, 0.7, 0.6])).held  # gone already at 40%
    assert not recipe.radius_claim(_sweep([4.0, 3.5, 2.8, 2.0, 1.5, 1.2])).held  # never gone
    assert not recipe.radius_claim(_sweep([4.0, 1.5, 3.5, 2.0, 0.9, 1.6])).held  # no steady decrease


def test_radius_claim_says_why_superposition_outlasts_the_window():
    radius = (0.0, 0.6, 0.8, 0.9, 1.0, 1.2)
    fpd = torch.tensor([4.0, 1.9, 1.18, 1.15, 1.17, 0.84])
    sweep = recipe.RadiusSweep(radius, fpd, torch.tensor([19, 14, 11, 9, 8, 7]), torch.zeros(6),
                               torch.tensor([1.05, 0.81, 0.73, 0.8, 0.86, 0.76]))
    claim = recipe.radius_claim(sweep)
    assert not claim.held
    assert ("cause: over 80–100% the attack drops features but the kept ones grow, so features per dimension "
            "stay > 1 (features of norm > 0.5 11, 9, 8, their mean norm 0.73, 0.80, 0.86)") in claim.measured
    shrinking = replace(sweep, represented_norm=torch.tensor([1.05, 0.81, 0.9, 0.8, 0.7, 0.76]))
    assert "cause" not in recipe.radius_claim(shrinking).measured
    assert "cause" not in recipe.radius_claim(_sweep([4.0, 3.5, 2.8, 1.7, 0.98, 0.9])).measured  # inside


def test_radius_sweep_reads_each_instance_attack_norm():
    cfg = recipe.configs(quick=True)["radius"]
    cfg = replace(cfg, train=replace(cfg.train, steps=3, batch_size=32))
    run = sp.train(cfg, compile=False, progress=False)
    sweep = recipe.radius_sweep(run)
    assert sweep.radius == recipe.QUICK_RADII
    assert sweep.features_per_dimension.shape == (len(recipe.QUICK_RADII),)


def test_recipe_writes_its_figure_and_claims(tmp_path):
    tiny = {name: replace(cfg, train=replace(cfg.train, steps=20, batch_size=64))
            for name, cfg in recipe.configs(quick=True).items()}
    for name in ("standard", "adversarial"):
        tiny[name] = replace(tiny[name], data=replace(tiny[name].data, feature_probability=(1.0, 0.1)))
    result = run_recipe(replace(recipe.RECIPE, configs=lambda quick: tiny), tmp_path, compile=False, progress=False)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["adversarial-radius.png", "adversarial.png"]
    assert len(result.claims) == 4 and (tmp_path / "claims.json").exists()
    assert get_recipe("adversarial") is recipe.RECIPE
