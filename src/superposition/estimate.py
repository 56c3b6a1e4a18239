"""Expected loss of trained weights, with its standard error small enough to rank models.

A plain Monte-Carlo loss on a few thousand inputs is noisy where features are rare: at p = 0.001
most inputs are all-zero, and the few that are not carry the loss (10-20% standard error at
8,192 samples). For independent features the expectation is split by the number of active
features instead:

    E[ℓ] = P(none) ℓ(0) + Σ_i P(only i) E_v[ℓ(v e_i)] + E[ℓ · 1{two or more}]

The first two terms are exact up to quadrature (the value law integrated at `NODES` equal-
probability nodes: midpoints of its quantiles, both signs when signed); the last is importance
sampled from a proposal in which every feature is on with probability at least ``3 / n``, so that
draws with two or more features on are common, each weighted by its likelihood ratio. The
standard error is that of the last term; samples double until it is at most `rel_se` of the
estimate (or `max_samples` is reached). All instances see the same draws (common random
numbers). Other distributions (sets, exactly-k, registered samplers, normalised inputs) are
estimated by plain Monte Carlo with the same stopping rule, so where their events are rare the
sample cap binds and the reported standard error is larger; a finite dataset's loss is exact.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .config import PRESETS, RunConfig
from .data import STREAM_EVAL, dataset_parts, draw, feature_spec
from .models import Params, forward, target
from .registry import LOSSES

NODES = 64
FIRST_SAMPLES = 8192
CHUNK = 1 << 22  # elements of x per forward pass


class LossEstimate(NamedTuple):
    """Per-instance expected loss and its standard error, both ``[inst]`` float64."""

    mean: Tensor
    se: Tensor


@torch.no_grad()
def estimate_loss(config: RunConfig, params: Params, *, rel_se: float = 0.01, max_samples: int = 1 << 19,
                  seed: int = 0) -> LossEstimate:
    """The expected loss of every instance of `config` with weights `params` (see the module doc).

    Arguments:
        rel_se: stop drawing samples once every instance's standard error is at most this fraction
            of its estimate.
        max_samples: but never draw more than this many per instance.
        seed: seed of the sampling draws (the same for every instance).
    """
    data = config.data
    if data.n_train is not None:
        importance = _importance(config, params)
        loss = torch.cat([_per_example_loss(config, params, x, importance)
                          for x in dataset_parts(config, "train", _device(params))], dim=1)
        return LossEstimate(loss.mean(1), torch.zeros_like(loss[:, 0]))
    if data.distribution == "independent" and not data.normalize:
        return _stratified(config, params, rel_se, max_samples, seed)
    return _monte_carlo(config, params, rel_se, max_samples)


def _device(params: Params) -> torch.device:
    return next(iter(params.values())).device


def _per_example_loss(config: RunConfig, params: Params, x: Tensor, importance: Tensor | None = None) -> Tensor:
    """ℓ of each example ``[inst, batch]`` (float64), with the run's loss function, in chunks.
    `importance` ``[inst, feat]``: that of the instances in `params` (default: every instance's)."""
    inst, batch, n = x.shape
    importance = _importance(config, params) if importance is None else importance
    loss_fn = LOSSES.get(config.train.loss)
    rows = max(1, CHUNK // max(1, inst * n))
    parts = []
    for lo in range(0, batch, rows):
        xs = x[:, lo : lo + rows]
        out = forward(config.model, params, xs).output
        b = xs.shape[1]
        goal = target(config.target, xs)
        if config.train.loss == "mse":  # the built-in loss per example, without repeating the importance
            per = (importance.unsqueeze(1) * (out - goal).square()).mean(-1)
        else:  # every example its own "instance", so any loss function gives per-example values
            per = loss_fn(out.reshape(inst * b, 1, n), goal.reshape(inst * b, 1, n), importance.repeat_interleave(b, 0))
        parts.append(per.view(inst, b).double())
    return torch.cat(parts, dim=1)


def _importance(config: RunConfig, params: Params) -> Tensor:
    return feature_spec(config, device=_device(params)).importance


def _stratified(config: RunConfig, params: Params, rel_se: float, max_samples: int, seed: int) -> LossEstimate:
    device = _device(params)
    p = feature_spec(config, device=device).probability.double()  # [inst, feat]
    inst, n = p.shape
    none = (1 - p).prod(-1)
    importance = _importance(config, params)
    zero = _per_example_loss(config, params, torch.zeros(inst, 1, n, device=device), importance)[:, 0]
    exact = none * zero + (_only_one(p) * _single_feature_losses(config, params, importance)).sum(-1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = p.clamp(min=min(1.0, 3.0 / n))
    rounds = _Rounds(inst, device, rel_se, max_samples)
    while not rounds.finished:
        # only the instances still sampling are evaluated: the others' estimates are frozen
        idx = (~rounds.done).nonzero().squeeze(1)
        sub = {name: value[idx] for name, value in params.items()}
        rounds.add(_importance_sampled(config, sub, p[idx], q[idx], importance[idx], rounds.next_draws, gen),
                   offset=exact, index=idx)
    return LossEstimate(exact + rounds.mean, rounds.se)


class _Rounds:
    """Sampling rounds that double the draws, each instance stopping on its own: once its standard
    error meets the target (or the cap is reached) its estimate is frozen, so an instance's result
    depends only on its own losses, never on the other instances it is estimated beside."""

    def __init__(self, inst: int, device: torch.device, rel_se: float, max_samples: int):
        zeros = lambda: torch.zeros(inst, dtype=torch.float64, device=device)  # noqa: E731
        self.sums, self.squares, self.mean, self.se = zeros(), zeros(), zeros(), zeros()
        self.done = torch.zeros(inst, dtype=torch.bool, device=device)
        self.count, self.rel_se, self.max_samples = 0, rel_se, max_samples

    @property
    def next_draws(self) -> int:
        return FIRST_SAMPLES if self.count == 0 else self.count

    @property
    def finished(self) -> bool:
        return bool(self.done.all())

    def add(self, values: Tensor, offset: Tensor | float = 0.0, index: Tensor | None = None) -> None:
        """One round's per-example values ``[inst, draws]``, or only those of the instances `index`
        (the finished ones need none); `offset` is added to the mean for the test."""
        if index is None:
            self.sums += values.sum(1)
            self.squares += (values**2).sum(1)
        else:
            self.sums.index_add_(0, index, values.sum(1))
            self.squares.index_add_(0, index, (values**2).sum(1))
        self.count += values.shape[1]
        mean = self.sums / self.count
        se = ((self.squares / self.count - mean**2).clamp(min=0) / max(1, self.count - 1)).sqrt()
        open_ = ~self.done
        self.mean = torch.where(open_, mean, self.mean)
        self.se = torch.where(open_, se, self.se)
        met = se <= self.rel_se * (mean + offset).abs()
        self.done = self.done | met | (self.count >= self.max_samples)


def _only_one(p: Tensor) -> Tensor:
    """P(exactly feature i on) ``[inst, feat]``: p_i Π_{j≠i} (1 − p_j), stable where some p_j = 1."""
    off = 1 - p
    before = torch.cumprod(torch.cat([torch.ones_like(off[:, :1]), off[:, :-1]], 1), 1)
    after = torch.cumprod(torch.cat([torch.ones_like(off[:, :1]), off.flip(1)[:, :-1]], 1), 1).flip(1)
    return p * before * after


def _nodes(config: RunConfig, device: torch.device) -> Tensor:
    """`NODES` equal-probability values of the magnitude law (both signs when signed) ``[nodes]``."""
    u = (torch.arange(NODES, dtype=torch.float64, device=device) + 0.5) / NODES
    law = config.data.magnitude
    if law == "uniform":
        v = u
    elif law == "constant":
        v = torch.ones(1, dtype=torch.float64, device=device)
    elif law == "exponential":
        v = -torch.log1p(-u)
    else:  # folded normal: the quantile of |N(0, 1)| is Φ⁻¹((1 + u) / 2)
        v = math.sqrt(2.0) * torch.erfinv(u)
    return torch.cat([v, -v]) if config.data.signed else v


CLOSED_FORM_KINDS = ("linear", "relu_output", "relu_hidden")


def _single_feature_losses(config: RunConfig, params: Params, importance: Tensor) -> Tensor:
    """E_v[ℓ(v e_i)] for every feature ``[inst, feat]``: in closed form for the tied paper models on
    unsigned U[0, 1) values with the MSE loss (`_closed_single_feature_losses`), else by quadrature
    over `_nodes`."""
    data, kind = config.data, config.model.fused_kind
    if (kind in CLOSED_FORM_KINDS and config.target == PRESETS[kind].target and config.train.loss == "mse"
            and data.magnitude == "uniform" and not data.signed):
        return _closed_single_feature_losses(kind, params, importance)
    device = _device(params)
    v = _nodes(config, device).float()
    inst, n = importance.shape
    features = max(1, CHUNK // max(1, inst * n * len(v)))
    out = []
    for lo in range(0, n, features):
        idx = torch.arange(lo, min(n, lo + features), device=device)
        x = torch.zeros(len(idx), len(v), n, device=device)
        x[torch.arange(len(idx), device=device), :, idx] = v  # row (i, q) is v_q e_i
        xs = x.reshape(1, -1, n).expand(inst, -1, -1)
        out.append(_per_example_loss(config, params, xs, importance).view(inst, len(idx), len(v)).mean(-1))
    return torch.cat(out, dim=1)


def _closed_single_feature_losses(kind: str, params: Params, importance: Tensor) -> Tensor:
    """`_single_feature_losses` exactly, for v ~ U[0, 1) and a tied model whose hidden layer is
    linear in v ≥ 0: the input v e_i gives outputs o_j = act(a_ij v + b_j) with a_ij = W_j · e(W_i)
    (e: identity, or ReLU for relu_hidden), so ℓ is a sum over j of integrals of piecewise
    quadratics in v, taken analytically (`_relu_moments`). Costs n² (one Gram matrix) instead of
    n² × `NODES` forward passes: at 10,000 features the quadrature took 89 s on one core."""
    w, b = params["W"].double(), params["b"].double()  # [inst, feat, hidden], [inst, feat]
    enc = torch.relu(w) if kind == "relu_hidden" else w
    imp = importance.double()
    inst, n, _ = w.shape
    rows = max(1, CHUNK // max(1, inst * n))
    out = []
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        a = torch.bmm(enc[:, lo:hi], w.transpose(1, 2))  # [inst, rows, feat]: a_ij
        square, _ = _relu_moments(a, b.unsqueeze(1), relu=kind != "linear")
        total = (imp.unsqueeze(1) * square).sum(-1)  # Σ_j imp_j E[o_j²]
        i = torch.arange(lo, hi, device=w.device)
        a_ii = a[:, i - lo, i]  # [inst, rows]
        sq_ii, cross_ii = _relu_moments(a_ii, b[:, lo:hi], relu=kind != "linear")
        # feature i's own term: E[(o_i − v)²] = E[o_i²] − 2 E[v o_i] + 1/3 in place of E[o_i²]
        total = total + imp[:, lo:hi] * (-2.0 * cross_ii + 1.0 / 3.0)
        out.append(total / n)
    return torch.cat(out, dim=1)


def _relu_moments(a: Tensor, b: Tensor, relu: bool) -> tuple[Tensor, Tensor]:
    """E[o²] and E[v·o] for o = act(a v + b), v ~ U[0, 1), act the identity or ReLU (float64):
    integrals of (a v + b)² and v (a v + b) over the part [l, u] of [0, 1] where the output is on."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    if relu:
        root = torch.where(a != 0, -b / torch.where(a != 0, a, one), zero).clamp(0.0, 1.0)
        on_all = (a == 0) & (b > 0)
        lower = torch.where(a > 0, root, zero)
        upper = torch.where(a < 0, root, torch.where((a > 0) | on_all, one, zero))
    else:
        lower, upper = zero, one
    p1, p2, p3 = upper - lower, (upper**2 - lower**2) / 2, (upper**3 - lower**3) / 3
    square = a * a * p3 + 2 * a * b * p2 + b * b * p1
    cross = a * p3 + b * p2
    return square, cross


def _importance_sampled(config: RunConfig, params: Params, p: Tensor, q: Tensor, importance: Tensor, draws: int,
                        gen: torch.Generator) -> Tensor:
    """w(s) ℓ(x) 1{|s| ≥ 2} for `draws` inputs per instance drawn with on-probabilities q ``[inst, draws]``
    (in slices of draws of about `CHUNK` elements, whatever the number of instances)."""
    inst, n = p.shape
    device = p.device
    gate = torch.rand(draws, n, generator=gen).to(device)
    values = _values(config, torch.rand(draws, n, generator=gen), torch.rand(draws, n, generator=gen)).to(device)
    log_on, log_off = (p / q).log().unsqueeze(1), ((1 - p) / (1 - q)).log().unsqueeze(1)
    rows = max(1, CHUNK // max(1, inst * n))
    parts = []
    for lo in range(0, draws, rows):
        on = gate[lo : lo + rows].unsqueeze(0) < q.unsqueeze(1)  # [inst, rows, feat], the same uniforms for all
        log_w = torch.where(on, log_on, log_off).sum(-1)
        x = torch.where(on, values[lo : lo + rows].unsqueeze(0), 0.0).float()
        loss = _per_example_loss(config, params, x, importance)
        parts.append(torch.where(on.sum(-1) >= 2, log_w.exp() * loss, 0.0))
    return torch.cat(parts, dim=1)


def _values(config: RunConfig, u: Tensor, sign: Tensor) -> Tensor:
    law = config.data.magnitude
    if law == "uniform":
        v = u
    elif law == "constant":
        v = torch.ones_like(u)
    elif law == "exponential":
        v = -torch.log1p(-u)
    else:
        v = math.sqrt(2.0) * torch.erfinv(u)
    return torch.where(sign < 0.5, -v, v) if config.data.signed else v


def _monte_carlo(config: RunConfig, params: Params, rel_se: float, max_samples: int) -> LossEstimate:
    device = _device(params)
    spec = feature_spec(config, STREAM_EVAL, device)
    rounds, step = _Rounds(spec.probability.shape[0], device, rel_se, max_samples), 0
    while not rounds.finished:
        losses = []
        for _ in range(0, rounds.next_draws, config.train.batch_size):
            x = draw(spec, torch.tensor(step, dtype=torch.int64, device=device), config.train.batch_size, config.data)
            losses.append(_per_example_loss(config, params, x))
            step += 1
        rounds.add(torch.cat(losses, dim=1))
    return LossEstimate(rounds.mean, rounds.se)
