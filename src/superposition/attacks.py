# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""The paper's adversarial attack on toy models, used to measure vulnerability and to train against it.

For feature i the output's linear part is (WᵀW x)_i, so the L2 perturbation of a given norm that
moves output i the most points along row i of the Gram matrix WᵀW (``W Wᵀ`` in our
``[feat, hidden]`` layout). Each example is attacked along the direction, among the n features'
ones, that raises its loss the most; the attack's norm is a fraction `eps` of the batch's mean
input norm (the paper uses 0.1).

Shapes: ``W [inst, feat, hidden]``, ``x [inst, batch, feat]``, importance ``[inst, feat]``.
Tied models only (linear, relu_output, relu_hidden); abs_mlp has no WᵀW.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import RunConfig
from .models import Params, forward, target

EPS = 1e-12
ATTACK_SALT = 0x5EED_A77AC
"""Salt of the random-feature draws (`Stream.uniform`), independent of the data's own numbers."""


def attack_directions(W: Tensor) -> Tensor:
    """Unit attack direction of each feature, ``[..., feat (attacked), feat (input)]``: row i of
    WᵀW divided by its norm (zero for a feature the model ignores)."""
    G = W @ W.transpose(-1, -2)
    return G / G.norm(dim=-1, keepdim=True).clamp_min(EPS)


def attack_radius(x: Tensor, eps: float | Tensor) -> Tensor:
    """The attack norm ``[inst]``: `eps` times the mean L2 norm of the batch's inputs."""
    return torch.as_tensor(eps, dtype=x.dtype, device=x.device) * x.norm(dim=-1).mean(dim=1)


def attack_losses(kind: str, params: Params, x: Tensor, importance: Tensor, radius: Tensor) -> Tensor:
    """Loss of every example under every feature's attack, ``[inst, batch, feat (attacked)]``.

    The loss is the importance-weighted squared error against the clean target, mean over
    features (as in training). ``radius [inst]`` is the attack norm.
    """
    dirs = attack_directions(params["W"])  # [inst, att, feat]
    attacked = x.unsqueeze(2) + radius.view(-1, 1, 1, 1) * dirs.unsqueeze(1)  # [inst, batch, att, feat]
    out = forward(kind, params, attacked.flatten(1, 2)).output.view_as(attacked)
    err = out - target(kind, x).unsqueeze(2)
    return (importance[:, None, None, :] * err * err).mean(-1)


def worst_perturbation(kind: str, params: Params, x: Tensor, importance: Tensor, eps: float | Tensor) -> Tensor:
    """The most harmful per-feature attack on each example, ``[inst, batch, feat]``.

    Costs one forward pass per feature (memory ``inst × batch × feat²``): meant for the paper's
    small models.
    """
    if kind == "abs_mlp":
        raise ValueError("the WᵀW attack needs a tied model (linear, relu_output, relu_hidden), not abs_mlp")
    radius = attack_radius(x, eps)
    worst = attack_losses(kind, params, x, importance, radius).argmax(-1)  # [inst, batch]
    dirs = attack_directions(params["W"])
    chosen = torch.gather(dirs, 1, worst.unsqueeze(-1).expand(-1, -1, dirs.shape[-1]))
    return radius.view(-1, 1, 1) * chosen


def random_perturbation(params: Params, x: Tensor, eps: float | Tensor, uniform: Tensor) -> Tensor:
    """The analytic optimal attack on one feature per example, drawn at random (the paper's attack for
    adversarial training), ``[inst, batch, feat]``: radius × the chosen feature's unit direction.

    ``uniform [inst, batch]`` in [0, 1) picks the feature (uniformly among the n). One forward-free
    gather: cheap enough for every training step.
    """
    dirs = attack_directions(params["W"])  # [inst, att, feat]
    n = dirs.shape[1]
    chosen = (uniform * n).long().clamp(max=n - 1)  # [inst, batch]
    picked = torch.gather(dirs, 1, chosen.unsqueeze(-1).expand(-1, -1, dirs.shape[-1]))
    return attack_radius(x, eps).view(-1, 1, 1) * picked


def training_perturbation(kind: str, attack: str, params: Params, x: Tensor, importance: Tensor,
                          eps: Tensor, uniform: Tensor) -> Tensor:
    """The attack adversarial training adds to ``x [inst, batch, feat]``: `worst_perturbation` or
    `random_perturbation` (``attack``), of norm ``eps [inst]`` × each instance's mean input norm."""
    if attack == "random":
        return random_perturbation(params, x, eps, uniform)
    return worst_perturbation(kind, params, x, importance, eps)


def eps_vector(config: RunConfig, device: torch.device | str = "cpu") -> Tensor:
    """The adversarial attack norm of every instance ``[inst]`` (fraction of the mean input norm)."""
    from .data import instances

    per_config = torch.tensor(config.train.adversarial_per_config(config.data.n_configs), dtype=torch.float32)
    return per_config[instances(config).config_index].to(device)
