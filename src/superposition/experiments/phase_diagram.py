"""Section 4 (superposition as a phase change): phase diagrams of an extra feature.

n = m + 1 features in m hidden dimensions of the ReLU output model, for m = 1 (n = 2) and m = 2
(n = 3). Features 1..m have importance 1; the extra (last) feature has relative importance r,
log-spaced over [0.1, 10]; all features have density 1 − S = p, log-spaced over [1, 0.01]. Every
(r, p) cell is one configuration of the run, trained from ten seeds, each cell from its own
initial weights. The extra feature of every model is classified: not represented, given a
dedicated dimension, or stored in superposition (antipodal to an important feature), and
compared with the "toy model of the toy model" (`analysis.theory.phase_diagram`): the closed-form
loss of each phase's best candidate and their argmin. The paper's protocol: "To reduce noise, we
train ten models for each point and average over the results, discarding the model with the
highest loss." The figure shows that average next to the best of the ten and the theory.

Two theories: the paper's candidates (W = [1, 0], [0, 1], [1, −1] and for m = 2 the pair freeing
a dimension), and ours, which frees the norms and biases of every antipodal pair
(`theory.unequal_pair`, numerically optimised): trained models use unequal norms and beat the
paper's candidates by a few percent where the extra feature's importance differs from 1, and for
m = 2 at dense inputs they shrink the freed pair (norms 0.85 at 1 − S = 0.62). When a claim is not
held, the layouts of the best models in the offending cells are named (`pair_layouts`,
`planar_layouts`): next to the triple point some m = 2 models hold all three features without an
antipodal pair, a layout no candidate has.

Claims (per model; thresholds fixed before the runs):

- Sparsity is necessary for superposition: no cell at 1 − S = 1 superposes the extra feature,
  some cell at the sparsest density does.
- The phase change is sharp: the order parameters (‖W_e‖, and the cosine with its most
  overlapping represented feature) sit at pure-phase values (norm ≈ 0 or ≈ 1; cos ≈ 0 or ≈ −1)
  rather than ramping between neighbouring cells, and along every r row all changes of phase
  happen within two neighbouring cells (a one-cell excursion is allowed: next to the triple point
  at r = 1, 1 − S ≈ 0.6 the three phases' losses are nearly equal).
- The trained phases match the theory's: the paper's average over the nine kept seeds agrees in
  ≥ 85% of cells (the spread over single seeds and the best-of-ten agreement are reported).
- Training reaches the closed-form optimum, against the paper's candidates and against ours: the
  best seed's loss is at most 10% above the lowest candidate in ≥ 90% of cells and more than 1%
  below it nowhere (a model below an "optimum" shows a solution the candidates miss).

Losses are `analysis.expected_loss` on a midpoint grid (exact over which features are on, 0.01–0.1%
from the closed forms) instead of the run's evaluation loss: at 1 − S = 0.01 a few thousand fresh
samples hold almost no coincidences of two features, exactly where the phases differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from matplotlib.figure import Figure
from torch import Tensor

from ..analysis.phase import (
    ExtraFeaturePhase,
    by_configuration,
    classify_extra_feature,
    drop_worst,
    expected_loss,
    phase_shares,
)
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
    batch_size: int
    lr: float


SIZES = {
    # The paper's resolution and protocol: "we train ten models for each point and average over the
    # results, discarding the model with the highest loss".
    False: Size(rows=20, columns=20, restarts=10, steps=5000, batch_size=1024, lr=1e-3),
    # The same ten models per cell on an 8 × 8 grid. These models have 2–6 weights: 400 steps of
    # batch 256 at a 10× larger learning rate, decayed to 0 (cosine), settle them.
    True: Size(rows=8, columns=8, restarts=10, steps=400, batch_size=256, lr=1e-2),
}

# Sharpness: order parameters count as "between phases" inside these bands.
NORM_BAND = (0.25, 0.75)
COS_BAND = (0.25, 0.75)
MAX_INTERMEDIATE = 0.10
MAX_WIDTH = 2
MIN_AGREEMENT = 0.85
LOSS_TOLERANCE = 0.10
"""Training reaches a closed form: the best restart's loss at most this much above it ..."""
BELOW_TOLERANCE = 0.01
"""... and nowhere more than this below it (10× the quadrature error of `expected_loss` here): a
model that beats a candidate optimum by more shows the candidates miss a better solution."""
MIN_LOSS_MATCH = 0.90
QUADRATURE_NODES = {2: 64, 3: 24}
"""Midpoint nodes per feature of `expected_loss` by n: 0.01–0.1% from the closed forms."""


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
    cfg = grid_config(n_hidden, *grid(quick), restarts=size.restarts, steps=size.steps)
    schedule = "cosine" if quick else cfg.train.schedule
    return replace(cfg, train=replace(cfg.train, batch_size=size.batch_size, lr=size.lr, schedule=schedule))


def grid_config(n_hidden: int, relative_importance: Sequence[float], feature_probability: Sequence[float],
                restarts: int, steps: int) -> RunConfig:
    """n = m + 1 features in m = `n_hidden` dimensions over an (r, p) grid: configuration k is cell
    (k // P, k % P), with importance (1, …, 1, r) and every feature at density p.

    Every cell starts from its own initial weights (`TrainConfig.share_init` False, the default), so
    the cells are independent samples; every restart is kept, for the paper's average over them.
    """
    rs, ps = tuple(relative_importance), tuple(feature_probability)
    return RunConfig(
        model=ModelConfig("relu_output", n_features=n_hidden + 1, n_hidden=n_hidden),
        data=DataConfig(feature_probability=tuple(p for _ in rs for p in ps),
                        importance=tuple((1.0,) * n_hidden + (r,) for r in rs for _ in ps)),
        # Every restart is kept: the best is chosen by expected loss (see the module docstring).
        train=TrainConfig(steps=steps, batch_size=1024, restarts=restarts, keep_all_restarts=True,
                          share_init=False),
        name=f"phase-n{n_hidden + 1}-m{n_hidden}",
    )


def configs(quick: bool) -> dict[str, RunConfig]:
    return {_run_name(m): config(m, quick) for m in HIDDEN}


def _run_name(n_hidden: int) -> str:
    return f"n{n_hidden + 1}_m{n_hidden}"


# --- analysis -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseResult:
    """One model's grid: every restart classified, the best per cell, and the two theories."""

    n_hidden: int
    relative_importance: Tensor  # [R]
    feature_probability: Tensor  # [P]
    trained: ExtraFeaturePhase  # fields [R, P]: the best restart of each cell (best-of-N)
    loss: Tensor  # [R, P]: expected loss of the best restart
    theory: PhaseDiagram  # the paper's candidates
    ours: PhaseDiagram | None = None  # the paper's candidates and antipodal pairs of unequal norms
    restart_phase: Tensor | None = None  # [R, P, N] int64: the phase of every restart
    restart_loss: Tensor | None = None  # [R, P, N]: the expected loss of every restart
    kept: Tensor | None = None  # [R, P, N] bool: all but the highest-loss restart (the paper's protocol)
    restarts: int = 1
    steps: int = 0
    best_weights: Tensor | None = None  # [R, P, n, m]: W of the best restart of each cell

    @property
    def label(self) -> str:
        m = self.n_hidden
        return f"n = {m + 1} features, m = {m} dimension{'s' if m > 1 else ''}"

    def mean_agreement(self, theory: PhaseDiagram | None = None) -> Tensor:
        """``[R, P]``: the share of the kept restarts with the theory's phase (the paper's average)."""
        target = (theory or self.theory).phase
        if self.restart_phase is None or self.kept is None:
            return (self.trained.phase == target).double()
        same = (self.restart_phase == target.unsqueeze(-1)) & self.kept
        return same.sum(-1).double() / self.kept.sum(-1).clamp(min=1)

    def seed_agreement(self) -> Tensor:
        """``[N]``: for each restart index, the share of cells where that restart has the theory's phase."""
        if self.restart_phase is None:
            return (self.trained.phase == self.theory.phase).double().mean().reshape(1)
        return (self.restart_phase == self.theory.phase.unsqueeze(-1)).double().mean((0, 1))

    def mean_phase(self) -> Tensor:
        """``[R, P]``: the most common phase among the kept restarts (ties: the lower phase index)."""
        if self.restart_phase is None or self.kept is None:
            return self.trained.phase
        shares = phase_shares(self.restart_phase.flatten(0, 1), self.kept.flatten(0, 1))
        return shares.argmax(-1).reshape(self.trained.phase.shape)


def analyse_weights(W: Tensor, loss: Tensor, n_hidden: int, relative_importance: Tensor | list[float],
                    feature_probability: Tensor | list[float], restarts: int = 1, steps: int = 0,
                    unequal_pairs: bool = True) -> PhaseResult:
    """Classify every restart of every cell and set the theories beside them.

    **Arguments:** ``W [R·P, N, n, m]`` and ``loss [R·P, N]``: the N restarts of cell (i, j) at index
    i·P + j (``[R·P, n, m]`` and ``[R·P]`` for one model per cell); r ``[R]`` and p ``[P]``;
    ``unequal_pairs``: also compute our theory (`theory.phase_diagram` with unequal pairs).
    **Returns:** a `PhaseResult` with ``[R, P]`` maps (best-of-N) and ``[R, P, N]`` restarts.
    """
    r = torch.as_tensor(relative_importance, dtype=torch.float64)
    p = torch.as_tensor(feature_probability, dtype=torch.float64)
    if W.ndim == 3:
        W, loss = W.unsqueeze(1), loss.unsqueeze(1)
    shape = (len(r), len(p), W.shape[1])
    found = classify_extra_feature(W)
    best = torch.nan_to_num(loss.double(), nan=float("inf")).argmin(-1, keepdim=True)  # [R·P, 1]
    pick = lambda t: t.gather(1, best).squeeze(1).reshape(shape[:2])  # noqa: E731
    trained = ExtraFeaturePhase(*(pick(t) for t in (found.phase, found.norm, found.partner_cos, found.partner)))
    ours = phase_diagram(n_hidden, r, p, unequal_pairs=True) if unequal_pairs else None
    return PhaseResult(n_hidden, r, p, trained, pick(loss), phase_diagram(n_hidden, r, p), ours,
                       found.phase.reshape(shape), loss.reshape(shape), drop_worst(loss).reshape(shape),
                       restarts, steps, W.gather(1, best[..., None, None].expand(-1, 1, *W.shape[2:]))
                       .squeeze(1).reshape(*shape[:2], *W.shape[2:]))


def analyse(run: Run) -> PhaseResult:
    """Every restart's exact expected loss (`expected_loss` on a midpoint grid) and phase; see
    `analyse_weights`."""
    cfg = run.config
    rs = list(dict.fromkeys(row[-1] for row in cfg.data.importance))
    ps = list(dict.fromkeys(cfg.data.feature_probability))
    n = cfg.model.n_features
    losses = expected_loss(cfg.model.kind, run.params, run.probability, run.importance,
                           nodes=QUADRATURE_NODES.get(n, 16))
    index = run.metrics.config_index
    return analyse_weights(by_configuration(run.W, index), by_configuration(losses, index), cfg.model.n_hidden,
                           rs, ps, cfg.train.restarts, cfg.train.steps)


@dataclass(frozen=True)
class Analysis:
    """The recipe's analysis: one `PhaseResult` per model, in the order of `HIDDEN`."""

    results: tuple[PhaseResult, ...]


def analyse_runs(runs: dict[str, Run]) -> Analysis:
    """The recipe's analysis stage: `analyse` of each model's run."""
    return Analysis(tuple(analyse(runs[_run_name(m)]) for m in HIDDEN))


# --- figures ------------------------------------------------------------------------------------


def _spread(x: PhaseResult) -> str:
    seeds = x.seed_agreement()
    return f"single seeds {float(seeds.min()):.0%}–{float(seeds.max()):.0%} (sd {float(seeds.std(unbiased=False)):.1%})"


def _figures(analysis: Analysis) -> dict[str, Figure]:
    results = analysis.results
    sizes = {(x.restarts, x.steps) for x in results}
    (restarts, steps), = sizes if len(sizes) == 1 else {(0, 0)}
    kept = max(restarts - 1, 1)
    titles = (f"trained: best of {restarts} seeds, {steps:,} steps" if restarts else "trained: best seed per cell",
              f"trained: most common phase of {kept} kept seeds\n(number with the theory's phase)",
              "theory: argmin of the paper's closed-form candidates")
    row_titles = []
    for x in results:
        best = float((x.trained.phase == x.theory.phase).double().mean())
        row_titles += [f"agreement {best:.0%}", f"mean agreement {float(x.mean_agreement().mean()):.0%}; {_spread(x)}",
                       ""]
    phases = [PhaseRow(x.label, x.relative_importance, x.feature_probability, x.trained.phase, x.theory.phase,
                       x.mean_phase(), (x.mean_agreement() * max(x.restarts - 1, 1)).round().long())
              for x in results]
    orders = [OrderRow(x.label, x.relative_importance, x.feature_probability, x.trained.norm, x.trained.partner_cos,
                       x.trained.phase) for x in results]
    return {"phase_diagram": phase_diagram_figure(phases, titles, row_titles),
            "phase_order": order_parameter_figure(orders)}


def _interactive(analysis: Analysis) -> dict[str, object]:
    """Trained and theoretical maps with hover values (phase name per cell)."""
    from ..figures.interactive import heatmap
    from ..figures.phase import PHASE_COLORS

    names = [*PHASES, "other"]
    figs = {}
    for x in analysis.results:
        maps = (("trained", x.trained.phase), ("average of kept seeds", x.mean_phase()), ("theory", x.theory.phase))
        for which, phase in maps:
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


REPRESENTED_NORM = 0.5
"""A feature counts as represented by the best model of a cell when ‖W_i‖ is at least this."""
ANTIPODAL_COS = -0.9
"""Two represented features form an antipodal pair when their cosine is at most this."""


def _norms_and_cosines(W: Tensor) -> tuple[Tensor, Tensor]:
    """``W [..., n, m]`` → the features' norms ``[..., n]`` and pairwise cosines ``[..., n, n]``."""
    norms = W.norm(dim=-1)
    unit = W / norms.clamp(min=1e-12).unsqueeze(-1)
    return norms, unit @ unit.transpose(-1, -2)


def planar_layouts(result: PhaseResult) -> Tensor:
    """``[R, P]`` bool: cells whose best model represents all n ≥ 3 features with no antipodal pair.

    Every phase of the theory (and every candidate of ours) drops a feature or pairs two
    antipodally, so such a cell holds a layout outside all of them: a triangle when every pair is
    obtuse. Always False for n = 2 or without `PhaseResult.best_weights`.
    """
    W = result.best_weights
    if W is None or W.shape[-2] < 3:
        return torch.zeros(result.trained.phase.shape, dtype=torch.bool)
    norms, cos = _norms_and_cosines(W)
    off = ~torch.eye(W.shape[-2], dtype=torch.bool)
    antipodal = ((cos <= ANTIPODAL_COS) & off).any(-1).any(-1)
    return (norms >= REPRESENTED_NORM).all(-1) & ~antipodal


def _layout_cells(result: PhaseResult, cells: Tensor) -> str:
    """The (r, 1 − S) of `cells` and the angle range of their best models' feature pairs."""
    W = result.best_weights[cells]  # [K, n, m]
    cos = _norms_and_cosines(W)[1][:, *torch.triu_indices(W.shape[-2], W.shape[-2], 1)]
    angles = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    r, p = result.relative_importance, result.feature_probability
    where = ", ".join(f"(r = {fmt(float(r[i]))}, 1 − S = {fmt(float(p[j]))})" for i, j in cells.nonzero().tolist())
    return f"{where}; pair angles {float(angles.min()):.0f}–{float(angles.max()):.0f}°"


def _sharpness_cause(result: PhaseResult, between: Tensor, rough_rows: Tensor) -> str:
    """The cells between phases and rough rows that a layout outside the phases accounts for."""
    planar = planar_layouts(result)
    explained = between & planar
    rows = rough_rows & planar.any(-1)
    if not (bool(explained.any()) or bool(rows.any())):
        return ""
    return (f"; cause: {int(explained.sum())} of the {int(between.sum())} cells between phases and "
            f"{int(rows.sum())} of the {int(rough_rows.sum())} rough rows hold best models with all "
            f"{result.best_weights.shape[-2]} features represented and no antipodal pair, a layout outside "
            f"the three phases ({_layout_cells(result, planar & (between | rough_rows[:, None]))})")


def sharpness_claim(result: PhaseResult) -> ClaimResult:
    """Order parameters at pure-phase values; at most one change of phase along each r row."""
    t = result.trained
    represented = t.norm >= NORM_BAND[1]
    between = _between(t.norm, NORM_BAND) | (represented & _between(t.partner_cos.abs(), COS_BAND))
    share = float(between.float().mean())
    width = transition_width(t.phase)
    rough = int((width > MAX_WIDTH).sum())
    held = share <= MAX_INTERMEDIATE and rough == 0
    cause = "" if held else _sharpness_cause(result, between, width > MAX_WIDTH)
    return ClaimResult(
        SECTION, f"{result.label}: the phase change is sharp",
        f"≤ {MAX_INTERMEDIATE:.0%} of cells between phases (‖W_e‖ in {NORM_BAND}, or represented with "
        f"|cos| in {COS_BAND}); along every r row all changes of phase within {MAX_WIDTH} neighbouring cells",
        f"{int(between.sum())}/{between.numel()} cells between phases ({share:.0%}); {rough} rows change over more "
        f"cells (widest: {int(width.max())}){cause}",
        held)


PAPER_PROTOCOL = ("To reduce noise, we train ten models for each point and average over the results, "
                  "discarding the model with the highest loss.")


def agreement_claim(result: PhaseResult) -> ClaimResult:
    """The paper's protocol: per cell, the share of the kept restarts with the theory's phase, averaged."""
    mean = float(result.mean_agreement().mean())
    best = float((result.trained.phase == result.theory.phase).double().mean())
    by_phase = ", ".join(f"{name} {int((result.theory.phase == k).sum())}" for k, name in enumerate(PHASES))
    measured = (f"{mean:.1%} averaged over the {max(result.restarts - 1, 1)} kept seeds per cell; {_spread(result)}; "
                f"best of {result.restarts}: {best:.1%}")
    if result.ours is not None:
        measured += f"; against our theory (unequal pairs too): {float(result.mean_agreement(result.ours).mean()):.1%}"
    if mean < MIN_AGREEMENT:
        measured += _disagreement(result)
    return ClaimResult(
        SECTION, f"{result.label}: the trained phase diagram matches the toy model of the toy model",
        f"'{PAPER_PROTOCOL}' On that average, ≥ {MIN_AGREEMENT:.0%} of cells with the theory's phase "
        f"(the paper's candidates; theory: {by_phase})",
        measured, mean >= MIN_AGREEMENT)


def _disagreement(result: PhaseResult) -> str:
    """Where the kept seeds that miss the theory's phase went, by the theory's phase (the cause)."""
    if result.restart_phase is None or result.kept is None:
        return ""
    parts = []
    for k, name in enumerate(PHASES):
        cells = result.theory.phase == k
        phases = result.restart_phase[cells][result.kept[cells]]
        if phases.numel() == 0:
            continue
        counts = torch.bincount(phases, minlength=len(PHASES) + 1).tolist()
        went = ", ".join(f"{n} {c}" for j, (n, c) in enumerate(zip([*PHASES, "other"], counts, strict=True))
                         if j != k and c)
        parts.append(f"{name} cells: {1 - counts[k] / phases.numel():.0%} of kept seeds off ({went or 'none'})")
    return (f"; cause: single seeds settle in other minima ({'; '.join(parts)}), which the best of "
            f"{result.restarts} avoids")


def _loss_claim(result: PhaseResult, theory: PhaseDiagram, which: str,
                cause: str | Callable[[Tensor], str]) -> ClaimResult:
    lowest = theory.losses.min(0).values
    ratio = result.loss.double() / lowest
    below = ratio < 1 - BELOW_TOLERANCE
    close = ~below & (ratio <= 1 + LOSS_TOLERANCE)
    share = float(close.double().mean())
    held = share >= MIN_LOSS_MATCH and not bool(below.any())
    measured = (f"{share:.1%} of cells within the window; {int(below.sum())}/{below.numel()} cells below it "
                f"(trained / theory {fmt(float(ratio.min()))}–{fmt(float(ratio.max()))})")
    if bool(below.any()):
        measured += f"; {cause if isinstance(cause, str) else cause(below)}"
    return ClaimResult(
        SECTION, f"{result.label}: training reaches the closed-form optimum ({which})",
        f"best seed's expected loss within −{BELOW_TOLERANCE:.0%}/+{LOSS_TOLERANCE:.0%} of the lowest candidate's "
        f"in ≥ {MIN_LOSS_MATCH:.0%} of cells, and more than {BELOW_TOLERANCE:.0%} below it in none",
        measured, held)


def loss_claim(result: PhaseResult) -> ClaimResult:
    """Against the paper's candidates: trained models that beat them show a missing solution."""
    return _loss_claim(result, result.theory, "the paper's candidates",
                       lambda below: _below_candidates(result, below))


EQUAL_NORMS = 0.01
"""An antipodal pair's norms count as unequal, or as shrunk from 1, by more than this."""
PAIR_NORM = 0.1
"""Features shorter than this have no direction worth a cosine: they join no antipodal pair."""


def pair_layouts(result: PhaseResult) -> tuple[Tensor, Tensor]:
    """``[R, P]`` bool maps of two layouts the paper's candidates (norms fixed at 1) lack.

    - the extra feature antipodal to another with unequal norms (‖a‖ and ‖c‖ differ by > `EQUAL_NORMS`);
    - two important features antipodal with a norm below 1 − `EQUAL_NORMS` (the freed pair of the
      dedicated phase for m ≥ 2, shrunk, or with unequal norms).
    """
    W = result.best_weights
    none = torch.zeros(result.trained.phase.shape, dtype=torch.bool)
    if W is None:
        return none, none
    norms, cos = _norms_and_cosines(W)  # [R, P, n], [R, P, n, n]
    n = W.shape[-2]
    present = norms >= PAIR_NORM
    pairs = (cos <= ANTIPODAL_COS) & ~torch.eye(n, dtype=torch.bool) & present[..., :, None] & present[..., None, :]
    gap = (norms[..., :, None] - norms[..., None, :]).abs()
    unequal_extra = (pairs[..., -1, :] & (gap[..., -1, :] > EQUAL_NORMS)).any(-1)
    shrunk = norms < 1 - EQUAL_NORMS
    important = pairs[..., :-1, :-1] & (shrunk[..., :-1, None] | shrunk[..., None, :-1])
    return unequal_extra, important.any(-1).any(-1)


def _below_candidates(result: PhaseResult, below: Tensor) -> str:
    """What the cells below the paper's candidates hold (the cause), by layout."""
    unequal, shrunk = pair_layouts(result)
    planar = planar_layouts(result)
    counts = [(below & unequal, "pair the extra feature antipodally with unequal norms"),
              (below & shrunk & ~unequal, "free a dimension with an antipodal pair of important features "
                                          "with a norm below 1"),
              (below & planar, f"hold all {result.best_weights.shape[-2] if result.best_weights is not None else 0} "
                               "features with no antipodal pair")]
    parts = [f"{int(cells.sum())} {text}" for cells, text in counts if bool(cells.any())]
    rest = below & ~(unequal | shrunk | planar)
    if bool(rest.any()):
        parts.append(f"{int(rest.sum())} not identified")
    return (f"cause: of the {int(below.sum())} cells below it, {', '.join(parts)}; the paper's candidates fix "
            "every norm at 1 (W = [1, −1])")


def our_loss_claim(result: PhaseResult) -> ClaimResult | None:
    """Against our theory: the paper's candidates plus antipodal pairs of unequal norms."""
    if result.ours is None:
        return None
    return _loss_claim(result, result.ours, "with antipodal pairs of unequal norms",
                       lambda below: _outside_families(result, below))


def _outside_families(result: PhaseResult, below: Tensor) -> str:
    """What the cells below our theory hold: layouts without an antipodal pair, or not identified."""
    planar = below & planar_layouts(result)
    parts = []
    if bool(planar.any()):
        parts.append(f"cause: {int(planar.sum())} of the {int(below.sum())} cells below it hold all "
                     f"{result.best_weights.shape[-2]} features with no antipodal pair, a layout outside every "
                     f"candidate family ({_layout_cells(result, planar)})")
    if bool((below & ~planar).any()):
        parts.append(f"{int((below & ~planar).sum())} cells below it not identified")
    return "; ".join(parts)


def result_claims(result: PhaseResult) -> list[ClaimResult]:
    claims = [sparsity_claim(result), sharpness_claim(result), agreement_claim(result), loss_claim(result),
              our_loss_claim(result)]
    return [c for c in claims if c is not None]


def _claims(analysis: Analysis) -> list[ClaimResult]:
    return [c for x in analysis.results for c in result_claims(x)]


RECIPE = Recipe("phase-diagram", SECTION,
                "n = 2 in m = 1 and n = 3 in m = 2: when an extra feature is dropped, given a dimension or superposed",
                configs, _figures, _claims, _interactive, analyse=analyse_runs)
