"""How a `Run` shows itself: a one-line ``repr`` and, in Jupyter, an HTML table.

The table has the configuration in its caption and one row per saved instance: its configuration
and restart, the feature probability p (sparsity S = 1 − p), the final loss (with its standard error
where the metrics hold one, as ``final_loss_se``), the features it represents (‖W_i‖ > 0.5) and
its dimensions per feature D*. Pure formatting: nothing is printed or written.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import Run

MAX_ROWS = 24
"""Instances listed in the HTML table; the rest are summarised in one line."""


def _p_text(p: float | list[float]) -> str:
    if isinstance(p, int | float):
        return f"{p:.4g}"
    values = [float(q) for q in p]
    if all(q == values[0] for q in values):
        return f"{values[0]:.4g}"
    return f"{min(values):.3g}…{max(values):.3g} per feature"


def _shape(run: Run) -> str:
    m = run.config.model
    return f"{m.kind} {m.n_features}→{m.n_hidden}"


def run_repr(run: Run) -> str:
    """``Run(relu_output 5→2, 3 instances, 10000 steps, loss 0.0012…0.081, path='runs/x')``."""
    losses = run.metrics.final_loss
    loss = f"loss {min(losses):.3g}…{max(losses):.3g}" if len(losses) > 1 else f"loss {losses[0]:.3g}"
    where = f", path={str(run.path)!r}" if run.path is not None else ""
    return f"Run({_shape(run)}, {run.n_instances} instances, {run.config.train.steps} steps, {loss}{where})"


def _caption(run: Run) -> str:
    c = run.config
    d, t = c.data, c.train
    parts = [f"<b>{escape(_shape(run))}</b>", f"{run.n_instances} instances", f"{escape(d.distribution)} features"]
    if d.set_size is not None:
        parts.append(f"sets of {d.set_size}")
    parts += [f"{t.steps} steps × batch {t.batch_size}", f"{escape(str(t.optimizer))} lr {t.lr:g}",
              f"best of {t.restarts}"]
    if run.path is not None:
        parts.append(f"<code>{escape(str(run.path))}</code>")
    return " · ".join(parts)


def run_html(run: Run) -> str:
    """The run as an HTML table (Jupyter's ``_repr_html_``)."""
    from .analysis import dimensions_per_feature, represented_count

    m = run.metrics
    stderr = getattr(m, "final_loss_se", None)
    count, d_star = represented_count(run.W).tolist(), dimensions_per_feature(run.W).tolist()
    head = "".join(f"<th>{h}</th>" for h in ("instance", "config", "restart", "p = 1 − S", "loss",
                                              "represented", "D*"))
    rows = []
    for k in range(min(run.n_instances, MAX_ROWS)):
        loss = f"{m.final_loss[k]:.4g}" + (f" ± {stderr[k]:.2g}" if stderr is not None else "")
        cells = (k, m.config_index[k], m.restart[k], _p_text(m.feature_probability[k]), loss,
                 f"{count[k]} / {run.config.model.n_features}", f"{d_star[k]:.3f}")
        rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    if run.n_instances > MAX_ROWS:
        rows.append(f'<tr><td colspan="7">… {run.n_instances - MAX_ROWS} more instances</td></tr>')
    return (f'<table class="superposition-run"><caption style="text-align:left">{_caption(run)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
