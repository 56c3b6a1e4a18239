# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Interactive figures (plotly) for the HTML report: sliders over sparsity, hover values.

Each function takes the same tensors as its static counterpart and returns a
`plotly.graph_objects.Figure`. A slider is a set of traces per step of which one set is visible;
traces shared by every step (reference lines, overview curves) stay visible throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..analysis import dimensions_per_feature, feature_dimensionality, feature_norms, gram, interference
from .runs import accepts_run
from .style import Probability, _np, _uniform_p, sparsity_label

POLYTOPE_FRACTIONS = {"1": 1.0, "3/4": 0.75, "2/3": 2 / 3, "1/2": 0.5, "2/5": 0.4, "3/8": 0.375}


def _go():
    import plotly.graph_objects as go

    return go


def _labels(feature_probability: Sequence[Probability]) -> list[str]:
    return [sparsity_label(p) for p in feature_probability]


def add_slider(fig, step_traces: Sequence[Sequence[int]], labels: Sequence[str], active: int = 0,
               prefix: str = "") -> None:
    """Show one group of traces at a time. ``step_traces[k]`` are the trace indices of step k; every
    other trace is always visible."""
    n = len(fig.data)
    stepped = {i for group in step_traces for i in group}
    steps = []
    for k, group in enumerate(step_traces):
        visible = [i in group or i not in stepped for i in range(n)]
        steps.append({"method": "restyle", "label": labels[k], "args": [{"visible": visible}]})
    for i in range(n):
        fig.data[i].visible = i in step_traces[active] or i not in stepped
    fig.update_layout(sliders=[{"active": active, "steps": steps, "currentvalue": {"prefix": prefix},
                                "pad": {"t": 40}}])


@accepts_run
def geometry_slider(W: Tensor, feature_probability: Sequence[Probability], importance: Tensor):
    """The intro figure: features of a 2-D hidden space as arrows, one sparsity at a time.

    - ``W [inst, feat, 2]``; ``feature_probability``: one p per instance; ``importance`` ``[feat]``
      or ``[inst, feat]`` (marker colour). Hover gives each feature's index, norm and importance.
    """
    go = _go()
    if W.ndim != 3 or W.shape[-1] != 2:
        raise ValueError(f"W must have shape [inst, feat, 2], got {tuple(W.shape)}")
    Wn, imp = _np(W), _np(torch.as_tensor(importance).expand(W.shape[:2]))
    lim = max(1.1, float(np.abs(Wn).max()) * 1.1)
    fig = go.Figure()
    groups = []
    for k in range(Wn.shape[0]):
        xs = [v for x in Wn[k, :, 0] for v in (0.0, x, None)]
        ys = [v for y in Wn[k, :, 1] for v in (0.0, y, None)]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#555", "width": 2},
                                 hoverinfo="skip", showlegend=False))
        norms = np.linalg.norm(Wn[k], axis=-1)
        fig.add_trace(go.Scatter(
            x=Wn[k, :, 0], y=Wn[k, :, 1], mode="markers", showlegend=False,
            marker={"size": 11, "color": imp[k], "colorscale": "Viridis", "cmin": 0, "cmax": float(imp.max()),
                    "colorbar": {"title": "importance"}},
            customdata=np.stack([np.arange(len(norms)), norms, imp[k]], -1),
            hovertemplate="feature %{customdata[0]}<br>‖W_i‖ = %{customdata[1]:.3f}"
                          "<br>importance %{customdata[2]:.3g}<extra></extra>"))
        groups.append([2 * k, 2 * k + 1])
    add_slider(fig, groups, _labels(feature_probability))
    fig.update_xaxes(range=[-lim, lim], zeroline=True, title="hidden 1")
    fig.update_yaxes(range=[-lim, lim], scaleanchor="x", scaleratio=1, title="hidden 2")
    fig.update_layout(title="Features in the 2-D hidden space (columns W_i)", height=560, width=620)
    return fig


@accepts_run
def superposition_slider(models: Mapping[str, tuple[Tensor, Tensor]], feature_probability: Sequence[Probability]):
    """The section-2 figure: per model, WᵀW (hover values) and ‖W_i‖ coloured by interference, one
    sparsity at a time. ``models``: {label: (W [inst, feat, hidden], b [inst, feat])}."""
    go = _go()
    from plotly.subplots import make_subplots

    labels = list(models)
    fig = make_subplots(rows=len(labels), cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.12,
                        subplot_titles=[t for name in labels for t in (f"{name}: WᵀW", f"{name}: ‖W_i‖")])
    n_steps = len(feature_probability)
    groups: list[list[int]] = [[] for _ in range(n_steps)]
    for row, name in enumerate(labels, start=1):
        W = models[name][0].double()
        G, norms, inter = _np(gram(W)), _np(feature_norms(W)), _np(interference(W))
        for k in range(n_steps):
            groups[k].append(len(fig.data))
            fig.add_trace(go.Heatmap(z=G[k], colorscale="RdBu", zmid=0, zmin=-1, zmax=1, showscale=row == 1,
                                     colorbar={"title": "WᵀW", "len": 0.4, "y": 0.8},
                                     hovertemplate="feature %{y} · feature %{x}: %{z:.3f}<extra></extra>"),
                          row=row, col=1)
            groups[k].append(len(fig.data))
            fig.add_trace(go.Bar(
                y=[f"f{i}" for i in range(len(norms[k]))], x=norms[k], orientation="h", showlegend=False,
                marker={"color": np.clip(inter[k], 0, 1), "colorscale": "Inferno", "cmin": 0, "cmax": 1,
                        "showscale": row == 1, "colorbar": {"title": "interference", "len": 0.4, "y": 0.35}},
                customdata=inter[k],
                hovertemplate="%{y}: ‖W_i‖ = %{x:.3f}<br>interference %{customdata:.3f}<extra></extra>"),
                row=row, col=2)
        fig.update_yaxes(autorange="reversed", row=row, col=1)
        fig.update_yaxes(autorange="reversed", row=row, col=2)
        fig.update_xaxes(range=[0, max(1.2, float(norms.max()) * 1.05)], row=row, col=2)
    add_slider(fig, groups, _labels(feature_probability))
    fig.update_layout(height=380 * len(labels) + 120, width=900, title="Superposition across sparsity")
    return fig


@accepts_run
def dimensionality_slider(W: Tensor, feature_probability: Sequence[Probability]):
    """Uniform superposition: D* = m/‖W‖_F² against 1/(1 − S) (hover values), the current sparsity
    marked, and the histogram of every feature's D_i at that sparsity with the polytope fractions.
    ``W [inst, feat, hidden]``; one uniform p per instance."""
    go = _go()
    from plotly.subplots import make_subplots

    ps = [_uniform_p(p) for p in feature_probability]
    if any(p is None for p in ps):
        raise ValueError("dimensionality_slider needs one uniform p per instance")
    x = 1.0 / np.asarray(ps, dtype=float)
    d_star, d_i = _np(dimensions_per_feature(W.double())), _np(feature_dimensionality(W.double()))
    fig = make_subplots(rows=2, cols=1, row_heights=[0.55, 0.45], vertical_spacing=0.2,
                        subplot_titles=("dimensions per feature D* = m/‖W‖_F²", "feature dimensionalities D_i"))
    fig.add_trace(go.Scatter(x=x, y=d_star, mode="lines+markers", name="D*", line={"color": "black"},
                             customdata=np.asarray(ps),
                             hovertemplate="1/(1−S) = %{x:.3g} (p = %{customdata:.3g})<br>D* = %{y:.3f}"
                                           "<extra></extra>"), row=1, col=1)
    for label, value in POLYTOPE_FRACTIONS.items():
        fig.add_hline(y=value, line={"dash": "dot", "color": "grey", "width": 1}, annotation_text=label,
                      annotation_position="right", row=1, col=1)
    groups = []
    for k in range(len(ps)):
        groups.append([len(fig.data), len(fig.data) + 1])
        fig.add_trace(go.Scatter(x=[x[k]], y=[d_star[k]], mode="markers", showlegend=False,
                                 marker={"size": 14, "color": "crimson"}, hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Histogram(x=d_i[k], xbins={"start": 0, "end": 1.05, "size": 0.025}, showlegend=False,
                                   marker={"color": "steelblue"},
                                   hovertemplate="D_i in %{x}: %{y} features<extra></extra>"), row=2, col=1)
    add_slider(fig, groups, _labels(feature_probability))
    fig.update_xaxes(type="log", title="1/(1 − S)", row=1, col=1)
    fig.update_yaxes(range=[0, 1.1], row=1, col=1)
    fig.update_xaxes(range=[0, 1.05], title="D_i", row=2, col=1)
    fig.update_layout(height=720, width=900, title="Uniform superposition")
    return fig


def heatmap(z: np.ndarray | Tensor, x: Sequence[float], y: Sequence[float], *, title: str, x_title: str,
            y_title: str, value_names: Sequence[str] | None = None, value_colors: Sequence[str] | None = None,
            log_x: bool = False, log_y: bool = False, reverse_x: bool = False):
    """A heatmap with hover values, e.g. a phase diagram (``z [y, x]``; with `value_names`, z holds
    integer classes, the hover shows the class name and `value_colors` gives each class a colour)."""
    go = _go()
    z = np.asarray(torch.as_tensor(z).detach().cpu()) if isinstance(z, Tensor) else np.asarray(z)
    kwargs: dict = {"hovertemplate": f"{x_title} = %{{x:.3g}}<br>{y_title} = %{{y:.3g}}<br>%{{z}}<extra></extra>"}
    if value_names is not None:
        names = np.asarray(value_names, dtype=object)[z.astype(int)]
        kwargs = {"customdata": names, "colorscale": _discrete_scale(value_colors) if value_colors else "Viridis",
                  "zmin": -0.5, "zmax": len(value_names) - 0.5,
                  "hovertemplate": f"{x_title} = %{{x:.3g}}<br>{y_title} = %{{y:.3g}}<br>%{{customdata}}"
                                   "<extra></extra>",
                  "colorbar": {"tickvals": list(range(len(value_names))), "ticktext": list(value_names)}}
    fig = go.Figure(go.Heatmap(z=z, x=list(x), y=list(y), **kwargs))
    fig.update_xaxes(title=x_title, type="log" if log_x else "linear", autorange="reversed" if reverse_x else True)
    fig.update_yaxes(title=y_title, type="log" if log_y else "linear")
    fig.update_layout(title=title, height=480, width=640)
    return fig


def _discrete_scale(colors: Sequence[str]) -> list[list]:
    """A plotly colour scale with one flat band per class for z in [-0.5, k - 0.5]."""
    k = len(colors)
    return [[edge, c] for i, c in enumerate(colors) for edge in (i / k, (i + 1) / k)]


@accepts_run
def loss_curves(steps: Sequence[int], curves: Sequence[Sequence[float]], labels: Sequence[str], *, title: str):
    """Training loss per instance (log y), one line each, hover for values."""
    go = _go()
    fig = go.Figure()
    for curve, label in zip(curves, labels, strict=True):
        fig.add_trace(go.Scatter(x=list(steps), y=list(curve), mode="lines", name=label,
                                 hovertemplate=f"{label}<br>step %{{x}}: loss %{{y:.4g}}<extra></extra>"))
    fig.update_yaxes(type="log", title="training loss")
    fig.update_xaxes(title="step")
    fig.update_layout(title=title, height=420, width=900)
    return fig
