"""Section 6 (superposition and learning dynamics): feature dimensionality during training.

Weights are snapshotted every few steps and every feature's dimensionality D_i is tracked next to
the training loss. The paper's claims, each checked below:

- Uniform features (n = 20, m = 10, importance 1, 1 − S = 0.3 … 0.1, which end as antipodal
  pairs): whenever they are not jumping, the D_i sit on the discrete values of uniform polytopes
  (1, 3/4, 2/3, 1/2, 2/5, 3/8, 0), and they jump at the moments the loss drops. Time is measured
  on a log axis of steps, as in the paper's figure.
- n = 6, m = 3 with two correlated sets of 3: the model passes through several geometries and
  ends as an octahedron: all six features represented, in three mutually orthogonal antipodal
  pairs, each pair made of one feature from each set (correlated features are orthogonal).

Reading D_i off snapshots needs no restarts; the octahedron run keeps the best of a few.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..analysis import represented
from ..analysis.correlation import antipodal_pairing, set_index
from ..analysis.dynamics import (
    DimensionalityTrajectory,
    JumpMatches,
    LossDrop,
    dimensionality_trajectory,
    jump_loss_matches,
    loss_drops,
    on_polytope_fraction,
    polytope_coverage,
)
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..figures.dynamics import dynamics_figure, gram_trajectory_figure
from ..figures.style import sparsity_label
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "6 Superposition and learning dynamics"
UNIFORM_PROBABILITIES = (0.3, 0.2, 0.1)
"""Sparse enough that all 20 features are stored (in 10 dimensions), as antipodal pairs in the end."""
OCTAHEDRON_PROBABILITIES = (0.1, 0.05, 0.02)
PLATEAU_TOL = 0.03
"""|D_i − polytope value| within this counts as on a polytope value."""
MOVE = 0.02
"""|ΔD_i| of at least this over 1/20 of a decade of steps counts as a move (slower is drift)."""
TOP = 0.2
"""The fastest-falling share of (log-spaced) intervals that counts as 'the loss drops'."""
WINDOW = 1
"""A jump coincides with a loss drop when a drop interval lies within this many intervals (1/20
decade each) of the jump."""
MATCH_SHARE = 0.8
"""The paper: each jump coincides with a loss drop. At least this share of the jumps must ..."""
SIGNIFICANCE = 0.01
"""... and more of them than chance would give at this level (one-sided, against placing each jump
anywhere in its run). Both fixed before measuring."""
AFTER = 30
"""Skip the first steps (the random start's transient) when checking rests and moves."""


def configs(quick: bool) -> dict[str, RunConfig]:
    return {
        "uniform": RunConfig(
            model=ModelConfig("relu_output", n_features=20, n_hidden=10),
            data=DataConfig(feature_probability=UNIFORM_PROBABILITIES),
            # Snapshots and loss on the same fine grid: jumps take a few hundred steps.
            train=TrainConfig(steps=3000 if quick else 10_000, snapshot_every=20, log_every=20),
            name="dynamics-uniform",
        ),
        "octahedron": RunConfig(
            model=ModelConfig("relu_output", n_features=6, n_hidden=3),
            data=DataConfig(feature_probability=OCTAHEDRON_PROBABILITIES, distribution="correlated", set_size=3),
            # The last rotation into the octahedron is slow: 3× the usual learning rate gets there.
            train=TrainConfig(steps=4000 if quick else 10_000, lr=3e-3, restarts=2 if quick else 4,
                              snapshot_every=20, log_every=20),
            name="dynamics-octahedron",
        ),
    }


def trajectory(run: Run) -> DimensionalityTrajectory:
    """D_i over the run's snapshots (every saved instance)."""
    if run.snapshots is None:
        raise ValueError(f"run {run.config.name!r} has no snapshots; train it with snapshot_every")
    return dimensionality_trajectory(run.snapshots["W"], run.snapshots["steps"])


def _loss(run: Run) -> tuple[Tensor, Tensor]:
    return torch.tensor(run.metrics.loss_steps), torch.tensor(run.metrics.loss_curve)


def _titles(run: Run) -> list[str]:
    return [sparsity_label(p) for p in run.metrics.feature_probability]


@dataclass(frozen=True)
class RunDynamics:
    """One run's trajectory and loss curve, and what figures and claims read off them."""

    trajectory: DimensionalityTrajectory
    loss_steps: Tensor
    loss_curve: Tensor
    """``[inst, points]``."""
    probabilities: list[float]
    titles: list[str]
    drops: list[LossDrop]
    set_size: int | None


@dataclass(frozen=True)
class Analysis:
    uniform: RunDynamics
    octahedron: RunDynamics
    matches: JumpMatches
    """The uniform run's jumps, each matched to its nearest loss drop."""
    gram_weights: Tensor
    """``[snap, feat, hidden]``: the sparsest octahedron run at a few log-spaced snapshots."""
    gram_steps: list[int]
    gram_title: str
    octahedron_weights: Tensor
    """``[inst, 6, 3]``: the octahedron run's final models."""


def _dynamics(run: Run) -> RunDynamics:
    traj = trajectory(run)
    steps, curve = _loss(run)
    return RunDynamics(traj, steps, curve, [float(p) for p in run.metrics.feature_probability], _titles(run),
                       loss_drops(traj, steps, curve, top=TOP, after=AFTER), run.config.data.set_size)


def analyse(runs: dict[str, Run]) -> Analysis:
    uniform, octa = _dynamics(runs["uniform"]), _dynamics(runs["octahedron"])
    matches = jump_loss_matches(uniform.trajectory, uniform.loss_steps, uniform.loss_curve, window=WINDOW, top=TOP,
                                after=AFTER, moving=MOVE)
    run = runs["octahedron"]
    k = _sparsest(run)
    steps = run.snapshots["steps"]
    chosen = _log_spaced(len(steps), 6)
    return Analysis(uniform, octa, matches, run.snapshots["W"][k, chosen], steps[chosen].tolist(),
                    sparsity_label(run.metrics.feature_probability[k]), run.W)


def _figures(a: Analysis) -> dict[str, object]:
    figures = {}
    for name, d in (("dynamics_uniform", a.uniform), ("dynamics_octahedron", a.octahedron)):
        figures[name] = dynamics_figure(d.trajectory.steps, d.trajectory.dimensionality, d.loss_steps, d.loss_curve,
                                        d.titles, drops=d.drops, set_size=d.set_size)
    figures["dynamics_octahedron_gram"] = gram_trajectory_figure(a.gram_weights, a.gram_steps,
                                                                 set_size=a.octahedron.set_size, title=a.gram_title)
    return figures


def _log_spaced(n: int, count: int) -> list[int]:
    """`count` snapshot indices spread evenly in log(step), always including the first and last."""
    raw = torch.logspace(0, torch.log10(torch.tensor(float(n))), count).round().long() - 1
    return sorted(set(raw.clamp(0, n - 1).tolist()))


def _sparsest(run: Run) -> int:
    probs = [float(p) for p in run.metrics.feature_probability]
    return min(range(len(probs)), key=lambda i: probs[i])


def _claims(a: Analysis) -> list[ClaimResult]:
    u = a.uniform
    return [
        plateau_claim(u.trajectory, u.probabilities, AFTER),
        coincidence_claim(a.matches, u.probabilities),
        octahedron_claim(a.octahedron_weights, a.octahedron.probabilities, a.octahedron.set_size),
    ]


def plateau_claim(traj: DimensionalityTrajectory, probabilities: Sequence[float], after: int) -> ClaimResult:
    """Whenever they are not jumping, the represented features' D_i sit on polytope values."""
    share = on_polytope_fraction(traj, tol=PLATEAU_TOL, moving=MOVE, after=after)
    held = bool((share >= 2 / 3).all())
    shown = ", ".join(f"{fmt(float(s))} (p = {p})" for s, p in zip(share, probabilities, strict=True))
    return ClaimResult(SECTION, "Between jumps, feature dimensionalities sit on the values of uniform polytopes",
                       f"from step {after} on, in 1/20-decade steps, when not jumping (|ΔD_i| < {MOVE}): "
                       f"represented features have D_i within {PLATEAU_TOL} of 1, 3/4, 2/3, 1/2, 2/5, 3/8 or 0 "
                       f"≥ 2/3 of the time at every p (values spread over [0, 1]: "
                       f"{fmt(polytope_coverage(PLATEAU_TOL))})",
                       f"share of the time on a polytope value: {shown}", held)


def coincidence_claim(matches: JumpMatches, probabilities: Sequence[float]) -> ClaimResult:
    """Each jump of a D_i coincides with a loss drop: tested jump by jump."""
    share, p_value = matches.share, matches.p_value
    held = len(matches.jumps) > 0 and share >= MATCH_SHARE and p_value < SIGNIFICANCE
    per = []
    for k, p in enumerate(probabilities):
        mine = [i for i, j in enumerate(matches.jumps) if j.inst == k]
        per.append(f"p = {p}: {int(matches.matched[mine].sum()) if mine else 0}/{len(mine)}")
    chance = float(matches.chance.mean()) if len(matches.jumps) else float("nan")
    return ClaimResult(SECTION, "Each jump of a feature's dimensionality coincides with a drop in the loss",
                       f"every jump of a D_i (≥ 0.15, from step {AFTER} on) matched to the nearest of the "
                       f"{fmt(TOP * 100)}% fastest-falling 1/20-decade intervals: ≥ {fmt(100 * MATCH_SHARE)}% of the "
                       f"jumps within {WINDOW} interval of one, more than chance at p < {SIGNIFICANCE:g}",
                       f"{int(matches.matched.sum())}/{len(matches.jumps)} jumps matched ({fmt(100 * share)}%; "
                       f"{', '.join(per)}), chance {fmt(100 * chance)}%, p = {p_value:.2g}", held)


def octahedron_check(W: Tensor, set_size: int) -> tuple[bool, str]:
    """Is ``W [6, 3]`` an octahedron whose antipodal pairs join features of different sets?"""
    on = represented(W)
    pairing = antipodal_pairing(W)
    sets = set_index(W.shape[0], set_size)
    across = bool((sets[pairing.partner] != sets).all())
    mutual = bool(pairing.mutual.all())
    worst, off = float(pairing.cos.max()), float(pairing.off_pair_max.max())
    held = bool(on.all()) and across and mutual and worst < -0.9 and off < 0.2
    return held, (f"{int(on.sum())} represented, mutual {mutual}, across sets {across}, "
                  f"partner cos ≤ {fmt(worst)}, other |cos| ≤ {fmt(off)}")


def octahedron_claim(W: Tensor, probabilities: Sequence[float], set_size: int) -> ClaimResult:
    """n = 6, m = 3, two correlated sets of 3, ``W [inst, 6, 3]`` one per p: all octahedra of
    cross-set antipodal pairs."""
    checks = [octahedron_check(w, set_size) for w in W]
    held = all(ok for ok, _ in checks)
    shown = "; ".join(f"p = {p}: {text}" for p, (_, text) in zip(probabilities, checks, strict=True))
    return ClaimResult(SECTION, "Two correlated sets of 3 in 3 dimensions end as an octahedron",
                       "at every p: all 6 represented, three mutual antipodal pairs (cos < −0.9), each pair "
                       "from different sets, |cos| to the other pairs < 0.2", shown, held)


RECIPE = Recipe("dynamics", SECTION, "feature dimensionalities jump between polytope values as the loss drops; "
                "correlated sets settle into an octahedron", configs, _figures, _claims, analyse=analyse)
