"""Train SAE size groups in worker processes at once: `train_groups`, `resolve_workers`.

Each size group (`SAEConfig.size_groups`) is its own batched step over the same batches (a
source's batch depends only on the step), so a group's weights depend neither on the other
groups nor on the process it trains in: with one torch thread per worker, the weights, thresholds
and loss curves equal, bit for bit, those of one process training the groups in turn at one
thread (tests/test_sae.py). The groups of every config go into one pool, largest first, so that a
grid of unequal sizes (sae-recovery's 256 to 2048 latents, and its correlated grid beside them)
fills the cores.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import torch

from ..config import ConfigError
from .config import SAEConfig
from .sources import DictionarySource, Source

PARALLEL_MIN_WORK = 1e12
"""workers="auto" trains in processes when the configs' work (`SAEConfig.work`) reaches this. A
worker costs about 3 s to start (a spawned interpreter importing torch); the quick sae-recovery grid
(3.5·10¹⁰, 11 s on one thread, measured 2026-12-03) stays in one process, the paper-size grids
(2.0·10¹³ and 1.1·10¹³, about half an hour on one thread) fill the cores."""


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | str, configs: list[SAEConfig], sources: list[Source]) -> int:
    """Processes to train in: `workers` checked, or "auto": one per core (at most one per size
    group) for generated-dictionary sources whose work reaches `PARALLEL_MIN_WORK`, else 1."""
    if workers == "auto":
        if not all(isinstance(s, DictionarySource) for s in sources):
            return 1  # a toy-model source may hold a model only this session has registered
        tasks = sum(len(c.size_groups()) for c in configs)
        work = sum(c.work(s.n_inputs) for c, s in zip(configs, sources, strict=True))
        return min(tasks, usable_cores()) if work >= PARALLEL_MIN_WORK else 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers = {workers!r} is invalid: must be a positive integer or 'auto'")
    return min(workers, sum(len(c.size_groups()) for c in configs))


def train_groups(configs: list[SAEConfig], sources: list[Source], compile: bool | str, workers: int) -> list:
    """Every size group of every config trained in `workers` spawned processes, the largest work
    first; one `train.Fit` per config, its groups in order. Each worker runs its share of this
    process's torch threads (at least one)."""
    from .train import Fit

    tasks = [(c, k, sub) for c, config in enumerate(configs) for k, sub in enumerate(config.size_groups())]
    order = sorted(range(len(tasks)), key=lambda j: -tasks[j][2].work(sources[tasks[j][0]].n_inputs))
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        futures = {j: pool.submit(_fit_one, tasks[j][2], sources[tasks[j][0]], compile, threads) for j in order}
        done = {j: future.result() for j, future in futures.items()}
    finally:  # on an error or an interrupt, the groups not started yet are dropped, not trained
        pool.shutdown(wait=True, cancel_futures=True)
    out = []
    for c in range(len(configs)):
        fits = [done[j] for j in range(len(tasks)) if tasks[j][0] == c]
        out.append(Fit([f.params[0] for f in fits], [f.threshold[0] for f in fits], [f.curve[0] for f in fits],
                       fits[0].log_steps, sum(f.seconds for f in fits)))
    return out


def _fit_one(sub: SAEConfig, source: Source, compile: bool | str, threads: int):
    """One size group, in a worker process."""
    from .train import fit_groups

    torch.set_num_threads(threads)
    return fit_groups([sub], source, compile)
