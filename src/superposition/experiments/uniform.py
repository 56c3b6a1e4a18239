"""Section 5.1 (uniform superposition): how many dimensions a feature gets, as sparsity grows.

n = 400 features, m = 30 hidden dimensions, every feature of importance 1 and of the same
probability p; ReLU output model, one configuration per p on a log grid of 1/(1 − S) = 1/p from 1
to 1000 (32 points). The paper plots the dimensions per feature D* = m / ‖W‖_F² against 1/(1 − S) and finds it
"sticky": it stays at 1 (one feature per dimension) when dense and sits at 1/2 (antipodal pairs)
over a range of sparsities instead of falling smoothly, then keeps falling as more features are
packed in. Overlaid, each feature's dimensionality D_i clusters at the fractions of the uniform
polytopes: 1, 3/4, 2/3, 1/2, 2/5, 3/8 (see the `geometry` recipe, which analyses the same runs).

Quick size: n = 80, m = 10 (still n ≫ m) on 1/p from 1 to 12 (13 points), where the geometry happens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..analysis import dimensions_per_feature
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..figures import dimensionality_figure, relative_loss_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "5.1 Uniform superposition"
RUN = "relu_output"
"""The one run, shared with the `geometry` recipe (same name, same config)."""
TOLERANCE = 0.05
"""|D* − target| counted as "at" 1 or 1/2."""
MIN_PLATEAU = 2
"""Consecutive sparsities D* must stay at 1/2 for to count as sticky."""
SPARSE_CEILING = 0.25
"""D* at the sparsest configuration must be below this: far past the antipodal plateau."""


def inverse_p_grid(high: float, points: int) -> tuple[float, ...]:
    """p with 1/p log-spaced from 1 to `high` (4 significant digits), densest first."""
    return tuple(float(f"{p:.4g}") for p in np.geomspace(1.0, 1.0 / high, points))


def configs(quick: bool) -> dict[str, RunConfig]:
    n, m = (80, 10) if quick else (400, 30)
    return {RUN: RunConfig(
        model=ModelConfig("relu_output", n_features=n, n_hidden=m),
        # All features equal: importance 1 (the default decay 1.0), one p per configuration.
        data=DataConfig(feature_probability=inverse_p_grid(12.0, 13) if quick else inverse_p_grid(1000.0, 32)),
        # Losses settle by ~2000 steps (quick) and ~3000 (400/30, the sparsest last: see uniform_loss.png), D* by
        # ~4000; only the transition between D* = 1 and 1/2 keeps drifting slowly. 4000 steps: ~14 min on 1 core.
        train=TrainConfig(steps=5000 if quick else 4000, lr=1e-3),
        name="uniform",
    )}


def probabilities(run: Run) -> list[float]:
    return [float(p) for p in run.metrics.feature_probability]


def _figures(runs: dict[str, Run]) -> dict[str, object]:
    run = runs[RUN]
    ps = probabilities(run)
    return {"uniform_dimensionality": dimensionality_figure(run.W, ps),
            "uniform_loss": relative_loss_figure(run.metrics.loss_steps, run.metrics.loss_curve, ps)}


def _interactive(runs: dict[str, Run]) -> dict[str, object]:
    from ..figures.interactive import dimensionality_slider

    run = runs[RUN]
    return {"uniform_slider": dimensionality_slider(run.W, probabilities(run))}


# --- claims ------------------------------------------------------------------------------------


def _sorted(W: Tensor, ps: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(1/p ascending, D* in that order)."""
    x = 1.0 / np.asarray(ps, dtype=float)
    order = np.argsort(x)
    return x[order], dimensions_per_feature(torch.as_tensor(W)).double().numpy()[order]


def dense_claim(W: Tensor, ps: Sequence[float]) -> ClaimResult:
    """D* = 1 at the densest configuration (W ``[inst, feat, hidden]``, one p per instance); the
    measured value also says how far into sparsity D* stays there."""
    x, d = _sorted(W, ps)
    at_one = np.abs(d - 1.0) <= TOLERANCE
    held = bool(x[0] == 1.0 and at_one[0])
    last = x[int(np.argmin(np.append(at_one, False)) - 1)] if at_one[0] else None
    stays = f"; within ±{TOLERANCE} of 1 up to 1/(1 − S) = {fmt(last)}" if last is not None else ""
    return ClaimResult(SECTION, "Dense features get one dimension each: D* = 1 (the first sticky point)",
                       f"D* = m/‖W‖_F² within ±{TOLERANCE} of 1 at 1 − S = 1",
                       f"D* = {fmt(d[0])} at 1/(1 − S) = {fmt(x[0])}{stays}", held)


def longest_run(mask: Sequence[bool]) -> tuple[int, int]:
    """(start, length) of the longest run of True in `mask`; (0, 0) when there is none."""
    best_start, best_length, start = 0, 0, 0
    for i, flag in enumerate(mask):
        if not flag:
            start = i + 1
        elif i + 1 - start > best_length:
            best_start, best_length = start, i + 1 - start
    return best_start, best_length


def half_plateau_claim(W: Tensor, ps: Sequence[float]) -> ClaimResult:
    """D* stays within ±TOLERANCE of 1/2 for at least MIN_PLATEAU consecutive sparsities."""
    x, d = _sorted(W, ps)
    start, length = longest_run(list(np.abs(d - 0.5) <= TOLERANCE))
    span = f"1/(1 − S) = {fmt(x[start])}–{fmt(x[start + length - 1])}" if length else "none"
    values = ", ".join(fmt(v) for v in d[start:start + length])
    return ClaimResult(SECTION, "D* is sticky at 1/2: features sit in antipodal pairs over a range of sparsities",
                       f"≥ {MIN_PLATEAU} consecutive sparsities with D* within ±{TOLERANCE} of 1/2",
                       f"{length} consecutive ({span}): D* = [{values}]", length >= MIN_PLATEAU)


def decreasing_claim(W: Tensor, ps: Sequence[float], step_tolerance: float = 0.03) -> ClaimResult:
    """D* never rises by more than `step_tolerance` from one sparsity to the next, and ends below SPARSE_CEILING."""
    x, d = _sorted(W, ps)
    rise = float(np.max(np.diff(d), initial=0.0))
    held = rise <= step_tolerance and d[-1] < SPARSE_CEILING
    return ClaimResult(SECTION, "As sparsity grows, features get ever fewer dimensions: D* decreases",
                       f"D* non-increasing along 1/(1 − S) (rises ≤ {step_tolerance}), below {SPARSE_CEILING} "
                       f"at the sparsest (1/(1 − S) = {fmt(x[-1])})",
                       f"D* {fmt(d[0])} → {fmt(d[-1])}, largest rise {fmt(rise)}", bool(held))


def _claims(runs: dict[str, Run]) -> list[ClaimResult]:
    run = runs[RUN]
    ps = probabilities(run)
    return [dense_claim(run.W, ps), half_plateau_claim(run.W, ps), decreasing_claim(run.W, ps)]


RECIPE = Recipe("uniform", SECTION, "400 equal features in 30 dimensions: D* sticks at 1 and at 1/2 as sparsity grows",
                configs, _figures, _claims, _interactive)
