"""The local executor: a sweep's chunks in worker processes on this machine.

Every worker trains one chunk at a time with one torch thread, and claims the next chunk as soon
as it is free. This process is one of the workers, so a sweep starts training at once; the other
``workers - 1`` are spawned helpers. Starting a helper (a new interpreter, torch, the compiled
step) takes 5-30 s on a busy 2-core machine, so by default they start only once the chunks left
would keep this process busy for more than `HELPER_MIN_SECONDS`; an explicit `workers` starts
them at once. One process with two torch threads instead of two single-threaded workers is
2.7-7x slower when other processes share the cores (multi-threaded steps stall on OpenMP
barriers; benchmarks/README.md has the measurements), hence one thread per worker.

Helpers are started with ``spawn`` (no fork of a process holding torch threads) and the kernel
kills them with the driver (``PR_SET_PDEATHSIG``), so ``kill -9`` of a sweep leaves no orphan
training on; the per-chunk lock covers the rest.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized

import torch

from ..config import ConfigError, RunConfig
from ..run import RunDirError
from ..sweep.job import ChunkJob, ChunkResult, run_chunk

_PR_SET_PDEATHSIG = 1

MAX_WORKERS_PER_CORE = 4
"""More worker processes than this per core only add start-up time and memory (each imports torch)."""
HELPER_MIN_SECONDS = 30.0
"""Helper processes start once the unclaimed chunks would keep this process training longer than
this, at its best pace so far (compiles excluded): starting one, with its imports and compiles,
costs 5-30 s on a busy 2-core machine and slows this process meanwhile."""


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """Chunks in `workers` processes (default: one per core), `threads` torch threads each."""

    def __init__(self, workers: int | None = None, threads: int = 1):
        for name, value in (("workers", workers), ("threads", threads)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} = {value!r} is invalid: must be an integer >= 1")
        cores = available_cores()
        if workers is not None and workers > MAX_WORKERS_PER_CORE * cores:
            raise ConfigError(f"workers = {workers} is invalid: at most {MAX_WORKERS_PER_CORE} per CPU core "
                              f"({MAX_WORKERS_PER_CORE * cores} for this machine's {cores}); each is a torch process")
        self.threads = threads
        self.workers = workers or max(1, cores // threads)
        self.adaptive = workers is None
        """Start helper processes only when the work left is worth it (see HELPER_MIN_SECONDS);
        with `workers` given they start at once."""

    def parallelism(self) -> int:
        return self.workers

    def run(self, jobs: Sequence[ChunkJob]) -> Iterator[ChunkResult]:
        if self.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield run_chunk(job)
            return
        yield from self._pool(jobs)

    def _pool(self, jobs: Sequence[ChunkJob]) -> Iterator[ChunkResult]:
        """This process trains chunks at once, helpers join (at once, or when the work left is worth
        their start-up); every worker claims the next chunk whenever it is free."""
        context = multiprocessing.get_context("spawn")
        claimed, results = context.Value("i", 0), context.Queue()
        work = [_work(job) for job in jobs]
        helpers = [] if self.adaptive else self._start_helpers(context, jobs, claimed, results)
        pace, received = math.inf, 0  # pace: training seconds per unit of work, the best seen in this process
        try:
            while received < len(jobs):
                k = _claim(claimed, len(jobs))
                if k is None:
                    items = [_wait(results, helpers)]
                else:
                    items = [run_chunk(jobs[k])]
                    pace = min(pace, (items[0].training_seconds or items[0].seconds) / work[k])
                    if not helpers and pace * sum(work[claimed.value:]) > HELPER_MIN_SECONDS:
                        helpers = self._start_helpers(context, jobs, claimed, results)
                for item in [*items, *_drain(results)]:
                    if isinstance(item, BaseException):
                        raise item
                    received += 1
                    yield item
        finally:  # idle helpers exit by themselves; those still starting up (or working, after an error) are ended
            deadline = time.monotonic() + (2.0 if received == len(jobs) else 0.0)
            for helper in helpers:
                helper.join(timeout=max(0.0, deadline - time.monotonic()))
                if helper.is_alive():
                    helper.terminate()
                    helper.join()

    def _start_helpers(self, context, jobs: Sequence[ChunkJob], claimed: Synchronized,
                       results: Queue) -> list[BaseProcess]:
        helpers = [context.Process(target=_helper, args=(list(jobs), claimed, results, os.getpid(), self.threads),
                                   daemon=True) for _ in range(min(self.workers, len(jobs)) - 1)]
        for helper in helpers:
            helper.start()
        return helpers


def _work(job: ChunkJob) -> float:
    """A chunk's cost in batch elements processed: instances × steps × batch × (features + hidden)."""
    config = RunConfig.from_json(job.config)
    t, m = config.train, config.model
    return float(config.n_instances * t.steps * t.batch_size * (m.n_features + m.n_hidden))


def _claim(claimed: Synchronized, n: int) -> int | None:
    """The index of the next unclaimed job, or None when every job is taken."""
    with claimed.get_lock():
        k = claimed.value
        if k >= n:
            return None
        claimed.value = k + 1
        return k


def _wait(results: Queue, helpers: list[BaseProcess]) -> ChunkResult | BaseException:
    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            if any(h.exitcode not in (None, 0) for h in helpers):
                return RuntimeError(
                    "a sweep worker process died: killed, out of memory, or started from a script without an "
                    "`if __name__ == \"__main__\":` guard (spawned workers import the main module); use workers=1 "
                    "to run every chunk in this process")


def _drain(results: Queue) -> list[ChunkResult | BaseException]:
    items = []
    while True:
        try:
            items.append(results.get_nowait())
        except queue.Empty:
            return items


def _helper(jobs: list[ChunkJob], claimed: Synchronized, results: Queue, parent: int, threads: int) -> None:
    """A worker process: claim chunks and send back their results until none is left."""
    _init_worker(parent, threads)
    while (k := _claim(claimed, len(jobs))) is not None:
        try:
            results.put(run_chunk(jobs[k]))
        except BaseException as exc:  # raised by the driver; user errors keep their type, others their traceback
            portable = exc if isinstance(exc, ConfigError | RunDirError) else RuntimeError(
                f"chunk {jobs[k].chunk} failed in a worker process:\n{traceback.format_exc()}")
            results.put(portable)
            return


def _init_worker(parent: int, threads: int) -> None:
    """Die with the driver; train with `threads` threads."""
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(None)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # pragma: no cover - unusual libc
            pass
        if os.getppid() != parent:  # the driver died before the signal was armed
            os._exit(1)
    torch.set_num_threads(threads)
