"""The claim scorecard: its data model and its files (the one owner of scorecard.json / .md).

    OUT/scorecard.json   every claim: experiment, section, claim, expected, measured, status
    OUT/scorecard.md     the same as a Markdown table

`superposition.reproduce` fills it, `superposition.report` shows it; in a notebook a `Scorecard`
shows itself as a table. Reading a scorecard back checks every field (`ScorecardError` names the
file and the field).
"""

from __future__ import annotations

import html
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from .atomic import atomic_write_bytes, atomic_write_json
from .errors import read_json
from .run import RunDirError

Status = Literal["held", "not held", "error"]
STATUSES: tuple[str, ...] = get_args(Status)
SCORECARD_JSON, SCORECARD_MD, ERROR_FILE = "scorecard.json", "scorecard.md", "error.txt"


class ScorecardError(RunDirError):
    """A scorecard file is not what superposition writes."""


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
    """How one experiment of a reproduction went."""

    name: str
    section: str
    status: Literal["done", "error"]
    seconds: float
    error: str | None = None


@dataclass
class Scorecard:
    """Every claim checked by a reproduction, and how each experiment went."""

    quick: bool
    rows: list[ScoreRow] = field(default_factory=list)
    experiments: list[ExperimentRecord] = field(default_factory=list)

    @property
    def n_held(self) -> int:
        return sum(r.held for r in self.rows)

    @property
    def n_claims(self) -> int:
        return sum(r.status != "error" for r in self.rows)

    @property
    def errors(self) -> list[str]:
        return [e.name for e in self.experiments if e.status == "error"]

    def __repr__(self) -> str:
        size = "quick" if self.quick else "paper-size"
        failed = f", failed: {', '.join(self.errors)}" if self.errors else ""
        return (f"<Scorecard ({size}): {self.n_held}/{self.n_claims} claims held, "
                f"{len(self.experiments)} experiments{failed}>")

    def _repr_html_(self) -> str:
        head = "<tr><th>experiment</th><th>claim</th><th>expected</th><th>measured</th><th>result</th></tr>"
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in (r.experiment, r.claim, r.expected, r.measured))
            + f"<td>{_mark(r.status)}</td></tr>" for r in self.rows)
        return f"<p>{html.escape(repr(self))}</p><table>{head}{body}</table>"

    def to_dict(self) -> dict[str, Any]:
        return {"quick": self.quick, "held": self.n_held, "claims": self.n_claims, "errors": self.errors,
                "experiments": [asdict(e) for e in self.experiments], "rows": [asdict(r) for r in self.rows]}

    @classmethod
    def from_dict(cls, raw: Any, where: str = "scorecard") -> Scorecard:
        """Build from `to_dict` output; any other shape is a `ScorecardError` naming the field."""
        if not isinstance(raw, dict):
            raise ScorecardError(f"{where}: must be a JSON object, got {type(raw).__name__}")
        if not isinstance(raw.get("quick"), bool):
            raise ScorecardError(f"{where}: quick must be true or false")
        rows = [score_row(r, f"{where}: rows[{i}]") for i, r in enumerate(_list(raw, "rows", where))]
        exps = [_record(e, f"{where}: experiments[{i}]") for i, e in enumerate(_list(raw, "experiments", where))]
        return cls(raw["quick"], rows, exps)

    def to_markdown(self) -> str:
        size = "quick" if self.quick else "paper-size"
        header = ["| section | experiment | claim | expected | measured | result |", "|---|---|---|---|---|---|"]
        lines = [f"# Scorecard ({size} runs): {self.n_held}/{self.n_claims} claims held", "", *header]
        follow_ups = False
        for r in self.rows:
            if r.section.startswith(FOLLOW_UP) and not follow_ups:  # the paper's successors: their own table
                follow_ups = True
                lines += ["", "## Follow-ups", "", *header]
            cells = [r.section, r.experiment, r.claim, r.expected, r.measured, _mark(r.status)]
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        return "\n".join(lines) + "\n"


FOLLOW_UP = "Follow-up"  # how the sections of the paper's successors begin (experiments.FOLLOW_UPS)


def _list(raw: dict, key: str, where: str) -> list:
    value = raw.get(key)
    if not isinstance(value, list):
        raise ScorecardError(f"{where}: {key} must be a list, got {type(value).__name__}")
    return value


def score_row(raw: Any, where: str) -> ScoreRow:
    """A ScoreRow from its dict, every field checked."""
    names = ("experiment", "section", "claim", "expected", "measured", "status")
    if not isinstance(raw, dict) or set(raw) != set(names):
        raise ScorecardError(f"{where}: must be an object with keys {', '.join(names)}")
    for name in names:
        if not isinstance(raw[name], str):
            raise ScorecardError(f"{where}: {name} must be a string, got {type(raw[name]).__name__}")
    if raw["status"] not in STATUSES:
        raise ScorecardError(f"{where}: status = {raw['status']!r} is invalid: must be one of {', '.join(STATUSES)}")
    return ScoreRow(**raw)


def _record(raw: Any, where: str) -> ExperimentRecord:
    ok = (isinstance(raw, dict) and set(raw) == {"name", "section", "status", "seconds", "error"}
          and isinstance(raw["name"], str) and isinstance(raw["section"], str) and raw["status"] in ("done", "error")
          and isinstance(raw["seconds"], (int, float)) and not isinstance(raw["seconds"], bool)
          and (raw["error"] is None or isinstance(raw["error"], str)))
    if not ok:
        raise ScorecardError(f"{where}: must be {{name, section, status: done|error, seconds, error}}")
    return ExperimentRecord(**raw)


def _mark(status: Status) -> str:
    return {"held": "✅ held", "not held": "❌ not held", "error": "⚠️ error"}[status]


def error_row(experiment: str, section: str, message: str) -> ScoreRow:
    """The scorecard row of an experiment that failed before its claims could be checked."""
    return ScoreRow(experiment, section, f"experiment {experiment} runs to the end", "no error", message, "error")


def write_scorecard(card: Scorecard, out_dir: Path) -> None:
    atomic_write_json(Path(out_dir) / SCORECARD_JSON, card.to_dict())
    atomic_write_bytes(Path(out_dir) / SCORECARD_MD, card.to_markdown().encode())


def read_scorecard(path: str | os.PathLike[str]) -> Scorecard | None:
    """The scorecard in the directory `path`, or None when there is none; a damaged or foreign one
    is a `ScorecardError`."""
    file = Path(path) / SCORECARD_JSON
    try:
        raw = read_json(file, ScorecardError)
    except FileNotFoundError:
        return None
    return Scorecard.from_dict(raw, str(file))
