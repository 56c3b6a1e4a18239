# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Figures of section 5.2 (non-uniform superposition): one feature made denser or sparser.

- `family_geometry_figure`: the canonicalised 2-d solution of each family (pentagon, digon) at a
  few relative densities of the varied feature, which is drawn highlighted.
- `family_loss_figure`: each family's loss against the varied feature's relative density, and the
  difference of the two, where the curves cross (the first-order phase change).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator
from torch import Tensor

from .style import Figure, _np, hidden_plane, sparsity_label

VARIED_COLOR, OTHER_COLOR = "tab:red", "0.3"
FAMILY_COLORS = {"pentagon": "tab:blue", "digon": "tab:orange"}
"""Colour of each solution family; any other family is grey."""
RATIO_AXIS = "relative density of the varied feature v, $p_v\\,/\\,p$"


def ratio_label(x: float) -> str:
    """'1/4' for a density ratio of 0.25, '2' for 2, else three significant figures."""
    if x < 1 and abs(1 / x - round(1 / x)) < 1e-3:
        return f"1/{round(1 / x)}"
    return f"{x:.3g}"


def family_geometry_figure(
    W: Tensor,
    ratio: Tensor | Sequence[float],
    base_probability: float,
    families: Sequence[str],
    best: Sequence[str],
    *,
    varied: int = 0,
) -> Figure:
    """Each family's solution (rows) at several relative densities (columns), in canonical orientation.

    Each feature is a line from the origin to W_i with a dot at its tip; the varied feature is red and
    drawn on top; a grey circle marks norm 1. The panel of the family with the lowest loss at that
    density (the best-of-N solution) has a heavy frame. Missing solutions (NaN) get a note instead.

    **Arguments:**
    - ``W``: ``[family, x, feat, 2]``, already canonicalised; NaN where the family was not found.
    - ``ratio``: ``[x]``, p_v / p of each column.
    - ``base_probability``: p of the other features (the figure title).
    - ``families``: the row names, one per family.
    - ``best``: ``[x]``, the name of the best-of-N solution's family at each density (a name not in
      `families` frames no panel).
    - ``varied``: the varied feature's index.

    **Returns:** a Figure with one axes per (family, density).
    """
    W = torch.as_tensor(W)
    ratio = [float(x) for x in ratio]
    if W.ndim != 4 or W.shape[-1] != 2 or W.shape[:2] != (len(families), len(ratio)) or len(best) != len(ratio):
        raise ValueError(f"W must have shape [family = {len(families)}, x = {len(ratio)}, feat, 2] and best one "
                         f"name per x, got W {tuple(W.shape)} and {len(best)} names")
    limit = max(1.25, 1.1 * float(np.nanmax(np.linalg.norm(_np(W), axis=-1), initial=0.0)))
    rows, cols = W.shape[:2]
    fig = Figure(figsize=(1.75 * cols + 0.9, 1.95 * rows + 0.7), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            _draw_solution(ax, _np(W[r, c]), varied, limit)
            if best[c] == families[r]:
                for spine in ax.spines.values():
                    spine.set_linewidth(2.2)
            if r == 0:
                ax.set_title(f"$p_v\\,/\\,p$ = {ratio_label(ratio[c])}", fontsize=9)
            if c == 0:
                ax.set_ylabel(families[r], fontsize=10)
    handles = [Line2D([], [], color=VARIED_COLOR, lw=2.2, marker="o", ms=4, label=f"varied feature v = {varied}"),
               Line2D([], [], color=OTHER_COLOR, lw=1.5, marker="o", ms=3, label="the other features"),
               Line2D([], [], color="black", lw=2.2, label="heavy frame: lowest loss at this density")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    fig.suptitle(f"Others at {sparsity_label(base_probability)}; rotated and flipped so that v (or the next "
                 "feature) lies on +x and the next one has y > 0", fontsize=9)
    return fig


def _draw_solution(ax, vec: np.ndarray, varied: int, limit: float) -> None:
    """One model's features as lines with dots at their tips; a note when ``vec`` is NaN."""
    hidden_plane(ax, limit, axes_color=None)
    if np.isnan(vec).any():
        ax.text(0.5, 0.5, "not found\nby training", transform=ax.transAxes, ha="center", va="center",
                fontsize=8, color="0.45")
        return
    circle = np.linspace(0, 2 * math.pi, 181)
    ax.plot(np.cos(circle), np.sin(circle), color="0.88", lw=0.7, zorder=0)
    order = [i for i in range(len(vec)) if i != varied] + [varied]  # the varied feature on top
    for i in order:
        color, width = (VARIED_COLOR, 2.4) if i == varied else (OTHER_COLOR, 1.6)
        ax.plot([0, vec[i, 0]], [0, vec[i, 1]], color=color, lw=width, solid_capstyle="round")
        ax.scatter(vec[i, 0], vec[i, 1], color=color, s=22 if i == varied else 14, zorder=3, edgecolors="none")


def family_loss_figure(
    ratio: Tensor | Sequence[float],
    best: Mapping[str, Tensor],
    base_probability: float,
    *,
    restart_loss: Tensor | None = None,
    restart_family: Sequence[Sequence[str]] | None = None,
    continuation: Mapping[str, Tensor] | None = None,
    crossing: float | None = None,
) -> Figure:
    """Loss of each solution family against the varied feature's relative density (log x).

    Top: every restart as a faint dot coloured by its family, the best member of each family as a
    line with markers, and optional continuations (dashed) of a family's loss where it was not
    trained. Bottom: the difference of the first two families' best losses, which changes sign
    where their curves cross (a dotted vertical line at `crossing`).

    **Arguments:**
    - ``ratio``: ``[x]``, p_v / p, ascending.
    - ``best``: family name → ``[x]`` lowest loss in that family (NaN where not found); at least two.
    - ``base_probability``: p of the other features (the title).
    - ``restart_loss``, ``restart_family``: ``[x, restart]`` losses and family names of every restart.
    - ``continuation``: family name → ``[x]`` loss of that family where training could not hold it.
    - ``crossing``: the relative density where the first two families' losses cross.

    **Returns:** a Figure with two axes (losses, difference).
    """
    x = np.asarray([float(v) for v in ratio])
    if len(best) < 2:
        raise ValueError("family_loss_figure needs the best losses of at least two families")
    curves = {name: _np(torch.as_tensor(v)) for name, v in best.items()}
    if any(c.shape != x.shape for c in curves.values()):
        raise ValueError(f"every family's losses must have one value per density ({len(x)})")
    fig = Figure(figsize=(6.4, 5.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1.6, 1.0])
    if restart_loss is not None and restart_family is not None:
        _draw_restarts(top, x, _np(restart_loss), restart_family)
    for name, y in curves.items():
        top.plot(x, y, color=_family_color(name), lw=1.6, marker="o", ms=4, label=f"{name} (best restart)")
    for name, y in (continuation or {}).items():
        top.plot(x, _np(torch.as_tensor(y)), color=_family_color(name), lw=1.1, ls="--",
                 label=f"{name}, continued exactly (not a minimum where not trained)")
    (first, a), (second, b) = list(curves.items())[:2]
    bottom.axhline(0, color="0.6", lw=0.8)
    bottom.plot(x, a - b, color="black", lw=1.4, marker="o", ms=3.5)
    for ax in (top, bottom):
        if crossing is not None:
            ax.axvline(crossing, color="0.35", lw=0.9, ls=":")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.grid(True, color="0.93", lw=0.6)
    if crossing is not None:
        bottom.text(crossing, 0.95, f"  cross at {ratio_label(crossing)} ({1 / crossing:.2g}× sparser)",
                    transform=bottom.get_xaxis_transform(), fontsize=8, va="top")
    top.set_yscale("log")
    top.set_ylabel("loss")
    bottom.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    top.set_title(f"Others at {sparsity_label(base_probability)}", fontsize=9)
    top.legend(fontsize=7, frameon=False, loc="upper left")
    bottom.set_ylabel(f"{first} − {second}\nloss")
    bottom.set_xlabel(RATIO_AXIS)
    _ratio_axis(bottom, x)
    return fig


def _draw_restarts(ax, x: np.ndarray, loss: np.ndarray, family: Sequence[Sequence[str]]) -> None:
    names = np.asarray(family)
    xs = np.broadcast_to(x[:, None], loss.shape)
    for name in dict.fromkeys(names.ravel()):
        mask = names == name
        ax.scatter(xs[mask], loss[mask], s=9, color=_family_color(name), alpha=0.3, lw=0, zorder=1,
                   label=f"{name} (each restart)")


def _family_color(name: str) -> str:
    return FAMILY_COLORS.get(name, "0.6")


def _ratio_axis(ax, x: np.ndarray) -> None:
    """Log x axis with ticks at the powers of 2 inside the data, labelled 1/8 … 8."""
    ax.set_xscale("log")
    low, high = math.floor(math.log2(x.min())), math.ceil(math.log2(x.max()))
    ticks = [2.0**k for k in range(low, high + 1) if x.min() * 0.999 <= 2.0**k <= x.max() * 1.001]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([ratio_label(t) for t in ticks])
