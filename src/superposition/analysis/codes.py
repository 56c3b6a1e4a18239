# ruff: noqa: N803, N806 - W is the paper's name for the weight matrix
"""Neuron codes of the ReLU hidden layer model (section 8): the paper's codes built by hand,
polished by a short local optimisation, and recognised in trained weights.

The paper (section 8, n = 10, m = 5, I_i = 0.75^i, best of 1000 models per sparsity) describes
one code per sparsity regime:

- 1 − S = 0.15, *five features in three neurons*: "two monosemantic neurons, and three
  polysemantic neurons [that] implement a code that doesn't have any very simple explanation";
- 1 − S = 0.12, *six features in four neurons*: "one monosemantic neuron. [...] One neuron seems
  to distinguish between important and unimportant features. Important features are then encoded
  as sets of two of the other three neurons, while unimportant features are represented by one
  neuron";
- 0.05 < 1 − S < 0.08, *eight features in five neurons*: "all neurons are polysemantic. [...] one
  distinguishes important and unimportant features. Then either sets of three of the other
  neurons, or a single other neuron, are used to distinguish the specific feature";
- 1 − S = 0.04, *features are pairs of neurons*: "each feature simply correspond[s] to a pair of
  neurons".

A *code* here is a tuple with one entry per feature: the neurons whose positive input weights
carry it (``()`` for a dropped feature), the `analysis.neurons.feature_codes` of a model.
`distinguisher_code` and `pair_code` write the paper's codes; the text does not say whether the
distinguishing neuron fires for the important or the unimportant features, so both are built.
`code_weights` turns a code into weights (positive on the code, a small negative, inhibiting
weight on the other neurons of the feature's group, zero elsewhere) and `polish` runs a short
gradient descent from them (`optimise_locally`; no weight is held fixed, so a code that is not a
local optimum drifts away, which the caller checks). `distinguisher` recognises the paper's
6-in-4 / 8-in-5 structure in a trained model's shared group.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ..models import loss_and_grads
from .neurons import SharedGroup

Code = tuple[tuple[int, ...], ...]
"""One entry per feature: the neurons of its code (empty: the feature is dropped)."""

INHIBITION = 0.3
"""Initial negative weight of a feature on the neurons of its group outside its code (before polishing)."""


def pair_code(n_features: int = 10, n_hidden: int = 5) -> Code:
    """Feature i on the i-th pair of neurons in lexicographic order (0,1), (0,2), ...; the rest dropped."""
    pairs = list(itertools.combinations(range(n_hidden), 2))
    return tuple(pairs[i] if i < len(pairs) else () for i in range(n_features))


def distinguisher_code(n_features: int, n_dedicated: int, n_others: int, marks: str) -> Code:
    """The paper's 6-in-4 (``n_dedicated=1, n_others=3``) and 8-in-5 (``0, 4``) codes.

    Features 0 … n_dedicated − 1 get neurons of their own. Neuron A = n_dedicated distinguishes
    the important from the unimportant features; B_1 … B_k (k = `n_others`) are the next neurons.
    The k important features (next in importance) are coded by k − 1 of the B's (all but B_j),
    the k unimportant ones by B_j alone, and A joins the codes of the class named by `marks`
    ("important" or "unimportant"). Less important features are dropped.
    """
    if marks not in ("important", "unimportant"):
        raise ValueError(f"marks = {marks!r} is invalid: must be 'important' or 'unimportant'")
    a, others = n_dedicated, list(range(n_dedicated + 1, n_dedicated + 1 + n_others))
    important = [tuple(o for o in others if o != b) for b in others]
    unimportant = [(b,) for b in others]
    with_a = lambda codes: [tuple(sorted((a, *c))) for c in codes]  # noqa: E731
    if marks == "important":
        important = with_a(important)
    else:
        unimportant = with_a(unimportant)
    codes = [(j,) for j in range(n_dedicated)] + important + unimportant
    if len(codes) > n_features:
        raise ValueError(f"n_features = {n_features} is too small for a code of {len(codes)} features")
    return tuple(codes) + ((),) * (n_features - len(codes))


def code_groups(code: Code) -> list[set[int]]:
    """The neuron sets of the code's groups: codes that share a neuron, joined transitively."""
    groups: list[set[int]] = []
    for c in code:
        joined = [g for g in groups if g & set(c)]
        merged = set(c).union(*joined)
        groups = [g for g in groups if not g & set(c)] + ([merged] if merged else [])
    return groups


def support_mask(code: Code, n_hidden: int) -> Bool[Tensor, "feat hidden"]:
    """Where each feature may have weight: the neurons of its code's group (nowhere for a dropped feature)."""
    mask = torch.zeros(len(code), n_hidden, dtype=torch.bool)
    groups = code_groups(code)
    for i, c in enumerate(code):
        for g in groups:
            if set(c) & g:
                mask[i, sorted(g)] = True
    return mask


def code_weights(code: Code, n_hidden: int, inhibition: float = INHIBITION) -> Float[Tensor, "feat hidden"]:
    """Weights realising `code`: 1/√|c| on the code's neurons, −`inhibition` on the other neurons of its group."""
    mask = support_mask(code, n_hidden)
    W = torch.where(mask, torch.full(mask.shape, -inhibition), torch.zeros(mask.shape))
    for i, c in enumerate(code):
        if c:
            W[i, list(c)] = 1.0 / math.sqrt(len(c))
    return W


@dataclass(frozen=True)
class LocalOptimum:
    """Weights after `optimise_locally`; fields have the instance axis first."""

    W: Tensor
    """``[inst, feat, hidden]``."""
    b: Tensor
    """``[inst, feat]``."""
    loss: Tensor
    """``[inst]``: the mean training loss of the last tenth of the steps (a rough value; rank with `estimate_loss`)."""


def optimise_locally(W: Float[Tensor, "inst feat hidden"], p: Sequence[float], importance: Float[Tensor, " feat"],
                     *, mask: Bool[Tensor, "inst feat hidden"] | None = None, b: Tensor | None = None,
                     steps: int = 2000, batch: int = 2048, lr: float = 3e-3, seed: int = 0) -> LocalOptimum:
    """A short Adam descent of the `relu_hidden` loss from ``W`` (and ``b``, default 0), every instance its own.

    The learning rate decays linearly from `lr` to 0; inputs are the paper's (feature i on with
    probability p, then U[0, 1]), drawn from a generator seeded by `seed`, so the result is a pure
    function of the arguments. Weights outside `mask` stay 0.

    **Arguments:** ``W [inst, feat, hidden]``; ``p``: one feature probability per instance;
    ``importance [feat]``; ``mask [inst, feat, hidden]``. **Returns:** a `LocalOptimum`.
    """
    W = torch.as_tensor(W, dtype=torch.float32).clone()
    inst, n, _ = W.shape
    if len(p) != inst:
        raise ValueError(f"p has {len(p)} values for {inst} instances")
    keep = torch.ones_like(W, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
    b0 = torch.zeros(inst, n) if b is None else torch.as_tensor(b, dtype=torch.float32).clone()
    params = {"W": W * keep, "b": b0}
    opt = torch.optim.Adam(params.values(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / steps)
    gen = torch.Generator().manual_seed(seed)
    prob = torch.tensor(p, dtype=torch.float32).view(inst, 1, 1)
    imp = torch.as_tensor(importance, dtype=torch.float32).expand(inst, n)
    tail, last = torch.zeros(inst), max(1, steps // 10)
    for step in range(steps):
        gate, value = torch.rand(2, inst, batch, n, generator=gen)
        x = torch.where(gate < prob, value, 0.0)
        out = loss_and_grads("relu_hidden", params, x, imp)  # the fused, hand-written gradients
        params["W"].grad, params["b"].grad = out.grads["W"] * keep, out.grads["b"]
        opt.step()
        sched.step()
        if step >= steps - last:
            tail += out.loss
    return LocalOptimum(params["W"].detach(), params["b"].detach(), tail / last)


def distinguisher(group: SharedGroup) -> int | None:
    """The neuron of `group` that splits its features as the paper's 6-in-4 and 8-in-5 codes do, or None.

    Neuron A qualifies when (1) the features whose code contains A and those whose code lacks it
    are both non-empty and one class is more important than the other (every feature of it has a
    smaller index), and (2) with A removed, the k = |neurons| − 1 other neurons code each important
    feature by k − 1 of them and each unimportant feature by exactly one.
    """
    k = len(group.neurons) - 1
    if k < 2:
        return None
    for a in group.neurons:
        with_a = [f for f, c in zip(group.features, group.codes, strict=True) if a in c]
        without = [f for f in group.features if f not in with_a]
        if not with_a or not without:
            continue
        important, unimportant = (with_a, without) if max(with_a) < min(without) else (without, with_a)
        if max(important) > min(unimportant):
            continue
        rest = {f: set(c) - {a} for f, c in zip(group.features, group.codes, strict=True)}
        if all(len(rest[f]) == k - 1 for f in important) and all(len(rest[f]) == 1 for f in unimportant):
            return a
    return None


def block_start(code: Code, n_hidden: int, seed: int, scale: float = 0.3) -> Float[Tensor, "feat hidden"]:
    """A random start inside `code`'s groups: its single-feature neurons at weight 1, every other
    allowed weight drawn from N(0, scale²) (a generator seeded by `seed`). Used where the paper
    names a code's groups but not its codes (5 features in 3 neurons: "no very simple explanation")."""
    mask = support_mask(code, n_hidden)
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(mask.shape, generator=gen) * scale * mask
    for i, c in enumerate(code):
        if len(c) == 1 and sum(c[0] in other for other in code) == 1:
            W[i] = 0.0
            W[i, c[0]] = 1.0
    return W


@dataclass(frozen=True)
class Candidate:
    """One hand-built model to polish: a start inside a support, at one feature probability."""

    name: str
    p: float
    W: Tensor
    """``[feat, hidden]``: the start."""
    b: Tensor | None = None
    """``[feat]``: the start's output bias (None: 0)."""


def paper_candidates(regimes: Sequence[tuple[str, Sequence[float]]], n_features: int = 10, n_hidden: int = 5,
                     random_starts: int = 4) -> list[Candidate]:
    """The paper's codes of section 8 as starts, for the named regimes at their probabilities.

    `regimes`: (name, probabilities) with name one of "five_in_three" (features 0, 1 dedicated,
    features 2–6 in neurons 2–4 from `random_starts` random starts), "six_in_four", "eight_in_five"
    (`distinguisher_code`, A marking either class) and "pairs" (`pair_code`).
    """
    out: list[Candidate] = []
    for name, ps in regimes:
        for p in ps:
            out += _regime_candidates(name, p, n_features, n_hidden, random_starts)
    return out


def _regime_candidates(name: str, p: float, n: int, m: int, random_starts: int) -> list[Candidate]:
    if name == "five_in_three":
        code = ((0,), (1,)) + ((2, 3, 4),) * 5 + ((),) * (n - 7)
        return [Candidate(f"{name} start {s}", p, block_start(code, m, s)) for s in range(random_starts)]
    if name in ("six_in_four", "eight_in_five"):
        dedicated, others = (1, 3) if name == "six_in_four" else (0, 4)
        codes = {marks: distinguisher_code(n, dedicated, others, marks) for marks in ("important", "unimportant")}
        return [Candidate(f"{name}, A marks the {marks} features", p, code_weights(c, m)) for marks, c in codes.items()]
    if name == "pairs":
        code = pair_code(n, m)
        return [Candidate(name, p, code_weights(code, m))]
    raise ValueError(f"regime = {name!r} is invalid: must be five_in_three, six_in_four, eight_in_five or pairs")


def polish(candidates: Sequence[Candidate], importance: Float[Tensor, " feat"], *, steps: int = 2000,
           batch: int = 2048, seed: int = 0) -> LocalOptimum:
    """`optimise_locally` every candidate at its own p, all as instances of one descent.

    No weight is held at zero: the descent may leave a code (the caller checks what it became).
    """
    W = torch.stack([c.W for c in candidates])
    b = torch.stack([torch.zeros(W.shape[1]) if c.b is None else torch.as_tensor(c.b).float() for c in candidates])
    return optimise_locally(W, [c.p for c in candidates], importance, b=b, steps=steps, batch=batch, seed=seed)
