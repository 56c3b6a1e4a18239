"""Synthetic sparse features, drawn from a counter-based generator.

Every random number is a SplitMix64 hash of (instance key, stream, step, position). Three things
follow: a batch costs a few integer operations per element, which fuse into the compiled training
step; an instance's data depend only on its own key and the step, never on which other instances
share the batch; and a run resumed at step t sees exactly the data it would have seen.

Shapes: keys ``[inst]`` (int64), probabilities and importance ``[inst, feat]``, batches
``[inst, batch, feat]``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .config import RunConfig

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def _signed(value: int) -> int:
    """An unsigned 64-bit integer as the int64 with the same bits."""
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


def mix_int(value: int) -> int:
    """SplitMix64's finaliser on a Python int; returns an int64-ranged int."""
    z = value & _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return _signed(z ^ (z >> 31))


def derive_seed(*parts: int) -> int:
    """A well-mixed int64 key from a tuple of non-negative ints (seed, restart, stream, ...)."""
    key = 0
    for part in parts:
        key = mix_int(key + _GOLDEN + (part & _MASK64))
    return key


def _lsr(z: Tensor, shift: int) -> Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (z >> shift) & ((1 << (64 - shift)) - 1)


def mix(z: Tensor) -> Tensor:
    """SplitMix64's finaliser on an int64 tensor; integer overflow wraps as intended."""
    z = (z ^ _lsr(z, 30)) * _signed(_M1)
    z = (z ^ _lsr(z, 27)) * _signed(_M2)
    return z ^ _lsr(z, 31)


def random_bits(keys: Tensor, step: Tensor, batch: int, width: int) -> Tensor:
    """64 random bits per element, ``[inst, batch, width]``: element i of step t of each key's
    stream is mix(key + (t * batch * width + i + 1) * golden), i.e. SplitMix64 with skip-ahead."""
    index = torch.arange(batch * width, dtype=torch.int64, device=keys.device).view(1, batch, width)
    counter = step.to(torch.int64) * (batch * width) + index + 1
    return mix(keys.view(-1, 1, 1) + counter * _signed(_GOLDEN))


def _unit(bits: Tensor, shift: int) -> Tensor:
    """24 of the bits, from bit `shift` up, as a float32 uniform in [0, 1)."""
    return (_lsr(bits, shift) & 0xFFFFFF).to(torch.float32) * (2.0**-24)


class FeatureSpec(NamedTuple):
    """The per-instance tensors a sampler needs; built once per run by `feature_spec`."""

    keys: Tensor  # [inst] int64, one data stream per instance
    set_keys: Tensor  # [inst] int64, the stream of set-level draws (correlated data)
    probability: Tensor  # [inst, feat] float32
    importance: Tensor  # [inst, feat] float32


def sample(spec: FeatureSpec, step: Tensor, batch: int, distribution: str = "independent",
           set_size: int | None = None, signed: bool = False) -> Tensor:
    """One batch ``[inst, batch, feat]`` of step `step` (an int64 scalar tensor).

    Each feature is non-zero with its probability p, and then uniform on [0, 1) (or [-1, 1) when
    `signed`). Gate and value use disjoint bits of one hash, so one hash per element suffices.
    """
    n_feat = spec.probability.shape[-1]
    bits = random_bits(spec.keys, step, batch, n_feat)
    value = _unit(bits, 40)
    if signed:
        value = value * 2.0 - 1.0
    if distribution == "independent":
        keep = _unit(bits, 0) < spec.probability.unsqueeze(1)
    else:
        assert set_size is not None
        keep = _set_mask(spec, step, batch, n_feat, set_size, distribution == "anticorrelated")
    return torch.where(keep, value, 0.0)


def _set_mask(spec: FeatureSpec, step: Tensor, batch: int, n_feat: int, set_size: int,
              exclusive: bool) -> Tensor:
    """Which features are on when features come in sets of `set_size` consecutive features.

    A set is active with the probability of its first feature. Correlated: every member of an
    active set is on. Anticorrelated (`exclusive`): exactly one uniformly chosen member is on.
    """
    n_sets = n_feat // set_size
    bits = random_bits(spec.set_keys, step, batch, n_sets)
    p_set = spec.probability[:, ::set_size].unsqueeze(1)  # [inst, 1, sets]
    active = (_unit(bits, 0) < p_set).repeat_interleave(set_size, dim=-1)
    if not exclusive:
        return active
    chosen = (_unit(bits, 40) * set_size).long().clamp_(max=set_size - 1)
    member = torch.arange(n_feat, device=bits.device) % set_size
    return active & (chosen.repeat_interleave(set_size, dim=-1) == member)


class Instances(NamedTuple):
    """The run's instance table: instance k is configuration k // restarts, restart k % restarts."""

    config_index: list[int]
    restart: list[int]
    seeds: list[int]  # int64 per instance; depends only on (train.seed, restart)


# Streams: separate derived keys so that init, training data and evaluation never share numbers.
STREAM_INIT, STREAM_DATA, STREAM_SETS, STREAM_EVAL = 1, 2, 3, 4


def instances(config: RunConfig) -> Instances:
    """The instance table. Seeds depend on the restart only, so configurations of one run share
    initial weights and data events (common random numbers), and any instance can be reproduced by
    a run of that one configuration."""
    restarts = config.train.restarts
    index = range(config.n_instances)
    return Instances(
        config_index=[k // restarts for k in index],
        restart=[k % restarts for k in index],
        seeds=[derive_seed(config.train.seed, k % restarts) for k in index],
    )


def importance_matrix(config: RunConfig) -> Tensor:
    """Per-configuration, per-feature importance ``[config, feat]``: the explicit list(s), or decay**i."""
    data, n = config.data, config.model.n_features
    if data.per_config_importance:
        return torch.tensor(data.importance, dtype=torch.float32)
    if data.importance is not None:
        row = torch.tensor(data.importance, dtype=torch.float32)
    else:
        row = (data.importance_decay ** torch.arange(n, dtype=torch.float64)).to(torch.float32)
    return row.expand(data.n_configs, n).contiguous()


def probability_matrix(config: RunConfig) -> Tensor:
    """Per-configuration, per-feature probability ``[config, feat]``."""
    n = config.model.n_features
    rows = [list(p) if isinstance(p, tuple) else [p] * n for p in config.data.feature_probability]
    return torch.tensor(rows, dtype=torch.float32)


def feature_spec(config: RunConfig, stream: int = STREAM_DATA, device: str | torch.device = "cpu") -> FeatureSpec:
    """Sampler tensors for every instance of `config`, drawing from `stream`.

    The evaluation stream keys on the run seed alone, so every instance is scored on the same
    events; the training stream keys on each instance's seed.
    """
    table = instances(config)
    if stream == STREAM_EVAL:
        seeds = [derive_seed(config.train.seed, 1 << 32)] * config.n_instances
    else:
        seeds = table.seeds
    keys = torch.tensor([derive_seed(s, stream) for s in seeds], dtype=torch.int64)
    set_keys = torch.tensor([derive_seed(s, stream, STREAM_SETS) for s in seeds], dtype=torch.int64)
    probability = probability_matrix(config)[table.config_index]
    importance = importance_matrix(config)[table.config_index]
    return FeatureSpec(*(t.to(device) for t in (keys, set_keys, probability, importance)))
