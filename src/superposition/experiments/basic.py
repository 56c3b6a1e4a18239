"""Section 2 (demonstrating superposition): linear vs ReLU output models, n = 20, m = 5.

Importance 0.7^i, 1 − S in {1, .3, .1, .03, .01, .003, .001}. Paper: the linear model keeps the
five most important features, orthogonally, at every sparsity; the ReLU model does the same when
dense, then stores more features in superposition as sparsity grows, less important ones first
and as antipodal pairs, and its biases turn negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..analysis import feature_dimensionality, interference, represented
from ..figures import basic_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt
from .runs import BASIC_PROBABILITIES as PROBABILITIES
from .runs import basic_configs as configs

SECTION = "3 Demonstrating superposition"
TOP = 5  # m: the features a model without superposition keeps
NEAR_CUT = 0.4  # a lower cut on ‖W_i‖ that tells a fall of the count from a fall of the storage


@dataclass(frozen=True)
class Model:
    """One run's saved models, one per sparsity (densest first)."""

    W: torch.Tensor
    """``[inst, feat, hidden]``."""
    b: torch.Tensor
    """``[inst, feat]``."""
    probabilities: tuple[float, ...]
    """1 − S of each instance."""


@dataclass(frozen=True)
class Analysis:
    linear: Model
    relu: Model


def _model(run: Run) -> Model:
    return Model(run.W, run.b, tuple(float(p) for p in run.metrics.feature_probability))


def analyse(runs: dict[str, Run]) -> Analysis:
    return Analysis(_model(runs["linear"]), _model(runs["relu_output"]))


def _models(a: Analysis) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {"linear": (a.linear.W, a.linear.b), "ReLU output": (a.relu.W, a.relu.b)}


def _figures(a: Analysis) -> dict[str, object]:
    return {"basic": basic_figure(_models(a), list(PROBABILITIES))}


def _interactive(a: Analysis) -> dict[str, object]:
    from ..figures.interactive import superposition_slider

    return {"basic_slider": superposition_slider(_models(a), list(PROBABILITIES))}


def _claims(a: Analysis) -> list[ClaimResult]:
    return [_linear_claim(a.linear), _dense_relu_claim(a.relu), _packing_claim(a.relu), _order_claim(a.relu),
            _antipodal_claim(a.relu), _bias_claim(a.relu)]


def _top_only(W: torch.Tensor) -> tuple[bool, float]:
    on = represented(W)
    top = torch.zeros_like(on)
    top[:TOP] = True
    return bool(torch.equal(on, top)), float(interference(W)[:TOP].max())


def _linear_claim(m: Model) -> ClaimResult:
    checks = [_top_only(W) for W in m.W]
    held = all(ok and inter < 0.05 for ok, inter in checks)
    worst = max(inter for _, inter in checks)
    kept, total = sum(ok for ok, _ in checks), len(checks)
    return ClaimResult(SECTION, "The linear model keeps the 5 most important features, orthogonally, at every sparsity",
                       f"top 5 only at all {total} sparsities, interference < 0.05",
                       f"top 5 only at {kept}/{total}, max interference {fmt(worst)}", held)


def _dense_relu_claim(m: Model) -> ClaimResult:
    ok, inter = _top_only(m.W[0])
    return ClaimResult(SECTION, "Dense: the ReLU model behaves like the linear one",
                       "at 1 − S = 1: top 5 only, interference < 0.05",
                       f"top 5 only: {ok}, interference {fmt(inter)}", ok and inter < 0.05)


def _never_fall(counts: list[int]) -> bool:
    return all(a <= b for a, b in zip(counts, counts[1:], strict=False))


def _fall_cause(m: Model, counts: list[int]) -> str:
    """Where a count falls: the features just under the cut there, and the counts at a lower cut.

    Separates a fall of the count (features stored at ‖W_i‖ a little under the cut) from a fall of
    the storage (features dropped): only the first leaves the counts at `NEAR_CUT` rising.
    """
    falls = [i + 1 for i, (a, b) in enumerate(zip(counts, counts[1:], strict=False)) if b < a]
    if not falls:
        return ""
    norms = m.W.norm(dim=-1)
    parts = []
    for i in falls:
        near = ((norms[i] > NEAR_CUT) & ~represented(m.W[i])).nonzero().flatten().tolist()
        shown = ", ".join(fmt(float(norms[i, f])) for f in near)
        parts.append(f"at 1 − S = {m.probabilities[i]} features {near} sit just under the cut "
                     f"(‖W_i‖ {shown})" if near else
                     f"at 1 − S = {m.probabilities[i]} no feature within {NEAR_CUT}–0.5")
    lower = represented(m.W, NEAR_CUT).sum(-1).tolist()
    if _never_fall(lower):
        return f"; cause: the count falls, not the storage: {'; '.join(parts)}; counted at ‖W_i‖ > {NEAR_CUT}: {lower}"
    return f"; {'; '.join(parts)}; counted at ‖W_i‖ > {NEAR_CUT}: {lower} (fall too)"


def _packing_claim(m: Model) -> ClaimResult:
    counts = represented(m.W).sum(-1).tolist()
    held = _never_fall(counts) and counts[-1] >= 2 * TOP
    return ClaimResult(SECTION, "As sparsity grows the ReLU model represents more features, in superposition",
                       f"counts never fall as sparsity grows (the paper's panels) and reach at least 2m = 10 "
                       f"features in m = 5 dimensions at 1 − S = {m.probabilities[-1]}",
                       f"counts {counts}{_fall_cause(m, counts)}", held)


def _first_superposed(m: Model) -> int:
    counts = represented(m.W).sum(-1).tolist()
    return next((i for i, c in enumerate(counts) if c > TOP), len(counts) - 1)


def _order_claim(m: Model) -> ClaimResult:
    i = _first_superposed(m)
    W = m.W[i]
    inter = interference(W)
    on = represented(W)
    superposed = (on & (inter > 0.5)).nonzero().flatten()
    clean = (on & (inter < 0.1)).nonzero().flatten()
    held = len(superposed) > 0 and len(clean) > 0 and float(clean.float().mean()) < float(superposed.float().mean())
    return ClaimResult(SECTION, "Less important features go into superposition first",
                       "at the first sparsity with > 5 features, superposed features are less important (higher index)",
                       f"1 − S = {m.probabilities[i]}: orthogonal {clean.tolist()}, "
                       f"superposed {superposed.tolist()}",
                       held)


def _antipodal_claim(m: Model) -> ClaimResult:
    i = _first_superposed(m)
    W = m.W[i]
    inter = interference(W)
    superposed = represented(W) & (inter > 0.5)
    dims = feature_dimensionality(W)[superposed]
    held = len(dims) > 0 and bool(((dims - 0.5).abs() < 0.1).all())
    shown = ", ".join(fmt(float(d)) for d in dims)
    return ClaimResult(SECTION, "Features first enter superposition as antipodal pairs",
                       "at the first sparsity with > 5 features, superposed features have D_i ≈ 1/2",
                       f"1 − S = {m.probabilities[i]}: D_i = [{shown}]", held)


def _bias_claim(m: Model) -> ClaimResult:
    dense, sparse = float(m.b[0].mean()), float(m.b[-1].mean())
    sparsest = m.probabilities[-1]
    return ClaimResult(SECTION, "With superposition the ReLU model's biases turn negative",
                       f"mean bias < 0 at 1 − S = {sparsest} and below its dense value",
                       f"mean bias {fmt(dense)} (dense) → {fmt(sparse)} (1 − S = {sparsest})",
                       sparse < 0 and sparse < dense)


RECIPE = Recipe("basic", SECTION, "20 features in 5 dimensions: linear vs ReLU output across sparsity",
                configs, _figures, _claims, _interactive, analyse=analyse)
