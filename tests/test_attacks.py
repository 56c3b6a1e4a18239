import dataclasses

import pytest
import torch

import superposition as sp
from superposition.attacks import (
    attack_directions,
    attack_losses,
    attack_radius,
    eps_vector,
    random_perturbation,
    worst_perturbation,
)
from superposition.data import instances
from superposition.models import forward, instance_loss, target


def _case(seed=0, inst=3, batch=16, n=5, m=2):
    gen = torch.Generator().manual_seed(seed)
    params = {"W": torch.randn(inst, n, m, generator=gen), "b": torch.randn(inst, n, generator=gen) * 0.1}
    x = torch.rand(inst, batch, n, generator=gen) * (torch.rand(inst, batch, n, generator=gen) < 0.3)
    return params, x, torch.ones(inst, n)


def test_attack_direction_is_the_normalised_gram_row_and_moves_its_output_most():
    params, x, _ = _case()
    W = params["W"]
    dirs = attack_directions(W)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(3, 5))
    G = W @ W.transpose(1, 2)
    # the linear output i moves by G_i · d; no unit d moves it more than along G_i
    best = (G * dirs).sum(-1)
    random = torch.nn.functional.normalize(torch.randn(3, 100, 5), dim=-1)
    assert (torch.einsum("ifj,irj->ifr", G, random) <= best.unsqueeze(-1) + 1e-5).all()


def test_worst_perturbation_is_the_most_harmful_attack_with_the_requested_norm():
    params, x, imp = _case(seed=1)
    delta = worst_perturbation("relu_output", params, x, imp, 0.1)
    radius = attack_radius(x, 0.1)
    torch.testing.assert_close(delta.norm(dim=-1), radius.view(-1, 1).expand(3, 16))
    per_example = lambda z: (imp[:, None] * (forward("relu_output", params, z).output - x) ** 2).mean(-1)
    worst = per_example(x + delta)
    assert torch.allclose(worst, attack_losses("relu_output", params, x, imp, radius).max(-1).values, atol=1e-6)
    assert (worst >= per_example(x) - 1e-6).float().mean() > 0.9
    with pytest.raises(ValueError, match="tied model"):
        worst_perturbation("abs_mlp", params, x, imp, 0.1)


def test_adversarial_training_and_l1_penalty_train_and_are_validated(tiny):
    base = tiny("relu_output", n=5, m=2, probs=(0.1,), steps=300)
    adv = sp.RunConfig(model=base.model, data=base.data, train=dataclasses.replace(base.train, adversarial_eps=0.1))
    clean_run, adv_run = sp.train(base, compile=False, progress=False), sp.train(adv, compile=False, progress=False)
    assert torch.isfinite(adv_run.W).all() and not torch.equal(adv_run.W, clean_run.W)
    with pytest.raises(sp.ConfigError, match="^train.adversarial_eps"):
        sp.RunConfig(model=sp.ModelConfig("abs_mlp"), train=sp.TrainConfig(adversarial_eps=0.1))
    with pytest.raises(sp.ConfigError, match="^train.l1_hidden"):
        sp.RunConfig(data=sp.DataConfig(feature_probability=(1.0, 0.1)), train=sp.TrainConfig(l1_hidden=(0.1,)))
    with pytest.raises(sp.ConfigError, match=r"^train.l1_hidden\[1\]"):
        sp.TrainConfig(l1_hidden=(0.1, -1.0))


def test_l1_penalty_shrinks_hidden_activations_per_configuration(tiny):
    base = tiny("relu_output", n=5, m=2, probs=(0.3, 0.3), steps=400)
    cfg = sp.RunConfig(model=base.model, data=base.data, train=dataclasses.replace(base.train, l1_hidden=(0.0, 0.3)))
    run = sp.train(cfg, compile=False, progress=False)
    x = torch.rand(2, 256, 5) * (torch.rand(2, 256, 5) < 0.3)
    h = forward("relu_output", run.params, x).hidden.abs().sum(-1).mean(-1)
    assert h[1] < 0.7 * h[0], h.tolist()
    loss = instance_loss(run.model(x), target("relu_output", x), run.importance)
    assert loss[1] > loss[0]  # removing activity costs reconstruction


@pytest.mark.parametrize("extra", [{"l1_hidden": 0.5}, {"adversarial_eps": 0.3}], ids=["l1", "adversarial"])
def test_best_of_n_ranks_restarts_by_the_training_objective(tiny, extra):
    from superposition.train import evaluate

    base = tiny("relu_output", n=5, m=2, probs=(0.3,), steps=100, restarts=4, keep_all_restarts=True)
    cfg = sp.RunConfig(model=base.model, data=base.data, train=dataclasses.replace(base.train, **extra))
    every = sp.train(cfg, compile=False, progress=False)
    objective = evaluate(cfg, every.params, objective=True)
    plain = evaluate(cfg, every.params)
    assert (objective > plain).all()  # the penalty / the attack only add loss
    best = sp.train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, keep_all_restarts=False)),
                    compile=False, progress=False)
    assert best.metrics.restart == [int(objective.argmin())]


def test_random_perturbation_is_the_chosen_feature_direction_with_the_requested_norm():
    params, x, _ = _case(seed=2)
    u = torch.rand(3, 16, generator=torch.Generator().manual_seed(5))
    eps = torch.tensor([0.1, 0.5, 1.0])
    delta = random_perturbation(params, x, eps, u)
    radius = attack_radius(x, eps)
    torch.testing.assert_close(delta.norm(dim=-1), radius.view(-1, 1).expand(3, 16))
    chosen = (u * 5).long()
    dirs = attack_directions(params["W"])
    expected = torch.stack([dirs[i, chosen[i]] for i in range(3)]) * radius.view(-1, 1, 1)
    torch.testing.assert_close(delta, expected)


def test_per_configuration_attack_norms():
    cfg = sp.RunConfig(sp.ModelConfig("relu_output", 5, 2), sp.DataConfig(feature_probability=(0.1, 0.1, 0.1)),
                       sp.TrainConfig(adversarial_eps=(0.0, 0.3, 0.8), adversarial_attack="random", restarts=2))
    assert eps_vector(cfg).tolist() == pytest.approx([0.0, 0.0, 0.3, 0.3, 0.8, 0.8])
    assert cfg.train.has_adversarial and cfg.train.adversarial_per_config(3) == (0.0, 0.3, 0.8)
    seeds = instances(cfg).init_seeds
    assert len(set(seeds[::2])) == 3  # the same p, different norms: independent initial weights
    with pytest.raises(sp.ConfigError, match="one per configuration"):
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, adversarial_eps=(0.1, 0.2)))
    with pytest.raises(sp.ConfigError, match="adversarial_attack"):
        sp.TrainConfig(adversarial_attack="strongest")
    with pytest.raises(sp.ConfigError, match=r"adversarial_eps\[1\]"):
        sp.TrainConfig(adversarial_eps=(0.1, -1.0))
    run = sp.train(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=5, batch_size=16)),
                   compile=False, progress=False)
    assert len(run.metrics.final_loss) == 3
