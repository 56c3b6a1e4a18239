"""Typed, frozen configuration of a batch of sparse autoencoders (SAEs) trained together.

One `SAEConfig` is a grid: every combination of dictionary size × L1 coefficient × k × seed is
one *instance*, and all instances train in one step on the same stream of activations (so an
instance trained alone sees exactly the data it sees in the batch). Dictionary sizes that differ
are padded to the largest with masked latents (see `superposition.sae.model`).

The activations come from a `SourceConfig`: the hidden layer of a trained toy-model run, sampled
fresh from the run's own feature distribution every step, or a generated dictionary of known
feature directions (`DictionaryConfig`, the setting of Sharkey, Braun and Millidge 2022).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

from ..config import ConfigError

Architecture = Literal["relu", "topk", "batchtopk", "jumprelu"]
SourceKind = Literal["dictionary", "run"]
Structure = Literal["independent", "correlated", "hierarchy"]
Magnitude = Literal["uniform", "one"]

ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)
STRUCTURES: tuple[str, ...] = get_args(Structure)
MAGNITUDES: tuple[str, ...] = get_args(Magnitude)


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{name} = {value!r} is invalid: {allowed}")


def _int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        _fail(name, value, f"must be an integer >= {low}")


def _real(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False,
          high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
        _fail(name, value, f"must be a number in {left}{low:g}, {high:g}{right}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(name, value, f"must be one of {', '.join(choices)}")


def _bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(name, value, "must be true or false")


def _axis(name: str, value: Any) -> tuple:
    """A grid axis: a non-empty tuple (a lone value becomes a 1-tuple)."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values:
        _fail(name, value, "must be a non-empty list")
    return values


@dataclass(frozen=True)
class DictionaryConfig:
    """A generated dictionary of ground-truth features and the sparse codes that mix them.

    Defaults are Sharkey et al.'s toy data: G = 512 Gaussian unit directions in h = 256 dimensions,
    feature i on with probability c·λ^i (λ = 0.99, c such that 5 features are on on average), and
    an active feature's value U[0, 1].
    """

    n_features: int = 512
    """G: number of ground-truth feature directions."""
    n_hidden: int = 256
    """h: dimension of the activations the SAE sees."""
    n_active: float = 5.0
    """Mean number of features on per example; scales the probabilities c·λ^i (each capped at 1)."""
    decay: float = 0.99
    """λ: feature i is on with probability proportional to λ^i (1 = all equally likely)."""
    structure: Structure = "independent"
    """independent: each feature on by its own coin; correlated: the coins are thresholded
    Gaussians with a random correlation matrix (a Gaussian copula: each feature keeps its
    probability, pairs co-occur more or less than by chance); hierarchy: features come in groups
    of one parent and `n_children` children, a child can only be on when its parent is, and the
    parent is on whenever any child is (feature absorption)."""
    correlation_rank: int = 16
    """correlated: rank of the random factor A (G × rank) of the correlation matrix
    C = normalise(A Aᵀ + I); smaller gives stronger correlations."""
    n_children: int = 2
    """hierarchy: children per parent; groups of 1 + n_children consecutive features, the parent first."""
    child_probability: float = 0.5
    """hierarchy: probability that a child is on given that its parent is on."""
    magnitude: Magnitude = "uniform"
    """Value of an active feature: uniform U[0, 1] (Sharkey et al.) or one (the absorption studies)."""
    orthogonal: bool = False
    """Orthonormal directions (needs G ≤ h) instead of independent Gaussian unit vectors."""
    seed: int = 0
    """Seed of the directions (and of the correlation matrix); the codes use `SAEConfig.data_seed`."""

    def __post_init__(self) -> None:
        _int("dictionary.n_features", self.n_features, 1)
        _int("dictionary.n_hidden", self.n_hidden, 1)
        _real("dictionary.n_active", self.n_active, 0.0, float(self.n_features), low_open=True)
        _real("dictionary.decay", self.decay, 0.0, 1.0, low_open=True)
        _choice("dictionary.structure", self.structure, STRUCTURES)
        _int("dictionary.correlation_rank", self.correlation_rank, 1)
        _int("dictionary.n_children", self.n_children, 1)
        _real("dictionary.child_probability", self.child_probability, 0.0, 1.0, low_open=True)
        _choice("dictionary.magnitude", self.magnitude, MAGNITUDES)
        _bool("dictionary.orthogonal", self.orthogonal)
        _int("dictionary.seed", self.seed, 0)
        if self.orthogonal and self.n_features > self.n_hidden:
            _fail("dictionary.orthogonal", True, f"needs n_features <= n_hidden, got {self.n_features} > "
                  f"{self.n_hidden}")
        if self.structure == "hierarchy" and self.n_features % (1 + self.n_children):
            _fail("dictionary.n_features", self.n_features,
                  f"must be a multiple of 1 + n_children = {1 + self.n_children} for hierarchy data")

    @property
    def n_groups(self) -> int:
        """hierarchy: number of parent groups (otherwise every feature is its own group)."""
        return self.n_features // (1 + self.n_children) if self.structure == "hierarchy" else self.n_features


@dataclass(frozen=True)
class SourceConfig:
    """Where the SAE's training activations come from."""

    kind: SourceKind = "dictionary"
    """dictionary: generated (see `dictionary`); run: the hidden layer of a trained toy-model run,
    passed to `train_sae(config, run=...)`, its inputs drawn fresh from the run's own data
    distribution every step."""
    dictionary: DictionaryConfig | None = None
    """The generated dictionary (kind = dictionary; None there means Sharkey et al.'s defaults)."""
    instance: int = 0
    """kind = run: which saved instance of the run (one toy model) supplies the activations."""
    run_name: str | None = None
    """kind = run: the source run's name, recorded for provenance and checked against the run given."""

    def __post_init__(self) -> None:
        _choice("source.kind", self.kind, SOURCE_KINDS)
        if isinstance(self.dictionary, dict):
            object.__setattr__(self, "dictionary", _build(DictionaryConfig, self.dictionary, "source.dictionary"))
        if self.kind == "dictionary" and self.dictionary is None:
            object.__setattr__(self, "dictionary", DictionaryConfig())
        if self.kind == "run" and self.dictionary is not None:
            _fail("source.dictionary", "given", "must be unset (null) when source.kind = run")
        _int("source.instance", self.instance, 0)
        if self.run_name is not None and not isinstance(self.run_name, str):
            _fail("source.run_name", self.run_name, "must be a string or null")


class GridPoint(NamedTuple):
    """One SAE instance of the grid."""

    n_latents: int
    l1_coefficient: float
    k: int | None
    seed: int


SPLIT_WASTE = 1.5
"""Dictionaries of different sizes train as separate batched steps (one per size) when padding
every instance to the largest would do at least this many times the work of the dictionaries' own
sizes. Measured on the 2-core box (1 thread, load 3, eager and compiled alike): the sae-recovery
grid (sizes G/2, G, 2G, 4G: 2.13× the work padded) trains 2.1× faster split at G = 64, h = 32 and
2.4× at G = 512, h = 256; sae-absorption's sizes 40 and 80 (1.33×) are on par either way."""


@dataclass(frozen=True)
class SAEConfig:
    """A grid of sparse autoencoders (dictionary size × L1 coefficient × k × seed) and how to train them."""

    architecture: Architecture = "relu"
    """relu: ReLU latents, trained with an L1 penalty α‖c‖₁, decoder rows renormalised to unit norm
    after every step (Sharkey et al.); topk: only the k largest latents of each example are kept
    (Gao et al. 2024); batchtopk: the k·batch largest latents of the whole batch are kept, and at
    inference a latent fires above a threshold learnt during training (Bussmann et al. 2024);
    jumprelu: a latent fires above its own threshold; inference only (SAELens imports)."""
    n_latents: tuple[int, ...] = (1024,)
    """Dictionary sizes (grid axis); smaller ones are padded with masked latents up to the largest."""
    l1_coefficient: tuple[float, ...] = (1e-3,)
    """α of the penalty α · mean_batch ‖c‖₁ (grid axis), not divided by the dictionary size.
    Usually 0 for topk and batchtopk, whose sparsity is set by k."""
    k: tuple[int, ...] | None = None
    """Active latents per example for topk and batchtopk (grid axis); None for relu."""
    seeds: tuple[int, ...] = (0,)
    """Initialisation seeds (grid axis)."""
    decoder_bias: bool = True
    """Learn a decoder bias b_dec (subtracted from the input before encoding, added to the output)."""
    normalize_decoder: bool = True
    """Renormalise every decoder row (dictionary element) to unit norm after each step."""
    steps: int = 10_000
    """Optimiser steps."""
    batch_size: int = 1024
    """Activations per step (shared by every instance)."""
    lr: float = 1e-3
    """Adam learning rate."""
    lr_decay_steps: int = 0
    """Decay the learning rate linearly to 0 over the last this many steps (SAELens's `lr_decay_steps`;
    Anthropic's SAE recipe decays over the last 20%); 0 keeps it constant."""
    data_seed: int = 0
    """Seed of the activation stream (the same for every instance; separate from the init seeds)."""
    log_every: int = 100
    """Record the mean training loss every this many steps."""
    threshold_decay: float = 0.99
    """batchtopk: the inference threshold is an exponential moving average, with this decay, of
    the smallest activation kept in each training batch."""
    source: SourceConfig = field(default_factory=SourceConfig)
    """Where the activations come from."""
    name: str = "sae"
    """Name of the SAE run."""

    def __post_init__(self) -> None:
        _choice("sae.architecture", self.architecture, ARCHITECTURES)
        self._check_axes()
        for name in ("decoder_bias", "normalize_decoder"):
            _bool(f"sae.{name}", getattr(self, name))
        _int("sae.steps", self.steps, 1)
        _int("sae.batch_size", self.batch_size, 1)
        _real("sae.lr", self.lr, 0.0, low_open=True)
        _int("sae.lr_decay_steps", self.lr_decay_steps, 0)
        if self.lr_decay_steps > self.steps:
            _fail("sae.lr_decay_steps", self.lr_decay_steps, f"must be at most sae.steps ({self.steps})")
        _int("sae.data_seed", self.data_seed, 0)
        _int("sae.log_every", self.log_every, 1)
        _real("sae.threshold_decay", self.threshold_decay, 0.0, 1.0, high_open=True)
        if isinstance(self.source, dict):
            object.__setattr__(self, "source", _build(SourceConfig, self.source, "sae.source"))
        if not isinstance(self.source, SourceConfig):
            _fail("sae.source", self.source, "must be a SourceConfig")
        object.__setattr__(self, "name", str(self.name))

    def size_groups(self) -> list[SAEConfig]:
        """The config cut into one config per dictionary size when padding every instance to the
        largest would waste work (`SPLIT_WASTE`), else itself; training runs one batched step per
        group. The grid runs size slowest, so the groups' instances, concatenated, are the grid's in
        order, and an instance's result does not depend on the group it trains in."""
        sizes = self.n_latents
        if len(sizes) == 1 or len(sizes) * max(sizes) < SPLIT_WASTE * sum(sizes):
            return [self]
        return [dataclasses.replace(self, n_latents=(n,)) for n in sizes]

    def work(self, input_dim: int) -> float:
        """Relative training cost in `RunConfig.work`'s units: instances × batch × steps × latents
        (padded within a size group) × input_dim."""
        return sum(float(g.n_instances) * g.batch_size * g.steps * g.max_latents * input_dim
                   for g in self.size_groups())

    def _check_axes(self) -> None:
        for name in ("n_latents", "l1_coefficient", "seeds"):
            object.__setattr__(self, name, _axis(f"sae.{name}", getattr(self, name)))
        for i, n in enumerate(self.n_latents):
            _int(f"sae.n_latents[{i}]", n, 1)
        for i, alpha in enumerate(self.l1_coefficient):
            _real(f"sae.l1_coefficient[{i}]", alpha, 0.0)
        for i, seed in enumerate(self.seeds):
            _int(f"sae.seeds[{i}]", seed, 0)
        if self.architecture in ("relu", "jumprelu"):
            if self.k is not None:
                _fail("sae.k", self.k, f"must be unset (null) for architecture {self.architecture}, whose sparsity "
                      "comes from l1_coefficient or thresholds")
            return
        if self.k is None:
            _fail("sae.k", None, f"is required for architecture {self.architecture}")
        object.__setattr__(self, "k", _axis("sae.k", self.k))
        smallest = min(self.n_latents)
        for i, k in enumerate(self.k):
            _int(f"sae.k[{i}]", k, 1)
            if k > smallest:
                _fail(f"sae.k[{i}]", k, f"must be at most the smallest dictionary (sae.n_latents has {smallest})")

    # --- the grid --------------------------------------------------------------------------

    def grid(self) -> list[GridPoint]:
        """Every instance, in order: dictionary size slowest, then α, then k, then seed."""
        ks: tuple[int | None, ...] = self.k if self.k is not None else (None,)
        return [GridPoint(n, float(a), k, s)
                for n, a, k, s in itertools.product(self.n_latents, self.l1_coefficient, ks, self.seeds)]

    @property
    def n_instances(self) -> int:
        return len(self.grid())

    @property
    def max_latents(self) -> int:
        return max(self.n_latents)

    def alone(self, index: int) -> SAEConfig:
        """The config of instance `index` trained by itself (same data, same initialisation)."""
        point = self.grid()[index]
        return dataclasses.replace(self, n_latents=(point.n_latents,), l1_coefficient=(point.l1_coefficient,),
                                   k=None if point.k is None else (point.k,), seeds=(point.seed,))

    # --- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, raw: Any) -> SAEConfig:
        """Build from `to_dict` output; unknown keys are errors."""
        return _build(cls, raw, "sae")

    @classmethod
    def from_json(cls, text: str) -> SAEConfig:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"sae config is not JSON ({exc})") from None
        return cls.from_dict(raw)


def _build(kind: type, raw: Any, where: str) -> Any:
    """`kind(**raw)` with unknown keys and wrongly typed values reported as ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return kind(**raw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
