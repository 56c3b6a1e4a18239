"""Which phase a trained model's extra feature is in (section 4, superposition as a phase change).

The phase-change experiment trains n = m + 1 features in m hidden dimensions and asks what the
model does with the last ("extra") feature: leave it out (not represented), give it a dimension
of its own (dedicated), or store it in superposition, antipodal to one of the represented
features. `classify_extra_feature` reads that off W with two order parameters: the extra
feature's norm ‖W_e‖, and the cosine between W_e and the represented feature it overlaps most.

Choosing the best of several restarts needs each model's expected loss, and at 1 − S = 0.01 a
batch of fresh samples holds almost no coincidences of two features, which is where the phases
differ. `expected_loss` therefore averages over which features are on exactly and samples only
their values (stratified Monte Carlo), and `best_restarts` picks the lowest per configuration.

Shapes: ``W [inst, feat, hidden]`` (any leading axes work), results ``[inst]``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..models import Params, forward, instance_loss, target
from .geometry import REPRESENTED_THRESHOLD, feature_norms, unit_directions
from .theory import DEDICATED, NOT_REPRESENTED, PHASES, SUPERPOSITION

OTHER = len(PHASES)
"""Phase index of a geometry none of the three phases describes: the extra feature shares its
direction with a represented feature at a positive cosine (a half-trained or degenerate model)."""

OVERLAP_THRESHOLD = 0.3
"""|cos| above this (angle below ~73°, or beyond ~107°) means the extra feature shares a direction."""


@dataclass(frozen=True)
class ExtraFeaturePhase:
    """The phase of the extra feature of each instance, and the order parameters that decide it."""

    phase: Tensor
    """int64 ``[inst]``: an index into `theory.PHASES` (0 not represented, 1 dedicated,
    2 superposition), or `OTHER` (3)."""
    norm: Tensor
    """``[inst]``: ‖W_e‖, ≈1 when represented, ≈0 when not."""
    partner_cos: Tensor
    """``[inst]``: cos(W_e, W_j) for the represented feature j ≠ e with the largest |cos|; 0 when
    no other feature is represented. ≈ −1 antipodal, ≈ 0 orthogonal."""
    partner: Tensor
    """int64 ``[inst]``: that feature j, or −1 when no other feature is represented."""


def extra_feature_overlap(W: Float[Tensor, "*inst feat hidden"], extra: int = -1,
                          threshold: float = REPRESENTED_THRESHOLD) -> tuple[Tensor, Tensor]:
    """The cosine between the extra feature and its most overlapping represented feature.

    **Arguments:** ``W [inst, feat, hidden]``; ``extra`` the extra feature's index; features with
    ‖W_j‖ ≤ ``threshold`` count as absent.
    **Returns:** (cos ``[inst]``, partner index ``[inst]`` int64, −1 and cos 0 when none).
    """
    W = torch.as_tensor(W)
    W = W if W.is_floating_point() else W.float()
    n = W.shape[-2]
    e = extra % n
    units = unit_directions(W)
    cos = (units @ units[..., e, :].unsqueeze(-1)).squeeze(-1)  # [inst, feat]
    others = feature_norms(W) > threshold
    others[..., e] = False
    cos = torch.where(others, cos, torch.zeros_like(cos))
    best = cos.abs().argmax(-1)
    partner_cos = cos.gather(-1, best.unsqueeze(-1)).squeeze(-1)
    partner = torch.where(others.any(-1), best, torch.full_like(best, -1))
    return partner_cos, partner


def classify_extra_feature(W: Float[Tensor, "*inst feat hidden"], extra: int = -1,
                           threshold: float = REPRESENTED_THRESHOLD,
                           overlap: float = OVERLAP_THRESHOLD) -> ExtraFeaturePhase:
    """Classify the extra feature of each instance.

    - not represented: ‖W_e‖ ≤ ``threshold``;
    - dedicated: represented, and |cos(W_e, W_j)| ≤ ``overlap`` for every represented j ≠ e;
    - superposition: represented, and its most overlapping represented feature is at
      cos < −``overlap`` (antipodal: cos ≈ −1);
    - `OTHER`: represented, most overlapping feature at cos > ``overlap``.

    **Arguments:** ``W [inst, feat, hidden]`` (or ``[feat, hidden]``); ``extra`` the extra feature's
    index (default the last).
    **Returns:** an `ExtraFeaturePhase` with ``[inst]`` fields.
    """
    W = torch.as_tensor(W)
    norm = feature_norms(W)[..., extra % W.shape[-2]]
    cos, partner = extra_feature_overlap(W, extra, threshold)
    phase = torch.full_like(partner, OTHER)
    phase = torch.where(cos < -overlap, torch.full_like(phase, SUPERPOSITION), phase)
    phase = torch.where(cos.abs() <= overlap, torch.full_like(phase, DEDICATED), phase)
    phase = torch.where(norm <= threshold, torch.full_like(phase, NOT_REPRESENTED), phase)
    return ExtraFeaturePhase(phase, norm, cos, partner)


def on_patterns(n_features: int) -> Tensor:
    """Every subset of features that can be on, as 0/1 rows: ``[2**n, feat]`` float32."""
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n_features)))


def expected_loss(kind: str, params: Params, probability: Tensor, importance: Tensor, samples: int = 2048,
                  seed: int = 0, chunk: int = 1 << 21, nodes: int | None = None) -> Tensor:
    """Each instance's expected loss on independent U[0, 1] features, stratified by which are on.

    E[L] = Σ_s P(s) E[L | s] over the 2ⁿ on/off patterns s, with P(s) = Π_i p_i^{s_i} (1 − p_i)^{1 − s_i}
    exact and E[L | s] averaged over `samples` uniform draws of the on features. Every instance and
    pattern sees the same draws (common random numbers), so instances are compared on equal terms
    even where coincidences are rare (p² ≪ 1/samples). Exponential in n: meant for n ≲ 12.

    **Arguments:**
    - ``kind``: the model kind (see `models.forward`); ``params`` its parameters (``[inst, ...]``).
    - ``probability``, ``importance``: ``[inst, feat]``.
    - ``samples``: uniform draws per pattern; ``seed`` their generator seed.
    - ``chunk``: at most this many (instance × sample) rows per forward pass (memory).
    - ``nodes``: instead of random draws, the midpoint grid with ``nodes`` points per feature
      (``nodes**n`` points, ``samples`` and ``seed`` unused): deterministic, and for the piecewise
      smooth losses of these models its error falls as 1/nodes² (about 1e-3 relative at 16 nodes
      for n = 3, tested against the closed forms).

    **Returns:** ``[inst]``, float64.
    """
    inst, n = probability.shape
    if nodes is not None:
        axis = (torch.arange(nodes, dtype=torch.float32) + 0.5) / nodes
        u = torch.cartesian_prod(*[axis] * n).reshape(-1, n)
        samples = len(u)
    else:
        u = torch.rand(samples, n, generator=torch.Generator().manual_seed(seed))
    prob = probability.double()
    total = torch.zeros(inst, dtype=torch.float64)
    step = max(1, chunk // samples)
    for pattern in on_patterns(n):
        weight = torch.where(pattern.bool(), prob, 1 - prob).prod(-1)  # [inst]
        x = u * pattern
        for lo in range(0, inst, step):
            part = {k: v[lo : lo + step] for k, v in params.items()}
            xs = x.expand(len(part["b"]), samples, n)
            out = forward(kind, part, xs).output
            loss = instance_loss(out, target(kind, xs), importance[lo : lo + step]).double()
            total[lo : lo + step] += weight[lo : lo + step] * loss
    return total


def best_restarts(losses: Float[Tensor, " inst"], config_index: Tensor | list[int]) -> Int[Tensor, " config"]:
    """The instance with the lowest loss in each configuration (best-of-N restarts).

    **Arguments:** ``losses [inst]``; ``config_index [inst]`` (0 … C − 1, every value present).
    **Returns:** int64 ``[C]``: for configuration c, the index k with config_index[k] = c and the
    smallest loss (ties: the first; NaN counts as +inf).
    """
    config = torch.as_tensor(config_index, dtype=torch.int64)
    clean = torch.nan_to_num(losses.double(), nan=float("inf"))
    n_configs = int(config.max()) + 1
    lowest = torch.full((n_configs,), float("inf"), dtype=torch.float64).scatter_reduce(0, config, clean, "amin")
    index = torch.arange(len(config))
    candidates = torch.where(clean == lowest[config], index, len(config))
    best = torch.full((n_configs,), len(config), dtype=torch.int64).scatter_reduce(0, config, candidates, "amin")
    if bool((best == len(config)).any()):
        raise ValueError("config_index must contain every configuration 0 … C − 1")
    return best


def by_configuration(values: Tensor, config_index: Tensor | list[int]) -> Tensor:
    """Regroup per-instance values ``[inst, ...]`` as ``[config, restart, ...]``.

    Needs every configuration to hold the same number of instances (a run with all restarts kept).
    Within a configuration, instances keep their order (restart 0, 1, …).
    """
    config = torch.as_tensor(config_index, dtype=torch.int64)
    counts = torch.bincount(config)
    if len(config) != len(values) or bool((counts != counts[0]).any()):
        raise ValueError("by_configuration needs one value per instance and the same number of "
                         f"instances in every configuration (got counts {counts.tolist()})")
    order = torch.sort(config, stable=True).indices
    return values[order].reshape(len(counts), int(counts[0]), *values.shape[1:])


def drop_worst(losses: Float[Tensor, "config restart"]) -> Tensor:
    """The paper's protocol: keep every restart but the one with the highest loss, per configuration.

    **Arguments:** ``losses [config, restart]`` (NaN counts as the highest). **Returns:** bool
    ``[config, restart]``, False at the one dropped restart of each configuration (ties: the last).
    With a single restart nothing is dropped.
    """
    if losses.shape[-1] < 2:
        return torch.ones_like(losses, dtype=torch.bool)
    clean = torch.nan_to_num(losses.double(), nan=float("inf"))
    worst = clean.shape[-1] - 1 - clean.flip(-1).argmax(-1)
    return torch.arange(clean.shape[-1]) != worst.unsqueeze(-1)


def phase_shares(phase: Int[Tensor, "config restart"], kept: Tensor, n_phases: int = OTHER + 1) -> Tensor:
    """The share of the kept restarts of each configuration in each phase: ``[config, n_phases]``."""
    onehot = torch.nn.functional.one_hot(phase.long(), n_phases).double() * kept.unsqueeze(-1)
    return onehot.sum(-2) / kept.sum(-1, keepdim=True).clamp(min=1)
