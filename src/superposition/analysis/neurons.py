# ruff: noqa: N803, N806 - W, W1, W2 are the paper's names for the weight matrices
"""Neurons of models with a privileged basis: which features each neuron stores, and how.

The paper's sections 8 (superposition in a privileged basis, the `relu_hidden` model
h = ReLU(W x)) and 9 (computation in superposition, the `abs_mlp` model h = ReLU(W1 x)) read
the hidden layer neuron by neuron. Column j of ``W [inst, feat, hidden]`` is neuron j's input
weights: one weight per feature.

**Activating weights.** A weight can make a neuron fire only if the input can push it up: with
non-negative features (U[0, 1], `relu_hidden`) only positive weights do, negative ones merely
inhibit; with signed features (U[-1, 1], `abs_mlp`) both signs do (x < 0 times a negative weight).
Every measure here uses a neuron's activating weights (``signed`` says which).

**Neuron classes.** A feature's *share* of a neuron is its fraction of the neuron's squared
activating input weight. A neuron is *monosemantic* when one feature holds at least
`MONOSEMANTIC_SHARE` = 90% of it, i.e. every other feature together has at most a third of its
weight (√(0.1/0.9) = 1/3): such a neuron fires for that feature, and only weakly for anything
else. Two features of equal weight give 50%, the asymmetric pair 1 : 1/2 of section 9 gives 80%:
both are polysemantic. A neuron whose activating weights have norm below `DEAD_NORM` is *dead*.

**Feature codes and classes.** A feature's *code* is the smallest set of neurons holding at
least `CODE_COVERAGE` = 90% of its squared activating weight (the paper's binary codes: at
intermediate sparsity three features in two neurons as 10, 01, 11; at the sparsest, each of
C(5, 2) = 10 features is a pair of 5 neurons). A feature is *represented* when its activating
weights have norm > 0.5 (geometry's `REPRESENTED_THRESHOLD`), *dedicated* when every neuron
of its code is monosemantic for it (one neuron in `relu_hidden`; a ReLU(x) and a ReLU(−x)
neuron in `abs_mlp`), and *in superposition* when it is represented but not dedicated.

**Rescaling (section 9).** ReLU is positively homogeneous, so scaling neuron j's input weights
by 1/c and its output weights by c leaves the model unchanged. The paper draws each neuron with
its largest input weight at magnitude 1 (`rescale_neurons`).

**Asymmetric superposition (section 9).** A neuron stores two features with unequal input
weights, the weaker one with a reciprocally larger output weight, so both come out with the same
gain; the strong feature then leaks strongly into the weak one's output, which a second,
*inhibiting* neuron cancels: it fires on the strong feature and has a negative output weight on
the weak one. `asymmetric_motifs` finds these.

Shapes: ``W [inst, feat, hidden]`` (W1 of `abs_mlp`), ``W2 [inst, hidden, feat]``; functions
marked so also take one model ``[feat, hidden]`` and any further leading axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .geometry import REPRESENTED_THRESHOLD

MONOSEMANTIC_SHARE = 0.9
"""A neuron is monosemantic when one feature holds at least this share of its squared activating weight."""
DEAD_NORM = 0.1
"""A neuron whose activating input weights have a smaller norm than this is dead (fires for nothing)."""
CODE_COVERAGE = 0.9
"""A feature's code is the fewest neurons holding at least this share of its squared activating weight."""

# Asymmetric-superposition thresholds, on weights rescaled so each neuron's largest |input weight| is 1.
MOTIF_RATIO = (0.2, 0.75)
"""The weak feature's input weight relative to the strong one's: stored (≥ 0.2), and unequal (≤ 0.75)."""
MOTIF_GAIN = (0.5, 2.0)
"""Reciprocal output weights: the weak feature's gain (input × output weight) over the strong one's."""
MOTIF_INHIBITION = 0.25
"""The inhibiting neuron cancels at least this fraction of the strong feature's leak into the weak one."""
MOTIF_PURITY = 0.8
"""The two features together hold at least this share of the neuron's squared input weight: it stores two features."""


def _float(W: Tensor, ndim: int = 2) -> Tensor:
    W = torch.as_tensor(W)
    if W.ndim < ndim:
        raise ValueError(f"W must have shape [..., feat, hidden], got {tuple(W.shape)}")
    return W if W.is_floating_point() else W.float()


def neuron_weights(W: Float[Tensor, "*inst feat hidden"]) -> Float[Tensor, "*inst hidden feat"]:
    """Each neuron's input weights, one per feature (the paper's per-neuron view, a column per neuron).

    **Arguments:** ``W [..., feat, hidden]``. **Returns:** ``[..., hidden, feat]``.
    """
    return _float(W).transpose(-1, -2)


def activating_weights(W: Float[Tensor, "*inst feat hidden"], signed: bool = False) -> Float[Tensor,
                       "*inst feat hidden"]:
    """The input weights that can make their neuron fire: all of them for signed inputs, else the positive ones.

    **Arguments:** ``W [..., feat, hidden]``; ``signed``: whether features take negative values.
    **Returns:** ``[..., feat, hidden]``.
    """
    W = _float(W)
    return W if signed else W.clamp_min(0.0)


def neuron_shares(W: Float[Tensor, "*inst feat hidden"], signed: bool = False) -> Float[Tensor, "*inst hidden feat"]:
    """Each feature's share of each neuron's squared activating input weight (rows sum to 1; dead neurons 0).

    **Arguments:** ``W [..., feat, hidden]``. **Returns:** ``[..., hidden, feat]``.
    """
    sq = neuron_weights(activating_weights(W, signed)).square()
    total = sq.sum(-1, keepdim=True)
    return torch.where(total > 0, sq / total.clamp_min(1e-30), torch.zeros_like(sq))


@dataclass(frozen=True)
class NeuronClasses:
    """Every neuron's class; fields are ``[..., hidden]`` unless named otherwise.

    Exactly one of `monosemantic`, `polysemantic`, `dead` is true for each neuron.
    """

    share: Tensor
    """``[..., hidden, feat]``: each feature's share of the neuron's squared activating weight."""
    top_feature: Tensor
    """int64: the feature with the largest share."""
    top_share: Tensor
    """That feature's share."""
    features_per_neuron: Tensor
    """Participation ratio 1 / Σ_i share_i²: 1 for one feature, k for k equal ones, 0 when dead."""
    monosemantic: Tensor
    polysemantic: Tensor
    dead: Tensor
    threshold: float


def classify_neurons(W: Float[Tensor, "*inst feat hidden"], signed: bool = False, threshold: float = MONOSEMANTIC_SHARE,
                     dead_norm: float = DEAD_NORM) -> NeuronClasses:
    """Monosemantic (one feature holds ≥ `threshold` of the squared activating weight), polysemantic or dead.

    **Arguments:** ``W [..., feat, hidden]``; ``signed``: inputs take both signs (`abs_mlp`).
    **Returns:** a `NeuronClasses` with ``[..., hidden]`` fields.
    """
    share = neuron_shares(W, signed)
    norm = torch.linalg.vector_norm(activating_weights(W, signed), dim=-2)
    dead = norm < dead_norm
    top_share, top_feature = share.max(-1)
    ratio = torch.where(dead, torch.zeros_like(top_share), 1.0 / share.square().sum(-1).clamp_min(1e-30))
    mono = ~dead & (top_share >= threshold)
    return NeuronClasses(share, top_feature, top_share, ratio, mono, ~dead & ~mono, dead, threshold)


def feature_codes(W: Float[Tensor, "*inst feat hidden"], signed: bool = False,
                  coverage: float = CODE_COVERAGE) -> Bool[Tensor, "*inst feat hidden"]:
    """Each feature's code: the fewest neurons holding ≥ `coverage` of its squared activating weight.

    Neurons are taken in order of decreasing weight; a feature with no activating weight has an
    empty code.

    **Arguments:** ``W [..., feat, hidden]``. **Returns:** bool ``[..., feat, hidden]``.
    """
    sq = activating_weights(W, signed).square()
    total = sq.sum(-1, keepdim=True)
    ordered, order = sq.sort(-1, descending=True)
    before = ordered.cumsum(-1) - ordered  # weight held by the stronger neurons
    needed = (before < coverage * total) & (ordered > 0)
    return torch.zeros_like(needed).scatter(-1, order, needed)


@dataclass(frozen=True)
class FeatureClasses:
    """Every feature's code and class; fields are ``[..., feat]`` unless named otherwise."""

    code: Tensor
    """bool ``[..., feat, hidden]``: the neurons of the feature's code."""
    code_size: Tensor
    """int64: neurons in the code."""
    represented: Tensor
    """Activating weights have norm > the represented threshold."""
    dedicated: Tensor
    """Represented, and every neuron of its code is monosemantic for this feature."""
    superposed: Tensor
    """Represented but not dedicated: it shares its neurons with other features."""


def classify_features(W: Float[Tensor, "*inst feat hidden"], signed: bool = False,
                      threshold: float = MONOSEMANTIC_SHARE,
                      coverage: float = CODE_COVERAGE,
                      represented_norm: float = REPRESENTED_THRESHOLD) -> FeatureClasses:
    """Dedicated (stored in neurons of its own) or in superposition (sharing neurons), from W alone.

    **Arguments:** ``W [..., feat, hidden]``; ``threshold``: `classify_neurons`; ``coverage``:
    `feature_codes`; ``represented_norm``: the smallest activating-weight norm of a represented feature.
    **Returns:** a `FeatureClasses` with ``[..., feat]`` fields.
    """
    code = feature_codes(W, signed, coverage)
    neurons = classify_neurons(W, signed, threshold)
    n_feat = code.shape[-2]
    own = neurons.monosemantic.unsqueeze(-2) & (
        neurons.top_feature.unsqueeze(-2) == torch.arange(n_feat, device=code.device).unsqueeze(-1))
    represented = torch.linalg.vector_norm(activating_weights(W, signed), dim=-1) > represented_norm
    dedicated = represented & code.any(-1) & (own | ~code).all(-1)  # [..., feat, hidden] → [..., feat]
    return FeatureClasses(code, code.sum(-1), represented, dedicated, represented & ~dedicated)


@dataclass(frozen=True)
class SharedGroup:
    """Features in superposition that share a set of neurons: a connected block of the feature–neuron code graph."""

    features: tuple[int, ...]
    neurons: tuple[int, ...]
    codes: tuple[tuple[int, ...], ...]
    """Each feature's code (its neurons), aligned with `features`."""

    @property
    def binary_code(self) -> bool:
        """More features than neurons, each with a distinct code (e.g. 3 features in 2 neurons as 10, 01, 11)."""
        return len(self.features) > len(self.neurons) and len(set(self.codes)) == len(self.codes)


def shared_groups(W: Float[Tensor, "feat hidden"], signed: bool = False, threshold: float = MONOSEMANTIC_SHARE,
                  coverage: float = CODE_COVERAGE) -> list[SharedGroup]:
    """The groups of superposed features of one model joined by the neurons of their codes.

    Two superposed features belong to one group when their codes share a neuron (transitively).

    **Arguments:** one model's ``W [feat, hidden]``. **Returns:** the groups, by smallest feature.
    """
    W = _float(W)
    if W.ndim != 2:
        raise ValueError(f"shared_groups takes one model's W [feat, hidden], got {tuple(W.shape)}")
    classes = classify_features(W, signed, threshold, coverage)
    superposed = classes.superposed.nonzero().flatten().tolist()
    codes = {i: tuple(classes.code[i].nonzero().flatten().tolist()) for i in superposed}
    groups: list[SharedGroup] = []
    left = sorted(codes)
    while left:
        members, neurons = {left[0]}, set(codes[left[0]])
        grew = True
        while grew:
            joined = {i for i in left if i not in members and neurons & set(codes[i])}
            members |= joined
            neurons |= {j for i in joined for j in codes[i]}
            grew = bool(joined)
        feats = tuple(sorted(members))
        groups.append(SharedGroup(feats, tuple(sorted(neurons)), tuple(codes[i] for i in feats)))
        left = [i for i in left if i not in members]
    return groups


@dataclass(frozen=True)
class RescaledNeurons:
    """An `abs_mlp` model with each neuron's largest |input weight| scaled to 1 (the same function)."""

    W1: Tensor
    """``[..., feat, hidden]``."""
    W2: Tensor
    """``[..., hidden, feat]``."""
    scale: Tensor
    """``[..., hidden]``: the factor each neuron's input weights were divided by (1 for dead neurons)."""


def rescale_neurons(W1: Float[Tensor, "*inst feat hidden"], W2: Float[Tensor, "*inst hidden feat"]) -> RescaledNeurons:
    """The paper's drawing convention: input weights / c_j, output weights × c_j, c_j = max_i |W1[i, j]|.

    ReLU(x / c) = ReLU(x) / c for c > 0, so the model computes exactly the same function.

    **Arguments:** ``W1 [..., feat, hidden]``, ``W2 [..., hidden, feat]``.
    **Returns:** a `RescaledNeurons`.
    """
    W1, W2 = _float(W1), _float(W2)
    scale = W1.abs().amax(-2)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return RescaledNeurons(W1 / scale.unsqueeze(-2), W2 * scale.unsqueeze(-1), scale)


@dataclass(frozen=True)
class AsymmetricMotif:
    """One occurrence of asymmetric superposition (weights after `rescale_neurons`)."""

    instance: int
    neuron: int
    strong: int
    """The feature with the larger input weight (1 after rescaling)."""
    weak: int
    """The feature with the smaller input weight and the reciprocally larger output weight."""
    ratio: float
    """|weak input weight| / |strong input weight|."""
    gain_ratio: float
    """The weak feature's gain (input × output weight) over the strong one's: ≈ 1 when reciprocal."""
    inhibitor: int
    """The neuron that fires on the strong feature and inhibits the weak feature's output."""
    inhibition: float
    """The fraction of the strong feature's leak into the weak output that the inhibitor cancels."""


def asymmetric_motifs(W1: Float[Tensor, "*inst feat hidden"], W2: Float[Tensor, "*inst hidden feat"],
                      ratio: tuple[float, float] = MOTIF_RATIO,
                      gain: tuple[float, float] = MOTIF_GAIN, inhibition: float = MOTIF_INHIBITION,
                      purity: float = MOTIF_PURITY) -> list[AsymmetricMotif]:
    """Find asymmetric superposition: a neuron storing two features with unequal input weights and
    reciprocal output weights, plus a neuron inhibiting the strong feature's leak into the weak one.

    For each neuron j, with input weights rescaled to a largest magnitude of 1, the strong feature
    a is the largest and the weak feature b the second largest |input weight| r. It is a motif when

    - a and b hold at least ``purity`` of j's squared input weight: j stores these two features;
    - ``ratio[0] ≤ r ≤ ratio[1]``: j stores b, with a smaller weight than a;
    - both output weights W2[j, a], W2[j, b] are positive and the gains r·W2[j, b] / W2[j, a] lie
      in ``gain``: reciprocal output weights give both features the same gain;
    - another neuron k fires on a (its input weight on a has the sign j's has) and has a negative
      output weight on b cancelling at least ``inhibition`` of j's leak W2[j, b] per unit of a:
      |W1[a, k]| · (−W2[k, b]) ≥ inhibition · W2[j, b]. The strongest such k is reported.

    **Arguments:** ``W1 [inst, feat, hidden]``, ``W2 [inst, hidden, feat]`` (or one model without
    ``inst``, reported as instance 0). **Returns:** every motif found, by instance and neuron.
    """
    scaled = rescale_neurons(W1, W2)
    A, B = scaled.W1, scaled.W2
    if A.ndim == 2:
        A, B = A.unsqueeze(0), B.unsqueeze(0)
    found: list[AsymmetricMotif] = []
    for k in range(A.shape[0]):
        for j in range(A.shape[-1]):
            motif = _motif_at(A[k], B[k], j, ratio, gain, inhibition, purity)
            if motif is not None:
                found.append(AsymmetricMotif(k, j, *motif))
    return found


def _motif_at(A: Tensor, B: Tensor, j: int, ratio: tuple[float, float], gain: tuple[float, float],
              inhibition: float, purity: float) -> tuple[int, int, float, float, int, float] | None:
    """(strong, weak, ratio, gain ratio, inhibitor, inhibition) for neuron j of one rescaled model, or None."""
    if A.shape[0] < 2:
        return None
    magnitude, top = A[:, j].abs().topk(2)
    a, b = int(top[0]), int(top[1])
    r = float(magnitude[1] / magnitude[0]) if magnitude[0] > 0 else 0.0
    pure = float(magnitude.square().sum()) >= purity * float(A[:, j].square().sum())
    out_a, out_b = float(B[j, a]), float(B[j, b])
    if not (pure and ratio[0] <= r <= ratio[1] and out_a > 0 and out_b > 0):
        return None
    g = r * out_b / out_a
    if not gain[0] <= g <= gain[1]:
        return None
    fires = torch.sign(A[:, j][a]) * A[a] > 0  # [hidden]: neurons driven up by feature a, as j is
    cancels = A[a].abs() * (-B[:, b]).clamp_min(0.0) * fires
    cancels[j] = 0.0
    best = int(cancels.argmax())
    share = float(cancels[best]) / out_b
    return (a, b, r, g, best, share) if share >= inhibition else None


# --- section 9: the hand-built sign-pair solution, and neurons that repeat one another ------------------


def sign_pair_params(importance: Float[Tensor, "*inst feat"], n_hidden: int,
                     feature_probability: float) -> dict[str, Tensor]:
    """The hand-built `abs_mlp` solution without superposition: the ⌊m/2⌋ most important features each
    get a ReLU(x) and a ReLU(−x) neuron (|x| = ReLU(x) + ReLU(−x), computed exactly), every other
    feature a constant output, its best one: the bias E|x| = p/2 (values U[−1, 1], on with probability p).

    Neurons 2k and 2k + 1 carry the k-th most important feature (ties by index).

    **Arguments:** ``importance [feat]`` or ``[inst, feat]``; ``n_hidden``: m; ``feature_probability``: p.
    **Returns:** params ``W1 [inst, feat, hidden]``, ``W2 [inst, hidden, feat]``, ``b [inst, feat]``
    (one instance for a ``[feat]`` importance).
    """
    importance = torch.as_tensor(importance, dtype=torch.float32)
    importance = importance.unsqueeze(0) if importance.ndim == 1 else importance
    if importance.ndim != 2 or n_hidden < 1 or not 0.0 < feature_probability <= 1.0:
        raise ValueError(f"sign_pair_params takes importance [inst, feat], n_hidden ≥ 1 and 0 < p ≤ 1; got "
                         f"{tuple(importance.shape)}, {n_hidden}, {feature_probability}")
    n_inst, n_feat = importance.shape
    kept = min(n_hidden // 2, n_feat)
    order = torch.sort(importance, dim=-1, descending=True, stable=True).indices[:, :kept]  # [inst, kept]
    W1 = torch.zeros(n_inst, n_feat, n_hidden)
    W2 = torch.zeros(n_inst, n_hidden, n_feat)
    b = torch.full((n_inst, n_feat), feature_probability / 2)
    inst = torch.arange(n_inst).unsqueeze(-1)
    pos, neg = 2 * torch.arange(kept), 2 * torch.arange(kept) + 1
    W1[inst, order, pos], W1[inst, order, neg] = 1.0, -1.0
    W2[inst, pos, order], W2[inst, neg, order] = 1.0, 1.0
    b[inst, order] = 0.0
    return {"W1": W1, "W2": W2, "b": b}


def sign_pair_loss(importance: Float[Tensor, "*inst feat"], n_hidden: int,
                   feature_probability: float) -> Float[Tensor, "*inst"]:
    """The exact expected loss of `sign_pair_params` (importance-weighted squared error, mean over features):
    each feature left out costs I_i · Var|x_i| = I_i (p/3 − p²/4); the kept ones are exact.

    **Arguments:** as `sign_pair_params`. **Returns:** ``[inst]`` (or a scalar for a ``[feat]`` importance).
    """
    importance = torch.as_tensor(importance, dtype=torch.float64)
    kept = min(n_hidden // 2, importance.shape[-1])
    left = torch.sort(importance, dim=-1, descending=True, stable=True).values[..., kept:]
    p = feature_probability
    return left.sum(-1) * (p / 3 - p * p / 4) / importance.shape[-1]


@dataclass(frozen=True)
class DuplicateNeurons:
    """Monosemantic neurons that repeat another's job: the same feature, firing on the same sign. ``[...]`` fields."""

    duplicates: Tensor
    """int64: monosemantic neurons beyond the first for their (feature, sign)."""
    most: Tensor
    """int64: the most monosemantic neurons any one feature holds (both signs together)."""


def duplicate_neurons(W1: Float[Tensor, "*inst feat hidden"],
                      threshold: float = MONOSEMANTIC_SHARE) -> DuplicateNeurons:
    """Count the monosemantic neurons of a signed-input model (`abs_mlp`) that duplicate another's (feature, sign).

    Each (feature, sign) needs one neuron to compute |x| exactly; a second one adds nothing the first's
    output weight could not. **Arguments:** ``W1 [..., feat, hidden]``. **Returns:** a `DuplicateNeurons`.
    """
    W1 = _float(W1)
    neurons = classify_neurons(W1, signed=True, threshold=threshold)
    top = neurons.top_feature
    sign = (torch.gather(W1, -2, top.unsqueeze(-2)).squeeze(-2) > 0).long()
    n_feat = W1.shape[-2]
    slots = torch.where(neurons.monosemantic, 2 * top + sign, 2 * n_feat)  # the dump slot for the rest
    counts = torch.zeros(*slots.shape[:-1], 2 * n_feat + 1, dtype=torch.int64, device=slots.device)
    counts = counts.scatter_add(-1, slots, torch.ones_like(slots))[..., : 2 * n_feat]
    per_feature = counts.view(*counts.shape[:-1], n_feat, 2).sum(-1)
    return DuplicateNeurons((counts - 1).clamp_min(0).sum(-1), per_feature.amax(-1))


def more_important_test(mono: Tensor, poly: Tensor) -> tuple[float, float]:
    """Mann–Whitney test that monosemantic neurons store more important features (lower indices) than
    polysemantic ones: (share of (mono, poly) pairs with the mono feature more important, ties half; the
    one-sided p-value of that share under no relation, normal approximation with tie and continuity
    corrections).

    **Arguments:** the feature index each neuron mostly stores, ``mono [a]`` and ``poly [b]``.
    """
    mono, poly = torch.as_tensor(mono).double().flatten(), torch.as_tensor(poly).double().flatten()
    a, b = mono.numel(), poly.numel()
    if a == 0 or b == 0:
        raise ValueError(f"more_important_test needs neurons of both kinds, got {a} and {b}")
    diff = mono.view(-1, 1) - poly.view(1, -1)
    u = float(((diff < 0).double() + 0.5 * (diff == 0).double()).sum())
    _, ties = torch.cat([mono, poly]).unique(return_counts=True)
    total = a + b
    var = a * b / 12.0 * ((total + 1) - float((ties.double() ** 3 - ties.double()).sum()) / (total * (total - 1)))
    if var <= 0:
        return u / (a * b), 1.0
    z = (u - a * b / 2.0 - 0.5) / math.sqrt(var)
    return u / (a * b), 0.5 * math.erfc(z / math.sqrt(2.0))
