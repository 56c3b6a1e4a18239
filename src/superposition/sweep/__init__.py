"""Sweeps: a grid of configurations × seeds, packed into instance batches, resumable.

A sweep is data: a base `RunConfig` describing one model configuration, plus axes over any of its
fields. An axis is a list (``values``), a linear or log range (``[start, stop, num]``) or an integer
range (``range``, for seeds); the axes of a ``zip`` group move together, groups are crossed (the
last varies fastest). The spec of the paper's n = 2, m = 1 phase diagram with 10 seeds, as JSON
(or the same as YAML, or `SweepSpec` / `Axis` in Python):

    {"name": "phase",
     "base": {"model": {"n_features": 2, "n_hidden": 1}, "data": {"importance": [1, 1]},
              "train": {"steps": 2000}},
     "axes": [{"field": "p", "log": [1, 0.01, 25]},
              {"field": "importance[1]", "log": [0.1, 10, 40]},
              {"field": "seed", "range": [10]}]}

Each grid point is one model configuration (``importance[1]`` sets one element of the base's
list); with ``train.restarts = N`` it is trained best-of-N, or gives N models with
``keep_all_restarts``. Points whose configs differ only in per-configuration values (p, importance,
importance_decay, l1_hidden) are packed as the configurations of one batched run, a *chunk*;
everything else (sizes, kind, steps, lr, distribution, restarts, and the seed, because an
instance's seed depends only on ``train.seed`` and its restart) splits chunks. The spec above is
10 groups of 1000 points, cut into 60 chunks of about 170 models (the size is chosen from the
model size and the free memory, `auto_chunk_size`, unless given).

    DIR/
      sweep.json         the spec, every axis value written out, and the chunk size it was planned with
      chunks/c0000/      a run directory (superposition.run) per chunk, plus models.json, written
                         last: one row per model; a chunk is done when models.json exists
      chunks/c0000.lock  held (flock) by the process working on the chunk (see superposition.sweep.job)
      index.parquet      one row per model (written when every chunk is done)

Running the same sweep again trains only the chunks without models.json, an interrupted chunk
resuming from its checkpoint; a different spec is refused. A chunk gives the same weights whichever
executor runs it, provided it runs with the same number of torch threads (one by default), and
each model equals training its point's config alone (`SweepSpec.config`; bit for bit when eager).
"""

# The submodules, each importing only those before it: spec (axes, grid points) -> chunks (packing
# points into batched runs) -> job (one chunk's files, trained by an executor) -> index (the
# directory's files, reading results back) -> driver (running them on an executor).
from .chunks import (
    MAX_CHUNK,
    MEMORY_FRACTION,
    TARGET_STEP_ELEMENTS,
    Chunk,
    auto_chunk_size,
    available_memory,
    model_bytes,
    plan,
)
from .driver import SweepOutcome, SweepProgress, SweepStatus, run_sweep, sweep_status
from .index import (
    CHUNKS_DIR,
    FORMAT,
    INDEX_FILE,
    SPEC_FILE,
    SweepError,
    SweepModel,
    build_index,
    load_model,
    load_sweep,
    pivot_grid,
    read_sweep_json,
)
from .spec import FIELDS, PACKED, Axis, SweepSpec, canonical_field, point_config

__all__ = [
    "CHUNKS_DIR", "FIELDS", "FORMAT", "INDEX_FILE", "MAX_CHUNK", "MEMORY_FRACTION", "PACKED", "SPEC_FILE",
    "TARGET_STEP_ELEMENTS", "Axis", "Chunk", "SweepError", "SweepModel", "SweepOutcome", "SweepProgress", "SweepSpec",
    "SweepStatus", "auto_chunk_size", "available_memory", "build_index", "canonical_field", "load_model", "load_sweep",
    "model_bytes", "pivot_grid", "plan", "point_config", "read_sweep_json", "run_sweep", "sweep_status",
]
