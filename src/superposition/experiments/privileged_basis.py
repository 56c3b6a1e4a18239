"""Section 8 (superposition in a privileged basis): the ReLU hidden layer model, n = 10, m = 5.

h = ReLU(W x), x' = ReLU(Wᵀ h + b): the hidden ReLU makes the neurons a privileged basis, so a
feature can be read off the neurons and each neuron can be called monosemantic or polysemantic.
Importance 0.75^i, 1 − S from 1 to 0.01. The paper trained 1000 models per sparsity and kept the
lowest loss; here restarts are extra instances of a run (best of 16 per sparsity, and of 64 at
the three sparsest, where the best solution is rare: two runs, `GRIDS`).

Paper: dense, every important feature gets a neuron of its own (monosemantic neurons); at
intermediate sparsity some features share neurons (e.g. 3 features in 2 neurons as a binary
code), beside monosemantic neurons in the same model; at the sparsest every feature is stored on
a pair of neurons: the 10 = C(5, 2) pairs of 5 neurons, one per feature. Neuron and feature
classes are those of `analysis.neurons` (monosemantic: one feature holds ≥ 90% of the neuron's
squared positive input weight; a feature's code: the fewest neurons holding ≥ 90% of its squared
positive weight).

Where we differ: the issue's summary of the paper puts the pair code at 1 − S ≤ 0.04. We find it
as the best of 64 restarts at 0.02 and 0.01 (8–16% of restarts reach it in 10,000 steps), but at 0.04
the best models drop the least important feature and code the others with pairs and triples,
about 9% below the best pair code's loss; the claim is checked at 1 − S ≤ `PAIR_MAX_P` = 0.02.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from ..analysis.neurons import MONOSEMANTIC_SHARE, classify_features, classify_neurons, shared_groups
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..figures.neurons import neuron_stack_figure, polysemanticity_figure, weight_heatmap_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "8 Superposition in a privileged basis"
N_FEATURES, N_HIDDEN = 10, 5
PAIR_MAX_P = 0.02
"""At 1 − S ≤ this every feature is a pair of neurons in our runs (the issue's summary of the paper says
≤ 0.04; at 0.04 the best of 64 restarts drops feature 9 and mixes pairs and triples, ~9% below the best
pair code's loss)."""
GRIDS = {
    # name: (full p, quick p, full restarts, quick restarts)
    "relu_hidden": ((1.0, 0.5, 0.3, 0.2, 0.1, 0.07), (1.0, 0.3, 0.2), 16, 8),
    # The pair code is the best solution at the sparsest p, but only ~10% of restarts find it.
    "relu_hidden_sparse": ((0.04, 0.02, 0.01), (0.01,), 64, 32),
}
PROBABILITIES = tuple(sorted((p for grid in GRIDS.values() for p in grid[0]), reverse=True))


def configs(quick: bool) -> dict[str, RunConfig]:
    def one(name: str) -> RunConfig:
        full_p, quick_p, restarts, quick_restarts = GRIDS[name]
        return RunConfig(
            model=ModelConfig("relu_hidden", n_features=N_FEATURES, n_hidden=N_HIDDEN),
            data=DataConfig(feature_probability=quick_p if quick else full_p, importance_decay=0.75),
            # 10,000 steps: the dense model turns from a rotated basis into one neuron per feature only
            # after ~8000. 64 evaluation batches: sparse losses of rival codes differ by a few percent.
            train=TrainConfig(steps=10_000, restarts=quick_restarts if quick else restarts, eval_batches=64),
            name=f"privileged-basis-{name.replace('_', '-')}",
        )

    return {name: one(name) for name in GRIDS}


def _joined(runs: dict[str, Run]) -> tuple[Tensor, list[float]]:
    """W ``[inst, feat, hidden]`` of every run's saved instances, densest first, and their p."""
    W = torch.cat([runs[name].W for name in GRIDS])
    ps = [float(p) for name in GRIDS for p in runs[name].metrics.feature_probability]
    order = sorted(range(len(ps)), key=lambda k: -ps[k])
    return W[order], [ps[k] for k in order]


def _figures(runs: dict[str, Run]) -> dict[str, object]:
    W, ps = _joined(runs)
    return {"privileged_basis": neuron_stack_figure(W, ps),
            "privileged_basis_W": weight_heatmap_figure(W, ps),
            "privileged_basis_polysemanticity": polysemanticity_figure(W, ps)}


def _claims(runs: dict[str, Run]) -> list[ClaimResult]:
    W, ps = _joined(runs)
    return [dense_claim(W[0], ps[0]), sharing_claim(W, ps), pair_claim(W, ps), coexistence_claim(W, ps),
            trend_claim(W, ps)]


def _ids(mask: Tensor) -> str:
    return "{" + ", ".join(str(i) for i in mask.nonzero().flatten().tolist()) + "}"


def dense_claim(W: Tensor, p: float = 1.0) -> ClaimResult:
    """The densest model ``W [feat, hidden]``: the m most important features each have a neuron of their own."""
    m = W.shape[-1]
    neurons, feats = classify_neurons(W), classify_features(W)
    top = feats.dedicated[:m].all() and not feats.represented[m:].any()
    held = bool(top and neurons.monosemantic.all())
    return ClaimResult(SECTION, "Dense: every important feature gets a neuron of its own",
                       f"at 1 − S = {p:g}: features 0–{m - 1} dedicated, all {m} neurons monosemantic "
                       f"(≥ {MONOSEMANTIC_SHARE:.0%} of squared weight on one feature), features {m}+ dropped",
                       f"dedicated {_ids(feats.dedicated)}, represented {_ids(feats.represented)}, "
                       f"{int(neurons.monosemantic.sum())}/{m} monosemantic (smallest top share "
                       f"{fmt(float(neurons.top_share.min()))})", held)


def _intermediate(ps: list[float]) -> list[int]:
    return [k for k, p in enumerate(ps) if PAIR_MAX_P < p < max(ps)]


def _codes(codes: tuple[tuple[int, ...], ...]) -> str:
    return ", ".join("{" + ", ".join(str(j) for j in c) + "}" for c in codes)


def sharing_claim(W: Tensor, ps: list[float]) -> ClaimResult:
    """``W [inst, feat, hidden]``, one per p: an intermediate model stores k features in < k neurons, coded apart."""
    found = []
    for k in _intermediate(ps):
        found += [(ps[k], g) for g in shared_groups(W[k]) if g.binary_code]
    shown = "; ".join(f"1 − S = {p:g}: features {set(g.features)} in neurons {set(g.neurons)} "
                      f"(their neurons {_codes(g.codes)})" for p, g in found[:3])
    return ClaimResult(SECTION, "At intermediate sparsity some features share neurons, as a binary code",
                       f"at some {PAIR_MAX_P:g} < 1 − S < {max(ps):g}: k superposed features on fewer than k neurons, "
                       "each with a distinct set of neurons (e.g. 3 in 2 as 10, 01, 11)",
                       shown or "no such group", bool(found))


def _pairs(W: Tensor) -> tuple[int, int]:
    """(features coded by exactly 2 neurons, distinct pairs among them) of one model."""
    feats = classify_features(W)
    pairs = [tuple(c.nonzero().flatten().tolist()) for c in feats.code[feats.code_size == 2]]
    return len(pairs), len(set(pairs))


def pair_claim(W: Tensor, ps: list[float]) -> ClaimResult:
    """Every model with p ≤ `PAIR_MAX_P` codes each feature by its own pair of neurons."""
    n, m = W.shape[-2], W.shape[-1]
    sparse = [k for k, p in enumerate(ps) if p <= PAIR_MAX_P]
    counts = {ps[k]: _pairs(W[k]) for k in sparse}
    need = min(n, len(list(itertools.combinations(range(m), 2))))
    held = bool(sparse) and all(c == (need, need) for c in counts.values())
    shown = ", ".join(f"1 − S = {p:g}: {a} on pairs, {b} distinct" for p, (a, b) in counts.items())
    return ClaimResult(SECTION, f"At 1 − S ≤ {PAIR_MAX_P:g} every feature is a pair of neurons: "
                       f"{n} = C({m}, 2) features in {m} neurons",
                       f"all {need} features coded by 2 neurons, all pairs distinct, at every 1 − S ≤ {PAIR_MAX_P:g}",
                       shown or "no model that sparse", held)


def coexistence_claim(W: Tensor, ps: list[float]) -> ClaimResult:
    """Some model has both monosemantic and polysemantic neurons."""
    neurons = classify_neurons(W)
    mono, poly = neurons.monosemantic.sum(-1).tolist(), neurons.polysemantic.sum(-1).tolist()
    mixed = [k for k in range(len(ps)) if mono[k] > 0 and poly[k] > 0]
    shown = ", ".join(f"1 − S = {ps[k]:g}: {mono[k]} mono + {poly[k]} poly" for k in mixed)
    return ClaimResult(SECTION, "Monosemantic and polysemantic neurons can coexist in one model",
                       "some model with ≥ 1 monosemantic and ≥ 1 polysemantic neuron",
                       shown or f"none: monosemantic counts {mono}", bool(mixed))


def trend_claim(W: Tensor, ps: list[float]) -> ClaimResult:
    """Monosemantic neurons give way to polysemantic ones as sparsity grows."""
    order = sorted(range(len(ps)), key=lambda k: -ps[k])
    mono = classify_neurons(W[order]).monosemantic.sum(-1).tolist()
    m = W.shape[-1]
    held = mono[0] == m and mono[-1] == 0 and all(b <= a + 1 for a, b in zip(mono, mono[1:], strict=False))
    return ClaimResult(SECTION, "As sparsity grows, monosemantic neurons give way to polysemantic ones",
                       f"monosemantic neurons non-increasing (±1) from {m} at 1 − S = {ps[order[0]]:g} "
                       f"to 0 at 1 − S = {ps[order[-1]]:g}",
                       f"monosemantic counts {mono} along 1 − S = {[ps[k] for k in order]}", held)


RECIPE = Recipe("privileged-basis", SECTION,
                "10 features in 5 ReLU neurons: monosemantic → binary codes → every feature a pair of neurons",
                configs, _figures, _claims)
