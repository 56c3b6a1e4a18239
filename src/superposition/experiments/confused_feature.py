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
from .base import SETTLED, ClaimResult, Recipe, fmt, late_fall

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
PROFILE_STEP = 2.5
"""Degrees between the unit directions at which `angle_profile` reads the best-bias loss (0° to 90°)."""
TIE = 1e-9
"""Losses closer than this are counted as equal (the quadrature's rounding, far below its ~1e-6 error)."""
NORM_STEP = 0.01
"""Relative change of ‖W‖ at which the confused point's curvature along the norm is read."""


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
    profile_angles: tuple[float, ...] = ()
    """Angles (degrees, 0 to 90) of the unit directions of `angle_profile`."""
    profile_loss: tuple[float, ...] = ()
    """Exact loss of the unit W at each of `profile_angles` with its best biases: the landscape along the angle."""
    confused_norm_loss: tuple[float, float] = (math.nan, math.nan)
    """The confused direction's best-bias loss at ‖W‖ = 1 − NORM_STEP and 1 + NORM_STEP."""
    late_fall: tuple[float, ...] | None = None
    """``[model]``: relative fall of each model's training loss over the second half of training (`late_fall`)."""


def unit_directions(degrees: Tensor, norm: float = 1.0) -> Tensor:
    """W ``[inst, 2, 1]`` of the given norm at ``degrees [inst]`` from the first feature's axis."""
    t = torch.deg2rad(degrees.double())
    return norm * torch.stack([t.cos(), t.sin()], -1).unsqueeze(-1)


def angle_profile(step: float = PROFILE_STEP) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Best-bias exact loss of unit W at angles 0, step, …, 90 degrees (one quadrant: swapping the
    features mirrors it about 45°; flipping one sign gives the same loss, to 1e-12 measured).
    **Returns:** (angles, losses)."""
    degrees = torch.arange(0.0, 90.0 + step / 2, step, dtype=torch.float64)
    return tuple(degrees.tolist()), tuple(best_bias_loss(unit_directions(degrees)).tolist())


def analyse(runs: dict[str, Run]) -> ConfusedAnalysis:
    run = runs[RUN]
    W, b = run.W.detach().double(), run.b.detach().double()
    w = W[..., 0]
    confused = unit_directions(torch.tensor([45.0, 45.0, 45.0]), 1.0) * torch.tensor(
        [1.0, 1 - NORM_STEP, 1 + NORM_STEP], dtype=torch.float64).view(3, 1, 1)
    at_confused = best_bias_loss(confused).tolist()
    angles, losses = angle_profile()
    return ConfusedAnalysis(w, torch.rad2deg(torch.atan2(w[:, 1].abs(), w[:, 0].abs())), w[:, 0] * w[:, 1] > 0,
                            dense_loss(W, b), at_confused[0], angles, losses, (at_confused[1], at_confused[2]),
                            late_fall(run.metrics.loss_curve))


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
                       f"W = (1/√2, 1/√2) with best biases {a.confused_loss:.6f}, best trained {best:.6f}"
                       f"{_landscape_cause(a) if hits < MAJORITY else ''}",
                       hits >= MAJORITY)


def _landscape_cause(a: ConfusedAnalysis) -> str:
    """Why training does not sit at 45°, from the best-bias loss along the angle: said only when the
    confused direction is not the profile's lowest point (then it is not what the loss selects)."""
    if not a.profile_loss:
        return ""
    loss = torch.tensor(a.profile_loss)
    angles = torch.tensor(a.profile_angles)
    low, high = int(loss.argmin()), int(loss.argmax())
    if a.confused_loss <= float(loss[low]) or float(angles[low]) == 45.0:
        return ""
    spread = float(loss[high] - loss[low])
    rank = int((loss > a.confused_loss + TIE).sum())
    place = ("the highest point of the profile" if rank == 0 else
             f"above {len(loss) - rank - 1} of the other {len(loss) - 1} profile angles")
    lo_deg = float(angles[low])
    down, up = a.confused_norm_loss
    i45 = int((angles - 45.0).abs().argmin())
    peak = 0 < i45 < len(loss) - 1 and float(loss[i45]) > max(float(loss[i45 - 1]), float(loss[i45 + 1]))
    saddle = (f"; the confused point is a saddle: a maximum along the angle, a minimum along ‖W‖ (‖W‖ ∓ "
              f"{NORM_STEP:.0%}: {down:.6f}, {up:.6f})" if peak and min(down, up) > a.confused_loss else "")
    return (f"; cause: the loss does not select 45°: with the best biases the exact loss of a unit W is "
            f"lowest at {lo_deg:g}° and {90 - lo_deg:g}° ({float(loss[low]):.6f}), and 45° "
            f"({a.confused_loss:.6f}) is {place}{saddle}; along the angle the loss varies by only "
            f"{spread:.2g} ({spread / float(loss[high]):.2%}), and the trained models lie anywhere on it: "
            f"{float(a.angle.min()):.0f}°–{float(a.angle.max()):.0f}° at losses "
            f"{float(a.loss.min()):.6f}–{float(a.loss.max()):.6f}")


def valley_claim(a: ConfusedAnalysis) -> ClaimResult:
    """The trained models sit on the flat valley of the linear loss: ‖W‖ ≈ 1 and loss ≈ 1/24."""
    norms = a.weights.norm(dim=-1)
    rel = (a.loss / LINEAR_LOSS - 1).abs()
    on = (rel <= LOSS_TOLERANCE) & ((norms - 1).abs() <= 0.05)
    held = bool(on.all())
    return ClaimResult(SECTION, "n = 2, m = 1, dense and equal importance: every unit direction loses about "
                       "the same, and training lands on that valley (D* = 1)",
                       f"every model: ‖W‖ within ±0.05 of 1 and exact loss within {LOSS_TOLERANCE:.0%} of 1/24 "
                       f"(the loss of any unit W without the output ReLU)",
                       f"‖W‖ {fmt(float(norms.min()))}–{fmt(float(norms.max()))}; loss "
                       f"{float(a.loss.min()):.6f}–{float(a.loss.max()):.6f} (1/24 = {LINEAR_LOSS:.6f})"
                       f"{'' if held else _unsettled(a, ~on)}", held)


def _unsettled(a: ConfusedAnalysis, off: Tensor) -> str:
    """Said when every model off the valley was still learning at the end (its loss fell by more than
    `SETTLED` over the second half of training)."""
    if a.late_fall is None:
        return ""
    falls = torch.tensor(a.late_fall, dtype=torch.float64)[off]
    if not bool((falls > SETTLED).all()):
        return ""
    norms = ", ".join(fmt(float(v)) for v in a.weights.norm(dim=-1)[off])
    return (f"; cause: not settled: the {int(off.sum())} models off the valley (‖W‖ {norms}) still lost "
            f"{float(falls.min()):.1%}–{float(falls.max()):.1%} over the second half of training")


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
