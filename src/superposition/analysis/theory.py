"""Closed forms the toy models can be checked against.

Shapes: importance and feature probability are ``[feat]`` or ``[inst, feat]`` (or anything that
broadcasts to ``[..., feat]``, e.g. probabilities ``[inst, 1]`` against importance ``[feat]``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def feature_moments(feature_probability: Tensor | float, signed: bool = False) -> tuple[Tensor, Tensor]:
    """Mean and variance of one feature: zero with probability 1 − p, else U[0, 1] (U[-1, 1] if signed).

    With E[u] = 1/2 and E[u²] = 1/3 (signed: 0 and 1/3): mean = p/2 and var = p/3 − p²/4
    (signed: mean = 0, var = p/3).

    **Arguments:** ``feature_probability`` scalar or any shape. **Returns:** (mean, var), same shape,
    float64.
    """
    p = torch.as_tensor(feature_probability, dtype=torch.float64)
    if signed:
        return torch.zeros_like(p), p / 3.0
    return p / 2.0, p / 3.0 - p.square() / 4.0


def linear_optimal_loss(
    importance: Tensor | list[float],
    feature_probability: Tensor | float | list[float],
    n_hidden: int,
    signed: bool = False,
) -> float | Tensor:
    """The lowest loss of the linear model x' = WᵀWx + b with m = `n_hidden` hidden dimensions.

    The loss is the training loss of this package: (1/n) Σ_i I_i E[(x'_i − x_i)²], the
    importance-weighted squared error averaged over the batch and the n features. Features are
    independent, each non-zero with probability p_i and then uniform.

    **Result.** L* = (1/n) Σ_{i ∉ top m} I_i var_i, where the top m features are those with the
    largest I_i var_i: the model keeps the m highest-value features exactly and replaces every
    other feature by its mean.

    **Why.** Write M = WᵀW (symmetric, PSD, rank ≤ m), μ and Σ = diag(var) for the feature mean and
    covariance, D = diag(I). For a fixed M the best bias is b = (1 − M)μ, which cancels the mean
    error, leaving L(M) = (1/n) E‖D^½ (M − 1)(x − μ)‖² = (1/n) ‖D^½ (M − 1) Σ^½‖_F² =
    (1/n) ‖D^½ M Σ^½ − C‖_F², with C = D^½ Σ^½ = diag(√(I_i var_i)). The matrix D^½ M Σ^½ has rank
    ≤ m, so by Eckart–Young L(M) ≥ (1/n) × (the sum of the n − m smallest squared singular values
    of C) = (1/n) Σ_{i ∉ top m} I_i var_i. The bound is reached by M = the diagonal projection onto
    the top m features, which is WᵀW for W made of those m unit coordinate vectors (so it is
    symmetric PSD, as the tied model requires), with b_i = μ_i for the dropped features and 0 for
    the kept ones. Ties between features give the same value whichever is kept.

    **Arguments:**
    - ``importance``: I, ``[feat]`` or ``[inst, feat]``.
    - ``feature_probability``: p, a scalar, ``[feat]``, ``[inst, 1]`` or ``[inst, feat]``.
    - ``n_hidden``: m ≥ 0.
    - ``signed``: non-zero values are U[-1, 1] instead of U[0, 1].

    **Returns:** a float when the inputs broadcast to ``[feat]``, else a float64 tensor of the
    leading shape (``[inst]``).
    """
    if isinstance(n_hidden, bool) or not isinstance(n_hidden, int) or n_hidden < 0:
        raise ValueError(f"n_hidden = {n_hidden!r} is invalid: must be an integer >= 0")
    imp = torch.as_tensor(importance, dtype=torch.float64)
    _, var = feature_moments(feature_probability, signed)
    if imp.ndim == 0:
        raise ValueError("importance must have a feature axis: shape [feat] or [inst, feat]")
    value = imp * var  # broadcasts to [..., feat]
    n = value.shape[-1]
    dropped = torch.sort(value, dim=-1).values[..., : max(n - n_hidden, 0)]
    loss = dropped.sum(-1) / n
    return loss.item() if loss.ndim == 0 else loss
