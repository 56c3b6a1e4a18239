"""A self-contained HTML report of runs, figures and the claim scorecard.

`build_report(DIR)` works on any of:

- a reproduction (``superposition reproduce``): scorecard plus one recipe directory per experiment;
- one recipe directory (``superposition run NAME``);
- a run directory, or a directory holding run directories (``superposition train``).

The page has a section per paper section: the static figures (PNG, embedded), the interactive
ones (plotly, embedded once; sliders over sparsity, hover values), the claims next to them, and
the configuration and time of each run. Nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from . import run as rundir
from .errors import read_json
from .experiments import RECIPES
from .experiments.base import EXPERIMENT
from .run import Run, RunDirError, load_run
from .scorecard import ERROR_FILE, ScoreRow, error_row, read_scorecard

REPORT = "report.html"


@dataclass
class Experiment:
    """What the report shows of one recipe directory (or of plain runs, with no recipe)."""

    name: str
    section: str
    summary: str
    path: Path
    runs: dict[str, Run] = field(default_factory=dict)
    rows: list[ScoreRow] = field(default_factory=list)
    pngs: list[Path] = field(default_factory=list)
    interactive: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def build_report(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the report of `path` to `out` (default ``path/report.html``) atomically; return it."""
    root = Path(path)
    if not root.is_dir():
        raise RunDirError(f"{root}: not a directory")
    target = Path(out) if out is not None else root / REPORT
    if target.is_dir():
        raise RunDirError(f"{target}: is a directory; give the report a file name, such as {target / REPORT}")
    blocking = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise RunDirError(f"{blocking}: is a file, so {target} cannot be written")
    text = render_report(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_bytes(target, text.encode())
    return target


def render_report(root: Path) -> str:
    experiments = collect(root)
    if not experiments:
        raise RunDirError(f"{root}: holds no experiment or run directories to report on")
    card = read_scorecard(root)
    quick = card.quick if card is not None else any(e.meta.get("quick") for e in experiments)
    return _page(root, experiments, quick)


# --- collecting -------------------------------------------------------------------------------


def collect(root: Path) -> list[Experiment]:
    """Every experiment under `root`, ordered by paper section."""
    dirs = [root] if _is_experiment(root) else sorted(d for d in root.iterdir() if d.is_dir() and _is_experiment(d))
    found = [_load_experiment(d) for d in dirs]
    if not found:
        runs = _find_runs(root)
        if runs:
            found = [_plain_runs(root, runs)]
    return sorted(found, key=lambda e: (_section_key(e.section), e.name))


def _is_experiment(path: Path) -> bool:
    return (path / EXPERIMENT).exists() or (path / ERROR_FILE).exists()


def _section_key(section: str) -> tuple[float, ...]:
    match = re.match(r"^(\d+)(?:\.(\d+))?", section)
    return (float(match.group(1)), float(match.group(2) or 0)) if match else (1e9, 0.0)


_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "experiment": str, "section": str, "summary": str, "quick": bool, "runs": dict, "reused": list, "figures": list,
    "started": str, "finished": str, "seconds": (int, float)}


def read_meta(path: Path) -> dict[str, Any] | None:
    """The experiment.json of `path`, every field checked; None when there is none (or it is not
    valid JSON: the experiment did not finish writing it)."""
    file = path / EXPERIMENT
    try:
        meta = read_json(file, RunDirError)
    except (FileNotFoundError, RunDirError):
        return None
    if not isinstance(meta, dict):
        raise RunDirError(f"{file}: must be a JSON object, got {type(meta).__name__}")
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)):
            raise RunDirError(f"{file}: {key} has the wrong type ({type(value).__name__})")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.get("runs", {}).items()):
        raise RunDirError(f"{file}: runs must map run names to relative paths")
    if not all(isinstance(f, str) for f in meta.get("figures", [])):
        raise RunDirError(f"{file}: figures must be a list of file names")
    return meta


def inside(base: Path, relative: str, where: str) -> Path:
    """`base / relative` when it stays inside `base` once resolved (no absolute path, no ``..`` out,
    no symlink out); otherwise a RunDirError naming `where`."""
    if not relative or Path(relative).is_absolute():
        raise RunDirError(f"{where}: {relative!r} must be a path relative to {base}")
    target = (base / relative).resolve()
    if not target.is_relative_to(base.resolve()):
        raise RunDirError(f"{where}: {relative!r} points outside {base}; refused")
    return target


_PNG = b"\x89PNG\r\n\x1a\n"


def _figures(path: Path, names: list[str]) -> list[Path]:
    """The PNG figures named by experiment.json: inside the recipe directory, PNG files only."""
    found = []
    for name in names:
        target = inside(path, name, f"{path / EXPERIMENT}: figures")
        if target.suffix.lower() != ".png":
            raise RunDirError(f"{path / EXPERIMENT}: figure {name!r} is not a .png file; refused")
        if not target.is_file():
            continue
        with open(target, "rb") as handle:
            if handle.read(8) != _PNG:
                raise RunDirError(f"{target}: not a PNG image; refused")
        found.append(target)
    return found


def _load_experiment(path: Path) -> Experiment:
    meta = read_meta(path) or {}
    name = meta.get("experiment", path.name)
    recipe = RECIPES.get(name)
    section = meta.get("section") or (recipe.section if recipe else "Runs")
    summary = meta.get("summary") or (recipe.summary if recipe else "")
    exp = Experiment(name, section, summary, path, meta=meta)
    if not meta:
        exp.error = _read_error(path)
        return exp
    # a run may live in a sibling recipe directory (one run shared within a reproduction), never further out
    home = path.resolve().parent
    where = f"{path / EXPERIMENT}: runs"
    runs = {run_name: inside(home, os.path.relpath((path / sub).resolve(), home), where)
            if not Path(sub).is_absolute() else inside(path, sub, where)
            for run_name, sub in meta.get("runs", {}).items()}
    exp.runs = {run_name: load_run(p) for run_name, p in runs.items()}
    exp.pngs = _figures(path, meta.get("figures", []))
    exp.rows = _claim_rows(path, name)
    if recipe is not None and recipe.interactive is not None:
        exp.interactive = recipe.interactive(recipe.analysed(exp.runs))
    exp.interactive.update(_loss_figures(exp.runs))
    return exp


def _read_error(path: Path) -> str:
    file = path / ERROR_FILE
    if not file.is_file() or file.is_symlink():
        return "did not finish"
    with open(file, "rb") as handle:
        return handle.read(20_000).decode("utf-8", errors="replace")


def _claim_rows(path: Path, name: str) -> list[ScoreRow]:
    file = path / "claims.json"
    try:
        raw = read_json(file, RunDirError)
    except FileNotFoundError:
        return []
    if not isinstance(raw, list):
        raise RunDirError(f"{file}: must be a list of claims, got {type(raw).__name__}")
    rows = []
    for i, c in enumerate(raw):
        texts = ("section", "claim", "expected", "measured")
        ok = isinstance(c, dict) and all(isinstance(c.get(k), str) for k in texts) and isinstance(c.get("held"), bool)
        if not ok:
            raise RunDirError(f"{file}: claim [{i}] must be {{section, claim, expected, measured (strings), "
                              "held (true/false)}")
        rows.append(ScoreRow(name, c["section"], c["claim"], c["expected"], c["measured"],
                             "held" if c["held"] else "not held"))
    return rows


def _find_runs(root: Path) -> dict[str, Path]:
    if rundir.is_complete(root):
        return {root.name: root}
    candidates = sorted({p.parent for p in [*root.glob("*/metrics.json"), *root.glob("*/*/metrics.json")]})
    resolved = root.resolve()
    return {str(p.relative_to(root)): p for p in candidates
            if rundir.is_complete(p) and p.resolve().is_relative_to(resolved)}  # no symlink out of root


def _plain_runs(root: Path, paths: dict[str, Path]) -> Experiment:
    from .figures import interactive as ifig

    exp = Experiment(root.name, "Runs", f"{len(paths)} run(s) in {root}", root)
    exp.runs = {name: load_run(p) for name, p in paths.items()}
    for name, run in exp.runs.items():
        probs = run.metrics.feature_probability
        if "W" in run.params and run.W.shape[-1] == 2:
            exp.interactive[f"{name}: geometry"] = ifig.geometry_slider(run.W, probs, run.importance)
        elif "W" in run.params:
            exp.interactive[f"{name}: WᵀW"] = ifig.superposition_slider({name: (run.W, run.b)}, probs)
    exp.interactive.update(_loss_figures(exp.runs))
    return exp


def _loss_figures(runs: dict[str, Run]) -> dict[str, Any]:
    from .figures import interactive as ifig
    from .figures.style import sparsity_label

    figs = {}
    for name, run in runs.items():
        m = run.metrics
        if not m.loss_steps or run.n_instances > 40:
            continue
        labels = [f"{k}: {sparsity_label(m.feature_probability[k], short=True).replace(chr(10), ', ')}"
                  for k in range(run.n_instances)]
        figs[f"{name}: training loss"] = ifig.loss_curves(m.loss_steps, m.loss_curve, labels,
                                                          title=f"{name}: training loss per instance")
    return figs


# --- rendering --------------------------------------------------------------------------------


def _page(root: Path, experiments: list[Experiment], quick: bool) -> str:
    from plotly.offline import get_plotlyjs

    errors = [e for e in experiments if e.error]
    rows = [r for e in experiments for r in e.rows]
    rows += [error_row(e.name, e.section, _last_line(e.error or "")) for e in errors]
    held = sum(r.held for r in rows)
    sections: dict[str, list[Experiment]] = {}
    for e in experiments:
        sections.setdefault(e.section, []).append(e)
    toc = "".join(f'<li><a href="#{_anchor(s)}">{html.escape(s)}</a></li>' for s in sections)
    body = "".join(_section(s, exps) for s, exps in sections.items())
    size = "quick" if quick else "paper-size"
    summary = (f"{held}/{len(rows)} claims held" + (f", {len(errors)} experiment(s) failed" if errors else ""))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Toy Models of Superposition: reproduction report</title>
<style>{_CSS}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<header><h1>Toy Models of Superposition: reproduction report</h1>
<p class="meta">{html.escape(str(root))} · {size} runs · superposition {__version__} · {rundir.now()}</p>
<p class="summary" id="summary">{summary}</p></header>
<nav><h2>Contents</h2><ol>{toc}</ol></nav>
<section id="scorecard"><h2>Scorecard</h2>{_claims_table(rows, with_experiment=True)}</section>
{body}
</body></html>
"""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _anchor(text: str) -> str:
    return "s-" + re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _section(title: str, experiments: list[Experiment]) -> str:
    parts = [f'<section class="paper-section" id="{_anchor(title)}"><h2>{html.escape(title)}</h2>']
    parts += [_experiment(e) for e in experiments]
    return "".join(parts) + "</section>"


def _experiment(e: Experiment) -> str:
    head = f'<article class="experiment" id="{_anchor("exp-" + e.name)}"><h3>{html.escape(e.name)}</h3>'
    head += f"<p>{html.escape(e.summary)}</p>"
    if e.error:
        return head + f'<pre class="error">{html.escape(e.error)}</pre></article>'
    seconds = e.meta.get("seconds")
    timing = f"<p class='meta'>took {seconds:.1f} s (finished {html.escape(e.meta.get('finished', ''))})</p>" \
        if seconds is not None else ""
    claims = _claims_table(e.rows) if e.rows else ""
    figs = "".join(_plotly(f"{e.name}-{name}", name, fig) for name, fig in e.interactive.items())
    pngs = "".join(_png(p) for p in e.pngs)
    return head + timing + claims + f'<div class="figures">{figs}{pngs}</div>' + _runs_table(e.runs) + "</article>"


def _claims_table(rows: list[ScoreRow], with_experiment: bool = False) -> str:
    if not rows:
        return "<p>No claims.</p>"
    head = "<tr>" + ("<th>experiment</th>" if with_experiment else "") + \
        "<th>claim</th><th>expected</th><th>measured</th><th>result</th></tr>"
    body = []
    for r in rows:
        cls = r.status.replace(" ", "-")
        exp = f'<td><a href="#{_anchor("exp-" + r.experiment)}">{html.escape(r.experiment)}</a></td>' \
            if with_experiment else ""
        body.append(f'<tr class="{cls}">{exp}<td>{html.escape(r.claim)}</td><td>{html.escape(r.expected)}</td>'
                    f"<td>{html.escape(r.measured)}</td><td class='status'>{html.escape(r.status)}</td></tr>")
    return f'<table class="claims">{head}{"".join(body)}</table>'


def _plotly(key: str, name: str, fig: Any) -> str:
    import plotly.io as pio

    div_id = "fig-" + re.sub(r"[^a-zA-Z0-9]+", "-", key).strip("-")
    inner = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                        config={"responsive": True, "displaylogo": False})
    return f'<figure class="interactive"><figcaption>{html.escape(name)}</figcaption>{inner}</figure>'


def _png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure class="static"><figcaption>{html.escape(path.name)}</figcaption>'
            f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>')


def _runs_table(runs: dict[str, Run]) -> str:
    if not runs:
        return ""
    rows = []
    for name, run in runs.items():
        c, m = run.config, run.metrics
        prov = run.provenance
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{c.model.kind} n={c.model.n_features} m={c.model.n_hidden}</td>"
            f"<td>{c.data.n_configs} × {c.train.restarts}</td><td>{c.train.steps}</td>"
            f"<td>{m.train_seconds:.1f} s</td><td>{m.steps_per_second:.0f}</td>"
            f"<td>{'yes' if m.compiled else 'no'}</td><td>{html.escape(str(prov.get('device', '')))}</td>"
            f"<td><details><summary>config</summary><pre>{html.escape(c.to_json())}</pre></details></td></tr>")
    head = ("<tr><th>run</th><th>model</th><th>configs × restarts</th><th>steps</th><th>train time</th>"
            "<th>steps/s</th><th>compiled</th><th>device</th><th></th></tr>")
    return f'<table class="runs">{head}{"".join(rows)}</table>'


_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; font-size: 0.9em; }
.summary { font-size: 1.2em; font-weight: 600; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; width: 100%; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
tr.held td.status { color: #17692b; font-weight: 600; }
tr.not-held td.status { color: #b3261e; font-weight: 600; }
tr.error td.status { color: #8a5a00; font-weight: 600; }
.figures { display: flex; flex-direction: column; gap: 1em; }
figure { margin: 0; } figcaption { font-size: 0.85em; color: #555; margin-bottom: 0.3em; }
figure.static img { max-width: 100%; border: 1px solid #eee; }
pre { white-space: pre-wrap; font-size: 0.8em; } pre.error { background: #fff4e5; padding: 0.8em; }
section.paper-section { border-top: 2px solid #ccc; margin-top: 2em; }
"""
