"""Figures of sparse autoencoders on toy data: MMCS over (α, dictionary ratio), the three
feature-counting signals, toy-model recovery and feature absorption. They only draw what
`superposition.sae` computed (plain arrays in, a Figure out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .style import Figure, _cmap

RATIO_LABEL = "dictionary size / true features (R)"
ALPHA_LABEL = "L1 coefficient α"


def _tidy(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, which="major", color="0.92", lw=0.6)


def _heatmap(fig: Figure, ax, values: np.ndarray, alphas: Sequence[float], ratios: Sequence[float], title: str,
             cmap: str, vmin: float, vmax: float, fmt: str) -> None:
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7,
                color="white" if (v - vmin) / max(vmax - vmin, 1e-12) < 0.5 else "black")
    ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
    ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_xlabel(RATIO_LABEL)
    ax.set_ylabel(ALPHA_LABEL)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.85)


def mmcs_grid_figure(mmcs: np.ndarray, dead_fraction: np.ndarray, alphas: Sequence[float], ratios: Sequence[float],
                     title: str) -> Figure:
    """Sharkey et al.'s sweep: MMCS with the true features and the fraction of dead latents,
    each ``[alpha, ratio]``, as annotated heatmaps."""
    _check_grid(mmcs, alphas, ratios, "mmcs")
    _check_grid(dead_fraction, alphas, ratios, "dead_fraction")
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    _heatmap(fig, left, mmcs, alphas, ratios, "MMCS with the true features", "viridis", 0.0, 1.0, ".2f")
    _heatmap(fig, right, dead_fraction, alphas, ratios, "dead latents (fraction of the dictionary)", "magma",
             0.0, 1.0, ".2f")
    fig.suptitle(title, fontsize=10)
    return fig


def _check_grid(values: np.ndarray, alphas: Sequence[float], ratios: Sequence[float], name: str) -> None:
    if np.shape(values) != (len(alphas), len(ratios)):
        raise ValueError(f"{name} must have shape [alpha, ratio] = ({len(alphas)}, {len(ratios)}), "
                         f"got {np.shape(values)}")


def counting_figure(ratios: Sequence[float], signals: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """The three ways Sharkey et al. count features without ground truth, against the dictionary
    ratio R (a line at R = 1, where the dictionary holds as many latents as there are features).

    ``signals``: panel title → {line label (e.g. α) → one value per ratio}; NaN values are skipped.
    """
    fig = Figure(figsize=(4.0 * len(signals), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(signals)))
    for ax, (title, lines) in zip(axes, signals.items(), strict=True):
        colors = _cmap("viridis")(np.linspace(0.0, 0.85, max(len(lines), 1)))
        for color, (label, values) in zip(colors, lines.items(), strict=True):
            if len(values) != len(ratios):
                raise ValueError(f"{title!r}/{label!r}: {len(values)} values for {len(ratios)} ratios")
            ax.plot(ratios, values, "o-", color=color, label=label, ms=4)
        ax.axvline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(ratios), [f"{r:g}" for r in ratios])
        ax.set_xlabel(RATIO_LABEL)
        ax.set_title(title, fontsize=9)
        _tidy(ax)
    axes[0].legend(fontsize=7, frameon=False)
    return fig


def toy_recovery_figure(models: Mapping[str, tuple[np.ndarray, float]]) -> Figure:
    """SAEs on toy models' hidden layers: for each model, the best cosine of each represented
    feature with the SAE's dictionary, sorted, against the recovery threshold.

    ``models``: title → (best cosine per represented feature ``[feat]``, threshold).
    """
    fig = Figure(figsize=(4.2 * len(models), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models)))
    for ax, (title, (best, threshold)) in zip(axes, models.items(), strict=True):
        values = np.sort(np.asarray(best, dtype=float))[::-1]
        hit = values >= threshold
        ax.bar(np.arange(len(values)), values, color=np.where(hit, "tab:green", "tab:red"), width=0.8)
        ax.axhline(threshold, color="0.3", lw=0.8, ls="--")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("represented features (sorted)")
        ax.set_ylabel("best cosine with a latent")
        ax.set_title(f"{title}: {int(hit.sum())} of {len(values)} recovered", fontsize=9)
        _tidy(ax)
    return fig


def absorption_figure(panels: Mapping[str, tuple[Sequence[float], Mapping[str, Sequence[float]], bool]]) -> Figure:
    """Absorption rate P(parent latent silent | a child on) against the sparsity knob.

    ``panels``: x-axis label → (x values, {line label (dictionary size) → rate per x}, log x).
    """
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (xlabel, (xs, lines, log)) in zip(axes, panels.items(), strict=True):
        colors = _cmap("viridis")(np.linspace(0.0, 0.85, max(len(lines), 1)))
        for color, (label, rates) in zip(colors, lines.items(), strict=True):
            ax.plot(xs, rates, "o-", color=color, label=label, ms=4)
        if log:
            ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("absorption rate")
        _tidy(ax)
        ax.legend(fontsize=7, frameon=False)
    return fig
