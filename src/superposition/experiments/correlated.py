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
from ..figures.correlated import set_geometry_figure, set_gram_figure, set_label
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


def _claims(runs: dict[str, Run]) -> list[ClaimResult]:
    six, twenty = runs["correlated_6"], runs["correlated_20"]
    return [
        orthogonal_claim(*_sparsest(runs["correlated_4"])),
        antipodal_claim(*_sparsest(runs["anticorrelated_4"])),
        hexagon_claim(*_sparsest(six)),
        collapse_claim(six.W, _probabilities(six)),
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


def antipodal_claim(W: Tensor, p: float) -> ClaimResult:
    """n = 4, m = 2, anticorrelated pairs ``W [4, 2]``: each pair antipodal, pairs orthogonal."""
    on = represented(W)
    pairing = antipodal_pairing(W)
    sets = set_index(W.shape[0], 2)
    same = bool((sets[pairing.partner] == sets).all())
    worst, other = float(pairing.cos.max()), float(pairing.off_pair_max.max())
    held = bool(on.all()) and same and worst < -0.9 and other < 0.1
    return ClaimResult(SECTION, "Anticorrelated features are represented in opposite directions",
                       f"at 1 − S = {p}: all 4 represented, each feature's most opposed feature is its pair-mate "
                       "at cos < −0.9, |cos| to the other pair < 0.1",
                       f"represented {_ids(on)}, partner is the pair-mate: {same}, worst partner cos {fmt(worst)}, "
                       f"|cos| to the other pair ≤ {fmt(other)}", held)


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


def collapse_claim(W: Tensor, probabilities: Sequence[float]) -> ClaimResult:
    """n = 6, m = 2 ``W [inst, 6, 2]`` over a density grid: pairs collapse as density rises."""
    order = sorted(range(len(probabilities)), key=lambda k: probabilities[k])  # sparse → dense
    counts = [int(c) for c in collapsed_pairs(W)[order]]
    n_pairs = W.shape[-2] // 2
    dense = W[order[-1]]
    norms = feature_norms(dense)
    monotone = all(a <= b for a, b in zip(counts, counts[1:], strict=False))
    held = monotone and counts[0] == 0 and counts[-1] == n_pairs
    ps = [probabilities[k] for k in order]
    return ClaimResult(SECTION, "As density rises, correlated pairs collapse onto their principal component",
                       f"pairs with cos > {COLLAPSED} along 1 − S = {ps[0]} … {ps[-1]}: non-decreasing, "
                       f"0 when sparsest, all {n_pairs} when densest",
                       f"collapsed pairs {counts}; densest ‖Wᵢ‖ {fmt(float(norms.min()))}–{fmt(float(norms.max()))}",
                       held)


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
