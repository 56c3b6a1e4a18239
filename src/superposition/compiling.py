"""When compiling the training step pays: a decision on measured cost, not on a step count.

(Where the native step supports a run, `compile="auto"` takes it instead and none of this applies:
`superposition.native`.)

`train(..., compile="auto")` runs its first steps eagerly (they are real training steps; both paths
consume identical data), times them, and compiles the rest of the run when

    remaining steps × (eager step − compiled step) > cost of compiling,

where the compiled step and the compile cost come from what this machine measured before for the
same step (`signature`; a step compiled once is next loaded from the cache, at the cost of the loads
measured for other steps, or `DEFAULT_LOAD_S`): the record `superposition-compiles.json` beside
torch's Inductor cache, so wiping that cache forgets the records too. A record keeps the compile (or
cache-load) times and the eager/compiled speed-up measured within one run (a ratio, so a busy
machine skews it less than it skews absolute times). Never seen before, the step is assumed
`DEFAULT_SPEEDUP` times faster compiled (`SMALL_STEP_DEFAULT_SPEEDUP` for steps of a few
milliseconds) and to compile as slowly as the median cold compile recorded here (or
`DEFAULT_COLD_COMPILE_S`). The second run of a step on a machine therefore knows that loading it
is cheap.

Work that trains many shapes in one process (a recipe, a reproduction: `shared_shapes`) compiles the
step with dynamic shapes, so that one graph serves a model family (every feature and instance count;
every hidden size above `UNROLL_MAX_HIDDEN`), and `signature` leaves those sizes out there. Within a
process dynamo keeps the graph: a later run of the same signature pays only its first call
(`compiled_here`), which is not recorded as a cache load for the next process.

A step never compiled here that the decision leaves eager, but that would pay once loaded from the
cache (`worth_warming`), is compiled in the background at idle priority (`warm_in_background`): a
process of its own compiles it, loads it again the way the next run would, and records both, so
that the next run of the step compiles. Set SUPERPOSITION_BACKGROUND_COMPILE=0 to turn that off;
`reproduce` and sweeps turn it off in their workers, which keep every core busy already.

The decision depends on timings, so two `auto` runs of one config may take different paths (whose
results agree to float rounding, not bit for bit); `compile=True` or `False` gives bit-identical
reruns. A resumed run keeps the path its checkpoint recorded.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .atomic import atomic_write_json
from .config import RunConfig
from .data import probability_matrix, sparse_capacity
from .models.fused import UNROLL_MAX_HIDDEN

RECORD_FILE = "superposition-compiles.json"
DEFAULT_SPEEDUP = 3.0
"""Assumed eager/compiled step-time ratio of a step never compiled here whose eager step takes more
than `SMALL_STEP_S` (measured on 2 CPU cores: 142 ms eager against 47 ms compiled at 400 → 30 × 10)."""
SMALL_STEP_DEFAULT_SPEEDUP = 6.0
"""The same for eager steps under `SMALL_STEP_S`, where eager time is per-operation overhead that the
compiled step fuses away (measured: 1.8 → 0.14 ms at 5 → 2 × 10, 2.5 → 0.4 ms at 20 → 5 × 7)."""
SMALL_STEP_S = 0.005
DEFAULT_COLD_COMPILE_S = 15.0
"""Assumed cost of a first compile when none has been recorded on this machine (measured 8-15 s on
2 CPU cores for the paper's models; a cache load takes 1-3 s)."""
DEFAULT_LOAD_S = 5.0
"""Assumed cost of loading a compiled step from the cache when no load has been recorded here
(measured 3.2-3.9 s on 2 CPU cores at 5 → 2 × 10 for tracing the step and loading its code, after
1.5 s importing the compiler, which the records leave out: a process pays it once)."""
BACKGROUND_ENV = "SUPERPOSITION_BACKGROUND_COMPILE"
"""Environment variable: ``0`` turns off compiling in the background."""
WARMING_STALE_S = 1800.0
"""A background compile's lock older than this is taken to be dead and is replaced."""
MAX_WARMING = 2
"""Background compiles running at once at most (each is a ~300 MB process). A run of many shapes (a
T sweep) started 9 at once; a step left out is offered again by its next eager run."""
PROBE_STEPS = 4
"""Eager steps timed (after one warm-up step) before deciding."""
_KEEP = 5  # recorded compile times kept per step


@dataclass(frozen=True)
class Estimate:
    """What the decision weighed, in seconds (kept in the run's provenance)."""

    eager_step: float
    compiled_step: float
    compile: float
    remaining: int
    recorded: bool
    """Whether the compiled figures were measured here before (else assumed)."""

    @property
    def pays(self) -> bool:
        return self.remaining * (self.eager_step - self.compiled_step) > self.compile


def signature(config: RunConfig, device: torch.device | str) -> str:
    """A key of everything the compiled step depends on: the config without the values that are only
    tensor data (feature probabilities, importance, λ, learning rates, seeds) or that stay outside
    the step (steps, logging), plus the device and torch's version. Within `shared_shapes` it also
    leaves out the sizes the step is then compiled for symbolically (features, instances, and the
    hidden size above `UNROLL_MAX_HIDDEN`, where the step is not unrolled over it): steps of one
    signature share one compiled graph."""
    data, train = config.data, config.train
    data = replace(data, feature_probability=(1.0,) * data.n_configs, importance=None, importance_decay=1.0)
    train = replace(train, steps=1, seed=0, lr=1.0, warmup_steps=0, schedule="constant", log_every=1,
                    snapshot_every=None, keep_all_restarts=False, l1_hidden=1.0 if train.has_l1 else 0.0,
                    eval_batches=1)
    raw = replace(config, data=data, train=train, name="").to_dict()
    if config.data.sampler == "sparse":  # the slots per example, a shape the probabilities set
        raw["data"]["capacity"] = sparse_capacity(config.model.n_features, float(probability_matrix(config).max()))
    if _shared_shapes:
        raw["data"]["feature_probability"] = raw["train"]["restarts"] = raw["model"]["n_features"] = None
        raw["data"].pop("capacity", None)
        if config.model.n_hidden > UNROLL_MAX_HIDDEN:
            raw["model"]["n_hidden"] = None
        raw["shared_shapes"] = True
    key = json.dumps([raw, str(device), torch.__version__], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


_shared_shapes = False


@contextmanager
def shared_shapes(enabled: bool = True) -> Iterator[None]:
    """Within: compile the training step with dynamic shapes, one graph per model family, for work that
    trains many shapes in one process (a recipe, a reproduction), where every new shape would otherwise
    pay 5-25 s of compiling. Outside, each shape gets a static graph of its own, which a single run is
    better off with: measured at 5 → 2 × 10 on one core, 5,300 against 3,200 compiled steps/s and
    4 s against 7.7 s to load from the cache."""
    from torch.fx.experimental import _config as fx_config

    global _shared_shapes
    old, _shared_shapes = _shared_shapes, enabled
    # No "duck sizing" for these graphs: two sizes that happen to be equal (2 instances, 2 hidden)
    # would share one symbol, and the hidden size, which the unrolled step specialises on, would pin
    # the instances. (The step compiles at its first call, inside this context.)
    old_duck, fx_config.use_duck_shape = fx_config.use_duck_shape, fx_config.use_duck_shape and not enabled
    try:
        yield
    finally:
        _shared_shapes, fx_config.use_duck_shape = old, old_duck


def shapes_shared() -> bool:
    """Whether the step is compiled with dynamic shapes here (`shared_shapes`)."""
    return _shared_shapes


def record_path() -> Path:
    """The record file in torch's Inductor cache directory: TORCHINDUCTOR_CACHE_DIR, else torch's
    default ``TMP/torchinductor_USER``, worked out here because importing torch._inductor to ask it
    takes a second, which an eager run should not pay."""
    folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if folder is None:
        try:
            user = getpass.getuser()
        except (KeyError, ModuleNotFoundError, OSError):
            user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
        folder = os.path.join(tempfile.gettempdir(), "torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", user))
    return Path(folder).absolute() / RECORD_FILE


def read_records(path: Path | None = None) -> dict[str, dict]:
    """The records, or none when the file is missing or unreadable (it is only a hint)."""
    try:
        raw = json.loads((path or record_path()).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in raw.items() if _valid(v)} if isinstance(raw, dict) else {}


def _numbers(value: object, positive: bool = False) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and (x > 0 if positive else x >= 0) for x in value)


def _valid(entry: object) -> bool:
    return (isinstance(entry, dict) and _numbers(entry.get("compile_s")) and len(entry["compile_s"]) > 0
            and _numbers(entry.get("speedup", []), positive=True))


def estimate(key: str, eager_step: float, remaining: int, records: dict[str, dict] | None = None) -> Estimate:
    """The decision's inputs for a step of signature `key` whose eager step took `eager_step` s."""
    records = read_records() if records is None else records
    entry = records.get(key)
    default = SMALL_STEP_DEFAULT_SPEEDUP if eager_step < SMALL_STEP_S else DEFAULT_SPEEDUP
    speedup = statistics.median(entry["speedup"]) if entry and entry.get("speedup") else default
    here = compiled_here(key)
    if here is not None:
        return Estimate(eager_step, eager_step / speedup, here, remaining, True)
    if entry is not None:
        times = entry["compile_s"]
        # One compile recorded: it was the cold one, and it left the step in the cache, so the next
        # cost is a load (as measured for other steps here, else assumed), not another compile.
        cost = min(times[0], load_estimate(records)) if len(times) == 1 else min(times)
        return Estimate(eager_step, eager_step / speedup, cost, remaining, True)
    # The median, not the slowest: a process's first compile also pays for importing the compiler and,
    # once per cache, for building its C++ header (measured 24 s against 14 s for the next step).
    colds = [max(e["compile_s"]) for e in records.values()]
    cold = statistics.median(colds) if colds else DEFAULT_COLD_COMPILE_S
    return Estimate(eager_step, eager_step / default, cold, remaining, False)


def load_estimate(records: dict[str, dict] | None = None) -> float:
    """What loading a compiled step from the cache costs a fresh process here: the median of the
    recorded loads (a step's fastest time, where it has more than one), else `DEFAULT_LOAD_S`."""
    records = read_records() if records is None else records
    loads = [min(e["compile_s"]) for e in records.values() if len(e["compile_s"]) > 1]
    return statistics.median(loads) if loads else DEFAULT_LOAD_S


_background = True


@contextmanager
def background_compiles(enabled: bool) -> Iterator[None]:
    """Allow (or, for work that keeps every core busy itself, forbid) background compiles within."""
    global _background
    old, _background = _background, enabled
    try:
        yield
    finally:
        _background = old


def worth_warming(est: Estimate, records: dict[str, dict] | None = None) -> bool:
    """Whether a step that `est` left eager should be compiled in the background for later runs: it
    was never compiled here, compiling did not pay in this run, but loading it would pay in a run as
    long; and background compiles are not turned off (`BACKGROUND_ENV`, `background_compiles`)."""
    if est.recorded or est.pays or not _background or os.environ.get(BACKGROUND_ENV, "1").strip() == "0":
        return False
    return est.remaining * (est.eager_step - est.compiled_step) > load_estimate(records)


_compiled_here: dict[str, float] = {}
"""Signatures compiled in this process: dynamo keeps their graphs, so a later run of one pays no
trace, compile or cache load, only what its first compiled call measured (`compiled_here`)."""


def compiled_here(key: str) -> float | None:
    """What the first compiled call of `key` cost the last time in this process, or None if not compiled here."""
    return _compiled_here.get(key)


def note_compiled(key: str, compile_s: float, speedup: float | None = None) -> None:
    """Record a run's first compiled call: in the machine's records (`record`) when it is this process's
    first compile of `key` (a cold compile or a cache load, which the next process will pay again),
    and for this process."""
    if key not in _compiled_here:
        record(key, compile_s, speedup)
    elif speedup:
        record(key, None, speedup)
    _compiled_here[key] = compile_s


def record(key: str, compile_s: float | None, speedup: float | None = None, path: Path | None = None) -> None:
    """Add a measured compile (or cache load) time for `key`, and the eager/compiled speed-up when the
    run measured both. Best effort: an unwritable cache directory only loses the hint."""
    path = path or record_path()
    records = read_records(path)
    entry = records.get(key, {"compile_s": [], "speedup": []})
    speedups = entry.get("speedup", []) + ([round(speedup, 3)] if speedup else [])
    times = entry["compile_s"] + ([] if compile_s is None else [round(compile_s, 4)])
    if not times:
        return
    records[key] = {"compile_s": times[-_KEEP:], "speedup": speedups[-_KEEP:]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, records)
    except OSError:
        pass


def warm_in_background(config: RunConfig, device: torch.device | str) -> bool:
    """Start compiling the training step of `config` in a background process at idle priority (one
    per step at a time, `MAX_WARMING` in all: a lock file beside the records holds the config); True
    when started. Best
    effort: any failure only loses the hint."""
    lock = record_path().with_name(f"superposition-warming-{signature(config, device)}.json")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        if lock.exists() and time.time() - lock.stat().st_mtime > WARMING_STALE_S:
            lock.unlink(missing_ok=True)
        if _warming(lock.parent) >= MAX_WARMING:
            return False
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return False  # already warming, or no writable cache directory
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"config": config.to_dict(), "device": str(device)}, f)
        _spawn("warm", lock, wait=False)
    except (OSError, ValueError, subprocess.SubprocessError):
        lock.unlink(missing_ok=True)
        return False
    return True


def _warming(folder: Path) -> int:
    """Background compiles running now: their locks in `folder` younger than `WARMING_STALE_S`."""
    now = time.time()
    count = 0
    for lock in folder.glob("superposition-warming-*.json"):
        try:
            count += now - lock.stat().st_mtime <= WARMING_STALE_S
        except OSError:
            continue  # finished meanwhile
    return count


def _spawn(mode: str, lock: Path, wait: bool) -> None:
    """Run `_main(mode, lock)` in a child: this interpreter, this copy of the package, one thread, no
    background compiles of its own. It stays in this session (so that its idle priority holds
    against this process's, which an own session's scheduling group would not)."""
    src = str(Path(__file__).resolve().parents[1])
    code = (f"import sys; sys.path.insert(0, {src!r}); "
            f"from superposition.compiling import _main; _main({mode!r}, {str(lock)!r})")
    env = {**os.environ, BACKGROUND_ENV: "0", "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_COMPILE_THREADS": "1",
           "TORCHINDUCTOR_CACHE_DIR": str(lock.parent)}
    run = subprocess.run if wait else subprocess.Popen
    kwargs = {"timeout": WARMING_STALE_S} if wait else {}
    run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=env, close_fds=True, **kwargs)


def _main(mode: str, lock: str) -> None:
    """The background compile: ``warm`` compiles the step (a cold compile), then has a fresh process
    ``load`` it from the cache as the next run would; each records what it measured."""
    path = Path(lock)
    try:
        _lower_priority()
        spec = json.loads(path.read_text())
        config = RunConfig.from_dict(spec["config"])
        torch.set_num_threads(1)
        from .train import time_compiled_step

        if time_compiled_step(config, spec["device"], cpu_clock=True) is not None and mode == "warm":
            _spawn("load", path, wait=True)
    finally:
        if mode == "warm":
            path.unlink(missing_ok=True)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the C++ compilers)."""
    try:
        import resource  # POSIX only
    except ImportError:
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _lower_priority() -> None:
    try:
        os.nice(19)
        if hasattr(os, "sched_setscheduler"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def median_step(times: list[float]) -> float:
    return statistics.median(times) if times else 0.0


__all__ = ["BACKGROUND_ENV", "DEFAULT_COLD_COMPILE_S", "DEFAULT_LOAD_S", "DEFAULT_SPEEDUP", "PROBE_STEPS",
           "SMALL_STEP_DEFAULT_SPEEDUP", "Estimate", "background_compiles", "compiled_here", "cpu_seconds", "estimate",
           "load_estimate", "note_compiled", "read_records", "record", "record_path", "shapes_shared",
           "shared_shapes", "signature", "warm_in_background", "worth_warming"]
