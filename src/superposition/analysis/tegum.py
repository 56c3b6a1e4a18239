# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Tegum products: polytopes in orthogonal subspaces, and the (absence of) interference between them.

The paper: "many of the Thomson solutions can be understood as tegum products (an operation which
constructs polytopes by embedding two polytopes in orthogonal subspaces) of smaller uniform
polytopes ... The orthogonality of factors in tegum products has interesting implications. For
the purposes of superposition, it means that there can't be any "interference" across
tegum-factors." `polytopes.tegum_factors` splits a model into factors; the functions here measure
how orthogonal those factors really are, and build tegum products to compare trained models with.

Shapes: ``W [feat, hidden]`` for one model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from .geometry import unit_directions
from .polytopes import TegumFactor


def factor_basis(W: Float[Tensor, "feat hidden"], factor: TegumFactor) -> Float[Tensor, "hidden rank"]:
    """An orthonormal basis of the subspace a factor's feature directions span (its `rank` leading
    left singular vectors). **Returns:** ``[hidden, rank]``."""
    U = unit_directions(torch.as_tensor(W).double()[list(factor.features)])
    left, _, _ = torch.linalg.svd(U.T, full_matrices=False)
    return left[:, : max(factor.rank, 1)]


def cross_factor_overlap(W: Float[Tensor, "feat hidden"], factors: Sequence[TegumFactor]) -> float:
    """The largest cosine of a principal angle between the subspaces of two different factors: 0
    when every pair of factors spans orthogonal subspaces (a tegum product), 1 when two share a
    direction. 0 for fewer than two factors."""
    bases = [factor_basis(W, f) for f in factors]
    worst = 0.0
    for a in range(len(bases)):
        for c in range(a + 1, len(bases)):
            worst = max(worst, float(torch.linalg.svdvals(bases[a].T @ bases[c]).max()))
    return worst


def cross_factor_interference(W: Float[Tensor, "feat hidden"], factors: Sequence[TegumFactor]) -> Float[Tensor,
                              " feat"]:
    """For each feature of a factor, Σ_j (Ŵ_i·W_j)² over the features j of the *other* factors
    (the interference the paper says a tegum product cannot have); 0 for features in no factor."""
    W = torch.as_tensor(W).double()
    owner = torch.full((W.shape[0],), -1)
    for k, f in enumerate(factors):
        owner[list(f.features)] = k
    projections = (unit_directions(W) @ W.T).square()
    other = (owner.unsqueeze(1) != owner.unsqueeze(0)) & (owner.unsqueeze(1) >= 0) & (owner.unsqueeze(0) >= 0)
    return (projections * other).sum(-1)


def polygon(k: int) -> Float[Tensor, "k 2"]:
    """k unit vectors at equal angles in the plane (k = 2: an antipodal pair along the first axis)."""
    angles = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    return torch.stack([angles.cos(), angles.sin()], -1)


def digon() -> Float[Tensor, "2 1"]:
    return torch.tensor([[1.0], [-1.0]], dtype=torch.float64)


def tegum_product(parts: Sequence[Tensor], n_hidden: int | None = None) -> Float[Tensor, "feat hidden"]:
    """The tegum product of the parts ``[k_j, r_j]``: each in its own block of dimensions,
    ``[Σ k_j, n_hidden]`` (n_hidden defaults to Σ r_j; unused dimensions stay empty)."""
    rows, cols = sum(p.shape[0] for p in parts), sum(p.shape[1] for p in parts)
    if n_hidden is not None and n_hidden < cols:
        raise ValueError(f"n_hidden = {n_hidden} is invalid: the parts need {cols} dimensions")
    W = torch.zeros(rows, cols if n_hidden is None else n_hidden, dtype=torch.float64)
    row = col = 0
    for part in parts:
        W[row : row + part.shape[0], col : col + part.shape[1]] = part
        row, col = row + part.shape[0], col + part.shape[1]
    return W


def stratified_relu_loss(W: Float[Tensor, "inst feat hidden"], b: Float[Tensor, "inst feat"],
                         probability: Float[Tensor, " inst"], samples: int = 1024, seed: int = 0) -> Float[Tensor,
                         " inst"]:
    """Expected loss of ReLU output models on independent U[0, 1] features of one probability p each,
    importance 1 (mean over features): Σ_s P(s) E[L | s] over the 2ⁿ on/off patterns s, P(s) exact,
    E[L | s] over `samples` uniform draws shared by every pattern and instance (common random
    numbers, so models are compared on equal terms). One batched contraction: meant for n ≲ 10.

    **Returns:** ``[inst]`` in W's dtype (differentiable in W and b).
    """
    n = W.shape[-2]
    patterns = ((torch.arange(2**n).unsqueeze(-1) >> torch.arange(n)) & 1).to(W.dtype)  # [P, n]
    u = torch.rand(samples, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(W.dtype)
    x = (patterns.unsqueeze(1) * u).reshape(-1, n)  # [P·S, n]
    out = torch.relu(x @ (W @ W.transpose(-1, -2)) + b.unsqueeze(1))  # [inst, P·S, n]
    per_pattern = (out - x).square().mean(-1).reshape(W.shape[0], 2**n, samples).mean(-1)  # [inst, P]
    on = patterns.sum(-1)
    p = probability.to(W.dtype).unsqueeze(-1)
    weight = p**on * (1 - p) ** (n - on)  # [inst, P]
    return (weight * per_pattern).sum(-1)
