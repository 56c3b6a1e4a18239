"""Train a grid of SAEs in one batched step: `train_sae(config, run=None) -> SAERun`.

    fit = build the source → initialise every instance → repeat (draw a batch, hand-written
    gradients, Adam, renormalise the decoder, update batchtopk's threshold) → measure

The optimiser is Adam written out elementwise, so each instance's update depends only on its
own gradient (instances stay independent) and can be compiled into one pass over the weights.
Past the encoder, the gradients run over the latents that fire when few do (`sae.sparse`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..config import ConfigError
from ..train import keep_freed_memory
from .config import SAEConfig
from .model import TRAINED, Buffers, Params, init_params, latent_mask, loss_and_grads, normalize_decoder
from .sources import Source, build_source
from .sparse import may_pay

BETAS, EPS = (0.9, 0.999), 1e-8
AUTO_COMPILE_WORK = 2e10
"""compile="auto" compiles a size group's step when steps × batch × instances × latents × inputs
reaches this. Measured on the 2-core box (benchmarks/bench_sae.py, the 12 SAEs of the sae-recovery
quick grid, 300 steps, 1 thread): eager 326 SAE-steps/s and compiled 1230 on 2026-11-30 (load 3),
eager 2712 and compiled 3273 on 2026-12-03 (load 0.3) once the eager step lost a batched product
and two copies and kept its freed memory, for a cold compile of 5-20 s. Each of that grid's size
groups is below this work, so it trains eager; the paper-size groups compile (their update only,
`make_step`), where the eager update alone is 49.5 ms of a step at 5 × 2048 latents."""


@dataclass
class SAERun:
    """A trained batch of SAEs: config, weights (instance axis first) and what training measured."""

    config: SAEConfig
    params: Params
    threshold: Tensor  # [inst, latent] inference threshold of batchtopk and jumprelu (0 otherwise)
    n_inputs: int
    loss_steps: list[int] = field(default_factory=list)
    loss_curve: list[list[float]] = field(default_factory=list)  # [inst][log point]
    final_loss: list[float] = field(default_factory=list)  # [inst] mean loss of the last log interval
    train_seconds: float = 0.0  # seconds its size groups trained, summed over processes with workers > 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_instances(self) -> int:
        return self.params["W_enc"].shape[0]

    @property
    def mask(self) -> Tensor:
        return latent_mask([p.n_latents for p in self.config.grid()], self.config.max_latents)

    @property
    def buffers(self) -> Buffers:
        return make_buffers(self.config)

    @property
    def decoder(self) -> Tensor:
        """Dictionary elements ``[inst, latent, hidden]`` (padding rows are zero)."""
        return self.params["W_dec"]


def make_buffers(config: SAEConfig) -> Buffers:
    grid = config.grid()
    k = None if config.k is None else torch.tensor([p.k for p in grid], dtype=torch.int64)
    return Buffers(config.architecture, latent_mask([p.n_latents for p in grid], config.max_latents), k,
                   torch.tensor([p.l1_coefficient for p in grid], dtype=torch.float32), config.decoder_bias,
                   max(config.k) if config.k is not None else 0)


def adam(params: Params, grads: Params, state: dict[str, Tensor], t: Tensor, lr: Tensor | float) -> None:
    """One elementwise Adam update in place (bias-corrected); `t` is the 1-based step, a tensor."""
    b1, b2 = BETAS
    c1, c2 = 1 - b1**t, 1 - b2**t
    for name in TRAINED:
        g = grads[name]
        m, v = state[f"m_{name}"], state[f"v_{name}"]
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        params[name].sub_(lr * (m / c1) / ((v / c2).sqrt() + EPS))


def learning_rate(config: SAEConfig, t: Tensor) -> Tensor | float:
    """The learning rate of 1-based step `t`: `config.lr`, decayed linearly over the last
    `lr_decay_steps` steps so that the last step takes lr / lr_decay_steps (computed in the step's
    graph from `t`, so one compiled step serves every step)."""
    if not config.lr_decay_steps:
        return config.lr
    left = (config.steps - t + 1) / config.lr_decay_steps
    return config.lr * left.clamp(max=1.0)


def make_step(config: SAEConfig, buffers: Buffers, compile: bool = False, n_inputs: int = 0) -> Callable[..., Tensor]:
    """The training step (params, state, threshold, x, t) -> loss [inst], mutating its arguments.

    `compile` compiles the whole step when the sparse products can never pay at this size
    (`sae.sparse.may_pay`), else only the update (Adam, the decoder's renormalisation, batchtopk's
    threshold: one fused pass over the weights instead of a dozen) and the gradients stay eager,
    where they take the sparse products once few latents fire, which a compiled graph cannot."""
    update = _make_update(config, buffers)

    def step(params: Params, state: dict[str, Tensor], threshold: Tensor, x: Tensor, t: Tensor) -> Tensor:
        out = loss_and_grads(params, x, buffers)
        update(params, out.grads, state, threshold, out.smallest, t)
        return out.loss

    if not compile:
        return step
    if not may_pay(config.batch_size, config.max_latents, n_inputs):
        return torch.compile(step, dynamic=False)
    update = torch.compile(update, dynamic=False)
    return step


def _make_update(config: SAEConfig, buffers: Buffers) -> Callable[..., None]:
    def update(params: Params, grads: Params, state: dict[str, Tensor], threshold: Tensor,
               smallest: Tensor | None, t: Tensor) -> None:
        adam(params, grads, state, t, learning_rate(config, t))
        if config.normalize_decoder:
            normalize_decoder(params, buffers.mask)
        if smallest is not None:
            smallest = torch.where(torch.isfinite(smallest), smallest, threshold[:, 0])
            first = (t == 1).to(threshold.dtype)
            decay = config.threshold_decay * (1 - first)
            threshold.mul_(decay).add_(smallest.unsqueeze(1) * (1 - decay))
            threshold.masked_fill_(~buffers.mask, 0.0)

    return update


def should_compile(config: SAEConfig, n_inputs: int, compile: bool | str) -> bool:
    if compile != "auto":
        return bool(compile)
    work = config.steps * config.batch_size * config.n_instances * config.max_latents * n_inputs
    return work >= AUTO_COMPILE_WORK and shutil.which(os.environ.get("CXX", "g++")) is not None


def train_sae(config: SAEConfig, run=None, *, compile: bool | str = False,
              progress: Callable[[int, Tensor], None] | None = None, source: Source | None = None,
              workers: int | str = 1) -> SAERun:
    """Train every instance of `config` together.

    `run` (a `superposition.run.Run`) supplies the activations when ``config.source.kind == "run"``.
    `source` may pass an already built source (the same one `build_source(config, run)` returns).
    `progress(step, loss)` is called at every log point (with `workers` > 1, at the end). `compile`
    compiles the step with torch.compile (`make_step` says which part; same results up to float
    rounding; pays for long runs, the first call compiles for 5-20 s); "auto" compiles when the run
    is large enough (`AUTO_COMPILE_WORK`) and a C++ compiler exists. `workers` trains the size
    groups (`SAEConfig.size_groups`) in that many processes at once (`sae.parallel`: the same
    weights as one process at one thread, bit for bit); "auto" uses the cores for a large grid.
    """
    return train_all([config], [source or build_source(config, run)], compile=compile, progress=progress,
                     workers=workers)[0]


def train_all(configs: list[SAEConfig], sources: list[Source], *, compile: bool | str = False,
              progress: Callable[[int, Tensor], None] | None = None, workers: int | str = 1) -> list[SAERun]:
    """`train_sae` of each config on its source; with `workers` > 1 every size group of every
    config trains in one pool of processes, the largest first (`sae.parallel.train_groups`)."""
    for config in configs:
        if config.architecture == "jumprelu":
            raise ConfigError("sae.architecture = 'jumprelu' is invalid for training: jumprelu SAEs are imported "
                              "from SAELens (inference only); train relu, topk or batchtopk")
    from .parallel import resolve_workers, train_groups

    n = resolve_workers(workers, configs, sources)
    if n == 1:
        return [_trained(c, fit_groups(c.size_groups(), s, compile, progress), s.n_inputs)
                for c, s in zip(configs, sources, strict=True)]
    fits = train_groups(configs, sources, compile, n)
    out = [_trained(c, fit, s.n_inputs) for c, s, fit in zip(configs, sources, fits, strict=True)]
    if progress is not None and len(out) == 1:
        for j, step in enumerate(out[0].loss_steps):
            progress(step, torch.tensor([row[j] for row in out[0].loss_curve]))
    return out


class Fit(NamedTuple):
    """Size groups trained together: each group's weights, threshold and loss curve ``[log point,
    inst]``, the log steps and the seconds it took."""

    params: list[Params]
    threshold: list[Tensor]
    curve: list[Tensor]
    log_steps: list[int]
    seconds: float


def fit_groups(subs: list[SAEConfig], source: Source, compile: bool | str = False,
               progress: Callable[[int, Tensor], None] | None = None) -> Fit:
    """Train size groups `subs` (of one config: same steps, batch and log points) in lockstep on
    the same batches; `progress(step, loss)` gets every instance's mean loss at each log point."""
    config = subs[0]
    groups = [_Group(sub, source.n_inputs, compile) for sub in subs]
    t0, total, count = time.perf_counter(), torch.zeros(sum(sub.n_instances for sub in subs)), 0
    log_steps: list[int] = []
    curve: list[Tensor] = []
    with keep_freed_memory():
        for i in range(config.steps):
            x, t = source.batch(i, config.batch_size), torch.tensor(float(i + 1))
            loss = torch.cat([g.step(g.params, g.state, g.threshold, x, t) for g in groups])
            total, count = total + loss.detach(), count + 1
            if (i + 1) % config.log_every == 0 or i + 1 == config.steps:
                mean = total / count
                log_steps.append(i + 1)
                curve.append(mean)
                if progress is not None:
                    progress(i + 1, mean)
                total, count = torch.zeros_like(total), 0
    rows = torch.stack(curve).split([sub.n_instances for sub in subs], dim=1)
    return Fit([g.params for g in groups], [g.threshold for g in groups], list(rows), log_steps,
               time.perf_counter() - t0)


def _trained(config: SAEConfig, fit: Fit, n_inputs: int) -> SAERun:
    """The `SAERun` of `config` from its size groups' `fit`, instances in grid order."""
    width = config.max_latents
    params = {name: torch.cat([_pad_latents(name, p[name], width) for p in fit.params]) for name in TRAINED}
    threshold = torch.cat([_pad_latents("b_enc", t, width) for t in fit.threshold])
    curve = torch.cat(fit.curve, dim=1).T.tolist()  # [inst][log point]
    result = SAERun(config, params, threshold, n_inputs, list(fit.log_steps), curve)
    result.final_loss = [row[-1] for row in result.loss_curve]
    result.train_seconds = fit.seconds
    return result


class _Group:
    """One batched step over some of the grid's instances: weights, Adam state, threshold, step."""

    def __init__(self, config: SAEConfig, n_inputs: int, compile: bool | str) -> None:
        grid = config.grid()
        self.params = init_params(n_inputs, [p.n_latents for p in grid], [p.seed for p in grid], config.max_latents)
        self.state = {f"{m}_{name}": torch.zeros_like(self.params[name]) for name in TRAINED for m in ("m", "v")}
        self.threshold = torch.zeros(len(grid), config.max_latents)
        self.step = make_step(config, make_buffers(config), should_compile(config, n_inputs, compile), n_inputs)


def _pad_latents(name: str, t: Tensor, width: int) -> Tensor:
    """`t` zero-padded along its latent axis to `width` latents."""
    axis = {"W_enc": 2, "b_enc": 1, "W_dec": 1, "b_dec": None}[name]
    if axis is None or t.shape[axis] == width:
        return t
    pad = [0, 0] * (t.ndim - 1 - axis) + [0, width - t.shape[axis]]
    return torch.nn.functional.pad(t, pad)
