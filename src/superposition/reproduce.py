"""Reproduce the paper: run every experiment recipe, collect its claims into one scorecard.

    OUT/
      NAME/            one recipe directory per experiment (see experiments.base)
      scorecard.json   every claim: experiment, section, claim, expected, measured, status
      scorecard.md     the same as a Markdown table
      report.html      the self-contained report (superposition.report)

The scorecard is rewritten after each experiment, so an interrupted reproduction keeps what it
finished; run again, finished runs are reused instead of retrained. An experiment that fails is a
row with status "error" (its traceback in NAME/error.txt); the others go on.

On a CPU the experiments run in `jobs` worker processes at once (one per core by default, one torch
thread each: the paper's models are too small for two threads to pay, and two processes keep both
cores busy). Experiments that train a run of the same config (basic and loss-decomposition) go to the
same worker, in order, so the run is trained once. Results agree across `jobs` to float rounding
(a different thread count can change the order of a sum).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from . import run as rundir
from .compiling import background_compiles
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
    ScorecardError,
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
              report: bool = True, jobs: int | None = None,
              on_experiment: Callable[[ExperimentRecord], None] | None = None) -> Scorecard:
    """Run the selected recipes into ``out/NAME`` and return the scorecard (also written to `out`).
    The experiments of an earlier reproduction of the same size in `out` that this call does not run
    (`only`) stay in the scorecard.

    `jobs`: experiments run at once in worker processes (default: one per CPU core on a CPU, one
    on a GPU; 1 runs them in this process). `on_experiment` is called after each experiment (the
    CLI prints a line there).
    """
    out_dir = Path(out)
    names = select_recipes(only)
    check_out_dir(out_dir, "reproduction")
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = _jobs(jobs, device)
    card = Scorecard(quick)
    done = _kept(out_dir, quick, names)
    bar = tqdm(total=len(names), desc="experiments", unit="exp", disable=not progress, dynamic_ncols=True)
    args = (quick, device, compile, progress and jobs == 1, overwrite)
    for name, record, rows in _results(names, out_dir, args, jobs):
        done[name] = (record, rows)
        bar.set_postfix_str(name)
        bar.update()
        order = [n for n in RECIPES if n in done]  # registry order, whatever finished first
        card.experiments = [done[n][0] for n in order]
        card.rows = [row for n in order for row in done[n][1]]
        write_scorecard(card, out_dir)
        if on_experiment is not None:
            on_experiment(record)
    bar.close()
    if report:
        from .report import build_report

        build_report(out_dir)
    return card


def _kept(out_dir: Path, quick: bool, names: list[str]) -> dict[str, tuple[ExperimentRecord, list[ScoreRow]]]:
    """The experiments of the scorecard already in `out_dir` (of the same size) that this call does
    not rerun: `--only` adds to a reproduction's scorecard instead of replacing it. A damaged
    scorecard keeps nothing (it is rewritten)."""
    try:
        old = read_scorecard(out_dir)
    except ScorecardError:
        return {}
    if old is None or old.quick != quick:
        return {}
    return {e.name: (e, [r for r in old.rows if r.experiment == e.name])
            for e in old.experiments if e.name in RECIPES and e.name not in names}


def _jobs(jobs: int | None, device: str) -> int:
    if jobs is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return 1 if device != "cpu" else max(1, min(cores, 8))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs = {jobs!r} is invalid: must be a positive integer")
    return jobs


def _results(names: list[str], out_dir: Path, args: tuple, jobs: int) -> Iterator[tuple[str, ExperimentRecord,
                                                                                       list[ScoreRow]]]:
    """(name, record, rows) of each experiment as it finishes."""
    groups = _sharing_groups(names, args[0])
    if jobs == 1 or len(groups) == 1:
        shared: dict[str, Path] = {}  # recipes that need the same config (e.g. basic, loss-decomposition) share it
        for name in names:
            yield (name, *_run_one(name, out_dir / name, *args, shared))
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(max_workers=min(jobs, len(groups)), mp_context=context,
                             initializer=_worker_init) as pool:
        pending: set[Future] = {pool.submit(_run_group, group, out_dir, args) for group in groups}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield from future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _sharing_groups(names: list[str], quick: bool) -> list[list[str]]:
    """The recipes cut into groups that share no run config (each group in registry order), the
    costliest group first (`Recipe.work`), so that the last experiments to start are short ones and
    the workers finish together. A recipe whose configs cannot be built is a group of its own
    (running it records the error)."""
    groups: list[tuple[set[str], list[str]]] = []
    work: dict[str, float] = {}  # a run config's JSON or a recipe's name -> its training work
    for name in names:
        try:
            recipe = get_recipe(name)
            configs = recipe.configs(quick).values()
            keys = {config.to_json() for config in configs}
            work.update({config.to_json(): config.work for config in configs})
            work[name] = recipe.work(quick) - sum(config.work for config in configs)
        except Exception:
            keys = set()
        joined = [g for g in groups if g[0] & keys]
        groups = [g for g in groups if not g[0] & keys]
        merged = (keys.union(*(g[0] for g in joined)), [n for g in joined for n in g[1]] + [name])
        groups.append(merged)
    order = {n: i for i, n in enumerate(names)}
    groups.sort(key=lambda g: (-sum(work.get(k, 0.0) for k in (*g[0], *g[1])), min(order[n] for n in g[1])))
    return [sorted(g[1], key=order.__getitem__) for g in groups]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _run_group(group: list[str], out_dir: Path, args: tuple) -> list[tuple[str, ExperimentRecord, list[ScoreRow]]]:
    shared: dict[str, Path] = {}
    return [(name, *_run_one(name, out_dir / name, *args, shared)) for name in group]


def _run_one(name: str, path: Path, quick: bool, device: str, compile: CompileMode, progress: bool,
             overwrite: bool, shared: dict[str, Path]) -> tuple[ExperimentRecord, list[ScoreRow]]:
    recipe = get_recipe(name)
    t0 = time.perf_counter()
    try:
        with background_compiles(False):  # the experiments keep the cores busy themselves
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
