"""Section 4 (superposition as a phase change): phase diagrams of an extra feature.

n = m + 1 features in m hidden dimensions of the ReLU output model, for m = 1 (n = 2) and m = 2
(n = 3). Features 1..m have importance 1; the extra (last) feature has relative importance r,
log-spaced over [0.1, 10]; all features have density 1 − S = p, log-spaced over [1, 0.01]. Every
(r, p) cell is one configuration of the run, trained from several seeds; the best restart by
expected loss is kept (the paper kept the best of ten). The extra feature is then classified:
not represented, given a dedicated dimension, or stored in superposition (antipodal to an
important feature), and compared with the "toy model of the toy model" (`analysis.theory.
phase_diagram`): the closed-form loss of each phase's best candidate and their argmin.

Claims (per model):

- Sparsity is necessary for superposition: no cell at 1 − S = 1 superposes the extra feature,
  some cell at the sparsest density does.
- The phase change is sharp: the order parameters (‖W_e‖, and the cosine with its most
  overlapping represented feature) sit at pure-phase values (norm ≈ 0 or ≈ 1; cos ≈ 0 or ≈ −1)
  rather than ramping between neighbouring cells, and along every r row all changes of phase
  happen within two neighbouring cells (a one-cell excursion is allowed: next to the triple point
  at r = 1, 1 − S ≈ 0.6 the three phases' losses are nearly equal).
- The trained phases match the theory's in most cells.
- Training reaches the closed-form losses: the best restart's expected loss is close to the
  lowest candidate's.

Best-of-N uses `analysis.expected_loss` (exact over which features are on) instead of the run's
evaluation loss: at 1 − S = 0.01 a few thousand fresh samples hold almost no coincidences of two
features, which is exactly where the phases differ, so that loss cannot rank the restarts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..analysis.phase import ExtraFeaturePhase, best_restarts, classify_extra_feature, expected_loss
from ..analysis.theory import PHASES, SUPERPOSITION, PhaseDiagram, phase_diagram
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..figures.phase import OrderRow, PhaseRow, order_parameter_figure, phase_diagram_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "4 Superposition as a phase change"
HIDDEN = (1, 2)
"""m of the two models; n = m + 1."""
IMPORTANCE_RANGE = (0.1, 10.0)
DENSITY_RANGE = (1.0, 0.01)


@dataclass(frozen=True)
class Size:
    rows: int  # values of r
    columns: int  # values of p
    restarts: int
    steps: int


SIZES = {
    # The paper's resolution; ten seeds per cell as in the paper.
    False: Size(rows=20, columns=20, restarts=10, steps=5000),
    # About a minute on 2 cores. Six seeds: in the n = 3 model each seed lands in the superposition
    # solution only about half the time (the antipodal pair of the two important features with
    # the extra feature alone is a strong local minimum), 2000 steps of batch 1024 converge.
    True: Size(rows=8, columns=8, restarts=6, steps=2000),
}

# Sharpness: order parameters count as "between phases" inside these bands.
NORM_BAND = (0.25, 0.75)
COS_BAND = (0.25, 0.75)
MAX_INTERMEDIATE = 0.10
MAX_WIDTH = 2
MIN_AGREEMENT = 0.85
LOSS_TOLERANCE = 0.10
MIN_LOSS_MATCH = 0.90


def _logspace(bounds: tuple[float, float], num: int) -> tuple[float, ...]:
    low, high = math.log10(bounds[0]), math.log10(bounds[1])
    return tuple(round(10 ** (low + (high - low) * i / max(num - 1, 1)), 6) for i in range(num))


def grid(quick: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(r values, p values) of the grid: r log-spaced 0.1 → 10, p log-spaced 1 → 0.01."""
    size = SIZES[quick]
    return _logspace(IMPORTANCE_RANGE, size.rows), _logspace(DENSITY_RANGE, size.columns)


def config(n_hidden: int, quick: bool) -> RunConfig:
    """One model's run at the recipe's size."""
    size = SIZES[quick]
    return grid_config(n_hidden, *grid(quick), restarts=size.restarts, steps=size.steps)


def grid_config(n_hidden: int, relative_importance: Sequence[float], feature_probability: Sequence[float],
                restarts: int, steps: int) -> RunConfig:
    """n = m + 1 features in m = `n_hidden` dimensions over an (r, p) grid: configuration k is cell
    (k // P, k % P), with importance (1, …, 1, r) and every feature at density p."""
    rs, ps = tuple(relative_importance), tuple(feature_probability)
    return RunConfig(
        model=ModelConfig("relu_output", n_features=n_hidden + 1, n_hidden=n_hidden),
        data=DataConfig(feature_probability=tuple(p for _ in rs for p in ps),
                        importance=tuple((1.0,) * n_hidden + (r,) for r in rs for _ in ps)),
        # Every restart is kept: the best is chosen by expected loss (see the module docstring).
        train=TrainConfig(steps=steps, batch_size=1024, restarts=restarts, keep_all_restarts=True),
        name=f"phase-n{n_hidden + 1}-m{n_hidden}",
    )


def configs(quick: bool) -> dict[str, RunConfig]:
    return {_run_name(m): config(m, quick) for m in HIDDEN}


def _run_name(n_hidden: int) -> str:
    return f"n{n_hidden + 1}_m{n_hidden}"


# --- analysis -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseResult:
    """One model's grid: the best trained model per cell, classified, and the theory."""

    n_hidden: int
    relative_importance: Tensor  # [R]
    feature_probability: Tensor  # [P]
    trained: ExtraFeaturePhase  # fields [R, P]
    loss: Tensor  # [R, P]: expected loss of the best restart
    theory: PhaseDiagram
    restarts: int = 1
    steps: int = 0

    @property
    def label(self) -> str:
        m = self.n_hidden
        return f"n = {m + 1} features, m = {m} dimension{'s' if m > 1 else ''}"


def analyse_weights(W: Tensor, loss: Tensor, n_hidden: int, relative_importance: Tensor | list[float],
                    feature_probability: Tensor | list[float], restarts: int = 1, steps: int = 0) -> PhaseResult:
    """Classify the best model of every cell and set the theory beside it.

    **Arguments:** ``W [R·P, n, m]`` and ``loss [R·P]``: the best model of cell (i, j) at index
    i·P + j; r ``[R]`` and p ``[P]``. **Returns:** a `PhaseResult` with ``[R, P]`` maps.
    """
    r = torch.as_tensor(relative_importance, dtype=torch.float64)
    p = torch.as_tensor(feature_probability, dtype=torch.float64)
    shape = (len(r), len(p))
    found = classify_extra_feature(W)
    trained = ExtraFeaturePhase(*(t.reshape(shape) for t in (found.phase, found.norm, found.partner_cos,
                                                             found.partner)))
    return PhaseResult(n_hidden, r, p, trained, loss.reshape(shape), phase_diagram(n_hidden, r, p), restarts, steps)


def analyse(run: Run) -> PhaseResult:
    """Pick each cell's best restart by `expected_loss` and classify it (see `analyse_weights`)."""
    cfg = run.config
    rs = list(dict.fromkeys(row[-1] for row in cfg.data.importance))
    ps = list(dict.fromkeys(cfg.data.feature_probability))
    losses = expected_loss(cfg.model.kind, run.params, run.probability, run.importance)
    best = best_restarts(losses, run.metrics.config_index)
    return analyse_weights(run.W[best], losses[best], cfg.model.n_hidden, rs, ps, cfg.train.restarts,
                           cfg.train.steps)


# --- figures ------------------------------------------------------------------------------------


def _figures(runs: dict[str, Run]) -> dict[str, Figure]:
    results = [analyse(runs[_run_name(m)]) for m in HIDDEN]
    sizes = {(x.restarts, x.steps) for x in results}
    (restarts, steps), = sizes if len(sizes) == 1 else {(0, 0)}
    trained = f"trained: best of {restarts} seeds, {steps:,} steps" if restarts else "trained: best seed per cell"
    titles = (trained, "theory: argmin of the closed-form candidate losses")
    phases = [PhaseRow(x.label, x.relative_importance, x.feature_probability, x.trained.phase, x.theory.phase)
              for x in results]
    orders = [OrderRow(x.label, x.relative_importance, x.feature_probability, x.trained.norm, x.trained.partner_cos,
                       x.trained.phase) for x in results]
    return {"phase_diagram": phase_diagram_figure(phases, titles), "phase_order": order_parameter_figure(orders)}


def _interactive(runs: dict[str, Run]) -> dict[str, object]:
    """Trained and theoretical maps with hover values (phase name per cell)."""
    from ..analysis.theory import PHASES
    from ..figures.interactive import heatmap
    from ..figures.phase import PHASE_COLORS

    names = [*PHASES, "other"]
    figs = {}
    for m in HIDDEN:
        x = analyse(runs[_run_name(m)])
        for which, phase in (("trained", x.trained.phase), ("theory", x.theory.phase)):
            figs[f"{which}: {x.label}"] = heatmap(
                phase, x.feature_probability.tolist(), x.relative_importance.tolist(),
                title=f"{which} phase of the extra feature, {x.label}", x_title="feature density 1 − S = p",
                y_title="relative importance r", value_names=names, value_colors=PHASE_COLORS,
                log_x=True, log_y=True, reverse_x=True)
    return figs


# --- claims -------------------------------------------------------------------------------------


def sparsity_claim(result: PhaseResult) -> ClaimResult:
    """No superposition in the densest column; some in the sparsest."""
    superposed = result.trained.phase == SUPERPOSITION  # [R, P]
    p = result.feature_probability
    dense, sparse = int(superposed[:, p.argmax()].sum()), int(superposed[:, p.argmin()].sum())
    columns = superposed.any(0)
    densest = f"{float(p[columns].max()):.3g}" if columns.any() else "none"
    rows = len(result.relative_importance)
    return ClaimResult(
        SECTION, f"{result.label}: sparsity is necessary for superposition",
        f"the extra feature in superposition in 0/{rows} cells at 1 − S = {float(p.max()):.3g} (dense) and in "
        f"≥ 1 cell at 1 − S = {float(p.min()):.3g}",
        f"{dense}/{rows} dense, {sparse}/{rows} sparsest; densest 1 − S with superposition: {densest}",
        dense == 0 and sparse > 0)


def _between(x: Tensor, band: tuple[float, float]) -> Tensor:
    return (x > band[0]) & (x < band[1])


def transition_width(phase: Tensor) -> Tensor:
    """How many cells each row's changes of phase are spread over: ``[R, P] → [R]`` int64.

    The number of neighbouring-cell boundaries from the row's first change of phase to its last,
    inclusive: 0 for a row without a change, 1 for one clean step, 2 for two steps in a row (e.g.
    a one-cell excursion), more for a ragged boundary.
    """
    change = phase[:, 1:] != phase[:, :-1]  # [R, P - 1]
    index = torch.arange(change.shape[1])
    first = torch.where(change, index, change.shape[1]).min(-1).values
    last = torch.where(change, index, -1).max(-1).values
    return torch.where(change.any(-1), last - first + 1, 0)


def sharpness_claim(result: PhaseResult) -> ClaimResult:
    """Order parameters at pure-phase values; at most one change of phase along each r row."""
    t = result.trained
    represented = t.norm >= NORM_BAND[1]
    between = _between(t.norm, NORM_BAND) | (represented & _between(t.partner_cos.abs(), COS_BAND))
    share = float(between.float().mean())
    width = transition_width(t.phase)
    rough = int((width > MAX_WIDTH).sum())
    return ClaimResult(
        SECTION, f"{result.label}: the phase change is sharp",
        f"≤ {MAX_INTERMEDIATE:.0%} of cells between phases (‖W_e‖ in {NORM_BAND}, or represented with "
        f"|cos| in {COS_BAND}); along every r row all changes of phase within {MAX_WIDTH} neighbouring cells",
        f"{int(between.sum())}/{between.numel()} cells between phases ({share:.0%}); {rough} rows change over more "
        f"cells (widest: {int(width.max())})",
        share <= MAX_INTERMEDIATE and rough == 0)


def agreement_claim(result: PhaseResult) -> ClaimResult:
    same = result.trained.phase == result.theory.phase
    share = float(same.float().mean())
    by_phase = ", ".join(f"{name} {int((result.theory.phase == k).sum())}" for k, name in enumerate(PHASES))
    return ClaimResult(
        SECTION, f"{result.label}: the trained phase diagram matches the toy model of the toy model",
        f"≥ {MIN_AGREEMENT:.0%} of cells with the theory's phase",
        f"{share:.1%} ({int(same.sum())}/{same.numel()} cells; theory: {by_phase})",
        share >= MIN_AGREEMENT)


def loss_claim(result: PhaseResult) -> ClaimResult:
    lowest = result.theory.losses.min(0).values
    ratio = result.loss.double() / lowest
    close = (ratio - 1).abs() <= LOSS_TOLERANCE
    share = float(close.float().mean())
    return ClaimResult(
        SECTION, f"{result.label}: training reaches the closed-form losses",
        f"best seed's expected loss within ±{LOSS_TOLERANCE:.0%} of the lowest candidate's in "
        f"≥ {MIN_LOSS_MATCH:.0%} of cells",
        f"{share:.1%} of cells; trained / theory {fmt(float(ratio.min()))}–{fmt(float(ratio.max()))}",
        share >= MIN_LOSS_MATCH)


def result_claims(result: PhaseResult) -> list[ClaimResult]:
    return [sparsity_claim(result), sharpness_claim(result), agreement_claim(result), loss_claim(result)]


def _claims(runs: dict[str, Run]) -> list[ClaimResult]:
    return [c for m in HIDDEN for c in result_claims(analyse(runs[_run_name(m)]))]


RECIPE = Recipe("phase-diagram", SECTION,
                "n = 2 in m = 1 and n = 3 in m = 2: when an extra feature is dropped, given a dimension or superposed",
                configs, _figures, _claims, _interactive)
