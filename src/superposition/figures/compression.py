"""Figures of the appendices: nonlinear compression's loss against the ramp width, and the
compressed-sensing scaling of the smallest recovering dimension. They only draw what analysis computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .robustness import _colors, _tidy
from .style import Figure


def compression_figure(eps: Sequence[float], mse: Mapping[int, Sequence[float]], linear: float,
                       trained: Mapping[str, float]) -> Figure:
    """The paper's appendix figure: MSE per value of the nonlinear scheme against ε for several Z,
    with the linear-compression optimum (dashed) and trained models' losses (dotted).

    **Arguments:** ``eps``: ramp widths (fraction of one step); ``mse``: Z → MSE per ε; ``linear``:
    the best linear MSE; ``trained``: label → a trained model's MSE. **Returns:** a Figure.
    """
    fig = Figure(figsize=(6.6, 3.5), layout="constrained")
    ax = fig.subplots()
    for color, (z, values) in zip(_colors(len(mse)), mse.items(), strict=True):
        if len(values) != len(eps):
            raise ValueError(f"mse[{z}] has {len(values)} values for {len(eps)} eps")
        ax.plot(eps, values, marker="o", ms=3, color=color, label=f"nonlinear, Z = {z}")
    ax.axhline(linear, color="0.3", ls="--", lw=1, label="best linear")
    for color, (label, value) in zip(_colors(len(trained) + len(mse))[len(mse):], trained.items(), strict=True):
        ax.axhline(value, color=color, ls=":", lw=1.2, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("ε (ramp width, fraction of a quantisation step)")
    ax.set_ylabel("MSE per value")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside: the curves fill it
    _tidy(ax)
    return fig


def sensing_figure(scale: Sequence[float], m_star: Sequence[float], slope: float, intercept: float,
                   labels: Sequence[str]) -> Figure:
    """The smallest recovering hidden size m* against k·log(n/k), with the fitted line.

    **Arguments:** ``scale``: k log(n/k) per (n, k); ``m_star``: m* per (n, k); ``slope`` and
    ``intercept`` of the fit; ``labels``: "n/k" per point. **Returns:** a Figure.
    """
    if not len(scale) == len(m_star) == len(labels):
        raise ValueError("scale, m_star and labels need one entry per (n, k)")
    fig = Figure(figsize=(4.8, 3.5), layout="constrained")
    ax = fig.subplots()
    s = np.asarray(scale, dtype=float)
    ax.scatter(s, m_star, s=18, color=_colors(1)[0], zorder=3)
    for x, y, label in zip(s, m_star, labels, strict=True):
        ax.annotate(label, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
    line = np.linspace(0, s.max() * 1.05, 20)
    ax.plot(line, intercept + slope * line, color="0.4", lw=1, label=f"m* = {intercept:.2g} + {slope:.2g}·k log(n/k)")
    ax.set_xlabel("k · log(n / k)")
    ax.set_ylabel("smallest recovering m*")
    ax.legend(fontsize=7, frameon=False)
    _tidy(ax)
    return fig
