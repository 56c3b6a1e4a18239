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
half-written file under a final name.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from .atomic import atomic_write_bytes, atomic_write_json, temporary_beside
from .config import ConfigError, RunConfig
from .data import importance_matrix, probability_matrix
from .models import Params, ToyModel, param_shapes

CONFIG, WEIGHTS, METRICS, PROVENANCE = "config.json", "weights.safetensors", "metrics.json", "provenance.json"
SNAPSHOTS, CHECKPOINT = "snapshots.safetensors", "checkpoint.safetensors"


class RunDirError(ValueError):
    """A path is not a readable, complete run directory (or cannot hold a new run)."""


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
        """``[inst, feat, hidden]``; for abs_mlp the input weights W1."""
        return self.params["W1" if "W1" in self.params else "W"]

    @property
    def b(self) -> Tensor:
        return self.params["b"]

    @property
    def n_instances(self) -> int:
        return self.b.shape[0]

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


def atomic_save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    with temporary_beside(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)


def save_run(run: Run, path: str | os.PathLike[str]) -> Path:
    """Write `run` as a run directory; metrics.json goes last and marks it complete."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS).unlink(missing_ok=True)  # incomplete until the end
    atomic_write_bytes(out / CONFIG, (run.config.to_json() + "\n").encode())
    atomic_save_tensors(out / WEIGHTS, run.params, {"format": "superposition-run", "kind": run.config.model.kind})
    if run.snapshots is not None:
        atomic_save_tensors(out / SNAPSHOTS, run.snapshots)
    atomic_write_json(out / PROVENANCE, run.provenance)
    atomic_write_json(out / METRICS, asdict(run.metrics))
    run.path = out
    return out


# --- reading ----------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path.parent}: not a superposition run directory (no {path.name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None


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
    """Read a finished run directory back; `run.model` is a working model."""
    out = Path(path)
    config = read_config(out)
    if not (out / METRICS).is_file():
        raise RunDirError(f"{out}: the run is not finished (no {METRICS}); train it again to resume")
    try:
        metrics = Metrics.from_dict(_read_json(out / METRICS))
    except TypeError as exc:
        raise RunDirError(f"{out / METRICS}: unexpected content ({exc})") from None
    params = _load_tensors(out / WEIGHTS)
    _check_shapes(out, config, params, len(metrics.final_loss))
    snapshots = _load_tensors(out / SNAPSHOTS) if (out / SNAPSHOTS).is_file() else None
    provenance = _read_json(out / PROVENANCE) if (out / PROVENANCE).is_file() else {}
    return Run(config, params, metrics, provenance, snapshots, out)


def _load_tensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(path)
    except FileNotFoundError:
        raise RunDirError(f"{path.parent}: not a superposition run directory (no {path.name})") from None
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise RunDirError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None


def _check_shapes(out: Path, config: RunConfig, params: Params, n_inst: int) -> None:
    expected = param_shapes(config.model, n_inst)
    got = {k: tuple(v.shape) for k, v in params.items()}
    if got != expected:
        raise RunDirError(f"{out / WEIGHTS}: tensors {got} do not match the config, which needs {expected}")


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
    atomic_save_tensors(out / CHECKPOINT, tensors, {"meta": json.dumps(meta)})


def load_checkpoint(out: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The checkpoint of an interrupted run, or None when there is none."""
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
    return tensors, meta


def remove_checkpoint(out: Path) -> None:
    (out / CHECKPOINT).unlink(missing_ok=True)
