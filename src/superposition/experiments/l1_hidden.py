"""Removing superposition: an L1 penalty on the hidden activations.

The setting of the `basic` recipe where the ReLU output model is in superposition (n = 20, m = 5,
importance 0.7^i, 1 − S = 0.03: about ten features in five dimensions), trained with
λ · mean_batch ‖h‖₁ added to the objective (`TrainConfig.l1_hidden`, one λ per configuration).

Representing feature i now costs λ E|h| on top of the squared error it saves, so features drop
out from the least important up; once at most m remain they no longer need to share dimensions.
Claims: D* = m / ‖W‖_F² rises towards 1 (no superposition) with λ, the remaining features become
orthogonal, and the reconstruction loss (reported without the penalty) rises: superposition is
removed at a cost in loss.

The penalty also creates local minima. In the paper-size run of 2026-12-01 (results/) no λ is
superposition-free: an antipodal pair survives every λ (pairs with cos < −0.9 per λ: 5, 5, 5, 4,
2, 2, 1, 1), and at λ = 0.01 that one pair shares the model with 3 of 5 hidden dimensions in use
(D* > 1 with superposition); the λ = 1e-4 model, which skips a feature, scores 12.5% (7 SE) above
the λ = 3e-4 model on its own objective. The claims compute and print this evidence; the
largest-interference panel of the figure shows the pairs.

The penalty should drop features "below an importance threshold": the kept (represented) set at
every λ > 0 is then a prefix 0, 1, …, k − 1 of the features (importance falls with the index).
`prefix_claim` checks exactly that, with no slack: one feature dropped while a less important one
is kept makes it not held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..analysis import dimensions_per_feature, interference, represented
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
ANTIPODAL = -0.9
"""cos below which two represented features form an antipodal pair."""
USED_DIM = 0.1
"""A hidden dimension is in use when W has a singular value above this."""
ORTHOGONAL = 0.05
"""No superposition: every represented feature has interference Σ_{j≠i}(Ŵ_i·W_j)² below this."""
SLACK = 0.02
"""Tolerated relative dip of D* or of the loss from one λ to the next (training noise)."""
COST = 1.5
"""The superposition-free model's loss is at least this multiple of the unpenalised one."""
OBJECTIVE_SAMPLES = 1 << 18
"""Inputs (one seeded draw, shared by every model) on which `cross_objectives` compares the models."""
BEATEN_SE = 3.0
"""A model is a local minimum of its own objective when another λ's model scores lower on it by more
than this many standard errors of the paired difference."""


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


def max_interference(W: Tensor) -> Tensor:
    """``[inst]``: the largest interference Σ_{j≠i}(Ŵ_i·W_j)² of a represented feature (0 if none is)."""
    return torch.where(represented(W), interference(W), 0.0).amax(-1)


def superposition_free(W: Tensor, n_hidden: int) -> Tensor:
    """bool ``[inst]``: between 1 and m features represented, all orthogonal (interference < ORTHOGONAL)."""
    count = represented(W).sum(-1)
    return (count >= 1) & (count <= n_hidden) & (max_interference(W) < ORTHOGONAL)


@dataclass(frozen=True)
class L1Analysis:
    """The l1-hidden run measured once; per-instance fields in increasing-λ instance order."""

    lambdas: tuple[float, ...]
    loss: tuple[float, ...]
    """Final loss without the penalty."""
    d_star: Tensor
    """``[inst]`` D* = m / ‖W‖_F²."""
    represented: Tensor
    """bool ``[inst, feat]``: ‖W_i‖ > the represented threshold."""
    max_interference: Tensor
    """``[inst]``: see `max_interference`."""
    free: Tensor
    """bool ``[inst]``: see `superposition_free`."""
    n_hidden: int
    """m."""
    feature_probability: float
    """p, the same in every instance."""
    antipodal: tuple[tuple[tuple[int, int], ...], ...] = ()
    """Per instance, the pairs of represented features at cos < `ANTIPODAL` (empty if not measured)."""
    unpaired_interference: Tensor | None = None
    """``[inst]``: the largest interference of a represented feature outside those pairs (0 if none)."""
    used_dims: Tensor | None = None
    """int64 ``[inst]``: hidden dimensions in use (singular values of W above `USED_DIM`)."""
    objective: Tensor | None = None
    """``[model, λ]``: each model's sampled training objective at each λ of the sweep (`cross_objectives`)."""
    objective_se: Tensor | None = None
    """``[model, λ]``: the standard error of ``objective[k, j] − objective[j, j]`` (0 on the diagonal)."""


def cross_objectives(W: Tensor, b: Tensor, importance: Tensor, lam: Sequence[float], feature_probability: float,
                     samples: int = OBJECTIVE_SAMPLES, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Every `relu_output` model ``W [inst, feat, hidden]``, ``b [inst, feat]`` scored on every λ's training
    objective, importance-weighted squared error (mean over features) + λ_j · E‖h‖₁, on one seeded draw of
    independent U[0, 1] features on with probability p (the same inputs for every model).

    **Returns:** ``(objective [model, λ], se [model, λ])``, se the standard error of the paired difference
    ``objective[k, j] − objective[j, j]``.
    """
    g = torch.Generator().manual_seed(seed)
    n = W.shape[-2]
    x = torch.rand(samples, n, generator=g) * (torch.rand(samples, n, generator=g) < feature_probability)
    W, b, importance = W.float(), b.float(), importance.float()
    h = torch.einsum("bf,kfh->kbh", x, W)
    out = torch.relu(torch.einsum("kbh,kfh->kbf", h, W) + b[:, None])
    err = ((out - x) ** 2 * importance[:, None]).mean(-1)  # [model, sample]
    per = err[:, :, None] + h.abs().sum(-1)[:, :, None] * torch.tensor(lam, dtype=err.dtype)  # [model, sample, λ]
    own = per[torch.arange(len(lam)), :, torch.arange(len(lam))].T  # [sample, λ]: model j on λ_j
    se = (per - own[None]).std(1) / samples ** 0.5
    return per.mean(1).double(), se.double()


def antipodal_pairs(W: Tensor) -> tuple[tuple[int, int], ...]:
    """Pairs (i < j) of represented features of ``W [feat, hidden]`` at cos < `ANTIPODAL`."""
    on = represented(W)
    unit = W / W.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = torch.where(on[:, None] & on[None, :], unit @ unit.T, 0.0)
    return tuple((int(i), int(j)) for i, j in (cos < ANTIPODAL).nonzero().tolist() if i < j)


def _unpaired_interference(W: Tensor, pairs: tuple[tuple[int, int], ...]) -> float:
    keep = represented(W).clone()
    for i, j in pairs:
        keep[i] = keep[j] = False
    return float(torch.where(keep, interference(W), 0.0).max())


def measure(lam: Sequence[float], loss: Sequence[float], W: Tensor, feature_probability: float,
            b: Tensor | None = None, importance: Tensor | None = None) -> L1Analysis:
    """The analysis of models ``W [inst, feat, hidden]`` trained with penalties `lam` (increasing, the first 0);
    with their biases ``b [inst, feat]`` and ``importance [inst, feat]``, also `cross_objectives`."""
    pairs = tuple(antipodal_pairs(w) for w in W)
    unpaired = torch.tensor([_unpaired_interference(w, p) for w, p in zip(W, pairs, strict=True)])
    used = (torch.linalg.svdvals(W.float()) > USED_DIM).sum(-1)
    objective, se = ((None, None) if b is None or importance is None else
                     cross_objectives(W, b, importance, lam, feature_probability))
    return L1Analysis(tuple(float(v) for v in lam), tuple(float(v) for v in loss), dimensions_per_feature(W),
                      represented(W), max_interference(W), superposition_free(W, W.shape[-1]), W.shape[-1],
                      float(feature_probability), pairs, unpaired, used, objective, se)


def analyse(runs: dict[str, Run]) -> L1Analysis:
    run = runs["relu_output"]
    return measure(lambdas(run), run.metrics.final_loss, run.W, run.config.data.feature_probability[0],
                   run.params["b"], run.importance)


def _figures(a: L1Analysis) -> dict[str, object]:
    fig = l1_figure(list(a.lambdas), torch.tensor(a.loss), a.d_star, a.represented.sum(-1), a.max_interference,
                    a.n_hidden, a.feature_probability)
    return {"l1_hidden": fig}


def _rising(values: list[float]) -> bool:
    return all(b >= a * (1 - SLACK) for a, b in zip(values, values[1:], strict=False))


def _first_free(a: L1Analysis) -> int | None:
    return next((k for k, f in enumerate(a.free.tolist()) if f), None)


def removal_claim(a: L1Analysis) -> ClaimResult:
    d_star, lam = a.d_star.tolist(), a.lambdas
    first = _first_free(a)
    held = lam[0] == 0 and d_star[0] < SUPERPOSED and not bool(a.free[0]) and first is not None and _rising(d_star)
    at = "none" if first is None else f"λ = {lam[first]:g} (D* = {fmt(d_star[first])})"
    return ClaimResult(SECTION, "An L1 penalty on the hidden activations removes superposition",
                       f"D* < {SUPERPOSED:g} at λ = 0, rising with λ (±{100 * SLACK:g}%) until some λ leaves ≤ m "
                       f"features, all orthogonal (interference < {ORTHOGONAL:g})",
                       f"D* {', '.join(fmt(d) for d in d_star)}; first superposition-free {at}"
                       f"{_pairs_left(a) if first is None else ''}", held)


def _pairs_left(a: L1Analysis) -> str:
    """Where no λ is superposition-free: the antipodal pairs left at the largest λ, the interference
    outside them, and the hidden dimensions in use there."""
    if not a.antipodal or a.unpaired_interference is None or a.used_dims is None:
        return ""
    k = len(a.lambdas) - 1
    pairs = ", ".join(f"({i}, {j})" for i, j in a.antipodal[k]) or "none"
    unpaired = float(a.unpaired_interference[k])
    lead = ("cause: an antipodal pair survives every λ: " if all(a.antipodal) and unpaired < ORTHOGONAL else "")
    return (f"; {lead}antipodal pairs (cos < {ANTIPODAL:g}) per λ {[len(p) for p in a.antipodal]}; at "
            f"λ = {a.lambdas[k]:g}: pairs {pairs}, largest interference of the other features {fmt(unpaired)}, "
            f"{int(a.used_dims[k])} of {a.n_hidden} hidden dimensions in use")


def beaten_by(a: L1Analysis, k: int) -> int | None:
    """The other λ's model that scores lowest on model k's own training objective, if it beats model k there
    by more than `BEATEN_SE` standard errors (model k is then a local minimum of its objective); else None."""
    if a.objective is None or a.objective_se is None:
        return None
    own = a.objective[:, k] - a.objective[k, k]  # [model]: how much each model is above model k on λ_k
    beats = [j for j in range(len(a.lambdas)) if j != k and own[j] < -BEATEN_SE * a.objective_se[j, k]]
    return min(beats, key=lambda j: float(own[j])) if beats else None


def _beaten_text(a: L1Analysis, k: int, j: int) -> str:
    own, rival, se = float(a.objective[k, k]), float(a.objective[j, k]), float(a.objective_se[j, k])
    return (f"on λ = {a.lambdas[k]:g}'s own objective (loss + λ E‖h‖₁, sampled) the λ = {a.lambdas[j]:g} model, "
            f"which keeps {_kept_text(a.lambdas[j], a.represented[j]).split(': ', 1)[1]}, scores {fmt(rival)}, "
            f"{(own - rival) / own:.1%} ({(own - rival) / se:.0f} SE) below the λ = {a.lambdas[k]:g} model's "
            f"{fmt(own)}")


def _survives(a: L1Analysis) -> bool:
    """An antipodal pair survives every λ, with no other interference left at the largest (see `_pairs_left`)."""
    return (bool(a.antipodal) and all(a.antipodal) and a.unpaired_interference is not None
            and float(a.unpaired_interference[-1]) < ORTHOGONAL)


def cost_claim(a: L1Analysis) -> ClaimResult:
    first, loss = _first_free(a), list(a.loss)
    ratio = loss[first] / loss[0] if first is not None else float("nan")
    held = first is not None and _rising(loss) and ratio >= COST
    at = (f"ratio {fmt(ratio)} at λ = {a.lambdas[first]:g}" if first is not None else
          "no ratio: no λ of the sweep removed superposition (see the claim above)")
    return ClaimResult(SECTION, "Removing superposition costs loss",
                       f"the loss rises with λ (±{100 * SLACK:g}%); ≥ {COST:g}× the λ = 0 loss once superposition "
                       "is gone", f"loss {', '.join(fmt(v) for v in loss)}; {at}{_cost_cause(a) if not held else ''}",
                       held)


def _cost_cause(a: L1Analysis) -> str:
    """Why the cost claim fails, where every failing part has its evidence: no λ removed superposition because
    an antipodal pair survives; the loss falls after a λ whose model is a local minimum of its own objective."""
    first, loss, parts = _first_free(a), list(a.loss), []
    if first is None:
        if not _survives(a):
            return ""
        parts.append("an antipodal pair survives every λ (see the claim above)")
    elif loss[first] / loss[0] < COST:
        return ""
    for k in range(len(loss) - 1):
        if loss[k + 1] < loss[k] * (1 - SLACK):
            j = beaten_by(a, k)
            if j is None:
                return ""
            parts.append(f"the loss falls after λ = {a.lambdas[k]:g} because that model is a local minimum: "
                         + _beaten_text(a, k, j))
    return "; cause: " + "; ".join(parts) if parts else ""


def is_prefix(kept: Tensor) -> Tensor:
    """bool ``[...]``: the True entries of ``kept [..., feat]`` are exactly the first k (k ≥ 0)."""
    k = kept.sum(-1, keepdim=True)
    return (kept == (torch.arange(kept.shape[-1], device=kept.device) < k)).all(-1)


def _kept_text(lam: float, kept: Tensor) -> str:
    index = kept.nonzero().flatten().tolist()
    if bool(is_prefix(kept)):
        return f"λ = {lam:g}: 0–{len(index) - 1}" if index else f"λ = {lam:g}: none"
    dropped = [i for i in range(max(index) + 1) if i not in index]
    return f"λ = {lam:g}: {index} (drops {dropped} but keeps {[i for i in index if i > min(dropped)]})"


def prefix_claim(a: L1Analysis) -> ClaimResult:
    """At every λ > 0 the kept (represented) features are the most important ones, none missing below
    the least important kept (importance falls with the index)."""
    penalised = [k for k, v in enumerate(a.lambdas) if v > 0]
    prefix = is_prefix(a.represented).tolist()
    held = bool(penalised) and all(prefix[k] for k in penalised)
    return ClaimResult(SECTION, "The penalty removes the features below an importance threshold",
                       "at every λ > 0 the represented features (‖W_i‖ > 0.5) are the k most important for some "
                       "k: a prefix 0, 1, …, k − 1 of the features in importance order, none skipped",
                       "; ".join(_kept_text(lam, kept) for lam, kept in zip(a.lambdas, a.represented, strict=True))
                       + ("" if held else _prefix_cause(a, [k for k in penalised if not prefix[k]], prefix)), held)


def _prefix_cause(a: L1Analysis, skipping: list[int], prefix: list[bool]) -> str:
    """Where every λ that skips a feature has a model of another λ, keeping a prefix, that beats it on its own
    objective: the skip is a local minimum of training, not the penalty's threshold."""
    rivals = [beaten_by(a, k) for k in skipping]
    if not skipping or any(j is None or not prefix[j] for j in rivals):
        return ""
    return "; cause: a local minimum of training, not the penalty's threshold: " + "; ".join(
        _beaten_text(a, k, j) for k, j in zip(skipping, rivals, strict=True))


def _claims(a: L1Analysis) -> list[ClaimResult]:
    return [removal_claim(a), cost_claim(a), prefix_claim(a)]


RECIPE = Recipe("l1-hidden", SECTION, "an L1 penalty on hidden activations removes superposition at a cost in loss",
                configs, _figures, _claims, analyse=analyse)
