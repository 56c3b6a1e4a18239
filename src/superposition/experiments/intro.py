"""Section 1 (introduction): five features in two dimensions.

n = 5, m = 2, importance 0.9^i, ReLU output model. Paper: dense data gives the two most important
features orthogonal dimensions and drops the rest; at S = 80% four features sit in two antipodal
pairs; at S = 90% all five form a pentagon. Two-dimensional models often stop in worse
geometries, hence best-of-N restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..analysis import represented, unit_directions
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..figures import intro_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "1 Introduction"
HIGHLIGHT = (1.0, 0.2, 0.1)
"""The paper's three panels: S = 0, 80%, 90%."""
GRID = tuple(round(20.0 ** (-i / 9), 6) for i in range(10))
"""The public notebook's density grid, 20^-linspace(0, 1, 10)."""
PENTAGON_GAP = 72.0
PENTAGON_TOLERANCE = 10.0
"""The paper's pentagon is regular (neighbours 72° apart); a gap may be off by this many degrees
(fixed in advance: a tenth of the way to a missing or doubled feature's 144° or 0° at the worst)."""
IMPORTANCE = 0.9 ** torch.arange(5.0)


def configs(quick: bool) -> dict[str, RunConfig]:
    return {"relu_output": RunConfig(
        model=ModelConfig("relu_output", n_features=5, n_hidden=2),
        data=DataConfig(feature_probability=HIGHLIGHT + GRID, importance_decay=0.9),
        # 2-D models stall in sub-optimal geometries; restarts are cheap extra instances.
        train=TrainConfig(steps=4000 if quick else 10_000, restarts=8 if quick else 16),
        name="intro",
    )}


def _model(run: Run, p: float) -> Tensor:
    """W [feat, 2] of the first saved instance with feature probability p."""
    return run.W[run.metrics.feature_probability.index(p)]


@dataclass(frozen=True)
class Analysis:
    """The models the figures and claims read."""

    highlight: Tensor
    """``[3, feat, 2]``: W at the paper's three panels `HIGHLIGHT`."""
    grid: Tensor
    """``[len(GRID), feat, 2]``: W along the density grid `GRID`."""
    slider: tuple[list[float], Tensor]
    """Every density (descending) and its ``W [p, feat, 2]``, for the interactive figure."""


def analyse(runs: dict[str, Run]) -> Analysis:
    run = runs["relu_output"]
    ps = sorted(set(HIGHLIGHT + GRID), reverse=True)
    return Analysis(torch.stack([_model(run, p) for p in HIGHLIGHT]), torch.stack([_model(run, p) for p in GRID]),
                    (ps, torch.stack([_model(run, p) for p in ps])))


def _figures(a: Analysis) -> dict[str, object]:
    return {"intro": intro_figure(a.highlight, list(HIGHLIGHT), IMPORTANCE),
            "intro_grid": intro_figure(a.grid, list(GRID), IMPORTANCE)}


def _interactive(a: Analysis) -> dict[str, object]:
    from ..figures.interactive import geometry_slider

    ps, W = a.slider
    return {"intro_slider": geometry_slider(W, ps, IMPORTANCE)}


def _cosines(W: Tensor) -> Tensor:
    u = unit_directions(W)
    return u @ u.T


def dense_claim(W: Tensor) -> ClaimResult:
    on = represented(W)
    cos = abs(float(_cosines(W)[0, 1]))
    held = on.tolist() == [True, True, False, False, False] and cos < 0.1
    return ClaimResult(SECTION, "Dense: the two most important features get orthogonal dimensions, the rest none",
                       "features {0, 1} represented, |cos| < 0.1",
                       f"represented {_ids(on)}, |cos(W0, W1)| = {fmt(cos)}", held)


def antipodal_claim(W: Tensor) -> ClaimResult:
    on = represented(W)
    cos = _cosines(W)[on][:, on]
    partner = cos.min(dim=1).values  # each represented feature's most opposed neighbour
    worst = float(partner.max()) if on.any() else 1.0
    held = int(on.sum()) == 4 and worst < -0.9
    return ClaimResult(SECTION, "At S = 80%, four features are stored as two antipodal pairs",
                       "4 represented, each with a partner at cos < -0.9",
                       f"represented {_ids(on)}, worst partner cos = {fmt(worst)}", held)


def pentagon_claim(W: Tensor) -> ClaimResult:
    on = represented(W)
    gaps = angular_gaps(W[on]) if on.any() else torch.tensor([360.0])
    worst = float((gaps - PENTAGON_GAP).abs().max())
    held = int(on.sum()) == 5 and worst <= PENTAGON_TOLERANCE
    return ClaimResult(SECTION, "At S = 90%, all five features form a pentagon",
                       f"5 represented, neighbours {PENTAGON_GAP:g}° ± {PENTAGON_TOLERANCE:g}° apart (a regular "
                       "pentagon, as the paper draws it)",
                       f"represented {_ids(on)}, gaps {fmt(float(gaps.min()))}°–{fmt(float(gaps.max()))}°", held)


def angular_gaps(W: Tensor) -> Tensor:
    """Angles (degrees) between angularly neighbouring vectors of a 2-D ``W [feat, 2]``."""
    angles = torch.sort(torch.rad2deg(torch.atan2(W[:, 1], W[:, 0]))).values
    return torch.diff(torch.cat([angles, angles[:1] + 360.0]))


def _ids(mask: Tensor) -> str:
    return "{" + ", ".join(str(i) for i in mask.nonzero().flatten().tolist()) + "}"


def _claims(a: Analysis) -> list[ClaimResult]:
    dense, pairs, pent = a.highlight
    results = [dense_claim(dense), antipodal_claim(pairs), pentagon_claim(pent)]
    grid_counts = represented(a.grid).sum(-1).tolist()
    monotone = all(x <= y for x, y in zip(grid_counts, grid_counts[1:], strict=False))
    results.append(ClaimResult(SECTION, "Sparser features are stored in superposition: more features fit as S grows",
                               "represented count non-decreasing along 1 − S = 1 … 0.05",
                               f"counts {grid_counts}", monotone and grid_counts[-1] > 2))
    return results


RECIPE = Recipe("intro", SECTION, "5 features in 2 dimensions: orthogonal, antipodal pairs, pentagon",
                configs, _figures, _claims, _interactive, analyse=analyse)
