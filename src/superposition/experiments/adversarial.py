"""Section 7 (superposition and adversarial robustness): superposition makes models vulnerable.

ReLU output models, n = 20 features in m = 5 dimensions, all of importance 1 (as in the paper's
feature-dimensionality experiments: with equal importance superposition grows to several
features per dimension, where a decaying importance stops it near two), across sparsity.

Each evaluation input is attacked with the analytic optimal L2 attack of every feature (row i of
WᵀW, `superposition.attacks`) at norm 0.1 × the mean input norm, and the most harmful one is
kept; vulnerability is the mean loss increase it causes (`superposition.analysis.adversarial`).
It is reported relative to the best model without superposition on the same inputs and attack
norm: m features on orthogonal axes, the others dropped (the dense model's solution). Paper:
vulnerability rises more than 3× as superposition forms and tracks the features per dimension
‖W‖_F² / m.

The same grid is trained adversarially (`TrainConfig.adversarial_eps` = 0.1: each example is
attacked the same way during training and must still be reconstructed): fewer features per
dimension and less vulnerability than standard training.

The attack norm shrinks with the inputs (most inputs are empty at high sparsity), and a negative
bias then absorbs it entirely on empty inputs: the grid stops at 1 − S = 0.02 (0.4 active features
per input on average), where the paper's larger models still have several active features.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..analysis.adversarial import (
    RelativeVulnerability,
    features_per_dimension,
    log_correlation,
    relative_vulnerability,
)
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..data import sample
from ..figures.robustness import adversarial_figure
from ..run import Run
from .base import ClaimResult, Recipe, fmt
from .loss_decomposition import eval_spec

SECTION = "7 Superposition and adversarial robustness"
EPS = 0.1
"""Attack norm as a fraction of the mean input norm (the paper's)."""
PROBABILITIES = (1.0, 0.3, 0.1, 0.05, 0.03, 0.02)
QUICK_PROBABILITIES = (1.0, 0.3, 0.1, 0.03)
EVAL_BATCH = 4096
RISE = 3.0
"""Paper: vulnerability rises more than 3× as superposition forms."""
DENSE_RANGE = (0.8, 1.25)
"""Without superposition (dense data) the model is as vulnerable as the reference, within this range."""
TRACKING = 0.9
"""Pearson correlation of log vulnerability and log features per dimension across sparsity."""
REDUCTION = 0.05
"""Adversarial training: at least this relative reduction of the mean features per dimension over p < 1."""
SLACK = 0.02
"""...and at no p < 1 more than this much higher (training noise). The attack shrinks with the inputs,
so adversarial training changes the sparsest models least."""


def configs(quick: bool) -> dict[str, RunConfig]:
    standard = RunConfig(
        model=ModelConfig("relu_output", n_features=20, n_hidden=5),
        data=DataConfig(feature_probability=QUICK_PROBABILITIES if quick else PROBABILITIES),
        # The adversarial step runs n forward passes per example: its steps are the expensive ones.
        train=TrainConfig(steps=2000 if quick else 10_000),
        name="adversarial-standard",
    )
    adversarial = replace(standard, train=replace(standard.train, adversarial_eps=EPS), name="adversarial-trained")
    return {"standard": standard, "adversarial": adversarial}


def measure(run: Run) -> RelativeVulnerability:
    """Vulnerability of every saved instance and of its no-superposition reference, on EVAL_BATCH
    fresh evaluation inputs."""
    data = run.config.data
    x = sample(eval_spec(run), torch.tensor(1000), EVAL_BATCH, data.distribution, data.set_size, data.signed)
    return relative_vulnerability(run.config.model.kind, run.params, x, run.importance, run.probability, EPS,
                                  data.signed)


def _probabilities(run: Run) -> list[float]:
    return [float(p) for p in run.metrics.feature_probability]


def _label(run: Run) -> str:
    eps = run.config.train.adversarial_eps
    return f"adversarial training (ε = {eps:g})" if eps > 0 else "standard training"


def _figures(runs: dict[str, Run]) -> dict[str, object]:
    ordered = [runs["standard"], runs["adversarial"]]
    vulnerability = {_label(r): measure(r).ratio for r in ordered}
    fpd = {_label(r): features_per_dimension(r.W) for r in ordered}
    return {"adversarial": adversarial_figure(_probabilities(ordered[0]), vulnerability, fpd)}


def rise_claim(ratio: torch.Tensor, probabilities: list[float]) -> ClaimResult:
    """``ratio [inst]``: relative vulnerability, the first instance dense (p = 1)."""
    dense, peak = float(ratio[0]), float(ratio[1:].max())
    at = probabilities[1 + int(ratio[1:].argmax())]
    held = DENSE_RANGE[0] <= dense <= DENSE_RANGE[1] and peak >= RISE * dense
    return ClaimResult(SECTION, "Adversarial vulnerability rises sharply as superposition forms",
                       f"dense: {DENSE_RANGE[0]:g}–{DENSE_RANGE[1]:g}× the no-superposition model; "
                       f"rises > {RISE:g}× that with sparsity",
                       f"dense {fmt(dense)}×, peak {fmt(peak)}× at 1 − S = {at:g} "
                       f"({fmt(peak / dense)}× the dense value)",
                       held)


def tracking_claim(ratio: torch.Tensor, fpd: torch.Tensor) -> ClaimResult:
    corr = log_correlation(ratio, fpd)
    return ClaimResult(SECTION, "Vulnerability tracks the features per dimension ‖W‖_F² / m",
                       f"Pearson correlation of their logs across sparsity ≥ {TRACKING:g}",
                       f"r = {corr:.3f}; features per dimension {', '.join(fmt(float(f)) for f in fpd)}",
                       corr >= TRACKING)


def training_claim(standard: tuple[torch.Tensor, torch.Tensor], adversarial: tuple[torch.Tensor, torch.Tensor]
                   ) -> ClaimResult:
    """Each argument: (features per dimension ``[inst]``, relative vulnerability ``[inst]``); instance 0 dense."""
    (fpd_std, vul_std), (fpd_adv, vul_adv) = standard, adversarial
    reduction = 1 - float(fpd_adv[1:].mean() / fpd_std[1:].mean())
    never_more = bool((fpd_adv[1:] <= fpd_std[1:] * (1 + SLACK)).all())
    safer = float(vul_adv[1:].mean()) < float(vul_std[1:].mean())
    return ClaimResult(SECTION, "Adversarial training reduces superposition (and vulnerability)",
                       f"over 1 − S < 1: features per dimension never more than {100 * SLACK:g}% higher and on "
                       f"average ≥ {100 * REDUCTION:g}% lower; mean vulnerability lower",
                       f"features per dimension {100 * reduction:.1f}% lower on average "
                       f"({fmt(float(fpd_std[1:].mean()))} → {fmt(float(fpd_adv[1:].mean()))}), never higher: "
                       f"{never_more}; mean vulnerability {fmt(float(vul_std[1:].mean()))} → "
                       f"{fmt(float(vul_adv[1:].mean()))}",
                       reduction >= REDUCTION and never_more and safer)


def _claims(runs: dict[str, Run]) -> list[ClaimResult]:
    std, adv = runs["standard"], runs["adversarial"]
    ratio_std, ratio_adv = measure(std).ratio, measure(adv).ratio
    fpd_std, fpd_adv = features_per_dimension(std.W), features_per_dimension(adv.W)
    return [rise_claim(ratio_std, _probabilities(std)), tracking_claim(ratio_std, fpd_std),
            training_claim((fpd_std, ratio_std), (fpd_adv, ratio_adv))]


RECIPE = Recipe("adversarial", SECTION,
                "20 features in 5 dimensions: superposition makes models vulnerable; adversarial training reduces it",
                configs, _figures, _claims)
