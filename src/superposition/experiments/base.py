"""Recipes: an experiment of the paper as a declaration, and the machinery that runs it.

A `Recipe` is four stages: the run configs it needs (a quick size and the paper's size), an
analysis of the trained runs computed once, the figures drawn from that analysis, and the paper's
claims as checks on it. `run_recipe`
trains (or reuses finished runs), saves the figures as PNGs and the claims as claims.json:

    OUT/
      RUN_NAME/        one run directory per config (see superposition.run)
      analysis/        what an analysis that `stores` trained itself (e.g. SAE run directories)
      FIGURE.png
      claims.json      [{section, claim, expected, measured, held}, ...]
      experiment.json  recipe name, section, quick or not, runs, figures, timings (written last)
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from .. import run as rundir
from ..compiling import shared_shapes
from ..config import RunConfig
from ..figures import save_figure
from ..run import Run, RunDirError, load_run
from ..train import CompileMode, train

EXPERIMENT = "experiment.json"
ANALYSIS = "analysis"


@dataclass(frozen=True)
class ClaimResult:
    """One claim of the paper checked against measured results."""

    section: str
    claim: str
    expected: str
    measured: str
    held: bool


@dataclass(frozen=True)
class Recipe:
    """An experiment: its runs, its analysis, figures and claims. Everything else is shared machinery.

    With an `analyse` stage, `figures`, `claims` and `interactive` receive its result (computed once
    per recipe run) instead of the runs; without one they receive the runs themselves.
    """

    name: str
    section: str
    summary: str
    configs: Callable[[bool], dict[str, RunConfig]]
    """quick -> {run name: config}."""
    figures: Callable[[Any], dict[str, Figure]]
    """analysis (or runs) -> {figure name: figure}."""
    claims: Callable[[Any], list[ClaimResult]]
    """analysis (or runs) -> the paper's claims, checked."""
    interactive: Callable[[Any], dict[str, Any]] | None = None
    """analysis (or runs) -> {figure name: plotly figure} for the HTML report (sliders, hover values)."""
    analyse: Callable[..., Any] | None = None
    """runs -> the recipe's analysis result (pure; computed once and shared by the three stages above)."""
    stores: bool = False
    """The analysis trains models of its own (e.g. SAEs) and takes ``store=``: a directory where it
    keeps them, so that rerunning the recipe loads them instead of training them again."""

    analysis_work: Callable[[bool], float] | None = None
    """quick -> the training the analysis stage does itself (e.g. SAEs), in `RunConfig.work` units."""

    def work(self, quick: bool) -> float:
        """Relative cost of running the recipe (its runs' and its analysis's training), for scheduling."""
        extra = self.analysis_work(quick) if self.analysis_work is not None else 0.0
        return sum(config.work for config in self.configs(quick).values()) + extra

    def analysed(self, runs: dict[str, Run], store: Path | None = None) -> Any:
        """What the figure, claim and interactive stages receive: `analyse(runs)`, or the runs.
        `store`: where an analysis that `stores` keeps what it trains (None: keep nothing)."""
        if self.analyse is None:
            return runs
        return self.analyse(runs, store=store) if self.stores else self.analyse(runs)


@dataclass
class RecipeResult:
    recipe: Recipe
    out: Path
    runs: dict[str, Run]
    figures: dict[str, Path] = field(default_factory=dict)
    claims: list[ClaimResult] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    """Runs loaded from finished run directories instead of trained."""
    seconds: float = 0.0


def run_recipe(recipe: Recipe, out: str | os.PathLike[str], *, quick: bool = False, device: str = "cpu",
               compile: CompileMode = "auto", progress: bool = True, overwrite: bool = False,
               shared: dict[str, Path] | None = None) -> RecipeResult:
    """Train the recipe's runs (reusing finished ones), draw its figures, check its claims.

    `shared` maps a config's JSON to a finished run directory of the same config (e.g. another
    recipe's, within one reproduction): such runs are reused from there instead of trained again,
    and the runs of this recipe are added to it.
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = RecipeResult(recipe, out_dir, {})
    started, t0 = rundir.now(), time.perf_counter()
    (out_dir / EXPERIMENT).unlink(missing_ok=True)
    locations: dict[str, str] = {}
    with shared_shapes():  # a recipe trains many shapes: one compiled graph per model family
        for name, config in recipe.configs(quick).items():
            path, key = out_dir / name, config.to_json()
            elsewhere = (shared or {}).get(key)
            if elsewhere is not None and rundir.is_complete(elsewhere) and not rundir.is_complete(path):
                path = elsewhere
            if (not overwrite or path != out_dir / name) and rundir.is_complete(path):
                result.runs[name] = _reuse(path, config)
                result.reused.append(name)
            else:
                result.runs[name] = train(config, device=device, compile=compile, progress=progress, out=path,
                                          overwrite=overwrite)
            locations[name] = os.path.relpath(path, out_dir)
            if shared is not None:
                shared[key] = path
    store = out_dir / ANALYSIS
    if overwrite:
        shutil.rmtree(store, ignore_errors=True)
    analysis = recipe.analysed(result.runs, store if recipe.stores else None)
    for name, fig in recipe.figures(analysis).items():
        result.figures[name] = save_figure(fig, out_dir / f"{name}.png")
    result.claims = recipe.claims(analysis)
    rundir.atomic_write_json(out_dir / "claims.json", [asdict(c) for c in result.claims])
    result.seconds = time.perf_counter() - t0
    rundir.atomic_write_json(out_dir / EXPERIMENT, {
        "experiment": recipe.name, "section": recipe.section, "summary": recipe.summary, "quick": quick,
        "runs": locations, "reused": result.reused,
        "figures": [p.name for p in result.figures.values()], "started": started, "finished": rundir.now(),
        "seconds": round(result.seconds, 2)})
    return result


def read_experiment(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The experiment.json of a finished recipe directory, or None."""
    import json

    try:
        return json.loads((Path(path) / EXPERIMENT).read_text())
    except (OSError, ValueError):
        return None


def _reuse(path: Path, config: RunConfig) -> Run:
    run = load_run(path)
    if run.config != config:
        raise RunDirError(f"{path}: holds a finished run of a different config (e.g. --quick vs full); "
                          "pass --overwrite or choose another --out")
    return run


def fmt(value: float) -> str:
    return f"{value:.3g}"


CURVE_WINDOW = 5
"""Logged losses averaged at each end of the second half of training (`late_fall`)."""
SETTLED = 0.005
"""A run whose loss still fell by more than this fraction over the second half of training had not settled
(and one that fell by less had stalled, where it stays above a known better solution)."""


def late_fall(curve: Sequence[Sequence[float]]) -> tuple[float, ...] | None:
    """Relative fall of each instance's logged loss ``curve [inst][log]`` (`Metrics.loss_curve`) over the
    second half of training: 1 − (mean of the last w logs) / (mean of the w around the middle), with
    w = `CURVE_WINDOW` or a quarter of the logs if fewer; None when fewer than 8 losses were logged."""
    c = torch.as_tensor(curve, dtype=torch.float64)
    if c.ndim != 2 or c.shape[1] < 8:
        return None
    w = min(CURVE_WINDOW, c.shape[1] // 4)
    start = c.shape[1] // 2 - w // 2
    return tuple((1 - c[:, -w:].mean(1) / c[:, start:start + w].mean(1)).tolist())
