"""Section 5.3 (correlated and anticorrelated features): how feature co-occurrence shapes geometry.

ReLU output models, importance 1. Features come in sets of consecutive features: a correlated set
is active together (each member then U[0, 1]); an anticorrelated set has exactly one member active.
The paper's claims, each checked below:

- n = 4, m = 2, two correlated pairs: the features of a pair are orthogonal (the two pairs share
  the plane, each feature antipodal to one of the other pair).
- n = 4, m = 2, two anticorrelated pairs: the features of a pair are antipodal.
- n = 6, m = 2, three correlated pairs: when sparse, the six features form a hexagon with each
  pair side by side; as density rises the pairs collapse onto their principal component (both
  members point the same way and the model stores the pair's sum).
- n = 20, m = 10, two correlated sets of 10: each set becomes a local almost-orthogonal basis of
  the whole space, and the two sets are superposed on each other (WᵀW figure).

2-d models stall in worse geometries now and then: best-of-N restarts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..analysis import feature_norms, represented
from ..analysis.correlation import (
    antipodal_pairing,
    pair_cosine,
    planar_layout,
    set_index,
    set_overlaps,
    sets_contiguous,
)
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..data import STREAM_EVAL, FeatureSpec, feature_spec, sample
from ..figures.correlated import set_geometry_figure, set_gram_figure, set_label
from ..models import forward
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "5.3 Correlated and anticorrelated features"
PAIR_PROBABILITIES = (0.3, 0.1, 0.03)
"""n = 4: dense enough to see a correlated pair collapse, and two sparse settings."""
HEXAGON_PROBABILITIES = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)
"""n = 6: from all pairs collapsed (dense) to the hexagon (sparse)."""
SET_PROBABILITIES = (0.1, 0.03, 0.01)
COLLAPSED = 0.95
"""cos between a pair's features above this: the pair has collapsed onto one direction."""
EVAL_BATCH = 1 << 20
"""Evaluation inputs for a loss comparison at the sparsest p (two features co-occur in ~(p/2)² of them)."""


def _config(name: str, n: int, m: int, distribution: str, set_size: int, probs: Sequence[float], quick: bool,
            restarts: tuple[int, int]) -> RunConfig:
    return RunConfig(
        model=ModelConfig("relu_output", n_features=n, n_hidden=m),
        data=DataConfig(feature_probability=tuple(probs), distribution=distribution, set_size=set_size),
        train=TrainConfig(steps=3000 if quick else 10_000, restarts=restarts[0] if quick else restarts[1]),
        name=name,
    )


def configs(quick: bool) -> dict[str, RunConfig]:
    return {
        # 2-d models: restarts (quick, full) against stalls in worse geometries.
        "correlated_4": _config("correlated-4", 4, 2, "correlated", 2, PAIR_PROBABILITIES, quick, (4, 8)),
        "anticorrelated_4": _config("anticorrelated-4", 4, 2, "anticorrelated", 2, PAIR_PROBABILITIES, quick, (4, 8)),
        "correlated_6": _config("correlated-6", 6, 2, "correlated", 2, HEXAGON_PROBABILITIES, quick, (4, 8)),
        # 10-d sets find their bases without restarts; two in the full run as a check.
        "correlated_20": _config("correlated-20", 20, 10, "correlated", 10, SET_PROBABILITIES, quick, (1, 2)),
    }


def _probabilities(run: Run) -> list[float]:
    return [float(p) for p in run.metrics.feature_probability]


def _row_label(run: Run) -> str:
    model, data = run.config.model, run.config.data
    return f"{set_label(data.distribution, data.set_size)}\nn = {model.n_features}, m = {model.n_hidden}"


def _figures(runs: dict[str, Run]) -> dict[str, object]:
    four = [runs["correlated_4"], runs["anticorrelated_4"]]
    six, twenty = runs["correlated_6"], runs["correlated_20"]
    return {
        "correlated_pairs": set_geometry_figure({_row_label(r): r.W for r in four}, _probabilities(four[0]), 2),
        "correlated_hexagon": set_geometry_figure({_row_label(six): six.W}, _probabilities(six), 2),
        "correlated_sets": set_gram_figure(twenty.W, _probabilities(twenty), twenty.config.data.set_size),
    }


def _interactive(runs: dict[str, Run]) -> dict[str, object]:
    """WᵀW of the two correlated sets of 10 (hover values), one sparsity at a time; and the
    hexagon geometry with a sparsity slider."""
    from ..figures.interactive import geometry_slider, superposition_slider

    twenty, six = runs["correlated_20"], runs["correlated_6"]
    return {"correlated_sets_slider": superposition_slider({"2 correlated sets of 10": (twenty.W, twenty.b)},
                                                           _probabilities(twenty)),
            "correlated_hexagon_slider": geometry_slider(six.W, _probabilities(six), six.importance)}


def _sparsest(run: Run) -> tuple[Tensor, float]:
    """W [feat, hidden] and p of the run's sparsest instance."""
    probs = _probabilities(run)
    k = min(range(len(probs)), key=lambda i: probs[i])
    return run.W[k], probs[k]


def _sparsest_index(run: Run) -> int:
    probs = _probabilities(run)
    return min(range(len(probs)), key=lambda i: probs[i])


def mates_antipodal(W: Tensor, b: Tensor) -> tuple[Tensor, Tensor] | None:
    """``W [feat, hidden]``, ``b [feat]`` with the features re-assigned so that each pair (2k, 2k + 1)
    takes one of the trained mutual antipodal pairs of directions; None if the trained features are
    not all in mutual pairs."""
    pairing = antipodal_pairing(W)
    if not bool(pairing.mutual.all()):
        return None
    firsts = [i for i, j in enumerate(pairing.partner.tolist()) if i < j]
    order = torch.tensor([f for i in firsts for f in (i, int(pairing.partner[i]))])
    return W[order], b[order]


def eval_loss(run: Run, k: int, W: Tensor, b: Tensor, batch: int = EVAL_BATCH) -> float:
    """Mean loss of instance `k` of `run` with weights ``W [feat, hidden]``, ``b [feat]`` on `batch`
    inputs of the run's evaluation stream."""
    full = feature_spec(run.config, STREAM_EVAL)
    spec = FeatureSpec(full.keys[k:k + 1], full.set_keys[k:k + 1], run.probability[k:k + 1],
                       run.importance[k:k + 1])
    data = run.config.data
    x = sample(spec, torch.tensor(0), batch, data.distribution, data.set_size, data.signed)
    out = forward(run.config.model.fused_kind, {"W": W[None], "b": b[None]}, x).output
    return float((run.importance[k] * (out - x) ** 2).mean())


def _antipodal(run: Run) -> ClaimResult:
    k = _sparsest_index(run)
    W, b, p = run.W[k], run.b[k], _probabilities(run)[k]
    swapped = mates_antipodal(W, b)
    repaired = None if swapped is None else (eval_loss(run, k, W, b), eval_loss(run, k, *swapped))
    return antipodal_claim(W, p, restarts=run.metrics.restart_losses[k], repaired=repaired)


def _claims(runs: dict[str, Run]) -> list[ClaimResult]:
    six, twenty = runs["correlated_6"], runs["correlated_20"]
    return [
        orthogonal_claim(*_sparsest(runs["correlated_4"])),
        _antipodal(runs["anticorrelated_4"]),
        hexagon_claim(*_sparsest(six)),
        collapse_claim(six.W, _probabilities(six), neighbour_losses(six)),
        local_basis_claim(*_sparsest(twenty), twenty.config.data.set_size),
    ]


def _ids(mask: Tensor) -> str:
    return "{" + ", ".join(str(i) for i in mask.nonzero().flatten().tolist()) + "}"


def orthogonal_claim(W: Tensor, p: float) -> ClaimResult:
    """n = 4, m = 2, correlated pairs ``W [4, 2]``: orthogonal within a pair, antipodal across."""
    on = represented(W)
    within = float(set_overlaps(W, 2).within_max)
    pairing = antipodal_pairing(W)
    sets = set_index(W.shape[0], 2)
    across = bool((sets[pairing.partner] != sets).all())
    worst = float(pairing.cos.max())
    held = bool(on.all()) and within < 0.1 and across and worst < -0.9
    return ClaimResult(SECTION, "Correlated features are represented in orthogonal dimensions",
                       f"at 1 − S = {p}: all 4 represented, |cos| within a pair < 0.1, each feature antipodal "
                       "(cos < −0.9) to one of the other pair",
                       f"represented {_ids(on)}, |cos| within pairs ≤ {fmt(within)}, partner in the other pair: "
                       f"{across}, worst partner cos {fmt(worst)}", held)


def antipodal_claim(W: Tensor, p: float, *, restarts: Sequence[float] | None = None,
                    repaired: tuple[float, float] | None = None) -> ClaimResult:
    """n = 4, m = 2, anticorrelated pairs ``W [4, 2]``: each pair antipodal, pairs orthogonal.

    When a feature's partner is not its pair-mate, the message gives the partners, the losses of the
    restarts at `p` and `repaired`: (the trained W's loss, the loss of the same directions with the
    pair-mates made antipodal) on the same evaluation inputs.
    """
    on = represented(W)
    pairing = antipodal_pairing(W)
    sets = set_index(W.shape[0], 2)
    same = bool((sets[pairing.partner] == sets).all())
    worst, other = float(pairing.cos.max()), float(pairing.off_pair_max.max())
    held = bool(on.all()) and same and worst < -0.9 and other < 0.1
    why = ""
    if not same:
        why = f"; partners {pairing.partner.tolist()} (feature i → its most opposed feature)"
        if restarts:
            why += f"; all {len(restarts)} restarts' losses {fmt(min(restarts))}–{fmt(max(restarts))}"
        if repaired is not None:
            trained, mates = repaired
            verdict = "lower" if mates < trained else "not lower"
            why += (f"; the same directions with the pair-mates antipodal: loss {fmt(mates)} vs trained "
                    f"{fmt(trained)} on the same inputs ({verdict})")
            if mates < trained and restarts and min(restarts) > mates:
                why = ("; cause: every restart stopped in a worse minimum (the kept one antipodal across the pairs)"
                       + why)
    return ClaimResult(SECTION, "Anticorrelated features are represented in opposite directions",
                       f"at 1 − S = {p}: all 4 represented, each feature's most opposed feature is its pair-mate "
                       "at cos < −0.9, |cos| to the other pair < 0.1",
                       f"represented {_ids(on)}, partner is the pair-mate: {same}, worst partner cos {fmt(worst)}, "
                       f"|cos| to the other pair ≤ {fmt(other)}{why}", held)


def hexagon_claim(W: Tensor, p: float) -> ClaimResult:
    """n = 6, m = 2, three correlated pairs ``W [6, 2]`` when sparse: a hexagon, pairs side by side."""
    on = represented(W)
    gaps = planar_layout(W).gaps
    side_by_side = bool(sets_contiguous(W, 2))
    held = bool(on.all()) and float(gaps.min()) > 40 and float(gaps.max()) < 80 and side_by_side
    return ClaimResult(SECTION, "Sparse correlated pairs sit side by side on a hexagon",
                       f"at 1 − S = {p}: all 6 represented, neighbours 60° ± 20° apart, each pair adjacent",
                       f"represented {_ids(on)}, gaps {fmt(float(gaps.min()))}°–{fmt(float(gaps.max()))}°, "
                       f"pairs adjacent: {side_by_side}", held)


def collapsed_pairs(W: Tensor) -> Tensor:
    """Pairs whose two features point the same way (cos > `COLLAPSED`), per instance: int64 ``[inst]``."""
    return (pair_cosine(W) > COLLAPSED).sum(-1)


def _non_decreasing(counts: Sequence[int]) -> bool:
    return all(a <= b for a, b in zip(counts, counts[1:], strict=False))


def _sparse_to_dense(probabilities: Sequence[float]) -> list[int]:
    return sorted(range(len(probabilities)), key=lambda k: probabilities[k])


def neighbour_losses(run: Run) -> dict[int, tuple[int, float, float]]:
    """For each instance k next to a fall of the collapsed-pair count (sparse → dense), the first
    neighbouring sparsity j whose trained W, b do better on k's evaluation inputs than k's own:
    ``{k: (j, own loss, loss with j's weights)}``."""
    order = _sparse_to_dense(_probabilities(run))
    counts = collapsed_pairs(run.W)[order].tolist()
    better: dict[int, tuple[int, float, float]] = {}
    for i in range(len(order) - 1):
        if counts[i + 1] >= counts[i]:
            continue
        for at in (i, i + 1):
            k = order[at]
            own = eval_loss(run, k, run.W[k], run.b[k])
            for j in (order[n] for n in (at - 1, at + 1) if 0 <= n < len(order)):
                theirs = eval_loss(run, k, run.W[j], run.b[j])
                if theirs < own and k not in better:
                    better[k] = (j, own, theirs)
    return better


def collapse_claim(W: Tensor, probabilities: Sequence[float],
                   better: dict[int, tuple[int, float, float]] | None = None) -> ClaimResult:
    """n = 6, m = 2 ``W [inst, 6, 2]`` over a density grid: pairs collapse as density rises.

    `better` (from `neighbour_losses`) names instances whose neighbours' weights beat their own:
    where putting the neighbour's count in their place makes the counts non-decreasing, that
    instance's worse minimum is the cause of the fall.
    """
    order = _sparse_to_dense(probabilities)
    counts = [int(c) for c in collapsed_pairs(W)[order]]
    n_pairs = W.shape[-2] // 2
    dense = W[order[-1]]
    norms = feature_norms(dense)
    monotone = _non_decreasing(counts)
    held = monotone and counts[0] == 0 and counts[-1] == n_pairs
    ps = [probabilities[k] for k in order]
    return ClaimResult(SECTION, "As density rises, correlated pairs collapse onto their principal component",
                       f"pairs with cos > {COLLAPSED} along 1 − S = {ps[0]} … {ps[-1]}: non-decreasing, "
                       f"0 when sparsest, all {n_pairs} when densest",
                       f"collapsed pairs {counts}; densest ‖Wᵢ‖ {fmt(float(norms.min()))}–{fmt(float(norms.max()))}"
                       f"{'' if monotone else _fall_cause(W, probabilities, order, counts, better or {})}",
                       held)


def _fall_cause(W: Tensor, probabilities: Sequence[float], order: list[int], counts: list[int],
                better: dict[int, tuple[int, float, float]]) -> str:
    parts, fixes = [], True
    for k, (j, own, theirs) in better.items():
        mine, their = int(collapsed_pairs(W[k])), int(collapsed_pairs(W[j]))
        parts.append(f"at 1 − S = {probabilities[k]} ({mine} collapsed) the W, b trained at 1 − S = "
                     f"{probabilities[j]} ({their} collapsed) do better on its inputs (loss {fmt(theirs)} vs its "
                     f"own best restart's {fmt(own)})")
        fixes = fixes and _non_decreasing([their if order[i] == k else c for i, c in enumerate(counts)])
    if not parts:
        return "; no neighbour's weights beat those next to the fall"
    lead = "cause: training stopped in a worse minimum there: " if fixes and len(parts) == 1 else ""
    return "; " + lead + "; ".join(parts)


def local_basis_claim(W: Tensor, p: float, set_size: int) -> ClaimResult:
    """n = 20, m = 10, two correlated sets of 10 ``W [20, 10]``: each set a local orthogonal basis."""
    on = represented(W)
    overlaps = set_overlaps(W, set_size)
    within, between = float(overlaps.within_max), float(overlaps.between_mean)
    held = bool(on.all()) and within < 0.1 and between > 0.5
    return ClaimResult(SECTION, "Each set of correlated features forms a local almost-orthogonal basis",
                       f"at 1 − S = {p}: all {W.shape[0]} represented in {W.shape[1]} dimensions, |cos| within a set "
                       "< 0.1, the other set covers > 0.5 of each feature (Σ cos² across sets)",
                       f"represented {int(on.sum())}, |cos| within sets ≤ {fmt(within)}, Σ cos² across sets "
                       f"{fmt(between)} (within {fmt(float(overlaps.within_mean))})", held)


RECIPE = Recipe("correlated", SECTION,
                "correlated features orthogonal, anticorrelated antipodal, pairs collapse, local bases",
                configs, _figures, _claims, _interactive)
