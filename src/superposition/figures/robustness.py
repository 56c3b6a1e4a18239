"""Figures of adversarial vulnerability (section 7), the L1 penalty that removes superposition, and
the loss decomposed into the paper's terms (section 3). They only draw what `analysis` computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
from torch import Tensor

from .style import Figure, Probability, _cmap, _np, _uniform_p, sparsity_label

SPARSITY_AXIS = "1 / (1 − S) = 1 / p"
FPD_LABEL = r"features per dimension $\|W\|_F^2\,/\,m$"


def _inverse_p(feature_probability: Sequence[Probability], n: int, what: str) -> np.ndarray:
    """1/p per instance, checked against the `n` values to draw."""
    ps = [_uniform_p(p) for p in feature_probability]
    if any(p is None for p in ps):
        raise ValueError(f"{what} needs one p per instance, not per-feature probabilities")
    if len(ps) != n:
        raise ValueError(f"feature_probability has {len(ps)} entries but the values have {n}; give one per instance")
    return 1.0 / np.asarray(ps, dtype=float)


def _tidy(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, which="major", color="0.92", lw=0.6)


def _plain_log_ticks(axis, top: float) -> None:
    """Ticks 1, 2, 3, ... (plain numbers, no minor labels) on a log axis reaching `top`."""
    ticks = [t for t in (0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if t <= max(top, 1.0) * 1.05]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _colors(n: int) -> list:
    return list(_cmap("tab10")(np.arange(n) % 10))


def adversarial_figure(
    feature_probability: Sequence[Probability],
    vulnerability: Mapping[str, Tensor],
    features_per_dimension: Mapping[str, Tensor],
) -> Figure:
    """The paper's adversarial-robustness figure: vulnerability relative to a model without
    superposition, and features per dimension, against sparsity; and the one against the other.

    **Arguments:**
    - ``feature_probability``: one uniform p per instance (the x axis).
    - ``vulnerability``: training label → ``[inst]`` relative vulnerability (1 = no superposition).
    - ``features_per_dimension``: the same labels → ``[inst]`` ‖W‖_F² / m.

    **Returns:** a Figure with three axes.
    """
    if set(vulnerability) != set(features_per_dimension) or not vulnerability:
        raise ValueError("vulnerability and features_per_dimension need the same, non-empty, labels")
    fig = Figure(figsize=(11.5, 3.5), layout="constrained")
    ax_v, ax_f, ax_s = fig.subplots(1, 3)
    for color, label in zip(_colors(len(vulnerability)), vulnerability, strict=True):
        v, f = _np(vulnerability[label]), _np(features_per_dimension[label])
        x = _inverse_p(feature_probability, len(v), "adversarial_figure")
        order = np.argsort(x)
        ax_v.plot(x[order], v[order], color=color, marker="o", ms=3.5, label=label)
        ax_f.plot(x[order], f[order], color=color, marker="o", ms=3.5, label=label)
        ax_s.plot(f[order], v[order], color=color, marker="o", ms=3.5, lw=0.8, label=label)
    for ax in (ax_v, ax_f, ax_s):
        ax.axhline(1.0, color="0.6", lw=0.8, ls="--", zorder=0)
        _tidy(ax)
    for ax in (ax_v, ax_f):
        ax.set_xscale("log")
        ax.set_xlabel(SPARSITY_AXIS)
    ax_v.set_yscale("log")
    ax_s.set_yscale("log")
    ax_s.set_xscale("log")
    _plain_log_ticks(ax_s.xaxis, max(float(_np(f).max()) for f in features_per_dimension.values()))
    ax_v.set_ylabel("adversarial vulnerability\n(relative to no superposition)")
    ax_f.set_ylabel(FPD_LABEL)
    ax_s.set_xlabel(FPD_LABEL)
    ax_s.set_ylabel("relative vulnerability")
    ax_v.legend(fontsize=7, frameon=False)
    return fig


def radius_figure(radius: Sequence[float], features_per_dimension: Tensor, threshold: float,
                  paper_radius: float, feature_probability: float) -> Figure:
    """Features per dimension of adversarially trained models against the training attack norm.

    **Arguments:** ``radius``: attack norm per instance (fraction of the mean input norm);
    ``features_per_dimension`` ``[inst]``; ``threshold``: the no-superposition level (a dashed
    line); ``paper_radius``: where the paper found superposition gone (a dotted line);
    ``feature_probability``: the shared p (the title). **Returns:** a Figure with one axis.
    """
    f = _np(features_per_dimension)
    if len(radius) != len(f):
        raise ValueError(f"radius has {len(radius)} entries but features_per_dimension {len(f)}")
    fig = Figure(figsize=(4.5, 3.3), layout="constrained")
    ax = fig.subplots()
    r = 100 * np.asarray(radius, dtype=float)
    order = np.argsort(r)
    ax.plot(r[order], f[order], marker="o", ms=4, color=_colors(1)[0])
    ax.axhline(threshold, color="0.6", lw=0.8, ls="--", zorder=0, label="no superposition")
    ax.axvline(100 * paper_radius, color="0.3", lw=0.8, ls=":", label="paper: ~80%")
    ax.set_xlabel("training attack norm (% of the mean input norm)")
    ax.set_ylabel(FPD_LABEL)
    ax.set_title(f"adversarial training, {sparsity_label(feature_probability)}", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    _tidy(ax)
    return fig


def l1_figure(
    l1: Sequence[float],
    loss: Tensor,
    dimensions_per_feature: Tensor,
    represented: Tensor,
    max_interference: Tensor,
    n_hidden: int,
    feature_probability: Probability | None = None,
) -> Figure:
    """Loss, D*, the represented count and the largest interference against the L1 coefficient λ
    of the hidden activations.

    λ is drawn on a log axis; λ = 0 (no penalty) gets its own narrow panel on the left of each row.

    **Arguments:** ``l1``: λ per instance; ``loss``, ``dimensions_per_feature`` (D* = m / ‖W‖_F²),
    ``represented`` (features with ‖W_i‖ > 0.5) and ``max_interference`` (the largest
    Σ_{j≠i}(Ŵ_i·W_j)² of a represented feature; 0: no superposition): ``[inst]``; ``n_hidden``: m
    (the count a model without superposition can keep); ``feature_probability``: the instances'
    shared p (the title).

    **Returns:** a Figure with 4 rows × 2 axes (λ = 0, λ > 0).
    """
    lam = np.asarray(l1, dtype=float)
    rows = {"loss (reconstruction only)": _np(loss), "dimensions per\nfeature D*": _np(dimensions_per_feature),
            "represented\nfeatures": _np(represented),
            "largest interference\n" + r"$\max_i \sum_{j \neq i} (\hat W_i \cdot W_j)^2$": _np(max_interference)}
    if any(len(v) != len(lam) for v in rows.values()):
        raise ValueError("l1, loss, dimensions_per_feature, represented and max_interference need one value per "
                         "instance")
    fig = Figure(figsize=(5.8, 8.0), layout="constrained")
    axes = fig.subplots(len(rows), 2, sharey="row", width_ratios=[1, 6], squeeze=False)
    guides = {1: (1.0, "1: no superposition"), 2: (float(n_hidden), f"m = {n_hidden}"), 3: (0.0, "")}
    for r, (label, values) in enumerate(rows.items()):
        _l1_row(axes[r], lam, values, label, guides.get(r))
    axes[0, 0].set_yscale("log")
    axes[-1, 1].set_xlabel("L1 coefficient λ on the hidden activations")
    axes[-1, 0].set_xlabel("λ")
    if feature_probability is not None:
        fig.suptitle(sparsity_label(feature_probability), fontsize=10)
    return fig


def _l1_row(axes, lam: np.ndarray, values: np.ndarray, label: str, guide: tuple[float, str] | None) -> None:
    """One row of `l1_figure`: λ = 0 on the narrow left axes, λ > 0 on the log axes to its right."""
    ax0, ax = axes
    zero, positive = lam == 0, lam > 0
    ax0.plot(np.zeros(zero.sum()), values[zero], "o", color="black", ms=4)
    order = np.argsort(lam[positive])
    ax.plot(lam[positive][order], values[positive][order], "o-", color="black", ms=4)
    ax.set_xscale("log")
    ax0.set_xticks([0], ["0"])
    ax0.set_xlim(-1, 1)
    ax0.set_ylabel(label, fontsize=9)
    if guide is not None:
        value, text = guide
        for a in (ax0, ax):
            a.axhline(value, color="0.6", lw=0.8, ls="--", zorder=0)
        ax.text(0.01, value, text, transform=ax.get_yaxis_transform(), ha="left", va="bottom", fontsize=7,
                color="0.4")
    for a in (ax0, ax):
        _tidy(a)
    ax.tick_params(labelleft=False)


def loss_terms_figure(
    feature_probability: Sequence[Probability],
    terms: Mapping[str, Mapping[str, Tensor]],
    measured: Mapping[str, tuple[Tensor, Tensor]],
    *,
    references: Mapping[str, Mapping[str, Tensor]] | None = None,
) -> Figure:
    """Each model's loss terms against sparsity, next to the measured (Monte-Carlo) loss.

    One column per model: the terms on log-log axes (non-positive values are not drawn; the legend
    to their right) with the measured loss as black points with ±2 standard-error bars, and below
    them each term's share of the measured loss, with the share of all terms together (1 when the
    terms explain the loss).

    **Arguments:**
    - ``feature_probability``: one uniform p per instance (the x axis).
    - ``terms``: model label → {term name → ``[inst]``}.
    - ``measured``: model label → (mean ``[inst]``, standard error ``[inst]``).
    - ``references``: model label → {name → ``[inst]``}: extra curves drawn dashed in the top row
      only (e.g. the interference a linear readout would pay).

    **Returns:** a Figure with 2 axes per model.
    """
    if set(terms) != set(measured) or not terms:
        raise ValueError("terms and measured need the same, non-empty, model labels")
    references = references or {}
    fig = Figure(figsize=(6.6 * len(terms), 6.0), layout="constrained")
    axes = fig.subplots(2, len(terms), squeeze=False, sharex=True, height_ratios=[1.3, 1.0])
    for c, (model, parts) in enumerate(terms.items()):
        mean, stderr = (_np(t) for t in measured[model])
        x = _inverse_p(feature_probability, len(mean), "loss_terms_figure")
        order = np.argsort(x)
        top, share = axes[0, c], axes[1, c]
        colors = _colors(len(parts) + len(references.get(model, {})))
        total = np.zeros_like(mean)
        for color, (name, value) in zip(colors, parts.items(), strict=False):
            v = _np(value)
            total = total + v
            top.plot(x[order], np.where(v > 0, v, np.nan)[order], "o-", color=color, ms=3.5, label=name)
            share.plot(x[order], (v / mean)[order], "o-", color=color, ms=3.5)
        for color, (name, value) in zip(colors[len(parts):], references.get(model, {}).items(), strict=True):
            v = _np(value)
            top.plot(x[order], np.where(v > 0, v, np.nan)[order], "--", color=color, lw=1.2, label=name)
        top.errorbar(x[order], mean[order], yerr=2 * stderr[order], fmt="s", color="black", ms=4, mfc="none",
                     capsize=2, label="measured loss (Monte Carlo)", zorder=5)
        share.errorbar(x[order], (total / mean)[order], yerr=(2 * stderr / mean)[order], fmt="s-", color="black", ms=4,
                       mfc="none", capsize=2, label="all terms (±2 standard errors)")
        share.axhline(1.0, color="0.6", lw=0.8, ls="--", zorder=0)
        top.set_yscale("log")
        top.set_xscale("log")
        top.set_title(model, fontsize=10)
        top.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        share.legend(fontsize=7, frameon=False, loc="center left")
        share.set_xlabel(SPARSITY_AXIS)
        if c == 0:
            top.set_ylabel("loss term")
            share.set_ylabel("share of the measured loss")
        for ax in (top, share):
            _tidy(ax)
    return fig

