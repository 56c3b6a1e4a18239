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
                  feature_probability: Tensor | list[float], unequal_pairs: bool = False) -> PhaseDiagram:
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
    - ``unequal_pairs``: the superposition phase also admits antipodal pairs of unequal norms
      (`unequal_pair`, numerically optimised): loss min((1 + r) f*, e*(r, p))/n; for m ≥ 2 the
      dedicated phase's freed pair also gets free norms and biases: min(var, 2f*, e*(1, p))/n (at
      1 − S = 0.62 its best norms are 0.85, not 1, and it loses 6% less than 2f*). False: the
      paper's candidates only.

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
    superposed = (1 + r[:, None]) * pair[None, :]
    if unequal_pairs:
        superposed = torch.minimum(superposed, unequal_pair(r, p).error)
        if n_hidden >= 2:  # the freed pair: equal importance, norms and biases free (both shrink when dense)
            dedicated = torch.minimum(dedicated, unequal_pair(torch.ones(1, dtype=torch.float64), p).error[0])
    losses = torch.stack([r[:, None] * var[None, :], dedicated.expand(len(r), -1), superposed]) / n
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


# --- antipodal pairs of unequal norms -------------------------------------------------------------
#
# The paper's superposition candidate W = [1, −1] gives both members of the pair the same norm.
# With unequal importance the model does better by giving the more important feature a longer
# vector: W = [a, −c] (one dimension), biases b₁, b₂, so that
#
#     x₁' = ReLU(a² x₁ − ac x₂ + b₁),    x₂' = ReLU(c² x₂ − ac x₁ + b₂).
#
# Trained models use this family (they beat the equal-norm candidate by 3–10% at unequal r), so
# `pair_error` evaluates it in closed form up to one numerical integral (below) and
# `unequal_pair` minimises it numerically over (a, c, b₁, b₂) per cell.

PAIR_NODES = 4096
"""Midpoint nodes of the one remaining integral in `pair_error` (its error is O(1/nodes²) ≈ 1e-7)."""


def _active_error(alpha: Tensor, beta: Tensor, bias: Tensor, u: Tensor) -> Tensor:
    """E_v[(ReLU(α u − β v + b) − u)²] over v ~ U[0, 1], exact, for every node u (β ≥ 0).

    The ReLU is open for v < t = (α u + b)/β; with t_c = clamp(t, 0, 1) and d = (α − 1) u + b,
    ∫₀^{t_c} (d − β v)² dv = d² t_c − d β t_c² + β² t_c³/3, and the closed part adds (1 − t_c) u².
    """
    lead = alpha * u + bias
    safe = torch.where(beta > 0, beta, torch.ones_like(beta))
    t = torch.where(beta > 0, lead / safe, torch.where(lead > 0, torch.ones_like(lead), torch.zeros_like(lead)))
    t = t.clamp(0.0, 1.0)
    d = (alpha - 1) * u + bias
    return d**2 * t - d * beta * t**2 + beta**2 * t**3 / 3 + (1 - t) * u**2


def pair_feature_error(own: Tensor | float, cross: Tensor | float, bias: Tensor | float,
                       feature_probability: Tensor | float, nodes: int = PAIR_NODES) -> Tensor:
    """E[(ReLU(own·x − cross·y + b) − x)²] for independent features x, y (0 w.p. 1 − p, else U[0, 1]).

    own = ‖W_x‖², cross = |W_x·W_y| ≥ 0 (an antipodal pair: the partner's interference is negative).
    Summed over which features are on (q = 1 − p): neither q² ReLU(b)²; only x pq E(ReLU(own u + b) −
    u)²; only y pq E ReLU(b − cross v)²; both p² E(ReLU(own u − cross v + b) − u)². The inner
    integrals over v are exact (`_active_error`); the outer one over u uses `nodes` midpoints.

    **Arguments:** broadcastable tensors (float64). **Returns:** the broadcast shape.
    """
    p = torch.as_tensor(feature_probability, dtype=torch.float64)
    own, cross, bias = (torch.as_tensor(t, dtype=torch.float64) for t in (own, cross, bias))
    q = 1 - p
    u = (torch.arange(nodes, dtype=torch.float64) + 0.5) / nodes  # [nodes]
    ex = lambda t: t.unsqueeze(-1)  # noqa: E731  (broadcast against the nodes)
    only_x = ((ex(own) * u + ex(bias)).clamp(min=0) - u).square().mean(-1)
    only_y = (ex(bias) - ex(cross) * u).clamp(min=0).square().mean(-1)
    both = _active_error(ex(own), ex(cross), ex(bias), u).mean(-1)
    return q**2 * bias.clamp(min=0) ** 2 + p * q * (only_x + only_y) + p**2 * both


def pair_error(relative_importance: Tensor | float, feature_probability: Tensor | float, norms: Tensor,
               biases: Tensor, nodes: int = PAIR_NODES) -> Tensor:
    """The pair's importance-weighted squared error E(x₁' − x₁)² + r E(x₂' − x₂)² (summed, not averaged).

    **Arguments:** r and p broadcastable ``[...]``; ``norms [..., 2]`` (a, c), the lengths of the
    pair's vectors W₁ = a, W₂ = −c; ``biases [..., 2]``. **Returns:** ``[...]`` float64.
    """
    r = torch.as_tensor(relative_importance, dtype=torch.float64)
    a, c = norms[..., 0], norms[..., 1]
    cross = (a * c).abs()
    first = pair_feature_error(a**2, cross, biases[..., 0], feature_probability, nodes)
    second = pair_feature_error(c**2, cross, biases[..., 1], feature_probability, nodes)
    return first + r * second


@dataclass(frozen=True)
class UnequalPair:
    """The best antipodal pair of unequal norms per (r, p) cell; see `unequal_pair`."""

    error: Tensor
    """``[R, P]``: min E(x₁' − x₁)² + r E(x₂' − x₂)², never above the equal-norm pair's (1 + r) f*."""
    norms: Tensor
    """``[R, P, 2]``: (a, c) = (‖W₁‖, ‖W_extra‖) at the optimum."""
    biases: Tensor
    """``[R, P, 2]``: (b₁, b_extra) at the optimum."""


def unequal_pair(relative_importance: Tensor | list[float], feature_probability: Tensor | list[float],
                 iterations: int = 30) -> UnequalPair:
    """Numerically optimised antipodal pair of unequal norms (importance 1 and r, both at density p).

    No closed form is derived for the optimum: `pair_error` (exact up to a 1-D midpoint integral) is
    minimised over (a, c, b₁, b₂) by damped Newton steps, all cells at once, from three starts: the equal-norm
    pair at its best bias b* (the paper's W = [1, −1]) and the two pairs with one vector shortened
    to 0.8. Each cell keeps its lowest result, and the equal-norm pair itself if that is lower, so
    the family's loss never exceeds the paper's superposition candidate. A start that slides out of
    the family (a norm at or below 0.5, i.e. a feature no longer represented) is not counted: that
    is another phase.

    **Arguments:** r ``[R]``, p ``[P]``; ``iterations``: Newton steps per start.
    **Returns:** an `UnequalPair` with ``[R, P]`` maps.
    """
    r = torch.as_tensor(relative_importance, dtype=torch.float64).reshape(-1, 1)
    p = torch.as_tensor(feature_probability, dtype=torch.float64).reshape(1, -1)
    shape = (r.shape[0], p.shape[1])
    b_star = antipodal_bias(p).expand(shape)
    equal = torch.ones(*shape, 2, dtype=torch.float64)
    best_norms, best_biases = equal, torch.stack([b_star, b_star], -1)
    best = pair_error(r, p, best_norms, best_biases)
    for start in ((1.0, 1.0), (1.0, 0.8), (0.8, 1.0)):
        norms, biases = _optimise_pair(r, p, torch.tensor(start, dtype=torch.float64).expand(*shape, 2),
                                       best_biases, iterations)
        error = pair_error(r, p, norms, biases)
        better = (error < best) & (norms.abs() > 0.5).all(-1)
        best = torch.where(better, error, best)
        best_norms = torch.where(better[..., None], norms.abs(), best_norms)
        best_biases = torch.where(better[..., None], biases, best_biases)
    return UnequalPair(best, best_norms, best_biases)


def _optimise_pair(r: Tensor, p: Tensor, norms: Tensor, biases: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """Damped Newton (Levenberg–Marquardt) on every cell's `pair_error` at once, cell by cell.

    The cells are independent, so each cell has its own 4 × 4 Hessian. A cell takes a step only
    where it lowers its own loss; its damping shrinks after a success and grows after a failure.
    """
    x = torch.cat([norms, biases], -1).clone()
    damping = torch.full(x.shape[:-1], 1e-3, dtype=torch.float64)
    loss = _pair_objective(r, p, x)
    eye = torch.eye(4, dtype=torch.float64)
    for _ in range(iterations):
        grad, hess = _gradient_and_hessian(r, p, x)
        scale = hess.diagonal(dim1=-2, dim2=-1).abs().clamp(min=1e-12)
        step = torch.linalg.solve(hess + (damping * scale.amax(-1))[..., None, None] * eye, grad.unsqueeze(-1))
        trial = x - step.squeeze(-1)
        trial_loss = _pair_objective(r, p, trial)
        better = trial_loss < loss
        x = torch.where(better[..., None], trial, x)
        loss = torch.where(better, trial_loss, loss)
        damping = torch.where(better, damping / 3, damping * 4).clamp(1e-9, 1e9)
    return x[..., :2], x[..., 2:]


def _pair_objective(r: Tensor, p: Tensor, x: Tensor, nodes: int = 512) -> Tensor:
    return pair_error(r, p, x[..., :2], x[..., 2:], nodes=nodes)


def _gradient(r: Tensor, p: Tensor, x: Tensor) -> Tensor:
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(_pair_objective(r, p, x).sum(), x)
    return grad


def _gradient_and_hessian(r: Tensor, p: Tensor, x: Tensor, step: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Per-cell gradient ``[..., 4]`` (autograd) and Hessian ``[..., 4, 4]`` (forward differences of
    the gradient, symmetrised; a second backward pass costs 60 times more here)."""
    grad = _gradient(r, p, x)
    eye = torch.eye(4, dtype=torch.float64)
    rows = torch.stack([(_gradient(r, p, x + step * eye[k]) - grad) / step for k in range(4)], -2)
    return grad, (rows + rows.transpose(-1, -2)) / 2
