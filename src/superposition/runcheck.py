"""Checks of what a run directory holds against its config.json: nothing read from a file is
trusted. Each check raises `RunDirError` naming the file and the field that disagrees.

- metrics.json: every list has one entry per saved instance (or per log point, configuration,
  restart), of the right type and in range; the saved instances are as many as the config keeps.
- weights.safetensors: the tensors the model kind needs, float32, of the config's shapes, finite;
  the file's own metadata (format, kind, shapes) agrees with the config.
- snapshots.safetensors: the same parameters with a snapshot axis, plus their steps.
- checkpoint.safetensors: the same config, a step inside the run, the tensors of a training state
  (names, shapes, dtypes), finite values, and the logs that the step implies.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import ConfigError, RunConfig
from .errors import MAX_JSON_BYTES
from .models import param_shapes
from .run import WEIGHTS_FORMAT, RunDirError


def _fail(path: Path, message: str) -> None:
    raise RunDirError(f"{path}: {message}")


def saved_instances(config: RunConfig) -> int:
    """How many instances a finished run of `config` saves."""
    return config.n_instances if config.train.keep_all_restarts else config.data.n_configs


# --- metrics.json -----------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_float(v: Any) -> bool:
    """A number, NaN included (a restart that diverged while another restart of its configuration goes on)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any, low: int = 0, high: float = math.inf) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v < high


def _list(raw: dict, key: str, n: int | None, path: Path) -> list:
    value = raw.get(key)
    if not isinstance(value, list):
        _fail(path, f"{key} must be a list, got {type(value).__name__}")
    if n is not None and len(value) != n:
        _fail(path, f"{key} has {len(value)} entries, expected {n}")
    return value


OPTIONAL_LISTS = ("test_loss", "final_loss_se")
"""Optional per-instance lists of metrics.json (newer runs)."""


def check_metrics(raw: Any, config: RunConfig, path: Path) -> None:
    if not isinstance(raw, dict):
        _fail(path, f"must be a JSON object, got {type(raw).__name__}")
    n = saved_instances(config)
    final = _list(raw, "final_loss", n, path)
    if not all(_is_number(v) for v in final):
        _fail(path, "final_loss must be finite numbers")
    steps = _list(raw, "loss_steps", None, path)
    if not all(_is_int(s, 1, config.train.steps + 1) for s in steps) or steps != sorted(set(steps)):
        _fail(path, f"loss_steps must be increasing steps in 1 … {config.train.steps}")
    curve = _list(raw, "loss_curve", n, path)
    if not all(isinstance(row, list) and len(row) == len(steps) and all(_is_number(v) for v in row) for row in curve):
        _fail(path, f"loss_curve must hold {n} lists of {len(steps)} finite numbers (one per log step)")
    restarts = config.train.restarts
    if not all(_is_int(c, 0, config.data.n_configs) for c in _list(raw, "config_index", n, path)):
        _fail(path, f"config_index must be configuration numbers in 0 … {config.data.n_configs - 1}")
    if not all(_is_int(r, 0, restarts) for r in _list(raw, "restart", n, path)):
        _fail(path, f"restart must be restart numbers in 0 … {restarts - 1}")
    probs = _list(raw, "feature_probability", n, path)
    if not all(_is_number(p) or (isinstance(p, list) and all(_is_number(q) for q in p)) for p in probs):
        _fail(path, "feature_probability must be numbers or lists of numbers")
    rows = _list(raw, "restart_losses", config.data.n_configs, path)
    if not all(isinstance(r, list) and len(r) == restarts and all(v is None or _is_number(v) for v in r)
               for r in rows):
        _fail(path, f"restart_losses must hold {config.data.n_configs} lists of {restarts} numbers (null: diverged)")
    for key in OPTIONAL_LISTS:  # per saved instance when present (null: not measured or not finite)
        if raw.get(key) is not None and not all(v is None or _is_number(v) for v in _list(raw, key, n, path)):
            _fail(path, f"{key} must be numbers or null, one per saved instance")
    for key in ("train_seconds", "steps_per_second"):
        if key in raw and not _is_number(raw[key]):
            _fail(path, f"{key} must be a number")
    if "compiled" in raw and not isinstance(raw["compiled"], bool):
        _fail(path, "compiled must be true or false")


# --- tensors ----------------------------------------------------------------------------------


def _check_tensors(tensors: dict[str, Tensor], expected: dict[str, tuple[tuple[int, ...], torch.dtype]],
                   path: Path, what: str) -> None:
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        _fail(path, f"{what} must hold tensors {sorted(expected)}" + (f"; missing {missing}" if missing else "")
              + (f"; unexpected {extra}" if extra else ""))
    for name, (shape, dtype) in expected.items():
        t = tensors[name]
        if t.dtype != dtype:
            got, want = (str(d).removeprefix("torch.") for d in (t.dtype, dtype))
            _fail(path, f"{name} is {got}, expected {want}")
        if tuple(t.shape) != shape:
            _fail(path, f"{name} has shape {list(t.shape)}, but the config needs {list(shape)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            _fail(path, f"{name} holds NaN or infinite values")


def check_weights(params: dict[str, Tensor], meta: dict[str, str], config: RunConfig, n_inst: int,
                  path: Path) -> None:
    if meta.get("format") != WEIGHTS_FORMAT:
        _fail(path, f"not superposition weights (metadata format = {meta.get('format')!r})")
    if meta.get("kind") != config.model.kind:
        _fail(path, f"holds {meta.get('kind')!r} weights, but config.json says model.kind = {config.model.kind!r}")
    try:
        expected = param_shapes(config.model, n_inst)
    except ConfigError as exc:  # e.g. a custom model that cannot be imported or built here
        _fail(path, f"cannot rebuild the run's model: {exc}")
    if "shapes" in meta:
        try:
            shapes = {k: tuple(v) for k, v in json.loads(meta["shapes"]).items()}
        except (ValueError, TypeError, AttributeError):
            _fail(path, "metadata shapes is not a JSON object of shapes")
        if shapes != expected:
            _fail(path, f"metadata says shapes {shapes}, but config.json and the instance count need {expected}")
    _check_tensors(params, {k: (s, torch.float32) for k, s in expected.items()}, path, "the weights")


def check_config_digest(meta: dict[str, str], config_path: Path, weights_path: Path) -> None:
    """config.json must be the file that was saved with the weights (files from before the digest
    was recorded have none and are not checked)."""
    recorded = meta.get("config_sha256")
    if recorded is None:
        return
    with open(config_path, "rb") as handle:
        actual = hashlib.sha256(handle.read(MAX_JSON_BYTES)).hexdigest()
    if actual != recorded:
        _fail(config_path, f"was changed after the weights were saved (its SHA-256 differs from the one "
                           f"{weights_path.name} records); restore it or train again")


def check_snapshots(snapshots: dict[str, Tensor], params: dict[str, Tensor], config: RunConfig, path: Path) -> None:
    steps = snapshots.get("steps")
    if steps is None or steps.dim() != 1:
        _fail(path, "must hold a 1-D tensor `steps`")
    count = int(steps.shape[0])
    expected = {k: ((v.shape[0], count, *v.shape[1:]), torch.float32) for k, v in params.items()}
    expected["steps"] = ((count,), torch.int64)
    _check_tensors(snapshots, expected, path, "the snapshots")
    values = steps.tolist()
    if values != sorted(set(values)) or (values and not 0 <= values[0] <= values[-1] <= config.train.steps):
        _fail(path, f"steps must increase within 0 … {config.train.steps}")


# --- checkpoints ------------------------------------------------------------------------------


def check_checkpoint(tensors: dict[str, Tensor], meta: Any, config: RunConfig, expected: dict[str, Tensor],
                     path: Path) -> None:
    """`expected`: the tensors of a fresh training state (`TrainState.tensors()`, no snapshots)."""
    hint = "; delete it to start over"
    if not isinstance(meta, dict) or not {"config", "step", "loss_steps", "loss_curve", "snapshot_steps"} <= set(meta):
        _fail(path, "not a superposition checkpoint (its metadata lacks config, step and logs)" + hint)
    try:
        same = RunConfig.from_dict(meta["config"]) == config
    except (ValueError, TypeError):
        same = False
    if not same:
        _fail(path, "is a checkpoint of a different config than this run's" + hint)
    step, total = meta["step"], config.train.steps
    if not _is_int(step, 0, total):
        _fail(path, f"step = {step!r} is outside this run of {total} steps" + hint)
    snap_steps = _expected_snapshots(config, step)
    if meta["snapshot_steps"] != snap_steps:
        _fail(path, f"snapshot_steps {_short(meta['snapshot_steps'])} do not match step {step}" + hint)
    want = {k: (tuple(v.shape), v.dtype) for k, v in expected.items()}
    params = [k.removeprefix("params.") for k in expected if k.startswith("params.")]
    for i in range(len(snap_steps)):
        want.update({f"snapshot.{i}.{k}": (want[f"params.{k}"][0], torch.float32) for k in params})
    _check_tensors(tensors, want, path, "the checkpoint")
    if int(tensors["step"]) != step:
        _fail(path, f"its step tensor ({int(tensors['step'])}) disagrees with its metadata ({step})" + hint)
    log = config.train.log_every
    if meta["loss_steps"] != list(range(log, step + 1, log)):
        _fail(path, f"loss_steps {_short(meta['loss_steps'])} do not match step {step}" + hint)
    n_inst = config.n_instances
    curve = meta["loss_curve"]
    if not (isinstance(curve, list) and len(curve) == len(meta["loss_steps"])
            and all(isinstance(r, list) and len(r) == n_inst and all(_is_float(v) for v in r) for r in curve)):
        _fail(path, f"loss_curve must hold one list of {n_inst} losses per log step" + hint)


def _expected_snapshots(config: RunConfig, step: int) -> list[int]:
    every = config.train.snapshot_every
    return list(range(0, step + 1, every)) if every else []


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["check_checkpoint", "check_config_digest", "check_metrics", "check_snapshots", "check_weights",
           "saved_instances"]
