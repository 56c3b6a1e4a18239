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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from . import run as rundir
from .config import ConfigError
from .experiments import FOLLOW_UPS, RECIPES, get_recipe, run_recipe
from .train import CompileMode

Status = Literal["held", "not held", "error"]
SCORECARD_JSON, SCORECARD_MD, ERROR_FILE = "scorecard.json", "scorecard.md", "error.txt"


@dataclass(frozen=True)
class ScoreRow:
    """One paper claim and what was measured (or the error that prevented measuring it)."""

    experiment: str
    section: str
    claim: str
    expected: str
    measured: str
    status: Status

    @property
    def held(self) -> bool:
        return self.status == "held"


@dataclass
class ExperimentRecord:
    name: str
    section: str
    status: Literal["done", "error"]
    seconds: float
    error: str | None = None


@dataclass
class Scorecard:
    quick: bool
    rows: list[ScoreRow] = field(default_factory=list)
    experiments: list[ExperimentRecord] = field(default_factory=list)

    @property
    def n_held(self) -> int:
        return sum(r.held for r in self.rows)

    @property
    def n_claims(self) -> int:
        return sum(r.status != "error" for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"quick": self.quick, "held": self.n_held, "claims": self.n_claims,
                "errors": [e.name for e in self.experiments if e.status == "error"],
                "experiments": [asdict(e) for e in self.experiments], "rows": [asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Scorecard:
        return cls(raw["quick"], [ScoreRow(**r) for r in raw["rows"]],
                   [ExperimentRecord(**e) for e in raw["experiments"]])

    def to_markdown(self) -> str:
        size = "quick" if self.quick else "paper-size"
        header = ["| section | experiment | claim | expected | measured | result |", "|---|---|---|---|---|---|"]
        lines = [f"# Scorecard ({size} runs): {self.n_held}/{self.n_claims} claims held", "", *header]
        follow_ups = False
        for r in self.rows:
            if r.experiment in FOLLOW_UPS and not follow_ups:  # the paper's successors: their own table
                follow_ups = True
                lines += ["", "## Follow-ups", "", *header]
            cells = [r.section, r.experiment, r.claim, r.expected, r.measured, _mark(r.status)]
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        return "\n".join(lines) + "\n"


def _mark(status: Status) -> str:
    return {"held": "✅ held", "not held": "❌ not held", "error": "⚠️ error"}[status]


def error_row(experiment: str, section: str, message: str) -> ScoreRow:
    """The scorecard row of an experiment that failed before its claims could be checked."""
    return ScoreRow(experiment, section, f"experiment {experiment} runs to the end", "no error", message, "error")


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
    out_dir.mkdir(parents=True, exist_ok=True)
    names = select_recipes(only)
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


def write_scorecard(card: Scorecard, out_dir: Path) -> None:
    rundir.atomic_write_json(out_dir / SCORECARD_JSON, card.to_dict())
    rundir.atomic_write_bytes(out_dir / SCORECARD_MD, card.to_markdown().encode())


def read_scorecard(path: str | os.PathLike[str]) -> Scorecard | None:
    import json

    try:
        return Scorecard.from_dict(json.loads((Path(path) / SCORECARD_JSON).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
