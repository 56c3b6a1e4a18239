"""The activations an SAE learns from, drawn fresh every step from a counter-based stream.

Two sources, one interface (`Source.batch(step, batch) -> [batch, hidden]`):

- `DictionarySource`: a generated dictionary of known feature directions ``D [feat, hidden]``
  and sparse codes ``f [batch, feat]``; the activations are ``x = f D``.
- `RunSource`: the hidden layer of one instance of a trained toy model, fed inputs sampled from
  that run's own feature distribution; the true feature directions are the rows ``W[i, :]``.

Every random number comes from `superposition.data.random_bits` keyed on the SAE config's
`data_seed`, so a batch depends only on (seed, step): every SAE instance, trained in a batch or
alone, sees the same activations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import ConfigError
from ..data import FeatureSpec, derive_seed, draw, random_bits
from ..models import forward
from .config import DictionaryConfig, SAEConfig

STREAM_SAE_GATES, STREAM_SAE_VALUES, STREAM_SAE_GAUSS, STREAM_SAE_EVAL = 11, 12, 13, 14
EVAL_STEP = 1 << 40
"""Evaluation batches are steps far past any training step of the same stream."""


def _unit(bits: Tensor, shift: int) -> Tensor:
    return (((bits >> shift) & 0xFFFFFF).to(torch.float32) + 0.5) * (2.0**-24)


def _bits(seed: int, stream: int, step: int, batch: int, width: int) -> Tensor:
    key = torch.tensor([derive_seed(seed, stream)], dtype=torch.int64)
    return random_bits(key, torch.tensor(step, dtype=torch.int64), batch, width)[0]


def feature_probabilities(config: DictionaryConfig) -> Tensor:
    """``[group]``: c·λ^i with c such that the mean number of features on is `n_active`.

    For hierarchy data the law applies to the parents (each group is on with its parent), and
    `n_active` counts parents.
    """
    n = config.n_groups
    p = config.decay ** torch.arange(n, dtype=torch.float64)
    return (p * (config.n_active / p.sum())).clamp(max=1.0).to(torch.float32)


def directions(config: DictionaryConfig) -> Tensor:
    """``[feat, hidden]`` unit rows: Gaussian unit vectors, or orthonormal ones."""
    gen = torch.Generator().manual_seed(derive_seed(config.seed, 21) & ((1 << 63) - 1))
    raw = torch.randn(config.n_hidden, config.n_features, generator=gen, dtype=torch.float64)
    if config.orthogonal:
        q, _ = torch.linalg.qr(raw)
        return q.T.contiguous().to(torch.float32)
    return (raw.T / raw.T.norm(dim=1, keepdim=True)).to(torch.float32)


def correlation_factor(config: DictionaryConfig) -> Tensor:
    """``[feat, feat]`` Cholesky factor L of C = normalise(A Aᵀ + I), A ``[feat, rank]`` Gaussian."""
    gen = torch.Generator().manual_seed(derive_seed(config.seed, 22) & ((1 << 63) - 1))
    a = torch.randn(config.n_features, config.correlation_rank, generator=gen, dtype=torch.float64)
    cov = a @ a.T + torch.eye(config.n_features, dtype=torch.float64)
    d = cov.diagonal().rsqrt()
    corr = cov * d[:, None] * d[None, :]
    return torch.linalg.cholesky(corr).to(torch.float32)


def _gaussian(seed: int, step: int, batch: int, width: int) -> Tensor:
    """Standard normals by Box-Muller from the two 24-bit halves of one hash."""
    bits = _bits(seed, STREAM_SAE_GAUSS, step, batch, width)
    u1, u2 = _unit(bits, 0), _unit(bits, 40)
    return (-2.0 * u1.log()).sqrt() * torch.cos(2.0 * math.pi * u2)


@dataclass
class DictionarySource:
    """Activations ``x = f D`` from a generated dictionary."""

    config: DictionaryConfig
    seed: int
    directions: Tensor  # [feat, hidden]
    probability: Tensor  # [group]
    factor: Tensor | None = None  # [feat, feat], correlated only

    @classmethod
    def build(cls, config: DictionaryConfig, seed: int) -> DictionarySource:
        factor = correlation_factor(config) if config.structure == "correlated" else None
        return cls(config, seed, directions(config), feature_probabilities(config), factor)

    @property
    def n_inputs(self) -> int:
        return self.config.n_hidden

    @property
    def features(self) -> Tensor:
        """The ground truth ``[feat, hidden]``."""
        return self.directions

    def codes(self, step: int, batch: int) -> Tensor:
        """Sparse codes ``[batch, feat]``."""
        c = self.config
        values = _bits(self.seed, STREAM_SAE_VALUES, step, batch, c.n_features)
        magnitude = _unit(values, 0) if c.magnitude == "uniform" else torch.ones(values.shape)
        return self.gates(step, batch).to(torch.float32) * magnitude

    def gates(self, step: int, batch: int) -> Tensor:
        """Which features are on, bool ``[batch, feat]``."""
        c = self.config
        if c.structure == "correlated":
            assert self.factor is not None
            z = _gaussian(self.seed, step, batch, c.n_features) @ self.factor.T
            u = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))  # Φ(z): uniform, correlated across features
            return u < self.probability
        bits = _bits(self.seed, STREAM_SAE_GATES, step, batch, c.n_features)
        if c.structure == "independent":
            return _unit(bits, 0) < self.probability
        return self._hierarchy_gates(bits)

    def _hierarchy_gates(self, bits: Tensor) -> Tensor:
        c = self.config
        group = 1 + c.n_children
        batch = bits.shape[0]
        parent_on = _unit(bits[:, ::group], 0) < self.probability  # [batch, group]
        child_coin = _unit(bits, 40).view(batch, c.n_groups, group)[:, :, 1:] < c.child_probability
        children = child_coin & parent_on[:, :, None]
        return torch.cat([parent_on[:, :, None], children], dim=2).view(batch, c.n_features)

    def batch(self, step: int, batch: int) -> Tensor:
        return self.codes(step, batch) @ self.directions


def _inputs(spec: FeatureSpec, step: int, batch: int, data) -> Tensor:
    """The run's own inputs of `step`, with every option of its DataConfig."""
    return draw(spec, torch.tensor(step, dtype=torch.int64), batch, data)


@dataclass
class RunSource:
    """The hidden activations ``[batch, hidden]`` of one instance of a trained toy model."""

    model: Any  # the run's ModelConfig
    params: dict[str, Tensor]  # one instance, leading axis of size 1
    spec: FeatureSpec
    data: Any  # the run's DataConfig
    features: Tensor  # [feat, hidden]: the rows W[i, :] (abs_mlp: W1)
    target: str = "identity"  # the run's target (`RunConfig.target`) and loss, for the spliced loss
    loss: str = "mse"

    @property
    def kind(self) -> str:
        return self.model.kind

    @property
    def n_inputs(self) -> int:
        return self.features.shape[1]

    def inputs(self, step: int, batch: int) -> Tensor:
        """Toy-model inputs ``[1, batch, feat]`` from the run's own distribution."""
        return _inputs(self.spec, step, batch, self.data)

    def batch(self, step: int, batch: int) -> Tensor:
        with torch.no_grad():
            return forward(self.model, self.params, self.inputs(step, batch)).hidden[0]


def run_source(run, instance: int, seed: int) -> RunSource:
    """A `RunSource` over saved instance `instance` of `run` (a `superposition.run.Run`)."""
    if not 0 <= instance < run.n_instances:
        raise ConfigError(f"source.instance = {instance} is invalid: the run has {run.n_instances} instance(s), "
                          f"0 to {run.n_instances - 1}")
    model = run.config.model
    if getattr(model, "hidden_layer", None) is False or "W" not in run.params and "W1" not in run.params:
        raise ConfigError(f"source = run {run.config.name!r} is invalid: its model (kind = {model.kind!r}) has no "
                          "hidden layer to train an SAE on")
    params = {name: value[instance : instance + 1].detach() for name, value in run.params.items()}
    keys = torch.tensor([derive_seed(seed, STREAM_SAE_GATES)], dtype=torch.int64)
    set_keys = torch.tensor([derive_seed(seed, STREAM_SAE_VALUES)], dtype=torch.int64)
    spec = FeatureSpec(keys, set_keys, run.probability[instance : instance + 1],
                       run.importance[instance : instance + 1])
    source = RunSource(model, params, spec, run.config.data, run.W[instance].detach(), run.config.target,
                       run.config.train.loss)
    probe = source.batch(0, 2)
    if probe.ndim != 2 or probe.shape[1] != source.n_inputs:
        raise ConfigError(f"source = run {run.config.name!r} is invalid: its hidden layer has shape "
                          f"{tuple(probe.shape)}, expected [batch, {source.n_inputs}]")
    return source


Source = DictionarySource | RunSource


def build_source(config: SAEConfig, run=None) -> Source:
    """The activation source of `config` (`run` is required, and only allowed, for source.kind = run)."""
    src = config.source
    if src.kind == "dictionary":
        if run is not None:
            raise ConfigError("run is given but source.kind = dictionary; pass run only for source.kind = run")
        assert src.dictionary is not None
        return DictionarySource.build(src.dictionary, config.data_seed)
    if run is None:
        raise ConfigError("source.kind = run needs the toy-model run: train_sae(config, run=load_run(PATH))")
    if src.run_name is not None and src.run_name != run.config.name:
        raise ConfigError(f"source.run_name = {src.run_name!r} does not match the run given "
                          f"({run.config.name!r})")
    return run_source(run, src.instance, config.data_seed)


def eval_batch(source: Source, batch: int, index: int = 0) -> Tensor:
    """A held-out batch ``[batch, hidden]`` (steps no training run reaches)."""
    return source.batch(EVAL_STEP + index, batch)
