# ruff: noqa: N803 - W is the paper's name for the embedding matrix
import math

import pytest
import torch

from superposition.analysis import (
    GeometrySummary,
    dimensions_per_feature,
    feature_dimensionality,
    feature_moments,
    feature_norms,
    gram,
    interference,
    linear_optimal_loss,
    represented,
    represented_count,
    summarize,
)

from .conftest import unchecked

# --- known polytopes, built by hand in the hidden space --------------------------------------


def polygon(k: int) -> torch.Tensor:
    """k unit vectors at equal angles in 2-D: [k, 2]."""
    angles = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    return torch.stack([angles.cos(), angles.sin()], -1)


def tetrahedron() -> torch.Tensor:
    v = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    return v / math.sqrt(3)


def embed(W: torch.Tensor, m: int, seed: int = 0) -> torch.Tensor:
    """The same polytope placed in an m-dim hidden space by a random rotation."""
    q, _ = torch.linalg.qr(torch.randn(m, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return torch.cat([W, W.new_zeros(W.shape[0], m - W.shape[1])], -1) @ q


POLYTOPES = {
    "digon": (polygon(2), 1 / 2),
    "triangle": (polygon(3), 2 / 3),
    "pentagon": (polygon(5), 2 / 5),
    "tetrahedron": (tetrahedron(), 3 / 4),
    "orthonormal": (torch.eye(4, dtype=torch.float64), 1.0),
}


@pytest.mark.parametrize("name", POLYTOPES)
def test_polytope_dimensionality(name):
    W, expected = POLYTOPES[name]
    for hidden in (W, embed(W, 6), 3.0 * W):  # invariant to rotation, embedding and scale
        D = feature_dimensionality(hidden)
        torch.testing.assert_close(D, torch.full_like(D, expected))
        # Every uniform polytope's features tile the space: Σ_i D_i = its dimension.
        assert D.sum().item() == pytest.approx(torch.linalg.matrix_rank(hidden).item())


def test_antipodal_pair_interference_is_one_and_d_star_half():
    W = polygon(2)[None]  # [1, 2, 2]: features in a 2-d space, only one direction used
    torch.testing.assert_close(interference(W), torch.ones(1, 2, dtype=torch.float64))
    W1 = W[..., :1]  # the same pair in 1-d: D* = 1 / 2
    torch.testing.assert_close(dimensions_per_feature(W1), torch.tensor([0.5], dtype=torch.float64))


def test_orthonormal_basis():
    W = torch.eye(5)[None]
    torch.testing.assert_close(interference(W), torch.zeros(1, 5))
    torch.testing.assert_close(feature_dimensionality(W), torch.ones(1, 5))
    torch.testing.assert_close(dimensions_per_feature(W), torch.ones(1))
    torch.testing.assert_close(feature_norms(W), torch.ones(1, 5))
    torch.testing.assert_close(gram(W), torch.eye(5)[None])
    assert represented_count(W).tolist() == [5]


def test_dead_feature():
    W = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]]])  # feature 1 is the zero vector
    assert feature_norms(W)[0, 1] == 0
    assert feature_dimensionality(W)[0].tolist() == [0.5, 0.0, 0.5]
    assert interference(W)[0].tolist() == [1.0, 0.0, 1.0]
    assert represented(W)[0].tolist() == [True, False, True]
    assert represented_count(W).tolist() == [2]
    assert torch.isfinite(feature_dimensionality(W)).all() and torch.isfinite(interference(W)).all()


def test_all_dead_instance_is_finite():
    W = torch.zeros(2, 4, 3)
    assert feature_dimensionality(W).eq(0).all() and interference(W).eq(0).all()
    s = summarize(W)
    assert s.represented.tolist() == [0, 0] and s.mean_interference.tolist() == [0.0, 0.0]


def test_gram_is_symmetric_and_holds_dot_products():
    W = torch.randn(3, 7, 4, generator=torch.Generator().manual_seed(1))
    G = gram(W)
    assert G.shape == (3, 7, 7)
    torch.testing.assert_close(G, G.transpose(-1, -2))
    torch.testing.assert_close(G[1, 2, 5], W[1, 2] @ W[1, 5])
    torch.testing.assert_close(G.diagonal(dim1=-2, dim2=-1), feature_norms(W) ** 2)


def test_interference_matches_the_definition():
    W = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    k, i = 1, 4
    unit = W[k, i] / W[k, i].norm()
    expected = sum((unit @ W[k, j]) ** 2 for j in range(6) if j != i)
    torch.testing.assert_close(interference(W)[k, i], expected)


@pytest.mark.parametrize(
    "fn",
    [feature_norms, gram, interference, feature_dimensionality, dimensions_per_feature, represented, represented_count],
)

def test_batch_over_instances_equals_each_instance(fn):
    W = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(3))
    W[2, 1] = 0.0  # a dead feature in one instance must not affect the others
    batched = fn(W)
    assert batched.shape[0] == 4
    for k in range(4):
        torch.testing.assert_close(batched[k], fn(W[k]))


def test_summarize():
    W = torch.stack(
        [
            torch.cat([polygon(5), torch.zeros(1, 2, dtype=torch.float64)]),
            torch.cat([torch.eye(2, dtype=torch.float64), torch.zeros(4, 2, dtype=torch.float64)]),
        ]
    )
    s = summarize(W)
    assert isinstance(s, GeometrySummary) and (s.n_features, s.n_hidden) == (6, 2)
    assert s.represented.tolist() == [5, 2]
    torch.testing.assert_close(s.dimensions_per_feature, torch.tensor([2 / 5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(s.mean_interference, torch.tensor([1.5, 0.0], dtype=torch.float64))
    with pytest.raises(AttributeError):
        s.represented = None  # frozen


def test_rejects_a_vector():
    with pytest.raises(ValueError, match="feat, hidden"):
        unchecked(feature_norms)(torch.ones(3))


# --- the linear model's closed-form optimum ----------------------------------------------------


def mc_loss_of_explicit_optimum(importance, p, m, signed=False, batch=400_000, seed=0):
    """Monte-Carlo loss of W = unit vectors of the top-m features by I·var, b = means elsewhere."""
    n = importance.shape[0]
    mean, var = feature_moments(p, signed)
    mean, var = mean.expand(n), var.expand(n)
    keep = torch.argsort(importance * var, descending=True)[:m]
    W = torch.zeros(n, m, dtype=torch.float64)
    W[keep, torch.arange(m)] = 1.0
    b = mean.clone()
    b[keep] = 0.0
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(batch, n, generator=g, dtype=torch.float64)
    if signed:
        u = 2 * u - 1
    x = torch.where(torch.rand(batch, n, generator=g, dtype=torch.float64) < p, u, 0.0)
    out = (x @ W) @ W.T + b  # x' = WᵀWx + b, row-vector form
    return (importance * (out - x) ** 2).mean().item()


@pytest.mark.parametrize("p", [1.0, 0.3, torch.tensor([1.0, 0.05, 0.5, 0.2, 0.9, 0.1], dtype=torch.float64)])
@pytest.mark.parametrize("signed", [False, True])
def test_linear_optimum_matches_monte_carlo_of_the_explicit_solution(p, signed):
    importance = 0.8 ** torch.arange(6, dtype=torch.float64)
    for m in (0, 2, 4):
        exact = linear_optimal_loss(importance, p, m, signed=signed)
        estimate = mc_loss_of_explicit_optimum(importance, torch.as_tensor(p, dtype=torch.float64), m, signed)
        assert isinstance(exact, float)
        assert estimate == pytest.approx(exact, rel=0.03, abs=1e-5)


def test_explicit_optimum_beats_perturbations():
    """No nearby W (and its best bias) does better: the closed form is a minimum, not just a value."""
    importance = 0.7 ** torch.arange(5, dtype=torch.float64)
    best = linear_optimal_loss(importance, 0.5, 2)
    g = torch.Generator().manual_seed(4)
    mean, var = feature_moments(torch.tensor(0.5))
    cov = torch.diag(var.expand(5))
    for _ in range(20):
        W = torch.zeros(5, 2, dtype=torch.float64)
        W[0, 0] = W[1, 1] = 1.0
        W = W + 0.1 * torch.randn(5, 2, generator=g, dtype=torch.float64)
        E = W @ W.T - torch.eye(5, dtype=torch.float64)  # exact expected loss with b = (1 − M)μ
        loss = (torch.diag(importance) @ E @ cov @ E.T).diagonal().sum().item() / 5
        assert loss > best


def test_linear_optimum_monotone_in_n_hidden():
    importance = torch.rand(12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for p in (1.0, 0.1, 0.01):
        losses = [linear_optimal_loss(importance, p, m) for m in range(14)]
        assert all(a >= b for a, b in zip(losses, losses[1:], strict=False))
        assert losses[0] > 0 and losses[12] == losses[13] == 0.0


def test_linear_optimum_batches_over_instances():
    importance = 0.9 ** torch.arange(5, dtype=torch.float64)
    probs = torch.tensor([1.0, 0.3, 0.01], dtype=torch.float64)
    batched = linear_optimal_loss(importance, probs[:, None], 2)
    assert batched.shape == (3,)
    expected = torch.tensor([linear_optimal_loss(importance, p.item(), 2) for p in probs], dtype=torch.float64)
    torch.testing.assert_close(batched, expected)
    per_feature = probs[:, None].expand(3, 5)
    torch.testing.assert_close(linear_optimal_loss(importance.expand(3, 5), per_feature, 2), expected)


def test_linear_optimum_known_value():
    # Uniform importance, p = 1: var = 1/3 − 1/4 = 1/12 per feature; n = 5, m = 2 drops 3 features.
    assert linear_optimal_loss(torch.ones(5), 1.0, 2) == pytest.approx(3 / 12 / 5)
    assert linear_optimal_loss(torch.ones(5), 1.0, 2, signed=True) == pytest.approx(3 / 3 / 5)


def test_linear_optimum_rejects_bad_n_hidden():
    with pytest.raises(ValueError, match="n_hidden"):
        linear_optimal_loss(torch.ones(3), 1.0, -1)
