"""The absolute-value recipe: its claims on constructed weights (both answers) and on small seeded runs."""

from dataclasses import replace

import pytest
import torch

import superposition as sp
from superposition.experiments import absolute_value as av
from superposition.experiments import get_recipe

from .test_neurons import abs_w, motif_weights


def sign_pairs(n: int, m: int) -> torch.Tensor:
    """The dense optimum: the m/2 most important of n features each get a ReLU(x) and a ReLU(−x) neuron. [n, m]."""
    W = torch.zeros(n, m)
    for i in range(m // 2):
        W[i, 2 * i], W[i, 2 * i + 1] = 1.0, -1.0
    return W


def mixed(n: int = 12, m: int = 8, seed: int = 0) -> torch.Tensor:
    """Neurons 0–3: ReLU(±x) of features 0, 1; neurons 4–7 each a random mixture of all features. [n, m]."""
    W = sign_pairs(n, m)
    W[:, 4:] = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
    return W


def test_two_neurons_claim_says_both():
    assert av.two_neurons_claim(abs_w()).held
    one_sign = abs_w()
    one_sign[0, 1] = 1.0  # feature 0's second neuron now also fires on x > 0
    assert not av.two_neurons_claim(one_sign).held
    shared = abs_w()
    shared[1, 0] = 0.9  # neuron 0 stores features 0 and 1
    assert not av.two_neurons_claim(shared).held


def test_dense_sparse_and_trend_claims_say_both():
    ps = [1.0, 0.1, 0.001]
    dense, half, poly = sign_pairs(12, 8), mixed(), torch.randn(12, 8, generator=torch.Generator().manual_seed(1))
    good = torch.stack([dense, half, poly])
    assert av.dense_claim(good, ps).held and av.sparse_claim(good, ps).held and av.trend_claim(good, ps).held
    backwards = torch.stack([poly, half, dense])
    assert not av.dense_claim(backwards, ps).held
    assert not av.sparse_claim(backwards, ps).held
    assert not av.trend_claim(backwards, ps).held


def test_importance_claim_says_both():
    ps = [1.0, 0.1]
    good = torch.stack([sign_pairs(12, 8), mixed()])  # monosemantic neurons keep features 0, 1
    assert av.importance_claim(good, ps).held
    late = sign_pairs(12, 8)
    late[:, :4] = 0.0
    late[10, 0], late[10, 1], late[11, 2], late[11, 3] = 1.0, -1.0, 1.0, -1.0  # the least important stay clean
    late[:, 4:] = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)) * (torch.arange(12) < 4)[:, None]
    claim = av.importance_claim(torch.stack([sign_pairs(12, 8), late]), ps)
    assert not claim.held, claim.measured
    assert not av.importance_claim(torch.stack([sign_pairs(12, 8)] * 2), ps).held  # never both kinds


def test_motif_claim_reports_sparse_motifs_only():
    W1, W2 = motif_weights()
    plain1, plain2 = torch.eye(3), torch.eye(3)
    held = av.motif_claim(torch.stack([plain1, W1]), torch.stack([plain2, W2]), [1.0, 0.01])
    assert held.held and "1 − S = 0.01: neuron 0 stores 0 (1) and 1 (0.5)" in held.measured
    assert not av.motif_claim(torch.stack([W1, plain1]), torch.stack([W2, plain2]), [1.0, 0.01]).held


def test_configs_and_registry():
    full, quick = av.configs(False), av.configs(True)
    assert set(full) == set(quick) == {"abs_3_6", "abs_sweep"}
    sweep = full["abs_sweep"]
    assert (sweep.model.kind, sweep.model.n_features, sweep.model.n_hidden) == ("abs_mlp", 100, 40)
    assert sweep.data.feature_probability == av.PROBABILITIES and sweep.data.signed
    assert sweep.data.importance_decay == 0.8
    assert (full["abs_3_6"].model.n_features, full["abs_3_6"].model.n_hidden) == (3, 6)
    assert quick["abs_sweep"].n_instances * quick["abs_sweep"].train.steps < sweep.n_instances * sweep.train.steps
    assert get_recipe("absolute-value").section == av.SECTION


@pytest.mark.slow
def test_claims_hold_on_small_runs():
    """n = 3, m = 6: a neuron per sign; a 30/12 sweep: monosemantic when dense, polysemantic when sparse."""
    run = sp.train(av.configs(quick=True)["abs_3_6"], compile=False, progress=False)  # as the quick recipe
    sweep = av.configs(quick=True)["abs_sweep"]
    sweep = replace(sweep, model=replace(sweep.model, n_features=30, n_hidden=12),
                    data=replace(sweep.data, feature_probability=(1.0, 0.01)),
                    train=replace(sweep.train, steps=3000, batch_size=512))
    runs = sp.train(sweep, compile=False, progress=False)
    ps = [1.0, 0.01]
    claims = [av.two_neurons_claim(run.params["W1"][0]), av.dense_claim(runs.W, ps), av.sparse_claim(runs.W, ps)]
    failed = [f"{c.claim}: expected {c.expected}, measured {c.measured}" for c in claims if not c.held]
    assert not failed, "\n".join(failed)
