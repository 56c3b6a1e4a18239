"""Section 5.1 (uniform superposition): D* does not depend on n, and features learned scale with m.

Paper: "it turns out that the number of input features n doesn't matter as long as it's much
larger than the number of hidden dimensions, n ≫ m. And it also turns out that the number of
hidden dimensions doesn't really matter as long as we're interested in the ratio of features
learned to hidden features. Doubling the number of hidden dimensions just doubles the number of
features the model learns."

Uniform features (importance 1, one p per configuration), ReLU output model, three shapes: a base
(m, n), the same m with twice the features (2n), and twice the dimensions (2m) with the base n.
The measured quantities are D* = m/‖W‖_F² and ‖W‖_F² (≈ the number of features learned). Paper
size: m = 15 and 30 at n = 400, and m = 30 at n = 800 (the paper's n = 400, m = 30 in both
comparisons); quick: m = 5 and 10 at n = 80, and m = 5 at n = 40. The sparsest p keeps the learned
features well below n (≈ m / D* ≲ n / 3), the regime the paper's "n ≫ m" refers to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from ..analysis import dimensions_per_feature
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..run import Run
from .base import SETTLED, ClaimResult, Recipe, fmt, late_fall

SECTION = "5.1 Uniform superposition"
SHAPES = {
    # name: (m, n) at quick size, at paper size
    "base": ((5, 80), (15, 400)),
    "more_features": ((5, 40), (30, 800)),
    "more_dimensions": ((10, 80), (30, 400)),
}
"""Quick: base m = 5 (n = 80) vs n = 40, and vs m = 10. Paper: the pairs below compare like with like."""
N_PAIR = {False: ("more_dimensions", "more_features"), True: ("more_features", "base")}
"""(smaller n, larger n) at the same m."""
M_PAIR = {False: ("base", "more_dimensions"), True: ("base", "more_dimensions")}
"""(m, 2m) at the same n."""
INVERSE_P = {True: (1.0, 2.0, 4.0, 8.0), False: (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)}
"""1/p of the configurations."""
D_TOLERANCE = 0.10
"""Relative |D*(n) − D*(2n)| / D*(2n) allowed at every p (fixed before training)."""
RATIO_TOLERANCE = 0.10
"""Relative |‖W‖_F²(2m) / ‖W‖_F²(m) − 2| / 2 allowed at every p (fixed before training)."""


def configs(quick: bool) -> dict[str, RunConfig]:
    ps = tuple(float(f"{1 / x:.4g}") for x in INVERSE_P[quick])

    def one(name: str) -> RunConfig:
        m, n = SHAPES[name][0 if quick else 1]
        return RunConfig(model=ModelConfig("relu_output", n_features=n, n_hidden=m),
                         data=DataConfig(feature_probability=ps),
                         # As in `uniform`: losses settle by ~2000 steps at these sizes, D* by ~4000.
                         train=TrainConfig(steps=3000 if quick else 4000, lr=1e-3),
                         name=f"uniform-scaling-{name}")

    return {name: one(name) for name in SHAPES}


@dataclass(frozen=True)
class ScalingAnalysis:
    probabilities: tuple[float, ...]
    shapes: dict[str, tuple[int, int]]
    """Run name → (m, n)."""
    dimensions_per_feature: dict[str, np.ndarray]
    """Run name → D* ``[config]``."""
    frobenius: dict[str, np.ndarray]
    """Run name → ‖W‖_F² ``[config]`` (≈ features learned)."""
    n_pair: tuple[str, str]
    m_pair: tuple[str, str]
    late_fall: dict[str, np.ndarray] | None = None
    """Run name → relative fall of the training loss over the second half of training ``[config]``
    (mean of the last `base.CURVE_WINDOW` logged losses against that around the midpoint); None if unlogged."""
    strong: dict[str, np.ndarray] | None = None
    """Run name → features with ‖W_i‖ > 0.5 ``[config]`` (the rest smeared at small norms, as when dense)."""


def analyse(runs: dict[str, Run]) -> ScalingAnalysis:
    shapes = {name: (r.config.model.n_hidden, r.config.model.n_features) for name, r in runs.items()}
    d = {name: dimensions_per_feature(r.W).double().numpy() for name, r in runs.items()}
    f = {name: r.W.double().square().sum(dim=(-2, -1)).numpy() for name, r in runs.items()}
    quick = shapes["base"] == SHAPES["base"][0]
    first = next(iter(runs.values()))
    falls = {name: _fall(r) for name, r in runs.items()}
    strong = {name: (r.W.norm(dim=-1) > 0.5).sum(-1).numpy() for name, r in runs.items()}
    return ScalingAnalysis(tuple(float(p) for p in first.metrics.feature_probability), shapes, d, f,
                           N_PAIR[quick], M_PAIR[quick],
                           None if any(v is None for v in falls.values()) else falls, strong)


def _fall(run: Run) -> np.ndarray | None:
    fall = late_fall(run.metrics.loss_curve)
    return None if fall is None else np.asarray(fall)


def _row(values: np.ndarray) -> str:
    return "[" + ", ".join(fmt(float(v)) for v in values) + "]"


def n_claim(a: ScalingAnalysis) -> ClaimResult:
    small, large = a.n_pair
    d_small, d_large = a.dimensions_per_feature[small], a.dimensions_per_feature[large]
    rel = np.abs(d_small - d_large) / d_large
    (m, n1), (_, n2) = a.shapes[small], a.shapes[large]
    return ClaimResult(SECTION, "D* does not depend on n once n ≫ m",
                       f"m = {m}: |D*(n = {n1}) − D*(n = {n2})| ≤ {D_TOLERANCE:.0%} of D*(n = {n2}) at every "
                       f"1/(1 − S) in {list(INVERSE_P[_quick(a)])}",
                       f"D*(n = {n1}) {_row(d_small)}, D*(n = {n2}) {_row(d_large)}; largest difference "
                       f"{float(rel.max()):.1%}{_settling(a, (small, large), rel, D_TOLERANCE)}",
                       bool((rel <= D_TOLERANCE).all()))


def m_claim(a: ScalingAnalysis) -> ClaimResult:
    base, double = a.m_pair
    ratio = a.frobenius[double] / a.frobenius[base]
    rel = np.abs(ratio - 2) / 2
    (m1, n), (m2, _) = a.shapes[base], a.shapes[double]
    return ClaimResult(SECTION, "Doubling the hidden dimensions doubles the number of features learned",
                       f"n = {n}: ‖W‖_F²(m = {m2}) / ‖W‖_F²(m = {m1}) within {RATIO_TOLERANCE:.0%} of 2 at every "
                       f"1/(1 − S) in {list(INVERSE_P[_quick(a)])}",
                       f"‖W‖_F² (m = {m1}) {_row(a.frobenius[base])}, (m = {m2}) {_row(a.frobenius[double])}; "
                       f"ratios {_row(ratio)}{_settling(a, (base, double), rel, RATIO_TOLERANCE)}",
                       bool((rel <= RATIO_TOLERANCE).all()))


def _settling(a: ScalingAnalysis, names: tuple[str, str], rel: np.ndarray, tolerance: float) -> str:
    """At the worst 1/(1 − S), when outside the tolerance: whether the two runs had settled (their loss
    fall over the second half of training) and how many features each holds at norm > 0.5."""
    k = int(np.argmax(rel))
    if rel[k] <= tolerance or a.late_fall is None or a.strong is None:
        return ""
    label = {name: ", ".join(f"{s} = {v}" for s, v in zip(("m", "n"), a.shapes[name], strict=True))
             for name in names}
    falls = ", ".join(f"{float(a.late_fall[name][k]):.2%} ({label[name]})" for name in names)
    strong = ", ".join(f"{int(a.strong[name][k])} ({label[name]})" for name in names)
    lead = "cause: not settled there: " if any(a.late_fall[name][k] > SETTLED for name in names) else ""
    return (f"; {lead}at 1/(1 − S) = {fmt(1 / a.probabilities[k])} (the worst) the training loss still fell "
            f"{falls} over the second half of training; features of norm > 0.5 {strong}")


def _quick(a: ScalingAnalysis) -> bool:
    return a.shapes["base"] == SHAPES["base"][0]


def _claims(a: ScalingAnalysis) -> list[ClaimResult]:
    return [n_claim(a), m_claim(a)]


def _figures(a: ScalingAnalysis) -> dict[str, Figure]:
    fig = Figure(figsize=(5.0, 3.4), layout="constrained")
    ax = fig.subplots()
    x = 1 / np.asarray(a.probabilities)
    for name, d in a.dimensions_per_feature.items():
        m, n = a.shapes[name]
        ax.plot(x, d, marker="o", label=f"m = {m}, n = {n}")
    ax.set(xscale="log", xlabel="1/(1 − S)", ylabel="D* = m/‖W‖_F²", title="dimensions per feature")
    ax.axhline(0.5, color="0.7", ls=":", lw=1)
    ax.legend(fontsize=7)
    return {"uniform_scaling": fig}


RECIPE = Recipe("uniform-scaling", SECTION, "D* against n and m: independent of n ≫ m, features learned ∝ m",
                configs, _figures, _claims, analyse=analyse)
