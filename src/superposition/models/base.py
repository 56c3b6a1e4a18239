"""Shared vocabulary of the model modules: parameters, the forward pass's outputs, the loss."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

Params = dict[str, Tensor]


class Forward(NamedTuple):
    """What a forward pass computes; `hidden` is the post-activation hidden layer."""

    output: Tensor  # [inst, batch, feat]
    pre_output: Tensor  # [inst, batch, feat], before the output ReLU
    hidden: Tensor  # [inst, batch, hidden]


class LossAndGrads(NamedTuple):
    loss: Tensor  # [inst]
    grads: Params  # same names and shapes as the parameters


def instance_loss(output: Tensor, goal: Tensor, importance: Tensor) -> Tensor:
    """Importance-weighted squared error, mean over batch and features: ``[inst]``."""
    return (importance.unsqueeze(1) * (output - goal) ** 2).mean(dim=(1, 2))
