"""Figures of section 5.3 (correlated and anticorrelated features): 2-d geometries coloured by
feature set, and WᵀW of larger models with the sets outlined."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..analysis import feature_norms, gram
from .runs import accepts_run
from .style import Figure, Probability, _check_runs, _cmap, _np, gram_row, hidden_plane, sparsity_label

SET_CMAP = "tab10"


def set_colors(n_features: int, set_size: int) -> np.ndarray:
    """One RGBA colour per feature, shared by the members of a set: ``[feat, 4]``."""
    sets = np.arange(n_features) // set_size
    return _cmap(SET_CMAP)(sets % 10)


def set_label(distribution: str, set_size: int) -> str:
    """'correlated sets of 2' etc., from the data config's values."""
    return f"{distribution} sets of {set_size}"


def set_geometry_figure(rows: Mapping[str, Tensor], feature_probability: Sequence[Probability], set_size: int,
                        *, limit: float | None = None) -> Figure:
    """Feature vectors W_i of 2-d models, one row per data distribution, one column per sparsity.

    Members of a set share a colour; each tip is labelled with the feature's index.

    **Arguments:**
    - ``rows``: row label (e.g. `set_label`) → ``W [inst, feat, 2]``, one instance per entry of
      `feature_probability` (the column titles).
    - ``set_size``: consecutive features per set.
    - ``limit``: axis half-width; default max(1.25, 1.15 × the longest W_i).

    **Returns:** a Figure with one axes per (row, instance).
    """
    if not rows:
        raise ValueError("set_geometry_figure needs at least one row")
    Ws = {label: torch.as_tensor(W) for label, W in rows.items()}
    for label, W in Ws.items():
        _check_runs(W, feature_probability, f"rows[{label!r}]")
        if W.shape[-1] != 2:
            raise ValueError(f"rows[{label!r}] must have a 2-d hidden space, got hidden size {W.shape[-1]}")
    if limit is None:
        limit = max(1.25, 1.15 * max(float(feature_norms(W).max()) for W in Ws.values()))
    cols = len(feature_probability)
    fig = Figure(figsize=(2.1 * cols + 0.9, 2.35 * len(Ws) + 0.5), layout="constrained")
    axes = fig.subplots(len(Ws), cols, squeeze=False)
    for r, (label, W) in enumerate(Ws.items()):
        colors = set_colors(W.shape[1], set_size)
        for c in range(cols):
            _draw_vectors(axes[r, c], _np(W[c]), colors, limit)
            if r == 0:
                axes[r, c].set_title(sparsity_label(feature_probability[c], short=True), fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=9)
    return fig


def _draw_vectors(ax, vec: np.ndarray, colors: np.ndarray, limit: float) -> None:
    """Lines from the origin to every W_i, a dot and the feature index at each tip."""
    for i, (x, y) in enumerate(vec):
        ax.plot([0, x], [0, y], color=colors[i], lw=2, solid_capstyle="round")
        ax.scatter(x, y, color=colors[i], s=22, zorder=3, edgecolors="none")
    for members in _tip_groups(vec, 0.08 * limit):
        x, y = vec[members].mean(0)
        r = float(np.hypot(x, y))
        if r > 0.05 * limit:  # label only visible vectors, just beyond the tip
            ax.text(x * (1 + 0.15 * limit / r), y * (1 + 0.15 * limit / r), ",".join(map(str, members)),
                    fontsize=6.5, ha="center", va="center", color="0.25")
    hidden_plane(ax, limit, "0.88")


def _tip_groups(vec: np.ndarray, radius: float) -> list[list[int]]:
    """Features whose tips lie within `radius` of an earlier member's tip share one label."""
    groups: list[list[int]] = []
    for i, tip in enumerate(vec):
        home = next((g for g in groups if np.hypot(*(vec[g[0]] - tip)) < radius), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return groups


@accepts_run
def set_gram_figure(W: Tensor, feature_probability: Sequence[Probability], set_size: int, *,
                    vmax: float = 1.0) -> Figure:
    """WᵀW of each instance with the feature sets outlined (block-diagonal: within a set).

    A set forming a local orthogonal basis shows as an identity block; sets sharing the space show
    as structure in the off-diagonal blocks.

    **Arguments:** ``W [inst, feat, hidden]``; one p per instance (the titles); ``set_size``;
    ``vmax`` the symmetric colour limit.

    **Returns:** a Figure with one axes per instance and a colourbar.
    """
    W = torch.as_tensor(W)
    _check_runs(W, feature_probability)
    G = _np(gram(W))
    titles = [sparsity_label(p, short=True) for p in feature_probability]
    fig, axes = gram_row(G, titles, (2.6, 3.3), set_size, vmax, label="WᵀW: Wᵢ·Wⱼ")
    ticks = np.arange(0, G.shape[-1], set_size)
    for ax in axes:
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.tick_params(labelsize=7, length=2)
        ax.set_xlabel("feature j", fontsize=8)
    axes[0].set_ylabel("feature i", fontsize=8)
    return fig
