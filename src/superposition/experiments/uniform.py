"""Section 5.1 (uniform superposition): how many dimensions a feature gets, as sparsity grows.

n = 400 features, m = 30 hidden dimensions, every feature of importance 1 and of the same
probability p; ReLU output model, one configuration per p on a log grid of 1/(1 − S) = 1/p from 1
to 1000 (32 points). The paper plots the dimensions per feature D* = m / ‖W‖_F² against 1/(1 − S) and finds it
"sticky": it stays at 1 (one feature per dimension) when dense and sits at 1/2 (antipodal pairs)
over a range of sparsities instead of falling smoothly, then keeps falling as more features are
packed in. Overlaid, each feature's dimensionality D_i clusters at the fractions of the uniform
polytopes: 1, 3/4, 2/3, 1/2, 2/5, 3/8 (see the `geometry` recipe, which analyses the same runs).

The claim tests stickiness itself: at least 3 consecutive grid points within ±0.03 of 1/2, where D*
falls against ln(1/p) at under a third of the rate on either side (criterion fixed in advance, issue
16); the grid is finer (1/p × 1.1) where D* passes 1/2 so that a plateau, if there is one, spans
several points. Paper size: 32 points from 1 to 1000 with those near the band replaced by it (40 in all).

Quick size: n = 80, m = 10 (still n ≫ m) on 1/p from 1 to 12 (13 points, those near the band
replaced by it: 20), where the geometry happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..analysis import dimensions_per_feature
from ..figures import dimensionality_figure, relative_loss_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt
from .runs import UNIFORM_RUN, probabilities
from .runs import uniform_configs as configs

SECTION = "5.1 Uniform superposition"
RUN = UNIFORM_RUN
"""The one run, shared with the `geometry` recipe (same name, same config: `runs.uniform_configs`)."""
TOLERANCE = 0.05
"""|D* − 1| counted as "at" 1 (dense)."""
PLATEAU_TOLERANCE = 0.03
"""|D* − 1/2| counted as "on" the antipodal plateau."""
MIN_PLATEAU = 3
"""Consecutive grid points D* must stay on the plateau for to count as sticky."""
STICKY_RATIO = 1 / 3
"""On the plateau D* must fall (against ln 1/p) at under this fraction of the rate on either side of it."""
SPARSE_CEILING = 0.25
"""D* at the sparsest configuration must be below this: far past the antipodal plateau."""


@dataclass(frozen=True)
class Plateau:
    """The longest run of consecutive grid points with D* within `PLATEAU_TOLERANCE` of 1/2, and the slopes
    dD*/d ln(1/p) (least squares) on it and on the stretches of as many grid points on either side of it."""

    start: int
    """Index of its first point, in increasing 1/p."""
    length: int
    """Grid points on it (0: none)."""
    slope: float | None
    """On the plateau; None below 2 points."""
    before: float | None
    """From `length` points before it to its first point; None when the grid has no point there."""
    after: float | None
    """From its last point to `length` points after it; None when the grid has no point there."""

    @property
    def sticky(self) -> bool:
        """At least `MIN_PLATEAU` points, flatter than `STICKY_RATIO` × the slope on both sides."""
        if self.length < MIN_PLATEAU or None in (self.slope, self.before, self.after):
            return False
        return abs(self.slope) < STICKY_RATIO * min(abs(self.before), abs(self.after))


@dataclass(frozen=True)
class UniformAnalysis:
    """The uniform run measured once."""

    W: Tensor
    """``[inst, feat, hidden]`` in the run's instance order."""
    feature_probability: tuple[float, ...]
    """p of each instance."""
    inverse_p: np.ndarray
    """1/p ascending."""
    d_star: np.ndarray
    """D* = m / ‖W‖_F² in that order."""
    plateau: Plateau
    loss_steps: tuple[int, ...]
    loss_curve: tuple[tuple[float, ...], ...]
    """Per instance, the training loss at `loss_steps`."""


def _slope(x: np.ndarray, d: np.ndarray, lo: int, hi: int) -> float | None:
    """Least-squares slope of d against ln x over indices lo..hi (inclusive), None for fewer than 2 points."""
    lo, hi = max(lo, 0), min(hi, len(x) - 1)
    if hi - lo < 1:
        return None
    return float(np.polyfit(np.log(x[lo:hi + 1]), d[lo:hi + 1], 1)[0])


def find_plateau(x: np.ndarray, d: np.ndarray) -> Plateau:
    """The antipodal plateau of D* ``d`` along 1/p ``x`` (ascending), with its slopes (see `Plateau`)."""
    start, length = longest_run(list(np.abs(d - 0.5) <= PLATEAU_TOLERANCE))
    if length == 0:
        return Plateau(0, 0, None, None, None)
    end = start + length - 1
    before = _slope(x, d, start - length, start) if start > 0 else None
    after = _slope(x, d, end, end + length) if end < len(x) - 1 else None
    return Plateau(start, length, _slope(x, d, start, end), before, after)


def measure(W: Tensor, ps: Sequence[float]) -> tuple[np.ndarray, np.ndarray, Plateau]:
    """(1/p ascending, D* in that order, the plateau) of models ``W [inst, feat, hidden]``, one p per instance."""
    x, d = _sorted(W, ps)
    return x, d, find_plateau(x, d)


def analyse(runs: dict[str, Run]) -> UniformAnalysis:
    run = runs[RUN]
    ps = probabilities(run)
    x, d, plateau = measure(run.W, ps)
    curve = tuple(tuple(float(v) for v in row) for row in run.metrics.loss_curve)
    return UniformAnalysis(run.W, tuple(ps), x, d, plateau, tuple(run.metrics.loss_steps), curve)


def _figures(a: UniformAnalysis) -> dict[str, object]:
    ps = list(a.feature_probability)
    return {"uniform_dimensionality": dimensionality_figure(a.W, ps),
            "uniform_loss": relative_loss_figure(list(a.loss_steps), [list(c) for c in a.loss_curve], ps)}


def _interactive(a: UniformAnalysis) -> dict[str, object]:
    from ..figures.interactive import dimensionality_slider

    return {"uniform_slider": dimensionality_slider(a.W, list(a.feature_probability))}


# --- claims ------------------------------------------------------------------------------------


def _sorted(W: Tensor, ps: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(1/p ascending, D* in that order)."""
    x = 1.0 / np.asarray(ps, dtype=float)
    order = np.argsort(x)
    return x[order], dimensions_per_feature(torch.as_tensor(W)).double().numpy()[order]


def dense_claim(x: np.ndarray, d: np.ndarray) -> ClaimResult:
    """D* = 1 at the densest configuration (1/p ``x`` ascending, D* ``d``); the measured value also says
    how far into sparsity D* stays there."""
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


def _opt(value: float | None) -> str:
    return "n/a" if value is None else fmt(value)


def half_plateau_claim(x: np.ndarray, d: np.ndarray, plateau: Plateau) -> ClaimResult:
    """D* sticks at 1/2: `MIN_PLATEAU` consecutive points on it, flat against the decline either side."""
    start, length = plateau.start, plateau.length
    span = f"1/(1 − S) = {fmt(x[start])}–{fmt(x[start + length - 1])}" if length else "none"
    values = ", ".join(fmt(v) for v in d[start:start + length])
    return ClaimResult(SECTION, "D* is sticky at 1/2: features sit in antipodal pairs over a range of sparsities",
                       f"≥ {MIN_PLATEAU} consecutive grid points with D* within ±{PLATEAU_TOLERANCE} of 1/2, where "
                       f"dD*/d ln(1/(1 − S)) is under {STICKY_RATIO:.3g}× its magnitude on as many points either side",
                       f"{length} consecutive ({span}): D* = [{values}]; slope {_opt(plateau.slope)} on it, "
                       f"{_opt(plateau.before)} before, {_opt(plateau.after)} after", plateau.sticky)


def decreasing_claim(x: np.ndarray, d: np.ndarray, step_tolerance: float = 0.03) -> ClaimResult:
    """D* never rises by more than `step_tolerance` from one sparsity to the next, and ends below SPARSE_CEILING."""
    rise = float(np.max(np.diff(d), initial=0.0))
    held = rise <= step_tolerance and d[-1] < SPARSE_CEILING
    return ClaimResult(SECTION, "As sparsity grows, features get ever fewer dimensions: D* decreases",
                       f"D* non-increasing along 1/(1 − S) (rises ≤ {step_tolerance}), below {SPARSE_CEILING} "
                       f"at the sparsest (1/(1 − S) = {fmt(x[-1])})",
                       f"D* {fmt(d[0])} → {fmt(d[-1])}, largest rise {fmt(rise)}", bool(held))


def _claims(a: UniformAnalysis) -> list[ClaimResult]:
    x, d = a.inverse_p, a.d_star
    return [dense_claim(x, d), half_plateau_claim(x, d, a.plateau), decreasing_claim(x, d)]


RECIPE = Recipe("uniform", SECTION, "400 equal features in 30 dimensions: D* sticks at 1 and at 1/2 as sparsity grows",
                configs, _figures, _claims, _interactive, analyse=analyse)
