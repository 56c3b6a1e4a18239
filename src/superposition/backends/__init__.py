"""Executors: where the chunks of a sweep run.

An executor only runs jobs: each job is `superposition.sweep.job.run_chunk`, which owns the chunk's
files and lock, so every executor gives the same chunks.

- `LocalExecutor` (``local``, the default): worker processes on this machine, one torch thread each.
- `RayExecutor` (``ray``, ``pip install superposition[ray]``): chunks as Ray tasks on a cluster, each
  writing into the sweep directory, which must be on a filesystem the nodes share.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch

from ..config import ConfigError
from ..sweep.job import ChunkJob, ChunkResult, run_chunk


class Executor(Protocol):
    """Runs chunk jobs and yields their results as they finish (in any order)."""

    threads: int
    """torch threads per chunk."""

    def parallelism(self) -> int:
        """How many chunks run at once (used to size chunks)."""
        ...

    def run(self, jobs: Sequence[ChunkJob]) -> Iterator[ChunkResult]: ...


def get_executor(name: str, *, workers: int | None = None, address: str | None = None,
                 device: str = "cpu") -> Executor:
    """The executor called `name` ("local" or "ray"). On a GPU, local chunks run one at a time by
    default (they share the device), and each Ray task reserves a GPU."""
    gpu = torch.device(device).type == "cuda"
    if name == "local":
        from .local import LocalExecutor

        return LocalExecutor(workers if workers is not None else (1 if gpu else None))
    if name == "ray":
        from .ray import RayExecutor

        return RayExecutor(address, gpus=1.0 if gpu else 0.0)
    raise ConfigError(f"executor = {name!r} is invalid: must be local or ray")


__all__ = ["ChunkJob", "ChunkResult", "Executor", "get_executor", "run_chunk"]
