"""Figures of section 6 (learning dynamics): every feature's dimensionality over training above the
loss curve, and WᵀW at a few moments of training."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..analysis import gram
from ..analysis.dynamics import POLYTOPE_FRACTIONS, LossDrop
from .correlated import set_colors
from .style import Figure, _cmap, _np, gram_row

DROP_COLOR = "#fde4c8"


def dynamics_figure(steps: Tensor, dimensionality: Tensor, loss_steps: Sequence[int], loss_curve: Tensor,
                    titles: Sequence[str], *, drops: Sequence[LossDrop] = (), set_size: int | None = None) -> Figure:
    """D_i of every feature over training (top) above the training loss (bottom), one column per
    instance, steps on a shared log axis. Thin lines mark the polytope values of D_i; shaded
    stretches are the loss drops (`analysis.dynamics.loss_drops`), on both panels.

    **Arguments:**
    - ``steps``: ``[snap]``; ``dimensionality``: ``[inst, snap, feat]``.
    - ``loss_steps``: ``[points]``; ``loss_curve``: ``[inst, points]``.
    - ``titles``: one per instance (e.g. from `sparsity_label`).
    - ``drops``: loss drops to shade, each naming its instance.
    - ``set_size``: colour features by set (correlated data); default one colour per feature.

    **Returns:** a Figure with 2 axes per instance.
    """
    D = _np(dimensionality)
    if D.ndim != 3 or D.shape[1] != len(steps) or len(titles) != D.shape[0]:
        raise ValueError(f"dimensionality must be [inst, snap, feat] with one title per instance and one "
                         f"snapshot per step; got {D.shape}, {len(titles)} titles, {len(steps)} steps")
    loss = _np(torch.as_tensor(loss_curve, dtype=torch.float64)).reshape(D.shape[0], -1)
    x, lx = np.maximum(_np(torch.as_tensor(steps)), 1.0), np.asarray(loss_steps, dtype=float)
    n_inst, n_feat = D.shape[0], D.shape[2]
    colors = _feature_colors(n_feat, set_size)
    fig = Figure(figsize=(3.6 * n_inst + 0.6, 5.0), layout="constrained")
    axes = fig.subplots(2, n_inst, squeeze=False, sharex=True, height_ratios=[1.6, 1.0])
    for k in range(n_inst):
        top, bottom = axes[0, k], axes[1, k]
        for name, value in POLYTOPE_FRACTIONS.items():
            top.axhline(value, color="0.85", lw=0.6, zorder=0)
            if k == n_inst - 1:
                top.text(1.01, value, name, transform=top.get_yaxis_transform(), fontsize=7, va="center", color="0.4")
        for i in range(n_feat):
            top.plot(x, D[k, :, i], color=colors[i], lw=0.9, alpha=0.85)
        bottom.plot(lx, loss[k], color="black", lw=1.0)
        for drop in (d for d in drops if d.inst == k):
            for ax in (top, bottom):
                ax.axvspan(max(drop.start, 1), drop.end, color=DROP_COLOR, lw=0, zorder=-1)
        top.set_ylim(-0.03, 1.08)
        top.set_title(titles[k], fontsize=8)
        bottom.set_xscale("log")
        bottom.set_yscale("log")
        bottom.set_xlabel("training step")
        for ax in (top, bottom):
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
            ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("feature dimensionality Dᵢ")
    if set_size is not None:
        _set_legend(axes[0, 0], n_feat, set_size, colors)
    axes[1, 0].set_ylabel("training loss")
    return fig


def _set_legend(ax, n_feat: int, set_size: int, colors: np.ndarray) -> None:
    """One legend entry per feature set: 'features 0–2' etc."""
    from matplotlib.lines import Line2D

    starts = range(0, n_feat, set_size)
    handles = [Line2D([], [], color=colors[s], lw=1.5) for s in starts]
    labels = [f"features {s}–{s + set_size - 1}" if set_size > 1 else f"feature {s}" for s in starts]
    ax.legend(handles, labels, fontsize=7, frameon=False, loc="upper left")


def _feature_colors(n_feat: int, set_size: int | None) -> np.ndarray:
    if set_size is not None:
        return set_colors(n_feat, set_size)
    return _cmap("viridis")(np.linspace(0.0, 0.9, n_feat))


def gram_trajectory_figure(W: Tensor, steps: Sequence[int], *, set_size: int | None = None,
                           title: str | None = None, vmax: float = 1.0) -> Figure:
    """WᵀW of one model at a few moments of training, left to right: the path through geometries.

    **Arguments:** ``W [snap, feat, hidden]`` (the chosen snapshots of one instance), their
    ``steps [snap]`` (the panel titles), ``set_size`` to outline the feature sets, ``title`` above all
    panels (e.g. the model's `sparsity_label`), ``vmax`` the colour limit.

    **Returns:** a Figure with one axes per snapshot and a colourbar.
    """
    W = torch.as_tensor(W)
    if W.ndim != 3 or W.shape[0] != len(steps):
        raise ValueError(f"W must be [snap, feat, hidden] with one step per snapshot; got {tuple(W.shape)}, "
                         f"{len(steps)} steps")
    fig, axes = gram_row(_np(gram(W)), [f"step {int(s):,}" for s in steps], (1.9, 2.3), set_size, vmax)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title is not None:
        fig.suptitle(title, fontsize=9)
    return fig
