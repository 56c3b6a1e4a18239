"""The privileged-basis recipe: its claims on constructed weights (both answers) and on a small seeded run."""

from dataclasses import replace

import pytest
import torch

import superposition as sp
from superposition.experiments import get_recipe
from superposition.experiments import privileged_basis as pb

from .test_neurons import dense_w, pair_code_w


def binary_code_model() -> torch.Tensor:
    """10/5: features 0–2 on neurons 0–2; features 3, 4, 5 on neurons 3, 4 as codes 10, 01, 11; 6+ dropped."""
    W = torch.zeros(10, 5)
    W[:3, :3] = torch.eye(3)
    W[3, 3], W[3, 4] = 0.9, -0.8
    W[4, 3], W[4, 4] = -0.8, 0.9
    W[5, 3], W[5, 4] = 0.9, 0.9
    return W


def test_dense_claim_says_both():
    assert pb.dense_claim(dense_w()).held
    assert not pb.dense_claim(pair_code_w()).held
    rotated = dense_w()
    rotated[:2, :2] = torch.tensor([[0.8, 0.6], [-0.6, 0.8]])  # two neurons mixing features 0 and 1
    assert not pb.dense_claim(rotated).held


def test_sharing_claim_needs_a_binary_code_at_intermediate_sparsity():
    ps = [1.0, 0.2, 0.01]
    assert pb.sharing_claim(torch.stack([dense_w(), binary_code_model(), pair_code_w()]), ps).held
    claim = pb.sharing_claim(torch.stack([dense_w(), dense_w(), pair_code_w()]), ps)
    assert not claim.held and claim.measured == "no such group"  # the pair code is not intermediate


def test_pair_claim_says_both():
    ps = [1.0, pb.PAIR_MAX_P, 0.01]
    assert pb.pair_claim(torch.stack([dense_w(), pair_code_w(), pair_code_w()]), ps).held
    assert not pb.pair_claim(torch.stack([dense_w(), binary_code_model(), pair_code_w()]), ps).held
    repeated = pair_code_w()
    repeated[1] = repeated[0]  # two features on the same pair
    assert not pb.pair_claim(torch.stack([dense_w(), pair_code_w(), repeated]), ps).held


def test_coexistence_and_trend_claims_say_both():
    ps = [1.0, 0.2, 0.01]
    good = torch.stack([dense_w(), binary_code_model(), pair_code_w()])
    assert pb.coexistence_claim(good, ps).held and pb.trend_claim(good, ps).held
    flat = torch.stack([dense_w(), dense_w(), pair_code_w()])
    assert not pb.coexistence_claim(flat, ps).held
    reversed_ = torch.stack([pair_code_w(), binary_code_model(), dense_w()])
    assert not pb.trend_claim(reversed_, ps).held


def test_configs_and_registry():
    full, quick = pb.configs(False), pb.configs(True)
    assert set(full) == set(quick) == {"relu_hidden", "relu_hidden_sparse"}
    for config in full.values():
        assert config.model.kind == "relu_hidden" and (config.model.n_features, config.model.n_hidden) == (10, 5)
        assert config.data.importance_decay == 0.75
    assert sorted(p for c in full.values() for p in c.data.feature_probability) == sorted(pb.PROBABILITIES)
    assert sum(c.n_instances for c in quick.values()) < sum(c.n_instances for c in full.values())
    assert get_recipe("privileged-basis").section == pb.SECTION


@pytest.mark.slow
def test_claims_hold_on_a_small_run():
    """Dense one neuron per feature; at 1 − S = 0.2 a binary code beside monosemantic neurons."""
    config = pb.configs(quick=True)["relu_hidden"]
    data = replace(config.data, feature_probability=(1.0, 0.2))
    config = replace(config, data=data, train=replace(config.train, restarts=2, batch_size=512))
    run = sp.train(config, compile=False, progress=False)
    ps = [1.0, 0.2]
    claims = [pb.dense_claim(run.W[0]), pb.sharing_claim(run.W, ps), pb.coexistence_claim(run.W, ps)]
    failed = [f"{c.claim}: expected {c.expected}, measured {c.measured}" for c in claims if not c.held]
    assert not failed, "\n".join(failed)
