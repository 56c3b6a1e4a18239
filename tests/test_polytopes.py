# ruff: noqa: N803 - W is the paper's name for the embedding matrix
"""Polytope classification and tegum-factor decomposition on weights built by hand."""

import math

import pytest
import torch

from superposition.analysis import feature_dimensionality
from superposition.analysis.polytopes import (
    OTHER,
    SHAPE_NAMES,
    SHAPES,
    classify_shape,
    connected_components,
    dimensionality_peaks,
    interference_graph,
    shape_counts,
    tegum_factors,
    vector_rank,
)

from .conftest import unchecked

# --- shapes built from their own coordinates (independently of the module's templates) ---------


def polygon(k: int) -> torch.Tensor:
    angles = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    return torch.stack([angles.cos(), angles.sin()], -1)


def tetrahedron() -> torch.Tensor:
    return torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64) / math.sqrt(3)


def square_antiprism() -> torch.Tensor:
    """Unit vectors of the square antiprism with D_i = 3/8: squares at z = ±1/√3, the lower one turned 45°."""
    s = 1 / math.sqrt(3)
    r = math.sqrt(2) * s
    quarter = [i * math.pi / 2 for i in range(4)]
    top = [[r * math.cos(a), r * math.sin(a), s] for a in quarter]
    bottom = [[r * math.cos(a + math.pi / 4), r * math.sin(a + math.pi / 4), -s] for a in quarter]
    return torch.tensor(top + bottom, dtype=torch.float64)


def cube() -> torch.Tensor:
    return torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float64) / 3**0.5


SHAPES_BY_HAND = {
    "single": (torch.tensor([[1.0]], dtype=torch.float64), 1.0),
    "digon": (torch.tensor([[1.0], [-1.0]], dtype=torch.float64), 1 / 2),
    "triangle": (polygon(3), 2 / 3),
    "tetrahedron": (tetrahedron(), 3 / 4),
    "pentagon": (polygon(5), 2 / 5),
    "square antiprism": (square_antiprism(), 3 / 8),
    "cube": (cube(), 3 / 8),
    "square": (polygon(4), 1 / 2),
    "octahedron": (torch.cat([torch.eye(3), -torch.eye(3)]).double(), 1 / 2),
}


def rotation(m: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(m, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def embed(V: torch.Tensor, m: int, seed: int = 0, offset: int = 0) -> torch.Tensor:
    """V [k, r] placed in dimensions offset … offset + r of an m-dim space, then rotated: [k, m]."""
    padded = V.new_zeros(V.shape[0], m)
    padded[:, offset:offset + V.shape[1]] = V
    return padded @ rotation(m, seed)


def noisy(W: torch.Tensor, scale: float, seed: int = 1) -> torch.Tensor:
    return W + scale * torch.randn(W.shape, generator=torch.Generator().manual_seed(seed), dtype=W.dtype)


def test_every_template_is_in_the_hand_built_set():
    assert {s.name for s in SHAPES} == set(SHAPES_BY_HAND)
    assert SHAPE_NAMES[-1] == OTHER


@pytest.mark.parametrize("name", SHAPES_BY_HAND)
def test_each_shape_is_recognised_rotated_embedded_scaled_and_noisy(name):
    V, d = SHAPES_BY_HAND[name]
    for W in (V, embed(V, 10, seed=3), 1.3 * embed(V, 30, seed=4), noisy(embed(V, 12, seed=5), 0.01)):
        match = classify_shape(W)
        assert match.shape == name, (name, match)
        assert match.rank == torch.linalg.matrix_rank(V).item()
        assert match.deviation < 0.1
    assert next(s for s in SHAPES if s.name == name).dimensionality == pytest.approx(d)
    torch.testing.assert_close(feature_dimensionality(V), torch.full((V.shape[0],), d, dtype=V.dtype))


def test_features_in_a_different_order_match_the_same_shape():
    V = embed(square_antiprism(), 6, seed=7)[torch.randperm(8, generator=torch.Generator().manual_seed(0))]
    assert classify_shape(V).shape == "square antiprism"


@pytest.mark.parametrize("W", [
    torch.tensor([[1.0, 0.0], [0.5, 0.8660254], [-1.0, 0.0]], dtype=torch.float64),  # 3 in a plane, not a triangle
    polygon(6),  # a hexagon: no template
    polygon(5)[torch.tensor([0, 1, 2, 3])],  # a pentagon missing a vertex
    torch.cat([polygon(3), tetrahedron()[:1, :2]]),  # 4 vectors of rank 2
    torch.tensor([[1.0, 0.0], [-0.5, 0.0]], dtype=torch.float64),  # antipodal but unequal norms
    torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64),  # 8 random in 3-D
], ids=["wedge", "hexagon", "partial-pentagon", "rank-2-quad", "unequal-digon", "random-8"])
def test_non_polytopes_are_other(W):
    match = classify_shape(W)
    assert match.shape == OTHER and math.isnan(match.deviation)


def test_too_much_noise_is_other():
    assert classify_shape(noisy(embed(polygon(5), 8), 0.2, seed=2)).shape == OTHER


def test_vector_rank_ignores_norms_and_small_noise():
    assert vector_rank(noisy(embed(tetrahedron(), 9), 0.01)) == 3
    assert vector_rank(torch.tensor([[5.0, 0.0], [0.0, 0.1]])) == 2


# --- decomposition ----------------------------------------------------------------------------


def tegum_product(*parts: torch.Tensor, m: int, seed: int = 0) -> torch.Tensor:
    """The parts [k_j, r_j] in mutually orthogonal subspaces of an m-dim space, rotated: [Σk, m]."""
    rows, offset = [], 0
    for V in parts:
        padded = V.new_zeros(V.shape[0], m)
        padded[:, offset:offset + V.shape[1]] = V
        rows.append(padded)
        offset += V.shape[1]
    return torch.cat(rows) @ rotation(m, seed)


def test_tegum_product_splits_into_its_factors():
    parts = [polygon(5), torch.tensor([[1.0], [-1.0]]).double(), tetrahedron(), square_antiprism(),
             torch.tensor([[1.0]]).double(), polygon(3)]
    W = tegum_product(*parts, m=14)
    dead = 0.01 * torch.randn(3, 14, generator=torch.Generator().manual_seed(9), dtype=W.dtype)  # unrepresented
    W = noisy(torch.cat([dead, W]), 0.005)
    factors = tegum_factors(W)
    assert [f.shape for f in factors] == ["pentagon", "digon", "tetrahedron", "square antiprism", "single", "triangle"]
    assert [f.features for f in factors][:2] == [(3, 4, 5, 6, 7), (8, 9)]
    assert all(0 not in f.features for f in factors)
    expected = [2 / 5, 1 / 2, 3 / 4, 3 / 8, 1.0, 2 / 3]
    for f, d in zip(factors, expected, strict=True):
        assert f.dimensionality == pytest.approx((d,) * f.k, abs=0.02)
    counts = shape_counts(factors)
    assert counts["digon"] == 1 and counts[OTHER] == 0 and counts["cube"] == 0
    assert shape_counts(factors, features=True)["square antiprism"] == 8
    assert sum(f.rank for f in factors) == 12  # two of the 14 dimensions are left empty


def test_orthogonal_digons_are_separate_factors_not_a_square():
    factors = tegum_factors(embed(polygon(4), 5))
    assert [f.shape for f in factors] == ["digon", "digon"]


def test_a_polytope_sharing_its_dimensions_with_unrepresented_features_is_other():
    digon_and_single = tegum_product(torch.tensor([[1.0], [-1.0]]).double(), torch.tensor([[1.0]]).double(), m=3)
    assert [f.shape for f in tegum_factors(digon_and_single)] == ["digon", "single"]
    weak = 0.45 * digon_and_single  # below the 0.5 norm threshold, two along the digon and one along the single
    factors = tegum_factors(torch.cat([digon_and_single, weak]))
    assert [(f.features, f.shape) for f in factors] == [((0, 1), OTHER), ((2,), OTHER)]
    assert factors[1].dimensionality[0] < 0.9  # the single feature no longer has its dimension to itself


def test_interference_graph_and_components():
    W = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, 0.05, 1.0], [0, 0, 0.1]])
    A = interference_graph(W)
    assert A.dtype == torch.bool and torch.equal(A, A.T) and not A.diagonal().any()
    assert A[0, 1] and not A[2, 3] and not A[3, 4]  # |cos| 0.05 is no edge; feature 4 is not represented
    assert connected_components(A, [0, 1, 2, 3]) == [(0, 1), (2,), (3,)]
    chain = torch.zeros(4, 4, dtype=torch.bool)
    chain[0, 2] = chain[2, 0] = chain[2, 3] = chain[3, 2] = True
    assert connected_components(chain, range(4)) == [(0, 2, 3), (1,)]


def test_tegum_factors_wants_one_model():
    with pytest.raises(ValueError, match="one model"):
        unchecked(tegum_factors)(torch.zeros(2, 3, 4))


def test_dimensionality_peaks():
    D = torch.tensor([0.5] * 10 + [0.49, 0.52] + [0.4] * 3 + [0.45, 0.6, 0.7])
    (half,) = dimensionality_peaks(D, {"1/2": 0.5}, width=0.03)
    (fifth,) = dimensionality_peaks(D, {"2/5": 0.4}, width=0.03)
    assert (half.count, half.left, half.right) == (12, 1, 0)
    assert half.is_peak() and half.is_peak(prominence=5, min_count=12) and not half.is_peak(prominence=12)
    assert (fifth.count, fifth.left, fifth.right) == (3, 0, 1)
    assert fifth.is_peak(prominence=2) and not fifth.is_peak(prominence=3) and not fifth.is_peak(min_count=4)
    # 3/8 and 2/5 are 0.025 apart: with w = 0.0125 each one's neighbouring window skips the other's.
    near = torch.tensor([0.375] * 6 + [0.4] * 5 + [0.35, 0.42])
    three_eighths, two_fifths = dimensionality_peaks(near, {"3/8": 0.375, "2/5": 0.4}, width=0.0125)
    assert (three_eighths.count, three_eighths.left, three_eighths.right) == (6, 1, 1)
    assert (two_fifths.count, two_fifths.left, two_fifths.right) == (5, 1, 1)
    assert three_eighths.is_peak(prominence=2) and two_fifths.is_peak(prominence=2)
    flat = dimensionality_peaks(torch.arange(0.005, 1, 0.01), {"1/2": 0.5}, width=0.03)[0]  # 6 per window
    assert not flat.is_peak()
