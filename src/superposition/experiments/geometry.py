"""Section 5 (the geometry of superposition): which polytopes the features of uniform superposition form.

Analyses the `uniform` recipe's models (same run name and config: ``superposition run geometry
--out runs/uniform`` reuses them; run on its own it trains them into ``runs/geometry``). Each
model's represented features split into tegum factors, the connected components of the graph with
an edge where |cos(W_i, W_j)| > 0.1, and each factor is identified from its geometry (size, rank,
norms, cosines) as a digon, triangle, tetrahedron, pentagon, square antiprism, ... or "other"
(`analysis.polytopes`).

Paper: across the sweep the feature dimensionalities D_i fall on lines at the fractions of these
polytopes, 1/2 (digons), 3/4 (tetrahedra), 2/3 (triangles), 2/5 (pentagons) and 3/8 (square
antiprisms), so the D_i of all sparsities pooled peak at each of them; where features pack
efficiently, Σ_i D_i = m (every dimension is used); besides antipodal pairs, the models use
triangles, tetrahedra, pentagons and square antiprisms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..analysis import feature_dimensionality, represented
from ..analysis.polytopes import EDGE_THRESHOLD, OTHER, Peak, TegumFactor, dimensionality_peaks, tegum_factors
from ..figures.core import POLYTOPE_DIMENSIONALITIES
from ..figures.geometry import (
    dimensionality_histogram_figure,
    geometry_graph_figure,
    polytope_counts_figure,
    shape_dimensionality_figure,
)
from ..run import Run
from .base import ClaimResult, Recipe, fmt
from .runs import UNIFORM_RUN, probabilities
from .runs import uniform_configs as configs

SECTION = "5.1 Uniform superposition"
RUN = UNIFORM_RUN
PEAK_WIDTH = 0.0125
"""Half-width of the D_i window around a fraction: half the gap between 2/5 and 3/8, so no window holds two."""
PEAK_PROMINENCE = 2.0
"""A peak holds more than this many times the D_i of either neighbouring window of the same width ..."""
PEAK_MIN_COUNT = 4
"""... and at least this many features."""
OTHER_FRACTIONS = ("3/4", "2/3", "2/5", "3/8")
SUM_TOLERANCE = 0.05
"""Relative |Σ_i D_i − m| / m allowed where features pack efficiently."""
POLYTOPES_BESIDES_DIGONS = ("triangle", "tetrahedron", "pentagon", "square antiprism")
GRAPH_PANELS = 5



def factors_of(run: Run) -> list[tuple[TegumFactor, ...]]:
    """The tegum factors of every saved model, in instance order."""
    return [tegum_factors(W) for W in run.W]


def _graph_instances(factors: Sequence[Sequence[TegumFactor]], limit: int = GRAPH_PANELS) -> list[int]:
    """Instances to draw as geometry graphs: one (the middle one) per distinct set of shapes that
    includes a recognised polytope, at most `limit` spread evenly; any instances when none has one."""
    groups: dict[frozenset[str], list[int]] = {}
    for k, model in enumerate(factors):
        shapes = frozenset(f.shape for f in model)
        if shapes - {"single", OTHER}:
            groups.setdefault(shapes, []).append(k)
    found = sorted(members[len(members) // 2] for members in groups.values()) or list(range(len(factors)))
    if len(found) <= limit:
        return found
    return [found[round(i * (len(found) - 1) / (limit - 1))] for i in range(limit)]


FRACTION_SHAPES = {"1/2": ("digon",), "3/4": ("tetrahedron",), "2/3": ("triangle",), "2/5": ("pentagon",),
                   "3/8": ("square antiprism", "cube")}
"""The polytopes whose features sit at each fraction (the cube and the square antiprism both give 3/8)."""


@dataclass(frozen=True)
class Composition:
    """Where the pooled D_i come from: recognised polytopes or 'other' factors."""

    features: dict[str, int]
    """Represented features per factor shape, over the whole sweep."""
    other_peaks: tuple[Peak, ...]
    """The D_i of the features in 'other' factors, counted around each fraction."""
    polytope_peaks: tuple[Peak, ...]
    """The D_i of the features in recognised polytopes (not 'other', not 'single'), counted the same way."""
    one_factor_from: float | None
    """1/(1 − S) from which on every model's represented features form one 'other' factor (None if the
    sparsest model's do not)."""


def composition(factors: Sequence[Sequence[TegumFactor]], ps: Sequence[float]) -> Composition:
    """`Composition` of the sweep's factors (one tuple per model, densest first, at 1 − S = ``ps``)."""
    D, shapes = dimensionality_by_shape(factors)
    counts: dict[str, int] = {}
    for shape in shapes:
        counts[shape] = counts.get(shape, 0) + 1
    other = [d for d, shape in zip(D, shapes, strict=True) if shape == OTHER]
    polytope = [d for d, shape in zip(D, shapes, strict=True) if shape not in (OTHER, "single")]
    whole = [len(model) == 1 and model[0].shape == OTHER for model in factors]
    start = len(whole)
    while start > 0 and whole[start - 1]:
        start -= 1
    return Composition(counts, dimensionality_peaks(torch.tensor(other), FRACTIONS, PEAK_WIDTH),
                       dimensionality_peaks(torch.tensor(polytope), FRACTIONS, PEAK_WIDTH),
                       1 / ps[start] if start < len(whole) else None)


@dataclass(frozen=True)
class Analysis:
    """The uniform models' tegum factors and their dimensionalities, read once."""

    W: Tensor
    """``[inst, feat, hidden]``: one model per sparsity."""
    probabilities: list[float]
    factors: list[tuple[TegumFactor, ...]]
    """Every model's tegum factors."""
    pooled: tuple[Peak, ...]
    """The D_i of every represented feature of every model, counted around each fraction (`pooled_peaks`)."""
    per_level: dict[str, int]
    """For each fraction, at how many sparsities that model's own D_i peak there (`peak_counts`)."""
    composition: Composition | None = None
    """Where the pooled D_i come from (`composition`)."""


def analyse(runs: dict[str, Run]) -> Analysis:
    run = runs[RUN]
    ps, factors = probabilities(run), factors_of(run)
    return Analysis(run.W, ps, factors, pooled_peaks(run.W), peak_counts(run.W), composition(factors, ps))


def _figures(a: Analysis) -> dict[str, object]:
    ps, factors = a.probabilities, a.factors
    shown = _graph_instances(factors)
    D, shapes = dimensionality_by_shape(factors)
    return {
        "geometry_dimensionality": shape_dimensionality_figure(a.W, ps, factors),
        "geometry_histogram": dimensionality_histogram_figure(
            D, shapes, bin_width=PEAK_WIDTH, label=f"represented, {len(ps)} sparsities"),
        "geometry_counts": polytope_counts_figure(ps, factors),
        "geometry_graphs": geometry_graph_figure(a.W[shown], [ps[k] for k in shown], [factors[k] for k in shown],
                                                 edge_threshold=EDGE_THRESHOLD),
    }


def dimensionality_by_shape(factors: Sequence[Sequence[TegumFactor]]) -> tuple[list[float], list[str]]:
    """D_i of every represented feature of every model (one tuple of factors per model), and the
    shape of its factor."""
    pairs = [(d, f.shape) for model in factors for f in model for d in f.dimensionality]
    return [d for d, _ in pairs], [shape for _, shape in pairs]


# --- claims ------------------------------------------------------------------------------------


FRACTIONS = {name: POLYTOPE_DIMENSIONALITIES[name] for name in ("1/2", *OTHER_FRACTIONS)}


def peak_counts(W: Tensor) -> dict[str, int]:
    """For each fraction, at how many sparsities (instances of ``W [inst, feat, hidden]``) the D_i of
    the represented features peak there: ≥ PEAK_MIN_COUNT within ±PEAK_WIDTH, > PEAK_PROMINENCE × either
    neighbouring window of that model's histogram."""
    D, on = feature_dimensionality(W), represented(W)
    hits = dict.fromkeys(FRACTIONS, 0)
    for k in range(W.shape[0]):
        for peak in dimensionality_peaks(D[k][on[k]], FRACTIONS, PEAK_WIDTH):
            hits[peak.name] += peak.is_peak(PEAK_PROMINENCE, PEAK_MIN_COUNT)
    return hits


def pooled_peaks(W: Tensor) -> tuple[Peak, ...]:
    """The D_i of the represented features of every model of ``W [inst, feat, hidden]`` pooled (the
    paper's scatter of D_i across the sweep), counted around each fraction (`dimensionality_peaks`)."""
    D, on = feature_dimensionality(W), represented(W)
    return dimensionality_peaks(D[on], FRACTIONS, PEAK_WIDTH)


def _peak_text(p: Peak) -> str:
    return f"{p.count} vs {p.left}/{p.right}"


def _peaks_cause(c: Composition, missing: Sequence[str]) -> str:
    """Why the pooled D_i do not peak at the `missing` fractions: said only when most represented
    features lie in 'other' factors whose D_i do not peak there, while the polytopes' own D_i peak at
    every missing fraction they reach (or none reaches it)."""
    total = sum(c.features.values())
    others = c.features.get(OTHER, 0)
    other = {p.name: p for p in c.other_peaks}
    poly = {p.name: p for p in c.polytope_peaks}
    if not missing or total == 0 or others * 2 <= total:
        return ""
    if any(other[name].is_peak(PEAK_PROMINENCE, PEAK_MIN_COUNT) for name in missing):
        return ""
    reached = [name for name in missing if any(c.features.get(s, 0) for s in FRACTION_SHAPES[name])]
    if not all(poly[name].is_peak(PEAK_PROMINENCE, PEAK_MIN_COUNT) for name in reached):
        return ""
    held_by = ", ".join(f"{shape} {c.features.get(shape, 0)}" for name in FRACTIONS for shape in FRACTION_SHAPES[name]
                        if c.features.get(shape, 0) or shape != "cube")
    whole = (f" (from 1/(1 − S) = {fmt(c.one_factor_from)} on, each model's represented features form one "
             f"connected 'other' factor)" if c.one_factor_from is not None else "")
    alone = ", ".join(f"{name} ({_peak_text(poly[name])})" for name in reached)
    none = [name for name in missing if name not in reached]
    return (f"; cause: few features form the polytopes: of the {total} represented D_i pooled, {others} "
            f"({100 * others / total:.0f}%) lie in 'other' factors, whose D_i do not peak at "
            f"{', '.join(f'{name} ({_peak_text(other[name])})' for name in missing)}{whole}; features per polytope: "
            f"{held_by}"
            + (f"; counted alone, the polytopes' D_i do peak at {alone}" if reached else "")
            + (f"; no {' or '.join(FRACTION_SHAPES[name][0] for name in none)} at any sparsity" if none else ""))


def peaks_claim(pooled: Sequence[Peak], per_level: dict[str, int], levels: int,
                composition: Composition | None = None) -> ClaimResult:
    """Across the sweep the D_i lie on lines at 1/2, 3/4, 2/3, 2/5 and 3/8: the pooled D_i peak at each;
    with the sweep's `Composition`, a cause when they do not."""
    found = {peak.name: peak.is_peak(PEAK_PROMINENCE, PEAK_MIN_COUNT) for peak in pooled}
    held = all(found.values())
    counts = ", ".join(f"{p.name}: {p.count} vs {p.left}/{p.right}{'' if found[p.name] else ' (no peak)'}"
                       for p in pooled)
    levels_shown = ", ".join(f"{name}: {n}" for name, n in per_level.items())
    return ClaimResult(SECTION, "Across the sweep, feature dimensionalities lie on lines at the polytopes' fractions",
                       f"pooled over all {levels} sparsities, the D_i of the represented features peak at each of "
                       f"1/2, {', '.join(OTHER_FRACTIONS)} (≥ {PEAK_MIN_COUNT} D_i within ±{PEAK_WIDTH}, "
                       f"> {PEAK_PROMINENCE:g}× either neighbouring window)",
                       f"D_i in the window vs the neighbouring ones: {counts}; sparsities whose own histogram peaks "
                       f"there: {levels_shown}"
                       f"{_peaks_cause(composition, [n for n, ok in found.items() if not ok]) if composition else ''}",
                       held)


def efficient(factors: Sequence[TegumFactor]) -> bool:
    """Every represented feature is in a recognised polytope, and some are in superposition."""
    return all(f.shape != OTHER for f in factors) and any(f.k > 1 for f in factors)


def sum_claim(W: Tensor, factors: Sequence[Sequence[TegumFactor]], ps: Sequence[float]) -> ClaimResult:
    """Σ_i D_i ≈ m at every sparsity whose represented features all lie in recognised polytopes."""
    m = W.shape[-1]
    total = feature_dimensionality(W).sum(-1)
    chosen = [k for k, model in enumerate(factors) if efficient(model)]
    worst = max((abs(float(total[k]) - m) / m for k in chosen), default=float("inf"))
    shown = ", ".join(f"{fmt(float(total[k]))} (1/(1 − S) = {fmt(1 / ps[k])})" for k in chosen)
    return ClaimResult(SECTION, "Where features pack into polytopes, their dimensionalities add up to m",
                       f"at ≥ 2 sparsities all represented features in recognised polytopes (some in superposition);"
                       f" there |Σ_i D_i − m| ≤ {SUM_TOLERANCE:g}·m (sum over all n features), m = {m}",
                       f"{len(chosen)} such sparsities: Σ_i D_i = {shown or 'none'}",
                       len(chosen) >= 2 and worst <= SUM_TOLERANCE)


def shapes_claim(factors: Sequence[Sequence[TegumFactor]], composition: Composition | None = None) -> ClaimResult:
    """Besides digons, at least two of the other polytopes occur somewhere in the sweep; with the sweep's
    `Composition`, a cause when they do not."""
    found = {f.shape for model in factors for f in model}
    others = [s for s in POLYTOPES_BESIDES_DIGONS if s in found]
    held = "digon" in found and len(others) >= 2
    return ClaimResult(SECTION, "Besides antipodal pairs, features form other uniform polytopes",
                       f"digons and ≥ 2 of {', '.join(POLYTOPES_BESIDES_DIGONS)} identified as tegum factors",
                       f"found {', '.join(s for s in ('digon', *others) if s in found) or 'none'}"
                       f"{'' if held or composition is None else _shapes_cause(composition)}", held)


def _shapes_cause(c: Composition) -> str:
    """Said when most represented features lie in 'other' factors: the sparse models' features are all
    connected (|cos| > `EDGE_THRESHOLD`), so they split into no factor small enough to be a polytope."""
    total = sum(c.features.values())
    others = c.features.get(OTHER, 0)
    if total == 0 or others * 2 <= total:
        return ""
    whole = (f"; from 1/(1 − S) = {fmt(c.one_factor_from)} on, each model's represented features form one "
             f"connected factor" if c.one_factor_from is not None else "")
    return (f"; cause: few features separate into small factors: of the {total} represented features pooled, "
            f"{others} ({100 * others / total:.0f}%) lie in 'other' factors (connected by |cos| > "
            f"{EDGE_THRESHOLD:g}, but no recognised polytope){whole}")


def _claims(a: Analysis) -> list[ClaimResult]:
    return [peaks_claim(a.pooled, a.per_level, a.W.shape[0], a.composition), sum_claim(a.W, a.factors, a.probabilities),
            shapes_claim(a.factors, a.composition)]


RECIPE = Recipe("geometry", SECTION, "the uniform models' features as tegum products of polytopes",
                configs, _figures, _claims, analyse=analyse)
