"""Typed, frozen configuration of a run: what to train, on which data, and how.

A run trains a batch of independent toy models ("instances") at once. The instances are the
product of *configurations* (one per entry of `DataConfig.feature_probability`) and *restarts*
(`TrainConfig.restarts`); instance ``k`` is configuration ``k // restarts``, restart
``k % restarts``. Every config round-trips through JSON (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

ModelKind = Literal["linear", "relu_output", "relu_hidden", "abs_mlp"]
Distribution = Literal["independent", "correlated", "anticorrelated"]
Optimizer = Literal["adamw", "adam"]
Schedule = Literal["constant", "linear", "cosine"]

MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
DISTRIBUTIONS: tuple[str, ...] = get_args(Distribution)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field, value and range."""


def _fail(field_name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{field_name} = {value!r} is invalid: {allowed}")


INT_LIMIT = 1 << 63
"""Every integer field is below 2**63: seeds and sizes are int64 inside torch, and a larger seed
would silently wrap onto a smaller one (2**64 would equal 0)."""


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < INT_LIMIT:
        _fail(name, value, f"must be an integer >= {low} and < 2**63")


def _check_real(name: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        if math.isinf(high):
            _fail(name, value, f"must be a finite number {'>' if low_open else '>='} {low:g}")
        bracket = "(" if low_open else "["
        _fail(name, value, f"must be a number in {bracket}{low:g}, {high:g}]")


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(name, value, f"must be one of {', '.join(choices)}")


@dataclass(frozen=True)
class ModelConfig:
    """Which toy model, and its size."""

    kind: ModelKind = "relu_output"
    """linear: x' = WᵀWx + b; relu_output: ReLU(WᵀWx + b); relu_hidden: ReLU(Wᵀ ReLU(Wx) + b);
    abs_mlp: untied ReLU(W2 ReLU(W1 x) + b), trained to output |x|."""
    n_features: int = 5
    """n: number of input features."""
    n_hidden: int = 2
    """m: hidden dimensions (neurons)."""
    init_std: float | None = None
    """Standard deviation of the initial weights; None is xavier-normal of one instance's
    [feat, hidden] matrix, sqrt(2 / (n_features + n_hidden))."""

    def __post_init__(self) -> None:
        _check_choice("model.kind", self.kind, MODEL_KINDS)
        _check_int("model.n_features", self.n_features, 1)
        _check_int("model.n_hidden", self.n_hidden, 1)
        if self.init_std is not None:
            _check_real("model.init_std", self.init_std, 0.0, math.inf)


@dataclass(frozen=True)
class DataConfig:
    """The synthetic feature distribution of every configuration in the run."""

    feature_probability: tuple[float | tuple[float, ...], ...] = (1.0,)
    """p (= 1 - S), one entry per configuration: a float for all features, or one per feature."""
    importance_decay: float = 1.0
    """Importance of feature i is importance_decay**i (ignored when `importance` is given)."""
    importance: tuple[float, ...] | tuple[tuple[float, ...], ...] | None = None
    """Explicit per-feature importance, overriding `importance_decay`: one list for every
    configuration, or a list of lists, one per configuration (aligned with `feature_probability`)."""
    distribution: Distribution = "independent"
    """independent features; correlated sets (a set is all-zero together with probability 1 - p,
    else each member U[0, 1]); anticorrelated sets (all-zero with probability 1 - p, else exactly
    one random member non-zero)."""
    set_size: int | None = None
    """Features per set for correlated/anticorrelated data; must divide n_features."""
    signed: bool = False
    """Non-zero values are U[-1, 1] instead of U[0, 1] (the absolute-value task)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_probability", _freeze(self.feature_probability))
        if self.importance is not None:
            object.__setattr__(self, "importance", _freeze(self.importance))
        probs = self.feature_probability
        if not isinstance(probs, tuple) or len(probs) == 0:
            _fail("data.feature_probability", probs, "must be a non-empty list of probabilities in (0, 1]")
        for i, p in enumerate(probs):
            for q in p if isinstance(p, tuple) else (p,):
                _check_real(f"data.feature_probability[{i}]", q, 0.0, 1.0, low_open=True)
        _check_real("data.importance_decay", self.importance_decay, 0.0, math.inf, low_open=True)
        self._check_importance()
        _check_choice("data.distribution", self.distribution, DISTRIBUTIONS)
        if self.set_size is not None:
            _check_int("data.set_size", self.set_size, 1)
        if self.distribution != "independent" and self.set_size is None:
            _fail("data.set_size", None, f"is required for {self.distribution} data")
        if not isinstance(self.signed, bool):
            _fail("data.signed", self.signed, "must be true or false")

    def _check_importance(self) -> None:
        imp = self.importance
        if imp is None:
            return
        if not isinstance(imp, tuple) or len(imp) == 0:
            _fail("data.importance", imp,
                  "must be a non-empty list of numbers >= 0, or one such list per configuration")
        if self.per_config_importance:
            if not all(isinstance(row, tuple) for row in imp):
                _fail("data.importance", imp, "must be all numbers or all lists (one per configuration), not a mix")
            if len(imp) != self.n_configs:
                _fail("data.importance", f"{len(imp)} lists",
                      f"must have one list per configuration (len(data.feature_probability) = {self.n_configs})")
            rows = {len(row) for row in imp}
            if len(rows) != 1:
                _fail("data.importance", imp, "per-configuration lists must all have the same length")
        for i, row in enumerate(imp if self.per_config_importance else (imp,)):
            for j, w in enumerate(row):
                where = f"data.importance[{i}][{j}]" if self.per_config_importance else f"data.importance[{j}]"
                _check_real(where, w, 0.0, math.inf)

    @property
    def per_config_importance(self) -> bool:
        """True when `importance` holds one list per configuration."""
        return isinstance(self.importance, tuple) and any(isinstance(w, tuple) for w in self.importance)

    @property
    def n_configs(self) -> int:
        return len(self.feature_probability)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, sizes, seeds, restarts and what to record."""

    steps: int = 10_000
    batch_size: int = 1024
    lr: float = 1e-3
    optimizer: Optimizer = "adamw"
    weight_decay: float | None = None
    """None means the optimiser's usual default: 0.01 for adamw, 0 for adam."""
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Schedule = "constant"
    """Learning-rate decay after warm-up: constant, linear to 0, or cosine to 0."""
    warmup_steps: int = 0
    """Steps of linear warm-up from 0 to `lr`."""
    seed: int = 0
    restarts: int = 1
    """Best-of-N: train N instances per configuration and keep the lowest final loss."""
    keep_all_restarts: bool = False
    """Save every restart instead of only the best one per configuration."""
    log_every: int = 100
    """Record the mean training loss every this many steps."""
    snapshot_every: int | None = None
    """Save the weights every this many steps (learning dynamics), or never when None."""
    eval_batches: int = 8
    """Batches of fresh data used for the final per-instance loss."""
    l1_hidden: float | tuple[float, ...] = 0.0
    """λ of an L1 penalty on the hidden activations, λ · mean over the batch of ‖h‖₁, added to the
    training objective (not to the reported loss). One value, or one per configuration."""
    adversarial_eps: float = 0.0
    """Adversarial training: attack each example with the most harmful per-feature WᵀW attack
    (`superposition.attacks`) of norm adversarial_eps × the batch's mean input norm, and train
    to reproduce the clean input. 0 turns it off; the paper's attacks use 0.1."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        _check_int("train.steps", self.steps, 1)
        _check_int("train.batch_size", self.batch_size, 1)
        _check_real("train.lr", self.lr, 0.0, math.inf, low_open=True)
        _check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        if self.weight_decay is not None:
            _check_real("train.weight_decay", self.weight_decay, 0.0, math.inf)
        if len(self.betas) != 2:
            _fail("train.betas", self.betas, "must be two numbers in [0, 1)")
        for i, beta in enumerate(self.betas):
            _check_real(f"train.betas[{i}]", beta, 0.0, 1.0)
            if beta >= 1.0:
                _fail(f"train.betas[{i}]", beta, "must be a number in [0, 1)")
        _check_real("train.eps", self.eps, 0.0, math.inf, low_open=True)
        _check_choice("train.schedule", self.schedule, SCHEDULES)
        _check_int("train.warmup_steps", self.warmup_steps, 0)
        _check_int("train.seed", self.seed, 0)
        _check_int("train.restarts", self.restarts, 1)
        _check_int("train.log_every", self.log_every, 1)
        if self.snapshot_every is not None:
            _check_int("train.snapshot_every", self.snapshot_every, 1)
        _check_int("train.eval_batches", self.eval_batches, 1)
        object.__setattr__(self, "l1_hidden", _freeze(self.l1_hidden))
        for i, lam in enumerate(self.l1_hidden if isinstance(self.l1_hidden, tuple) else (self.l1_hidden,)):
            where = f"train.l1_hidden[{i}]" if isinstance(self.l1_hidden, tuple) else "train.l1_hidden"
            _check_real(where, lam, 0.0, math.inf)
        _check_real("train.adversarial_eps", self.adversarial_eps, 0.0, math.inf)

    @property
    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.01 if self.optimizer == "adamw" else 0.0


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's result. Same config, same machine: same weights."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = "run"

    def __post_init__(self) -> None:
        n = self.model.n_features
        imp = self.data.importance
        width = len(imp[0]) if self.data.per_config_importance else len(imp or ())
        if imp is not None and width != n:
            _fail("data.importance", list(imp),
                  f"must have one value per feature (model.n_features = {n}), got {width}")
        for i, p in enumerate(self.data.feature_probability):
            if isinstance(p, tuple) and len(p) != n:
                _fail(f"data.feature_probability[{i}]", list(p),
                      f"must be one number or one per feature (model.n_features = {n}), got {len(p)}")
        l1 = self.train.l1_hidden
        if isinstance(l1, tuple) and len(l1) != self.data.n_configs:
            _fail("train.l1_hidden", list(l1), f"must be one number or one per configuration "
                  f"(len(data.feature_probability) = {self.data.n_configs}), got {len(l1)}")
        if self.train.adversarial_eps > 0 and self.model.kind == "abs_mlp":
            _fail("train.adversarial_eps", self.train.adversarial_eps,
                  "must be 0 for abs_mlp: the WᵀW attack needs a tied model (linear, relu_output, relu_hidden)")
        size = self.data.set_size
        if size is not None and n % size != 0:
            _fail("data.set_size", size, f"must divide model.n_features = {n}")

    @property
    def n_instances(self) -> int:
        """Instances trained together: configurations × restarts."""
        return self.data.n_configs * self.train.restarts

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Build from `to_dict` output; unknown keys are errors (a typo must not be ignored)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"config must be a JSON object, got {type(raw).__name__}")
        parts = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
        _reject_unknown("config", raw, {*parts, "name"})
        kwargs: dict[str, Any] = {}
        for key, kind in parts.items():
            section = raw.get(key, {})
            if not isinstance(section, dict):
                raise ConfigError(f"config.{key} must be an object, got {section!r}")
            _reject_unknown(key, section, {f.name for f in dataclasses.fields(kind)})
            try:
                kwargs[key] = kind(**section)
            except TypeError as exc:  # a wrongly typed nested value
                raise ConfigError(f"config.{key}: {exc}") from None
        if "name" in raw:
            kwargs["name"] = str(raw["name"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))


def _reject_unknown(where: str, raw: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _freeze(value: Any) -> Any:
    """Lists (from JSON or the caller) become tuples so configs stay hashable and frozen."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value
