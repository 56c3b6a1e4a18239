"""Adam, AdamW and SGD (momentum, Nesterov) as in-place tensor maths (bit-for-bit torch.optim's
single-tensor updates), learning-rate schedules, and any other torch.optim optimiser for the
autograd path. The fused updates are written out so that the whole update compiles into the step."""

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


def sgd_update(param: Tensor, grad: Tensor, momentum_buffer: Tensor, lr: Tensor, cfg: TrainConfig) -> None:
    """One SGD update in place (torch.optim.SGD with dampening 0). The buffer starts at zero, which
    makes its first update equal torch's (buffer = grad)."""
    decay = cfg.resolved_weight_decay
    if decay:
        grad = grad + decay * param
    if cfg.momentum:
        momentum_buffer.mul_(cfg.momentum).add_(grad)
        grad = grad + cfg.momentum * momentum_buffer if cfg.nesterov else momentum_buffer
    param.sub_(lr * grad)


def update(param: Tensor, grad: Tensor, state1: Tensor, state2: Tensor, lr: Tensor, step: Tensor,
           cfg: TrainConfig) -> None:
    """The fused optimiser's update: Adam(W) with moments (state1, state2), or SGD with buffer state1."""
    if cfg.optimizer == "sgd":
        sgd_update(param, grad, state1, lr, cfg)
    else:
        adam_update(param, grad, state1, state2, lr, step, cfg)


class TorchOptimizer:
    """A torch.optim optimiser over the run's parameters (as leaves), with the run's schedule, and
    its state as flat tensors for checkpoints. Updates are elementwise for every accepted optimiser,
    so instances stay independent."""

    def __init__(self, params: dict[str, Tensor], cfg: TrainConfig):
        self.cfg, self.names = cfg, list(params)
        cls = getattr(torch.optim, cfg.optimizer)
        for p in params.values():
            p.requires_grad_(True)
        self.opt = cls(list(params.values()), lr=cfg.lr, weight_decay=cfg.resolved_weight_decay,
                       **dict(cfg.optimizer_options))

    def step(self, grads: dict[str, Tensor], lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr
        for p, name in zip(self.opt.param_groups[0]["params"], self.names, strict=True):
            p.grad = grads[name]
        with torch.no_grad():
            self.opt.step()

    def state_tensors(self) -> dict[str, Tensor]:
        """Every tensor of the optimiser's state, named ``optim.<param>.<key>``."""
        out = {}
        for p, name in zip(self.opt.param_groups[0]["params"], self.names, strict=True):
            for key, value in self.opt.state.get(p, {}).items():
                out[f"optim.{name}.{key}"] = torch.as_tensor(value)
        return out

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        for p, name in zip(self.opt.param_groups[0]["params"], self.names, strict=True):
            prefix = f"optim.{name}."
            state = {k[len(prefix):]: v.clone() for k, v in tensors.items() if k.startswith(prefix)}
            if state:
                self.opt.state[p] = state
