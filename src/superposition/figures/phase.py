"""Figures of section 4 (superposition as a phase change): phase diagrams of the extra feature.

x is the feature density 1 − S = p on a log axis running from dense (1, left) to sparse (right),
as in the paper; y is the extra feature's relative importance r on a log axis. Every cell is one
configuration of the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter
from torch import Tensor

from ..analysis.phase import OTHER
from ..analysis.theory import NOT_REPRESENTED, PHASES
from .style import GRAM_CMAP, Figure, _cmap, _np

PHASE_NAMES: tuple[str, ...] = (*PHASES, "other")
"""Legend names, indexed by phase (`theory.PHASES`, then `analysis.phase.OTHER`)."""
PHASE_COLORS: tuple[str, ...] = ("#d9d9d9", "#3a78b5", "#e8743b", "#222222")
"""Not represented: light grey; dedicated: blue; superposition: orange; other: black."""
DENSITY_LABEL = "feature density 1 − S = p  (log; sparser →)"
IMPORTANCE_LABEL = "relative importance r of the extra feature (log)"


class PhaseRow(NamedTuple):
    """One model's trained and theoretical phase maps over the same (r, p) grid."""

    label: str
    """Names the model, e.g. 'n = 2 features, m = 1 dimension'."""
    relative_importance: Tensor
    """r, ``[R]``: the rows of the maps."""
    feature_probability: Tensor
    """p, ``[P]``: the columns."""
    trained: Tensor
    """``[R, P]`` int: phase index of the best trained model of each cell."""
    theory: Tensor
    """``[R, P]`` int: the closed-form argmin phase."""
    average: Tensor | None = None
    """``[R, P]`` int, optional: the most common phase of the kept restarts (the paper's average over
    its models); drawn as a middle column."""
    agreeing: Tensor | None = None
    """``[R, P]`` int, optional: how many kept restarts have the theory's phase (written in the cells
    of the middle column)."""


class OrderRow(NamedTuple):
    """One model's order parameters over the (r, p) grid (`analysis.phase.ExtraFeaturePhase`)."""

    label: str
    relative_importance: Tensor  # [R]
    feature_probability: Tensor  # [P]
    norm: Tensor  # [R, P]: ‖W_e‖
    partner_cos: Tensor  # [R, P]: cos with the most overlapping represented feature
    phase: Tensor  # [R, P]: the phase index; cos is left blank where the extra feature is not represented


def _log_edges(values: Tensor) -> np.ndarray:
    """Cell edges of a log-spaced grid: geometric midpoints, half a step beyond each end."""
    v = np.log(_np(values).reshape(-1))
    if len(v) == 1:
        return np.exp(np.array([v[0] - 0.5, v[0] + 0.5]))
    mid = (v[1:] + v[:-1]) / 2
    return np.exp(np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]]))


def _check_row(row: PhaseRow | OrderRow, maps: Sequence[Tensor]) -> None:
    shape = (len(row.relative_importance), len(row.feature_probability))
    for m in maps:
        if tuple(m.shape) != shape:
            raise ValueError(f"{row.label}: maps must have shape [R, P] = {shape}, got {tuple(m.shape)}")


def _grid_axes(ax, row: PhaseRow | OrderRow, first_col: bool, last_row: bool) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*sorted(_log_edges(row.feature_probability)[[0, -1]], reverse=True))  # dense on the left
    ax.set_ylim(*sorted(_log_edges(row.relative_importance)[[0, -1]]))
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.yaxis.set_major_formatter(plain)
    if last_row:
        ax.set_xlabel(DENSITY_LABEL)
    if first_col:
        ax.set_ylabel(IMPORTANCE_LABEL)


def _mesh(ax, row: PhaseRow | OrderRow, values: Tensor, **kw):
    return ax.pcolormesh(_log_edges(row.feature_probability), _log_edges(row.relative_importance), _np(values),
                         **kw)


def phase_diagram_figure(rows: Sequence[PhaseRow], titles: Sequence[str] = ("trained", "theory"),
                         row_titles: Sequence[str] | None = None) -> Figure:
    """The paper's phase diagrams: trained (left) and theoretical (right) maps side by side.

    One row of panels per model, sharing axes. Cells are coloured by phase (`PHASE_COLORS`);
    trained cells whose phase differs from the theory's are marked with a black ×. Rows with an
    `average` map get a middle panel with it, each cell labelled with its `agreeing` count.

    **Arguments:**
    - ``rows``: one `PhaseRow` per model (all with or all without `average`).
    - ``titles``: the column titles (what was trained; [the average;] what the theory is).
    - ``row_titles``: optional extra title lines per row and column, e.g. measured agreement.

    **Returns:** a Figure with ``2 × len(rows)`` (or 3 ×) axes and one shared legend.
    """
    if not rows:
        raise ValueError("phase_diagram_figure needs at least one row")
    middle = rows[0].average is not None
    for row in rows:
        if (row.average is not None) != middle:
            raise ValueError("phase_diagram_figure: rows must all have an average map or none")
        _check_row(row, (row.trained, row.theory, *((row.average,) if middle else ())))
    columns = 3 if middle else 2
    if len(titles) != columns:
        raise ValueError(f"phase_diagram_figure needs {columns} titles, got {len(titles)}")
    cmap = ListedColormap(PHASE_COLORS)
    norm = BoundaryNorm(np.arange(len(PHASE_COLORS) + 1) - 0.5, len(PHASE_COLORS))
    fig = Figure(figsize=(5.25 * columns, 3.9 * len(rows) + 0.8), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False, sharex=True, sharey=True)
    shown: set[int] = set()
    for i, row in enumerate(rows):
        maps = (row.trained, row.average, row.theory) if middle else (row.trained, row.theory)
        for j, (values, title) in enumerate(zip(maps, titles, strict=True)):
            ax = axes[i, j]
            _mesh(ax, row, values, cmap=cmap, norm=norm, edgecolors="white", linewidth=0.3)
            _grid_axes(ax, row, j == 0, i == len(rows) - 1)
            extra = f"\n{row_titles[i * columns + j]}" if row_titles else ""
            ax.set_title(f"{title}\n{row.label}{extra}", fontsize=10)
            shown.update(int(v) for v in _np(values).reshape(-1))
        _mark_mismatches(axes[i, 0], row)
        if middle and row.agreeing is not None:
            _write_counts(axes[i, 1], row)
    handles = [Patch(facecolor=PHASE_COLORS[k], edgecolor="0.5", label=PHASE_NAMES[k])
               for k in range(len(PHASE_NAMES)) if k in shown or k < OTHER]
    handles.append(Line2D([], [], color="black", marker="x", linestyle="none", markersize=7, label="trained ≠ theory"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False,
               title="phase of the extra feature")
    return fig


def _write_counts(ax, row: PhaseRow) -> None:
    counts = _np(row.agreeing).astype(int)
    p, r = _np(row.feature_probability), _np(row.relative_importance)
    size = max(4.0, 9.0 - 0.25 * max(counts.shape))
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(p[j], r[i], str(counts[i, j]), ha="center", va="center", fontsize=size, color="black")


def _mark_mismatches(ax, row: PhaseRow) -> None:
    differ = _np(row.trained) != _np(row.theory)
    if not differ.any():
        return
    r_idx, p_idx = np.nonzero(differ)
    ax.scatter(_np(row.feature_probability)[p_idx], _np(row.relative_importance)[r_idx], marker="x", s=30,
               color="black", linewidths=1.4, zorder=3)


def order_parameter_figure(rows: Sequence[OrderRow]) -> Figure:
    """The two order parameters behind the phases, per model: ‖W_e‖ and cos with its partner.

    A sharp phase change shows as cells near 0 or 1 in norm and near −1 or 0 in cosine, with no
    gradual ramp between neighbouring cells. The cosine of a feature that is not represented
    means nothing and is left blank (light grey).

    **Arguments:** ``rows``: one `OrderRow` per model. **Returns:** a Figure with ``2 × len(rows)``
    axes and a colourbar per column.
    """
    if not rows:
        raise ValueError("order_parameter_figure needs at least one row")
    for row in rows:
        _check_row(row, (row.norm, row.partner_cos, row.phase))
    fig = Figure(figsize=(10.5, 3.7 * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False, sharex=True, sharey=True)
    norm_cmap = _cmap("viridis")
    cos_cmap = _cmap(GRAM_CMAP).with_extremes(bad=PHASE_COLORS[NOT_REPRESENTED])
    for i, row in enumerate(rows):
        cos = np.ma.masked_where(_np(row.phase) == NOT_REPRESENTED, _np(row.partner_cos))
        panels = ((row.norm, "‖W_e‖: the extra feature's norm", norm_cmap, 0.0, 1.2),
                  (cos, "cos(W_e, W_j), j: its most overlapping represented\nfeature (grey: W_e not represented)",
                   cos_cmap, -1.0, 1.0))
        for j, (values, title, cmap, low, high) in enumerate(panels):
            ax = axes[i, j]
            mesh = ax.pcolormesh(_log_edges(row.feature_probability), _log_edges(row.relative_importance),
                                 _np(values) if isinstance(values, Tensor) else values, cmap=cmap, vmin=low, vmax=high)
            _grid_axes(ax, row, j == 0, i == len(rows) - 1)
            ax.set_title(f"{row.label}\n{title}", fontsize=10)
            if i == 0:
                fig.colorbar(mesh, ax=list(axes[:, j]), shrink=0.8)
    return fig
