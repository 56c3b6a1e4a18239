# ruff: noqa: N803, N806 - W and T are the note's names
"""Figures of follow-up 1 (memorisation and double descent on finite data, Henighan et al. 2023).

Every function takes per-model values with the training-set size T of each model (several models,
one per dataset seed, may share a T: they are drawn as dots and their mean as a line).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import LogNorm
from torch import Tensor

from .style import Figure, _np, hidden_plane

GENERALISING_TP = 10.0
"""T · (1 − S) where the note's replication comments place the generalising regime."""


def _means(T: Sequence[int], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.array(sorted(set(T)), dtype=float)
    v, t = np.asarray(values, dtype=float), np.asarray(T, dtype=float)
    return sizes, np.array([v[t == s].mean() for s in sizes])


def _check(T: Sequence[int], *columns: Sequence) -> None:
    for column in columns:
        if len(column) != len(T):
            raise ValueError(f"got {len(T)} training-set sizes but {len(column)} values; give one per model")


def _size_axis(ax, p: float, label: bool = True) -> None:
    ax.set_xscale("log")
    ax.axvline(GENERALISING_TP / p, color="0.6", ls="--", lw=0.8)
    if label:
        ax.set_xlabel(f"training-set size T   (dashed: T·(1−S) = {GENERALISING_TP:g}, 1 − S = {p:g})")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, which="major", color="0.92", lw=0.6)


def _dots_and_mean(ax, T: Sequence[int], values: Sequence[float], color: str, label: str) -> None:
    ax.scatter(T, values, s=10, color=color, alpha=0.35, edgecolors="none")
    sizes, mean = _means(T, values)
    ax.plot(sizes, mean, color=color, lw=1.6, marker="o", ms=3, label=label)


def _wide(values: Sequence[float]) -> bool:
    """Positive values spanning more than 10× (a bump of many times the zero output's loss): drawn on a log scale."""
    return min(values) > 0 and max(values) > 10 * min(values)


def _log_if_wide(ax, values: Sequence[float]) -> None:
    if _wide(values):
        ax.set_yscale("log")


def test_loss_figure(T: Sequence[int], test: Sequence[float], train: Sequence[float], p: float) -> Figure:
    """Test and training loss, each relative to the zero output's loss on the same set, against T.

    **Arguments:** one T, relative test loss and relative training loss per model; ``p`` = 1 − S.
    """
    _check(T, test, train)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    _dots_and_mean(left, T, test, "tab:red", "test (mean over dataset seeds)")
    left.axhline(1.0, color="0.3", lw=0.8, ls=":")
    _log_if_wide(left, test)
    left.set_ylabel("test loss / zero output's")
    left.set_title("Double descent: test loss against training-set size", fontsize=9)
    left.legend(fontsize=7, frameon=False)
    _size_axis(left, p)
    _dots_and_mean(right, T, train, "tab:blue", "training (mean over dataset seeds)")
    right.set_ylabel("training loss / zero output's")
    right.set_title("Training loss: memorised at small T", fontsize=9)
    right.legend(fontsize=7, frameon=False)
    _size_axis(right, p)
    return fig


def _vectors(ax, V: np.ndarray, color: str) -> None:
    for x, y in V:
        ax.plot([0, x], [0, y], color=color, lw=1.2, alpha=0.8, solid_capstyle="round")
    ax.scatter(V[:, 0], V[:, 1], color=color, s=10, zorder=3, edgecolors="none")


def geometry_figure(hidden: Sequence[Tensor], hidden_T: Sequence[int], features: Sequence[Tensor],
                    feature_T: Sequence[int]) -> Figure:
    """Top row: the training examples' hidden vectors h_i = W x_i ``[T, 2]`` at small T (a T-gon);
    bottom row: the feature vectors W_i ``[feat, 2]`` at large T (a pentagon, the rest near 0)."""
    if len(hidden) != len(hidden_T) or len(features) != len(feature_T):
        raise ValueError("give one T per set of hidden vectors and per set of feature vectors")
    cols = max(len(hidden), len(features), 1)
    fig = Figure(figsize=(2.6 * cols, 5.6), layout="constrained")
    axes = fig.subplots(2, cols, squeeze=False)
    rows = ((hidden, hidden_T, "tab:purple", "T = {}: training examples h_i"),
            (features, feature_T, "tab:green", "T = {}: features W_i"))
    for r, (vectors, sizes, color, title) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c >= len(vectors):
                ax.remove()
                continue
            V = _np(vectors[c])
            if V.ndim != 2 or V.shape[1] != 2:
                raise ValueError(f"geometry_figure draws 2-d hidden spaces; got shape {V.shape}")
            _vectors(ax, V, color)
            hidden_plane(ax, max(1e-6, 1.1 * float(np.linalg.norm(V, axis=1).max())))
            ax.set_title(title.format(sizes[c]), fontsize=8)
    return fig


def dimensionality_figure(T: Sequence[int], D_X: Sequence[Tensor], D: Sequence[Tensor], p: float,
                          n_hidden: int = 2, floor: float = 1e-4) -> Figure:
    """Left: the data dimensionality D_X of every training example against T, with m/T; right: the
    feature dimensionality D_i of every feature, with a pentagon's 2/5. Values below `floor` are drawn
    at it (log axes).

    **Arguments:** per model, its T, ``D_X [T]`` and ``D [feat]``.
    """
    _check(T, D_X, D)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    for ax, values, color in ((left, D_X, "tab:purple"), (right, D, "tab:green")):
        for t, v in zip(T, values, strict=True):
            v = np.maximum(_np(v), floor)
            jitter = t * np.exp(np.random.default_rng(int(t)).uniform(-0.08, 0.08, len(v)))
            ax.scatter(jitter, v, s=4, color=color, alpha=0.25, edgecolors="none")
        ax.set_yscale("log")
        ax.set_ylim(floor * 0.8, 1.5)
        _size_axis(ax, p)
    sizes = np.array(sorted(set(T)), dtype=float)
    left.plot(sizes, n_hidden / sizes, color="0.2", lw=1.0, label="m / T")
    left.set_ylabel("data dimensionality D_X")
    left.set_title("Training examples: D_X = m/T while memorised", fontsize=9)
    left.legend(fontsize=7, frameon=False)
    right.axhline(0.4, color="0.2", lw=1.0, ls=":", label="2/5 (pentagon)")
    right.set_ylabel("feature dimensionality D_i")
    right.set_title("Features: a pentagon once generalising", fontsize=9)
    right.legend(fontsize=7, frameon=False)
    return fig


def norms_figure(T: Sequence[int], W_norm: Sequence[float], b_norm: Sequence[float], p: float) -> Figure:
    """‖W‖_F and ‖b‖ against T: both peak between memorisation and generalisation."""
    _check(T, W_norm, b_norm)
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    _dots_and_mean(ax, T, W_norm, "tab:orange", "‖W‖_F")
    _dots_and_mean(ax, T, b_norm, "tab:cyan", "‖b‖")
    ax.set_ylabel("norm")
    ax.set_title("Weight and bias norms against training-set size", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    _size_axis(ax, p)
    return fig


def plane_figure(T: Sequence[int], m: Sequence[int], test: Sequence[float], p: float) -> Figure:
    """The (T, m) plane: relative test loss against T for every hidden size m (left, one line per m)
    and as a map over (T, m) (right; the mean where several models share a cell)."""
    _check(T, m, test)
    widths, sizes = sorted(set(m)), sorted(set(T))
    grid = np.full((len(widths), len(sizes)), np.nan)
    t, w, v = (np.asarray(a, dtype=float) for a in (T, m, test))
    for r, width in enumerate(widths):
        for c, size in enumerate(sizes):
            cell = v[(w == width) & (t == size)]
            grid[r, c] = cell.mean() if cell.size else np.nan
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    colors = [f"C{k % 10}" for k in range(len(widths))]
    for r, width in enumerate(widths):
        left.plot(sizes, grid[r], marker="o", ms=3, lw=1.4, color=colors[r], label=f"m = {width}")
    left.axhline(1.0, color="0.3", lw=0.8, ls=":")
    _log_if_wide(left, test)
    left.set_ylabel("test loss / zero output's")
    left.set_title("Double descent along T for each hidden size m", fontsize=9)
    left.legend(fontsize=7, frameon=False)
    _size_axis(left, p)
    norm = LogNorm() if _wide(test) else None
    image = right.imshow(grid, aspect="auto", origin="lower", cmap="magma_r", interpolation="nearest", norm=norm)
    right.set_xticks(range(len(sizes)), [str(s) for s in sizes], fontsize=7)
    right.set_yticks(range(len(widths)), [str(x) for x in widths])
    right.set_xlabel("training-set size T")
    right.set_ylabel("hidden dimensions m")
    right.set_title("The (T, m) plane: test loss / zero output's", fontsize=9)
    fig.colorbar(image, ax=right, shrink=0.85)
    return fig
