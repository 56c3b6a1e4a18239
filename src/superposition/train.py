"""train(RunConfig) -> Run: every instance trained at once, one fused step per batch.

The step (`make_step`) samples a batch from the counter-based generator, computes the loss and
hand-written gradients and applies Adam(W), all as tensor operations on the training state. It
runs eagerly (the reference) or compiled whole by `torch.compile`, which fuses it into a few
loops; both consume identical data.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import guard
from . import run as rundir
from .attacks import worst_perturbation
from .config import ConfigError, RunConfig
from .data import STREAM_EVAL, FeatureSpec, feature_spec, instances, sample
from .models import Params, forward, gradient_fn, init_params, instance_loss, target
from .optim import adam_update, lr_table
from .run import Metrics, Run

CompileMode = bool | Literal["auto"]
StepFn = Callable[..., None]

# Below this many steps a cold compile costs more than it saves.
AUTO_COMPILE_MIN_STEPS = 2000


@dataclass
class TrainState:
    """Everything that changes during training; a checkpoint is exactly this."""

    params: Params
    exp_avg: Params
    exp_avg_sq: Params
    step: Tensor  # 0-d int64: steps done
    loss_sum: Tensor  # [inst]: training loss summed since the last log point
    loss_steps: list[int] = field(default_factory=list)
    loss_curve: list[list[float]] = field(default_factory=list)  # [log point][inst]
    snapshot_steps: list[int] = field(default_factory=list)
    snapshots: list[Params] = field(default_factory=list)

    def tensors(self) -> dict[str, Tensor]:
        out = {"step": self.step, "loss_sum": self.loss_sum}
        for group in ("params", "exp_avg", "exp_avg_sq"):
            out.update({f"{group}.{k}": v for k, v in getattr(self, group).items()})
        for i, snap in enumerate(self.snapshots):
            out.update({f"snapshot.{i}.{k}": v for k, v in snap.items()})
        return out


def init_state(config: RunConfig, device: torch.device) -> TrainState:
    params = {k: v.to(device) for k, v in init_params(config.model, instances(config).seeds).items()}
    zeros = lambda: {k: torch.zeros_like(v) for k, v in params.items()}  # noqa: E731
    step = torch.zeros((), dtype=torch.int64, device=device)
    return TrainState(params, zeros(), zeros(), step, torch.zeros(config.n_instances, device=device))


def restore_state(state: TrainState, tensors: dict[str, Tensor], meta: dict) -> None:
    """Load a checkpoint into `state` in place (so a compiled step keeps its inputs)."""
    state.step.copy_(tensors["step"])
    state.loss_sum.copy_(tensors["loss_sum"])
    for group in ("params", "exp_avg", "exp_avg_sq"):
        for k, v in getattr(state, group).items():
            v.copy_(tensors[f"{group}.{k}"])
    state.loss_steps, state.loss_curve = meta["loss_steps"], meta["loss_curve"]
    state.snapshot_steps = meta["snapshot_steps"]
    n_snapshots = len(state.snapshot_steps)
    state.snapshots = [{k: tensors[f"snapshot.{i}.{k}"] for k in state.params} for i in range(n_snapshots)]


def make_step(config: RunConfig, compiled: bool) -> StepFn:
    """The training step: sample, loss and gradients, Adam(W), all in place on the state."""
    kind, data, cfg = config.model.kind, config.data, config.train
    gradients = gradient_fn(config.model, compiled)
    use_l1, adversarial = has_l1(config), cfg.adversarial_eps

    def step_fn(params: Params, exp_avg: Params, exp_avg_sq: Params, step: Tensor, loss_sum: Tensor,
                spec: FeatureSpec, lrs: Tensor, l1: Tensor) -> None:
        x = sample(spec, step, cfg.batch_size, data.distribution, data.set_size, data.signed)
        goal = None
        if adversarial:
            goal = target(kind, x)
            x = x + worst_perturbation(kind, params, x, spec.importance, adversarial)
        loss, grads = gradients(kind, params, x, spec.importance, goal=goal, l1=l1 if use_l1 else None)
        loss_sum.add_(loss)
        lr = torch.index_select(lrs, 0, step.view(1)).squeeze(0)
        t = step + 1
        for name, param in params.items():
            adam_update(param, grads[name], exp_avg[name], exp_avg_sq[name], lr, t, cfg)
        step.add_(1)

    if not compiled:
        return step_fn
    return torch.compile(step_fn, fullgraph=True, dynamic=False)


def has_l1(config: RunConfig) -> bool:
    lam = config.train.l1_hidden
    return any(v > 0 for v in lam) if isinstance(lam, tuple) else lam > 0


def l1_vector(config: RunConfig, device: torch.device | str = "cpu") -> Tensor:
    """The L1 penalty coefficient of every instance ``[inst]``."""
    lam = config.train.l1_hidden
    per_config = torch.tensor(lam if isinstance(lam, tuple) else (lam,) * config.data.n_configs)
    return per_config[instances(config).config_index].to(device=device, dtype=torch.float32)


def resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device = {device!r} is invalid: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r} is invalid: CUDA is not available on this machine; use cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device = {device!r} is invalid: use cpu, cuda or cuda:N")
    return dev


def should_compile(config: RunConfig, compile: CompileMode) -> bool:
    if compile == "auto":
        return config.train.steps >= AUTO_COMPILE_MIN_STEPS and shutil.which(os.environ.get("CXX", "g++")) is not None
    return bool(compile)


@torch.no_grad()
def evaluate(config: RunConfig, params: Params, spec: FeatureSpec | None = None, objective: bool = False) -> Tensor:
    """Per-instance loss ``[inst]`` on `train.eval_batches` fresh batches of the evaluation stream,
    the same events for every instance.

    With `objective`, the loss the run was trained on instead of the plain squared error: inputs
    attacked when `train.adversarial_eps` > 0, plus the L1 penalty when `train.l1_hidden` > 0.
    Best-of-N ranks restarts by it.
    """
    data, cfg, kind = config.data, config.train, config.model.kind
    device = params["b"].device
    spec = spec if spec is not None else feature_spec(config, STREAM_EVAL, device)
    l1 = l1_vector(config, device) if objective and has_l1(config) else None
    total = torch.zeros(params["b"].shape[0], device=device)
    for i in range(cfg.eval_batches):
        step = torch.tensor(i, dtype=torch.int64, device=device)
        x = sample(spec, step, cfg.batch_size, data.distribution, data.set_size, data.signed)
        goal = target(kind, x)
        if objective and cfg.adversarial_eps > 0:
            x = x + worst_perturbation(kind, params, x, spec.importance, cfg.adversarial_eps)
        fwd = forward(kind, params, x)
        total += instance_loss(fwd.output, goal, spec.importance)
        if l1 is not None:
            total += l1 * fwd.hidden.abs().sum(-1).mean(-1)
    return total / cfg.eval_batches


def train(config: RunConfig, *, device: str | torch.device = "cpu", compile: CompileMode = "auto",
          progress: bool = True, out: str | os.PathLike[str] | None = None, overwrite: bool = False,
          checkpoint_every: int | None = None) -> Run:
    """Train every instance of `config` and return the run (saved to `out` when given).

    Arguments:
        device: "cpu" (default) or "cuda"/"cuda:N".
        compile: compile the whole step with torch.compile (True), run it eagerly (False), or
            compile when the run is long enough to repay the compile ("auto").
        progress: show a progress bar.
        out: run directory. An interrupted run in `out` with the same config resumes from its
            last checkpoint; a finished one is an error unless `overwrite`.
        checkpoint_every: steps between checkpoints when `out` is given (default: every 30 s).
    """
    started = rundir.now()
    dev = resolve_device(device)
    guard.check_run_memory(config, dev)  # hardening hook: refuse what cannot fit, before any directory exists
    with rundir.opened(config, out, overwrite) as out_dir:  # hardening hook: checked, locked run directory
        state = init_state(config, dev)
        if out_dir is not None:
            rundir.resume(out_dir, state, config, restore_state)  # hardening hook: the checkpoint is checked first
        with _keep_freed_memory():
            step_fn, compiled = _build_step(config, should_compile(config, compile))
            done = _loop(config, state, step_fn, compiled, dev, progress, out_dir, checkpoint_every)
        prov = rundir.provenance(str(dev), done.compiled, started)
        run = _finish(config, state, done, prov)
        if out_dir is not None:
            rundir.save_run(run, out_dir)
            rundir.remove_checkpoint(out_dir)
    return run


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit
_GLIBC_TRIM_DEFAULT = 128 << 10


@contextmanager
def _keep_freed_memory() -> Iterator[None]:
    """While training, keep freed memory in the process instead of handing it back to the OS.

    Each step allocates and frees the same large buffers (x, the pre-activation, dL/dout: 16 MB
    each at 200/20x20). glibc returns them to the OS when freed (heap trimming, or munmap for
    large blocks), so every step page-faults them in again: ~3,000-12,000 faults and 6-20 ms of
    system time per 30 ms step at 200/20x20. Raising the mmap and trim thresholds keeps them.
    Afterwards the trim threshold goes back to glibc's default (the mmap threshold stays at
    32 MB, about where glibc's own adaptive threshold settles) and the pages are released.
    A no-op off glibc.
    """
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_TRIM_DEFAULT)
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def _build_step(config: RunConfig, compiled: bool) -> tuple[StepFn, bool]:
    if not compiled:
        return make_step(config, False), False
    try:
        return make_step(config, True), True
    except Exception as exc:  # pragma: no cover - depends on the platform's compiler
        warnings.warn(f"torch.compile unavailable ({exc}); training eagerly", stacklevel=3)
        return make_step(config, False), False


class LoopResult(NamedTuple):
    seconds: float
    steps_per_second: float  # after the first (possibly compiling) step
    compiled: bool  # False when the compiled step failed and training went on eagerly


def _loop(config: RunConfig, state: TrainState, step_fn: StepFn, compiled: bool, dev: torch.device,
          progress: bool, out_dir: Path | None, checkpoint_every: int | None) -> LoopResult:
    """Run the remaining steps of `state`, logging, snapshotting and checkpointing on the way."""
    cfg = config.train
    spec = feature_spec(config, device=dev)
    lrs, l1 = lr_table(cfg).to(dev), l1_vector(config, dev)
    start = int(state.step)
    snap_every = cfg.snapshot_every
    if snap_every and not state.snapshot_steps:
        _snapshot(state, 0)
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, unit="step", dynamic_ncols=True,
               desc=config.name, leave=False)
    t0 = time.perf_counter()
    t_first = last_ckpt = t0
    for s in range(start + 1, cfg.steps + 1):
        try:
            step_fn(state.params, state.exp_avg, state.exp_avg_sq, state.step, state.loss_sum, spec, lrs, l1)
        except Exception as exc:
            if s == start + 1 and _is_compile_failure(exc):
                warnings.warn(f"torch.compile failed ({exc.__class__.__name__}); training eagerly", stacklevel=3)
                step_fn, compiled = make_step(config, False), False
                step_fn(state.params, state.exp_avg, state.exp_avg_sq, state.step, state.loss_sum, spec, lrs, l1)
            else:
                raise
        if s == start + 1:
            t_first = time.perf_counter()
        if s % cfg.log_every == 0 or s == cfg.steps:
            _log(state, s, s - (state.loss_steps[-1] if state.loss_steps else 0), bar)
            guard.check_losses(config, state.loss_curve[-1], s)  # hardening hook: stop on divergence
        if snap_every and s % snap_every == 0:
            _snapshot(state, s)
        if out_dir is not None and s < cfg.steps and _due(s, checkpoint_every, last_ckpt):
            rundir.save_checkpoint(out_dir, state.tensors(), _checkpoint_meta(config, state))
            last_ckpt = time.perf_counter()
    bar.close()
    end = time.perf_counter()
    done = cfg.steps - start
    rate = (done - 1) / (end - t_first) if done > 1 and end > t_first else 0.0
    return LoopResult(end - t0, rate, compiled)


def _is_compile_failure(exc: Exception) -> bool:
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor"))


def _due(step: int, every: int | None, last: float) -> bool:
    if every is not None:
        return step % every == 0
    return time.perf_counter() - last > 30.0


def _log(state: TrainState, step: int, n: int, bar: tqdm) -> None:
    mean = (state.loss_sum / n).tolist()
    state.loss_sum.zero_()
    state.loss_steps.append(step)
    state.loss_curve.append(mean)
    bar.update(step - bar.n)
    bar.set_postfix(loss=f"{sum(mean) / len(mean):.4g}", refresh=False)


def _snapshot(state: TrainState, step: int) -> None:
    state.snapshot_steps.append(step)
    state.snapshots.append({k: v.detach().cpu().clone() for k, v in state.params.items()})


def _checkpoint_meta(config: RunConfig, state: TrainState) -> dict:
    return {"config": config.to_dict(), "step": int(state.step), "loss_steps": state.loss_steps,
            "loss_curve": state.loss_curve, "snapshot_steps": state.snapshot_steps}


def _finish(config: RunConfig, state: TrainState, done: LoopResult, prov: dict) -> Run:
    """Evaluate, keep the best restart per configuration, and assemble the Run."""
    params = {k: v.detach() for k, v in state.params.items()}
    losses = evaluate(config, params).cpu()
    restarts = config.train.restarts
    ranked = losses
    if restarts > 1 and (has_l1(config) or config.train.adversarial_eps > 0):
        ranked = evaluate(config, params, objective=True).cpu()  # what the restarts were trained to minimise
    by_config = torch.nan_to_num(ranked, nan=float("inf")).view(-1, restarts)
    if config.train.keep_all_restarts:
        keep = list(range(config.n_instances))
    else:
        keep = [c * restarts + int(r) for c, r in enumerate(by_config.argmin(dim=1))]
    table = instances(config)
    probs = config.data.feature_probability
    curve = torch.tensor(state.loss_curve).T[keep] if state.loss_curve else torch.zeros(len(keep), 0)
    metrics = Metrics(
        final_loss=losses[keep].tolist(),
        loss_steps=list(state.loss_steps),
        loss_curve=curve.tolist(),
        config_index=[table.config_index[k] for k in keep],
        restart=[table.restart[k] for k in keep],
        feature_probability=[_jsonable(probs[table.config_index[k]]) for k in keep],
        restart_losses=losses.view(-1, restarts).tolist(),
        train_seconds=done.seconds,
        steps_per_second=done.steps_per_second,
        compiled=done.compiled,
    )
    idx = torch.tensor(keep)
    kept = {k: v.cpu()[idx].contiguous() for k, v in params.items()}
    snaps = None
    if state.snapshots:
        snaps = {k: torch.stack([s[k][idx] for s in state.snapshots], dim=1) for k in kept}
        snaps["steps"] = torch.tensor(state.snapshot_steps)
    return Run(config, kept, metrics, prov, snaps)


def _jsonable(p: float | tuple[float, ...]) -> float | list[float]:
    return list(p) if isinstance(p, tuple) else p
