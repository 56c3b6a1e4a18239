"""Guards that stop a run before it does harm: memory estimates checked against the machine before
anything is allocated or written, and divergence (non-finite losses or parameters) caught while
training instead of saved as a finished run.

The estimates are deliberately rough and on the high side (`model_bytes`); they only refuse what
clearly cannot fit, naming the estimate and the memory the machine has free.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .config import ConfigError, RunConfig

POINT_BYTES = 8 << 10
"""Memory one grid point of a sweep holds while it is planned and indexed: its RunConfig, its
chunk membership and its index row (measured at ~5 KB; rounded up)."""


class MemoryEstimateError(ConfigError):
    """A run or sweep would need more memory than the machine has free."""


class DivergedError(ConfigError):
    """Training produced non-finite losses or parameters (usually: the learning rate is too high)."""


# --- memory -----------------------------------------------------------------------------------


def model_bytes(config: RunConfig) -> int:
    """Rough memory of one instance while training: ~16 float32s per batch element (data, its
    random bits, activations, gradients), the parameters with their Adam state, snapshots."""
    m, t = config.model, config.train
    params = _parameter_count(m)
    snapshots = (t.steps // t.snapshot_every + 1) * params if t.snapshot_every else 0
    width = (m.embedding_dim or m.n_features) + m.n_hidden
    examples = t.batch_size if config.data.n_train is None else config.data.n_train + config.data.n_test
    return 4 * (16 * min(t.batch_size, examples) * width + 4 * examples * m.n_features + 4 * params + snapshots)


def _parameter_count(model) -> int:
    """Parameters of one instance, from the shapes alone (a custom module is not built for this:
    it is counted as an untied model of its size)."""
    if model.custom is not None:
        return 2 * model.n_features * model.n_hidden + model.n_features + model.n_hidden
    from .models import composed

    return sum(math.prod(shape[1:]) for shape in composed.param_shapes(model, 1).values())


PY_FLOAT_BYTES = 40
"""A float kept in a Python list: the object and its slot (the learning-rate table is built as
one, the loss curve is kept as lists)."""


def run_bytes(config: RunConfig) -> int:
    """Rough memory of training every instance of `config` at once: the instances, the learning
    rate of every step, and the loss curve (one value per instance and log point)."""
    t = config.train
    log_points = t.steps // t.log_every + 1
    return (config.n_instances * model_bytes(config) + PY_FLOAT_BYTES * t.steps
            + 2 * PY_FLOAT_BYTES * log_points * config.n_instances)


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


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError  # pragma: no cover


def check_run_memory(config: RunConfig, device: str | torch.device = "cpu") -> None:
    """Refuse a run whose estimated training memory exceeds the free memory of `device`."""
    need, free = run_bytes(config), available_memory(device)
    if need > free:
        m, t = config.model, config.train
        models = config.n_instances * model_bytes(config)
        parts = [f"{human_bytes(models)} for {config.n_instances} instances of {m.n_features} features × "
                 f"{m.n_hidden} hidden at batch {t.batch_size}" + (" with snapshots" if t.snapshot_every else "")]
        if need - models > models:
            parts.append(f"{human_bytes(need - models)} for the learning rates and loss curve of {t.steps} steps")
        raise MemoryEstimateError(
            f"the run needs about {human_bytes(need)} of memory ({'; '.join(parts)}), more than the "
            f"{human_bytes(free)} free on {torch.device(device).type}; use fewer or smaller models, a smaller batch "
            "or fewer steps")


def check_sweep_points(n_points: int, where: str = "the sweep") -> None:
    """Refuse a sweep grid whose plan and index cannot fit in memory (checked before it is built)."""
    need, free = n_points * POINT_BYTES, available_memory("cpu")
    if need > free:
        raise MemoryEstimateError(
            f"{where} has {n_points:,} grid points, whose plan and index need about {human_bytes(need)} of "
            f"memory, more than the {human_bytes(free)} free; use fewer axis values")


# --- divergence -------------------------------------------------------------------------------


def check_losses(config: RunConfig, losses: Sequence[float], step: int) -> None:
    """Stop training when the logged losses (one per instance) show a model that would be saved
    diverged: a configuration none of whose restarts is finite any more, or, with
    ``keep_all_restarts``, any instance. Restarts that diverged while another restart of their
    configuration is still finite are dropped by best-of-N as usual."""
    restarts = config.train.restarts
    bad = [k for k, v in enumerate(losses) if not math.isfinite(v)]
    if not bad:
        return
    by_config = [losses[c * restarts:(c + 1) * restarts] for c in range(len(losses) // restarts)]
    lost = [c for c, row in enumerate(by_config) if not any(math.isfinite(v) for v in row)]
    if config.train.keep_all_restarts or lost:
        which = f"instance(s) {_few(bad)}" if config.train.keep_all_restarts else f"configuration(s) {_few(lost)}"
        raise DivergedError(
            f"training diverged at step {step}: the loss of {which} is {losses[bad[0]]} (not finite); "
            f"nothing was saved; lower train.lr (now {config.train.lr:g}) or use a warm-up")


def check_finite(tensors: Mapping[str, Tensor], where: str, error: type[Exception] = DivergedError) -> None:
    """Raise `error` naming `where` and the first tensor holding NaN or infinity."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise error(f"{where}: {name} holds NaN or infinite values")


def _few(items: Sequence[int]) -> str:
    text = ", ".join(str(i) for i in items[:5])
    return text + (f" and {len(items) - 5} more" if len(items) > 5 else "")
