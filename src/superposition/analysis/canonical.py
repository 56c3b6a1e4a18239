# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""A canonical orientation of the hidden space, so that solutions can be compared by eye or by number.

The toy models with ``linear`` or ``relu_output`` kind only see W through WᵀW (the output is
ReLU(WᵀWx + b)), so rotating or reflecting the hidden space, W → W O for any orthogonal O, leaves the
model's output unchanged: every solution comes with a continuous family of equivalent copies. To
compare two trained models (different restarts, different densities) we map each to one
representative of its family.

The canonical basis is Gram–Schmidt over the features in a chosen reference order: the first
reference feature that is not (near) zero defines +e₁; the next whose component orthogonal to the
basis so far is not (near) zero defines +e₂, and so on (features left out of the order follow in
index order); any dimensions the features do not span are completed from the standard basis
(features have no component there, so the completion does not change the result). For 2-d W and
the order (v, a, b, ...) this is: rotate so feature v points along +x (or feature a, when v is ~0),
then flip so the next feature off that axis has positive y.

Because the basis is built from the features themselves, ``canonicalize(W @ O) == canonicalize(W)``
for every orthogonal O (up to float rounding), as long as no reference feature sits right at the
tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

CANONICAL_TOLERANCE = 0.1
"""A reference feature (or its residual orthogonal to the basis so far) shorter than this is skipped."""


def canonical_basis(W: Float[Tensor, "*inst feat hidden"], order: Sequence[int] | None = None,
                    tol: float = CANONICAL_TOLERANCE) -> Float[Tensor, "*inst hidden hidden"]:
    """The orthonormal basis of the hidden space that `canonicalize` expresses W in.

    **Arguments:**
    - ``W``: ``[..., feat, hidden]``; leading axes (e.g. ``inst``) are batch axes.
    - ``order``: features to build the basis from, first to last (default 0, 1, ..., feat − 1);
      the features it leaves out follow in index order.
    - ``tol``: residual norms at or below this are skipped (a dead feature, or one antipodal or
      parallel to the basis so far).

    **Returns:** ``Q [..., hidden, hidden]``, orthogonal, column k the k-th basis vector; W @ Q is
    the canonical W.
    """
    W = _as_float(W)
    n_feat, m = W.shape[-2:]
    order = list(range(n_feat)) if order is None else list(order)
    if any(not 0 <= i < n_feat for i in order):
        raise ValueError(f"order {order} names features outside 0 … {n_feat - 1}")
    rows = torch.zeros(*W.shape[:-2], m, m, dtype=W.dtype, device=W.device)  # basis vectors as rows
    count = torch.zeros(W.shape[:-2], dtype=torch.long, device=W.device)
    eye = torch.eye(m, dtype=W.dtype, device=W.device)
    rest = [i for i in range(n_feat) if i not in order]  # then every other feature: the basis stays canonical
    # Short residuals only when nothing longer is left (so tiny components still fix the sign of
    # their axis); the standard basis only for dimensions no feature reaches at all.
    candidates = [(W[..., i, :], threshold) for threshold in (tol, 1e-12) for i in order + rest]
    candidates += [(eye[k].expand_as(W[..., 0, :]), 1e-6) for k in range(m)]
    for vec, threshold in candidates:
        rows, count = _gram_schmidt_step(rows, count, vec, threshold)
    return rows.transpose(-1, -2)


def _gram_schmidt_step(rows: Tensor, count: Tensor, vec: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """Add ``vec [..., hidden]``'s residual as basis row `count` where it is longer than `tol`.

    Unfilled rows of ``rows [..., hidden, hidden]`` are zero, so they project nothing out.
    """
    m = rows.shape[-1]
    residual = vec - ((rows @ vec.unsqueeze(-1)) * rows).sum(-2)
    length = torch.linalg.vector_norm(residual, dim=-1)
    accept = (length > tol) & (count < m)
    slot = torch.nn.functional.one_hot(count.clamp(max=m - 1), m).to(rows.dtype) * accept.unsqueeze(-1)
    unit = residual / length.clamp_min(1e-30).unsqueeze(-1)
    rows = rows + slot.unsqueeze(-1) * unit.unsqueeze(-2)
    return rows, count + accept.long()


def canonicalize(W: Float[Tensor, "*inst feat hidden"], order: Sequence[int] | None = None,
                 tol: float = CANONICAL_TOLERANCE) -> Float[Tensor, "*inst feat hidden"]:
    """W in its canonical orientation: W @ `canonical_basis` (a rotation, possibly with a flip).

    In 2-d with ``order = (v, a, ...)``: feature v lies on +x (feature a when ‖W_v‖ ≤ tol), and the
    first later feature off that axis has positive y. Norms and all dot products W_i·W_j are kept.

    **Arguments:** ``W [..., feat, hidden]``; ``order`` and ``tol`` as in `canonical_basis`.
    **Returns:** ``[..., feat, hidden]``.
    """
    W = _as_float(W)
    return W @ canonical_basis(W, order, tol)


def feature_angles(W: Float[Tensor, "*inst feat 2"]) -> Float[Tensor, "*inst feat"]:
    """Angle of each feature in a 2-d hidden space, in degrees in (−180, 180]: atan2(y, x).

    **Arguments:** ``W [..., feat, 2]``. **Returns:** ``[..., feat]``.
    """
    W = _as_float(W)
    if W.shape[-1] != 2:
        raise ValueError(f"feature_angles needs a 2-d hidden space, got hidden size {W.shape[-1]}")
    return torch.rad2deg(torch.atan2(W[..., 1], W[..., 0]))


def angular_gaps(W: Float[Tensor, "*inst feat 2"]) -> Float[Tensor, "*inst feat"]:
    """Angles (degrees) between angularly adjacent features of a 2-d hidden space, sorted by angle.

    A regular pentagon gives five gaps of 72°; two orthogonal antipodal pairs four of 90°. Every
    feature counts, so drop dead ones first when they should not.

    **Arguments:** ``W [..., feat, 2]``. **Returns:** ``[..., feat]``, summing to 360.
    """
    angles = torch.sort(feature_angles(W), dim=-1).values
    return torch.diff(torch.cat([angles, angles[..., :1] + 360.0], dim=-1), dim=-1)


def neighbour_angles(W: Float[Tensor, "*inst feat 2"], feature: int, threshold: float = 0.5) -> Float[Tensor,
                     "*inst 2"]:
    """Angles (degrees) from feature `feature` to its nearest represented neighbour on each side, in 2-d.

    Only features with ‖W_j‖ > threshold count as neighbours. A regular pentagon gives (72, 72).

    **Arguments:** ``W [..., feat, 2]``; ``feature`` an index; ``threshold`` the norm of a
    represented feature.
    **Returns:** ``[..., 2]``: (counter-clockwise, clockwise) gaps, each in (0, 360]; 360 when the
    feature has no represented neighbour.
    """
    W = _as_float(W)
    angles = feature_angles(W)
    rel = torch.remainder(angles - angles[..., feature : feature + 1], 360.0)  # [..., feat] in [0, 360)
    others = torch.linalg.vector_norm(W, dim=-1) > threshold
    others[..., feature] = False
    big = torch.full_like(rel, 360.0)
    ccw = torch.where(others & (rel > 0), rel, big).min(-1).values
    cw = torch.where(others & (rel > 0), 360.0 - rel, big).min(-1).values
    return torch.stack([ccw, cw], dim=-1)


def _as_float(W: Tensor) -> Tensor:
    W = torch.as_tensor(W)
    if W.ndim < 2:
        raise ValueError(f"W must have shape [..., feat, hidden], got {tuple(W.shape)}")
    return W if W.is_floating_point() else W.float()
