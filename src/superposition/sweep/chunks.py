"""Cutting a sweep's grid into chunks: points that can share a run, packed into one instance-batched
`RunConfig`, at most a chunk size of instances each (`auto_chunk_size` chooses one)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import NamedTuple

import torch

from ..config import RunConfig
from ..guard import available_memory, model_bytes
from .spec import SweepSpec, _decay_row, point_config

TARGET_STEP_ELEMENTS = {"cpu": 1 << 19, "cuda": 1 << 24}
"""Batch elements (instances × batch × (features + hidden)) per training step a chunk aims for:
enough to amortise per-operation overhead; on CPU, larger chunks fall out of cache and get slower."""
MEMORY_FRACTION = 0.25
"""Share of the free memory that the chunks running at once may use together."""
MAX_CHUNK = 4096
__all__ = ["MAX_CHUNK", "MEMORY_FRACTION", "TARGET_STEP_ELEMENTS", "Chunk", "auto_chunk_size", "available_memory",
           "model_bytes", "plan"]


class Chunk(NamedTuple):
    """One batched run of a sweep: configuration j of `config` is grid point ``points[j]``."""

    id: str
    points: tuple[int, ...]
    config: RunConfig

    @property
    def n_models(self) -> int:
        t = self.config.train
        return self.config.data.n_configs * (t.restarts if t.keep_all_restarts else 1)


def plan(spec: SweepSpec, chunk_size: int) -> list[Chunk]:
    """Cut the grid into chunks: points that can share a run, at most `chunk_size` instances each,
    split into near-equal parts. Deterministic in (spec, chunk_size)."""
    configs = [point_config(spec.base, values) for values in spec.points()]
    groups: dict[RunConfig, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(_pack_key(config), []).append(i)
    parts = [part for members in groups.values()
             for part in _balanced(members, max(1, chunk_size // configs[members[0]].train.restarts))]
    width = max(4, len(str(len(parts) - 1)))
    return [Chunk(f"c{k:0{width}d}", tuple(part), _pack([configs[i] for i in part], f"{spec.name}-c{k:0{width}d}"))
            for k, part in enumerate(parts)]


def _pack_key(config: RunConfig) -> RunConfig:
    """The config with its per-configuration values blanked: equal keys can share a run."""
    data = replace(config.data, feature_probability=(1.0,), importance=None, importance_decay=1.0)
    return replace(config, data=data, train=replace(config.train, l1_hidden=0.0))


def _balanced(members: list[int], per_chunk: int) -> Iterator[list[int]]:
    count = math.ceil(len(members) / per_chunk)
    size, extra = divmod(len(members), count)
    start = 0
    for k in range(count):
        stop = start + size + (k < extra)
        yield members[start:stop]
        start = stop


def _pack(configs: list[RunConfig], name: str) -> RunConfig:
    """One RunConfig whose configurations are `configs` (which share a pack key)."""
    first = configs[0]
    data = {"feature_probability": tuple(c.data.feature_probability[0] for c in configs)}
    if any((c.data.importance, c.data.importance_decay) != (first.data.importance, first.data.importance_decay)
           for c in configs):
        rows = tuple(c.data.importance or _decay_row(c.model.n_features, c.data.importance_decay) for c in configs)
        data.update(importance=rows, importance_decay=1.0)
    l1 = tuple(c.train.l1_hidden for c in configs)
    train = replace(first.train, l1_hidden=l1[0] if len(set(l1)) == 1 else l1)
    return replace(first, data=replace(first.data, **data), train=train, name=name)


def auto_chunk_size(config: RunConfig, total_instances: int, workers: int = 1, device: str = "cpu") -> int:
    """Instances per chunk for models like `config`: enough work per step to amortise overhead
    (`TARGET_STEP_ELEMENTS`), within `MEMORY_FRACTION` of the free memory shared by `workers` chunks
    at once, and small enough that every worker gets a chunk."""
    dev = torch.device(device).type
    per_step = config.train.batch_size * (config.model.n_features + config.model.n_hidden)
    by_work = TARGET_STEP_ELEMENTS.get(dev, TARGET_STEP_ELEMENTS["cpu"]) // per_step
    by_memory = int(MEMORY_FRACTION * available_memory(device) / max(workers, 1) / model_bytes(config))
    by_spread = math.ceil(total_instances / max(workers, 1))
    return max(1, min(by_work, by_memory, by_spread, MAX_CHUNK))
