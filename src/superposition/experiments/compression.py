"""Appendix, nonlinear compression: two uniform values fit in one number better than linearly.

The paper: "even with epsilons as large as 0.1 and Z values as small as 3 the nonlinear compression
outperforms linear compression such as picking one of the dimensions or using the average". The
scheme, its ramps and its ReLU form are in `superposition.analysis.compression`; the loss is the
MSE per value on x, y ~ U[0, 1) independent (dense: 1 − S = 0), computed by quadrature.

The ReLU construction (2(Z − 1) + 1 neurons on each side, 10 for Z = 3, fewer than the paper's
count of 36) is loaded into `Compressor`, a 2 → h → 1 → h → 2 ReLU autoencoder with a one-number
bottleneck run by the engine as a custom model, and must reproduce the quadrature MSE. The same
architecture with the paper's 36-neuron budget (18 a side) is then trained from random weights
(best of several restarts), next to the paper's linear model n = 2, m = 1: the paper expects
nonlinear schemes "probably difficult to learn ... for gradient descent".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..analysis.compression import (
    LINEAR_MSE,
    ReluConstruction,
    apply_construction,
    compress,
    decompress,
    ideal_mse,
    nonlinear_mse,
    relu_construction,
)
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..data import STREAM_EVAL, feature_spec, sample
from ..figures.compression import compression_figure
from ..models import forward
from ..run import Run
from .base import ClaimResult, Recipe, fmt

SECTION = "Appendix: nonlinear compression"
Z, EPS = 3, 0.1
"""The paper's hardest quoted case."""
WIDTH = 18
"""Neurons on each side of the trained autoencoder: the paper's budget of 36 for Z = 3."""
CURVE_EPS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
CURVE_Z = (2, 3, 4, 5)
EVAL = 1 << 16
"""Samples on which the engine evaluates the construction loaded into `Compressor`."""
AGREE_SE = 3.0
"""The loaded construction's sampled MSE agrees with the quadrature within this many standard errors."""
LINEAR_TOLERANCE = 0.03
"""The trained linear model reaches the best linear MSE 1/24 within this relative margin."""


class Compressor(nn.Module):
    """One instance: x [batch, 2] → ReLU(enc) → t = mid · h [batch, 1] → ReLU(dec t) → out [batch, 2]."""

    def __init__(self, n_features: int, n_hidden: int):
        super().__init__()
        self.enc = nn.Linear(n_features, WIDTH)
        self.mid = nn.Linear(WIDTH, n_hidden, bias=False)
        self.dec = nn.Linear(n_hidden, WIDTH)
        self.out = nn.Linear(WIDTH, n_features)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        t = self.mid(torch.relu(self.enc(x)))
        return self.out(torch.relu(self.dec(t))), t


def configs(quick: bool) -> dict[str, RunConfig]:
    data = DataConfig(feature_probability=(1.0,))
    nonlinear = RunConfig(
        model=ModelConfig(n_features=2, n_hidden=1, custom=f"{__name__}:Compressor"),
        data=data,
        # A few restarts: gradient descent's best chance to find a staircase. The quick size stays below
        # 2000 steps, which trains eagerly: compiling the vmapped custom module costs more than it saves.
        train=TrainConfig(steps=1500 if quick else 20_000, lr=3e-3, restarts=4 if quick else 16,
                          weight_decay=0.0, schedule="cosine"),
        name="compression-nonlinear")
    linear = RunConfig(model=ModelConfig("linear", n_features=2, n_hidden=1), data=data,
                       train=TrainConfig(steps=1000 if quick else 5000, lr=3e-3), name="compression-linear")
    return {"nonlinear": nonlinear, "linear": linear}


def construction_params(c: ReluConstruction, n_inst: int = 1) -> dict[str, Tensor]:
    """The construction as `Compressor` parameters ``[inst, ...]`` (unused neurons zero)."""
    h = c.enc_weight.shape[0]
    if h > WIDTH:
        raise ValueError(f"the construction needs {h} neurons a side, more than Compressor's {WIDTH}")

    def pad(t: Tensor, dim: int) -> Tensor:
        shape = list(t.shape)
        shape[dim] = WIDTH - h
        return torch.cat([t, torch.zeros(shape, dtype=t.dtype)], dim).float()

    params = {"enc.weight": pad(c.enc_weight, 0), "enc.bias": pad(c.enc_bias, 0), "mid.weight": pad(c.mid_weight, 1),
              "dec.weight": pad(c.dec_weight, 0), "dec.bias": pad(c.dec_bias, 0), "out.weight": pad(c.out_weight, 1),
              "out.bias": c.out_bias.float()}
    return {k: v.unsqueeze(0).expand(n_inst, *v.shape).contiguous() for k, v in params.items()}


@dataclass(frozen=True)
class CompressionAnalysis:
    """Quadrature, construction and trained losses (MSE per value)."""

    curve: dict[int, list[float]]
    """Z → nonlinear MSE at each of CURVE_EPS."""
    nonlinear: float
    """The scheme at Z = 3, ε = 0.1 (quadrature)."""
    nonlinear_x_units: float
    """The same with ramps 0.1 wide in x and t instead of per step (the other reading of ε)."""
    ideal: float
    """ε → 0: 1/(24 Z²)."""
    relu_deviation: float
    """Largest |ReLU network − scheme| on random inputs (float64)."""
    relu_engine: tuple[float, float]
    """(MSE, standard error) of the construction loaded into `Compressor`, evaluated by the engine."""
    neurons: int
    """ReLU neurons of the construction (both sides)."""
    trained_nonlinear: float
    """Best trained `Compressor`'s loss."""
    trained_nonlinear_all: list[float]
    """Every restart's loss."""
    trained_linear: float
    """The trained linear n = 2, m = 1 model's loss."""
    trained_folds: tuple[float, float] = (0.0, 0.0)
    """Share of the grid's lines along x and along y on which the best trained model's bottleneck
    t(x, y) turns back at least once (`bottleneck_folds`): 0 for a monotone (e.g. linear) code."""
    construction_folds: tuple[float, float] = (0.0, 0.0)
    """The same for the ReLU construction."""


def _engine_mse(config: RunConfig, params: dict[str, Tensor]) -> tuple[float, float]:
    spec = feature_spec(config, STREAM_EVAL)
    x = sample(spec, torch.tensor(0), EVAL)[:1]
    err = (forward(config.model, params, x).output - x).square().mean(-1).flatten()
    return float(err.mean()), float(err.std() / err.numel() ** 0.5)


FOLD_GRID = 101
"""Points per side of the grid on [0, 1]² on which `bottleneck_folds` reads the trained code."""


def bottleneck_folds(config: RunConfig, params: dict[str, Tensor], grid: int = FOLD_GRID) -> tuple[float, float]:
    """Share of the lines of constant y (along x) and of constant x (along y) on which the first
    instance's one-number code t(x, y) changes direction at least once (steps below 1e-6 of its
    range are ignored): how far a compression is from a monotone map of the square."""
    g = torch.linspace(0.0, 1.0, grid)
    xs, ys = torch.meshgrid(g, g, indexing="ij")
    xy = torch.stack([xs.flatten(), ys.flatten()], -1).unsqueeze(0)
    params = {k: v[:1].float() for k, v in params.items()}
    with torch.no_grad():
        hidden = forward(config.model, params, xy).hidden
    t = hidden.reshape(grid, grid)  # [x, y]
    tol = 1e-6 * float(t.max() - t.min()) + 1e-12

    def share(lines: Tensor) -> float:
        d = torch.diff(lines, dim=-1)
        turns = [bool((s := torch.sign(row[row.abs() > tol]))[1:].ne(s[:-1]).any()) for row in d]
        return sum(turns) / len(turns)

    return share(t.T), share(t)


def analyse(runs: dict[str, Run]) -> CompressionAnalysis:
    c = relu_construction(Z, EPS)
    xy = torch.rand(1 << 15, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    xh, yh = decompress(compress(xy[:, 0], xy[:, 1], Z, EPS), Z, EPS)
    out, _ = apply_construction(c, xy)
    deviation = float(torch.maximum((out[:, 0] - xh).abs(), (out[:, 1] - yh).abs()).max())
    nl = runs["nonlinear"]
    curve = {z: [nonlinear_mse(z, e, grid=256) for e in CURVE_EPS] for z in CURVE_Z}
    return CompressionAnalysis(
        curve=curve, nonlinear=nonlinear_mse(Z, EPS, grid=1024),
        nonlinear_x_units=nonlinear_mse(Z, min(1.0, EPS * Z), grid=1024),
        ideal=ideal_mse(Z), relu_deviation=deviation, relu_engine=_engine_mse(nl.config, construction_params(c)),
        neurons=c.neurons, trained_nonlinear=min(nl.metrics.restart_losses[0]),
        trained_nonlinear_all=list(nl.metrics.restart_losses[0]),
        trained_linear=float(runs["linear"].metrics.final_loss[0]),
        trained_folds=bottleneck_folds(nl.config, nl.params),
        construction_folds=bottleneck_folds(nl.config, construction_params(c)))


def _figures(a: CompressionAnalysis) -> dict[str, object]:
    trained = {f"trained ReLU autoencoder ({2 * WIDTH} neurons)": a.trained_nonlinear,
               "trained linear (n = 2, m = 1)": a.trained_linear}
    return {"compression": compression_figure(CURVE_EPS, a.curve, LINEAR_MSE, trained)}


def beats_linear_claim(a: CompressionAnalysis) -> ClaimResult:
    return ClaimResult(SECTION, "Nonlinear compression of two uniform values into one beats linear compression",
                       "paper: \"even with epsilons as large as 0.1 and Z values as small as 3 the nonlinear "
                       f"compression outperforms linear compression\": MSE at Z = {Z}, ε = {EPS:g} < 1/24 "
                       f"= {fmt(LINEAR_MSE)}",
                       f"nonlinear {fmt(a.nonlinear)} ({fmt(a.nonlinear / LINEAR_MSE)}× linear; ε → 0: "
                       f"{fmt(a.ideal)}); with ramps ε wide in x and t instead of per step {fmt(a.nonlinear_x_units)}",
                       a.nonlinear < LINEAR_MSE)


def construction_claim(a: CompressionAnalysis) -> ClaimResult:
    mse, se = a.relu_engine
    agree = abs(mse - a.nonlinear) <= AGREE_SE * se
    return ClaimResult(SECTION, "A ReLU network implements the nonlinear compression scheme",
                       "the hand-built ReLU autoencoder (two neurons per ramp) equals the scheme (|Δ| < 1e-9) and, run "
                       f"by the engine, reproduces its MSE within {AGREE_SE:g} SE",
                       f"{a.neurons} neurons (the paper counts 36 for Z = 3); max |Δ| {a.relu_deviation:.1e}; engine "
                       f"MSE {fmt(mse)} ± {fmt(se)} vs quadrature {fmt(a.nonlinear)}",
                       a.relu_deviation < 1e-9 and agree)


def learning_claim(a: CompressionAnalysis) -> ClaimResult:
    linear_ok = abs(a.trained_linear / LINEAR_MSE - 1) <= LINEAR_TOLERANCE
    hard = a.trained_nonlinear > a.nonlinear
    cause = ""
    if not hard:
        (tx, ty), (cx, cy) = a.trained_folds, a.construction_folds
        below = sum(v < a.nonlinear for v in a.trained_nonlinear_all)
        ratio = fmt(a.trained_nonlinear / a.nonlinear)
        cause = (f"; cause: gradient descent found a nonlinear code of its own ({ratio}× the construction's MSE; "
                 f"{below} of {len(a.trained_nonlinear_all)} restarts below it): its bottleneck t(x, y) turns back on "
                 f"{100 * tx:.0f}% of the lines along x and {100 * ty:.0f}% along y, the construction's on "
                 f"{100 * cx:.0f}% and {100 * cy:.0f}%")
    return ClaimResult(SECTION, "Gradient descent does not find the nonlinear scheme (\"probably difficult to learn\")",
                       f"the best trained {2 * WIDTH}-neuron ReLU autoencoder stays above the construction's MSE "
                       f"({fmt(a.nonlinear)}); the trained linear model reaches 1/24 within "
                       f"{100 * LINEAR_TOLERANCE:g}%",
                       f"trained ReLU autoencoder {fmt(a.trained_nonlinear)} (restarts "
                       f"{', '.join(fmt(v) for v in a.trained_nonlinear_all)}; "
                       f"{'below' if a.trained_nonlinear < LINEAR_MSE else 'not below'} linear); trained linear "
                       f"{fmt(a.trained_linear)}{cause}",
                       hard and linear_ok)


def _claims(a: CompressionAnalysis) -> list[ClaimResult]:
    return [beats_linear_claim(a), construction_claim(a), learning_claim(a)]


RECIPE = Recipe("compression", SECTION,
                "Two uniform values in one number: the nonlinear scheme beats linear compression; its ReLU form",
                configs, _figures, _claims, analyse=analyse)
