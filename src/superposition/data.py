"""Synthetic sparse features, drawn from a counter-based generator.

Every random number is a SplitMix64 hash of (instance key, stream, step, position). Three things
follow: a batch costs a few integer operations per element, which fuse into the compiled training
step; an instance's data depend only on its own key and the step, never on which other instances
share the batch; and a run resumed at step t sees exactly the data it would have seen.

Shapes: keys ``[inst]`` (int64), probabilities and importance ``[inst, feat]``, batches
``[inst, batch, feat]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from .config import BUILTIN_DISTRIBUTIONS, DataConfig, RunConfig
from .registry import DISTRIBUTIONS, register_distribution

__all__ = ["FeatureSpec", "Stream", "dataset", "draw", "feature_spec", "minibatch", "register_distribution", "sample"]

_BUILTIN = frozenset(BUILTIN_DISTRIBUTIONS)

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


def random_bits(keys: Tensor, step: Tensor, batch: int, width: int, rows: tuple[int, int] | None = None,
                columns: int | None = None) -> Tensor:
    """64 random bits per element, ``[inst, batch, width]``: element i of step t of each key's
    stream is mix(key + (t * batch * width + i + 1) * golden), i.e. SplitMix64 with skip-ahead.
    With `rows` = (start, stop), only those rows of the batch, ``[inst, stop - start, width]``;
    with `columns` = c, only the first c elements of each row, ``[inst, rows, c]``."""
    start, stop = rows if rows is not None else (0, batch)
    cols = width if columns is None else columns
    index = (torch.arange(start, stop, dtype=torch.int64, device=keys.device).view(-1, 1) * width
             + torch.arange(cols, dtype=torch.int64, device=keys.device)) if columns is not None else \
        torch.arange(start * width, stop * width, dtype=torch.int64, device=keys.device)
    counter = step.to(torch.int64) * (batch * width) + index.view(1, stop - start, cols) + 1
    return mix(keys.view(-1, 1, 1) + counter * _signed(_GOLDEN))


def _unit(bits: Tensor, shift: int) -> Tensor:
    """24 of the bits, from bit `shift` (≤ 40) up, as a float32 uniform in [0, 1). The mask drops what an
    arithmetic shift copies of the sign bit, so no logical shift is needed."""
    return ((bits >> shift) & 0xFFFFFF).to(torch.float32) * (2.0**-24)


def _gate(bits: Tensor, probability: Tensor) -> Tensor:
    """``_unit(bits, 0) < probability`` in integers, bit for bit: k·2⁻²⁴ < p ⟺ k < ⌈p·2²⁴⌉ for an integer k
    (p·2²⁴ is exact in float64). Two passes over the bits instead of five."""
    threshold = torch.ceil(probability.double() * 2.0**24).to(torch.int64)
    return (bits & 0xFFFFFF) < threshold


class FeatureSpec(NamedTuple):
    """The per-instance tensors a sampler needs; built once per run by `feature_spec`."""

    keys: Tensor  # [inst] int64, one data stream per instance
    set_keys: Tensor  # [inst] int64, the stream of set-level draws (correlated data)
    probability: Tensor  # [inst, feat] float32
    importance: Tensor  # [inst, feat] float32
    capacity: int = 0  # the sparse sampler's active features per example (`sparse_capacity`); 0: dense only
    thinned: bool = True  # the sparse sampler thins candidates (False only when p is constant over features)


class Stream(NamedTuple):
    """The random numbers of one step, for a user's sampler (`register_distribution`): every call with
    a different `salt` gives independent numbers; the same call gives the same numbers."""

    keys: Tensor  # [inst] int64
    step: Tensor  # 0-d int64

    def bits(self, batch: int, width: int, salt: int = 0) -> Tensor:
        """64 random bits per element, ``[inst, batch, width]`` (int64)."""
        keys = self.keys if salt == 0 else mix(self.keys + _signed(_GOLDEN * (salt + 1)))
        return random_bits(keys, self.step, batch, width)

    def uniform(self, batch: int, width: int, salt: int = 0) -> Tensor:
        """Uniforms in [0, 1), ``[inst, batch, width]`` (float32, 24 bits each)."""
        return _unit(self.bits(batch, width, salt), 40)


def sample(spec: FeatureSpec, step: Tensor, batch: int, distribution: str = "independent",
           set_size: int | None = None, signed: bool = False, *, n_active: int | None = None,
           magnitude: str = "uniform", normalize: bool = False, sparse: bool = False) -> Tensor:
    """One batch ``[inst, batch, feat]`` of step `step` (an int64 scalar tensor).

    Each feature is non-zero with its probability p (or as `distribution` says), and then drawn
    from `magnitude` (uniform on [0, 1) by default), with a random sign when `signed` (uniform:
    U[-1, 1)). Gate and value use disjoint bits of one hash, so one hash per element suffices.
    `sparse` draws independent features with `sample_sparse` instead (a different stream).
    """
    if distribution not in _BUILTIN:
        x = DISTRIBUTIONS.get(distribution)(Stream(spec.keys, step), batch, spec.probability)
        return _normalized(x) if normalize else x
    if sparse:
        if distribution != "independent":
            raise ValueError(f"the sparse sampler draws independent features only, not {distribution!r}")
        x = sample_sparse(spec, step, batch, signed, magnitude)
        return _normalized(x) if normalize else x
    blocks = _row_blocks(spec, batch)
    parts = [_sample_rows(spec, step, batch, rows, distribution, set_size, signed, n_active, magnitude)
             for rows in blocks]
    x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return _normalized(x) if normalize else x


EAGER_BLOCK_ELEMENTS = 1 << 18
"""Eagerly, a large batch is drawn in blocks of rows of about this many elements: each of the
hash's ~25 passes then stays in cache (measured 3.1× faster at 400 features × 10 instances on 2 CPU
cores). Compiled, the whole batch is one fused loop anyway. Same numbers either way."""


def _row_blocks(spec: FeatureSpec, batch: int) -> list[tuple[int, int]]:
    per_row = spec.probability.shape[0] * spec.probability.shape[-1]
    if torch.compiler.is_compiling() or spec.keys.device.type != "cpu" or per_row * batch <= 2 * EAGER_BLOCK_ELEMENTS:
        return [(0, batch)]
    step = max(1, EAGER_BLOCK_ELEMENTS // per_row)
    return [(r, min(batch, r + step)) for r in range(0, batch, step)]


def _sample_rows(spec: FeatureSpec, step: Tensor, batch: int, rows: tuple[int, int], distribution: str,
                 set_size: int | None, signed: bool, n_active: int | None, magnitude: str) -> Tensor:
    """Rows `rows` of the batch of `sample` (every builtin law is elementwise or row-wise)."""
    n_feat = spec.probability.shape[-1]
    bits = random_bits(spec.keys, step, batch, n_feat, rows)
    value = _magnitude(bits, magnitude, signed)
    if distribution == "independent":
        keep = _gate(bits, spec.probability.unsqueeze(1))
    elif distribution == "exactly_k":
        keep = _exactly_k(_unit(bits, 0), n_active)
    else:
        assert set_size is not None
        keep = _set_mask(spec, step, batch, n_feat, set_size, distribution == "anticorrelated", rows)
    return torch.where(keep, value, 0.0)


def draw(spec: FeatureSpec, step: Tensor, batch: int, data: DataConfig) -> Tensor:
    """`sample` with every option of `data`."""
    return sample(spec, step, batch, data.distribution, data.set_size, bool(data.signed), n_active=data.n_active,
                  magnitude=data.magnitude, normalize=data.normalize, sparse=data.sampler == "sparse")


def draw_codes(spec: FeatureSpec, step: Tensor, batch: int, data: DataConfig) -> SparseBatch:
    """`draw` kept sparse, for `data.sampler = 'sparse'` (the same numbers as `draw`, not densified)."""
    if data.sampler != "sparse":
        raise ValueError(f"draw_codes needs data.sampler = 'sparse', not {data.sampler!r}")
    return sparse_codes(spec, step, batch, bool(data.signed), data.magnitude, data.normalize)


# --- the sparse sampler -----------------------------------------------------------------------

SPARSE_TAIL = 1e-12
"""Probability, per example, that the sparse sampler's capacity is too small (bounded, not estimated)."""
_THINNING_SALT = 0x5A17


def sparse_capacity(n_features: int, p_max: float) -> int:
    """Active features per example the sparse sampler draws room for: the smallest K with
    P(Binomial(n, p_max) > K) ≤ `SPARSE_TAIL` by the Chernoff bound exp(−n·KL(K/n ‖ p)), at most n."""
    n, p = n_features, min(max(float(p_max), 0.0), 1.0)
    if p <= 0.0:
        return 1
    if p >= 1.0:
        return n
    bound = -math.log(SPARSE_TAIL)
    for k in range(max(1, math.ceil(n * p)), n):
        a = (k + 1) / n  # P(X > k) = P(X >= k + 1) <= exp(-n KL(a || p))
        kl = a * math.log(a / p) + (1 - a) * math.log((1 - a) / (1 - p)) if a < 1 else math.log(1 / p)
        if n * kl >= bound:
            return k
    return n


class SparseBatch(NamedTuple):
    """A batch of independent features kept sparse: slot j of an example holds its j-th active
    feature. Unused slots hold value 0 (at some valid index), so every slot can be gathered and
    scattered as it is; the kept indices of an example are distinct."""

    index: Tensor  # [inst, batch, K] int64, feature of each slot, in [0, feat)
    value: Tensor  # [inst, batch, K] float32, its value (0 in an unused slot)

    def dense(self, n_features: int) -> Tensor:
        """The same batch as ``[inst, batch, feat]`` (exact: kept slots are distinct, the rest add 0)."""
        shape = (*self.value.shape[:2], n_features)
        return self.value.new_zeros(shape).scatter_add_(-1, self.index, self.value)


def sample_sparse(spec: FeatureSpec, step: Tensor, batch: int, signed: bool = False,
                  magnitude: str = "uniform") -> Tensor:
    """`sparse_codes` as a dense ``[inst, batch, feat]`` batch."""
    return sparse_codes(spec, step, batch, signed, magnitude).dense(spec.probability.shape[-1])


def sparse_codes(spec: FeatureSpec, step: Tensor, batch: int, signed: bool = False,
                 magnitude: str = "uniform", normalize: bool = False) -> SparseBatch:
    """Independent features drawn sparsely, each feature non-zero with its probability, from about
    `spec.capacity` hashes per example instead of one per feature (`SparseBatch`, K = capacity).

    Slot j of an example holds its j-th candidate feature, from the hash of element j of the
    example's row in the dense layout (so an instance's data do not depend on the capacity, which
    the largest p of the run sets, nor on the other instances): candidates are the successes of a
    Bernoulli(p_max) sequence over the features (p_max: the instance's largest p), reached by
    geometric gaps drawn from bits 0-23 of the slot's hash; a candidate i is kept with probability
    p_i / p_max (thinning, from a second hash; skipped when p is the same for every feature), and
    its value comes from bits 24-63 as in `sample`. Every feature is therefore non-zero with
    probability exactly p_i (up to the 24-bit resolution), independently of the others.
    `normalize` rescales each example to unit norm, as `data.normalize` does.
    """
    if spec.capacity < 1:
        raise ValueError("the sparse sampler needs FeatureSpec.capacity >= 1 (feature_spec sets it for "
                         "data.sampler = 'sparse')")
    n = spec.probability.shape[-1]
    p_max = spec.probability.amax(-1).view(-1, 1, 1)  # [inst, 1, 1]
    bits = random_bits(spec.keys, step, batch, n, columns=spec.capacity)  # [inst, batch, K]
    failures = torch.log1p(-_unit(bits, 0)) / torch.log1p(-p_max.clamp(2.0**-60, 1 - 2.0**-24))  # Geometric - 1
    gap = torch.where(p_max >= 1, 1.0, torch.where(p_max > 0, failures.clamp(max=n).floor() + 1, n + 1.0))
    position = gap.to(torch.int64).cumsum(-1) - 1  # [inst, batch, K], increasing
    index = position.clamp(max=n)  # n: past the last feature
    keep = position < n
    if spec.thinned:
        p = torch.cat([spec.probability, spec.probability.new_zeros(spec.probability.shape[0], 1)], -1)
        p_i = p.unsqueeze(1).expand(-1, batch, -1).gather(-1, index)
        salted = mix(spec.keys + _signed(_GOLDEN * _THINNING_SALT))
        keep = keep & (_unit(random_bits(salted, step, batch, n, columns=spec.capacity), 0) * p_max < p_i)
    value = torch.where(keep, _magnitude(bits, magnitude, signed), 0.0)
    if normalize:
        value = _normalized(value)
    return SparseBatch(index.clamp(max=n - 1), value)


def _magnitude(bits: Tensor, magnitude: str, signed: bool) -> Tensor:
    """The non-zero values' law, from bits 24-63 of each element's hash (bits 0-23 gate it)."""
    u = _unit(bits, 40)
    if magnitude == "uniform":
        return u * 2.0 - 1.0 if signed else u
    if magnitude == "constant":
        value = torch.ones_like(u)
    elif magnitude == "exponential":
        value = -torch.log1p(-u)
    else:  # folded normal |N(0, 1)|, Box-Muller on 24 + 15 bits
        angle = (_lsr(bits, 25) & 0x7FFF).to(torch.float32) * (2.0**-15)
        value = (torch.sqrt(-2.0 * torch.log1p(-u)) * torch.cos(2.0 * math.pi * angle)).abs()
    if signed:
        value = torch.where((_lsr(bits, 24) & 1) == 1, -value, value)
    return value


def _exactly_k(u: Tensor, k: int | None) -> Tensor:
    """The k features with the smallest uniforms of each example: k distinct, uniformly chosen."""
    assert k is not None
    threshold = torch.topk(u, k, dim=-1, largest=False).values[..., -1:]
    return u <= threshold


def _normalized(x: Tensor) -> Tensor:
    norm = x.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, x / norm.clamp_min(1e-30), 0.0)


def _set_mask(spec: FeatureSpec, step: Tensor, batch: int, n_feat: int, set_size: int,
              exclusive: bool, rows: tuple[int, int] | None = None) -> Tensor:
    """Which features are on when features come in sets of `set_size` consecutive features.

    A set is active with the probability of its first feature. Correlated: every member of an
    active set is on. Anticorrelated (`exclusive`): exactly one uniformly chosen member is on.
    """
    n_sets = n_feat // set_size
    bits = random_bits(spec.set_keys, step, batch, n_sets, rows)
    p_set = spec.probability[:, ::set_size].unsqueeze(1)  # [inst, 1, sets]
    active = _gate(bits, p_set).repeat_interleave(set_size, dim=-1)
    if not exclusive:
        return active
    chosen = (_unit(bits, 40) * set_size).long().clamp_(max=set_size - 1)
    member = torch.arange(n_feat, device=bits.device) % set_size
    return active & (chosen.repeat_interleave(set_size, dim=-1) == member)


class Instances(NamedTuple):
    """The run's instance table: instance k is configuration k // restarts, restart k % restarts."""

    config_index: list[int]
    restart: list[int]
    seeds: list[int]  # int64 per instance, of its data stream: depends only on (train.seed, restart)
    init_seeds: list[int]  # int64 per instance, of its initial weights (see `instances`)


# Streams: separate derived keys so that init, training data and evaluation never share numbers.
STREAM_INIT, STREAM_DATA, STREAM_SETS, STREAM_EVAL = 1, 2, 3, 4
STREAM_TRAIN_SET, STREAM_TEST_SET, STREAM_SHUFFLE = 5, 6, 7
_SHARED_STREAMS = (STREAM_EVAL, STREAM_TRAIN_SET, STREAM_TEST_SET)


def instances(config: RunConfig) -> Instances:
    """The instance table.

    Data seeds depend on the restart only, so the configurations of one run share their data events
    (common random numbers, which make comparisons across a grid less noisy). Initial weights are
    independent across configurations: their seed also hashes the configuration's own values (its
    feature probabilities, importance and L1 coefficient), never its position in the run, so a
    configuration gets the same initial weights whichever run or sweep chunk trains it. With
    `train.share_init` every configuration starts from the restart's weights instead.
    """
    restarts = config.train.restarts
    index = range(config.n_instances)
    data_seeds = [derive_seed(config.train.seed, k % restarts) for k in index]
    if config.train.share_init:
        init = data_seeds
    else:
        content = configuration_keys(config)
        init = [derive_seed(config.train.seed, k % restarts, content[k // restarts]) for k in index]
    return Instances([k // restarts for k in index], [k % restarts for k in index], data_seeds, init)


def configuration_keys(config: RunConfig) -> list[int]:
    """A 64-bit key of each configuration's values (float32 bits of p and importance, λ, and a
    per-configuration attack norm)."""
    probs, imps = probability_matrix(config), importance_matrix(config)
    lams = torch.tensor(config.train.l1_per_config(config.data.n_configs), dtype=torch.float32)
    # A per-configuration attack norm is part of a configuration's values (runs with one norm for all
    # configurations keep their keys).
    eps = config.train.adversarial_eps
    extra = torch.tensor(eps, dtype=torch.float32).view(-1, 1) if isinstance(eps, tuple) else \
        torch.zeros(len(lams), 0)
    keys = []
    for p, w, lam, e in zip(probs, imps, lams, extra, strict=True):
        bits = torch.cat([p, w, lam.view(1), e]).view(torch.int32).tolist()
        keys.append(derive_seed(*(b & 0xFFFFFFFF for b in bits)))
    return [k & ((1 << 63) - 1) for k in keys]


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
    """Per-configuration, per-feature probability ``[config, feat]``: the one normalised form of
    `data.feature_probability` (and its `probability_law`)."""
    n, data = config.model.n_features, config.data
    rows = [list(p) if isinstance(p, tuple) else [p] * n for p in data.feature_probability]
    probs = torch.tensor(rows, dtype=torch.float64)
    if data.probability_law != "constant":
        probs = (probs * law_shape(data.probability_law, data.law_parameter, n)).clamp(max=1.0)
    return probs.to(torch.float32)


def law_shape(law: str, parameter: float | None, n: int) -> Tensor:
    """Relative probabilities of the n features under `law`, with mean 1 ``[feat]`` (float64)."""
    i = torch.arange(n, dtype=torch.float64)
    if law == "power_law":
        shape = (i + 1.0) ** -(1.0 if parameter is None else parameter)
    else:
        shape = (0.99 if parameter is None else parameter) ** i
    return shape / shape.mean()


def l1_vector(config: RunConfig, device: torch.device | str = "cpu") -> Tensor:
    """The L1 penalty coefficient of every instance ``[inst]``."""
    per_config = torch.tensor(config.train.l1_per_config(config.data.n_configs), dtype=torch.float32)
    return per_config[instances(config).config_index].to(device)


def feature_spec(config: RunConfig, stream: int = STREAM_DATA, device: str | torch.device = "cpu") -> FeatureSpec:
    """Sampler tensors for every instance of `config`, drawing from `stream`.

    The evaluation stream and the finite datasets key on the run seed alone, so every instance is
    scored (or trained) on the same events; the training stream keys on each instance's seed.
    """
    table = instances(config)
    if stream in _SHARED_STREAMS:  # the same events for every instance (evaluation, finite datasets)
        seeds = [derive_seed(config.train.seed, 1 << 32)] * config.n_instances
    else:
        seeds = table.seeds
    keys = torch.tensor([derive_seed(s, stream) for s in seeds], dtype=torch.int64)
    set_keys = torch.tensor([derive_seed(s, stream, STREAM_SETS) for s in seeds], dtype=torch.int64)
    probability = probability_matrix(config)[table.config_index]
    importance = importance_matrix(config)[table.config_index]
    capacity, thinned = 0, True
    if config.data.sampler == "sparse":
        capacity = sparse_capacity(config.model.n_features, float(probability.max()))
        thinned = bool((probability != probability[:, :1]).any())
    return FeatureSpec(*(t.to(device) for t in (keys, set_keys, probability, importance)), capacity, thinned)


# --- finite datasets --------------------------------------------------------------------------

# Examples generated per call when a dataset is drawn, bounding the int64 hash temporaries.
_DATASET_CHUNK = 8192


def dataset(config: RunConfig, split: str = "train", device: str | torch.device = "cpu") -> Tensor:
    """The finite training (``n_train``) or test (``n_test``) set ``[inst, T, feat]``, regenerated from
    the run seed. The sets depend on the seed alone, not the restart, so best-of-N restarts and the
    configurations of a run see the same events (common random numbers)."""
    return torch.cat(list(_dataset_chunks(config, split, device, draw)), dim=1)


def dataset_codes(config: RunConfig, split: str = "train", device: str | torch.device = "cpu") -> SparseBatch:
    """`dataset` kept sparse, ``[inst, T, K]`` (`data.sampler = 'sparse'`): the same examples, in
    K = `sparse_capacity` slots each instead of n_features columns."""
    chunks = list(_dataset_chunks(config, split, device, draw_codes))
    return SparseBatch(torch.cat([c.index for c in chunks], 1), torch.cat([c.value for c in chunks], 1))


FINITE_CHUNK_ELEMENTS = 1 << 26
"""A sparse finite set is handed out dense in chunks of about this many elements per instance
(256 MB of float32): a set too large to hold dense (10⁵ examples × 10⁴ features) can still be scored."""


def dataset_parts(config: RunConfig, split: str = "train", device: str | torch.device = "cpu",
                  n_inst: int | None = None) -> Iterator[Tensor]:
    """The finite set of `dataset` as dense parts ``[inst, rows, feat]`` in order: the whole set at
    once, or, with the sparse sampler, chunks of `FINITE_CHUNK_ELEMENTS` built from `dataset_codes`.
    `n_inst`: only the first instances."""
    if config.data.sampler != "sparse":
        yield dataset(config, split, device)[:n_inst]
        return
    codes = dataset_codes(config, split, device)
    n = config.model.n_features
    rows = max(1, FINITE_CHUNK_ELEMENTS // n)
    for start in range(0, codes.index.shape[1], rows):
        yield SparseBatch(*(t[:n_inst, start : start + rows] for t in codes)).dense(n)


def _dataset_chunks(config: RunConfig, split: str, device: str | torch.device, sampler):
    data = config.data
    if data.n_train is None:
        raise ValueError("data.n_train is None: the run trains on fresh data, it has no finite dataset")
    size, stream = (data.n_train, STREAM_TRAIN_SET) if split == "train" else (data.n_test, STREAM_TEST_SET)
    spec = feature_spec(config, stream, device)
    for i, start in enumerate(range(0, size, _DATASET_CHUNK)):
        step = torch.tensor(i, dtype=torch.int64, device=device)
        yield sampler(spec, step, min(_DATASET_CHUNK, size - start), data)


def shuffle_keys(config: RunConfig, device: str | torch.device = "cpu") -> Tensor:
    """The key of each instance's minibatch order ``[inst]`` (one per instance: restarts differ)."""
    keys = [derive_seed(s, STREAM_SHUFFLE) for s in instances(config).seeds]
    return torch.tensor(keys, dtype=torch.int64, device=device)


def minibatch(train_set: Tensor | SparseBatch, keys: Tensor, step: Tensor, batch: int) -> Tensor | SparseBatch:
    """Minibatch of step `step` ``[inst, batch, feat]`` (or the same rows of a sparse set): epochs of
    ``T // batch`` steps, each a fresh random permutation of the T examples (the remainder of an
    epoch is left out). The whole set when ``batch >= T``."""
    if isinstance(train_set, SparseBatch):
        rows = _minibatch_rows(keys, step, batch, train_set.index.shape[1])
        return train_set if rows is None else SparseBatch(*(_gather_rows(t, rows) for t in train_set))
    rows = _minibatch_rows(keys, step, batch, train_set.shape[1])
    return train_set if rows is None else _gather_rows(train_set, rows)


def _gather_rows(t: Tensor, rows: Tensor) -> Tensor:
    return t.gather(1, rows.unsqueeze(-1).expand(-1, -1, t.shape[-1]))


def _minibatch_rows(keys: Tensor, step: Tensor, batch: int, size: int) -> Tensor | None:
    """The examples of step `step`'s minibatch ``[inst, batch]``; None for the whole set."""
    if batch >= size:
        return None
    per_epoch = size // batch
    epoch = torch.div(step, per_epoch, rounding_mode="floor")
    order = random_bits(keys, epoch, 1, size).squeeze(1).argsort(dim=-1)  # [inst, T]
    offset = (step - epoch * per_epoch) * batch
    return order.gather(1, (offset + torch.arange(batch, device=keys.device)).expand(order.shape[0], -1))
