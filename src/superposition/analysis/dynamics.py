"""Learning dynamics from weight snapshots: feature dimensionality over training, its jumps, and
the loss drops they coincide with (the paper's section 6).

The paper tracks every feature's dimensionality D_i (see `geometry.feature_dimensionality`)
during training and finds that it moves in jumps between the discrete values of uniform polytopes
(1, 3/4, 2/3, 1/2, 2/5, 3/8, 0) at the moments the loss drops ("energy level jumps"). The measures
here make that checkable:

- `dimensionality_trajectory`: D_i and ‖W_i‖ at every snapshot.
- `on_polytope_fraction`: how much of the time the represented features' D_i sit near a polytope
  value, optionally leaving out the moments they are jumping.
- `dimensionality_jumps` and `loss_drops`: the events themselves, for figures and counts.
- `jump_loss_coincidence`: how much of all the movement of D happens while the loss falls fastest,
  against the share of training time those moments occupy (chance).

Time is measured as the paper draws it, on a log axis of steps: the trajectory is read at
log-spaced snapshots (`log_spaced_snapshots`, 20 per decade by default), so every interval is an
equal stretch of log(step), and the loss is smoothed over a small relative window (batch noise).

Shapes: snapshots ``W [inst, snap, feat, hidden]`` with ``steps [snap]`` (as `Run.snapshots`
holds them), loss curves ``[inst, points]`` at ``loss_steps [points]`` (as `Run.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Shaped
from torch import Tensor

from .geometry import REPRESENTED_THRESHOLD, feature_dimensionality, feature_norms

POLYTOPE_FRACTIONS: dict[str, float] = {"1": 1.0, "3/4": 3 / 4, "2/3": 2 / 3, "1/2": 1 / 2, "2/5": 2 / 5,
                                        "3/8": 3 / 8, "0": 0.0}
"""D_i of a feature in each uniform polytope (and 0 for a dropped feature); the paper's figure lines."""


@dataclass(frozen=True)
class DimensionalityTrajectory:
    """Every feature's dimensionality and norm at every snapshot."""

    steps: Tensor
    """``[snap]`` int64: training steps of the snapshots."""
    dimensionality: Tensor
    """``[inst, snap, feat]``: D_i."""
    norms: Tensor
    """``[inst, snap, feat]``: ‖W_i‖."""


def dimensionality_trajectory(W: Float[Tensor, "inst snap feat hidden"],
                              steps: Shaped[Tensor, " snap"]) -> DimensionalityTrajectory:
    """D_i and ‖W_i‖ over training.

    **Arguments:** ``W [inst, snap, feat, hidden]`` (e.g. ``run.snapshots["W"]``), ``steps [snap]``.
    **Returns:** a `DimensionalityTrajectory` with ``[inst, snap, feat]`` fields.
    """
    W = torch.as_tensor(W)
    steps = torch.as_tensor(steps).long()
    if W.ndim != 4 or W.shape[1] != steps.shape[0]:
        raise ValueError(f"W must be [inst, snap, feat, hidden] with one snapshot per step; got W {tuple(W.shape)}, "
                         f"steps {tuple(steps.shape)}")
    return DimensionalityTrajectory(steps, feature_dimensionality(W), feature_norms(W))


def nearest_fraction(D: Tensor, fractions: tuple[float, ...] = tuple(POLYTOPE_FRACTIONS.values())) -> Tensor:
    """Distance from each D_i to the nearest polytope value.

    **Arguments:** ``D [...]``. **Returns:** ``[...]``, same shape.
    """
    values = torch.tensor(fractions, dtype=D.dtype, device=D.device)
    return (D.unsqueeze(-1) - values).abs().min(-1).values


def on_polytope_fraction(traj: DimensionalityTrajectory, *, tol: float = 0.05, after: int = 0,
                         moving: float | None = None, per_decade: int = 20,
                         threshold: float = REPRESENTED_THRESHOLD) -> Tensor:
    """Share of (represented feature, snapshot) points whose D_i is within `tol` of a polytope value.

    Only snapshots at step >= `after` count (skip the initial phase), and only features with
    ‖W_i‖ > `threshold` there (dropped features sit trivially at 0). With `moving`, the snapshots
    are `per_decade` log-spaced ones (equal time on a log axis) and points where the feature is
    jumping (|ΔD_i| >= `moving` to the next of them) are left out: the share then says whether D_i
    sits on polytope values whenever it is not jumping, and a slow drift through other values counts
    against it. NaN where nothing counts.

    **Returns:** ``[inst]``.
    """
    D, norms, steps = traj.dimensionality, traj.norms, traj.steps
    keep = (steps >= after).view(1, -1, 1) & (norms > threshold)
    if moving is not None:
        idx = log_spaced_snapshots(steps, after=after, per_decade=per_decade)
        D, norms = D[:, idx], norms[:, idx]
        keep = (torch.diff(D, dim=1).abs() < moving) & (norms[:, :-1] > threshold)
        D = D[:, :-1]
    near = (nearest_fraction(D) <= tol) & keep
    return near.sum((1, 2)) / keep.sum((1, 2)).to(D.dtype)


def polytope_coverage(tol: float, fractions: tuple[float, ...] = tuple(POLYTOPE_FRACTIONS.values())) -> float:
    """Length of [0, 1] within `tol` of a polytope value: the share a D_i spread evenly over [0, 1]
    would have 'on a polytope value' by chance."""
    bands = sorted((max(0.0, f - tol), min(1.0, f + tol)) for f in fractions)
    total, reach = 0.0, 0.0
    for low, high in bands:
        low = max(low, reach)
        if high > low:
            total += high - low
            reach = high
    return total


@dataclass(frozen=True)
class Jump:
    """One feature's dimensionality moving from one level to another."""

    inst: int
    feat: int
    start: int
    """Step of the last snapshot before the move."""
    end: int
    """Step of the first snapshot after it."""
    before: float
    after: float

    @property
    def step(self) -> float:
        """Where the jump happens: the geometric middle of [start, end] (steps are drawn on a log axis)."""
        return float(max(self.start, 1) * max(self.end, 1)) ** 0.5


def dimensionality_jumps(traj: DimensionalityTrajectory, *, min_size: float = 0.15, moving: float = 0.02,
                         after: int = 0, per_decade: int = 20, threshold: float = REPRESENTED_THRESHOLD) -> list[Jump]:
    """Every move of a D_i by at least `min_size`: a maximal run of consecutive log-spaced intervals
    (see `log_spaced_snapshots`) in each of which the feature's D changes by at least `moving` in
    the same direction.

    A move counts only if the feature is represented (‖W_i‖ > `threshold`) at its start or its end,
    so a dead feature's direction wandering is no jump, but a feature leaving or arriving is.

    **Returns:** jumps sorted by instance, then step.
    """
    idx = log_spaced_snapshots(traj.steps, after=after, per_decade=per_decade)
    D, norms, steps = traj.dimensionality[:, idx], traj.norms[:, idx], traj.steps[idx]
    delta = torch.diff(D, dim=1)  # [inst, interval, feat]
    direction = torch.where(delta >= moving, 1, torch.where(delta <= -moving, -1, 0))
    found = []
    for k in range(D.shape[0]):
        for i in range(D.shape[2]):
            for a, b in _runs(direction[k, :, i].tolist()):
                size = float(D[k, b, i] - D[k, a, i])
                alive = bool(norms[k, a, i] > threshold) or bool(norms[k, b, i] > threshold)
                if abs(size) >= min_size and alive:
                    found.append(Jump(k, i, int(steps[a]), int(steps[b]), float(D[k, a, i]), float(D[k, b, i])))
    return sorted(found, key=lambda j: (j.inst, j.step))


def _runs(signs: list[int]) -> list[tuple[int, int]]:
    """Maximal runs of equal non-zero signs as (first snapshot, last snapshot) index pairs."""
    runs, start = [], None
    for t, s in enumerate([*signs, 0]):
        if start is not None and s != signs[start]:
            runs.append((start, t))
            start = None
        if start is None and s != 0 and t < len(signs):
            start = t
    return runs


def log_loss_at(steps: Shaped[Tensor, " q"], loss_steps: Shaped[Tensor, " points"],
                loss_curve: Float[Tensor, "inst points"], *, smooth: float = 0.0) -> Float[Tensor, "inst q"]:
    """log(loss) at `steps`, from the logged curve: each logged value is placed at the middle of its
    interval (it is the mean training loss since the previous log point), optionally averaged over
    the logged values within a factor (1 + `smooth`) of the step (batch noise), then interpolated.

    **Arguments:** ``steps [q]``, ``loss_steps [points]``, ``loss_curve [inst, points]``.
    **Returns:** ``[inst, q]``; clamped to the first and last logged value outside their range.
    """
    loss_steps = torch.as_tensor(loss_steps, dtype=torch.float64)
    curve = torch.as_tensor(loss_curve, dtype=torch.float64).clamp_min(1e-30).log()
    mids = (loss_steps + torch.cat([loss_steps.new_zeros(1), loss_steps[:-1]])) / 2
    if smooth > 0:
        near = (mids.view(-1, 1) / mids.view(1, -1)).log().abs() <= torch.log1p(torch.tensor(smooth))
        curve = curve @ near.double().T / near.sum(1).double()
    q = torch.as_tensor(steps, dtype=torch.float64).clamp(float(mids[0]), float(mids[-1]))
    if len(mids) == 1:
        return curve[:, :1].expand(-1, len(q))
    hi = torch.searchsorted(mids, q).clamp(1, len(mids) - 1)
    lo = hi - 1
    w = ((q - mids[lo]) / (mids[hi] - mids[lo]).clamp_min(1e-12)).clamp(0, 1)
    return curve[:, lo] * (1 - w) + curve[:, hi] * w


def log_spaced_snapshots(steps: Tensor, *, after: int = 0, per_decade: int = 20) -> Tensor:
    """Indices of snapshots nearest to `per_decade` log-spaced steps per decade, from step
    max(`after`, first non-zero snapshot) to the last: intervals of equal duration on a log axis.

    **Arguments:** ``steps [snap]`` ascending. **Returns:** int64 ``[k]``, ascending and unique.
    """
    steps = torch.as_tensor(steps, dtype=torch.float64)
    first = max(float(after), float(steps[steps > 0].min()) if bool((steps > 0).any()) else 1.0)
    last = float(steps[-1])
    if last <= first:
        raise ValueError(f"no snapshots after step {after}")
    count = max(2, int(per_decade * torch.log10(torch.tensor(last / first))) + 1)
    targets = torch.logspace(torch.log10(torch.tensor(first)), torch.log10(torch.tensor(last)), count,
                             dtype=torch.float64)
    return torch.unique((steps.view(1, -1) - targets.view(-1, 1)).abs().argmin(1))


@dataclass(frozen=True)
class LossDrop:
    """A stretch of training where the loss falls fast."""

    inst: int
    start: int
    end: int
    drop: float
    """Fall of log(loss) over the stretch."""


@dataclass(frozen=True)
class IntervalActivity:
    """Per interval between chosen snapshots: how much the D_i moved and how much the loss fell."""

    start: Tensor
    """``[interval]`` int64: first step of each interval."""
    end: Tensor
    """``[interval]`` int64: last step."""
    movement: Tensor
    """``[inst, interval]``: Σ_i |D_i(end) − D_i(start)| over the features that moved by at least
    `min_move` (slow drift and noise excluded)."""
    drop: Tensor
    """``[inst, interval]``: log L(start) − log L(end) (> 0 when the loss falls), loss smoothed."""


def interval_activity(traj: DimensionalityTrajectory, loss_steps: Tensor, loss_curve: Tensor, *, after: int = 0,
                      per_decade: int = 20, smooth: float = 0.1, min_move: float = 0.0) -> IntervalActivity:
    """Movement of D and fall of the loss over intervals of equal length in log(step) (see
    `log_spaced_snapshots`), which is how the paper's figure shows training.

    **Arguments:** the trajectory, ``loss_steps [points]``, ``loss_curve [inst, points]``;
    ``smooth``: relative window of the loss average (see `log_loss_at`); ``min_move``: the smallest
    |ΔD_i| over one interval that counts as movement.
    **Returns:** an `IntervalActivity`.
    """
    idx = log_spaced_snapshots(traj.steps, after=after, per_decade=per_decade)
    if len(idx) < 2:
        raise ValueError(f"fewer than two snapshots from step {after} on")
    D = traj.dimensionality.double()[:, idx]
    steps = traj.steps[idx]
    log_loss = log_loss_at(steps, loss_steps, loss_curve, smooth=smooth)
    moves = torch.diff(D, dim=1).abs()
    movement = torch.where(moves >= min_move, moves, torch.zeros_like(moves)).sum(-1)
    return IntervalActivity(steps[:-1], steps[1:], movement, -torch.diff(log_loss, dim=1))


def loss_drops(traj: DimensionalityTrajectory, loss_steps: Tensor, loss_curve: Tensor, *, top: float = 0.2,
               after: int = 0, per_decade: int = 20) -> list[LossDrop]:
    """The fastest-falling `top` share of log-spaced intervals of each instance, merged into stretches.

    **Returns:** stretches sorted by instance, then step.
    """
    act = interval_activity(traj, loss_steps, loss_curve, after=after, per_decade=per_decade)
    found = []
    for k, fast in enumerate(_fastest(act.drop, top)):
        for a, b in _runs([int(f) for f in fast.tolist()]):
            found.append(LossDrop(k, int(act.start[a]), int(act.end[b - 1]), float(act.drop[k, a:b].sum())))
    return found


def _fastest(drop: Tensor, top: float) -> Tensor:
    """bool ``[inst, intervals]``: the ceil(top × intervals) intervals of largest drop per instance."""
    n = drop.shape[1]
    count = max(1, min(n, int(-(-top * n // 1))))
    order = drop.argsort(dim=1, descending=True)[:, :count]
    return torch.zeros_like(drop, dtype=torch.bool).scatter_(1, order, True)


@dataclass(frozen=True)
class Coincidence:
    """How strongly dimensionality changes concentrate where the loss falls fastest."""

    movement_share: Tensor
    """``[inst]``: share of all Σ_i |ΔD_i| that happens in the fastest-falling intervals."""
    time_share: Tensor
    """``[inst]``: share of the intervals those are (what movement_share would be by chance)."""

    @property
    def enrichment(self) -> Tensor:
        """``[inst]``: movement_share / time_share; 1 means no relation."""
        return self.movement_share / self.time_share


def jump_loss_coincidence(traj: DimensionalityTrajectory, loss_steps: Tensor, loss_curve: Tensor, *,
                          top: float = 0.2, after: int = 0, per_decade: int = 20,
                          min_move: float = 0.0) -> Coincidence:
    """Do the D_i move when the loss drops? Cut training from step `after` on into intervals of
    equal length in log(step), rank them by how fast the (smoothed) loss falls, and measure the share
    of all D movement (moves of at least `min_move` per interval) that happens in the fastest `top`
    share of them.

    **Arguments:** the trajectory, ``loss_steps [points]``, ``loss_curve [inst, points]``.
    **Returns:** a `Coincidence` with ``[inst]`` fields.
    """
    act = interval_activity(traj, loss_steps, loss_curve, after=after, per_decade=per_decade, min_move=min_move)
    fast = _fastest(act.drop, top)
    share = (act.movement * fast).sum(1) / act.movement.sum(1).clamp_min(1e-12)
    return Coincidence(share, fast.double().mean(1))


@dataclass(frozen=True)
class JumpMatches:
    """Each dimensionality jump and whether a loss drop comes with it (the paper: "each jump coincides
    with a drop in the loss")."""

    jumps: list[Jump]
    """The jumps (`dimensionality_jumps`), sorted by instance, then step."""
    matched: Tensor
    """``[jump]`` bool: one of the fastest-falling intervals lies within `window` intervals of the jump."""
    distance: Tensor
    """``[jump]`` int64: intervals from the jump to the nearest fastest-falling one (0 when they overlap)."""
    chance: Tensor
    """``[jump]``: the probability of a match for a jump of the same length placed anywhere in the same
    instance's training (what `matched` would be with no relation)."""

    @property
    def share(self) -> float:
        """Share of the jumps matched (NaN without jumps)."""
        return float(self.matched.double().mean()) if len(self.jumps) else float("nan")

    @property
    def p_value(self) -> float:
        """One-sided p-value of at least this many matches by chance (Poisson-binomial, exact)."""
        dist = torch.ones(1, dtype=torch.float64)
        for q in self.chance.double():
            dist = torch.cat([dist * (1 - q), dist.new_zeros(1)]) + torch.cat([dist.new_zeros(1), dist * q])
        return float(dist[int(self.matched.sum()):].sum())


def jump_loss_matches(traj: DimensionalityTrajectory, loss_steps: Tensor, loss_curve: Tensor, *, window: int = 1,
                      top: float = 0.2, after: int = 0, per_decade: int = 20, min_size: float = 0.15,
                      moving: float = 0.02) -> JumpMatches:
    """Match every jump of a D_i to its nearest loss drop, jump by jump.

    Training from step `after` on is cut into intervals of equal length in log(step); the loss drops
    are the `top` share of them where the (smoothed) loss falls fastest (see `loss_drops`). A jump
    spanning intervals [a, b) is matched when a drop interval lies in [a − `window`, b + `window`).

    **Returns:** a `JumpMatches` with one entry per jump.
    """
    act = interval_activity(traj, loss_steps, loss_curve, after=after, per_decade=per_decade)
    fast = _fastest(act.drop, top)  # [inst, interval]
    jumps = dimensionality_jumps(traj, min_size=min_size, moving=moving, after=after, per_decade=per_decade)
    starts = act.start.tolist()
    n = fast.shape[1]
    matched, distance, chance = [], [], []
    for j in jumps:
        a = starts.index(j.start)
        length = max(1, starts.index(j.end) - a if j.end in starts else n - a)
        where = fast[j.inst].nonzero().flatten()
        gaps = torch.clamp(torch.maximum(a - where, where - (a + length - 1)), min=0)
        distance.append(int(gaps.min()) if len(where) else n)
        matched.append(distance[-1] <= window)
        chance.append(_match_chance(fast[j.inst], length, window))
    return JumpMatches(jumps, torch.tensor(matched, dtype=torch.bool), torch.tensor(distance, dtype=torch.long),
                       torch.tensor(chance, dtype=torch.float64))


def _match_chance(fast: Tensor, length: int, window: int) -> float:
    """Share of the placements of a `length`-interval span within ``fast [interval]`` that have a fast
    interval within `window` of them."""
    n = fast.shape[0]
    hits = [bool(fast[max(0, s - window):min(n, s + length + window)].any()) for s in range(max(1, n - length + 1))]
    return sum(hits) / len(hits)
