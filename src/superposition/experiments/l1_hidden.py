"""Removing superposition: an L1 penalty on the hidden activations.

The setting of the `basic` recipe where the ReLU output model is in superposition (n = 20, m = 5,
importance 0.7^i, 1 − S = 0.03: about ten features in five dimensions), trained with
λ · mean_batch ‖h‖₁ added to the objective (`TrainConfig.l1_hidden`, one λ per configuration).

Representing feature i now costs λ E|h| on top of the squared error it saves, so features drop
out from the least important up; once at most m remain they no longer need to share dimensions.
Claims: D* = m / ‖W‖_F² rises towards 1 (no superposition) with λ, the remaining features become
orthogonal, and the reconstruction loss (reported without the penalty) rises: superposition is
removed at a cost in loss.

The penalty also creates local minima: in the paper-size run λ = 0.005 keeps one antipodal pair
and leaves a hidden dimension unused (D* > 1 with superposition), while λ = 0.003 and 0.01 are
superposition-free; the largest-interference panel of the figure shows which.
"""

from __future__ import annotations

import torch

from ..analysis import dimensions_per_feature, interference, represented, represented_count
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..figures.robustness import l1_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "10 Removing superposition: L1 on hidden activations"
P = 0.03
LAMBDAS = (0.0, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2)
QUICK_LAMBDAS = (0.0, 3e-4, 1e-3, 3e-3, 1e-2)
SUPERPOSED = 0.75
"""At λ = 0 the model is in superposition: D* below this (1/2 for antipodal pairs)."""
ORTHOGONAL = 0.05
"""No superposition: every represented feature has interference Σ_{j≠i}(Ŵ_i·W_j)² below this."""
SLACK = 0.02
"""Tolerated relative dip of D* or of the loss from one λ to the next (training noise)."""
COST = 1.5
"""The superposition-free model's loss is at least this multiple of the unpenalised one."""


def configs(quick: bool) -> dict[str, RunConfig]:
    lambdas = QUICK_LAMBDAS if quick else LAMBDAS
    return {"relu_output": RunConfig(
        model=ModelConfig("relu_output", n_features=20, n_hidden=5),
        data=DataConfig(feature_probability=(P,) * len(lambdas), importance_decay=0.7),
        # One restart: best-of-N keeps the lowest loss *without* the penalty, which favours the restart
        # the penalty shaped least.
        train=TrainConfig(steps=3000 if quick else 10_000, l1_hidden=lambdas),
        name="l1-hidden",
    )}


def lambdas(run: Run) -> list[float]:
    """λ of every saved instance."""
    per_config = run.config.train.l1_per_config(run.config.data.n_configs)
    return [per_config[k] for k in run.metrics.config_index]


def max_interference(W: torch.Tensor) -> torch.Tensor:
    """``[inst]``: the largest interference Σ_{j≠i}(Ŵ_i·W_j)² of a represented feature (0 if none is)."""
    return torch.where(represented(W), interference(W), 0.0).amax(-1)


def superposition_free(W: torch.Tensor, n_hidden: int) -> torch.Tensor:
    """bool ``[inst]``: between 1 and m features represented, all orthogonal (interference < ORTHOGONAL)."""
    count = represented(W).sum(-1)
    return (count >= 1) & (count <= n_hidden) & (max_interference(W) < ORTHOGONAL)


def _figures(runs: dict[str, Run]) -> dict[str, object]:
    run = runs["relu_output"]
    fig = l1_figure(lambdas(run), torch.tensor(run.metrics.final_loss), dimensions_per_feature(run.W),
                    represented_count(run.W), max_interference(run.W), run.config.model.n_hidden,
                    run.config.data.feature_probability[0])
    return {"l1_hidden": fig}


def _rising(values: list[float]) -> bool:
    return all(b >= a * (1 - SLACK) for a, b in zip(values, values[1:], strict=False))


def removal_claim(lam: list[float], W: torch.Tensor) -> ClaimResult:
    """``W [inst, feat, hidden]`` with instances in increasing λ, the first λ = 0."""
    d_star = dimensions_per_feature(W).tolist()
    free = superposition_free(W, W.shape[-1]).tolist()
    first = next((k for k, f in enumerate(free) if f), None)
    held = lam[0] == 0 and d_star[0] < SUPERPOSED and not free[0] and first is not None and _rising(d_star)
    at = "none" if first is None else f"λ = {lam[first]:g} (D* = {fmt(d_star[first])})"
    return ClaimResult(SECTION, "An L1 penalty on the hidden activations removes superposition",
                       f"D* < {SUPERPOSED:g} at λ = 0, rising with λ (±{100 * SLACK:g}%) until some λ leaves ≤ m "
                       f"features, all orthogonal (interference < {ORTHOGONAL:g})",
                       f"D* {', '.join(fmt(d) for d in d_star)}; first superposition-free {at}", held)


def cost_claim(lam: list[float], loss: list[float], W: torch.Tensor) -> ClaimResult:
    free = superposition_free(W, W.shape[-1]).tolist()
    first = next((k for k, f in enumerate(free) if f), None)
    ratio = loss[first] / loss[0] if first is not None else float("nan")
    held = first is not None and _rising(loss) and ratio >= COST
    return ClaimResult(SECTION, "Removing superposition costs loss",
                       f"the loss rises with λ (±{100 * SLACK:g}%); ≥ {COST:g}× the λ = 0 loss once superposition "
                       "is gone", f"loss {', '.join(fmt(v) for v in loss)}; ratio {fmt(ratio)}", held)


def _claims(runs: dict[str, Run]) -> list[ClaimResult]:
    run = runs["relu_output"]
    lam = lambdas(run)
    return [removal_claim(lam, run.W), cost_claim(lam, list(run.metrics.final_loss), run.W)]


RECIPE = Recipe("l1-hidden", SECTION, "an L1 penalty on hidden activations removes superposition at a cost in loss",
                configs, _figures, _claims)
