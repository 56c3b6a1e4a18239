"""Closed forms the toy models can be checked against.

- `linear_optimal_loss`: the best linear model keeps the m most valuable features (section 2).
- `phase_diagram`: the paper's "toy model of the toy model" (section 4, superposition as a phase
  change): the expected loss of each candidate solution for an extra feature of relative
  importance r next to m features of importance 1, in closed form, and its argmin phase map.

Shapes: importance and feature probability are ``[feat]`` or ``[inst, feat]`` (or anything that
broadcasts to ``[..., feat]``, e.g. probabilities ``[inst, 1]`` against importance ``[feat]``).
"""

from __future__ import annotations

from dataclasses import dataclass

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


# --- superposition as a phase change: the "toy model of the toy model" ------------------------
#
# n = m + 1 features in m hidden dimensions, ReLU output model x' = ReLU(WᵀWx + b). Features
# 1..m have importance 1; the last ("extra") feature has importance r. Every feature is 0 with
# probability 1 − p, else U[0, 1], independently. The loss is the package's training loss,
# (1/n) Σ_i I_i E[(x'_i − x_i)²]. We compare three families of candidate solutions, one per phase
# of the extra feature, each at its best free parameters:
#
#   not represented  W_i = e_i for i ≤ m, W_extra = 0, b_extra = E[x] = p/2:
#                    loss r·var/n (feature i ≤ m is reproduced exactly).
#   dedicated        the extra feature gets a dimension of its own. Either one important feature
#                    is dropped (loss var/n), or, with m ≥ 2, two important features share a
#                    dimension as an antipodal pair (loss 2·f*/n); the smaller one counts.
#   superposition    the extra feature is antipodal to an important one, W_extra = −W_1 (the
#                    paper's W = [1, −1]): loss (1 + r)·f*/n.
#
# where var = p/3 − p²/4 is one feature's variance and f* = min_b f(b) the squared error of one
# member of an antipodal pair at its best bias (`antipodal_error`, `antipodal_bias`).

PHASES: tuple[str, ...] = ("not represented", "dedicated", "superposition")
"""The extra feature's phases, in the order of the phase index (0, 1, 2)."""
NOT_REPRESENTED, DEDICATED, SUPERPOSITION = 0, 1, 2


def antipodal_error(feature_probability: Tensor | float, bias: Tensor | float) -> Tensor:
    """f(b) = E[(ReLU(x₁ − x₂ + b) − x₁)²]: the squared error of one feature of an antipodal pair.

    A pair of unit vectors W₁ = −W₂ gives output ReLU(x₁ − x₂ + b) for feature 1 (and the mirror
    image for feature 2). With q = 1 − p and u, v ~ U[0, 1], sum over which features are on:

    - neither (q²): error ReLU(b)²; only x₁ (pq): (ReLU(u + b) − u)²;
      only x₂ (qp): ReLU(b − v)²; both (p²): (ReLU(u − v + b) − u)².

    Integrating the piecewise polynomials gives, for 0 ≤ b ≤ 1,

        f(b) = q b² + pq b³/3 + p² (1/6 − b/3 + 2b³/3 − b⁴/6),

    and for −1 ≤ b ≤ 0

        f(b) = pq (b² + 2b³/3) + p² (1/6 − b/3 + b³/3 + b⁴/6).

    Both branches give p²/6 with slope −p²/3 at b = 0. On [−1, 0] f decreases in b (a negative bias
    cannot help: the interference −x₂ is already negative and filtered by the ReLU), so the best
    bias is positive (`antipodal_bias`).

    **Arguments:** ``feature_probability`` p and ``bias`` b ∈ [−1, 1], broadcastable shapes.
    **Returns:** f, float64, the broadcast shape.
    """
    p = torch.as_tensor(feature_probability, dtype=torch.float64)
    b = torch.as_tensor(bias, dtype=torch.float64)
    if bool((b.abs() > 1).any()):
        raise ValueError("bias must lie in [-1, 1] (the closed form covers that range)")
    q = 1 - p
    positive = q * b**2 + p * q * b**3 / 3 + p**2 * (1 / 6 - b / 3 + 2 * b**3 / 3 - b**4 / 6)
    negative = p * q * (b**2 + 2 * b**3 / 3) + p**2 * (1 / 6 - b / 3 + b**3 / 3 + b**4 / 6)
    return torch.where(b >= 0, positive, negative)


def antipodal_bias(feature_probability: Tensor | float, iterations: int = 60) -> Tensor:
    """The bias b* ∈ (0, 1) that minimises `antipodal_error` at feature probability p.

    On [0, 1] f is convex (f'' = 2q + 2pq b + p²(4b − 2b²) ≥ 0) with f'(0) = −p²/3 < 0 and
    f'(1) = 2q + pq + p² > 0, so b* is the unique root in (0, 1) of the cubic

        f'(b) = 2q b + pq b² + p² (−1/3 + 2b² − 2b³/3),

    found numerically by bisection (`iterations` halvings; 60 reach float64 resolution). Sparse
    data need almost no bias (b* ≈ p²/6 as p → 0), dense data a larger one (b* ≈ 0.44 at p = 1).

    **Arguments:** ``feature_probability`` p ∈ (0, 1], any shape. **Returns:** b*, float64, same shape.
    """
    p = torch.as_tensor(feature_probability, dtype=torch.float64)
    q = 1 - p
    low, high = torch.zeros_like(p), torch.ones_like(p)
    for _ in range(iterations):
        mid = (low + high) / 2
        slope = 2 * q * mid + p * q * mid**2 + p**2 * (-1 / 3 + 2 * mid**2 - 2 * mid**3 / 3)
        rising = slope > 0
        high = torch.where(rising, mid, high)
        low = torch.where(rising, low, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class PhaseDiagram:
    """Expected loss of each phase's best candidate on a grid of (r, p); see `phase_diagram`."""

    n_hidden: int
    """m; the model has n = m + 1 features, the last one the extra feature."""
    relative_importance: Tensor
    """r, ``[R]`` (the rows)."""
    feature_probability: Tensor
    """p = 1 − S, ``[P]`` (the columns)."""
    losses: Tensor
    """``[phase, R, P]``, float64: the loss of each phase of `PHASES` (index 0, 1, 2)."""
    bias: Tensor
    """``[P]``: the best bias b* of a feature in an antipodal pair."""

    @property
    def phase(self) -> Tensor:
        """The predicted phase (index into `PHASES`) of every cell: argmin over phases, ``[R, P]``, int64."""
        return self.losses.argmin(0)


def phase_diagram(n_hidden: int, relative_importance: Tensor | list[float],
                  feature_probability: Tensor | list[float]) -> PhaseDiagram:
    """The "toy model of the toy model": closed-form losses of the three phases of the extra feature.

    n = m + 1 features in m = `n_hidden` dimensions; features 1..m have importance 1 and the extra
    (last) feature importance r. With var = p/3 − p²/4 and f* = `antipodal_error` at
    `antipodal_bias`, the losses (the package's (1/n)-averaged training loss) are

    - not represented: r·var/n,
    - dedicated:       var/n for m = 1; min(var, 2f*)/n for m ≥ 2 (drop an important feature, or
                       pair two important ones antipodally to free a dimension),
    - superposition:   (1 + r)·f*/n (the extra feature antipodal to an important one).

    Not represented vs dedicated is decided by r alone (r < 1 or r > 1 for dense data); superposition
    wins only when f* is small against var, i.e. for sparse data (f* ≈ p²/6 ≪ var ≈ p/3). Candidates
    such as a triangle of all three features (m = 2) are left out: at high sparsity an antipodal
    pair's interference costs p²/3, the triangle's three obtuse pairs 3p²/8 (and over r ∈ [0.1, 10],
    p ∈ [0.01, 1] the triangle at its best bias is never the lowest; tested numerically).

    **Arguments:**
    - ``n_hidden``: m ≥ 1.
    - ``relative_importance``: r > 0, ``[R]``.
    - ``feature_probability``: p ∈ (0, 1], ``[P]``.

    **Returns:** a `PhaseDiagram` with ``losses [3, R, P]``; ``.phase`` is the argmin map ``[R, P]``.
    """
    if isinstance(n_hidden, bool) or not isinstance(n_hidden, int) or n_hidden < 1:
        raise ValueError(f"n_hidden = {n_hidden!r} is invalid: must be an integer >= 1")
    r = torch.as_tensor(relative_importance, dtype=torch.float64).reshape(-1)
    p = torch.as_tensor(feature_probability, dtype=torch.float64).reshape(-1)
    n = n_hidden + 1
    _, var = feature_moments(p)
    bias = antipodal_bias(p)
    pair = antipodal_error(p, bias)
    dedicated = torch.minimum(var, 2 * pair) if n_hidden >= 2 else var
    losses = torch.stack([
        r[:, None] * var[None, :],
        dedicated.expand(len(r), -1),
        (1 + r[:, None]) * pair[None, :],
    ]) / n
    return PhaseDiagram(n_hidden, r, p, losses, bias)


def phase_candidate(n_hidden: int, phase: int, feature_probability: float,
                    pair_freed: bool = False) -> dict[str, Tensor]:
    """The weights of one candidate of `phase_diagram`, as a one-instance ReLU output model.

    **Arguments:**
    - ``n_hidden``: m ≥ 1 (n = m + 1 features, the last one extra).
    - ``phase``: `NOT_REPRESENTED`, `DEDICATED` or `SUPERPOSITION`.
    - ``feature_probability``: p, which sets the biases (p/2 for dropped features, b* for pairs).
    - ``pair_freed``: for `DEDICATED` with m ≥ 2, features 1 and 2 share dimension 1 as an antipodal
      pair and the extra feature takes dimension 2, instead of taking feature 1's dimension.

    **Returns:** ``{"W": [1, n, m], "b": [1, n]}`` (float32), ready for `models.forward`.
    """
    if phase not in (NOT_REPRESENTED, DEDICATED, SUPERPOSITION):
        raise ValueError(f"phase = {phase!r} is invalid: must be 0, 1 or 2 (index into PHASES)")
    if pair_freed and (phase != DEDICATED or n_hidden < 2):
        raise ValueError("pair_freed needs phase = DEDICATED and n_hidden >= 2")
    eye = torch.eye(n_hidden, dtype=torch.float64)
    rows = [eye[i] for i in range(n_hidden)] + [torch.zeros(n_hidden, dtype=torch.float64)]
    b = torch.zeros(n_hidden + 1, dtype=torch.float64)
    pair_bias = float(antipodal_bias(feature_probability))
    if phase == NOT_REPRESENTED:
        b[-1] = feature_probability / 2  # the dropped feature's mean
    elif phase == DEDICATED and pair_freed:
        rows[1], rows[-1] = -eye[0], eye[1]
        b[0] = b[1] = pair_bias
    elif phase == DEDICATED:
        rows[0], rows[-1] = rows[-1], eye[0]
        b[0] = feature_probability / 2
    else:
        rows[-1] = -eye[0]
        b[0] = b[-1] = pair_bias
    return {"W": torch.stack(rows)[None].float(), "b": b[None].float()}
