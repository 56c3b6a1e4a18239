"""Section 8 (superposition in a privileged basis): the ReLU hidden layer model, n = 10, m = 5.

h = ReLU(W x), x' = ReLU(Wᵀ h + b): the hidden ReLU makes the neurons a privileged basis, so a
feature can be read off the neurons and each neuron can be called monosemantic or polysemantic.
Importance 0.75^i. "For each model shown, we trained 1000 models and visualized the one with the
lowest loss": here restarts are extra instances of a run, best of 1000 at the paper's named
regimes (`REGIMES`: 1 − S = 0.15, 0.12, 0.07, 0.06, 0.04; best of 16 at quick size), of 16 on the
dense side and of 64 at the sparsest (`GRIDS`).

Paper: dense, every important feature gets a neuron of its own (monosemantic neurons); at
intermediate sparsity some features share neurons (3 features in 2 neurons as a binary code),
beside monosemantic neurons in the same model; then five features in three neurons (0.15), six in
four (0.12), eight in five (0.05–0.08), and every feature a pair of neurons (0.04). Neuron and
feature classes are those of `analysis.neurons` (monosemantic: one feature holds ≥ 90% of the
neuron's squared positive input weight; a feature's code: the fewest neurons holding ≥ 90% of its
squared positive weight); the regimes' codes are those of `analysis.codes`.

Each regime claim tests the best model's structure at the regime's p, and reports three losses:
our best as trained, the same after a short local descent (`analysis.codes.polish`), and the
paper's code built by hand and polished by the same descent, so that where we differ one can tell
a better code from a training shortfall. The paper does not say whether its distinguishing neuron
fires for the important or the unimportant features; both are built (A marking the unimportant
ones is the lower loss: it is the pair code of the group's neurons).

Where we differ (quick size, best of 16; a best of 48 at 0.15–0.04 gave the same picture): the
paper's codes, polished, are 1.5–5% lower than our best polished at 0.15, 0.12, 0.06 and 0.04
(at 0.07 ours is 4% lower after the quick polish; the paper-size polish brings the paper's code
from 0.00107 to 0.00100, level with ours), so
the regime claims do not hold because our restarts rarely find those codes (at 0.12, 1 of 48
restarts had the 6-in-4 code with its distinguishing neuron; at 0.15 the best is 6 in 4 as all
pairs of four neurons, 2 of 48 had 5 in 3), not because the codes are worse. At 0.07 the best
models have the paper's 8-in-5 code (four triples of four neurons, four pairs through the fifth)
but with the features split between the two classes out of importance order, at the same loss
within its standard error, so the claim's importance test fails. The pair code (every feature on
its own pair) holds in our runs at 1 − S ≤ `PAIR_MAX_P` = 0.02; at 0.04 the polished pair code
is 1.6–4% below our best, which drops a feature and mixes pairs and triples.

A best of 200 at the paper-size settings (4000 steps of 256) found: at 0.15, 3 in 2 beside three
monosemantic neurons (loss 0.00273), 6 in 4 (0.00274) and 5 in 3 in 5 of 200 restarts (best
0.00278; the paper's 5 in 3 polished: 0.00268), a regime "quite narrow" indeed; at 0.12, the
paper's 6-in-4 code with its distinguishing neuron as the best model (0.00209, 4 of 200); at 0.07
and 0.06, 8 in 5 in 130 and 120 of 200 but never with the importance split; at 0.04, the pair
code in 3 of 200 (0.00051) while the best (0.00048) has 8 features in 5 neurons.

At paper size (best of 1000, polished 3000 steps of 2048) it is the other way round: our best, polished,
is below the paper's polished codes by 1.0% at 0.12, 3.4% at 0.07, 7.0% at 0.06 and 9.3% at 0.04 (7.7 to
87 SE, with the polished losses estimated to 0.1%: `REFERENCE_REL_SE`), so there the loss prefers our
codes. Each claim not held says which way it goes where the gap is beyond `BETTER_SE`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from ..analysis.codes import Candidate, distinguisher, paper_candidates, polish
from ..analysis.neurons import MONOSEMANTIC_SHARE, classify_features, classify_neurons, shared_groups
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..estimate import estimate_loss
from ..figures.neurons import neuron_stack_figure, polysemanticity_figure, weight_heatmap_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "8 Superposition in a privileged basis"
N_FEATURES, N_HIDDEN = 10, 5
PAIR_MAX_P = 0.02
"""At 1 − S ≤ this every feature is a pair of neurons in our runs (the paper says so at 0.04, which
`REGIMES` claims separately)."""
GRIDS = {
    # name: (full p, quick p, full restarts, quick restarts)
    "relu_hidden": ((1.0, 0.5, 0.3, 0.2, 0.1), (1.0, 0.3, 0.2), 16, 8),
    # The paper's named regimes, each the best of 1000 models as in the paper (quick: best of 16).
    "relu_hidden_regimes": ((0.15, 0.12, 0.07, 0.06, 0.04), (0.15, 0.12, 0.07, 0.06, 0.04), 1000, 16),
    # The pair code is the best solution at the sparsest p, but only ~10% of restarts find it.
    "relu_hidden_sparse": ((0.02, 0.01), (0.01,), 64, 32),
}
TRAIN = {
    # name: (steps, batch size). 10,000 steps: the dense model turns from a rotated basis into one neuron
    # per feature only after ~8000. The regime grid is 5000 instances at paper size: 4000 steps of 256.
    "relu_hidden": (10_000, 1024),
    "relu_hidden_regimes": (4000, 256),
    "relu_hidden_sparse": (10_000, 1024),
}
PROBABILITIES = tuple(sorted((p for grid in GRIDS.values() for p in grid[0]), reverse=True))


@dataclass(frozen=True)
class Regime:
    """One of the paper's named regimes: the neuron classes and the shared group its text describes."""

    name: str
    title: str
    quote: str
    """The paper's sentence."""
    probabilities: tuple[float, ...]
    """Where we test it: the paper's 1 − S (inside its range where it gives one)."""
    monosemantic: int
    polysemantic: int
    group: tuple[int, int]
    """(features, neurons) of the one group of superposed features sharing neurons."""
    distinguisher: bool = False
    """The group's code has the paper's distinguishing neuron (`analysis.codes.distinguisher`)."""
    pairs: bool = False
    """Every feature of the group is coded by its own pair of neurons."""


REGIMES = (
    Regime("five_in_three", "Five features in three neurons (1 − S = 0.15)",
           "\"we still see two monosemantic neurons, and three polysemantic neurons\"", (0.15,), 2, 3, (5, 3)),
    Regime("six_in_four", "Six features in four neurons (1 − S = 0.12)",
           "\"we have one monosemantic neuron [...] One neuron seems to distinguish between important and "
           "unimportant features. Important features are then encoded as sets of two of the other three neurons, "
           "while unimportant features are represented by one neuron\"", (0.12,), 1, 4, (6, 4), distinguisher=True),
    Regime("eight_in_five", "Eight features in five neurons (0.05 < 1 − S < 0.08)",
           "\"all neurons are polysemantic [...] one distinguishes important and unimportant features. Then either "
           "sets of three of the other neurons, or a single other neuron, are used\"", (0.07, 0.06), 0, 5, (8, 5),
           distinguisher=True),
    Regime("pairs", "Features are pairs of neurons (1 − S = 0.04)",
           "\"each feature simply correspond[s] to a pair of neurons\"", (0.04,), 0, 5, (10, 5), pairs=True),
)
BETTER_SE = 2.0
"""Ours beats the paper's code when its polished loss is lower by more than this many standard errors of
the difference (the two estimates' errors added in quadrature)."""
REFERENCE_REL_SE = 0.001
"""Relative standard error of the polished codes' losses (`estimate_loss`'s stopping rule). They differ by
1–10%, so at its default 1% two codes 1.6% apart (paper size, 1 − S = 0.12) sit within `BETTER_SE` of
each other; at 0.1% they are 7.6 SE apart. About 2 s per three codes on one core."""
REFERENCE_MAX_SAMPLES = 1 << 24
POLISH = {True: (2000, 1024), False: (3000, 2048)}
"""Steps and batch size of the local descent from the hand-built codes and from our best models (quick → …)."""


def configs(quick: bool) -> dict[str, RunConfig]:
    def one(name: str) -> RunConfig:
        full_p, quick_p, restarts, quick_restarts = GRIDS[name]
        steps, batch = TRAIN[name]
        return RunConfig(
            model=ModelConfig("relu_hidden", n_features=N_FEATURES, n_hidden=N_HIDDEN),
            data=DataConfig(feature_probability=quick_p if quick else full_p, importance_decay=0.75),
            train=TrainConfig(steps=steps, batch_size=batch, restarts=quick_restarts if quick else restarts),
            name=f"privileged-basis-{name.replace('_', '-')}",
        )

    return {name: one(name) for name in GRIDS}


@dataclass(frozen=True)
class Reference:
    """One of the paper's codes, built by hand and polished by a local descent at one p."""

    name: str
    p: float
    W: Tensor
    """``[feat, hidden]``."""
    b: Tensor
    """``[feat]``."""
    loss: float
    loss_se: float


@dataclass(frozen=True)
class PrivilegedBasis:
    """The analysis: every saved model, densest first, and the paper's codes polished."""

    W: Tensor
    """``[inst, feat, hidden]``, one best-of-N model per p."""
    ps: list[float]
    loss: list[float]
    loss_se: list[float]
    references: tuple[Reference, ...]


def analyse(runs: dict[str, Run]) -> PrivilegedBasis:
    """Join the runs; polish the paper's codes and our best models at the regimes' probabilities."""
    names = list(GRIDS)
    W = torch.cat([runs[name].W for name in names])
    b = torch.cat([runs[name].params["b"] for name in names])
    ps = [float(p) for name in names for p in runs[name].metrics.feature_probability]
    loss = [float(v) for name in names for v in runs[name].metrics.final_loss]
    se = [float(v) for name in names for v in (runs[name].metrics.final_loss_se or [0.0] * runs[name].W.shape[0])]
    order = sorted(range(len(ps)), key=lambda k: -ps[k])
    W, b, ps, loss, se = W[order], b[order], [ps[k] for k in order], [loss[k] for k in order], [se[k] for k in order]
    quick = runs["relu_hidden_regimes"].config.train.restarts < GRIDS["relu_hidden_regimes"][2]
    ours = [Candidate(OURS, p, W[k], b[k]) for k, p in enumerate(ps) if any(p in r.probabilities for r in REGIMES)]
    return PrivilegedBasis(W, ps, loss, se, references(ps, *POLISH[quick], ours))


OURS = "ours"
"""The name of our best model among the polished ones."""


def references(ps: list[float], steps: int, batch: int, extra: list[Candidate] = ()) -> tuple[Reference, ...]:
    """The paper's codes (`analysis.codes.paper_candidates`) at every regime p in `ps`, and `extra`, polished."""
    wanted = [(r.name, [p for p in r.probabilities if p in ps]) for r in REGIMES]
    candidates = paper_candidates([(name, p) for name, p in wanted if p], N_FEATURES, N_HIDDEN) + list(extra)
    if not candidates:
        return ()
    importance = 0.75 ** torch.arange(N_FEATURES, dtype=torch.float32)
    polished = polish(candidates, importance, steps=steps, batch=batch)
    config = RunConfig(model=ModelConfig("relu_hidden", n_features=N_FEATURES, n_hidden=N_HIDDEN),
                       data=DataConfig(feature_probability=tuple(c.p for c in candidates), importance_decay=0.75))
    est = estimate_loss(config, {"W": polished.W, "b": polished.b}, rel_se=REFERENCE_REL_SE,
                        max_samples=REFERENCE_MAX_SAMPLES)
    return tuple(Reference(c.name, c.p, polished.W[k], polished.b[k], float(est.mean[k]), float(est.se[k]))
                 for k, c in enumerate(candidates))


def _figures(result: PrivilegedBasis) -> dict[str, object]:
    W, ps = result.W, result.ps
    figs = {"privileged_basis": neuron_stack_figure(W, ps),
            "privileged_basis_W": weight_heatmap_figure(W, ps),
            "privileged_basis_polysemanticity": polysemanticity_figure(W, ps)}
    best = _best_references(result)
    if best:
        figs["privileged_basis_paper_codes"] = neuron_stack_figure(torch.stack([r.W for r in best]),
                                                                   [r.p for r in best])
    return figs


def _claims(result: PrivilegedBasis) -> list[ClaimResult]:
    W, ps = result.W, result.ps
    found = [regime_claim(result, r) for r in REGIMES if any(p in ps for p in r.probabilities)]
    return [dense_claim(W[0], ps[0]), sharing_claim(W, ps), *found, pair_claim(W, ps), coexistence_claim(W, ps),
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


THREE_IN_TWO = (0.2, 0.5)
"""The paper's "Three Features in Two Neurons (approximately 0.2 < 1-S < 0.5)" (0.2 itself included)."""


def _intermediate(ps: list[float]) -> list[int]:
    return [k for k, p in enumerate(ps) if THREE_IN_TWO[0] <= p < THREE_IN_TWO[1]]


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
                       f"at some {THREE_IN_TWO[0]:g} ≤ 1 − S < {THREE_IN_TWO[1]:g}: k superposed features on fewer "
                       "than k neurons, each with a distinct set of neurons (e.g. 3 in 2 as 10, 01, 11)",
                       shown or "no such group", bool(found))


def regime_structure(W: Tensor, regime: Regime) -> tuple[bool, str]:
    """Whether one model ``W [feat, hidden]`` has the regime's neuron classes and shared group, and what it has."""
    neurons = classify_neurons(W)
    mono, poly = int(neurons.monosemantic.sum()), int(neurons.polysemantic.sum())
    groups = shared_groups(W)
    sizes = [(len(g.features), len(g.neurons)) for g in groups]
    matching = [g for g in groups if (len(g.features), len(g.neurons)) == regime.group]
    ok = (mono, poly) == (regime.monosemantic, regime.polysemantic) and len(matching) == 1
    listed = ", ".join(f"{a} in {b}" for a, b in sizes) or "none"
    text = f"{mono} mono + {poly} poly, groups (features in neurons) {listed}"
    if regime.distinguisher:
        mark = distinguisher(matching[0]) if matching else None
        ok = ok and mark is not None
        text += f", distinguishing neuron {mark}"
    if regime.pairs:
        on_pairs, distinct = _pairs(W)
        ok = ok and on_pairs == distinct == regime.group[0]
        text += f", {on_pairs} features on pairs ({distinct} distinct)"
    return ok, text


def _best_references(result: PrivilegedBasis) -> list[Reference]:
    """Per regime p, the lowest-loss polished paper code that still has the regime's structure (else the lowest)."""
    best = []
    for regime in REGIMES:
        for p in regime.probabilities:
            refs = [r for r in result.references if r.p == p and r.name.startswith(regime.name)]
            kept = [r for r in refs if regime_structure(r.W, regime)[0]]
            if refs:
                best.append(min(kept or refs, key=lambda r: r.loss))
    return best


def regime_claim(result: PrivilegedBasis, regime: Regime) -> ClaimResult:
    """At each of the regime's p, the best-of-N model has the regime's structure.

    `measured` also gives three losses: our best model as trained, the same polished by the local
    descent, and the paper's code polished by the same descent (the lowest-loss variant that keeps
    the regime's structure), so that a difference in code can be told from a difference in training.
    """
    refs = {r.p: r for r in _best_references(result) if r.name.startswith(regime.name)}
    polished = {r.p: r for r in result.references if r.name == OURS}
    held, shown, beaten = True, [], []
    for p in regime.probabilities:
        if p not in result.ps:
            continue
        k = result.ps.index(p)
        ok, text = regime_structure(result.W[k], regime)
        held &= ok
        if not ok:
            beaten.append(_beats_paper(polished.get(p), refs.get(p), regime))
        line = f"1 − S = {p:g}: ours {text}; loss {fmt(result.loss[k])} ± {fmt(result.loss_se[k])}"
        if p in polished:
            line += f" ({fmt(polished[p].loss)} polished)"
        ref = refs.get(p)
        if ref is not None:
            ref_ok, ref_text = regime_structure(ref.W, regime)
            lost = "" if ref_ok else f", which lost the structure: {ref_text}"
            mine = polished[p].loss if p in polished else result.loss[k]
            line += (f"; the paper's code ({ref.name}, polished{lost}) {fmt(ref.loss)} ± {fmt(ref.loss_se)}: "
                     f"ours {(mine - ref.loss) / ref.loss:+.1%}")
        shown.append(line)
    expected = (f"{regime.quote}: the best model has {regime.monosemantic} monosemantic and {regime.polysemantic} "
                f"polysemantic neurons and one group of {regime.group[0]} superposed features in {regime.group[1]} "
                "neurons" + (" whose code has the distinguishing neuron" if regime.distinguisher else "")
                + (", each on its own pair" if regime.pairs else ""))
    cause = ""
    if beaten and all(b is not None for b in beaten):
        better = [text for winner, text in beaten if winner == OURS]
        missed = [text for winner, text in beaten if winner != OURS]
        parts = []
        if better:
            parts.append("the loss prefers another code to the paper's here: our best model, polished, is below the "
                         "paper's code (built as described, polished by the same descent, keeping its structure) at "
                         + ", ".join(better))
        if missed:
            parts.append("our restarts missed the paper's code: built as described and polished by the same descent, "
                         "keeping its structure, it is below our best model, polished, at " + ", ".join(missed))
        cause = "; cause: " + "; ".join(parts)
    return ClaimResult(SECTION, regime.title, expected, f"{'; '.join(shown) or 'not run'}{cause}",
                       held and bool(shown))


def _beats_paper(ours: Reference | None, ref: Reference | None, regime: Regime) -> tuple[str, str] | None:
    """Which of our polished best and the paper's polished code (which keeps the regime's structure) is lower
    by more than `BETTER_SE` standard errors, as (`OURS` or the code's name, '1 − S = p by x% (n SE)'); None
    when neither is."""
    if ours is None or ref is None or not regime_structure(ref.W, regime)[0]:
        return None
    se = (ours.loss_se ** 2 + ref.loss_se ** 2) ** 0.5
    gap = ref.loss - ours.loss
    if not abs(gap) > BETTER_SE * se:
        return None
    winner, higher = (OURS, ref.loss) if gap > 0 else (ref.name, ours.loss)
    return winner, f"1 − S = {ours.p:g} by {abs(gap) / higher:.1%} ({abs(gap) / se:.1f} SE)"


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
                configs, _figures, _claims, analyse=analyse)
