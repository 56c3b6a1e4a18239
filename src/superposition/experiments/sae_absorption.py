"""Follow-up: feature absorption, the best-known failure of SAEs on toy data (Chanin et al. 2024,
"A is for Absorption").

Hierarchical features: 10 groups of a parent and 3 children (40 orthonormal directions in 48
dimensions), each parent on with probability 0.15, each child on with probability 0.3 when its
parent is (and never without it); active features have value 1. An SAE rewarded for sparsity can
fold the parent's direction into each child's latent and drop the parent's latent whenever a
child is on: one latent instead of two. We measure the absorption rate P(parent latent silent | a
child on), where the parent latent is the dictionary element closest to the parent's direction,
for ReLU + L1 SAEs over α and TopK SAEs over k, each with G and 2G latents.

Claims (thresholds fixed before the first run): absorption rises with α and as k falls, it is
absent when the sparsity pressure is weak, and doubling the dictionary does not remove it.
The data are small, so the recipe has one size (quick and paper size are the same).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..figures.sae import absorption_figure
from ..run import Run
from ..sae import DictionaryConfig, SAEConfig, SourceConfig, build_source, stored_or_trained
from ..sae.evaluate import evaluate_absorption
from .base import ClaimResult, Recipe, fmt

SECTION = "Follow-up 2: sparse autoencoders on toy models (Sharkey et al. 2022)"
DATA = DictionaryConfig(n_features=40, n_hidden=48, n_active=1.5, decay=1.0, structure="hierarchy", n_children=3,
                        child_probability=0.3, magnitude="one", orthogonal=True)
ALPHAS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
KS = (1, 2, 3, 4, 6)
SIZES = (40, 80)
RISE = 0.2
"""Absorption at the strongest sparsity pressure exceeds the weakest by at least this."""
ABSENT = 0.1
"""At the weakest pressure (smallest α, largest k), absorption at most this ..."""
RECALL = 0.9
"""... and the parent latent fires on at least this share of parent-only examples."""
WIDE = 0.2
"""With 2G latents, the largest absorption rate over α is still at least this."""


def configs(quick: bool) -> dict[str, RunConfig]:
    return {}  # generated data only: no toy-model run


def sae_configs() -> dict[str, SAEConfig]:
    source = SourceConfig(dictionary=DATA)
    common = dict(n_latents=SIZES, steps=3000, batch_size=256, lr=3e-3, source=source)
    return {"relu": SAEConfig(architecture="relu", l1_coefficient=ALPHAS, name="absorption-relu", **common),
            "topk": SAEConfig(architecture="topk", k=KS, l1_coefficient=(0.0,), name="absorption-topk", **common)}


@dataclasses.dataclass(frozen=True)
class Result:
    rate: dict[str, np.ndarray]  # architecture → [size, knob]
    recall: dict[str, np.ndarray]  # architecture → [size, knob]


def analyse(runs: dict[str, Run] | None = None, store: Path | None = None) -> Result:
    """The recipe's analysis stage: absorption of SAEs on the hierarchy dictionary (the recipe trains
    no toy model, so `runs` is empty); the SAEs are kept under `store`, one run directory per
    architecture, and read back on a rerun."""
    rate, recall = {}, {}
    for arch, config in sae_configs().items():
        sae = stored_or_trained(config, None if store is None else store / f"sae_{arch}")
        scores = evaluate_absorption(sae, build_source(config))
        rate[arch] = scores.rate.numpy().reshape(len(SIZES), -1)
        recall[arch] = scores.parent_recall.numpy().reshape(len(SIZES), -1)
    return Result(rate, recall)


def _figures(res: Result) -> dict[str, object]:
    lines = {arch: {f"{n} latents (R = {n / DATA.n_features:g})": res.rate[arch][i].tolist()
                    for i, n in enumerate(SIZES)} for arch in res.rate}
    return {"sae_absorption": absorption_figure({
        "ReLU + L1: L1 coefficient α": (list(ALPHAS), lines["relu"], True),
        "TopK: k (active latents per example)": (list(KS), lines["topk"], False)})}


def _rates(values: np.ndarray) -> str:
    return ", ".join(fmt(float(v)) for v in values)


def rise_claims(res: Result) -> list[ClaimResult]:
    """The parent recall is reported beside the rate: where it is low the parent latent has stopped
    firing altogether (it died or merged), which the rate alone cannot tell from absorption."""
    relu, topk = res.rate["relu"][0], res.rate["topk"][0]
    return [
        ClaimResult(SECTION, "Absorption rises with the L1 coefficient",
                    f"G latents: rate at α = {ALPHAS[-1]:g} ≥ rate at α = {ALPHAS[0]:g} + {RISE:g}",
                    f"rate over α {_rates(relu)} (parent recall {_rates(res.recall['relu'][0])})",
                    float(relu[-1]) >= float(relu[0]) + RISE),
        ClaimResult(SECTION, "Absorption rises as k falls",
                    f"G latents: rate at k = {KS[0]} ≥ rate at k = {KS[-1]} + {RISE:g}",
                    f"rate over k = {', '.join(map(str, KS))}: {_rates(topk)} (parent recall "
                    f"{_rates(res.recall['topk'][0])})", float(topk[0]) >= float(topk[-1]) + RISE),
    ]


def absent_claim(res: Result) -> ClaimResult:
    rate, recall = float(res.rate["relu"][0, 0]), float(res.recall["relu"][0, 0])
    return ClaimResult(SECTION, "With weak sparsity pressure the parent keeps its own latent",
                       f"G latents, α = {ALPHAS[0]:g}: absorption ≤ {ABSENT:g}, parent recall ≥ {RECALL:g}",
                       f"absorption {fmt(rate)}, recall {fmt(recall)}", rate <= ABSENT and recall >= RECALL)


def wide_claim(res: Result) -> ClaimResult:
    wide = res.rate["relu"][1]
    return ClaimResult(SECTION, "A wider dictionary does not remove absorption",
                       f"2G latents: largest rate over α ≥ {WIDE:g}",
                       f"rate over α {_rates(wide)} (parent recall {_rates(res.recall['relu'][1])})",
                       float(wide.max()) >= WIDE)


def _claims(res: Result) -> list[ClaimResult]:
    return [*rise_claims(res), absent_claim(res), wide_claim(res)]


RECIPE = Recipe("sae-absorption", SECTION, "feature absorption: SAEs drop a parent's latent when a child is on, more "
                "so with more sparsity pressure", configs, _figures, _claims, analyse=analyse, stores=True,
                analysis_work=lambda quick: sum(c.work(DATA.n_hidden) for c in sae_configs().values()))
