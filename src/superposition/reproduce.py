"""Reproduce the paper: run every experiment recipe, collect its claims into one scorecard.

    OUT/
      NAME/            one recipe directory per experiment (see experiments.base)
      scorecard.json   every claim: experiment, section, claim, expected, measured, status
      scorecard.md     the same as a Markdown table
      report.html      the self-contained report (superposition.report)

The scorecard is rewritten after each experiment, so an interrupted reproduction keeps what it
finished; run again, finished runs are reused instead of retrained. An experiment that fails is a
row with status "error" (its traceback in NAME/error.txt); the others go on.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from . import run as rundir
from .config import ConfigError
from .experiments import RECIPES, get_recipe, run_recipe
from .experiments.base import EXPERIMENT
from .run import RunDirError
from .scorecard import (
    ERROR_FILE,
    SCORECARD_JSON,
    SCORECARD_MD,
    ExperimentRecord,
    Scorecard,
    ScoreRow,
    error_row,
    read_scorecard,
    write_scorecard,
)
from .train import CompileMode

__all__ = ["ERROR_FILE", "SCORECARD_JSON", "SCORECARD_MD", "ExperimentRecord", "ScoreRow", "Scorecard",
           "check_out_dir", "error_row", "read_scorecard", "reproduce", "select_recipes", "write_scorecard"]


def check_out_dir(path: str | os.PathLike[str], kind: str = "experiment") -> None:
    """Refuse to write an experiment (or a reproduction) into a file or into a non-empty directory
    that is not one: only an empty directory, or one this package wrote, is used."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: exists and is not a directory")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise RunDirError(f"{parent}: is a file, so {path} cannot be created")
    if not path.is_dir() or not any(path.iterdir()):
        return
    ours = _is_recipe_dir(path) if kind == "experiment" else (
        (path / SCORECARD_JSON).exists() or any(_is_recipe_dir(d) for d in path.iterdir() if d.is_dir()))
    if not ours:
        raise RunDirError(f"{path}: not empty and not a superposition {kind} directory; choose another --out")


def _is_recipe_dir(path: Path) -> bool:
    marks = (EXPERIMENT, "claims.json", ERROR_FILE)
    return any((path / m).exists() for m in marks) or any(
        (d / rundir.CONFIG).is_file() for d in path.iterdir() if d.is_dir())


def select_recipes(only: Sequence[str] | None) -> list[str]:
    """Names of the recipes to run, in registry order; unknown names are a ConfigError."""
    if not only:
        return list(RECIPES)
    for name in only:
        get_recipe(name)
    return [name for name in RECIPES if name in set(only)]


def reproduce(out: str | os.PathLike[str], *, quick: bool = False, only: Sequence[str] | None = None,
              device: str = "cpu", compile: CompileMode = "auto", progress: bool = True, overwrite: bool = False,
              report: bool = True, on_experiment: Callable[[ExperimentRecord], None] | None = None) -> Scorecard:
    """Run the selected recipes into ``out/NAME`` and return the scorecard (also written to `out`).

    `on_experiment` is called after each experiment (the CLI prints a line there).
    """
    out_dir = Path(out)
    names = select_recipes(only)
    check_out_dir(out_dir, "reproduction")
    out_dir.mkdir(parents=True, exist_ok=True)
    card = Scorecard(quick)
    shared: dict[str, Path] = {}  # recipes that need the same config (e.g. basic, loss-decomposition) share it
    bar = tqdm(names, desc="experiments", unit="exp", disable=not progress, dynamic_ncols=True)
    for name in bar:
        bar.set_postfix_str(name)
        record, rows = _run_one(name, out_dir / name, quick, device, compile, progress, overwrite, shared)
        card.experiments.append(record)
        card.rows.extend(rows)
        write_scorecard(card, out_dir)
        if on_experiment is not None:
            on_experiment(record)
    bar.close()
    if report:
        from .report import build_report

        build_report(out_dir)
    return card


def _run_one(name: str, path: Path, quick: bool, device: str, compile: CompileMode, progress: bool,
             overwrite: bool, shared: dict[str, Path]) -> tuple[ExperimentRecord, list[ScoreRow]]:
    recipe = get_recipe(name)
    t0 = time.perf_counter()
    try:
        result = run_recipe(recipe, path, quick=quick, device=device, compile=compile, progress=progress,
                            overwrite=overwrite, shared=shared)
    except (KeyboardInterrupt, ConfigError):
        raise
    except Exception as exc:  # one experiment's failure must not lose the others
        path.mkdir(parents=True, exist_ok=True)
        rundir.atomic_write_bytes(path / ERROR_FILE, traceback.format_exc().encode())
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        record = ExperimentRecord(name, recipe.section, "error", time.perf_counter() - t0, message)
        return record, [error_row(name, recipe.section, message)]
    (path / ERROR_FILE).unlink(missing_ok=True)
    rows = [ScoreRow(name, c.section, c.claim, c.expected, c.measured, "held" if c.held else "not held")
            for c in result.claims]
    return ExperimentRecord(name, recipe.section, "done", round(time.perf_counter() - t0, 2)), rows
