"""Geometry of correlated and anticorrelated feature sets (the paper's section 5.3).

Features come in sets of `set_size` consecutive features (as `DataConfig.set_size` defines them).
The paper finds that a ReLU output model

- puts correlated features (a set that is active together) in orthogonal directions, and lets
  different sets share dimensions, even antipodally: each set becomes a *local almost-orthogonal
  basis* (`set_overlaps`);
- puts anticorrelated features (never active together) in opposite directions
  (`antipodal_pairing`);
- when correlated features cannot all be orthogonal, places them side by side and, as density
  rises, collapses each pair onto its principal component, the pair's sum (`pair_collapse`).

Shapes: ``W [inst, feat, hidden]`` (any leading axes, or a single ``[feat, hidden]``), results per
instance or per ``[inst, set]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int, Real
from torch import Tensor

from .geometry import REPRESENTED_THRESHOLD, represented, unit_directions


def set_index(n_features: int, set_size: int) -> Int[Tensor, " feat"]:
    """The set of every feature: consecutive features share a set. **Returns:** int64 ``[feat]``."""
    if set_size < 1 or n_features % set_size:
        raise ValueError(f"set_size = {set_size} must divide n_features = {n_features}")
    return torch.arange(n_features) // set_size


def cosines(W: Float[Tensor, "*inst feat hidden"]) -> Float[Tensor, "*inst feat feat"]:
    """cos(W_i, W_j) = Ŵ_i·Ŵ_j (0 for a dead feature). **Returns:** ``[inst, feat, feat]``."""
    u = unit_directions(W)
    return u @ u.transpose(-1, -2)


def _same_set(n_features: int, set_size: int, device: torch.device) -> Tensor:
    sets = set_index(n_features, set_size).to(device)
    return sets.view(-1, 1) == sets.view(1, -1)


@dataclass(frozen=True)
class SetOverlaps:
    """Overlaps between features of the same set and of different sets (represented features only)."""

    within_max: Tensor
    """``[inst]``: the largest |cos| between two represented features of one set (0 when none)."""
    between_mean: Tensor
    """``[inst]``: mean over represented features of Σ_{j in other sets} cos(W_i, W_j)²: how much
    of a feature's direction the other sets cover (1 when they span it, 0 when orthogonal)."""
    within_mean: Tensor
    """``[inst]``: the same sum over the feature's own set (j ≠ i); 0 for an orthogonal basis."""


def set_overlaps(W: Float[Tensor, "*inst feat hidden"], set_size: int,
                 threshold: float = REPRESENTED_THRESHOLD) -> SetOverlaps:
    """Is each set a local orthogonal basis, and do sets share the space with each other?

    **Arguments:** ``W [inst, feat, hidden]``; `set_size` consecutive features per set.
    **Returns:** a `SetOverlaps` with ``[inst]`` fields.
    """
    W = torch.as_tensor(W)
    n = W.shape[-2]
    cos = cosines(W)
    on = represented(W, threshold)
    pair_on = on.unsqueeze(-1) & on.unsqueeze(-2)
    same = _same_set(n, set_size, W.device) & ~torch.eye(n, dtype=torch.bool, device=W.device)
    other = ~_same_set(n, set_size, W.device)
    within_max = torch.where(pair_on & same, cos.abs(), torch.zeros_like(cos)).amax((-2, -1))
    sq = torch.where(pair_on, cos.square(), torch.zeros_like(cos))
    count = on.sum(-1).clamp_min(1).to(cos.dtype)
    between = torch.where(on, (sq * other).sum(-1), torch.zeros_like(sq[..., 0])).sum(-1) / count
    within = torch.where(on, (sq * same).sum(-1), torch.zeros_like(sq[..., 0])).sum(-1) / count
    return SetOverlaps(within_max, between, within)


def pair_collapse(W: Real[Tensor, "*inst feat hidden"], set_size: int = 2) -> Float[Tensor, "*inst set"]:
    """How far each set has collapsed onto one direction: σ₁² / Σσ² of the set's rows of W.

    1 when every member points the same way (the model stores only the set's principal component,
    its sum); 1/k for k orthogonal members of equal norm; for a pair of equal norms (1 + |cos|) / 2.
    NaN for a set with W = 0.

    **Arguments:** ``W [inst, feat, hidden]``. **Returns:** ``[inst, set]``.
    """
    W = torch.as_tensor(W)
    W = W if W.is_floating_point() else W.float()
    *lead, n, m = W.shape
    blocks = W.reshape(*lead, n // set_size, set_size, m)
    s = torch.linalg.svdvals(blocks).square()
    return s[..., 0] / s.sum(-1)


def pair_cosine(W: Float[Tensor, "*inst feat hidden"], set_size: int = 2) -> Float[Tensor, "*inst pair"]:
    """cos between the two features of every pair (sets of 2). **Returns:** ``[inst, pair]``."""
    if set_size != 2:
        raise ValueError(f"pair_cosine needs sets of 2 features, got set_size = {set_size}")
    u = unit_directions(W)
    return (u[..., 0::2, :] * u[..., 1::2, :]).sum(-1)


@dataclass(frozen=True)
class AntipodalPairing:
    """Each feature's most opposed other feature."""

    partner: Tensor
    """int64 ``[inst, feat]``: argmin_j≠i cos(W_i, W_j)."""
    cos: Tensor
    """``[inst, feat]``: that cosine (-1 for an exact antipodal pair)."""
    mutual: Tensor
    """bool ``[inst, feat]``: the partner's partner is the feature itself."""
    off_pair_max: Tensor
    """``[inst, feat]``: the largest |cos| with any feature other than itself and its partner
    (0 when the pair is orthogonal to every other feature, as in a cross-polytope)."""


def antipodal_pairing(W: Float[Tensor, "*inst feat hidden"]) -> AntipodalPairing:
    """Pair every feature with its most opposed feature (dead features have cos 0 with all).

    **Arguments:** ``W [inst, feat, hidden]`` with at least 2 features. **Returns:** an `AntipodalPairing`.
    """
    W = torch.as_tensor(W)
    n = W.shape[-2]
    if n < 2:
        raise ValueError("antipodal_pairing needs at least 2 features")
    cos = cosines(W)
    eye = torch.eye(n, dtype=torch.bool, device=W.device)
    value, partner = cos.masked_fill(eye, float("inf")).min(-1)
    mutual = partner.gather(-1, partner) == torch.arange(n, device=W.device)
    is_partner = torch.nn.functional.one_hot(partner, n).bool()
    off = cos.abs().masked_fill(eye | is_partner, 0.0).amax(-1)
    return AntipodalPairing(partner, value, mutual, off)


@dataclass(frozen=True)
class PlanarLayout:
    """Features of a 2-d hidden space in angular order."""

    order: Tensor
    """int64 ``[inst, feat]``: features sorted by the angle of W_i."""
    gaps: Tensor
    """``[inst, feat]``: degrees from ``order[k]`` to the next feature counter-clockwise (sum 360)."""


def planar_layout(W: Float[Tensor, "*inst feat 2"]) -> PlanarLayout:
    """Angular order of the features of a 2-d model and the gaps between angular neighbours.

    **Arguments:** ``W [inst, feat, 2]``. **Returns:** a `PlanarLayout`.
    """
    W = torch.as_tensor(W)
    if W.shape[-1] != 2:
        raise ValueError(f"planar_layout needs a 2-d hidden space, got hidden size {W.shape[-1]}")
    angles, order = torch.sort(torch.rad2deg(torch.atan2(W[..., 1], W[..., 0])), dim=-1)
    gaps = torch.diff(torch.cat([angles, angles[..., :1] + 360.0], dim=-1), dim=-1)
    return PlanarLayout(order, gaps)


def sets_contiguous(W: Float[Tensor, "*inst feat 2"], set_size: int) -> Bool[Tensor, "*inst"]:
    """Whether, going round the circle, the members of every set are consecutive (a 2-d model's
    correlated features side by side). **Arguments:** ``W [inst, feat, 2]``. **Returns:** bool ``[inst]``.
    """
    layout = planar_layout(W)
    sets = set_index(W.shape[-2], set_size).to(layout.order.device)[layout.order]  # [inst, feat]
    changes = (sets != torch.roll(sets, 1, dims=-1)).sum(-1)
    n_sets = W.shape[-2] // set_size
    return changes == (n_sets if n_sets > 1 else 0)
