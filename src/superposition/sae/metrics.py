"""Scores of learned dictionaries against the truth and against each other. Pure functions.

Shapes: true features ``T [feat, hidden]`` (or ``[inst, feat, hidden]``), learned dictionaries
``D [inst, latent, hidden]`` with ``mask [inst, latent]`` (False for padding latents, which are
excluded everywhere), activations ``acts [inst, batch, latent]``, inputs ``x [batch, hidden]``
(shared by every instance) or ``[inst, batch, hidden]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

RECOVERED_COSINE = 0.9
"""A true feature counts as recovered when some dictionary element has cosine ≥ this with it."""
DENSE_FREQUENCY = 0.1
"""A latent firing on more than this fraction of examples counts as dense."""


def _unit_rows(t: Tensor) -> Tensor:
    return t / t.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def cosine_matrix(truth: Tensor, learned: Tensor) -> Tensor:
    """``[inst, feat, latent]`` cosines between true features and dictionary elements."""
    if truth.ndim == 2:
        truth = truth.expand(learned.shape[0], *truth.shape)
    return torch.bmm(_unit_rows(truth), _unit_rows(learned).transpose(1, 2))


def max_cosine(truth: Tensor, learned: Tensor, mask: Tensor | None = None) -> Tensor:
    """``[inst, feat]``: for each true feature, its best cosine with any (unmasked) dictionary element."""
    cos = cosine_matrix(truth, learned)
    if mask is not None:
        cos = cos.masked_fill(~mask.unsqueeze(1), float("-inf"))
    return cos.amax(-1)


def mmcs(truth: Tensor, learned: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean max cosine similarity ``[inst]`` (Sharkey et al.): the mean over true features of their
    best cosine with a dictionary element. 1 when every feature is in the dictionary."""
    return max_cosine(truth, learned, mask).mean(-1)


def mmcs_between(a: Tensor, b: Tensor, mask_a: Tensor | None = None, mask_b: Tensor | None = None) -> Tensor:
    """MMCS ``[inst]`` of dictionary `a` against dictionary `b` (both ``[inst, latent, hidden]``):
    the mean over a's (unmasked) elements of their best cosine with an element of b. Sharkey et
    al. compare a dictionary with a larger one this way to count features without ground truth."""
    best = max_cosine(a, b, mask_b)  # [inst, latent_a]
    if mask_a is None:
        return best.mean(-1)
    return torch.where(mask_a, best, 0.0).sum(-1) / mask_a.sum(-1).clamp(min=1)


MATCHLESS_COSINE = 0.5
"""A latent whose decoder direction has a cosine below this with every true feature matches none."""


def matchless_latents(truth: Tensor, learned: Tensor, mask: Tensor | None = None,
                      cosine: float = MATCHLESS_COSINE) -> Tensor:
    """int ``[inst]``: unmasked dictionary elements whose best cosine with every true feature is below
    `cosine` (latents that fire on combinations or fragments of features rather than on one)."""
    best = cosine_matrix(truth, learned).amax(1)  # [inst, latent]
    low = best < cosine
    return (low if mask is None else low & mask).sum(-1)


def doubled_latents(truth: Tensor, learned: Tensor, mask: Tensor | None = None,
                    threshold: float = RECOVERED_COSINE) -> Tensor:
    """int ``[inst]``: latents spent on a true feature another latent already covers: the latents whose best
    true feature they match at cosine ≥ `threshold`, minus the number of distinct features so matched."""
    cos = cosine_matrix(truth, learned)  # [inst, feat, latent]
    best, feature = cos.max(1)  # [inst, latent]
    matched = best >= threshold
    if mask is not None:
        matched = matched & mask
    per_feature = torch.zeros(cos.shape[:2], dtype=torch.long, device=cos.device)
    per_feature.scatter_add_(1, feature, matched.long())
    return matched.sum(-1) - (per_feature > 0).sum(-1)


def recovered(truth: Tensor, learned: Tensor, mask: Tensor | None = None,
              threshold: float = RECOVERED_COSINE) -> Tensor:
    """bool ``[inst, feat]``: true features with a dictionary element at cosine ≥ `threshold`."""
    return max_cosine(truth, learned, mask) >= threshold


def random_mmcs(n_hidden: int, n_latents: int) -> float:
    """The expected MMCS of a random dictionary: the expected best cosine of a fixed unit vector
    with `n_latents` random unit vectors in `n_hidden` dimensions.

    Each cosine is ≈ N(0, 1/n_hidden), so this is E[max of n_latents standard normals] / sqrt(n_hidden),
    with the Gumbel extreme-value expansion a − (ln ln n + ln 4π)/(2a) + γ/a, a = sqrt(2 ln n)
    (within ~1% of simulation for n_latents ≥ 100 and n_hidden ≫ 1).
    """
    a = math.sqrt(2.0 * math.log(n_latents))
    expected_max = a - (math.log(math.log(n_latents)) + math.log(4 * math.pi)) / (2 * a) + 0.5772156649 / a
    return expected_max / math.sqrt(n_hidden)


# --- activations -----------------------------------------------------------------------------


def firing_frequency(acts: Tensor) -> Tensor:
    """``[inst, latent]``: the fraction of examples on which each latent is non-zero."""
    return (acts > 0).float().mean(1)


def dead_latents(acts: Tensor, mask: Tensor) -> Tensor:
    """int ``[inst]``: unmasked latents that never fire on `acts`."""
    return ((firing_frequency(acts) == 0) & mask).sum(-1)


def dense_latents(acts: Tensor, mask: Tensor, frequency: float = DENSE_FREQUENCY) -> Tensor:
    """int ``[inst]``: unmasked latents firing on more than `frequency` of the examples."""
    return ((firing_frequency(acts) > frequency) & mask).sum(-1)


def l0(acts: Tensor) -> Tensor:
    """``[inst]``: mean number of non-zero latents per example."""
    return (acts > 0).float().sum(-1).mean(-1)


def fraction_variance_explained(x: Tensor, x_hat: Tensor) -> Tensor:
    """``[inst]``: 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (1 perfect, 0 no better than the mean)."""
    if x.ndim == 2:
        x = x.expand(x_hat.shape[0], *x.shape)
    residual = (x - x_hat).square().sum(dim=(1, 2))
    total = (x - x.mean(1, keepdim=True)).square().sum(dim=(1, 2))
    return 1.0 - residual / total.clamp(min=1e-30)


# --- the toy model with the SAE spliced in ---------------------------------------------------


@dataclass(frozen=True)
class SplicedLoss:
    """The toy model's importance-weighted loss with its hidden layer as is, replaced by the SAE's
    reconstruction, and zero-ablated; every field ``[inst]`` (one per SAE)."""

    clean: Tensor
    spliced: Tensor
    ablated: Tensor

    @property
    def loss_recovered(self) -> Tensor:
        """(ablated − spliced) / (ablated − clean): 1 when splicing costs nothing, 0 when it is as bad as ablation."""
        return (self.ablated - self.spliced) / (self.ablated - self.clean).clamp(min=1e-30)


def spliced_loss(readout: Callable[[Tensor], Tensor], goal: Tensor, importance: Tensor, hidden: Tensor,
                 reconstruction: Tensor, loss: Callable[[Tensor, Tensor, Tensor], Tensor]) -> SplicedLoss:
    """Loss of one toy model on a batch whose hidden layer is ``hidden [1, batch, hidden]``, as is,
    with each SAE's reconstruction ``[inst, batch, hidden]`` spliced in, and zero-ablated.
    `readout` maps ``[n, batch, hidden]`` to the model's output ``[n, batch, feat]``; `loss` is the
    run's (output, goal, importance) -> ``[n]``; ``goal [1, batch, feat]``, ``importance [1, feat]``."""

    def loss_of(h: Tensor) -> Tensor:
        n = h.shape[0]
        return loss(readout(h), goal.expand(n, -1, -1), importance.expand(n, -1))

    inst = reconstruction.shape[0]
    clean = loss_of(hidden).expand(inst)
    return SplicedLoss(clean, loss_of(reconstruction), loss_of(torch.zeros_like(hidden)).expand(inst))
