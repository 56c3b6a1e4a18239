# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Shared style of every figure: colour maps, labels computed from configs, input checks, and the
atomic PNG writer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import Normalize
from matplotlib.figure import Figure as _MplFigure
from torch import Tensor

from ..atomic import atomic_write

Probability = float | Sequence[float]
"""A configuration's feature probability: one p for all features, or one per feature."""

GRAM_CMAP = "RdBu"
IMPORTANCE_CMAP = "viridis"
SUPERPOSITION_CMAP = "inferno"  # the paper's black (no superposition) → yellow (superposed)
DPI = 150


class Figure(_MplFigure):
    """A matplotlib Figure that shows itself in Jupyter (and any IPython front end) as a PNG.

    Figures here are built without pyplot, so IPython's inline backend never sees them and its
    formatter is not registered until pyplot is imported: a plain Figure would show only
    ``<Figure size ...>``. A `_repr_png_` on the class works whatever was imported first, in every
    front end and in executed notebooks, and changes nothing for the user's other figures (a
    formatter registered globally on import would). Where ``%matplotlib inline`` is active its own
    Figure formatter takes precedence, so a figure is never drawn twice.
    """

    def _repr_png_(self) -> bytes:
        import io

        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, facecolor="white", bbox_inches="tight")
        return buffer.getvalue()


# --- labels -----------------------------------------------------------------------------------


def _uniform_p(p: Probability) -> float | None:
    """The single p of a configuration, or None when features differ."""
    if isinstance(p, (int, float)):
        return float(p)
    values = [float(q) for q in p]
    return values[0] if values and all(q == values[0] for q in values) else None


def _pct(x: float) -> str:
    return f"{round(100 * x, 6):.4g}%"


def sparsity_label(p: Probability, short: bool = False) -> str:
    """'1 − S = p = 0.1 (S = 90%)' (short: 'S = 90%\\np = 0.1'), computed from p."""
    q = _uniform_p(p)
    if q is None:
        return "p per feature" if short else "1 − S = p per feature"
    if short:
        return f"S = {_pct(1 - q)}\np = {q:.4g}"
    return f"1 − S = p = {q:.4g} (S = {_pct(1 - q)})"


def _np(t: Tensor) -> np.ndarray:
    return torch.as_tensor(t).detach().cpu().double().numpy()


def _check_runs(W: Tensor, feature_probability: Sequence[Probability], name: str = "W") -> None:
    if W.ndim != 3:
        raise ValueError(f"{name} must have shape [inst, feat, hidden], got {tuple(W.shape)}")
    if len(feature_probability) != W.shape[0]:
        raise ValueError(
            f"feature_probability has {len(feature_probability)} entries but {name} has "
            f"{W.shape[0]} instances; give one per instance"
        )


# --- helpers ----------------------------------------------------------------------------------


def _cmap(name: str):
    from matplotlib import colormaps

    return colormaps[name]


def _superposition_cmap():
    """inferno without its palest end, so strongly superposed bars stay visible on white."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(_cmap(SUPERPOSITION_CMAP)(np.linspace(0.0, 0.85, 256)), name="superposition")


def _scalar_mappable(norm: Normalize, cmap: str):
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)


def hidden_plane(ax, limit: float, axes_color: str | None = "0.85") -> None:
    """Style `ax` as the 2-D hidden space: square, ±limit, no ticks, faint axes through 0."""
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    if axes_color is not None:
        ax.axhline(0, color=axes_color, lw=0.6, zorder=0)
        ax.axvline(0, color=axes_color, lw=0.6, zorder=0)
    ax.set_xticks([])
    ax.set_yticks([])


def gram_row(G: np.ndarray, titles: Sequence[str], panel: tuple[float, float], set_size: int | None = None,
             vmax: float = 1.0, label: str = "WᵀW") -> tuple[Figure, np.ndarray]:
    """A row of WᵀW heatmaps ``G [panel, feat, feat]`` titled `titles`, with a shared colour bar and,
    given `set_size`, lines between feature sets. Returns the figure and its axes."""
    n, cols = G.shape[-1], len(titles)
    norm = Normalize(-vmax, vmax)
    fig = Figure(figsize=(panel[0] * cols + 1.0, panel[1]), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)[0]
    for c, ax in enumerate(axes):
        ax.imshow(G[c], cmap=GRAM_CMAP, norm=norm, interpolation="nearest")
        for edge in np.arange(set_size, n, set_size) - 0.5 if set_size else ():
            ax.axhline(edge, color="0.2", lw=0.8)
            ax.axvline(edge, color="0.2", lw=0.8)
        ax.set_title(titles[c], fontsize=8)
    fig.colorbar(_scalar_mappable(norm, GRAM_CMAP), ax=list(axes), shrink=0.85, label=label)
    return fig, axes


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    """Write `fig` as a PNG at `path` atomically (temporary file beside it, then rename) and close it.

    Creates missing parent directories. Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi, facecolor="white"))
    finally:
        _close(fig)
    return path


def _close(fig: Figure) -> None:
    """Release a pyplot-managed figure; a figure built by this module holds no global state."""
    if getattr(fig.canvas, "manager", None) is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)

