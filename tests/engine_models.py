"""Custom toy models used by the engine tests (importable as tests.engine_models:NAME)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class GeluOutput(nn.Module):
    """x' = GeLU(WᵀWx + b) with a hidden bias: one instance, x [batch, feat]."""

    def __init__(self, n_features: int, n_hidden: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(n_features, n_hidden) * (2.0 / (n_features + n_hidden)) ** 0.5)
        self.b_hidden = nn.Parameter(torch.zeros(n_hidden))
        self.b = nn.Parameter(torch.zeros(n_features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x @ self.W + self.b_hidden
        return F.gelu(h @ self.W.T + self.b), h


class ReluOutput(nn.Module):
    """The paper's relu_output model written as a plain module (for path-agreement tests)."""

    def __init__(self, n_features: int, n_hidden: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(n_features, n_hidden) * 0.3)
        self.b = nn.Parameter(torch.zeros(n_features))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x @ self.W
        return torch.relu(h @ self.W.T + self.b), h


class WrongShape(nn.Module):
    def __init__(self, n_features: int, n_hidden: int):
        super().__init__()
        self.W = nn.Parameter(torch.randn(n_features, n_hidden))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x @ self.W
        return h, h


def linear_factory(n_features: int, n_hidden: int) -> nn.Module:
    """A factory function instead of a class."""
    return ReluOutput(n_features, n_hidden)
