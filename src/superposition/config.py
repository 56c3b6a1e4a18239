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
from typing import Any, Literal, NamedTuple, get_args

ModelKind = Literal["linear", "relu_output", "relu_hidden", "abs_mlp"]
Magnitude = Literal["uniform", "constant", "folded_normal", "exponential"]
ProbabilityLaw = Literal["constant", "power_law", "exponential"]
Sampler = Literal["dense", "sparse"]
Schedule = Literal["constant", "linear", "cosine"]
Gradients = Literal["auto", "fused", "autograd"]
AdversarialAttack = Literal["worst", "random"]

MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
MAGNITUDES: tuple[str, ...] = get_args(Magnitude)
PROBABILITY_LAWS: tuple[str, ...] = get_args(ProbabilityLaw)
SAMPLERS: tuple[str, ...] = get_args(Sampler)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
GRADIENTS: tuple[str, ...] = get_args(Gradients)
ADVERSARIAL_ATTACKS: tuple[str, ...] = get_args(AdversarialAttack)
# Optimisers whose update is tensor maths inside the (compilable) step; any other torch.optim class
# name is accepted too and runs as a torch.optim optimiser on the autograd path.
FUSED_OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")
BUILTIN_DISTRIBUTIONS: tuple[str, ...] = ("independent", "correlated", "anticorrelated", "exactly_k")


class Parts(NamedTuple):
    """A model family as parts; the paper's four kinds are presets of these (`PRESETS`)."""

    tied: bool
    hidden_bias: bool
    hidden_activation: str
    output_activation: str
    hidden_layer: bool
    embedding_dim: int | None
    target: str
    signed: bool


PRESETS: dict[str, Parts] = {
    "linear": Parts(True, False, "identity", "identity", False, None, "identity", False),
    "relu_output": Parts(True, False, "identity", "relu", False, None, "identity", False),
    "relu_hidden": Parts(True, False, "relu", "relu", False, None, "identity", False),
    "abs_mlp": Parts(False, False, "relu", "relu", False, None, "abs", True),
}


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
    """Which toy model, and its size: a preset `kind`, optionally changed part by part, or a
    user's own module (`custom`). A part left None takes the preset's value."""

    kind: ModelKind = field(default="relu_output", metadata={"flags": ("--kind",)})
    """Preset. linear: x' = WᵀWx + b; relu_output: ReLU(WᵀWx + b); relu_hidden: ReLU(Wᵀ ReLU(Wx) + b);
    abs_mlp: untied ReLU(W2 ReLU(W1 x) + b), trained to output |x| of signed inputs."""
    n_features: int = field(default=5, metadata={"flags": ("--features", "--n-features")})
    """n: number of input features."""
    n_hidden: int = field(default=2, metadata={"flags": ("--hidden", "--n-hidden")})
    """m: hidden dimensions (neurons)."""
    init_std: float | None = None
    """Standard deviation of the initial weights; None is xavier-normal of one instance's
    [feat, hidden] matrix, sqrt(2 / (n_features + n_hidden))."""
    tied: bool | None = None
    """Decoder is the encoder's transpose (W and Wᵀ) rather than its own matrix (W1, W2)."""
    hidden_bias: bool | None = None
    """A trained bias on the hidden layer, b_hidden [inst, hidden] (zero-initialised)."""
    hidden_activation: str | None = None
    """Activation of the hidden layer: identity, relu, gelu, silu, sigmoid, tanh, solu (with its
    LayerNorm), a name registered with `superposition.register_activation`, or 'module:function'."""
    output_activation: str | None = None
    """Activation of the output layer (same choices as hidden_activation)."""
    hidden_layer: bool | None = None
    """An extra hidden layer h -> act(W_h h), W_h [inst, hidden, hidden] initialised to the identity."""
    embedding_dim: int | None = None
    """Features live in a larger space: the model sees x E, E [inst, feat, embedding_dim] a fixed random
    matrix with orthonormal rows, and its output is mapped back by Eᵀ. None: no embedding."""
    custom: str | None = None
    """Import path 'package.module:Name' of your own nn.Module class (or factory) for ONE instance,
    built as Name(n_features, n_hidden); its forward maps x [batch, feat] to (output [batch, feat],
    hidden [batch, width]). Parts fields must then be None. `ModelConfig(custom=TheClass)` also works."""

    def __post_init__(self) -> None:
        if self.custom is not None and not isinstance(self.custom, str):
            from .registry import import_path_of

            try:
                object.__setattr__(self, "custom", import_path_of(self.custom))
            except ValueError as exc:
                _fail("model.custom", self.custom, str(exc))
        _check_choice("model.kind", self.kind, MODEL_KINDS)
        _check_int("model.n_features", self.n_features, 1)
        _check_int("model.n_hidden", self.n_hidden, 1)
        if self.init_std is not None:
            _check_real("model.init_std", self.init_std, 0.0, math.inf)
        for name in ("tied", "hidden_bias", "hidden_layer"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                _fail(f"model.{name}", value, "must be true, false or null (the preset's)")
        self._check_activations()
        if self.embedding_dim is not None:
            _check_int("model.embedding_dim", self.embedding_dim, self.n_features)
        if self.custom is not None:
            self._check_custom()

    def _check_activations(self) -> None:
        from .registry import ACTIVATIONS

        for name in ("hidden_activation", "output_activation"):
            value = getattr(self, name)
            if value is not None and not ACTIVATIONS.is_known(value):
                _fail(f"model.{name}", value, f"must be {ACTIVATIONS.allowed()}")

    def _check_custom(self) -> None:
        from .registry import is_import_path

        if not is_import_path(self.custom):
            _fail("model.custom", self.custom, "must be an import path 'package.module:Name'")
        changed = [n for n in _PART_FIELDS if getattr(self, n) is not None]
        if changed:
            _fail(f"model.{changed[0]}", getattr(self, changed[0]),
                  "must be null with model.custom: a custom module defines its own parts")

    @property
    def parts(self) -> Parts:
        """The preset's parts with this config's changes."""
        base = PRESETS[self.kind]
        changes = {n: getattr(self, n) for n in _PART_FIELDS if getattr(self, n) is not None}
        return base._replace(**changes)

    @property
    def fused_kind(self) -> str | None:
        """The paper kind whose hand-written gradients compute this model, or None (autograd)."""
        if self.custom is not None:
            return None
        parts = self.parts
        for kind, preset in PRESETS.items():
            if parts[:6] == preset[:6]:
                return kind
        return None


_PART_FIELDS = ("tied", "hidden_bias", "hidden_activation", "output_activation", "hidden_layer", "embedding_dim")


@dataclass(frozen=True)
class DataConfig:
    """The synthetic feature distribution of every configuration in the run."""

    feature_probability: tuple[float | tuple[float, ...], ...] = field(
        default=(1.0,), metadata={"flags": ("-p", "--feature-probability")})
    """p (= 1 - S), one entry per configuration: a float for all features, or one per feature."""
    importance_decay: float = 1.0
    """Importance of feature i is importance_decay**i (ignored when `importance` is given)."""
    importance: tuple[float, ...] | tuple[tuple[float, ...], ...] | None = None
    """Explicit per-feature importance, overriding `importance_decay`: one list for every
    configuration, or a list of lists, one per configuration (aligned with `feature_probability`)."""
    distribution: str = "independent"
    """independent features; correlated sets (a set is all-zero together with probability 1 - p,
    else each member non-zero); anticorrelated sets (all-zero with probability 1 - p, else exactly
    one random member non-zero); exactly_k (exactly `n_active` features non-zero, chosen uniformly,
    p ignored); or a sampler registered with `superposition.data.register_distribution`, or
    'module:function'."""
    set_size: int | None = None
    """Features per set for correlated/anticorrelated data; must divide n_features."""
    n_active: int | None = None
    """Non-zero features per example for exactly_k data (1: one-hot inputs)."""
    signed: bool | None = None
    """Non-zero values are ±magnitude with a random sign instead of non-negative; None takes the
    model preset's default (True for abs_mlp, whose task |x| is the identity on x >= 0)."""
    magnitude: Magnitude = "uniform"
    """Law of a non-zero value: uniform U[0, 1], constant 1, folded normal |N(0, 1)|, exponential(1)."""
    probability_law: ProbabilityLaw = "constant"
    """How p varies over features within a configuration: constant; power_law p_i ∝ (i + 1)^-a;
    exponential p_i ∝ a^i (a = `law_parameter`). With a law, each entry of feature_probability is the
    MEAN probability (so n · p features are active on average), each p_i clipped to 1."""
    law_parameter: float | None = None
    """a of `probability_law`: the exponent of power_law (default 1), the ratio of exponential (default 0.99)."""
    normalize: bool = False
    """Rescale every input to unit L2 norm (all-zero inputs stay zero)."""
    n_train: int | None = None
    """A finite training set of this many examples per instance (drawn once from the distribution,
    regenerated from the seed), trained full-batch when batch_size >= n_train, else in epochs of
    shuffled minibatches. None: fresh data every step."""
    n_test: int = 4096
    """Held-out test examples per instance when n_train is set (the test loss in metrics)."""
    sampler: Sampler = "dense"
    """How independent features are drawn. dense: one hash per (example, feature), the reference
    stream. sparse: the gaps between an example's active features are drawn directly (geometric,
    thinned where p varies over features), so an example costs about its number of active features
    in hashes instead of n_features: much faster when p is small, a different stream of the same
    distribution (an example needing more active features than `superposition.data.sparse_capacity`,
    probability below 1e-12, keeps the first ones). Independent distribution only."""

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
        self._check_distribution()
        if self.signed is not None and not isinstance(self.signed, bool):
            _fail("data.signed", self.signed, "must be true, false or null (the model preset's)")
        _check_choice("data.magnitude", self.magnitude, MAGNITUDES)
        _check_choice("data.probability_law", self.probability_law, PROBABILITY_LAWS)
        if self.law_parameter is not None:
            if self.probability_law == "constant":
                _fail("data.law_parameter", self.law_parameter, "needs data.probability_law power_law or exponential")
            high = 1.0 if self.probability_law == "exponential" else math.inf
            _check_real("data.law_parameter", self.law_parameter, 0.0, high, low_open=True)
        if not isinstance(self.normalize, bool):
            _fail("data.normalize", self.normalize, "must be true or false")
        if self.n_train is not None:
            _check_int("data.n_train", self.n_train, 1)
        _check_int("data.n_test", self.n_test, 1)
        _check_choice("data.sampler", self.sampler, SAMPLERS)
        if self.sampler == "sparse" and self.distribution != "independent":
            _fail("data.sampler", self.sampler, f"needs data.distribution = independent, got {self.distribution!r}")

    def _check_distribution(self) -> None:
        from .registry import DISTRIBUTIONS

        if self.distribution not in BUILTIN_DISTRIBUTIONS and not DISTRIBUTIONS.is_known(self.distribution):
            known = dict.fromkeys((*BUILTIN_DISTRIBUTIONS, *DISTRIBUTIONS.names))
            _fail("data.distribution", self.distribution,
                  f"must be one of {', '.join(known)}, or an import path 'package.module:function'")
        if self.set_size is not None:
            _check_int("data.set_size", self.set_size, 1)
        if self.distribution in ("correlated", "anticorrelated") and self.set_size is None:
            _fail("data.set_size", None, f"is required for {self.distribution} data")
        if self.n_active is not None:
            _check_int("data.n_active", self.n_active, 1)
        if self.distribution == "exactly_k" and self.n_active is None:
            _fail("data.n_active", None, "is required for exactly_k data")

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
    """Optimisation steps (each on a fresh batch, or one minibatch of a finite training set)."""
    batch_size: int = field(default=1024, metadata={"flags": ("--batch", "--batch-size")})
    """Examples per step and instance."""
    lr: float = 1e-3
    """Peak learning rate (after warm-up)."""
    optimizer: str = "adamw"
    """adamw, adam or sgd (fused into the step), or the name of any other torch.optim optimiser
    (e.g. RMSprop, Adagrad), run by torch.optim on the autograd path with `optimizer_options`."""
    weight_decay: float | None = None
    """None means the optimiser's usual default: 0.01 for adamw, 0 otherwise."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam(W)'s moment decay rates."""
    eps: float = 1e-8
    """Adam(W)'s denominator epsilon."""
    momentum: float = 0.0
    """SGD momentum (0: plain SGD)."""
    nesterov: bool = False
    """SGD with Nesterov momentum (needs momentum > 0)."""
    optimizer_options: tuple[tuple[str, Any], ...] = ()
    """Extra keyword arguments of a torch.optim optimiser, e.g. {"alpha": 0.9} for RMSprop."""
    schedule: Schedule = "constant"
    """Learning-rate decay after warm-up: constant, linear to 0, or cosine to 0."""
    warmup_steps: int = field(default=0, metadata={"flags": ("--warmup", "--warmup-steps")})
    """Steps of linear warm-up from 0 to `lr`."""
    seed: int = 0
    """Seed of every random draw of the run (initial weights, data, evaluation)."""
    restarts: int = 1
    """Best-of-N: train N instances per configuration and keep the lowest final loss."""
    share_init: bool = False
    """Start every configuration of the run from the same initial weights (per restart). By default
    each configuration gets independent ones, keyed on its own values, so the cells of a grid are
    independent samples. Data events are shared across configurations either way."""
    keep_all_restarts: bool = False
    """Save every restart instead of only the best one per configuration."""
    log_every: int = 100
    """Record the mean training loss every this many steps."""
    snapshot_every: int | None = None
    """Save the weights every this many steps (learning dynamics), or never when None."""
    eval_batches: int = 8
    """Batches of fresh data used for the final per-instance loss."""
    target: str | None = None
    """What the model must output: identity, abs (|x|), x_plus_relu (x + ReLU(x)), a name registered with
    `superposition.register_target`, or 'module:function'; None takes the model preset's (abs for abs_mlp)."""
    loss: str = "mse"
    """Per-instance loss: mse (importance-weighted squared error, the paper's), mae, a name registered with
    `superposition.register_loss`, or 'module:function' (output, goal, importance) -> [inst]."""
    gradients: Gradients = "auto"
    """fused: the hand-written gradients of the paper's models; autograd: torch.func for any model;
    auto: fused where the model, loss and optimiser have them, else autograd."""
    l1_hidden: float | tuple[float, ...] = 0.0
    """λ of an L1 penalty on the hidden activations, λ · mean over the batch of ‖h‖₁, added to the
    training objective (not to the reported loss). One value, or one per configuration."""
    adversarial_eps: float | tuple[float, ...] = 0.0
    """Adversarial training: attack each example with a per-feature WᵀW attack (`superposition.attacks`,
    see `adversarial_attack`) of norm adversarial_eps × the batch's mean input norm, and train to
    reproduce the clean input. 0 turns it off; the paper's attacks use 0.1. One value, or one per
    configuration (a sweep of attack norms in one run)."""
    adversarial_attack: AdversarialAttack = "worst"
    """Which feature's attack adversarial training uses: worst (the most harmful of the n features'
    attacks per example; n forward passes) or random (one feature drawn at random per example, the
    paper's choice for adversarial training; one pass)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        _check_int("train.steps", self.steps, 1)
        _check_int("train.batch_size", self.batch_size, 1)
        _check_real("train.lr", self.lr, 0.0, math.inf, low_open=True)
        self._check_optimizer()
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
        if not isinstance(self.share_init, bool):
            _fail("train.share_init", self.share_init, "must be true or false")
        _check_int("train.log_every", self.log_every, 1)
        if self.snapshot_every is not None:
            _check_int("train.snapshot_every", self.snapshot_every, 1)
        _check_int("train.eval_batches", self.eval_batches, 1)
        self._check_objective()
        object.__setattr__(self, "l1_hidden", _freeze(self.l1_hidden))
        for i, lam in enumerate(self.l1_hidden if isinstance(self.l1_hidden, tuple) else (self.l1_hidden,)):
            where = f"train.l1_hidden[{i}]" if isinstance(self.l1_hidden, tuple) else "train.l1_hidden"
            _check_real(where, lam, 0.0, math.inf)
        object.__setattr__(self, "adversarial_eps", _freeze(self.adversarial_eps))
        eps = self.adversarial_eps
        for i, e in enumerate(eps if isinstance(eps, tuple) else (eps,)):
            _check_real(f"train.adversarial_eps[{i}]" if isinstance(eps, tuple) else "train.adversarial_eps",
                        e, 0.0, math.inf)
        _check_choice("train.adversarial_attack", self.adversarial_attack, ADVERSARIAL_ATTACKS)

    def _check_optimizer(self) -> None:
        name = self.optimizer
        if not isinstance(name, str) or not (name in FUSED_OPTIMIZERS or _torch_optimizer(name) is not None):
            _fail("train.optimizer", name, f"must be one of {', '.join(FUSED_OPTIMIZERS)}, or a torch.optim "
                  "optimiser class name (e.g. RMSprop, Adagrad, SGD)")
        _check_real("train.momentum", self.momentum, 0.0, 1.0)
        if not isinstance(self.nesterov, bool):
            _fail("train.nesterov", self.nesterov, "must be true or false")
        if self.nesterov and not (self.optimizer == "sgd" and self.momentum > 0):
            _fail("train.nesterov", self.nesterov, "needs optimizer sgd with momentum > 0")
        if self.momentum and self.optimizer != "sgd":
            _fail("train.momentum", self.momentum, "is for optimizer sgd (torch.optim options go in optimizer_options)")
        options = self.optimizer_options
        if isinstance(options, dict):
            options = tuple(sorted(options.items()))
        object.__setattr__(self, "optimizer_options", _freeze(options))
        if self.optimizer_options and self.optimizer in FUSED_OPTIMIZERS:
            _fail("train.optimizer_options", dict(self.optimizer_options),
                  f"are for torch.optim optimisers; {self.optimizer} takes lr, weight_decay, betas, eps, momentum, "
                  "nesterov")
        if self.optimizer_options:
            _check_optimizer_options(self.optimizer, self.optimizer_options)

    def _check_objective(self) -> None:
        from .registry import LOSSES, TARGETS

        if self.target is not None and not TARGETS.is_known(self.target):
            _fail("train.target", self.target, f"must be {TARGETS.allowed()}")
        if not LOSSES.is_known(self.loss):
            _fail("train.loss", self.loss, f"must be {LOSSES.allowed()}")
        _check_choice("train.gradients", self.gradients, GRADIENTS)

    def l1_per_config(self, n_configs: int) -> tuple[float, ...]:
        """λ of every configuration: the one normalised form of `l1_hidden`."""
        lam = self.l1_hidden
        return tuple(lam) if isinstance(lam, tuple) else (float(lam),) * n_configs

    def adversarial_per_config(self, n_configs: int) -> tuple[float, ...]:
        """Attack norm (fraction of the mean input norm) of every configuration."""
        eps = self.adversarial_eps
        return tuple(eps) if isinstance(eps, tuple) else (float(eps),) * n_configs

    @property
    def has_adversarial(self) -> bool:
        eps = self.adversarial_eps
        return any(v > 0 for v in eps) if isinstance(eps, tuple) else eps > 0

    @property
    def has_l1(self) -> bool:
        lam = self.l1_hidden
        return any(v > 0 for v in lam) if isinstance(lam, tuple) else lam > 0

    @property
    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.01 if self.optimizer == "adamw" else 0.0

    @property
    def torch_optimizer(self) -> bool:
        """True when the optimiser is a torch.optim one rather than fused into the step."""
        return self.optimizer not in FUSED_OPTIMIZERS


def _torch_optimizer(name: str) -> type | None:
    import torch

    cls = getattr(torch.optim, name, None) if name.isidentifier() and not name.startswith("_") else None
    ok = isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and name not in ("LBFGS", "SparseAdam")
    return cls if ok else None


def _check_optimizer_options(name: str, options: tuple[tuple[str, Any], ...]) -> None:
    import inspect

    accepted = set(inspect.signature(_torch_optimizer(name)).parameters) - {"self", "params", "lr", "weight_decay"}
    for key, value in options:
        if key not in accepted:
            _fail(f"train.optimizer_options.{key}", value,
                  f"is not an option of torch.optim.{name}; it takes {', '.join(sorted(accepted))}")


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
        eps = self.train.adversarial_eps
        if isinstance(eps, tuple) and len(eps) != self.data.n_configs:
            _fail("train.adversarial_eps", list(eps), f"must be one number or one per configuration "
                  f"(len(data.feature_probability) = {self.data.n_configs}), got {len(eps)}")
        parts = self.model.parts
        if self.train.has_adversarial and (self.model.fused_kind is None or not parts.tied):
            _fail("train.adversarial_eps", self.train.adversarial_eps,
                  "must be 0 here: the WᵀW attack needs a tied paper model (linear, relu_output, relu_hidden)")
        if self.data.signed is None:
            object.__setattr__(self, "data", dataclasses.replace(self.data, signed=parts.signed))
        if self.data.probability_law != "constant" and any(isinstance(p, tuple) for p in self.data.feature_probability):
            _fail("data.probability_law", self.data.probability_law,
                  "needs one number per configuration in data.feature_probability (the law sets per-feature values)")
        if self.data.n_active is not None and self.data.n_active > n:
            _fail("data.n_active", self.data.n_active, f"must be at most model.n_features = {n}")
        size = self.data.set_size
        if size is not None and n % size != 0:
            _fail("data.set_size", size, f"must divide model.n_features = {n}")

    @property
    def n_instances(self) -> int:
        """Instances trained together: configurations × restarts."""
        return self.data.n_configs * self.train.restarts

    @property
    def work(self) -> float:
        """Relative training cost for scheduling: multiply-adds of the input-side product summed over
        training (instances × examples per step × steps × features × hidden width)."""
        m = self.model
        width = max(m.n_hidden, m.embedding_dim or 0)
        examples = self.train.batch_size if self.data.n_train is None else min(self.train.batch_size,
                                                                               self.data.n_train)
        return float(self.n_instances) * examples * self.train.steps * m.n_features * width

    @property
    def target(self) -> str:
        """The training target: train.target, or the model preset's."""
        return self.train.target if self.train.target is not None else self.model.parts.target

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        raw["train"]["optimizer_options"] = dict(self.train.optimizer_options)
        return raw

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
