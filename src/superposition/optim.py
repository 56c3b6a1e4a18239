"""Adam and AdamW as in-place tensor maths (bit-for-bit torch.optim's single-tensor update), and
learning-rate schedules. Written out so that the whole update compiles into the training step."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of (0-based) step `step`: linear warm-up, then constant/linear/cosine decay."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / span
    if cfg.schedule == "linear":
        return cfg.lr * (1.0 - progress)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr


def lr_table(cfg: TrainConfig) -> Tensor:
    """Every step's learning rate, ``[steps]``: read inside the step, so no per-step host work."""
    return torch.tensor([lr_at(s, cfg) for s in range(cfg.steps)], dtype=torch.float32)


def adam_update(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, lr: Tensor,
                step: Tensor, cfg: TrainConfig) -> None:
    """One Adam(W) update in place. `step` counts from 1; `lr` and `step` are 0-d tensors."""
    beta1, beta2 = cfg.betas
    decay = cfg.resolved_weight_decay
    if cfg.optimizer == "adamw":
        param.mul_(1.0 - lr * decay)
    elif decay:
        grad = grad + decay * param
    exp_avg.lerp_(grad, 1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    t = step.to(torch.float32)
    bias1 = 1.0 - torch.pow(beta1, t)
    bias2_sqrt = torch.sqrt(1.0 - torch.pow(beta2, t))
    denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(cfg.eps)
    param.sub_((lr / bias1) * exp_avg / denom)
