# ruff: noqa: N803, N806 - W and G are the paper's names
"""The loss of the linear and ReLU-output models decomposed into the paper's terms (section 3,
"the mathematical understanding").

Our loss is L = (1/n) Σ_i I_i E[(x'_i − x_i)²] with independent features, x_i = 0 with
probability 1 − p_i, else u ~ U[0, 1] (U[−1, 1] when signed). Write G = WᵀW (``W Wᵀ`` in our
``[feat, hidden]`` layout, entry (i, j) = W_i·W_j), μ and v for the features' means and variances.

**Linear model** x' = Gx + b. The error of output i is (G_ii − 1)(x_i − μ_i) + Σ_{j≠i} G_ij (x_j − μ_j)
+ m_i with the mean error m_i = Σ_j (G_ij − δ_ij) μ_j + b_i. The centred terms are independent with
mean zero, so the loss splits exactly into

- feature benefit  (1/n) Σ_i I_i (1 − ‖W_i‖²)² v_i   (what is lost by not representing feature i),
- interference     (1/n) Σ_i I_i Σ_{j≠i} (W_i·W_j)² v_j   (what superposition costs),
- bias             (1/n) Σ_i I_i m_i²   (zero at the optimal bias b_i = −Σ_j (G_ij − δ_ij) μ_j).

This is the paper's L = Σ_i I_i (1 − ‖W_i‖²)² + Σ_{i≠j} I_j (W_j·W_i)² with our mean over features,
the feature variances and the bias made explicit.

**ReLU output model** x' = ReLU(Gx + b), at high sparsity. Split inputs by how many features are on:
none (probability P₀ = Π_j (1 − p_j)), exactly feature i (P₁ᵢ = p_i Π_{j≠i} (1 − p_j)), or two and
more (O(p²)). On an input with only feature i on, at value u, output k is ReLU(G_ki u + b_k). The
≤1-sparse part of the loss is exactly the sum of the paper's 1-sparse terms (its L = Σ_i I_i (1 −
ReLU(‖W_i‖² + b_i))² + Σ_{i≠j} I_j ReLU(W_j·W_i + b_j)² at u = 1, here integrated over u) and a bias
penalty:

- feature benefit  (1/n) Σ_i P₁ᵢ I_i E[(ReLU(‖W_i‖² u + b_i) − u)²]: the error of the feature's own
                   output (0 for ‖W_i‖ = 1, b_i = 0; a negative bias costs here, unless ‖W_i‖² > 1
                   makes up for it),
- interference     (1/n) Σ_i P₁ᵢ Σ_{k≠i} I_k (E[ReLU(G_ki u + b_k)²] − ReLU(b_k)²): what feature i
                   leaks into other outputs beyond their bias alone; the ReLU and a negative b_k
                   filter out negative and small positive interference,
- bias penalty     (1/n) Σ_k I_k ReLU(b_k)² (P₀ + Σ_{i≠k} P₁ᵢ): a positive bias's output where its
                   feature is off (all-zero inputs, and inputs where another single feature is on);
                   zero once the biases are negative, as they are at high sparsity.

The rest of the loss (inputs with two or more features on) is what the decomposition leaves out;
`monte_carlo_loss` with ``max_active`` measures each part on sampled data. Every expectation over u
is an integral of a piecewise quadratic, done in closed form (`_relu_moments`).

Shapes: ``W [inst, feat, hidden]``, ``b``, importance and probability ``[inst, feat]`` (probability
may also be ``[inst, 1]``); results ``[inst]``, float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ..models import Params, forward, target
from .theory import feature_moments


@dataclass(frozen=True)
class LinearLossTerms:
    """The linear model's exact loss decomposition; every field ``[inst]``, float64."""

    feature_benefit: Tensor
    interference: Tensor
    bias: Tensor

    @property
    def total(self) -> Tensor:
        return self.feature_benefit + self.interference + self.bias


@dataclass(frozen=True)
class SparseLossTerms:
    """The ReLU-output model's loss on inputs with at most one active feature; fields ``[inst]``, float64."""

    feature_benefit: Tensor
    interference: Tensor
    bias_penalty: Tensor
    linear_interference: Tensor
    """The interference a linear readout of the same W would pay on the same inputs,
    (1/n) Σ_i P₁ᵢ Σ_{k≠i} I_k (W_k·W_i)² E[u²]: what the ReLU and bias save."""

    @property
    def total(self) -> Tensor:
        """The ≤1-sparse part of the loss (the high-sparsity approximation of the whole loss)."""
        return self.feature_benefit + self.interference + self.bias_penalty


@dataclass(frozen=True)
class LossEstimate:
    """A Monte-Carlo mean over examples with its standard error; fields ``[inst]``, float64."""

    mean: Tensor
    stderr: Tensor


def _inputs(W: Tensor, b: Tensor, importance: Tensor, probability: Tensor) -> tuple[Tensor, ...]:
    W, b = torch.as_tensor(W, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if W.ndim != 3 or b.shape != W.shape[:2]:
        raise ValueError(f"W must be [inst, feat, hidden] and b [inst, feat]; got {tuple(W.shape)}, {tuple(b.shape)}")
    imp = torch.as_tensor(importance, dtype=torch.float64).expand_as(b)
    prob = torch.as_tensor(probability, dtype=torch.float64).expand_as(b)
    return W @ W.transpose(1, 2), b, imp, prob


def linear_loss_terms(W: Float[Tensor, "inst feat hidden"], b: Float[Tensor, "inst feat"], importance: Tensor,
                      probability: Tensor,
                      signed: bool = False) -> LinearLossTerms:
    """The linear model's loss as feature benefit + interference + bias (exact for independent features).

    **Arguments:** ``W [inst, feat, hidden]``, ``b [inst, feat]``, ``importance`` and ``probability``
    ``[inst, feat]`` (or broadcastable to it), ``signed``: values U[−1, 1] instead of U[0, 1].
    **Returns:** `LinearLossTerms` with ``[inst]`` fields.
    """
    G, b, imp, prob = _inputs(W, b, importance, probability)
    mean, var = feature_moments(prob, signed)
    n = b.shape[-1]
    diag = G.diagonal(dim1=1, dim2=2)
    off = G - torch.diag_embed(diag)
    benefit = (imp * (1 - diag).square() * var).sum(-1) / n
    interference = (imp * (off.square() * var.unsqueeze(1)).sum(-1)).sum(-1) / n
    mean_error = ((G - torch.eye(n, dtype=G.dtype, device=G.device)) * mean.unsqueeze(1)).sum(-1) + b
    return LinearLossTerms(benefit, interference, (imp * mean_error.square()).sum(-1) / n)


def sparse_probabilities(probability: Tensor) -> tuple[Tensor, Tensor]:
    """P₀ = Π_j (1 − p_j) ``[inst]`` (no feature on) and P₁ᵢ = p_i Π_{j≠i} (1 − p_j) ``[inst, feat]``
    (only feature i on), for independent features with probabilities ``[inst, feat]``."""
    prob = torch.as_tensor(probability, dtype=torch.float64)
    off = (1 - prob).unsqueeze(-2).expand(*prob.shape, prob.shape[-1])
    others = torch.where(torch.eye(prob.shape[-1], dtype=torch.bool, device=prob.device), 1.0, off).prod(-1)
    return (1 - prob).prod(-1), prob * others


def _square_integral(alpha: Tensor, beta: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """∫_low^high (α u + β)² du for low ≤ high, elementwise."""
    return (alpha.square() * (high**3 - low**3) / 3 + alpha * beta * (high**2 - low**2)
            + beta.square() * (high - low))


def _relu_moments(a: Tensor, c: Tensor, signed: bool) -> tuple[Tensor, Tensor]:
    """E[ReLU(a u + c)²] and E[(ReLU(a u + c) − u)²] for u ~ U[0, 1] (signed: U[−1, 1]), elementwise.

    a u + c > 0 on one end of the u range (the upper end when a > 0, the lower when a < 0; all or
    none when a = 0): the interval [lo, hi] below. Off it the ReLU is 0 and the error is u.
    """
    start = -1.0 if signed else 0.0
    first, last = torch.full_like(a, start), torch.ones_like(a)
    cross = (-c / torch.where(a == 0, 1.0, a)).clamp(start, 1.0)
    lo = torch.where(a > 0, cross, torch.where(a < 0, first, torch.where(c > 0, first, last)))
    hi = torch.where(a < 0, cross, last)
    width = 1.0 - start
    relu_sq = _square_integral(a, c, lo, hi) / width
    zero = torch.zeros_like(a)
    u_sq_on = _square_integral(torch.ones_like(a), zero, lo, hi)
    u_sq_all = (1.0 - start**3) / 3
    error = (_square_integral(a - 1, c, lo, hi) + u_sq_all - u_sq_on) / width
    return relu_sq, error


def relu_sparse_loss_terms(W: Float[Tensor, "inst feat hidden"], b: Float[Tensor, "inst feat"], importance: Tensor,
                           probability: Tensor,
                           signed: bool = False) -> SparseLossTerms:
    """The ReLU-output model's loss on inputs with at most one active feature, in closed form.

    See the module docstring for the three terms; `SparseLossTerms.total` approximates the whole
    loss when two features are rarely on together (Σ_i p_i ≪ 1).

    **Arguments:** ``W [inst, feat, hidden]``, ``b [inst, feat]``, ``importance`` and ``probability``
    ``[inst, feat]`` (or broadcastable), ``signed``: values U[−1, 1] instead of U[0, 1].
    **Returns:** `SparseLossTerms` with ``[inst]`` fields.
    """
    G, b, imp, prob = _inputs(W, b, importance, probability)
    n = b.shape[-1]
    p_none, p_one = sparse_probabilities(prob)
    eye = torch.eye(n, dtype=torch.bool, device=G.device)
    # [inst, active i, output k]: output k's pre-activation is G_ki u + b_k (G is symmetric).
    relu_sq, _ = _relu_moments(G, b.unsqueeze(1).expand_as(G), signed)
    bias_sq = torch.relu(b).square()  # [inst, k]: output k's loss from its bias alone
    leak = torch.where(eye, 0.0, imp.unsqueeze(1) * (relu_sq - bias_sq.unsqueeze(1)))
    _, own = _relu_moments(G.diagonal(dim1=1, dim2=2), b, signed)
    idle = p_none.unsqueeze(-1) + p_one.sum(-1, keepdim=True) - p_one  # P(≤1 on and output k's feature off)
    linear = torch.where(eye, 0.0, imp.unsqueeze(1) * G.square() / 3.0)  # E[u²] = 1/3, signed or not
    return SparseLossTerms(
        feature_benefit=(p_one * imp * own).sum(-1) / n,
        interference=(p_one * leak.sum(-1)).sum(-1) / n,
        bias_penalty=(imp * bias_sq * idle).sum(-1) / n,
        linear_interference=(p_one * linear.sum(-1)).sum(-1) / n,
    )


@torch.no_grad()
def monte_carlo_loss(kind: str, params: Params, x: Float[Tensor, "inst batch feat"],
                     importance: Float[Tensor, "inst feat"],
                     max_active: int | None = None) -> LossEstimate:
    """The loss estimated on sampled inputs, optionally only the part from sparse inputs.

    The per-example loss is (1/n) Σ_i I_i (x'_i − x_i)² (`superposition.models.forward`); examples
    with more than `max_active` non-zero features count as 0, so the mean is that part's
    contribution to the loss (``max_active=1`` estimates `SparseLossTerms.total`).

    **Arguments:** ``params`` of model `kind`, ``x [inst, batch, feat]``, ``importance [inst, feat]``.
    **Returns:** `LossEstimate` with ``[inst]`` mean and standard error over the batch.
    """
    out = forward(kind, params, x).output
    per_example = (importance.unsqueeze(1) * (out - target(kind, x)).square()).mean(-1).double()
    if max_active is not None:
        per_example = torch.where((x != 0).sum(-1) <= max_active, per_example, 0.0)
    batch = per_example.shape[1]
    return LossEstimate(per_example.mean(1), per_example.std(1) / batch**0.5)


def pooled(estimates: list[LossEstimate]) -> LossEstimate:
    """The estimate from equal-sized batches pooled: mean of the means, standard error √(Σ se²) / k."""
    if not estimates:
        raise ValueError("pooled needs at least one estimate")
    k = len(estimates)
    mean = torch.stack([e.mean for e in estimates]).mean(0)
    return LossEstimate(mean, torch.stack([e.stderr.square() for e in estimates]).sum(0).sqrt() / k)
