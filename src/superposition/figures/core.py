# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Figures of the paper's introduction and section 2 (demonstrating superposition), and the
training-curve and dimensionality plots every experiment reuses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.colors import Normalize
from torch import Tensor

from ..analysis import dimensions_per_feature, feature_dimensionality, feature_norms, gram, interference
from .runs import accepts_run
from .style import (
    GRAM_CMAP,
    IMPORTANCE_CMAP,
    Figure,
    Probability,
    _check_runs,
    _cmap,
    _np,
    _scalar_mappable,
    _superposition_cmap,
    _uniform_p,
    hidden_plane,
    sparsity_label,
)

# --- figures ----------------------------------------------------------------------------------


@accepts_run
def intro_figure(
    W: Tensor,
    feature_probability: Sequence[Probability],
    importance: Tensor,
    *,
    limit: float | None = None,
    ncols: int = 5,
) -> Figure:
    """The paper's opening figure: each instance's features as vectors W_i in a 2-d hidden space.

    One square panel per instance: a line from the origin to W_i with a dot at its tip, coloured by
    the feature's importance, titled by its sparsity.

    **Arguments:**
    - ``W``: ``[inst, feat, 2]``.
    - ``feature_probability``: one p per instance (the panel titles).
    - ``importance``: ``[feat]`` (shared) or ``[inst, feat]``.
    - ``limit``: axis half-width; default max(1.2, 1.1 × the longest W_i).
    - ``ncols``: panels per row; more instances wrap onto further rows.

    **Returns:** a Figure with one axes per instance plus a colourbar axes.
    """
    W = torch.as_tensor(W)
    _check_runs(W, feature_probability)
    if W.shape[-1] != 2:
        raise ValueError(f"intro_figure draws a 2-d hidden space; W has hidden size {W.shape[-1]}")
    imp = _np(torch.as_tensor(importance).expand(W.shape[:2]))
    norm = Normalize(vmin=min(imp.min(), 0.0) if imp.min() == imp.max() else imp.min(), vmax=imp.max())
    if limit is None:
        limit = max(1.2, 1.1 * float(feature_norms(W).max()))
    n = W.shape[0]
    cols = max(1, min(n, ncols))
    rows = -(-n // cols)
    fig = Figure(figsize=(2.6 * cols + 0.8, 2.9 * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in grid[n:]:
        ax.remove()
    axes = grid[:n]
    cmap = fig.colorbar(_scalar_mappable(norm, IMPORTANCE_CMAP), ax=list(axes), shrink=0.8, label="importance").cmap
    for k, ax in enumerate(axes):
        vec = _np(W[k])
        order = np.argsort(imp[k])  # most important drawn last, on top
        for i in order:
            color = cmap(norm(imp[k, i]))
            ax.plot([0, vec[i, 0]], [0, vec[i, 1]], color=color, lw=2, solid_capstyle="round")
            ax.scatter(vec[i, 0], vec[i, 1], color=color, s=28, zorder=3, edgecolors="none")
        hidden_plane(ax, limit)
        ax.set_title(sparsity_label(feature_probability[k]), fontsize=9)
    return fig


@accepts_run
def basic_figure(
    models: Mapping[str, tuple[Tensor, Tensor]], feature_probability: Sequence[Probability], *, vmax: float = 1.0
) -> Figure:
    """The paper's "basic results" figure: WᵀW, b and ‖W_i‖ for each model and sparsity.

    Rows are models (e.g. "linear", "relu_output"), columns are instances (sparsities). Each cell
    shows the WᵀW heatmap with b as a thin column to its right, and below it a bar per feature of
    ‖W_i‖, coloured by Σ_{j≠i}(Ŵ_i·W_j)² (black: no superposition, bright: in superposition).

    **Arguments:**
    - ``models``: model label → (``W [inst, feat, hidden]``, ``b [inst, feat]``); every model has
      the same instances (one per entry of `feature_probability`).
    - ``feature_probability``: one p per instance (the column titles).
    - ``vmax``: the symmetric colour limit of WᵀW and b.

    **Returns:** a Figure with 2 axes per (model, instance) (WᵀW with b, then the norms), plus 2
    colourbars.
    """
    if not models:
        raise ValueError("basic_figure needs at least one model")
    n_cols = len(feature_probability)
    fig = Figure(figsize=(1.45 * n_cols + 1.3, 3.1 * len(models) + 0.3), layout="constrained")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.03, hspace=0.03)
    axes = fig.subplots(2 * len(models), n_cols, squeeze=False, height_ratios=[1.0, 0.85] * len(models))
    gram_norm, sup_norm = Normalize(-vmax, vmax), Normalize(0.0, 1.0)
    gram_cmap = _cmap(GRAM_CMAP).with_extremes(bad="white")
    for r, (label, (W, b)) in enumerate(models.items()):
        W, b = torch.as_tensor(W), torch.as_tensor(b)
        _check_runs(W, feature_probability, f"models[{label!r}] W")
        G, norms, sup, bias = _np(gram(W)), _np(feature_norms(W)), _np(interference(W)), _np(b)
        n = G.shape[-1]
        for c in range(n_cols):
            ax_g, ax_n = axes[2 * r, c], axes[2 * r + 1, c]
            # WᵀW, a blank (NaN) column, then b: one image keeps the three aligned row by row.
            image = np.concatenate([G[c], np.full((n, 1), np.nan), bias[c][:, None]], axis=1)
            ax_g.imshow(image, cmap=gram_cmap, norm=gram_norm, interpolation="nearest")
            ax_g.set_xticks([n + 1], ["b"], fontsize=7)
            ax_g.set_yticks([])
            ax_g.tick_params(length=0, pad=1)
            for spine in ax_g.spines.values():
                spine.set_visible(False)
            _draw_norms(ax_n, norms[c], sup[c], sup_norm)
            if r == 0:
                ax_g.set_title(sparsity_label(feature_probability[c], short=True), fontsize=8)
            if c == 0:
                ax_g.set_ylabel(f"{label}\nWᵀW", fontsize=9)
                ax_n.set_ylabel("‖Wᵢ‖ by feature", fontsize=8)
            else:
                ax_n.set_yticklabels([])
    # One colourbar beside the first heatmap row, one beside the last bar row: they never overlap.
    fig.colorbar(_scalar_mappable(gram_norm, gram_cmap), ax=list(axes[0]), shrink=0.9, aspect=15, label="WᵀW and b")
    fig.colorbar(
        _scalar_mappable(sup_norm, _superposition_cmap()),
        ax=list(axes[-1]),
        shrink=0.9,
        aspect=15,
        label="superposition\nΣⱼ≠ᵢ (Ŵᵢ·Wⱼ)²",
    )
    return fig


def _draw_norms(ax, norms: np.ndarray, sup: np.ndarray, sup_norm: Normalize) -> None:
    """Horizontal bars of ‖W_i‖, feature 0 at the top (the heatmap's row order)."""
    cmap = _superposition_cmap()
    ax.barh(np.arange(len(norms)), norms, height=0.8, color=cmap(sup_norm(np.clip(sup, 0, 1))))
    ax.set_ylim(len(norms) - 0.5, -0.5)
    ax.set_xlim(0, max(1.1, 1.05 * float(norms.max(initial=0))))
    ax.set_xticks([0, 1])
    ax.tick_params(labelsize=7, length=2)
    ax.set_yticks([0, len(norms) - 1])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


@accepts_run
def loss_curve_figure(
    steps: Sequence[int],
    curves: Sequence[Sequence[float]] | Tensor,
    labels: Sequence[str] | None = None,
    *,
    reference: Sequence[float] | None = None,
    ylabel: str = "loss",
) -> Figure:
    """Training loss against step on a log scale, one line per instance.

    **Arguments:**
    - ``steps``: ``[points]`` (e.g. `run.metrics.loss_steps`).
    - ``curves``: ``[inst, points]`` (e.g. `run.metrics.loss_curve`).
    - ``labels``: one per instance (e.g. from `sparsity_label`); a legend when given.
    - ``reference``: optional ``[inst]`` target losses (e.g. `linear_optimal_loss`), drawn dashed
      in the instance's colour.

    **Returns:** a Figure with one axes.
    """
    y = np.asarray(torch.as_tensor(curves, dtype=torch.float64), dtype=float).reshape(-1, len(steps))
    fig = Figure(figsize=(5.0 if labels is None else 6.8, 3.4), layout="constrained")
    ax = fig.add_subplot()
    colors = _cmap("viridis")(np.linspace(0.0, 0.9, max(len(y), 1)))
    for k, curve in enumerate(y):
        ax.plot(steps, curve, color=colors[k], lw=1.3, label=None if labels is None else labels[k])
        if reference is not None:
            ax.axhline(reference[k], color=colors[k], lw=0.9, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", color="0.92", lw=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if labels is not None:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


POLYTOPE_DIMENSIONALITIES = {"1": 1.0, "3/4": 3 / 4, "2/3": 2 / 3, "1/2": 1 / 2, "2/5": 2 / 5, "3/8": 3 / 8}
"""Feature dimensionality of a feature in each uniform polytope (paper, 'Feature dimensionality')."""


@accepts_run
def dimensionality_figure(W: Tensor, feature_probability: Sequence[Probability]) -> Figure:
    """D* and every feature's D_i against 1/(1 − S) = 1/p (the paper's 'Feature dimensionality').

    **Arguments:**
    - ``W``: ``[inst, feat, hidden]``, one instance per sparsity.
    - ``feature_probability``: one uniform p per instance (the x axis).

    **Returns:** a Figure with one axes.
    """
    W = torch.as_tensor(W)
    _check_runs(W, feature_probability)
    ps = [_uniform_p(p) for p in feature_probability]
    if any(p is None for p in ps):
        raise ValueError("dimensionality_figure needs one p per instance, not per-feature probabilities")
    x = 1.0 / np.asarray(ps)
    d_star, d_i = _np(dimensions_per_feature(W)), _np(feature_dimensionality(W))
    fig = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for name, value in POLYTOPE_DIMENSIONALITIES.items():
        ax.axhline(value, color="0.85", lw=0.7, zorder=0)
        ax.text(1.005, value, name, transform=ax.get_yaxis_transform(), fontsize=7, va="center", color="0.4")
    spread = np.exp(np.linspace(-0.08, 0.08, d_i.shape[1]))  # small horizontal jitter per feature
    ax.scatter(
        (x[:, None] * spread[None]).ravel(),
        d_i.ravel(),
        s=6,
        color="tab:blue",
        alpha=0.5,
        lw=0,
        label="feature dimensionality Dᵢ",
    )
    order = np.argsort(x)
    ax.plot(x[order], d_star[order], color="black", lw=1.5, marker="o", ms=3, label="dimensions per feature D*")
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.2 * max(1.0, float(np.nanmax(np.minimum(d_star, 10.0)))))  # room for the legend
    ax.set_xlabel("1 / (1 − S) = 1 / p")
    ax.set_ylabel("dimensions per feature")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    return fig

