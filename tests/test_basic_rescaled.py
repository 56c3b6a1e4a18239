# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""The `basic-rescaled` recipe (n = 80, m = 20): claims on hand-built weights, and a small seeded run."""

from dataclasses import replace

import pytest
import torch

import superposition as sp
from superposition.experiments import basic_rescaled as br


def top_orthonormal(extra: int = 0) -> torch.Tensor:
    """The 20 most important features orthonormal, plus `extra` features antipodal to the last ones."""
    W = torch.zeros(br.N_FEATURES, br.TOP)
    W[: br.TOP] = torch.eye(br.TOP)
    for k in range(extra):
        W[br.TOP + k] = -W[br.TOP - 1 - k]
    return W


def test_linear_and_dense_claims_detect_superposition():
    assert br.linear_claim(top_orthonormal().expand(3, -1, -1)).held
    assert not br.linear_claim(torch.stack([top_orthonormal(), top_orthonormal(2)])).held
    assert br.dense_claim(top_orthonormal().unsqueeze(0)).held
    assert not br.dense_claim(top_orthonormal(1).unsqueeze(0)).held


def test_linear_claim_says_when_training_had_not_reached_the_optimum():
    p = torch.tensor([[1.0] * br.N_FEATURES, [0.01] * br.N_FEATURES])
    importance = (br.IMPORTANCE_DECAY ** torch.arange(br.N_FEATURES, dtype=torch.float32)).expand(2, -1)
    W = torch.stack([top_orthonormal(), top_orthonormal(2)])
    b = torch.where(torch.arange(br.N_FEATURES) < br.TOP, 0.0, p / 2)  # the dropped features' means
    excess = br.linear_excess(W, b, importance, p)
    assert excess[0] == pytest.approx(0.0, abs=1e-6) and excess[1] > br.ABOVE_OPTIMUM  # the optimum; superposed
    claim = br.linear_claim(W, [1.0, 0.01], excess)
    assert not claim.held and claim.measured.endswith(
        f"cause: not converged: where it fails, the exact loss is above the linear optimum (`theory.linear_optimal_"
        f"loss`: the top 20 features kept orthogonally) (1 − S = 0.01: +{excess[1]:.2%})")
    assert "cause" not in br.linear_claim(W, [1.0, 0.01], (0.0, 0.0)).measured  # at the optimum: no cause


def test_dense_claim_says_when_training_had_not_settled():
    W = top_orthonormal(1).unsqueeze(0)
    assert br.dense_claim(W, (0.05,)).measured.endswith(
        "; cause: not settled: the training loss still fell 5.0% over the second half of training")
    assert "cause" not in br.dense_claim(W, (0.001,)).measured


def test_order_and_antipodal_claims_on_pairs_of_the_least_important():
    W = top_orthonormal(4)  # features 16-19 paired with 20-23: the less important are superposed
    assert br.order_claim(W, 0.1).held and br.antipodal_claim(W, 0.1).held
    W[:, :] = W.flip(0)  # the most important superposed instead
    assert not br.order_claim(W, 0.1).held


def test_packing_and_bias_claims():
    assert br.packing_claim([20, 20, 25, 33, 41], 0.001).held
    assert not br.packing_claim([20, 25, 22, 33, 41], 0.001).held  # falls by 3
    assert not br.packing_claim([20, 22, 25, 30, 35], 0.001).held  # fewer than 2m
    assert br.bias_claim(torch.tensor([[0.1], [-0.2]]), 0.001).held
    assert not br.bias_claim(torch.tensor([[0.1], [0.05]]), 0.001).held


@pytest.mark.slow
def test_small_run_dense_relu_keeps_the_top_20_and_sparse_superposes():
    config = br.configs(quick=True)["relu_output"]
    config = replace(config, data=replace(config.data, feature_probability=(1.0, 0.01)),
                     train=replace(config.train, steps=2000))
    run = sp.train(config, compile=False, progress=False)
    # Dense, the ReLU model keeps exactly the top 20. The claim's other half, interference < 0.05,
    # is not held at this size (0.13 at quick size, 0.2 here), which the scorecard reports.
    assert "top 20 only: True" in br.dense_claim(run.W).measured
    assert int(sp.analysis.represented_count(run.W)[1]) > br.TOP
    assert br.bias_claim(run.b, 0.01).held
