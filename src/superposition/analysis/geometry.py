# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Geometry of the learned feature embedding W: norms, overlaps, superposition, dimensionality.

Shapes follow the package vocabulary: ``W [inst, feat, hidden]``, where row ``W[k, i]`` is the
paper's column W_i (feature i's direction in the hidden space of instance k). Every function
works on the last two axes only, so any leading axes are batch axes: a single model
``W [feat, hidden]`` gives results without the ``inst`` axis, and ``[inst, snapshot, feat,
hidden]`` works too. Results have W's floating dtype (integers are promoted to float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int, Real
from torch import Tensor

EPS = 1e-12
"""Norms below this count as zero: a dead feature has no direction, so no overlap with others."""

REPRESENTED_THRESHOLD = 0.5
"""‖W_i‖ above this counts as represented (the paper's learned norms are ≈1 or ≈0)."""


def _as_float(W: Tensor) -> Tensor:
    W = torch.as_tensor(W)
    if W.ndim < 2:
        raise ValueError(f"W must have shape [..., feat, hidden], got {tuple(W.shape)}")
    return W if W.is_floating_point() else W.float()


def feature_norms(W: Real[Tensor, "*inst feat hidden"]) -> Float[Tensor, "*inst feat"]:
    """‖W_i‖ for every feature.

    **Arguments:** ``W [inst, feat, hidden]`` (or ``[feat, hidden]``).
    **Returns:** ``[inst, feat]`` (or ``[feat]``).
    """
    return torch.linalg.vector_norm(_as_float(W), dim=-1)


def unit_directions(W: Real[Tensor, "*inst feat hidden"], eps: float = EPS) -> Float[Tensor, "*inst feat hidden"]:
    """Ŵ_i = W_i / ‖W_i‖, with dead features (norm <= eps) mapped to the zero vector.

    **Arguments:** ``W [inst, feat, hidden]``. **Returns:** ``[inst, feat, hidden]``.
    """
    W = _as_float(W)
    norms = feature_norms(W).unsqueeze(-1)
    return torch.where(norms > eps, W / norms.clamp_min(eps), torch.zeros_like(W))


def gram(W: Real[Tensor, "*inst feat hidden"]) -> Float[Tensor, "*inst feat feat"]:
    """The paper's WᵀW: entry (i, j) is W_i·W_j.

    **Arguments:** ``W [inst, feat, hidden]``. **Returns:** ``[inst, feat, feat]``, symmetric.
    """
    W = _as_float(W)
    return W @ W.transpose(-1, -2)


def _projections(W: Tensor, eps: float) -> Tensor:
    """Entry (i, j) is Ŵ_i·W_j: ``[inst, feat, feat]`` (not symmetric)."""
    W = _as_float(W)
    return unit_directions(W, eps) @ W.transpose(-1, -2)


def interference(W: Real[Tensor, "*inst feat hidden"], eps: float = EPS) -> Float[Tensor, "*inst feat"]:
    """The paper's superposition measure Σ_{j≠i} (Ŵ_i·W_j)².

    0 for a feature orthogonal to all others (or dead), 1 for one of an antipodal pair of unit
    vectors, and larger when many features share its direction.

    **Arguments:** ``W [inst, feat, hidden]``. **Returns:** ``[inst, feat]``.
    """
    sq = _projections(W, eps) ** 2
    return sq.sum(-1) - sq.diagonal(dim1=-2, dim2=-1)


def dimensions_per_feature(W: Real[Tensor, "*inst feat hidden"]) -> Float[Tensor, "*inst"]:
    """D* = m / ‖W‖_F²: hidden dimensions per (unit-norm) embedded feature.

    1 when features are orthonormal, 1/2 for antipodal pairs; ``inf`` for W = 0.

    **Arguments:** ``W [inst, feat, hidden]``. **Returns:** ``[inst]``.
    """
    W = _as_float(W)
    return W.shape[-1] / W.square().sum(dim=(-2, -1))


def feature_dimensionality(W: Real[Tensor, "*inst feat hidden"], eps: float = EPS) -> Float[Tensor, "*inst feat"]:
    """D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)², j including i: the fraction of a dimension feature i gets.

    Equal to ‖W_i‖² / (‖W_i‖² + interference_i). Uniform polytopes give 1 (orthogonal), 3/4
    (tetrahedron), 2/3 (triangle), 1/2 (antipodal pair), 2/5 (pentagon), 3/8 (square antiprism).
    Dead features (norm <= eps) give 0.

    **Arguments:** ``W [inst, feat, hidden]``. **Returns:** ``[inst, feat]``.
    """
    W = _as_float(W)
    norm_sq = feature_norms(W).square()
    total = (_projections(W, eps) ** 2).sum(-1)
    alive = feature_norms(W) > eps
    return torch.where(alive, norm_sq / total.clamp_min(eps * eps), torch.zeros_like(norm_sq))


def represented(W: Real[Tensor, "*inst feat hidden"], threshold: float = REPRESENTED_THRESHOLD) -> Bool[Tensor,
                "*inst feat"]:
    """Whether each feature is embedded: ‖W_i‖ > threshold.

    **Arguments:** ``W [inst, feat, hidden]``. **Returns:** bool ``[inst, feat]``.
    """
    return feature_norms(W) > threshold


def represented_count(W: Real[Tensor, "*inst feat hidden"], threshold: float = REPRESENTED_THRESHOLD) -> Int[Tensor,
                      "*inst"]:
    """How many features each instance embeds (‖W_i‖ > threshold).

    **Arguments:** ``W [inst, feat, hidden]``. **Returns:** int64 ``[inst]``.
    """
    return represented(W, threshold).sum(-1)


@dataclass(frozen=True)
class GeometrySummary:
    """Per-instance headline numbers of a W; every field is ``[inst]`` (or 0-d for one model)."""

    represented: Tensor
    """int64: features with ‖W_i‖ > threshold."""
    dimensions_per_feature: Tensor
    """D* = m / ‖W‖_F²."""
    mean_interference: Tensor
    """Mean of Σ_{j≠i}(Ŵ_i·W_j)² over the represented features (0 when none is)."""
    n_features: int
    n_hidden: int
    threshold: float


def summarize(W: Real[Tensor, "*inst feat hidden"], threshold: float = REPRESENTED_THRESHOLD) -> GeometrySummary:
    """The headline geometry of each instance (what `superposition show` prints).

    **Arguments:** ``W [inst, feat, hidden]`` (or ``[feat, hidden]``).
    **Returns:** a `GeometrySummary` with ``[inst]`` fields.
    """
    W = _as_float(W)
    mask = represented(W, threshold)
    count = mask.sum(-1)
    inter = torch.where(mask, interference(W), torch.zeros((), dtype=W.dtype)).sum(-1)
    mean_inter = inter / count.clamp_min(1).to(W.dtype)
    return GeometrySummary(
        represented=count,
        dimensions_per_feature=dimensions_per_feature(W),
        mean_interference=mean_inter,
        n_features=W.shape[-2],
        n_hidden=W.shape[-1],
        threshold=threshold,
    )
