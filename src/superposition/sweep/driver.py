"""Running a sweep: `run_sweep` opens (or resumes) the directory, hands the chunks not yet done to an
executor (each chunk's lock is held by the backend working on it), reports progress and writes the
index; `sweep_status` says how far a sweep has got."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd
from tqdm.auto import tqdm

from .. import backends, guard
from .. import run as rundir
from ..atomic import directory_lock, remove_temporaries
from ..config import ConfigError
from ..run import RunDirError
from ..train import CompileMode, resolve_device
from .chunks import Chunk, auto_chunk_size, plan
from .index import (
    CHUNKS_DIR,
    FORMAT,
    INDEX_FILE,
    SPEC_FILE,
    SweepError,
    _write_index,
    build_index,
    read_sweep_json,
    stored_spec,
)
from .job import ChunkJob, read_models
from .spec import SweepSpec, _jsonable, point_config

if TYPE_CHECKING:  # backends import the chunk job from this package
    from ..backends import Executor


@dataclass(frozen=True)
class SweepProgress:
    """Where a running sweep stands; passed to `run_sweep`'s `on_progress` after every chunk."""

    chunks_done: int
    chunks_total: int
    models_done: int
    models_total: int
    models_before: int
    """Models that were already done when this invocation started."""
    seconds: float

    @property
    def eta(self) -> float | None:
        """Seconds left at this invocation's rate so far, or None before the first chunk."""
        made = self.models_done - self.models_before
        return (self.models_total - self.models_done) * self.seconds / made if made else None


@dataclass
class SweepOutcome:
    path: Path
    index: pd.DataFrame
    chunks: int
    trained: int
    """Chunks trained by this invocation (the rest were done before)."""
    models_trained: int
    seconds: float

    @property
    def models_per_second(self) -> float:
        return self.models_trained / self.seconds if self.seconds > 0 else 0.0

    def __repr__(self) -> str:
        return (f"SweepOutcome({self.path}: {len(self.index)} models in {self.chunks} chunks, "
                f"{self.trained} trained now, {self.seconds:.1f} s)")

    def _repr_html_(self) -> str:
        """A one-line summary and the mean, min and max of the headline measures (Jupyter)."""
        import html

        columns = [c for c in ("final_loss", "represented", "dims_per_feature", "mean_interference")
                   if c in self.index.columns]
        table = self.index[columns].agg(["mean", "min", "max"]).to_html(float_format=lambda v: f"{v:.4g}")
        return f"<p>{html.escape(repr(self))}</p>{table}" if columns else f"<p>{html.escape(repr(self))}</p>"


def run_sweep(spec: SweepSpec, out: str | os.PathLike[str], *, executor: str | Executor = "local",
              workers: int | None = None, ray_address: str | None = None, device: str = "cpu",
              compile: CompileMode = "auto", progress: bool = True,
              on_progress: Callable[[SweepProgress], None] | None = None) -> SweepOutcome:
    """Train every chunk of `spec` not yet done in `out`, then write and return the index.

    Arguments:
        executor: "local" (worker processes on this machine), "ray", or an `Executor`.
        workers: local parallel chunks (default: the CPU cores, one torch thread each).
        ray_address: an existing Ray cluster (e.g. "auto" or "ray://head:10001"); `out` must be
            on a filesystem the cluster shares. None starts a local Ray instance.
    """
    resolve_device(device)  # no CUDA: a clear ConfigError, as for train
    if isinstance(executor, str):
        exe = backends.get_executor(executor, workers=workers, address=ray_address, device=device)
        try:
            return run_sweep(spec, out, executor=exe, device=device, compile=compile, progress=progress,
                             on_progress=on_progress)
        finally:
            getattr(exe, "shutdown", lambda: None)()
    t0, exe, out_dir = time.perf_counter(), executor, Path(out)
    with _sweep_lock(out_dir):
        return _drive(spec, out_dir, exe, device, compile, progress, on_progress, t0)


def _drive(spec: SweepSpec, out_dir: Path, exe: Executor, device: str, compile: CompileMode, progress: bool,
           on_progress: Callable[[SweepProgress], None] | None, t0: float) -> SweepOutcome:
    chunks = _open_sweep(spec, out_dir, exe.parallelism(), device)
    rows = {c.id: r for c in chunks if (r := read_models(out_dir / CHUNKS_DIR / c.id, c.points)) is not None}
    jobs = [ChunkJob(str(out_dir.resolve()), c.id, c.config.to_json(), c.points, device, compile, exe.threads)
            for c in chunks if c.id not in rows]
    models = {c.id: c.n_models for c in chunks}
    before = sum(models[c] for c in rows)
    total = sum(models.values())
    with tqdm(total=total, initial=before, unit="model", desc=spec.name, disable=not progress, dynamic_ncols=True,
              smoothing=0) as bar:
        bar.set_postfix_str(f"chunks {len(rows)}/{len(chunks)}")
        done, trained, models_trained = before, 0, 0
        for result in exe.run(jobs):
            rows[result.chunk] = result.rows
            trained += result.trained  # a chunk another process finished meanwhile was only read
            models_trained += models[result.chunk] if result.trained else 0
            done += models[result.chunk]
            bar.update(models[result.chunk])
            bar.set_postfix_str(f"chunks {len(rows)}/{len(chunks)}")
            if on_progress is not None:
                on_progress(SweepProgress(len(rows), len(chunks), done, total, before, time.perf_counter() - t0))
    index = build_index(spec, chunks, rows)
    _write_index(out_dir / INDEX_FILE, index)
    index.attrs["sweep"] = str(out_dir)
    return SweepOutcome(out_dir, index, len(chunks), trained, models_trained, time.perf_counter() - t0)


@contextmanager
def _sweep_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the sweep directory (an flock on the directory itself) while this
    process drives it; a second driver is refused at once, naming the directory. Ray tasks and
    local helpers run under the driver's lock and take only their chunks' locks."""
    check_sweep_out(out)
    created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    out.mkdir(parents=True, exist_ok=True)
    busy = lambda: SweepError(f"{out}: in use by another sweep process driving it; wait for it to finish, "  # noqa: E731
                              "or choose another --out")
    try:
        with directory_lock(out, busy):
            yield
    except (ConfigError, RunDirError):
        if created and not any((out / CHUNKS_DIR).glob("*/models.json")):
            shutil.rmtree(out)  # made by this call and nothing finished in it: the corrected command starts afresh
            for folder in created[1:]:
                if any(folder.iterdir()):
                    break
                folder.rmdir()
        raise


def check_sweep_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SweepError(f"{out}: exists and is not a directory")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise SweepError(f"{parent}: is a file, so {out} cannot be created")


def _open_sweep(spec: SweepSpec, out: Path, workers: int, device: str) -> list[Chunk]:
    """Create `out` for `spec`, or check that it holds this spec; returns the plan."""
    stored = read_sweep_json(out) if (out / SPEC_FILE).is_file() else None
    if stored is not None:
        old = stored_spec(out, stored)
        diff = _first_difference(replace(old, chunk_size=None).to_dict(), replace(spec, chunk_size=None).to_dict())
        if diff:
            raise SweepError(f"{out}: holds a sweep of a different spec ({diff}); choose another --out, "
                             "or delete the directory to start over")
        size = stored["chunk_size"]
        if spec.chunk_size not in (None, size):
            raise SweepError(f"{out}: this sweep was planned with chunk_size {size}, not {spec.chunk_size}; "
                             "drop --chunk-size (or set it to the stored value) to resume it")
        return plan(spec, size)
    partial = list(out.glob(f".{SPEC_FILE}.*.tmp"))  # a first start killed while writing sweep.json
    if out.exists() and (not out.is_dir() or set(out.iterdir()) - set(partial)):
        raise SweepError(f"{out}: not empty and not a sweep directory; choose another --out")

    configs = [point_config(spec.base, v) for v in spec.points()]
    guard.check_run_memory(max(configs, key=guard.run_bytes), device)  # the largest model must fit, before writing
    size = spec.chunk_size or auto_chunk_size(configs[0], sum(c.train.restarts for c in configs), workers, device)
    chunks = plan(spec, size)
    out.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out, [SPEC_FILE])  # we hold the sweep's lock: nobody else is writing
    rundir.atomic_write_json(out / SPEC_FILE, {
        "format": FORMAT, "version": 1, "spec": spec.to_dict(), "chunk_size": size, "chunks": len(chunks),
        "models": sum(c.n_models for c in chunks), "created": rundir.now()})
    (out / CHUNKS_DIR).mkdir(exist_ok=True)
    return chunks


def _first_difference(old: Any, new: Any, where: str = "") -> str | None:
    old, new = _jsonable(old), _jsonable(new)
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return next((d for i, (a, b) in enumerate(zip(old, new, strict=True))
                     if (d := _first_difference(a, b, f"{where}[{i}]"))), None)
    return None if old == new else f"{where}: was {_short(old)}, now {_short(new)}"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


class SweepStatus(NamedTuple):
    spec: SweepSpec
    chunk_size: int
    chunks_total: int
    chunks_done: int
    models_total: int
    models_done: int

    @property
    def finished(self) -> bool:
        return self.chunks_done == self.chunks_total


def sweep_status(path: str | os.PathLike[str]) -> SweepStatus:
    """How far the sweep in `path` has got (reads only sweep.json and the chunks' models.json)."""
    stored = read_sweep_json(path)
    done = [read_models(p.parent) for p in sorted((Path(path) / CHUNKS_DIR).glob("*/models.json"))]
    done = [r for r in done if r is not None]
    return SweepStatus(stored_spec(path, stored), stored["chunk_size"], stored["chunks"], len(done),
                       stored["models"], sum(len(r) for r in done))
