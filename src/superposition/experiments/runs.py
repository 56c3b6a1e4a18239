"""Run declarations that several recipes analyse, so that recipes never import each other.

Within one reproduction a run of the same config is trained once and shared (`run_recipe`'s
`shared`), so the recipes that read the same models must declare the same configs: `basic` and
`loss-decomposition` the basic sweep, `uniform` and `geometry` the uniform sweep.
"""

from __future__ import annotations

import numpy as np

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..run import Run

BASIC_PROBABILITIES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
"""1 − S of the basic sweep (section 3)."""
UNIFORM_RUN = "relu_output"
"""The uniform sweep's one run (section 5.1), the same name in `uniform` and `geometry`."""


def basic_configs(quick: bool) -> dict[str, RunConfig]:
    def one(kind: str) -> RunConfig:
        return RunConfig(
            model=ModelConfig(kind, n_features=20, n_hidden=5),
            data=DataConfig(feature_probability=BASIC_PROBABILITIES, importance_decay=0.7),
            # Very sparse data carry little signal per batch: the sparsest models need the steps.
            train=TrainConfig(steps=5000 if quick else 20_000, restarts=2 if quick else 4),
            name=f"basic-{kind}",
        )

    return {"linear": one("linear"), "relu_output": one("relu_output")}


BAND = (1.6, 6.0)
"""1/(1 − S) where D* passes 1/2 (quick and paper size): the grid is finer there, so that a plateau of
a ×1.5 range in 1/p spans several points."""
BAND_STEP = 1.1
"""The grid's ratio of consecutive 1/p inside `BAND` (×1.23–1.25 outside)."""


def inverse_p_grid(high: float, points: int) -> tuple[float, ...]:
    """p with 1/p log-spaced from 1 to `high` (4 significant digits), densest first."""
    return tuple(float(f"{p:.4g}") for p in np.geomspace(1.0, 1.0 / high, points))


def banded_grid(high: float, points: int) -> tuple[float, ...]:
    """`inverse_p_grid(high, points)` outside `BAND`, and inside it 1/p stepping by `BAND_STEP`; densest first."""
    lo, hi = BAND
    inside = np.geomspace(lo, hi, int(np.ceil(np.log(hi / lo) / np.log(BAND_STEP))) + 1)
    outside = [1.0 / p for p in inverse_p_grid(high, points) if not lo / BAND_STEP < 1.0 / p < hi * BAND_STEP]
    return tuple(float(f"{1.0 / v:.4g}") for v in sorted([*outside, *inside]))


def uniform_configs(quick: bool) -> dict[str, RunConfig]:
    n, m = (80, 10) if quick else (400, 30)
    return {UNIFORM_RUN: RunConfig(
        model=ModelConfig("relu_output", n_features=n, n_hidden=m),
        # All features equal: importance 1 (the default decay 1.0), one p per configuration.
        data=DataConfig(feature_probability=banded_grid(12.0, 13) if quick else banded_grid(1000.0, 32)),
        # Losses settle by ~2000 steps (quick) and ~3000 (400/30, the sparsest last: see uniform_loss.png), D* by
        # ~4000; only the transition between D* = 1 and 1/2 keeps drifting slowly. 4000 steps: ~18 min on 1 core.
        train=TrainConfig(steps=3000 if quick else 4000, lr=1e-3),
        name="uniform",
    )}


def probabilities(run: Run) -> list[float]:
    return [float(p) for p in run.metrics.feature_probability]
