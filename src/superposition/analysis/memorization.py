# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Memorisation on a finite training set (Henighan et al. 2023): how the *data points* share the
hidden space, next to how the features share it.

The data dimensionality of training example i is the feature dimensionality formula applied to the
hidden vectors of the training set instead of to the feature directions:

    D_X_i = ‖h_i‖² / Σ_j (ĥ_i·h_j)²,   h_i = W x_i (the model's hidden vector of example i).

It is 1 for an example whose hidden vector is orthogonal to every other, m/T for T examples spread
evenly over m dimensions (2/T for a regular T-gon in 2-D), and 0 for an example mapped to 0.

Σ_j (ĥ_i·h_j)² = ĥ_iᵀ (HᵀH) ĥ_i with H the [T, hidden] matrix of hidden vectors, so D_X costs
O(T m²), not the O(T²) of a Gram matrix: usable on training sets of 10⁵ examples.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..data import dataset, dataset_parts
from ..models import forward
from .geometry import EPS

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..run import Run


def data_dimensionality(h: Tensor, eps: float = EPS) -> Tensor:
    """D_X_i = ‖h_i‖² / Σ_j (ĥ_i·h_j)² of every example, j running over all examples (i included).

    **Arguments:** ``h [inst, T, hidden]`` (any leading axes are batch axes), the hidden vectors
    of one set of examples per instance; examples with ‖h_i‖ <= eps give 0.
    **Returns:** ``[inst, T]``, in (0, 1] for live examples.
    """
    h = torch.as_tensor(h)
    if h.ndim < 2:
        raise ValueError(f"h must have shape [..., T, hidden], got {tuple(h.shape)}")
    h = h if h.is_floating_point() else h.float()
    second = h.transpose(-1, -2) @ h  # Σ_j h_j h_jᵀ: [..., hidden, hidden]
    norm = torch.linalg.vector_norm(h, dim=-1, keepdim=True)
    alive = norm > eps
    unit = torch.where(alive, h / norm.clamp_min(eps), torch.zeros_like(h))
    total = ((unit @ second) * unit).sum(-1)  # ĥ_iᵀ (HᵀH) ĥ_i = Σ_j (ĥ_i·h_j)²
    norm_sq = norm.squeeze(-1).square()
    return torch.where(alive.squeeze(-1), norm_sq / total.clamp_min(eps * eps), torch.zeros_like(norm_sq))


def training_inputs(run: Run) -> Tensor:
    """The training set of every saved instance of `run`, ``[inst, T, feat]``, regenerated from its
    config by `superposition.data.dataset` (the same events the run was trained on).

    Raises ValueError for a run trained on fresh data (``data.n_train`` None).
    """
    config, rows = _training_set(run)
    return dataset(config, "train")[rows]


def training_hidden(run: Run) -> Tensor:
    """The hidden vectors h_i of the training examples ``[inst, T, hidden]`` (h = W x for the paper's
    models), from the model's own forward pass. A sparse set (`data.sampler = 'sparse'`) is read in
    dense chunks (`superposition.data.dataset_parts`), never whole: 10⁵ examples of 10⁴ features
    would be 4 GB per instance."""
    config, rows = _training_set(run)
    with torch.no_grad():
        parts = [forward(run.config.model, run.params, x[rows]).hidden for x in dataset_parts(config, "train")]
    return torch.cat(parts, dim=1)


def _training_set(run: Run) -> tuple[RunConfig, Tensor]:
    """The config whose finite set holds `run`'s training examples, and the row of each saved instance."""
    config = run.config
    if config.data.n_train is None:
        raise ValueError(f"run {config.name!r} has data.n_train = None: it trained on fresh data, "
                         "there is no finite training set to measure")
    if not config.train.keep_all_restarts:
        # The sets depend on the seed alone, not the restart: one row per configuration suffices.
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, restarts=1))
        return config, torch.tensor(run.metrics.config_index)
    return config, torch.arange(config.n_instances)


def run_data_dimensionality(run: Run) -> Tensor:
    """D_X of every training example of every saved instance of `run`: ``[inst, T]``."""
    return data_dimensionality(training_hidden(run))
