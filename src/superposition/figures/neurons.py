# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Figures of the paper's sections 8 (superposition in a privileged basis) and 9 (computation in
superposition): the hidden layer read neuron by neuron.

- `neuron_stack_figure`: one column per neuron, its input weights stacked as segments of height
  |weight| coloured by feature, positive weights above the axis and negative ones below (for
  `abs_mlp`, rescale first with `analysis.rescale_neurons`, as the paper does).
- `weight_heatmap_figure`: the raw W (hidden × feat) of each model.
- `polysemanticity_figure`: across sparsity, the share of monosemantic, polysemantic and dead
  neurons, and which feature each neuron mostly stores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from ..analysis.neurons import NeuronClasses, classify_neurons
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
    _uniform_p,
    sparsity_label,
)

QUALITATIVE_MAX = 10
"""Up to this many features get distinct qualitative colours and a legend; more are coloured by importance."""
CLASS_COLORS = {"monosemantic": "#2b8cbe", "polysemantic": "#e6550d", "dead": "0.7"}


def _feature_colors(n_feat: int, importance: np.ndarray | None) -> tuple[np.ndarray, Normalize | None]:
    """``[feat, 4]`` RGBA: tab10 for few features, else viridis by importance (or by index)."""
    if n_feat <= QUALITATIVE_MAX:
        return _cmap("tab10")(np.arange(n_feat) % 10), None
    values = importance if importance is not None else -np.arange(n_feat, dtype=float)
    norm = Normalize(float(values.min()), float(values.max()))
    return _cmap(IMPORTANCE_CMAP)(norm(values)), norm


def neuron_order(classes: NeuronClasses, W: Tensor) -> Tensor:
    """Neurons sorted by the feature they mostly store, then by the sign of that weight (ReLU(x) first),
    dead neurons last. **Arguments:** one model's `NeuronClasses` and ``W [feat, hidden]``.
    **Returns:** int64 ``[hidden]``."""
    top = classes.top_feature.clone()
    sign = torch.gather(W, 0, top.unsqueeze(0)).squeeze(0) < 0
    key = top.double() * 2 + sign.double() + classes.dead.double() * 4 * W.shape[0]
    return torch.argsort(key, stable=True)


@accepts_run
def neuron_stack_figure(
    W: Tensor,
    feature_probability: Sequence[Probability],
    *,
    importance: Tensor | None = None,
    signed: bool = False,
    ylabel: str = "input weight",
    ncols: int = 3,
) -> Figure:
    """The paper's neuron view: per neuron, a stacked bar of its input weights, coloured by feature.

    One panel per instance (each with its own y scale), titled by its sparsity and the count of
    monosemantic / polysemantic neurons. A segment's height is |W[i, j]|; positive weights stack
    above zero, negative below. Neurons are sorted by the feature they mostly store
    (`neuron_order`); the tick under each is its index in the model, coloured by its class (blue
    monosemantic, orange polysemantic, grey dead).

    **Arguments:**
    - ``W``: ``[inst, feat, hidden]`` (for `abs_mlp`, W1 after `rescale_neurons`).
    - ``feature_probability``: one p per instance (the panel titles).
    - ``importance``: ``[feat]``, the colour scale when there are more than 10 features.
    - ``signed``: inputs take both signs (`abs_mlp`); sets which weights count for the classes.
    - ``ylabel``: the y-axis label (e.g. "input weight (rescaled)").

    **Returns:** a Figure with one axes per instance, plus a legend or colourbar.
    """
    W = torch.as_tensor(W)
    _check_runs(W, feature_probability)
    n_inst, n_feat, n_hidden = W.shape
    imp = None if importance is None else _np(torch.as_tensor(importance).reshape(-1)[:n_feat])
    colors, norm = _feature_colors(n_feat, imp)
    classes = classify_neurons(W, signed)
    cols = max(1, min(n_inst, ncols))
    rows = -(-n_inst // cols)
    width = max(2.6, 0.13 * n_hidden + 1.0)
    fig = Figure(figsize=(width * cols + 1.4, 2.6 * rows + 0.4), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in grid[n_inst:]:
        ax.remove()
    for k, ax in enumerate(grid[:n_inst]):
        cls_k = _one(classes, k)
        _draw_stacks(ax, _np(W[k]), neuron_order(cls_k, W[k]), colors, cls_k)
        ax.set_ylim(-_stack_limit(W[k]), _stack_limit(W[k]))
        ax.set_title(f"{sparsity_label(feature_probability[k])}\n{_class_counts(cls_k)}", fontsize=8)
        if k % cols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
    axes = list(grid[:n_inst])
    fig.supxlabel("neuron index colour: blue monosemantic, orange polysemantic, grey dead", fontsize=7, color="0.3")
    if norm is None:
        handles = [_patch(colors[i], f"feature {i}") for i in range(n_feat)]
        fig.legend(handles=handles, loc="outside right center", fontsize=7, frameon=False)
    else:
        fig.colorbar(_scalar_mappable(norm, IMPORTANCE_CMAP), ax=axes, shrink=0.8,
                     label="feature importance" if imp is not None else "feature (− index)")
    return fig


def _stack_limit(W: Tensor) -> float:
    """Half-height of a panel: the tallest stack of ``W [feat, hidden]``, above or below zero."""
    return 1.05 * max(float(W.clamp_min(0).sum(0).max()), float((-W).clamp_min(0).sum(0).max())) or 1.0


def _one(classes: NeuronClasses, k: int) -> NeuronClasses:
    """Instance k of a batched `NeuronClasses`."""
    return NeuronClasses(classes.share[k], classes.top_feature[k], classes.top_share[k],
                         classes.features_per_neuron[k], classes.monosemantic[k], classes.polysemantic[k],
                         classes.dead[k], classes.threshold)


def _class_counts(classes: NeuronClasses) -> str:
    mono, poly, dead = (int(t.sum()) for t in (classes.monosemantic, classes.polysemantic, classes.dead))
    text = f"{mono} monosemantic, {poly} polysemantic"
    return text + (f", {dead} dead" if dead else "")


def _patch(color, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, edgecolor="none", label=label)


def _draw_stacks(ax, W: np.ndarray, order: Tensor, colors: np.ndarray, classes: NeuronClasses) -> None:
    """Stacked bars of ``W [feat, hidden]``, one column per neuron in `order`."""
    order = order.tolist()
    x = np.arange(len(order))
    ax.add_collection(_stack_segments(W[:, order], colors))
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlim(-0.6, len(order) - 0.4)
    step = max(1, len(order) // 20)
    ax.set_xticks(x[::step], [str(j) for j in order][::step], fontsize=6)
    kinds = ["monosemantic" if classes.monosemantic[j] else "dead" if classes.dead[j] else "polysemantic"
             for j in order]
    for tick, kind in zip(ax.get_xticklabels(), kinds[::step], strict=True):
        tick.set_color(CLASS_COLORS[kind])
    ax.tick_params(labelsize=6, length=2)
    ax.set_xlabel("neuron", fontsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _stack_segments(cols: np.ndarray, colors: np.ndarray, width: float = 0.8):
    """One rectangle per non-zero weight of ``cols [feat, hidden]``: column j stacks feature 0 first, positive
    weights upward from 0 and negative ones downward. One collection: thousands of bars draw in a blink."""
    from matplotlib.collections import PolyCollection

    boxes, faces = [], []
    for sign in (1.0, -1.0):
        part = np.where(sign * cols > 0, np.abs(cols), 0.0)
        end = sign * np.cumsum(part, axis=0)  # [feat, hidden]: where each segment ends
        feat, neuron = np.nonzero(part)
        lo, hi = end[feat, neuron] - sign * part[feat, neuron], end[feat, neuron]
        left, right = neuron - width / 2, neuron + width / 2
        boxes.append(np.stack([np.stack([left, lo], -1), np.stack([right, lo], -1), np.stack([right, hi], -1),
                               np.stack([left, hi], -1)], 1))  # [segments, 4 corners, xy]
        faces.append(colors[feat])
    return PolyCollection(np.concatenate(boxes), facecolors=np.concatenate(faces), edgecolors="none", linewidths=0)


@accepts_run
def weight_heatmap_figure(W: Tensor, feature_probability: Sequence[Probability], *, ncols: int = 5) -> Figure:
    """The raw weights of each model as a heatmap: rows are neurons, columns features (the paper's W, m × n).

    **Arguments:** ``W [inst, feat, hidden]``; ``feature_probability``: one p per instance (titles).
    **Returns:** a Figure with one axes per instance and a shared colourbar.
    """
    W = torch.as_tensor(W)
    _check_runs(W, feature_probability)
    n_inst, n_feat, n_hidden = W.shape
    vmax = float(W.abs().max()) or 1.0
    norm = Normalize(-vmax, vmax)
    cols = max(1, min(n_inst, ncols))
    rows = -(-n_inst // cols)
    aspect = n_hidden / n_feat
    fig = Figure(figsize=(2.4 * cols + 1.0, (2.4 * aspect + 0.9) * rows), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in grid[n_inst:]:
        ax.remove()
    for k, ax in enumerate(grid[:n_inst]):
        ax.imshow(_np(W[k]).T, cmap=GRAM_CMAP, norm=norm, interpolation="nearest")
        ax.set_title(sparsity_label(feature_probability[k], short=True), fontsize=8)
        ax.set_xlabel("feature", fontsize=7)
        if k % cols == 0:
            ax.set_ylabel("neuron", fontsize=7)
        ax.tick_params(labelsize=6, length=2)
    fig.colorbar(_scalar_mappable(norm, GRAM_CMAP), ax=list(grid[:n_inst]), shrink=0.8, label="W (input weight)")
    return fig


@accepts_run
def polysemanticity_figure(W: Tensor, feature_probability: Sequence[Probability], *, signed: bool = False) -> Figure:
    """Polysemanticity against sparsity: left, the share of monosemantic, polysemantic and dead neurons;
    right, every neuron as a dot at the feature it mostly stores, coloured by its class.

    **Arguments:** ``W [inst, feat, hidden]``, one instance per sparsity; ``feature_probability``:
    one uniform p per instance (the x axis); ``signed``: inputs take both signs (`abs_mlp`).
    **Returns:** a Figure with two axes.
    """
    W = torch.as_tensor(W)
    _check_runs(W, feature_probability)
    ps = np.asarray([_uniform_p(p) or np.nan for p in feature_probability])
    if np.isnan(ps).any():
        raise ValueError("polysemanticity_figure needs one p per instance, not per-feature probabilities")
    classes = classify_neurons(W, signed)
    order = np.argsort(-ps)
    fig = Figure(figsize=(9.0, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for name, mask in (("monosemantic", classes.monosemantic), ("polysemantic", classes.polysemantic),
                       ("dead", classes.dead)):
        frac = _np(mask.double().mean(-1))
        left.plot(ps[order], frac[order], marker="o", ms=3, lw=1.5, color=CLASS_COLORS[name], label=name)
    left.set_ylim(-0.03, 1.03)
    left.set_ylabel("fraction of neurons")
    spread = np.exp(np.linspace(-0.12, 0.12, W.shape[-1]))
    top = _np(classes.top_feature)
    for name, mask in (("monosemantic", classes.monosemantic), ("polysemantic", classes.polysemantic)):
        m = _np(mask).astype(bool)
        xs = ps[:, None] * spread[None]
        right.scatter(xs[m], top[m], s=9, color=CLASS_COLORS[name], lw=0, alpha=0.8, label=name)
    right.set_ylabel("feature the neuron mostly stores\n(0 = most important)")
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.invert_yaxis()
    for ax in (left, right):
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("1 − S = p (sparser →)")
        ax.legend(fontsize=7, frameon=False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig
