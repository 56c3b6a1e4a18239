# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Adversarial vulnerability of toy models, and the model without superposition it is compared to.

The paper (section 7, superposition and adversarial robustness) attacks each example with the
analytic optimal L2 attack of each feature (row i of WᵀW, `superposition.attacks`), keeps the most
harmful one, and scales the attack to 0.1 × the mean input norm. Vulnerability here is the mean
increase of the loss (importance-weighted squared error against the clean target, mean over
features, as in training) that this worst attack causes.

It is reported relative to the best model *without* superposition on the same inputs and attack
norm (`orthogonal_reference`): the m most valuable features on orthogonal unit vectors and the
others dropped (the linear model's optimum, and the dense ReLU model's solution). Its attack can
only move one kept feature's own output, by the attack norm r, so its vulnerability is exactly
max_{kept i} I_i r² / n; a model whose features interfere moves other outputs too. A relative
vulnerability of 1 means "as robust as no superposition".

Shapes: ``W [inst, feat, hidden]``, ``x [inst, batch, feat]``, importance and probability
``[inst, feat]``; results ``[inst]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ..attacks import attack_losses, attack_radius
from ..models import Params, forward, target
from .theory import feature_moments

CHUNK = 1024
"""Examples attacked at once: the attack evaluates inst × chunk × feat² outputs."""


@dataclass(frozen=True)
class Vulnerability:
    """Mean losses without and under each example's most harmful attack; fields ``[inst]``."""

    clean: Tensor
    attacked: Tensor
    radius: Tensor
    """The attack norm: eps × the mean input norm."""

    @property
    def increase(self) -> Tensor:
        """The vulnerability: mean loss increase caused by the worst attack."""
        return self.attacked - self.clean


@dataclass(frozen=True)
class RelativeVulnerability:
    """A model's vulnerability next to that of the no-superposition reference on the same inputs."""

    model: Vulnerability
    reference: Vulnerability

    @property
    def ratio(self) -> Tensor:
        """``[inst]``: model / reference loss increase (1: as robust as no superposition)."""
        return self.model.increase / self.reference.increase


@torch.no_grad()
def vulnerability(kind: str, params: Params, x: Float[Tensor, "inst batch feat"],
                  importance: Float[Tensor, "inst feat"], eps: float = 0.1) -> Vulnerability:
    """The mean loss increase of the most harmful per-feature WᵀW attack of norm eps × mean ‖x‖.

    **Arguments:** ``params`` of a tied model `kind` (linear, relu_output, relu_hidden),
    ``x [inst, batch, feat]`` (evaluation inputs), ``importance [inst, feat]``, ``eps`` (the paper: 0.1).
    **Returns:** `Vulnerability` with ``[inst]`` fields.
    """
    radius = attack_radius(x, eps)
    clean, attacked = [], []
    for chunk in x.split(CHUNK, dim=1):
        out = forward(kind, params, chunk).output
        clean.append((importance.unsqueeze(1) * (out - target(kind, chunk)).square()).mean(-1))
        attacked.append(attack_losses(kind, params, chunk, importance, radius).max(-1).values)
    return Vulnerability(torch.cat(clean, 1).mean(1), torch.cat(attacked, 1).mean(1), radius)


def orthogonal_reference(importance: Float[Tensor, "inst feat"], probability: Float[Tensor, "inst feat"],
                         n_hidden: int, signed: bool = False) -> Params:
    """The best model without superposition: the m features of largest I_i var_i on orthonormal
    axes, the others dropped with their mean as bias (the linear model's optimum,
    `superposition.analysis.theory.linear_optimal_loss`).

    **Arguments:** ``importance`` and ``probability`` ``[inst, feat]``, ``n_hidden`` m.
    **Returns:** params ``W [inst, feat, hidden]`` (one 1 per hidden column), ``b [inst, feat]``.
    """
    imp = torch.as_tensor(importance, dtype=torch.float32)
    prob = torch.as_tensor(probability, dtype=torch.float32).expand_as(imp)
    mean, var = feature_moments(prob, signed)
    n_inst, n = imp.shape
    top = torch.argsort(imp.double() * var, dim=-1, descending=True, stable=True)[:, :n_hidden]
    kept = top.shape[1]  # min(m, n)
    W = torch.zeros(n_inst, n, n_hidden)  # W[k, top[k, j], j] = 1
    W.scatter_(1, top.unsqueeze(-1).expand(-1, -1, n_hidden), torch.eye(kept, n_hidden).expand(n_inst, -1, -1))
    kept = W.abs().sum(-1) > 0
    return {"W": W, "b": torch.where(kept, 0.0, mean.float())}


def relative_vulnerability(kind: str, params: Params, x: Float[Tensor, "inst batch feat"],
                           importance: Float[Tensor, "inst feat"], probability: Float[Tensor, "inst feat"],
                           eps: float = 0.1, signed: bool = False) -> RelativeVulnerability:
    """`vulnerability` of the model and of its `orthogonal_reference`, on the same inputs and attack norm.

    **Arguments:** as `vulnerability`, plus ``probability [inst, feat]`` (which features the
    reference keeps) and ``signed``. **Returns:** `RelativeVulnerability` (``.ratio [inst]``).
    """
    reference = orthogonal_reference(importance, probability, params["W"].shape[-1], signed)
    return RelativeVulnerability(vulnerability(kind, params, x, importance, eps),
                                 vulnerability(kind, reference, x, importance, eps))


def features_per_dimension(W: Float[Tensor, "inst feat hidden"]) -> Float[Tensor, " inst"]:
    """‖W‖_F² / m, the paper's features per dimension (1 / D*): 1 orthogonal, 2 antipodal pairs.

    **Arguments:** ``W [inst, feat, hidden]``. **Returns:** ``[inst]``.
    """
    W = torch.as_tensor(W)
    W = W if W.is_floating_point() else W.float()
    return W.square().sum(dim=(-2, -1)) / W.shape[-1]


def log_correlation(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of log a and log b (both positive, ``[k]``, k ≥ 2): how well one tracks
    the other as a power law. NaN when either is constant."""
    la, lb = torch.as_tensor(a, dtype=torch.float64).log(), torch.as_tensor(b, dtype=torch.float64).log()
    la, lb = la - la.mean(), lb - lb.mean()
    return float((la * lb).sum() / (la.norm() * lb.norm()))
