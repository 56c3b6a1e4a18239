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
      chunks/c0000.lock  held (flock) by the process working on the chunk
      index.parquet      one row per model (written when every chunk is done)

Running the same sweep again trains only the chunks without models.json, an interrupted chunk
resuming from its checkpoint; a different spec is refused. A chunk gives the same weights whichever
executor runs it, provided it runs with the same number of torch threads (one by default), and
each model equals training its point's config alone (`SweepSpec.config`; bit for bit when eager).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import run as rundir
from .backends import ChunkJob, Executor, get_executor, read_models
from .config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, _freeze
from .models import Params, ToyModel
from .run import RunDirError, load_run
from .train import CompileMode

SPEC_FILE, INDEX_FILE, CHUNKS_DIR = "sweep.json", "index.parquet", "chunks"
FORMAT = "superposition-sweep"

_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
FIELDS: dict[str, str] = {f.name: s for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)}
"""Every sweepable config field → its section."""
PACKED = ("feature_probability", "importance", "importance_decay", "l1_hidden")
"""Fields that may differ between the configurations of one run, hence between the points of a chunk."""
_LISTS = ("feature_probability", "importance", "betas")  # fields an axis may index: importance[1]
_FIELD = re.compile(r"^(?:(model|data|train)\.)?([a-z_0-9]+)(?:\[(\d+)\])?$")

TARGET_STEP_ELEMENTS = {"cpu": 1 << 19, "cuda": 1 << 24}
"""Batch elements (instances × batch × (features + hidden)) per training step a chunk aims for:
enough to amortise per-operation overhead; on CPU, larger chunks fall out of cache and get slower."""
MEMORY_FRACTION = 0.25
"""Share of the free memory that the chunks running at once may use together."""
MAX_CHUNK = 4096


class SweepError(RunDirError):
    """A sweep directory cannot be used as asked (different spec, unfinished, not a sweep)."""


# --- the spec ---------------------------------------------------------------------------------


def canonical_field(name: str) -> str:
    """The column name of a config field: ``data.importance[1]`` → ``importance[1]``; ``feature_probability`` → ``p``.

    Raises ConfigError for names that are not sweepable config fields."""
    match = _FIELD.match(str(name).strip())
    section, base, index = match.groups() if match else (None, None, None)
    base = "feature_probability" if base == "p" else base
    if base not in FIELDS or (section and FIELDS[base] != section) or (index and base not in _LISTS):
        raise ConfigError(f"axis field {name!r} is invalid: must be a config field such as p, importance[1], seed, "
                          f"n_hidden, lr (any of model.*, data.*, train.*; [i] only on {', '.join(_LISTS)})")
    short = "p" if base == "feature_probability" else base
    return f"{short}[{int(index)}]" if index else short


def _target(field: str) -> tuple[str, str, int | None]:
    """(section, field name, element index or None) of a canonical axis field."""
    base, _, index = field.partition("[")
    base = "feature_probability" if base == "p" else base
    return FIELDS[base], base, int(index[:-1]) if index else None


def _round(value: float) -> float:
    return float(f"{value:.10g}")


@dataclass(frozen=True)
class Axis:
    """One swept field and its values (one value per grid point along this axis)."""

    field: str
    """A config field: ``p``, ``seed``, ``n_hidden``, ``data.importance[1]`` (element 1 of the list) ..."""
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", canonical_field(self.field))
        values = _freeze(list(self.values) if isinstance(self.values, (list, tuple, range)) else self.values)
        if not isinstance(values, tuple) or not values:
            raise ConfigError(f"axis {self.field}: values = {self.values!r} is invalid: must be a non-empty list")
        object.__setattr__(self, "values", values)

    @classmethod
    def linear(cls, field: str, start: float, stop: float, num: int) -> Axis:
        """`num` evenly spaced values from `start` to `stop` inclusive."""
        _check_num(field, num)
        return cls(field, tuple(_round(start + (stop - start) * i / max(num - 1, 1)) for i in range(num)))

    @classmethod
    def log(cls, field: str, start: float, stop: float, num: int) -> Axis:
        """`num` log-spaced values from `start` to `stop` inclusive (both > 0)."""
        _check_num(field, num)
        if not (start > 0 and stop > 0):
            raise ConfigError(f"axis {field}: log range {start!r} … {stop!r} is invalid: both ends must be > 0")
        a, b = math.log10(start), math.log10(stop)
        return cls(field, tuple(_round(10 ** (a + (b - a) * i / max(num - 1, 1))) for i in range(num)))

    @classmethod
    def range(cls, field: str, start: int, stop: int | None = None, step: int = 1) -> Axis:
        """Integers like Python's range (seeds: ``Axis.range("seed", 10)`` is 0 … 9)."""
        return cls(field, tuple(range(start) if stop is None else range(start, stop, step)))

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "values": _jsonable(self.values)}

    @classmethod
    def from_dict(cls, raw: Any) -> Axis:
        """``{"field": F, "values": [...]}``, or ``"linear"``/``"log": [start, stop, num]``, or ``"range": [...]``."""
        kinds = ("values", "linear", "log", "range")
        given = [k for k in kinds if isinstance(raw, dict) and k in raw]
        if not isinstance(raw, dict) or "field" not in raw or len(given) != 1 or set(raw) - {"field", *kinds}:
            raise ConfigError(f"axis {raw!r} is invalid: must be {{\"field\": NAME, and one of {', '.join(kinds)}}}")
        kind, args = given[0], raw[given[0]]
        if kind == "values":
            return cls(raw["field"], args)
        if not isinstance(args, list) or not 1 <= len(args) <= 3:
            raise ConfigError(f"axis {raw['field']}: {kind} = {args!r} is invalid: must be [start, stop, num]"
                              if kind != "range" else f"axis {raw['field']}: range = {args!r} is invalid")
        return getattr(cls, kind)(raw["field"], *args)


def _check_num(field: str, num: Any) -> None:
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ConfigError(f"axis {field}: num = {num!r} is invalid: must be an integer >= 1")


@dataclass(frozen=True)
class SweepSpec:
    """A base config and the axes swept over it: the whole description of a sweep."""

    base: RunConfig
    """One model configuration: a single feature probability, one importance list, one l1_hidden."""
    axes: tuple[tuple[Axis, ...], ...] = ()
    """Groups of axes; the axes of a group are zipped (equal lengths), the groups crossed. An `Axis`
    given on its own is a group of one."""
    name: str = "sweep"
    chunk_size: int | None = None
    """Models (instances, counting restarts) per chunk; None: chosen from model size and free memory."""

    def __post_init__(self) -> None:
        groups = tuple((g,) if isinstance(g, Axis) else tuple(g) for g in self.axes)
        object.__setattr__(self, "axes", groups)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(self.name)):
            raise ConfigError(f"sweep name = {self.name!r} is invalid: use letters, digits, '_', '-', '.'")
        if self.chunk_size is not None and (isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int)
                                            or self.chunk_size < 1):
            raise ConfigError(f"chunk_size = {self.chunk_size!r} is invalid: must be an integer >= 1 or null")
        _check_axes(groups)
        _check_base(self.base)
        for axis in self.axis_list:
            for value in axis.values:
                _point_or_fail(self.base, {axis.field: value})

    @property
    def axis_list(self) -> list[Axis]:
        return [a for group in self.axes for a in group]

    @property
    def shape(self) -> tuple[int, ...]:
        """Points along each group of axes."""
        return tuple(len(g[0].values) for g in self.axes)

    @property
    def n_points(self) -> int:
        return math.prod(self.shape)

    def points(self) -> Iterator[dict[str, Any]]:
        """Every grid point as {axis field: value}, row-major (the last group varies fastest)."""
        for idx in itertools.product(*(range(n) for n in self.shape)):
            yield {a.field: a.values[i] for group, i in zip(self.axes, idx, strict=True) for a in group}

    def config(self, point: int | dict[str, Any]) -> RunConfig:
        """The standalone RunConfig of a grid point (by index or values): training it alone gives that model."""
        values = next(itertools.islice(self.points(), point, None)) if isinstance(point, int) else point
        return _point_or_fail(self.base, values)

    def to_dict(self) -> dict[str, Any]:
        axes = [g[0].to_dict() if len(g) == 1 else {"zip": [a.to_dict() for a in g]} for g in self.axes]
        return {"name": self.name, "base": self.base.to_dict(), "axes": axes, "chunk_size": self.chunk_size}

    @classmethod
    def from_dict(cls, raw: Any) -> SweepSpec:
        if not isinstance(raw, dict) or set(raw) - {"name", "base", "axes", "chunk_size"}:
            raise ConfigError("a sweep spec must be an object with keys name, base, axes, chunk_size; "
                              f"got {sorted(raw) if isinstance(raw, dict) else type(raw).__name__}")
        axes = raw.get("axes", [])
        if not isinstance(axes, list):
            raise ConfigError(f"axes = {axes!r} is invalid: must be a list of axes")
        groups = [tuple(Axis.from_dict(a) for a in _zip_members(g)) if isinstance(g, dict) and "zip" in g
                  else Axis.from_dict(g) for g in axes]
        return cls(RunConfig.from_dict(raw.get("base", {})), tuple(groups), raw.get("name", "sweep"),
                   raw.get("chunk_size"))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SweepSpec:
        """Read a spec from JSON, or YAML (``.yaml``/``.yml``)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"sweep spec {path}: unreadable ({exc.strerror})") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                return cls.from_dict(yaml.safe_load(text))
            return cls.from_dict(json.loads(text))
        except ValueError as exc:  # JSON and YAML syntax errors; ConfigError is one too
            raise ConfigError(f"sweep spec {path}: {exc}") from None


def _zip_members(group: dict) -> list:
    if set(group) != {"zip"} or not isinstance(group["zip"], list) or len(group["zip"]) < 2:
        raise ConfigError(f"axis group {group!r} is invalid: must be {{\"zip\": [axis, axis, ...]}}")
    return group["zip"]


def _check_axes(groups: tuple[tuple[Axis, ...], ...]) -> None:
    fields = [a.field for g in groups for a in g]
    for group in groups:
        if not group or not all(isinstance(a, Axis) for a in group):
            raise ConfigError(f"axes: {group!r} is invalid: each entry is an Axis or a group of Axis to zip")
        if len({len(a.values) for a in group}) != 1:
            lengths = ", ".join(f"{a.field}: {len(a.values)}" for a in group)
            raise ConfigError(f"zipped axes must have equal lengths, got {lengths}")
    dup = sorted({f for f in fields if fields.count(f) > 1})
    if dup:
        raise ConfigError(f"axes: {', '.join(dup)} swept twice; give each field one axis (zip axes to move together)")


def _check_base(base: RunConfig) -> None:
    if not isinstance(base, RunConfig):
        raise ConfigError(f"sweep base must be a RunConfig, got {type(base).__name__}")
    if base.data.n_configs != 1:
        raise ConfigError(f"base data.feature_probability = {list(base.data.feature_probability)} is invalid: the base "
                          "describes one configuration; sweep p with an axis")
    if base.data.per_config_importance or isinstance(base.train.l1_hidden, tuple):
        raise ConfigError("base data.importance / train.l1_hidden must be one configuration's values; sweep them "
                          "with an axis")


# --- grid points and chunks -------------------------------------------------------------------


def _point_or_fail(base: RunConfig, values: dict[str, Any]) -> RunConfig:
    try:
        return point_config(base, values)
    except (ConfigError, TypeError, ValueError) as exc:
        where = ", ".join(f"{k} = {v!r}" for k, v in values.items())
        raise ConfigError(f"sweep point ({where}): {exc}") from None


def point_config(base: RunConfig, values: dict[str, Any]) -> RunConfig:
    """`base` with the axis values of one point applied, in order (an element axis such as
    ``importance[1]`` edits the list the base, or an earlier axis, gave)."""
    changes: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    for field, value in values.items():
        section, name, index = _target(field)
        if index is not None:
            value = _with_element(base, changes, name, index, value)
        changes[section][name] = _freeze(value)
    data = changes["data"]
    if "feature_probability" in data:
        data["feature_probability"] = (data["feature_probability"],)
    return RunConfig(replace(base.model, **changes["model"]), replace(base.data, **data),
                     replace(base.train, **changes["train"]), base.name)


def _with_element(base: RunConfig, changes: dict, name: str, index: int, value: Any) -> tuple:
    section = FIELDS[name]
    current = changes[section].get(name, getattr(getattr(base, section), name))
    if name == "feature_probability" and name not in changes[section]:
        current = current[0]
    n = changes["model"].get("n_features", base.model.n_features)
    if name == "importance" and current is None:
        current = _decay_row(n, changes["data"].get("importance_decay", base.data.importance_decay))
    elif name == "feature_probability" and not isinstance(current, tuple):
        current = (current,) * n
    if index >= len(current):
        raise ConfigError(f"{name}[{index}] is out of range: the list has {len(current)} entries")
    return tuple(value if i == index else v for i, v in enumerate(current))


def _decay_row(n: int, decay: float) -> tuple[float, ...]:
    """decay**i exactly as `data.importance_matrix` makes it (so packing does not change a value)."""
    return tuple((decay ** torch.arange(n, dtype=torch.float64)).to(torch.float32).tolist())


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


def model_bytes(config: RunConfig) -> int:
    """Rough memory of one instance while training: ~16 float32s per batch element (data, its
    random bits, activations, gradients), the parameters with their Adam state, snapshots."""
    m, t = config.model, config.train
    params = m.n_features * m.n_hidden * (2 if m.kind == "abs_mlp" else 1) + m.n_features
    snapshots = (t.steps // t.snapshot_every + 1) * params if t.snapshot_every else 0
    return 4 * (16 * t.batch_size * (m.n_features + m.n_hidden) + 4 * params + snapshots)


def available_memory(device: str | torch.device = "cpu") -> int:
    """Bytes free for new allocations on `device` (MemAvailable on Linux; 4 GiB when unknown)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.mem_get_info(dev)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


# --- running ----------------------------------------------------------------------------------


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
    if isinstance(executor, str):
        exe = get_executor(executor, workers=workers, address=ray_address, device=device)
        try:
            return run_sweep(spec, out, executor=exe, device=device, compile=compile, progress=progress,
                             on_progress=on_progress)
        finally:
            getattr(exe, "shutdown", lambda: None)()
    t0, exe, out_dir = time.perf_counter(), executor, Path(out)
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
        done = before
        for result in exe.run(jobs):
            rows[result.chunk] = result.rows
            done += models[result.chunk]
            bar.update(models[result.chunk])
            bar.set_postfix_str(f"chunks {len(rows)}/{len(chunks)}")
            if on_progress is not None:
                on_progress(SweepProgress(len(rows), len(chunks), done, total, before, time.perf_counter() - t0))
    index = build_index(spec, chunks, rows)
    _write_index(out_dir / INDEX_FILE, index)
    index.attrs["sweep"] = str(out_dir)
    return SweepOutcome(out_dir, index, len(chunks), len(jobs), total - before, time.perf_counter() - t0)


def _open_sweep(spec: SweepSpec, out: Path, workers: int, device: str) -> list[Chunk]:
    """Create `out` for `spec`, or check that it holds this spec; returns the plan."""
    stored = read_sweep_json(out) if (out / SPEC_FILE).is_file() else None
    if stored is not None:
        old = SweepSpec.from_dict(stored["spec"])
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
    size = spec.chunk_size or auto_chunk_size(configs[0], sum(c.train.restarts for c in configs), workers, device)
    chunks = plan(spec, size)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in partial:
        tmp.unlink(missing_ok=True)
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


# --- the index --------------------------------------------------------------------------------


def build_index(spec: SweepSpec, chunks: list[Chunk], rows: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per model of the done chunks: point, swept values, seed, restart, final loss,
    represented, dims_per_feature (D*), mean_interference, and chunk + instance (its weights)."""
    points = list(spec.points())
    seed = spec.base.train.seed
    records = [{"point": r["point"], **_jsonable(points[r["point"]]),
                "seed": points[r["point"]].get("seed", seed),
                **{k: r[k] for k in ("restart", "final_loss", "represented", "dims_per_feature",
                                     "mean_interference")},
                "chunk": f"{CHUNKS_DIR}/{c.id}", "instance": r["instance"]}
               for c in chunks if c.id in rows for r in rows[c.id]]
    if not records:
        return pd.DataFrame(columns=["point", *(a.field for a in spec.axis_list), "seed", "restart"])
    return pd.DataFrame.from_records(records).sort_values(["point", "restart"], kind="stable").reset_index(drop=True)


def _write_index(path: Path, index: pd.DataFrame) -> None:
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        index.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_sweep_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sweep.json of a sweep directory."""
    file = Path(path) / SPEC_FILE
    try:
        stored = json.loads(file.read_text())
    except FileNotFoundError:
        raise SweepError(f"{path}: not a sweep directory (no {SPEC_FILE})") from None
    except (OSError, ValueError) as exc:
        raise SweepError(f"{file}: unreadable ({exc})") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise SweepError(f"{file}: not a superposition sweep")
    return stored


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
    return SweepStatus(SweepSpec.from_dict(stored["spec"]), stored["chunk_size"], stored["chunks"], len(done),
                       stored["models"], sum(len(r) for r in done))


def load_sweep(path: str | os.PathLike[str], partial: bool = False) -> pd.DataFrame:
    """The index of the sweep in `path` as a DataFrame, one row per model (see `build_index`).

    An unfinished sweep is an error unless `partial`, which indexes the chunks done so far.
    ``index.attrs["sweep"]`` is `path`, for `load_model`.
    """
    path = Path(path)
    stored = read_sweep_json(path)
    if (path / INDEX_FILE).is_file():
        index = pd.read_parquet(path / INDEX_FILE)
    else:
        spec = SweepSpec.from_dict(stored["spec"])
        chunks = plan(spec, stored["chunk_size"])
        rows = {c.id: r for c in chunks if (r := read_models(path / CHUNKS_DIR / c.id, c.points)) is not None}
        if len(rows) < len(chunks) and not partial:
            raise SweepError(f"{path}: the sweep is not finished ({len(rows)}/{len(chunks)} chunks done); run the "
                             "same sweep command again to finish it, or load it with partial=True")
        index = build_index(spec, chunks, rows)
    index.attrs["sweep"] = str(path)
    return index


class SweepModel(NamedTuple):
    """One model of a sweep, rebuilt from its chunk's weights."""

    config: RunConfig
    """The point's standalone config: training it alone gives this model."""
    params: Params
    """Each parameter with an instance axis of 1: ``W [1, feat, hidden]``, ``b [1, feat]``."""
    row: pd.Series

    @property
    def model(self) -> ToyModel:
        return ToyModel(self.config.model, self.params)


def load_model(path: str | os.PathLike[str], row: int | pd.Series) -> SweepModel:
    """Rebuild the model of index row `row` (a position in `load_sweep(path)`, or the row itself)."""
    path = Path(path)
    if not isinstance(row, pd.Series):
        row = load_sweep(path).iloc[int(row)]
    spec = SweepSpec.from_dict(read_sweep_json(path)["spec"])
    run = load_run(path / row["chunk"])
    k = int(row["instance"])
    return SweepModel(spec.config(int(row["point"])), {n: t[k:k + 1].clone() for n, t in run.params.items()}, row)


def pivot_grid(index: pd.DataFrame, value: str, rows: str, columns: str | None = None,
               agg: str | Callable = "mean") -> pd.DataFrame:
    """`value` on the grid of `rows` × `columns` (axis columns of the index), aggregated over
    everything else (seeds, restarts) with `agg`; sorted ascending. ``.to_numpy()`` gives the array
    a phase diagram draws: ``[len(rows), len(columns)]``."""
    if columns is None:
        return index.groupby(rows, sort=True)[[value]].agg(agg)
    return index.pivot_table(index=rows, columns=columns, values=value, aggfunc=agg, sort=True)
