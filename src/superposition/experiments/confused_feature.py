# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Section 4 (superposition as a phase change): the dense, equal-importance corner of n = 2, m = 1.

Two features of importance 1, both always present (1 − S = 1), one hidden dimension, the ReLU
output model; ten models from independent initial weights (the paper's ten per point of its
phase diagram). Claimed (issue 16, §4; we found no sentence with these values in the paper's text,
only in its n = 2, m = 1 diagram's dense corner): the model stores both features in one
"confused" direction, W₁ ≈ W₂ ≈ 1/√2.

What the loss says: for dense features with equal importance and variance, the part of the loss
the linear map W Wᵀ can reduce is the same for every unit W (each feature keeps a share W_i² of its
variance, the biases absorb the means): 1/24 per feature for U[0, 1] features, whatever the angle.
The output ReLU breaks that tie only a little, by clipping predictions below 0; whether it favours
the confused direction (45° from the axes) is what the second claim measures, with the exact loss
of every trained model and of the confused construction on a midpoint grid over [0, 1]².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..models import forward
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "4 Superposition as a phase change"
RUN = "relu_output"
MODELS = 10
"""Models trained (independent initial weights), as the paper trains ten per phase-diagram point."""
CONFUSED = 1 / math.sqrt(2)
WEIGHT_TOLERANCE = 0.1
"""|‖W_i‖ − 1/√2| allowed for a feature of the confused solution (fixed before training)."""
MAJORITY = 6
"""Models out of MODELS that must be confused for the claim to hold."""
LINEAR_LOSS = 1 / 24
"""Per-feature loss of any unit W with the best biases, ignoring the output ReLU: Var U[0, 1] / 2."""
LOSS_TOLERANCE = 0.01
"""Relative distance from LINEAR_LOSS allowed for the trained models (they should sit on the flat valley)."""
GRID = 256
"""Midpoints per axis of the exact-loss grid over [0, 1]² (relative quadrature error ~1/GRID² ≈ 2e-5)."""


def configs(quick: bool) -> dict[str, RunConfig]:
    return {RUN: RunConfig(
        model=ModelConfig("relu_output", n_features=2, n_hidden=1),
        data=DataConfig(feature_probability=(1.0,), importance=(1.0, 1.0)),
        # Every restart kept: the claim is about how many of the ten land on the confused solution.
        train=TrainConfig(steps=2000 if quick else 10_000, restarts=MODELS, keep_all_restarts=True),
        name="confused-feature",
    )}


def dense_loss(W: Tensor, b: Tensor, grid: int = GRID) -> Tensor:
    """Exact expected loss (mean over the 2 features) of relu_output models on dense U[0, 1]²
    inputs, by the midpoint rule. **Arguments:** ``W [inst, 2, 1]``, ``b [inst, 2]``. **Returns:** ``[inst]``."""
    u = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    x = torch.cartesian_prod(u, u).expand(W.shape[0], grid * grid, 2)
    out = forward("relu_output", {"W": W.double(), "b": b.double()}, x).output
    return (out - x).square().mean(dim=(-2, -1))


def best_bias_loss(W: Tensor, steps: int = 300) -> Tensor:
    """`dense_loss` of fixed ``W [inst, 2, 1]`` with the biases optimised (LBFGS from b = 0.1: at b = 0
    a dead ReLU has no gradient).
    **Returns:** ``[inst]``."""
    b = torch.full((W.shape[0], 2), 0.1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = dense_loss(W.detach(), b).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return dense_loss(W, b.detach())


@dataclass(frozen=True)
class ConfusedAnalysis:
    weights: Tensor
    """``[model, 2]``: W₁, W₂ of every model (the one hidden dimension)."""
    angle: Tensor
    """``[model]``: atan(|W₂|/|W₁|) in degrees: 0 or 90 on an axis, 45 for the confused solution."""
    same_sign: Tensor
    """``[model]`` bool: W₁ and W₂ point the same way (the confused solution) rather than opposite."""
    loss: Tensor
    """``[model]``: exact loss of each trained model."""
    confused_loss: float
    """Exact loss of W = (1/√2, 1/√2) with its best biases."""


def analyse(runs: dict[str, Run]) -> ConfusedAnalysis:
    run = runs[RUN]
    W, b = run.W.detach().double(), run.b.detach().double()
    w = W[..., 0]
    confused = torch.full((1, 2, 1), CONFUSED, dtype=torch.float64)
    return ConfusedAnalysis(w, torch.rad2deg(torch.atan2(w[:, 1].abs(), w[:, 0].abs())), w[:, 0] * w[:, 1] > 0,
                            dense_loss(W, b), float(best_bias_loss(confused)[0]))


def is_confused(a: ConfusedAnalysis) -> Tensor:
    """``[model]`` bool: both |W_i| within WEIGHT_TOLERANCE of 1/√2, with the same sign."""
    return ((a.weights.abs() - CONFUSED).abs() <= WEIGHT_TOLERANCE).all(-1) & a.same_sign


def confused_claim(a: ConfusedAnalysis) -> ClaimResult:
    hits = int(is_confused(a).sum())
    angles = ", ".join(f"{float(x):.0f}°" + ("" if s else "(opp)") for x, s in zip(a.angle, a.same_sign, strict=True))
    best = float(a.loss.min())
    return ClaimResult(SECTION, "n = 2, m = 1, dense and equal importance: both features share one 'confused' "
                       "direction, W₁ ≈ W₂ ≈ 1/√2",
                       f"|W₁|, |W₂| within ±{WEIGHT_TOLERANCE} of 1/√2, same sign, in ≥ {MAJORITY} of "
                       f"{len(a.angle)} models (angle atan|W₂/W₁| = 45°)",
                       f"{hits}/{len(a.angle)} confused; angles {angles}; exact loss of the confused "
                       f"W = (1/√2, 1/√2) with best biases {a.confused_loss:.6f}, best trained {best:.6f}",
                       hits >= MAJORITY)


def valley_claim(a: ConfusedAnalysis) -> ClaimResult:
    """The trained models sit on the flat valley of the linear loss: ‖W‖ ≈ 1 and loss ≈ 1/24."""
    norms = a.weights.norm(dim=-1)
    rel = (a.loss / LINEAR_LOSS - 1).abs()
    held = bool((rel <= LOSS_TOLERANCE).all() and ((norms - 1).abs() <= 0.05).all())
    return ClaimResult(SECTION, "n = 2, m = 1, dense and equal importance: every unit direction loses about "
                       "the same, and training lands on that valley (D* = 1)",
                       f"every model: ‖W‖ within ±0.05 of 1 and exact loss within {LOSS_TOLERANCE:.0%} of 1/24 "
                       f"(the loss of any unit W without the output ReLU)",
                       f"‖W‖ {fmt(float(norms.min()))}–{fmt(float(norms.max()))}; loss "
                       f"{float(a.loss.min()):.6f}–{float(a.loss.max()):.6f} (1/24 = {LINEAR_LOSS:.6f})", held)


def _claims(a: ConfusedAnalysis) -> list[ClaimResult]:
    return [confused_claim(a), valley_claim(a)]


def _figures(a: ConfusedAnalysis) -> dict[str, Figure]:
    fig = Figure(figsize=(4.2, 4.0), layout="constrained")
    ax = fig.subplots()
    t = torch.linspace(0, 2 * math.pi, 200)
    ax.plot(t.cos(), t.sin(), color="0.8", lw=1)
    ax.plot([CONFUSED, -CONFUSED], [CONFUSED, -CONFUSED], ls=":", color="C3", label="confused W₁ = W₂")
    w = a.weights.numpy()
    ax.scatter(w[:, 0], w[:, 1], c=a.loss.numpy(), cmap="viridis", zorder=3, label="trained models")
    ax.set(xlabel="W₁", ylabel="W₂", aspect="equal", title="n = 2, m = 1, 1 − S = 1, equal importance")
    ax.legend(loc="lower left", fontsize=7)
    return {"confused_feature": fig}


RECIPE = Recipe("confused-feature", SECTION, "2 dense equal features in 1 dimension: the 'confused' solution?",
                configs, _figures, _claims, analyse=analyse)
