"""The Ray executor: a sweep's chunks as Ray tasks (``pip install superposition[ray]``).

``RayExecutor(address)`` connects to an existing cluster (``"auto"``, ``"ray://head:10001"``, or
``ray start --head``'s address), or starts a local Ray instance when `address` is None and none is
running. Each chunk is a task that reserves `threads` CPUs and trains with that many torch threads,
writing its run directory and models.json into the sweep directory itself, so that directory must
be on a filesystem every node mounts at the same path; only the small per-model rows travel back.
The nodes need this package installed (the same version as the driver).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..config import ConfigError
from ..sweep.job import ChunkJob, ChunkResult, run_chunk


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor = 'ray' needs Ray: pip install 'superposition[ray]'") from None
    return ray


class RayExecutor:
    """Chunks as Ray tasks of `threads` CPUs each (and `gpus` GPUs each, for ``device="cuda"``)."""

    def __init__(self, address: str | None = None, threads: int = 1, gpus: float = 0.0):
        self.address, self.threads, self.gpus = address, threads, gpus
        self._started = False

    def _connect(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            self._started = self.address is None
        return ray

    def parallelism(self) -> int:
        """Chunks the cluster can run at once: its CPUs over `threads`."""
        cpus = self._connect().cluster_resources().get("CPU", 1)
        return max(1, int(cpus // self.threads))

    def run(self, jobs: Sequence[ChunkJob]) -> Iterator[ChunkResult]:
        if not jobs:
            return
        ray = self._connect()
        task = ray.remote(num_cpus=self.threads, num_gpus=self.gpus, max_retries=0)(run_chunk)
        pending = [task.remote(job) for job in jobs]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        """Stop the local Ray instance this executor started (a cluster it joined is left alone)."""
        if self._started:
            _ray().shutdown()
            self._started = False
