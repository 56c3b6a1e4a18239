"""One chunk of a sweep as a job: its layout on disk, and the whole job whichever executor runs it.

A chunk is one batched run (`superposition.sweep.chunks` plans them), kept in ``DIR/chunks/ID/``: a
run directory (superposition.run) plus ``models.json``, written last, atomically, with one row per
saved model. `run_chunk` takes the chunk's lock (an flock on ``chunks/ID.lock``), trains it into its
run directory (resuming an interrupted one from its checkpoint), measures every saved model and
writes ``models.json``. The lock makes a second process that reaches the same chunk (a rerun while an
orphaned worker finishes, two drivers on one directory) wait for the first and then find it done, so
nothing is trained twice. Executors (`superposition.backends`) only decide where jobs run.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import run as rundir
from ..analysis import summarize
from ..atomic import remove_temporaries
from ..compiling import background_compiles
from ..config import RunConfig
from ..errors import read_json
from ..run import Run, RunDirError, load_run
from ..train import CompileMode, has_l1, torch_threads, train

MODELS = "models.json"


@dataclass(frozen=True)
class ChunkJob:
    """Everything a worker needs to run one chunk; plain values, so it pickles to any process."""

    sweep_dir: str
    chunk: str
    config: str
    """The chunk's RunConfig as JSON."""
    points: tuple[int, ...]
    """The grid point of each configuration of the chunk."""
    device: str = "cpu"
    compile: CompileMode = "auto"
    threads: int = 1
    """torch threads while training: results are bit-identical only between equal thread counts."""


@dataclass(frozen=True)
class ChunkResult:
    chunk: str
    rows: list[dict[str, Any]]
    trained: bool
    """False when the chunk turned out to be done already (finished by another process)."""
    seconds: float
    training_seconds: float = 0.0
    """Time of the training steps alone, without compiling, evaluating and saving (0 when not trained)."""


def run_chunk(job: ChunkJob) -> ChunkResult:
    """Train (or finish, or just read) one chunk; see the module docstring."""
    t0 = time.perf_counter()
    path = Path(job.sweep_dir) / "chunks" / job.chunk
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent / f"{job.chunk}.lock"), torch_threads(job.threads), background_compiles(False):
        rows = read_models(path, job.points)
        if rows is not None:
            return ChunkResult(job.chunk, rows, False, time.perf_counter() - t0)
        _remove_partial_writes(path)
        config = RunConfig.from_json(job.config)
        if rundir.is_complete(path):  # trained, but stopped before models.json
            run = load_run(path)
            if run.config != config:
                raise RunDirError(f"{path}: holds a run of a different config than the sweep plans")
        else:
            _fresh_compiler_if_needed(config, job)
            run = train(config, device=job.device, compile=job.compile, progress=False, out=path)
        rows = chunk_rows(run, job.points)
        rundir.atomic_write_json(path / MODELS, {"chunk": job.chunk, "points": list(job.points), "rows": rows,
                                                 "host": platform.node(), "pid": os.getpid()})
    rate = run.metrics.steps_per_second
    return ChunkResult(job.chunk, rows, True, time.perf_counter() - t0, config.train.steps / rate if rate else 0.0)


def chunk_rows(run: Run, points: Sequence[int]) -> list[dict[str, Any]]:
    """One row per saved instance of a chunk's run: its grid point, restart, loss and geometry."""
    geo = summarize(run.W.float())
    m = run.metrics
    return [{"point": points[m.config_index[k]], "restart": m.restart[k], "instance": k,
             "final_loss": m.final_loss[k], "represented": int(geo.represented[k]),
             "dims_per_feature": float(geo.dimensions_per_feature[k]),
             "mean_interference": float(geo.mean_interference[k])} for k in range(run.n_instances)]


def read_models(path: str | os.PathLike[str], points: Sequence[int] | None = None) -> list[dict] | None:
    """The rows of a done chunk (complete run and models.json), or None when it is not done. A
    models.json written for other points than `points` (a directory edited by hand) is an error."""
    file = Path(path) / MODELS
    if not rundir.is_complete(path):
        return None
    try:
        stored = read_json(file, RunDirError)
    except FileNotFoundError:
        return None
    except RunDirError as exc:
        raise RunDirError(f"{exc}; delete it to measure the chunk again") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("rows"), list):
        raise RunDirError(f"{file}: must be an object with a list of rows; delete it to measure the chunk again")
    if points is not None and stored.get("points") != list(points):
        raise RunDirError(f"{file}: records points {stored.get('points')} but the sweep plans {list(points)} here")
    for i, row in enumerate(stored["rows"]):
        _check_row(row, file, i, stored.get("points") if points is None else list(points))
    return stored["rows"]


_ROW_TYPES = {"point": int, "restart": int, "instance": int, "represented": int, "final_loss": float,
              "dims_per_feature": float, "mean_interference": float}


def _check_row(row: Any, file: Path, i: int, points: Any) -> None:
    def bad(what: str) -> RunDirError:
        return RunDirError(f"{file}: rows[{i}] {what}; delete it to measure the chunk again")

    if not isinstance(row, dict) or not set(_ROW_TYPES) <= set(row):
        raise bad(f"must be an object with {', '.join(_ROW_TYPES)}")
    for key, kind in _ROW_TYPES.items():
        value = row[key]
        ok = not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int)
        if not ok or (kind is float and not math.isfinite(value)):
            raise bad(f"{key} = {value!r} is not {'a finite number' if kind is float else 'an integer'}")
    if isinstance(points, list) and row["point"] not in points:
        raise bad(f"point {row['point']} is not one of this chunk's points")


def _remove_partial_writes(path: Path) -> None:
    """Delete the temporary files of atomic writes that a killed process left in `path` (we hold its
    lock, so nobody else is writing)."""
    remove_temporaries(path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (released by the kernel if the process dies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no cross-process exclusion
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# torch.compile recompiles the step for every new shape or setting, and after 8 recompiles of one
# function (dynamo's recompile limit) it silently runs it eagerly, many times slower. A long-lived
# worker that meets many shapes starts the compiler afresh instead (later compiles hit the disk cache).
_MAX_STEP_VARIANTS = 6
_step_variants: set[tuple] = set()


def _fresh_compiler_if_needed(config: RunConfig, job: ChunkJob) -> None:
    t, d = config.train, config.data
    key = (config.model, d.distribution, d.set_size, d.signed, t.batch_size, t.optimizer, t.betas, t.eps,
           t.resolved_weight_decay, t.adversarial_eps, has_l1(config), config.n_instances, job.device)
    if key not in _step_variants and len(_step_variants) >= _MAX_STEP_VARIANTS:
        torch.compiler.reset()
        _step_variants.clear()
    _step_variants.add(key)


__all__ = ["MODELS", "ChunkJob", "ChunkResult", "chunk_rows", "read_models", "run_chunk", "torch_threads"]
