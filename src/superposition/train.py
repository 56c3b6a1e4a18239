"""train(RunConfig) -> Run: every instance trained at once, one fused step per batch.

The step (`make_step`) samples a batch from the counter-based generator (or a minibatch of a finite
training set), computes the loss and its gradients and applies the optimiser, all as tensor
operations on the training state. Gradients are hand-written for the paper's models (`fused`) and
come from `torch.func` for every other model, target or loss (`autograd`); either way the step runs
eagerly (the reference) or compiled whole by `torch.compile`, which fuses it into a few loops, and
both consume identical data. A torch.optim optimiser other than the fused Adam(W)/SGD runs eagerly.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import compiling, guard, native
from . import run as rundir
from .analysis.phase import best_restarts
from .attacks import ATTACK_SALT, eps_vector, training_perturbation
from .config import PRESETS, ConfigError, RunConfig
from .data import (
    STREAM_EVAL,
    FeatureSpec,
    SparseBatch,
    Stream,
    dataset,
    dataset_codes,
    dataset_parts,
    draw,
    draw_codes,
    feature_spec,
    instances,
    l1_vector,
    minibatch,
    probability_matrix,
    shuffle_keys,
    sparse_capacity,
)
from .estimate import estimate_loss
from .models import (
    FROZEN,
    LossAndGrads,
    Params,
    composed,
    forward,
    gradient_fn,
    init_params,
    loss_and_grads_sparse,
    target,
    trainable,
)
from .models.fused import UNROLL_MAX_HIDDEN
from .optim import TorchOptimizer, lr_table, update
from .registry import LOSSES
from .run import Metrics, Run

CompileMode = bool | Literal["auto", "native"]
StepFn = Callable[..., None]


@dataclass
class TrainState:
    """Everything that changes during training; a checkpoint is exactly this."""

    params: Params
    exp_avg: Params  # Adam's first moment, or SGD's momentum buffer
    exp_avg_sq: Params
    step: Tensor  # 0-d int64: steps done
    loss_sum: Tensor  # [inst]: training loss summed since the last log point
    loss_steps: list[int] = field(default_factory=list)
    loss_curve: list[list[float]] = field(default_factory=list)  # [log point][inst]
    snapshot_steps: list[int] = field(default_factory=list)
    snapshots: list[Params] = field(default_factory=list)
    optimizer: TorchOptimizer | None = None  # a torch.optim optimiser, when the config names one
    compiled: bool | None = None  # the path `compile="auto"` chose, once chosen (kept by checkpoints)
    native: bool = False  # trained by the native step (`superposition.native`; kept by checkpoints)

    def tensors(self) -> dict[str, Tensor]:
        out = {"step": self.step, "loss_sum": self.loss_sum}
        for group in ("params", "exp_avg", "exp_avg_sq"):
            out.update({f"{group}.{k}": v for k, v in getattr(self, group).items()})
        for i, snap in enumerate(self.snapshots):
            out.update({f"snapshot.{i}.{k}": v for k, v in snap.items()})
        if self.optimizer is not None:
            out.update(self.optimizer.state_tensors())
        return out


def init_state(config: RunConfig, device: torch.device) -> TrainState:
    params = {k: v.to(device) for k, v in init_params(config.model, instances(config).init_seeds).items()}
    zeros = lambda: {k: torch.zeros_like(v) for k, v in trainable(params).items()}  # noqa: E731
    step = torch.zeros((), dtype=torch.int64, device=device)
    state = TrainState(params, zeros(), zeros(), step, torch.zeros(config.n_instances, device=device))
    if config.train.torch_optimizer:
        state.optimizer = TorchOptimizer(trainable(params), config.train)
    return state


@torch.no_grad()
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
    if state.optimizer is not None:
        state.optimizer.load_state_tensors(tensors)
    chosen = meta.get("compiled")
    state.compiled = chosen if isinstance(chosen, bool) else None
    state.native = meta.get("native") is True


def check_objective(config: RunConfig, params: Params) -> None:
    """Refuse a target or loss whose output has the wrong shape, on a probe batch, before training."""
    spec = feature_spec(config, device=next(iter(params.values())).device)
    x = draw(spec, torch.zeros((), dtype=torch.int64, device=spec.keys.device), 4, config.data)
    expected = [config.n_instances, 4, config.model.n_features]
    if list(x.shape) != expected:
        raise ConfigError(f"data.distribution = {config.data.distribution!r} is invalid: its sampler returned "
                          f"{list(x.shape)}, expected [inst, batch, feat] = {expected}")
    goal = target(config.target, x)
    if goal.shape != x.shape:
        raise ConfigError(f"train.target = {config.target!r} is invalid: it maps x {list(x.shape)} to "
                          f"{list(goal.shape)}; a target must keep the shape [inst, batch, feat]")
    with torch.no_grad():
        loss = LOSSES.get(config.train.loss)(forward(config.model, params, x).output, goal, spec.importance)
    if tuple(loss.shape) != (config.n_instances,):
        raise ConfigError(f"train.loss = {config.train.loss!r} is invalid: it returned shape {list(loss.shape)}; "
                          f"a loss must return one value per instance, [{config.n_instances}]")


def uses_fused_gradients(config: RunConfig) -> bool:
    """Whether the step takes the hand-written gradients (`train.gradients`, resolved)."""
    choice = config.train.gradients
    fusable = config.model.fused_kind is not None and config.train.loss == "mse"
    if choice == "fused" and not fusable:
        raise ConfigError(f"train.gradients = 'fused' is invalid here: hand-written gradients exist for the paper's "
                          f"four models with loss mse, not for {_describe(config)}; use auto or autograd")
    return fusable if choice == "auto" else choice == "fused"


def _describe(config: RunConfig) -> str:
    m = config.model
    return f"model.custom = {m.custom}" if m.custom else f"{m.parts} with loss {config.train.loss}"


def autograd_gradients(config: RunConfig, compiled: bool = False) -> Callable[..., LossAndGrads]:
    """Per-instance loss and the gradient of its sum (plus the L1 term) by `torch.func.grad`, for any model.
    Signature: (params, x, importance, goal, l1) -> LossAndGrads. Compiled, built-in models with a small
    hidden size take the unrolled forward pass (`composed.forward_unrolled`)."""
    model, loss_fn = config.model, LOSSES.get(config.train.loss)
    unrolled = compiled and model.custom is None and model.n_hidden <= UNROLL_MAX_HIDDEN
    run_forward = functools.partial(composed.forward_unrolled, model) if unrolled else functools.partial(forward, model)

    def objective(train_params: Params, frozen: Params, x: Tensor, importance: Tensor, goal: Tensor,
                  l1: Tensor | None) -> tuple[Tensor, Tensor]:
        fwd = run_forward({**frozen, **train_params}, x)
        loss = loss_fn(fwd.output, goal, importance)
        total = loss.sum()
        if l1 is not None:
            total = total + (l1 * fwd.hidden.abs().sum(-1).mean(-1)).sum()
        return total, loss

    grad = torch.func.grad(objective, has_aux=True)

    def gradients(params: Params, x: Tensor, importance: Tensor, goal: Tensor, l1: Tensor | None) -> LossAndGrads:
        frozen = {k: v for k, v in params.items() if k in FROZEN}
        grads, loss = grad(trainable(params), frozen, x, importance, goal, l1)
        return LossAndGrads(loss, grads)

    return gradients


def _gradients(config: RunConfig, compiled: bool) -> Callable[..., LossAndGrads]:
    """(params, x, importance, goal, l1) -> LossAndGrads on the path `config` takes; goal None is the target."""
    name = config.target
    if not uses_fused_gradients(config):
        autograd = autograd_gradients(config, compiled)
        return lambda params, x, importance, goal, l1: autograd(
            params, x, importance, target(name, x) if goal is None else goal, l1)
    kind, fused = config.model.fused_kind, gradient_fn(config.model, compiled)
    if name != PRESETS[kind].target:
        return lambda params, x, importance, goal, l1: fused(
            kind, params, x, importance, goal=target(name, x) if goal is None else goal, l1=l1)
    return lambda params, x, importance, goal, l1: fused(kind, params, x, importance, goal=goal, l1=l1)


SPARSE_MIN_RATIO = 32
"""The step keeps a sparse batch sparse only when n_features is at least this many times its slots
per example K (`sparse_capacity`): gathering K rows of W per example beats one dense product only
when K is a small fraction of n. Measured per step (sample, loss and gradients; one thread, batch
1024, relu_output), sparse against dense, eager and compiled: 400 → 30 × 10 at p = 0.05 (n/K = 7)
493 vs 245 ms and 154 vs 51 ms; at p = 0.01 (n/K = 15) 201 vs 243 and 76 vs 51; 2000 → 10 × 2 at
p = 0.005 (n/K = 49) 63 vs 228 and 40 vs 42; 10,000 → 2 at p = 0.001 (n/K = 244) 155 vs 613 and 58
vs 112."""


def sparse_inputs(config: RunConfig) -> bool:
    """Whether the step keeps its batches (and a finite training set) sparse
    (`fused.loss_and_grads_sparse`): the sparse sampler with n_features ≥ `SPARSE_MIN_RATIO` × its
    slots, hand-written gradients, the model's own target and no attack (which perturbs every
    input). Otherwise a sparse draw is made dense first (same values up to float rounding)."""
    kind, n = config.model.fused_kind, config.model.n_features
    if config.data.sampler != "sparse" or kind is None or config.target != PRESETS[kind].target:
        return False
    if config.train.has_adversarial or not uses_fused_gradients(config):
        return False
    return n >= SPARSE_MIN_RATIO * sparse_capacity(n, float(probability_matrix(config).max()))


def make_step(config: RunConfig, compiled: bool, optimizer: TorchOptimizer | None = None) -> StepFn:
    """The training step: sample, loss and gradients, the optimiser's update, all in place on the state.
    With a torch.optim `optimizer` the update is its `step` (eager only)."""
    data, cfg = config.data, config.train
    gradients = _gradients(config, compiled)
    use_l1, adversarial, name = cfg.has_l1, cfg.has_adversarial, config.target
    eps_list = eps_vector(config).tolist() if adversarial else []
    sparse, kind = sparse_inputs(config), config.model.fused_kind
    unrolled = compiled and config.model.n_hidden <= UNROLL_MAX_HIDDEN

    def step_fn(params: Params, exp_avg: Params, exp_avg_sq: Params, step: Tensor, loss_sum: Tensor,
                spec: FeatureSpec, lrs: Tensor, l1: Tensor, train_set: Tensor | SparseBatch | None = None,
                order: Tensor | None = None) -> None:
        if sparse:
            codes = draw_codes(spec, step, cfg.batch_size, data) if train_set is None else \
                minibatch(train_set, order, step, cfg.batch_size)
            loss, grads = loss_and_grads_sparse(kind, params, codes.index, codes.value, spec.importance,
                                                l1 if use_l1 else None, unrolled=unrolled)
        else:
            x = draw(spec, step, cfg.batch_size, data) if train_set is None else \
                minibatch(train_set, order, step, cfg.batch_size)
            goal = None
            if adversarial:
                goal = target(name, x)
                eps = torch.tensor(eps_list, dtype=x.dtype, device=x.device)
                uniform = Stream(spec.keys, step).uniform(x.shape[1], 1, salt=ATTACK_SALT).squeeze(-1)
                x = x + training_perturbation(config.model.fused_kind, cfg.adversarial_attack, params, x,
                                              spec.importance, eps, uniform)
            loss, grads = gradients(params, x, spec.importance, goal, l1 if use_l1 else None)
        loss_sum.add_(loss)
        lr = torch.index_select(lrs, 0, step.view(1)).squeeze(0)
        if optimizer is not None:
            optimizer.step(grads, float(lr))
        else:
            t = step + 1
            for key, grad in grads.items():
                update(params[key], grad, exp_avg[key], exp_avg_sq[key], lr, t, cfg)
        step.add_(1)

    if not compiled:
        return step_fn
    _allow_recompiles()
    # Dynamic shapes only where one process trains many shapes (`compiling.shared_shapes`); never
    # torch's automatic choice, whose profile on disk would turn every later process's step dynamic.
    return torch.compile(step_fn, fullgraph=True, dynamic=compiling.shapes_shared())


# Every run's step is the same code object with other closure values and shapes, so one process
# that trains many configurations (reproduce, a benchmark, a notebook) recompiles it for each; past
# dynamo's default limit of 8 it would silently fall back to eager.
RECOMPILE_LIMIT = 512


def _allow_recompiles() -> None:
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT)


def has_l1(config: RunConfig) -> bool:
    return config.train.has_l1


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


def should_compile(config: RunConfig, compile: CompileMode, device: torch.device | None = None) -> bool | None:
    """True or False, or None for "time the first steps and decide" (`superposition.compiling`)."""
    if config.train.torch_optimizer:
        return False  # torch.optim's step runs eagerly
    if compile == "auto":
        on_cpu = device is None or device.type == "cpu"
        if on_cpu and shutil.which(os.environ.get("CXX", "g++")) is None:
            return False  # Inductor needs a C++ compiler on CPU
        return None
    return bool(compile)


@torch.no_grad()
def evaluate(config: RunConfig, params: Params, spec: FeatureSpec | None = None, objective: bool = False,
             split: str = "train") -> Tensor:
    """Per-instance loss ``[inst]``: on `train.eval_batches` fresh batches of the evaluation stream, the
    same events for every instance; with a finite dataset (`data.n_train`), on the whole training set
    (or, with ``split="test"``, the held-out test set).

    With `objective`, the loss the run was trained on instead of the plain loss: inputs attacked
    when `train.adversarial_eps` > 0 (random-feature attacks drawn from a fixed stream), plus the L1
    penalty when `train.l1_hidden` > 0. Best-of-N ranks restarts by it.
    """
    device = next(iter(params.values())).device
    spec = spec if spec is not None else feature_spec(config, STREAM_EVAL, device)
    l1 = l1_vector(config, device) if objective and config.train.has_l1 else None
    total = torch.zeros(spec.probability.shape[0], device=device)
    for x, weight in _eval_batches(config, spec, device, split):
        total += weight * _batch_loss(config, params, x, spec.importance, l1, objective)
    return total


def saved_instances_config(run: Run) -> RunConfig:
    """A config with one configuration per saved instance of `run` (and one restart), so that the
    functions of a config and its parameters (`evaluate`, `estimate_loss`) apply to a saved best-of-N run."""
    from dataclasses import replace

    from .data import importance_matrix

    config, index = run.config, run.metrics.config_index
    probs = tuple(config.data.feature_probability[c] for c in index)
    importance = tuple(tuple(row) for row in importance_matrix(config)[index].tolist())
    l1 = config.train.l1_per_config(config.data.n_configs)
    data = replace(config.data, feature_probability=probs, importance=importance)
    train_cfg = replace(config.train, restarts=1, keep_all_restarts=False,
                        l1_hidden=tuple(l1[c] for c in index) if config.train.has_l1 else 0.0)
    return replace(config, data=data, train=train_cfg)


def evaluate_run(run: Run, split: str = "train") -> Tensor:
    """`evaluate` on the instances a run saved ``[inst]`` (the loss on fresh data, or on its finite set)."""
    return evaluate(saved_instances_config(run), run.params, split=split)


def _eval_batches(config: RunConfig, spec: FeatureSpec, device: torch.device,
                  split: str) -> Iterator[tuple[Tensor, float]]:
    """The evaluation batches ``[inst, batch, feat]``, each with its weight in the mean loss."""
    data, cfg = config.data, config.train
    if data.n_train is None:
        for i in range(cfg.eval_batches):
            step = torch.tensor(i, dtype=torch.int64, device=device)
            yield draw(spec, step, cfg.batch_size, data), 1 / cfg.eval_batches
        return
    size = data.n_train if split == "train" else data.n_test
    for part in dataset_parts(config, split, device, spec.probability.shape[0]):
        yield part, part.shape[1] / size


def _batch_loss(config: RunConfig, params: Params, x: Tensor, importance: Tensor, l1: Tensor | None,
                objective: bool) -> Tensor:
    cfg = config.train
    goal = target(config.target, x)
    if objective and cfg.has_adversarial:
        eps = eps_vector(config, x.device)
        keys = torch.arange(x.shape[0], dtype=torch.int64, device=x.device)
        uniform = Stream(keys, torch.zeros((), dtype=torch.int64, device=x.device)).uniform(
            x.shape[1], 1, salt=ATTACK_SALT).squeeze(-1)
        x = x + training_perturbation(config.model.fused_kind, cfg.adversarial_attack, params, x, importance,
                                      eps, uniform)
    fwd = forward(config.model, params, x)
    loss = LOSSES.get(cfg.loss)(fwd.output, goal, importance)
    if l1 is not None:
        loss = loss + l1 * fwd.hidden.abs().sum(-1).mean(-1)
    return loss


def train(config: RunConfig, *, device: str | torch.device = "cpu", compile: CompileMode = "auto",
          progress: bool = True, out: str | os.PathLike[str] | None = None, overwrite: bool = False,
          checkpoint_every: int | None = None, threads: int | None = None) -> Run:
    """Train every instance of `config` and return the run (saved to `out` when given).

    Arguments:
        device: "cpu" (default) or "cuda"/"cuda:N".
        compile: compile the whole step with torch.compile (True), run it eagerly (False),
            ("native") run the C kernel of `superposition.native`, or ("auto") take the native step
            where it supports the run and builds here, else time the first steps eagerly and
            compile the rest when that pays, on this machine's measured costs
            (`superposition.compiling`).
        progress: show a progress bar.
        out: run directory. An interrupted run in `out` with the same config resumes from its
            last checkpoint; a finished one is an error unless `overwrite`.
        checkpoint_every: steps between checkpoints when `out` is given (default: every 30 s).
        threads: torch threads while training (default: torch's setting). On a machine busy with
            other work, 1 avoids threads waiting on each other (measured up to 30× slower steps
            with 2 threads on 2 busy cores); results are bit-identical only between equal counts.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads = {threads!r} is invalid: must be a positive integer")
        with torch_threads(threads):
            return train(config, device=device, compile=compile, progress=progress, out=out, overwrite=overwrite,
                         checkpoint_every=checkpoint_every)
    started = rundir.now()
    dev = resolve_device(device)
    guard.check_run_memory(config, dev)  # refuse what cannot fit, before any directory exists
    state = init_state(config, dev)
    check_objective(config, state.params)
    with rundir.opened(config, out, overwrite) as out_dir:  # a checked, locked run directory
        if out_dir is not None:
            rundir.resume(out_dir, state, config, restore_state)  # the checkpoint is checked first
        native_step = _native_step(config, compile, dev, state)
        if native_step is not None:
            state.native = True
            done = _native_loop(config, state, native_step, progress, out_dir, checkpoint_every)
        else:
            choice = should_compile(config, compile, dev)
            if choice is None and state.compiled is not None:
                choice = state.compiled  # a resumed run keeps the path it took
            state.compiled = choice
            with keep_freed_memory():
                step_fn, compiled = _build_step(config, bool(choice), state.optimizer)
                done = _loop(config, state, step_fn, compiled, dev, progress, out_dir, checkpoint_every)
        prov = rundir.provenance(str(dev), done.compiled, started)
        prov["step"] = "native" if native_step is not None else "compiled" if done.compiled else "eager"
        if done.estimate is not None:
            prov["compile_choice"] = {**asdict(done.estimate), "compiled": done.compiled,
                                      "background_compile": done.warming}
        run = _finish(config, state, done, prov)
        if out_dir is not None:
            rundir.save_run(run, out_dir)
            rundir.remove_checkpoint(out_dir)
    return run


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` torch threads, then restore the previous count."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit
_GLIBC_TRIM_DEFAULT = 128 << 10


@contextmanager
def keep_freed_memory() -> Iterator[None]:
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


def _build_step(config: RunConfig, compiled: bool, optimizer: TorchOptimizer | None = None) -> tuple[StepFn, bool]:
    if not compiled:
        return make_step(config, False, optimizer), False
    try:
        return make_step(config, True), True
    except Exception as exc:  # pragma: no cover - depends on the platform's compiler
        warnings.warn(f"torch.compile unavailable ({exc}); training eagerly", stacklevel=3)
        return make_step(config, False), False


class LoopResult(NamedTuple):
    seconds: float
    steps_per_second: float  # after the first step, without the compiling one
    compiled: bool  # False when the compiled step failed and training went on eagerly
    estimate: compiling.Estimate | None = None  # what compile="auto" weighed, when it decided here
    warming: bool = False  # a background compile of the step was started for later runs


def _loop(config: RunConfig, state: TrainState, step_fn: StepFn, compiled: bool, dev: torch.device,
          progress: bool, out_dir: Path | None, checkpoint_every: int | None) -> LoopResult:
    """Run the remaining steps of `state`, logging, snapshotting and checkpointing on the way. While
    `state.compiled` is undecided (compile="auto"), the first steps are timed and the step is
    compiled for the rest of the run when that pays (`superposition.compiling`)."""
    cfg = config.train
    spec, lrs, l1, *inputs = _step_inputs(config, dev)
    start = int(state.step)
    snap_every = cfg.snapshot_every
    if snap_every and not state.snapshot_steps:
        _snapshot(state, 0)
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, unit="step", dynamic_ncols=True,
               desc=config.name, leave=False)
    clock = _Clock(state.compiled is None and cfg.steps - start > compiling.PROBE_STEPS + 1, compiled, start + 1)
    last_ckpt = time.perf_counter()
    for s in range(start + 1, cfg.steps + 1):
        clock.before()
        try:
            step_fn(state.params, state.exp_avg, state.exp_avg_sq, state.step, state.loss_sum, spec, lrs, l1, *inputs)
        except Exception as exc:
            if not (s == clock.first_compiled and _is_compile_failure(exc)):
                raise
            warnings.warn(f"torch.compile failed ({exc.__class__.__name__}); training eagerly", stacklevel=3)
            step_fn, clock.compiled = make_step(config, False), False
            step_fn(state.params, state.exp_avg, state.exp_avg_sq, state.step, state.loss_sum, spec, lrs, l1, *inputs)
        if clock.after(s) and clock.decide(config, dev, cfg.steps - s):
            state.compiled = True
            built = time.perf_counter()
            step_fn, clock.compiled = _build_step(config, True)
            clock.excluded += time.perf_counter() - built  # mostly importing the compiler, once a process
            clock.first_compiled = s + 1
        elif clock.estimate is not None and state.compiled is None:
            state.compiled = False
            if compiling.worth_warming(clock.estimate):  # so that the next run of this step can compile
                clock.warming = compiling.warm_in_background(config, dev)
        if s % cfg.log_every == 0 or s == cfg.steps:
            _log(state, s, s - (state.loss_steps[-1] if state.loss_steps else 0), bar)
            guard.check_losses(config, state.loss_curve[-1], s)  # stop on divergence
        if snap_every and s % snap_every == 0:
            _snapshot(state, s)
        if out_dir is not None and s < cfg.steps and _due(s, checkpoint_every, last_ckpt):
            rundir.save_checkpoint(out_dir, state.tensors(), _checkpoint_meta(config, state))
            last_ckpt = time.perf_counter()
    bar.close()
    return clock.result(config, dev, cfg.steps - start)


def _native_step(config: RunConfig, compile: CompileMode, dev: torch.device,
                 state: TrainState) -> native.NativeStep | None:
    """The native step for `compile` = "native" (or a `ConfigError` saying why not), or for "auto"
    where it supports the run and builds here; None for the torch paths. A resumed run keeps the
    path its checkpoint recorded."""
    if compile not in ("auto", "native") or (compile == "auto" and not native.enabled()):
        return None
    reason = native.unsupported(config, dev)
    if reason is None and compile == "auto" and state.compiled is not None and not state.native:
        return None  # resumed from a torch path
    try:
        if reason is None:
            spec, lrs, l1, *finite = _step_inputs(config, dev)
            return native.NativeStep(config, spec, lrs, l1, finite[0] if finite else None)
    except native.NativeUnavailableError as exc:
        reason = str(exc)
    if compile == "native":
        raise ConfigError(f"compile = 'native' is unavailable for this run: {reason}")
    return None


NATIVE_CHUNK_SECONDS = 0.2
"""The native loop hands the kernel about this much work per call (at least to the next log,
snapshot or checkpoint step), so the progress bar and time-based checkpoints stay current."""


def _native_loop(config: RunConfig, state: TrainState, step_fn: native.NativeStep, progress: bool,
                 out_dir: Path | None, checkpoint_every: int | None) -> LoopResult:
    """`_loop` for the native step: the same log points, snapshots, divergence checks and
    checkpoints, with the steps between them done by the kernel in chunks."""
    cfg = config.train
    s, snap_every = int(state.step), cfg.snapshot_every
    if snap_every and not state.snapshot_steps:
        _snapshot(state, 0)
    bar = tqdm(total=cfg.steps, initial=s, disable=not progress, unit="step", dynamic_ncols=True,
               desc=config.name, leave=False)
    t0 = last_ckpt = time.perf_counter()
    start, chunk = s, 1
    while s < cfg.steps:
        stops = [cfg.steps, s + chunk, _next_multiple(s, cfg.log_every)]
        stops += [_next_multiple(s, every) for every in (snap_every, checkpoint_every) if every]
        stop = min(stops)
        t = time.perf_counter()
        step_fn(state.params, state.exp_avg, state.exp_avg_sq, state.step, state.loss_sum, stop - s)
        took, done_now, s = time.perf_counter() - t, stop - s, stop
        chunk = max(1, min(1 << 20, int(done_now * NATIVE_CHUNK_SECONDS / max(took, 1e-9))))
        if s % cfg.log_every == 0 or s == cfg.steps:
            _log(state, s, s - (state.loss_steps[-1] if state.loss_steps else 0), bar)
            guard.check_losses(config, state.loss_curve[-1], s)
        else:
            bar.update(s - bar.n)
        if snap_every and s % snap_every == 0:
            _snapshot(state, s)
        if out_dir is not None and s < cfg.steps and _due(s, checkpoint_every, last_ckpt):
            rundir.save_checkpoint(out_dir, state.tensors(), _checkpoint_meta(config, state))
            last_ckpt = time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - t0
    return LoopResult(seconds, (s - start) / seconds if seconds > 0 and s > start else 0.0, False)


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def _step_inputs(config: RunConfig, dev: torch.device) -> tuple:
    """The step's arguments after the state: feature spec, learning rates, L1 and, with a finite
    dataset, the training set and its shuffle keys."""
    spec = feature_spec(config, device=dev)
    lrs, l1 = _padded(lr_table(config.train)).to(dev), l1_vector(config, dev)
    if config.data.n_train is None:
        return spec, lrs, l1
    train_set = dataset_codes(config, "train", dev) if sparse_inputs(config) else dataset(config, "train", dev)
    return spec, lrs, l1, train_set, shuffle_keys(config, dev)


def time_compiled_step(config: RunConfig, device: str | torch.device = "cpu",
                       cpu_clock: bool = False) -> tuple[float, float] | None:
    """Compile (or load from the cache) the training step of `config` as `train` would, on a fresh
    state, and record on this machine what it cost and the eager/compiled speed-up of the step
    (`superposition.compiling`); None when compiling is unavailable. Nothing is saved but the record.

    `cpu_clock` records the compile's CPU time (this process and the compilers it ran) instead of its
    wall time: the background compile runs at idle priority, and on a busy machine its wall time
    measured waiting (one recorded 1,719 s, after which every step never compiled here was assumed
    that slow and stayed eager)."""
    dev = resolve_device(device)
    state, inputs = init_state(config, dev), _step_inputs(config, dev)
    step_args = (state.params, state.exp_avg, state.exp_avg_sq, state.step, state.loss_sum, *inputs)
    step_fn, compiled = _build_step(config, True)
    if not compiled:
        return None
    t0, c0 = time.perf_counter(), compiling.cpu_seconds()
    step_fn(*step_args)
    # what `train` records: the first compiled step
    compile_s = compiling.cpu_seconds() - c0 if cpu_clock else time.perf_counter() - t0
    eager = make_step(config, False)
    eager(*step_args)  # warm-up
    t1 = time.perf_counter()
    eager(*step_args)
    n = max(1, min(200, config.train.steps, int(0.5 / max(time.perf_counter() - t1, 1e-6))))
    times = []
    for fn in (eager, step_fn):
        state.step.zero_()  # stay inside the learning-rate table
        t1 = time.perf_counter()
        for _ in range(n):
            fn(*step_args)
        times.append(time.perf_counter() - t1)
    speedup = times[0] / times[1] if times[1] > 0 else None
    compiling.note_compiled(compiling.signature(config, dev), compile_s, speedup)
    return compile_s, speedup


def _padded(table: Tensor) -> Tensor:
    """The learning-rate table padded to a power of two, so that runs of different lengths share
    one compiled step (its shape is part of what torch.compile specialises on)."""
    size = 1 << max(0, (table.numel() - 1).bit_length())
    return torch.cat([table, table.new_zeros(size - table.numel())])


class _Clock:
    """The loop's timing: the probe of compile="auto", the compiling step, the steady rate."""

    def __init__(self, probing: bool, compiled: bool, first: int):
        self.probing, self.compiled, self.first = probing, compiled, first
        self.first_compiled = first if compiled else -1
        self.t0 = self.t_step = time.perf_counter()
        self.probe: list[float] = []
        self.excluded = 0.0  # seconds of the first step and of the compiling step
        self.compile_s: float | None = None  # the first compiled step: compiling (or loading) it
        self.warming = False  # whether a background compile of the step was started
        self.estimate: compiling.Estimate | None = None

    def before(self) -> None:
        self.t_step = time.perf_counter()

    def after(self, s: int) -> bool:
        """Account for step `s`; True when the probe has just finished."""
        took = time.perf_counter() - self.t_step
        if s == self.first or s == self.first_compiled:
            self.excluded += took
            if s == self.first_compiled:
                self.compile_s = took
            return False
        if not self.probing:
            return False
        self.probe.append(took)
        if len(self.probe) < compiling.PROBE_STEPS:
            return False
        self.probing = False
        return True

    def decide(self, config: RunConfig, dev: torch.device, remaining: int) -> bool:
        key = compiling.signature(config, dev)
        self.estimate = compiling.estimate(key, compiling.median_step(self.probe), remaining)
        return self.estimate.pays

    def result(self, config: RunConfig, dev: torch.device, done: int) -> LoopResult:
        end = time.perf_counter()
        counted = done - 1 - (1 if self.compile_s is not None and self.first_compiled != self.first else 0)
        steady = end - self.t0 - self.excluded
        rate = counted / steady if counted > 0 and steady > 0 else 0.0
        if self.compiled and self.compile_s is not None:
            compiled_s = steady - sum(self.probe)
            n_compiled = counted - len(self.probe)
            speedup = None
            if self.probe and n_compiled > 0 and compiled_s > 0:
                speedup = compiling.median_step(self.probe) / (compiled_s / n_compiled)
            compiling.note_compiled(compiling.signature(config, dev), self.compile_s, speedup)
        return LoopResult(end - self.t0, rate, self.compiled, self.estimate, self.warming)


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
            "loss_curve": state.loss_curve, "snapshot_steps": state.snapshot_steps, "compiled": state.compiled,
            "native": state.native}


def _finish(config: RunConfig, state: TrainState, done: LoopResult, prov: dict) -> Run:
    """Evaluate, keep the best restart per configuration, and assemble the Run."""
    params = {k: v.detach() for k, v in state.params.items()}
    estimate = estimate_loss(config, params)
    losses, errors = estimate.mean.float().cpu(), estimate.se.float().cpu()
    test = evaluate(config, params, split="test").cpu() if config.data.n_train is not None else None
    ranked = losses
    if config.train.restarts > 1 and (config.train.has_l1 or config.train.has_adversarial):
        ranked = evaluate(config, params, objective=True).cpu()  # what the restarts were trained to minimise
    keep = select_best(config, ranked)
    table = instances(config)
    probs = config.data.feature_probability
    curve = torch.tensor(state.loss_curve).T[keep] if state.loss_curve else torch.zeros(len(keep), 0)
    metrics = Metrics(
        final_loss=losses[keep].tolist(),
        final_loss_se=errors[keep].tolist(),
        loss_steps=list(state.loss_steps),
        loss_curve=curve.tolist(),
        config_index=[table.config_index[k] for k in keep],
        restart=[table.restart[k] for k in keep],
        feature_probability=[_jsonable(probs[table.config_index[k]]) for k in keep],
        restart_losses=losses.view(-1, config.train.restarts).tolist(),
        train_seconds=done.seconds,
        steps_per_second=done.steps_per_second,
        compiled=done.compiled,
        test_loss=test[keep].tolist() if test is not None else None,
    )
    idx = torch.tensor(keep)
    kept = {k: v.cpu()[idx].contiguous() for k, v in params.items()}
    snaps = None
    if state.snapshots:
        snaps = {k: torch.stack([s[k][idx] for s in state.snapshots], dim=1) for k in kept}
        snaps["steps"] = torch.tensor(state.snapshot_steps)
    return Run(config, kept, metrics, prov, snaps)


def select_best(config: RunConfig, losses: Tensor) -> list[int]:
    """The instances a run keeps: the lowest-loss restart of each configuration (NaN counts as +inf),
    or every instance with `train.keep_all_restarts`."""
    if config.train.keep_all_restarts:
        return list(range(config.n_instances))
    return best_restarts(losses, instances(config).config_index).tolist()


def _jsonable(p: float | tuple[float, ...]) -> float | list[float]:
    return list(p) if isinstance(p, tuple) else p
