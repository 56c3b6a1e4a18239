# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Figures of section 5 (the geometry of superposition): feature dimensionality coloured by the
polytope each feature belongs to, the D_i histogram, polytope counts per sparsity, and the paper's
feature geometry graphs (every function draws what `analysis.polytopes` computed); and a
convergence plot for sweeps over many sparsities."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor

from ..analysis import dimensions_per_feature, feature_dimensionality, unit_directions
from ..analysis.polytopes import OTHER, SHAPE_NAMES, SHAPES, TegumFactor
from .core import POLYTOPE_DIMENSIONALITIES
from .runs import accepts_run
from .style import Figure, Probability, _check_runs, _cmap, _np, _scalar_mappable, _uniform_p, sparsity_label

SHAPE_COLORS = {
    "single": "0.3", "digon": "tab:blue", "triangle": "tab:orange", "tetrahedron": "tab:green",
    "pentagon": "tab:red", "square antiprism": "tab:purple", "cube": "tab:brown", "square": "tab:pink",
    "octahedron": "tab:olive", OTHER: "0.65",
}
"""One colour per polytope (and for features in no recognised shape)."""
INVERSE_P_LABEL = "1 / (1 − S) = 1 / p"


def shape_label(name: str) -> str:
    """'pentagon (Dᵢ = 2/5)': the shape's name with the D_i of its features, from its template."""
    shape = next((s for s in SHAPES if s.name == name), None)
    return name if shape is None else f"{name} (Dᵢ = {Fraction(shape.rank, shape.k)})"


def _inverse_p(feature_probability: Sequence[Probability]) -> np.ndarray:
    ps = [_uniform_p(p) for p in feature_probability]
    if any(p is None for p in ps):
        raise ValueError("these figures need one p per instance, not per-feature probabilities")
    return 1.0 / np.asarray(ps, dtype=float)


def _check_factors(factors: Sequence[Sequence[TegumFactor]], n: int) -> None:
    if len(factors) != n:
        raise ValueError(f"factors has {len(factors)} entries but there are {n} instances; give one per instance")


def _shape_of_features(factors: Sequence[TegumFactor], n_features: int) -> list[str | None]:
    shape: list[str | None] = [None] * n_features
    for factor in factors:
        for i in factor.features:
            shape[i] = factor.shape
    return shape


def _reference_lines(ax, vertical: bool = False) -> None:
    for rank, (name, value) in enumerate(sorted(POLYTOPE_DIMENSIONALITIES.items(), key=lambda item: item[1])):
        if vertical:  # labels above the axes, alternately raised: 3/8 and 2/5 are close
            ax.axvline(value, color="0.82", lw=0.7, zorder=0)
            ax.text(value, 1.01 + 0.06 * (rank % 2), name, transform=ax.get_xaxis_transform(), fontsize=7,
                    ha="center", va="bottom", color="0.4")
        else:
            ax.axhline(value, color="0.85", lw=0.7, zorder=0)
            ax.text(1.005, value, name, transform=ax.get_yaxis_transform(), fontsize=7, va="center", color="0.4")


def _despine(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


# --- convergence ------------------------------------------------------------------------------


@accepts_run
def relative_loss_figure(steps: Sequence[int], curves: Sequence[Sequence[float]] | Tensor,
                         feature_probability: Sequence[Probability]) -> Figure:
    """Training loss divided by its final value against step, one line per instance coloured by
    1/(1 − S) (a colour bar instead of a legend, so it reads for dozens of sparsities): a line flat at
    1 has converged.

    **Arguments:** ``steps [points]``, ``curves [inst, points]`` (`run.metrics.loss_steps`,
    `run.metrics.loss_curve`), one uniform p per instance. **Returns:** one axes and a colour bar.
    """
    from matplotlib.colors import LogNorm

    y = np.asarray(torch.as_tensor(curves, dtype=torch.float64)).reshape(-1, len(steps))
    x = _inverse_p(feature_probability)
    if len(x) != len(y):
        raise ValueError(f"curves has {len(y)} instances but feature_probability {len(x)}; give one per instance")
    norm = LogNorm(vmin=x.min(), vmax=max(x.max(), 1.01 * x.min()))
    cmap = _cmap("viridis")
    fig = Figure(figsize=(6.0, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for k in np.argsort(x):
        ax.plot(steps, y[k] / y[k, -1], color=cmap(norm(x[k])), lw=1.1)
    ax.axhline(1.0, color="0.5", lw=0.7, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss / final loss")
    _despine(ax)
    fig.colorbar(_scalar_mappable(norm, "viridis"), ax=ax, label=INVERSE_P_LABEL)
    return fig


# --- feature dimensionality by shape -----------------------------------------------------------


@accepts_run
def shape_dimensionality_figure(W: Tensor, feature_probability: Sequence[Probability],
                                factors: Sequence[Sequence[TegumFactor]]) -> Figure:
    """D* and each represented feature's D_i against 1/(1 − S), the points coloured by the shape
    of the tegum factor the feature belongs to (unrepresented features are not drawn).

    **Arguments:** ``W [inst, feat, hidden]``; one uniform p per instance; one tuple of
    `TegumFactor` per instance (`analysis.polytopes.tegum_factors`). **Returns:** one axes.
    """
    W = torch.as_tensor(W)
    _check_runs(W, feature_probability)
    _check_factors(factors, W.shape[0])
    x = _inverse_p(feature_probability)
    d_star, d_i = _np(dimensions_per_feature(W)), _np(feature_dimensionality(W))
    fig = Figure(figsize=(7.2, 4.0), layout="constrained")
    ax = fig.add_subplot()
    _reference_lines(ax)
    spread = np.exp(np.linspace(-0.06, 0.06, W.shape[1]))  # a little horizontal jitter per feature
    points: dict[str, list[tuple[float, float]]] = {}
    for k, model in enumerate(factors):
        for i, shape in enumerate(_shape_of_features(model, W.shape[1])):
            if shape is not None:
                points.setdefault(shape, []).append((x[k] * spread[i], d_i[k, i]))
    for shape in SHAPE_NAMES:
        if shape in points:
            xs, ys = np.asarray(points[shape]).T
            ax.scatter(xs, ys, s=7, color=SHAPE_COLORS[shape], alpha=0.6, lw=0, label=shape_label(shape))
    order = np.argsort(x)
    ax.plot(x[order], d_star[order], color="black", lw=1.4, marker="o", ms=3, label="dimensions per feature D*")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.1)
    ax.set_xlabel(INVERSE_P_LABEL)
    ax.set_ylabel("dimensions per feature")
    _despine(ax)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.06, 1.0), markerscale=2)
    return fig


# --- histogram -----------------------------------------------------------------------------------


def dimensionality_histogram_figure(D: Sequence[float] | Tensor, shapes: Sequence[str] | None = None, *,
                                    bin_width: float = 0.01, label: str = "") -> Figure:
    """Histogram of feature dimensionalities D_i, stacked by the shape of each feature's tegum factor,
    with the uniform polytopes' fractions marked; log counts, so small peaks show beside large ones.

    **Arguments:** ``D [N]``, e.g. the D_i of every represented feature of every model; ``shapes``:
    ``N`` shape names (one colour each), or None for one colour; ``label``: what the D_i are, for
    the y axis (e.g. "represented, 12 sparsities"). **Returns:** one axes.
    """
    values = _np(torch.as_tensor(D, dtype=torch.float64).flatten())
    names = np.asarray(shapes if shapes is not None else [OTHER] * len(values))
    if len(names) != len(values):
        raise ValueError(f"shapes has {len(names)} entries but D has {len(values)}; give one per D_i")
    fig = Figure(figsize=(7.2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    _reference_lines(ax, vertical=True)
    edges = np.arange(0.0, max(1.0, float(values.max(initial=0.0))) + 2 * bin_width, bin_width) - bin_width / 2
    present = [s for s in SHAPE_NAMES if (names == s).any()] if shapes is not None else [OTHER]
    ax.hist([values[names == s] for s in present], bins=edges, stacked=True, color=[SHAPE_COLORS[s] for s in present],
            label=[shape_label(s) for s in present] if shapes is not None else None)
    ax.set_yscale("log")
    ax.set_xlabel("feature dimensionality Dᵢ")
    ax.set_ylabel(f"features\n({label})" if label else "features")
    _despine(ax)
    if shapes is not None:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


# --- counts per sparsity -------------------------------------------------------------------------


def polytope_counts_figure(feature_probability: Sequence[Probability], factors: Sequence[Sequence[TegumFactor]]
                           ) -> Figure:
    """Left: how many tegum factors of each shape each model has; right: the share of its
    represented features in each shape; both against 1/(1 − S).

    **Arguments:** one uniform p per instance and one tuple of `TegumFactor` per instance.
    **Returns:** two axes.
    """
    x = _inverse_p(feature_probability)
    _check_factors(factors, len(x))
    order = np.argsort(x)
    polys = {s: np.array([sum(f.shape == s for f in factors[k]) for k in order]) for s in SHAPE_NAMES}
    feats = {s: np.array([sum(f.k for f in factors[k] if f.shape == s) for k in order], float) for s in SHAPE_NAMES}
    present = [s for s in SHAPE_NAMES if feats[s].any()]
    total = np.maximum(sum(feats.values()), 1.0)
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    for s in present:
        left.plot(x[order], polys[s], marker="o", ms=3, lw=1.2, color=SHAPE_COLORS[s], label=shape_label(s))
    left.set_ylabel("tegum factors per model")
    lo, hi = _log_edges(x[order])
    bottom = np.zeros(len(x))
    for s in present:
        share = feats[s] / total
        right.bar(lo, share, width=hi - lo, bottom=bottom, align="edge", color=SHAPE_COLORS[s], lw=0)
        bottom += share
    right.set_ylabel("share of represented features")
    right.set_ylim(0, 1)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel(INVERSE_P_LABEL)
        _despine(ax)
    fig.legend(*left.get_legend_handles_labels(), fontsize=7, frameon=False, loc="outside right upper")
    return fig


def _log_edges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bar edges around ascending x > 0 at the geometric midpoints between neighbours."""
    if len(x) == 1:
        return x / 1.2, x * 1.2
    mid = np.sqrt(x[1:] * x[:-1])
    return np.concatenate([[x[0] ** 2 / mid[0]], mid]), np.concatenate([mid, [x[-1] ** 2 / mid[-1]]])


# --- feature geometry graphs ---------------------------------------------------------------------


def _factor_layout(W: Tensor, factor: TegumFactor) -> np.ndarray:
    """Unit-circle positions ``[k, 2]`` of a factor's features, in the angular order of their
    projection on the factor's two main directions (so a pentagon is drawn as a pentagon)."""
    k = factor.k
    if k == 1:
        return np.zeros((1, 2))
    U = unit_directions(W[list(factor.features)]).double()
    _, _, Vh = torch.linalg.svd(U, full_matrices=False)
    plane = _np(U @ Vh[:2].T) if Vh.shape[0] >= 2 else np.stack([_np(U @ Vh[0]), np.zeros(k)], -1)
    rank = np.argsort(np.argsort(np.arctan2(plane[:, 1], plane[:, 0])))
    angles = np.pi / 2 + 2 * np.pi * rank / k
    return np.stack([np.cos(angles), np.sin(angles)], -1)


def _place(radii: Sequence[float], width: float, gap: float = 0.35) -> list[tuple[float, float]]:
    """Centres for circles of the given radii, packed left to right in rows of `width`, rows downwards."""
    centres, x, y, row = [], 0.0, 0.0, 0.0
    for r in radii:
        if x > 0 and x + 2 * r > width:
            x, y, row = 0.0, y - row - gap, 0.0
        centres.append((x + r, y - r))
        x += 2 * r + gap
        row = max(row, 2 * r)
    return centres


def _graph_layout(factors: Sequence[TegumFactor], width: float) -> list[tuple[TegumFactor, float, tuple[float, float]]]:
    """(factor, radius, centre) for each factor: ordered by shape then size, packed in rows."""
    rank = {s: i for i, s in enumerate(SHAPE_NAMES)}
    ordered = sorted(factors, key=lambda f: (rank[f.shape], f.k, f.features))
    radii = [0.12 if f.k == 1 else 0.5 * max(1.0, np.sqrt(f.k / 6)) for f in ordered]
    return list(zip(ordered, radii, _place(radii, width), strict=True))


def _draw_graph(ax, W: Tensor, layout: Sequence[tuple[TegumFactor, float, tuple[float, float]]],
                edge_threshold: float) -> None:
    U = _np(unit_directions(W))
    for factor, r, (cx, cy) in layout:
        pos = np.array([cx, cy]) + r * _factor_layout(W, factor)
        cos = U[list(factor.features)] @ U[list(factor.features)].T
        for a in range(factor.k):
            for b in range(a + 1, factor.k):
                if abs(cos[a, b]) > edge_threshold:
                    ax.plot(*pos[[a, b]].T, color="0.35", lw=0.3 + 1.5 * abs(cos[a, b]), alpha=0.7, zorder=1)
        ax.scatter(*pos.T, s=9 if factor.k > 12 else 16, color=SHAPE_COLORS[factor.shape], zorder=2, lw=0)


@accepts_run
def geometry_graph_figure(W: Tensor, feature_probability: Sequence[Probability],
                          factors: Sequence[Sequence[TegumFactor]], *, edge_threshold: float,
                          width: float = 8.0, ncols: int = 3) -> Figure:
    """The paper's feature geometry graphs: for each model, its represented features as nodes,
    grouped by tegum factor, with an edge where |cos(W_i, W_j)| > edge_threshold (thicker for larger
    overlap), coloured by the factor's shape.

    **Arguments:** ``W [inst, feat, hidden]``, one uniform p per instance (the panel titles), one
    tuple of `TegumFactor` per instance; `edge_threshold` as used to find the factors; `width`: how
    many unit cells a row of factors may take; `ncols`: panels per row. **Returns:** one axes per instance.
    """
    W = torch.as_tensor(W)
    _check_runs(W, feature_probability)
    _check_factors(factors, W.shape[0])
    n = W.shape[0]
    if n == 0:
        raise ValueError("geometry_graph_figure needs at least one instance")
    layouts = [_graph_layout(model, width) for model in factors]
    depth = max((r - cy for layout in layouts for _, r, (_, cy) in layout), default=1.0)
    panel = 3.6  # inches per panel; every panel has the same scale, so glyphs compare across sparsities
    cols = min(n, ncols)
    rows = -(-n // cols)
    fig = Figure(figsize=(panel * cols + 1.8, rows * (0.8 + panel * (depth + 0.6) / (width + 0.6))),
                 layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in grid[n:]:
        ax.remove()
    axes = grid[:n]
    for ax, k in zip(axes, range(n), strict=True):
        _draw_graph(ax, W[k], layouts[k], edge_threshold)
        ax.set_xlim(-0.3, width + 0.3)
        ax.set_ylim(-depth - 0.3, 0.3)
        ax.set_aspect("equal")
        ax.set_axis_off()
        on = sum(f.k for f in factors[k])
        ax.set_title(f"{sparsity_label(feature_probability[k], short=True)}\n{on} of {W.shape[1]} features "
                     "represented", fontsize=8)
    present = [s for s in SHAPE_NAMES if any(f.shape == s for model in factors for f in model)]
    handles = [axes[0].scatter([], [], s=16, color=SHAPE_COLORS[s], label=shape_label(s)) for s in present]
    fig.legend(handles=handles, fontsize=7, frameon=False, loc="outside right upper")
    return fig

