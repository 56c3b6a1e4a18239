"""Feature absorption on hierarchical features. Pure functions.

In hierarchy data (`DictionaryConfig(structure="hierarchy")`) features come in groups: a parent
and its children, a child only ever on together with its parent. An SAE rewarded for sparsity can
fold the parent's direction into each child's latent; then the latent that stands for the parent
stops firing whenever a child is on (Chanin et al. 2024, "A is for Absorption"). We measure it as

    absorption rate of group g = P(parent latent silent | some child of g on)

where the parent latent is the dictionary element with the largest cosine with the parent's
direction. Its complement on parent-only examples (`parent_recall`) shows the latent is the
parent's: it fires when the parent is on alone.

Shapes: directions ``[feat, hidden]``, gates bool ``[batch, feat]``, decoder ``[inst, latent, hidden]``,
mask ``[inst, latent]``, acts ``[inst, batch, latent]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .metrics import cosine_matrix


@dataclass(frozen=True)
class AbsorptionScores:
    """Per instance ``[inst]`` means over parent groups (groups never seen with a child are skipped)."""

    rate: Tensor
    """P(parent latent silent | a child on)."""
    parent_recall: Tensor
    """P(parent latent fires | the parent on without any child)."""
    parent_cosine: Tensor
    """Cosine between each parent direction and its latent's decoder row."""


def parent_latents(directions: Tensor, decoder: Tensor, mask: Tensor, n_children: int) -> tuple[Tensor, Tensor]:
    """For each group, the latent best aligned with the parent: index and cosine, both ``[inst, group]``."""
    parents = directions[:: 1 + n_children]
    cos = cosine_matrix(parents, decoder).masked_fill(~mask.unsqueeze(1), float("-inf"))
    best = cos.max(-1)
    return best.indices, best.values


def absorption(directions: Tensor, gates: Tensor, decoder: Tensor, mask: Tensor, acts: Tensor,
               n_children: int) -> AbsorptionScores:
    """Absorption rate, parent recall and parent cosine of every instance."""
    group = 1 + n_children
    n_groups = gates.shape[1] // group
    index, cosine = parent_latents(directions, decoder, mask, n_children)
    fires = torch.gather(acts > 0, 2, index.unsqueeze(1).expand(-1, acts.shape[1], -1))  # [inst, batch, group]
    g = gates.view(gates.shape[0], n_groups, group)
    child_on = g[:, :, 1:].any(-1)  # [batch, group]; the parent is on whenever this is
    alone = g[:, :, 0] & ~child_on
    rate = _mean_over_groups(~fires, child_on)
    recall = _mean_over_groups(fires, alone)
    return AbsorptionScores(rate, recall, cosine.mean(-1))


def _mean_over_groups(event: Tensor, given: Tensor) -> Tensor:
    """Mean over groups of P(event | given); ``event [inst, batch, group]``, ``given [batch, group]``."""
    count = given.sum(0)  # [group]
    hits = (event & given.unsqueeze(0)).sum(1).float()  # [inst, group]
    seen = count > 0
    return (hits[:, seen] / count[seen]).mean(-1)
