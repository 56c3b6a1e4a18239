"""Canonical orientation of the hidden space: invariance under rotations and flips, and why it is
allowed (the model's output does not change under an orthogonal transform of W's hidden space)."""

import math

import pytest
import torch

from superposition.analysis.canonical import (
    angular_gaps,
    canonical_basis,
    canonicalize,
    feature_angles,
    neighbour_angles,
)
from superposition.models import forward

from .conftest import unchecked


def random_orthogonal(m: int, generator: torch.Generator, flip: bool) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(m, m, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if flip:
        q[:, 0] = -q[:, 0]
    return q


def polygon(k: int, radius: float = 1.0, start: float = 0.0) -> torch.Tensor:
    angles = start + torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], -1)


@pytest.mark.parametrize("m", [2, 3, 5])
@pytest.mark.parametrize("flip", [False, True])
def test_rotated_and_flipped_copies_canonicalise_to_the_same_matrix(m, flip):
    g = torch.Generator().manual_seed(m)
    W = torch.randn(4, 7, m, generator=g, dtype=torch.float64)  # [inst, feat, hidden]
    rot = random_orthogonal(m, g, flip)
    assert torch.allclose(canonicalize(W @ rot), canonicalize(W), atol=1e-10)
    assert torch.allclose(canonicalize(W @ rot, order=[3, 1, 0]), canonicalize(W, order=[3, 1, 0]), atol=1e-10)


def test_canonical_is_an_isometry_and_idempotent():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    Q = canonical_basis(W)
    assert torch.allclose(Q.transpose(-1, -2) @ Q, torch.eye(4, dtype=torch.float64).expand(3, 4, 4), atol=1e-12)
    C = canonicalize(W)
    assert torch.allclose(C @ C.transpose(-1, -2), W @ W.transpose(-1, -2), atol=1e-12)  # WᵀW kept
    assert torch.allclose(canonicalize(C), C, atol=1e-12)


def test_2d_varied_feature_on_positive_x_and_next_feature_above():
    W = polygon(5, start=1.0) @ random_orthogonal(2, torch.Generator().manual_seed(1), flip=True)
    C = canonicalize(W, order=[2, 0, 1, 3, 4])
    assert C[2, 0] == pytest.approx(1.0) and C[2, 1] == pytest.approx(0.0, abs=1e-12)
    assert C[0, 1] > 0
    assert torch.allclose(angular_gaps(C), torch.full((5,), 72.0, dtype=torch.float64))


def test_dropped_feature_hands_over_to_the_next_and_antipodes_are_skipped():
    # Varied feature 0 dropped; 1 and 3 antipodal, 2 and 4 antipodal: two digons.
    W = torch.tensor([[0.01, 0.02], [0.6, 0.8], [-0.8, 0.6], [-0.6, -0.8], [0.8, -0.6]], dtype=torch.float64)
    C = canonicalize(W)  # order 0, 1, 2, ...: 0 is too short, 1 takes +x, 2 takes +y
    assert C[1].tolist() == pytest.approx([1.0, 0.0])
    assert C[2].tolist() == pytest.approx([0.0, 1.0], abs=1e-12)
    C = canonicalize(W, order=[0, 1, 3, 4])  # 3 is antipodal to 1: skipped, 4 decides the flip
    assert C[1].tolist() == pytest.approx([1.0, 0.0]) and C[4, 1] > 0
    flipped = W * torch.tensor([1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(canonicalize(flipped, order=[0, 1, 3, 4]), C, atol=1e-12)


def test_features_spanning_fewer_dimensions_than_hidden():
    W = torch.zeros(3, 4, dtype=torch.float64)
    W[0, 1] = 2.0  # one feature along hidden unit 1; everything else zero
    Q = canonical_basis(W)
    assert torch.allclose(Q.T @ Q, torch.eye(4, dtype=torch.float64))
    assert canonicalize(W)[0].tolist() == pytest.approx([2.0, 0.0, 0.0, 0.0])
    assert torch.equal(canonicalize(torch.zeros(2, 5, 3)), torch.zeros(2, 5, 3))


def test_order_is_validated():
    with pytest.raises(ValueError, match="outside"):
        canonical_basis(torch.ones(3, 2), order=[0, 3])
    with pytest.raises(ValueError, match="shape"):
        unchecked(canonicalize)(torch.ones(3))


@pytest.mark.parametrize("kind", ["linear", "relu_output"])
def test_model_output_is_unchanged_by_an_orthogonal_transform_of_the_hidden_space(kind):
    g = torch.Generator().manual_seed(2)
    W = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    b = torch.randn(3, 5, generator=g, dtype=torch.float64) * 0.1
    x = torch.rand(3, 64, 5, generator=g, dtype=torch.float64)
    rot = random_orthogonal(2, g, flip=True)
    out = forward(kind, {"W": W, "b": b}, x).output
    assert torch.allclose(forward(kind, {"W": W @ rot, "b": b}, x).output, out, atol=1e-12)
    assert torch.allclose(forward(kind, {"W": canonicalize(W), "b": b}, x).output, out, atol=1e-12)


def test_a_relu_on_the_hidden_layer_breaks_the_symmetry():
    """Why canonicalisation is only meant for models that see W through WᵀW."""
    g = torch.Generator().manual_seed(3)
    W = torch.randn(1, 5, 2, generator=g, dtype=torch.float64)
    x = torch.rand(1, 64, 5, generator=g, dtype=torch.float64)
    params = {"W": W, "b": torch.zeros(1, 5, dtype=torch.float64)}
    rotated = {"W": W @ random_orthogonal(2, g, flip=False), "b": params["b"]}
    assert not torch.allclose(forward("relu_hidden", rotated, x).output, forward("relu_hidden", params, x).output)


def test_angles_of_a_regular_pentagon():
    W = polygon(5, start=0.3)[None].expand(2, 5, 2)
    assert torch.allclose(neighbour_angles(W, 0), torch.full((2, 2), 72.0, dtype=torch.float64))
    assert torch.allclose(angular_gaps(W).sum(-1), torch.full((2,), 360.0, dtype=torch.float64))
    assert feature_angles(torch.tensor([[0.0, 1.0], [-1.0, 0.0]])).tolist() == pytest.approx([90.0, 180.0])


def test_neighbour_angles_ignore_dead_features_and_handle_loners():
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.01, -0.01], [0.0, -1.0]])
    assert neighbour_angles(W, 0).tolist() == pytest.approx([90.0, 90.0])
    alone = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert neighbour_angles(alone, 0).tolist() == [360.0, 360.0]
    with pytest.raises(ValueError, match="2-d"):
        unchecked(feature_angles)(torch.ones(4, 3))


def test_short_components_still_fix_the_orientation():
    """Features all within `tol` of one axis: their small off-axis parts decide the flip, not the
    standard basis."""
    W = torch.tensor([[1.0, 0.0], [0.9, 0.05], [-1.0, 0.02]], dtype=torch.float64)
    for flip in (False, True):
        rot = random_orthogonal(2, torch.Generator().manual_seed(4), flip)
        assert torch.allclose(canonicalize(W @ rot), canonicalize(W), atol=1e-10)
    assert canonicalize(W)[1, 1] > 0
