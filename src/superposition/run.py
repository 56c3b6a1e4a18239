"""The run directory: what a finished run is on disk, and how it is written and read back.

    RUN/
      config.json           the full RunConfig (JSON round-trip)
      weights.safetensors   W [inst, feat, hidden] and b [inst, feat]  (abs_mlp: W1, W2, b)
      metrics.json          per-instance final loss, loss curve, instance table (written last:
                            its presence marks the run complete)
      provenance.json       package version, git commit, command line, timestamps, device
      snapshots.safetensors optional: each parameter as [inst, snapshot, ...] plus `steps`
      checkpoint.safetensors only while training; lets an interrupted run resume

Every file is written to a temporary name and renamed into place, so a crash never leaves a
half-written file under a final name. A process training into a directory holds an exclusive
lock on it (`locked`); a second one is refused with "in use". Nothing read back is trusted:
`load_run` checks every file against the config (tensor names, shapes, float32, finite values,
the weights' own metadata, instance counts) and `load_checkpoint` checks a checkpoint's config,
step, tensors and logs before training resumes from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from .atomic import atomic_write_bytes, atomic_write_json, directory_lock, remove_temporaries
from .config import ConfigError, RunConfig
from .data import importance_matrix, probability_matrix
from .errors import read_json
from .guard import DivergedError, check_finite
from .models import Params, ToyModel, feature_directions

CONFIG, WEIGHTS, METRICS, PROVENANCE = "config.json", "weights.safetensors", "metrics.json", "provenance.json"
SNAPSHOTS, CHECKPOINT = "snapshots.safetensors", "checkpoint.safetensors"
RUN_FILES = (CONFIG, WEIGHTS, METRICS, PROVENANCE, SNAPSHOTS, CHECKPOINT)
WEIGHTS_FORMAT = "superposition-run"


class RunDirError(ValueError):
    """A path is not a readable, complete run directory (or cannot hold a new run)."""


class RunInUseError(RunDirError):
    """Another process holds the run directory's lock (it is training into it)."""


@dataclass
class Metrics:
    """What training measured. Lists are indexed by the saved instances unless named otherwise."""

    final_loss: list[float]
    loss_steps: list[int]
    loss_curve: list[list[float]]  # [inst][log point]: mean training loss over each interval
    config_index: list[int]
    restart: list[int]
    feature_probability: list[float | list[float]]
    restart_losses: list[list[float]]  # [config][restart], every restart trained
    train_seconds: float = 0.0
    steps_per_second: float = 0.0
    compiled: bool = False
    test_loss: list[float] | None = None  # held-out loss per saved instance, for runs on a finite dataset
    final_loss_se: list[float] | None = None  # standard error of each final loss (`superposition.estimate`)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Metrics:
        return cls(**raw)


@dataclass
class Run:
    """A trained batch of toy models with its config, measurements and provenance."""

    config: RunConfig
    params: Params
    metrics: Metrics
    provenance: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, Tensor] | None = None
    path: Path | None = None

    @property
    def model(self) -> ToyModel:
        """A working `nn.Module` over the saved instances."""
        return ToyModel(self.config.model, self.params)

    @property
    def W(self) -> Tensor:  # noqa: N802 - the paper's name
        """Feature directions ``[inst, feat, hidden]``: W, the input weights W1 of untied models, E·W with
        an embedding, or a custom module's W parameter."""
        return feature_directions(self.config.model, self.params)

    @property
    def b(self) -> Tensor:
        return self.params["b"]

    @property
    def n_instances(self) -> int:
        return len(self.metrics.final_loss)

    @property
    def probability(self) -> Tensor:
        """Feature probability p of every saved instance, ``[inst, feat]``."""
        return probability_matrix(self.config)[self.metrics.config_index]

    @property
    def importance(self) -> Tensor:
        """Feature importance of every saved instance, ``[inst, feat]``."""
        return importance_matrix(self.config)[self.metrics.config_index]

    def __repr__(self) -> str:
        from .display import run_repr

        return run_repr(self)

    def _repr_html_(self) -> str:
        """Jupyter's view: the configuration and a row per instance (p, loss, represented, D*)."""
        from .display import run_html

        return run_html(self)


# --- writing ----------------------------------------------------------------------------------


def tensor_file_bytes(tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file whose bytes depend only on the tensors and metadata: the library writes
    metadata in hash order, which differs between processes, so the header is rewritten with the
    metadata keys sorted (same length, so the data offsets stay)."""
    data = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in sorted(tensors.items())},
                             metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header = {"__metadata__": dict(sorted(header.pop("__metadata__").items())), **header}
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > n:  # pragma: no cover - only for metadata the JSON encoders escape differently
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n:]


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    atomic_write_bytes(path, tensor_file_bytes(tensors, metadata))


def config_bytes(config: RunConfig) -> bytes:
    """config.json's content."""
    return (config.to_json() + "\n").encode()


def weights_metadata(run: Run) -> dict[str, str]:
    """What the weights file says about itself; `load_run` checks it against config.json: the
    model kind, the tensor shapes, and the SHA-256 of the config.json written beside it (so a
    config.json edited after training is noticed)."""
    shapes = {k: list(v.shape) for k, v in sorted(run.params.items())}
    return {"format": WEIGHTS_FORMAT, "kind": run.config.model.kind, "shapes": json.dumps(shapes),
            "config_sha256": hashlib.sha256(config_bytes(run.config)).hexdigest()}


def save_run(run: Run, path: str | os.PathLike[str]) -> Path:
    """Write `run` as a run directory; metrics.json goes last and marks it complete.

    A saved model with a non-finite loss or parameter is refused (`DivergedError`); the loss of
    a diverged restart that best-of-N dropped is written as null (JSON has no NaN)."""
    out = Path(path)
    metrics = _json_metrics(run.metrics)
    check_finite(run.params, f"training diverged ({out} not saved): the trained weights")
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS).unlink(missing_ok=True)  # incomplete until the end
    atomic_write_bytes(out / CONFIG, config_bytes(run.config))
    atomic_save_tensors(out / WEIGHTS, run.params, weights_metadata(run))
    if run.snapshots is not None:
        atomic_save_tensors(out / SNAPSHOTS, run.snapshots)
    atomic_write_json(out / PROVENANCE, run.provenance)
    atomic_write_json(out / METRICS, metrics)
    run.path = out
    return out


def _json_metrics(metrics: Metrics) -> dict[str, Any]:
    """metrics.json's content: the saved instances' losses must be finite; any other non-finite
    number (a dropped restart's loss) becomes null."""
    raw = asdict(metrics)
    bad = [k for k, v in enumerate(raw["final_loss"]) if not _finite(v)]
    if bad or any(not _finite(v) for row in raw["loss_curve"] for v in row):
        raise DivergedError(f"training diverged: the loss of saved instance(s) {bad or '?'} is not finite; "
                            "nothing was saved; lower train.lr")
    return _nulls(raw)


def _nulls(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulls(v) for v in value]
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- the life cycle of a run directory --------------------------------------------------------


@contextmanager
def opened(config: RunConfig, out: str | os.PathLike[str] | None, overwrite: bool = False) -> Iterator[Path | None]:
    """The run directory `out`, ready for training `config` and locked against other processes
    for the duration of the block (None when `out` is None).

    Refusals (a file, a foreign directory, a finished run, another config's checkpoint, another
    process training there) happen before anything is written. A run that diverges leaves no
    files behind (a directory this call created is removed again), so the corrected command
    starts afresh."""
    if out is None:
        yield None
        return
    path = Path(out)
    check_out(path)
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    path.mkdir(parents=True, exist_ok=True)
    try:
        with locked(path):
            prepare_out(config, path, overwrite)
            yield path
    except DivergedError:
        clear_run(path)
        _remove_empty(created)
        raise


def check_out(path: Path) -> None:
    """Refuse what can be refused without the lock: a file, or a non-directory parent."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: exists and is not a directory")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise RunDirError(f"{parent}: is a file, so {path} cannot be created")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory `path` (an flock on the directory itself, so no
    lock file is left; the kernel releases it when the process dies). A second process is refused
    at once with `RunInUseError`."""
    busy = lambda: RunInUseError(f"{path}: in use by another superposition process training into it; "  # noqa: E731
                                 "wait for it to finish, or choose another --out")
    with directory_lock(path, busy):
        yield


def prepare_out(config: RunConfig, path: Path, overwrite: bool) -> None:
    """Make the locked directory `path` ready: new, resumable (same config), or refused with the
    reason. A directory holding only the config.json of a run that never reached a checkpoint
    (killed, or refused for its size, before training) is reused: nothing there can be lost."""
    remove_temporaries(path, RUN_FILES)  # writes killed half-way; their targets were never replaced
    if any(path.iterdir()):
        if not (path / CONFIG).is_file():
            raise RunDirError(f"{path}: not empty and not a superposition run directory; choose another --out")
        if overwrite:
            clear_run(path)
        elif is_complete(path):
            raise RunDirError(f"{path}: already holds a finished run; pass --overwrite or choose another --out")
        elif _has_progress(path) and read_config(path) != config:
            raise RunDirError(f"{path}: holds an unfinished run of a different config; "
                              "pass --overwrite or choose another --out")
    atomic_write_bytes(path / CONFIG, config_bytes(config))


def _has_progress(path: Path) -> bool:
    return any((path / name).exists() for name in (WEIGHTS, METRICS, SNAPSHOTS, CHECKPOINT))


def clear_run(path: Path) -> None:
    """Delete the files of a run (and nothing else) from `path`."""
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this process created (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def resume(path: Path, state: Any, config: RunConfig, restore: Any) -> None:
    """Restore `state` (a fresh training state) from the checkpoint in `path`, if there is one,
    after checking it against `config` and the state's own tensors: ``restore(state, tensors, meta)``."""
    found = load_checkpoint(path, config, state.tensors())
    if found is not None:
        restore(state, *found)


# --- reading ----------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return read_json(path, RunDirError)
    except FileNotFoundError:
        raise RunDirError(f"{path.parent}: not a superposition run directory (no {path.name})") from None


def read_config(path: str | os.PathLike[str]) -> RunConfig:
    """The RunConfig stored in a run directory."""
    out = Path(path)
    if not out.is_dir():
        raise RunDirError(f"{out}: no such run directory")
    try:
        return RunConfig.from_dict(_read_json(out / CONFIG))
    except ConfigError as exc:
        raise RunDirError(f"{out / CONFIG}: not a superposition config ({exc})") from None


def is_complete(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / METRICS).is_file() and (Path(path) / WEIGHTS).is_file()


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a finished run directory back; `run.model` is a working model.

    Every file is checked against config.json (see `superposition.runcheck`); anything that
    disagrees is a `RunDirError` naming the file and the field."""
    from . import runcheck

    out = Path(path)
    config = read_config(out)
    if not (out / METRICS).is_file():
        raise RunDirError(f"{out}: the run is not finished (no {METRICS}); train it again to resume")
    raw = _read_json(out / METRICS)
    runcheck.check_metrics(raw, config, out / METRICS)
    try:
        metrics = Metrics.from_dict(raw)
    except TypeError as exc:
        raise RunDirError(f"{out / METRICS}: unexpected content ({exc})") from None
    params, meta = _load_tensors(out / WEIGHTS)
    runcheck.check_weights(params, meta, config, len(metrics.final_loss), out / WEIGHTS)
    runcheck.check_config_digest(meta, out / CONFIG, out / WEIGHTS)
    snapshots = None
    if (out / SNAPSHOTS).is_file():
        snapshots = _load_tensors(out / SNAPSHOTS)[0]
        runcheck.check_snapshots(snapshots, params, config, out / SNAPSHOTS)
    provenance = _read_json(out / PROVENANCE) if (out / PROVENANCE).is_file() else {}
    if not isinstance(provenance, dict):
        raise RunDirError(f"{out / PROVENANCE}: must be a JSON object, got {type(provenance).__name__}")
    return Run(config, params, metrics, provenance, snapshots, out)


def _load_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            return {k: handle.get_tensor(k) for k in handle.keys()}, meta
    except FileNotFoundError:
        raise RunDirError(f"{path.parent}: not a superposition run directory (no {path.name})") from None
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise RunDirError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None


# --- provenance and checkpoints ---------------------------------------------------------------


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def provenance(device: str, compiled: bool, started: str) -> dict[str, Any]:
    """Where and how a run was made."""
    from . import __version__

    return {
        "package": "superposition",
        "version": __version__,
        "git_commit": _git_commit(),
        "command": sys.argv,
        "started": started,
        "finished": now(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": device,
        "compiled": compiled,
    }


def _git_commit() -> str | None:
    """The commit of the source checkout the package runs from, when it is one."""
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def save_checkpoint(out: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """One file holds tensors and metadata, so a checkpoint is replaced whole or not at all."""
    atomic_save_tensors(out / CHECKPOINT, tensors, {"meta": json.dumps(meta)})  # NaN: a diverged restart


def load_checkpoint(out: Path, config: RunConfig | None = None,
                    expected: dict[str, Tensor] | None = None) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The checkpoint of an interrupted run, or None when there is none. With `config` and
    `expected` (the tensors of a fresh training state) it is checked first: same config, a step
    inside the run, the same tensor names, shapes and dtypes, finite values, consistent logs."""
    from . import runcheck

    path = out / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})["meta"])
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as exc:  # a foreign or damaged file: say so rather than guess
        raise RunDirError(f"{path}: unreadable checkpoint ({exc.__class__.__name__}: {exc}); "
                          "delete it to start over") from None
    if config is not None and expected is not None:
        runcheck.check_checkpoint(tensors, meta, config, expected, path)
    return tensors, meta


def remove_checkpoint(out: Path) -> None:
    (out / CHECKPOINT).unlink(missing_ok=True)
