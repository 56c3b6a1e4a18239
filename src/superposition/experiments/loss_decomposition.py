"""Section 3 (demonstrating superposition), "the mathematical understanding": the loss decomposed.

The models are those of the `basic` recipe (n = 20, m = 5, importance 0.7^i, linear and ReLU
output, 1 − S = 1 … 0.001). `superposition.analysis.decomposition` writes their loss as the
paper's terms in closed form:

- linear: feature benefit + interference (+ a bias term), exact at every sparsity. Paper: in the
  linear model superposition never pays, since interference costs as much as the benefit it buys,
  so the trained models have no interference and their loss is all feature benefit.
- ReLU output at high sparsity: the loss on inputs with at most one active feature, as feature
  benefit + interference (after the ReLU) + bias penalty. Paper: the ReLU and a negative bias
  filter out most interference, which is what makes superposition pay; the model gives up some
  feature benefit loss for a small interference and bias cost.

Each closed form is checked against a Monte-Carlo estimate with `superposition.models.forward` on
fresh evaluation data, within 4 standard errors of that estimate. The whole loss the ≤1-sparse
terms are compared with is the stratified estimate of `superposition.estimate` (exact for 0 and 1
active features, importance sampled for the rest, 1% standard error): a plain Monte-Carlo sample
sees only ~26 inputs with two features on at 1 − S = 0.001.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..analysis.decomposition import (
    LinearLossTerms,
    LossEstimate,
    SparseLossTerms,
    linear_loss_terms,
    monte_carlo_loss,
    pooled,
    relu_sparse_loss_terms,
)
from ..config import RunConfig
from ..data import STREAM_EVAL, FeatureSpec, feature_spec, sample
from ..estimate import estimate_loss
from ..figures.robustness import loss_terms_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt
from .runs import basic_configs

SECTION = "3 Demonstrating superposition"
MC_BATCH, MC_BATCHES = 16_384, 8
"""Monte-Carlo sample: 131,072 inputs per model (about 2,600 non-empty ones at 1 − S = 0.001)."""
Z = 4.0
"""Closed form and Monte Carlo agree when they differ by at most Z standard errors."""
REL_SE = 0.01
"""Relative standard error of the stratified whole-loss estimate."""
SPARSE_SHARE = 0.9
"""At the sparsest setting the ≤1-sparse terms must explain at least this share of the measured loss
(inputs with two features on are 1 in 50 non-empty ones at p = 0.001, n = 20, but their loss is larger)."""
SLACK = 0.05
"""Tolerated dip of that share from one sparsity to the next."""
FILTERED = 0.5
"""At the sparsest setting the ReLU model must pay less than this share of the linear-readout interference."""


def configs(quick: bool) -> dict[str, RunConfig]:
    return basic_configs(quick)


def _signed(run: Run) -> bool:
    return run.config.data.signed


def linear_terms(run: Run) -> LinearLossTerms:
    return linear_loss_terms(run.W, run.b, run.importance, run.probability, _signed(run))


def sparse_terms(run: Run) -> SparseLossTerms:
    return relu_sparse_loss_terms(run.W, run.b, run.importance, run.probability, _signed(run))


class Measured(NamedTuple):
    """Monte-Carlo estimates of a run's loss: the whole of it, and the part from inputs with at
    most one feature on."""

    whole: LossEstimate
    sparse: LossEstimate


def measured_loss(run: Run) -> Measured:
    """Monte-Carlo loss of every saved instance on MC_BATCHES × MC_BATCH evaluation inputs."""
    data, kind, spec = run.config.data, run.config.model.kind, eval_spec(run)
    whole, sparse = [], []
    for i in range(MC_BATCHES):
        x = sample(spec, torch.tensor(1000 + i), MC_BATCH, data.distribution, data.set_size, data.signed)
        whole.append(monte_carlo_loss(kind, run.params, x, run.importance))
        sparse.append(monte_carlo_loss(kind, run.params, x, run.importance, max_active=1))
    return Measured(pooled(whole), pooled(sparse))


def stratified_loss(run: Run) -> LossEstimate:
    """The whole expected loss of every saved instance, stratified by the number of active features
    (`superposition.estimate.estimate_loss`, standard error ≤ `REL_SE`)."""
    from ..train import saved_instances_config

    est = estimate_loss(saved_instances_config(run), run.params, rel_se=REL_SE)
    return LossEstimate(est.mean, est.se)


def eval_spec(run: Run) -> FeatureSpec:
    """The run's evaluation stream for its saved instances (every instance sees the same events)."""
    full = feature_spec(run.config, STREAM_EVAL)
    k = run.n_instances
    return FeatureSpec(full.keys[:k], full.set_keys[:k], run.probability, run.importance)


def _probabilities(run: Run) -> list[float]:
    return [float(p) for p in run.metrics.feature_probability]


@dataclass(frozen=True)
class Analysis:
    """The closed-form terms and the measured losses of the linear and ReLU runs."""

    probabilities: list[float]
    linear: LinearLossTerms
    sparse: SparseLossTerms
    linear_measured: Measured
    """Monte-Carlo losses of the linear run (checks the closed form)."""
    relu_measured: Measured
    """Monte-Carlo losses of the ReLU run (the ≤1-sparse part checks the closed form)."""
    linear_loss: LossEstimate
    """Stratified whole loss of the linear run."""
    relu_loss: LossEstimate
    """Stratified whole loss of the ReLU run."""


def analyse(runs: dict[str, Run]) -> Analysis:
    lin, relu = runs["linear"], runs["relu_output"]
    return Analysis(_probabilities(relu), linear_terms(lin), sparse_terms(relu), measured_loss(lin),
                    measured_loss(relu), stratified_loss(lin), stratified_loss(relu))


def _figures(a: Analysis) -> dict[str, object]:
    lt, st = a.linear, a.sparse
    terms = {
        "linear": {"feature benefit": lt.feature_benefit, "interference": lt.interference, "bias": lt.bias},
        "ReLU output": {"feature benefit (≤1 on)": st.feature_benefit,
                        "interference after ReLU (≤1 on)": st.interference,
                        "bias penalty (≤1 on)": st.bias_penalty},
    }
    terms["ReLU output"]["≥2 features on (measured)"] = a.relu_loss.mean - st.total
    measured = {"linear": _pair(a.linear_loss), "ReLU output": _pair(a.relu_loss)}
    references = {"ReLU output": {"interference of a linear readout": st.linear_interference}}
    fig = loss_terms_figure(a.probabilities, terms, measured, references=references)
    return {"loss_decomposition": fig}


def _pair(estimate: LossEstimate) -> tuple[torch.Tensor, torch.Tensor]:
    return estimate.mean, estimate.stderr


def agreement(closed: torch.Tensor, estimate: LossEstimate) -> torch.Tensor:
    """|closed form − Monte Carlo| in standard errors, ``[inst]`` (0 where both are exactly 0)."""
    gap = (closed - estimate.mean).abs()
    return torch.where(gap == 0, 0.0, gap / estimate.stderr.clamp_min(1e-15))


def linear_exact_claim(terms: LinearLossTerms, estimate: LossEstimate) -> ClaimResult:
    z = agreement(terms.total, estimate)
    return ClaimResult(SECTION, "The linear model's loss is feature benefit + interference (+ bias), in closed form",
                       f"closed form within {Z:g} standard errors of the Monte-Carlo loss at every sparsity",
                       f"worst gap {fmt(float(z.max()))} standard errors", bool((z <= Z).all()))


def linear_no_interference_claim(terms: LinearLossTerms) -> ClaimResult:
    share = (terms.interference + terms.bias) / terms.total
    return ClaimResult(SECTION, "The linear model pays no interference: superposition never pays without a "
                       "nonlinearity, so its loss is all feature benefit",
                       "interference + bias < 1% of the loss at every sparsity",
                       f"largest share {fmt(100 * float(share.max()))}%", bool((share < 0.01).all()))


def sparse_exact_claim(terms: SparseLossTerms, estimate: LossEstimate) -> ClaimResult:
    z = agreement(terms.total, estimate)
    return ClaimResult(SECTION, "ReLU output: on inputs with at most one active feature the loss is feature benefit "
                       "+ interference + bias penalty, in closed form",
                       f"closed form within {Z:g} standard errors of the Monte-Carlo loss of those inputs, "
                       "at every sparsity", f"worst gap {fmt(float(z.max()))} standard errors", bool((z <= Z).all()))


def sparse_approximation_claim(terms: SparseLossTerms, estimate: LossEstimate, p: float) -> ClaimResult:
    """Instances in order of increasing sparsity, the last the sparsest."""
    shares = (terms.total / estimate.mean).tolist()
    noise = (Z * estimate.stderr / estimate.mean).tolist()
    rising = all(b >= a - SLACK - nb for a, b, nb in zip(shares, shares[1:], noise[1:], strict=False))
    held = rising and shares[-1] >= SPARSE_SHARE
    return ClaimResult(SECTION, "At high sparsity the ReLU model's loss is its 1-sparse loss plus the bias penalty",
                       f"the share of the measured loss these terms explain rises with sparsity (±{100 * SLACK:g}% "
                       f"+ {Z:g} standard errors) to ≥ {100 * SPARSE_SHARE:g}% at 1 − S = {p:g}",
                       f"shares {', '.join(f'{100 * s:.1f}%' for s in shares)}", held)


def filtering_claim(terms: SparseLossTerms, p: float) -> ClaimResult:
    kept = float(terms.interference[-1] / terms.linear_interference[-1])
    return ClaimResult(SECTION, "The ReLU output and its negative biases filter out most interference",
                       f"at 1 − S = {p:g}, interference after the ReLU < {100 * FILTERED:g}% of what a linear "
                       "readout of the same W would pay", f"{100 * kept:.1f}%", kept < FILTERED)


def tradeoff_claim(linear: LinearLossTerms, relu: SparseLossTerms, relu_loss: LossEstimate, p: float) -> ClaimResult:
    lin_benefit, relu_benefit = float(linear.feature_benefit[-1]), float(relu.feature_benefit[-1])
    cost = float(relu.interference[-1])
    lin_loss, loss = float(linear.total[-1]), float(relu_loss.mean[-1])
    held = relu_benefit < lin_benefit and cost > 0 and loss < lin_loss
    return ClaimResult(SECTION, "Superposition trades feature benefit for interference: the ReLU model represents "
                       "more features and pays some interference, for a lower loss",
                       f"at 1 − S = {p:g}: ReLU feature-benefit term < linear's, interference > 0, "
                       "total loss < linear's",
                       f"feature benefit {fmt(relu_benefit)} vs {fmt(lin_benefit)}, interference {fmt(cost)}, "
                       f"loss {fmt(loss)} vs {fmt(lin_loss)}", held)


def _claims(a: Analysis) -> list[ClaimResult]:
    lt, st, sparsest = a.linear, a.sparse, a.probabilities[-1]
    return [linear_exact_claim(lt, a.linear_measured.whole), linear_no_interference_claim(lt),
            sparse_exact_claim(st, a.relu_measured.sparse), sparse_approximation_claim(st, a.relu_loss, sparsest),
            filtering_claim(st, sparsest), tradeoff_claim(lt, st, a.relu_loss, sparsest)]


RECIPE = Recipe("loss-decomposition", SECTION,
                "the linear and ReLU models' loss as feature benefit, interference and bias terms",
                configs, _figures, _claims, analyse=analyse)
