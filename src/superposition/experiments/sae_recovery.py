"""Follow-up: sparse autoencoders recover the features that superposition hides (Sharkey, Braun
and Millidge 2022, "Taking features out of superposition with sparse autoencoders").

Two settings, each scored against ground truth:

1. A generated dictionary (Sharkey et al.'s toy data: G Gaussian unit directions in h
   dimensions, feature i on with probability ∝ 0.99^i, 5 on on average, values U[0, 1]; paper size
   G = 512, h = 256; quick G = 64, h = 32, the same ratio G/h = 2). ReLU + L1 SAEs with unit-norm
   decoder rows over L1 coefficient α × dictionary ratio R = latents / G, all in one batched
   step. Claims: the MMCS with the true features is near 1 once R ≥ 1 at a suitable α and well
   below 1 at R = 1/2; the three ways to count features without ground truth (dead latents,
   the loss against R, MMCS with a larger dictionary) point at R = 1; the correlated variant is
   recovered too.
2. Toy models of the paper: TopK SAEs on the hidden layer of the 20 → 5 ReLU-output model
   (importance 0.7^i, p = 0.03: about ten features in five dimensions) and the 400 → 30 one
   (uniform importance, p = 0.01). The true directions are the rows W_i of the features the model
   represents (‖W_i‖ > 0.5); claims: the SAE recovers them and, spliced into the model, keeps its loss.

Thresholds were fixed before the first run (none quotes a number from Sharkey et al., whose
results are figures): "near 1" is MMCS ≥ 0.95; "recovered" is cosine ≥ 0.9.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..analysis import represented
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ..figures.sae import counting_figure, mmcs_grid_figure, toy_recovery_figure
from ..run import Run
from ..sae import (
    DictionaryConfig,
    SAEConfig,
    SAERun,
    SourceConfig,
    build_source,
    evaluate_sae,
    stored_or_trained,
    stored_or_trained_all,
    support_scores,
)
from ..sae import metrics as sm
from .base import ClaimResult, Recipe, fmt

SECTION = "Follow-up 2: sparse autoencoders on toy models (Sharkey et al. 2022)"
RATIOS = (0.5, 1.0, 2.0, 4.0)
ALPHAS = (3e-3, 1e-2, 3e-2)
FULL_ALPHAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
"""Paper size (h = 256): the reconstruction term is a mean over the h dimensions and the L1 term a
sum over latents, so a suitable α scales like 1/h: the quick grid (h = 32, best α = 0.01) moved
down 8×. Measured at h = 256 (3000 steps): α = 3e-3 and 1e-2 already give L0 = 2.0 and 0.1 with
a third of the latents dead and MMCS 0.38 and 0.22, far too sparse."""
NEAR_ONE = 0.95
"""MMCS counted as "near 1" (fixed before the first run)."""
BELOW_G = 0.85
"""At R = 1/2 half the features have no latent of their own: best MMCS below this."""
DEAD_AT_G = 0.05
"""Dead latents at R ≤ 1 at most this fraction of the dictionary ..."""
DEAD_BEYOND_G = 0.10
"""... and more than this fraction at the largest R."""
ELBOW = 2.0
"""The loss falls at least this many times more from R = 1/2 to 1 than from 1 to 2."""
TOY_RECOVERED = 0.8
"""Toy models: share of represented features an SAE recovers at cosine ≥ 0.9."""
TOY_LOSS_RECOVERED = 0.8
"""Toy models: (ablated − spliced) / (ablated − clean) loss with the SAE spliced in."""
TOYS = {"toy_20_5": (20, 5, 0.03, 0.7), "toy_400_30": (400, 30, 0.01, 1.0)}
"""name → (n, m, p, importance decay)."""


def configs(quick: bool) -> dict[str, RunConfig]:
    suffix = "-quick" if quick else ""
    out = {}
    for name, (n, m, p, decay) in TOYS.items():
        out[name] = RunConfig(
            model=ModelConfig("relu_output", n_features=n, n_hidden=m),
            data=DataConfig(feature_probability=(p,), importance_decay=decay),
            train=TrainConfig(steps=(4000 if quick else 10_000) if n < 100 else (3000 if quick else 6000),
                              restarts=2 if n < 100 else 1),
            name=f"sae-{name.replace('_', '-')}{suffix}")
    return out


def _quick(runs: dict[str, Run]) -> bool:
    return runs["toy_20_5"].config.name.endswith("-quick")


def dictionary_config(quick: bool, structure: str = "independent") -> SAEConfig:
    g, h = (64, 32) if quick else (512, 256)
    ratios = RATIOS if structure == "independent" else (1.0, 2.0)
    return SAEConfig(
        architecture="relu", n_latents=tuple(int(r * g) for r in ratios),
        l1_coefficient=ALPHAS if quick else FULL_ALPHAS, steps=3000 if quick else 8000,
        batch_size=256 if quick else 512, source=SourceConfig(dictionary=DictionaryConfig(
            n_features=g, n_hidden=h, structure=structure)), name=f"sae-dictionary-{structure}")


def toy_config(run: Run, quick: bool) -> SAEConfig:
    """TopK SAE with twice as many latents as the model has features and k ≈ twice the mean number
    of active features, at least 2. (With only as many latents as features, a latent that starts
    dead stays dead, as TopK has no auxiliary loss here: an orthogonal 6-feature model then loses
    a feature, see tests/test_sae_recipes.py.)"""
    n, p = run.config.model.n_features, float(run.probability[0, 0])
    k = max(2, round(2 * n * p))
    return SAEConfig(architecture="topk", n_latents=(2 * n,), k=(k,), l1_coefficient=(0.0,),
                     steps=2000 if quick else 10_000, batch_size=256 if quick else 1024, lr=3e-3,
                     source=SourceConfig(kind="run", run_name=run.config.name), name=f"sae-{run.config.name}")


@dataclasses.dataclass(frozen=True)
class DictionaryResult:
    config: SAEConfig
    ratios: tuple[float, ...]
    mmcs: np.ndarray  # [alpha, ratio]
    dead_fraction: np.ndarray  # [alpha, ratio]
    loss: np.ndarray  # [alpha, ratio] final training loss (reconstruction + α L1)
    larger: np.ndarray  # [alpha, ratio - 1] MMCS of the dictionary at ratio r with the one at the next ratio
    matchless: np.ndarray | None = None  # [alpha, ratio] fraction of latents matching no true feature (cos < 0.5)
    unrecovered: np.ndarray | None = None  # [alpha, ratio] true features without a latent at cosine ≥ 0.9
    doubled: np.ndarray | None = None  # [alpha, ratio] latents on a true feature another latent covers
    dead_count: np.ndarray | None = None  # [alpha, ratio] latents that never fire on the evaluation batch


@dataclasses.dataclass(frozen=True)
class ToyResult:
    best: np.ndarray  # best cosine of each represented feature
    represented: int
    recovered: int
    loss_recovered: float
    found: float | None = None
    """Share of the active represented features that a fired latent matches (`sae.support_scores`)."""
    spurious: float | None = None
    """Share of the latents' activation on latents that match no active feature."""
    oracle_loss_recovered: float | None = None
    """Loss recovered by the SAE's decoder given the true support (least-squares coefficients)."""
    k: int | None = None
    """The TopK SAE's k."""


@dataclasses.dataclass(frozen=True)
class Result:
    independent: DictionaryResult
    correlated: DictionaryResult
    toys: dict[str, ToyResult]


def analyse_dictionary(config: SAEConfig, store: Path | None = None, sae: SAERun | None = None) -> DictionaryResult:
    """The grid's scores: of `sae` when given, else of the SAEs stored at (or trained into) `store`."""
    sae = stored_or_trained(config, store) if sae is None else sae
    source = build_source(config)
    scores = evaluate_sae(sae, source)
    g = config.source.dictionary.n_features
    shape = (len(config.n_latents), len(config.l1_coefficient))  # grid order: size slowest, then α
    grid = config.grid()
    latents = np.array([p.n_latents for p in grid], dtype=float).reshape(shape).T
    mmcs = np.array(scores.mmcs).reshape(shape).T
    dead = np.array(scores.dead, dtype=float).reshape(shape).T / latents
    loss = np.array(sae.final_loss).reshape(shape).T
    dec = sae.decoder.view(*shape, config.max_latents, -1)
    mask = sae.mask.view(*shape, config.max_latents)
    larger = np.array([[float(sm.mmcs_between(dec[r, a][None], dec[r + 1, a][None], mask[r, a][None],
                                              mask[r + 1, a][None])) for r in range(shape[0] - 1)]
                       for a in range(shape[1])])
    matchless = sm.matchless_latents(source.features, sae.decoder, sae.mask).double().numpy()
    doubled = sm.doubled_latents(source.features, sae.decoder, sae.mask).double().numpy()
    unrecovered = g - np.array(scores.recovered, dtype=float)
    grid_of = lambda v: np.asarray(v, dtype=float).reshape(shape).T  # noqa: E731
    return DictionaryResult(config, tuple(n / g for n in config.n_latents), mmcs, dead, loss, larger,
                            grid_of(matchless) / latents, grid_of(unrecovered), grid_of(doubled), grid_of(scores.dead))


def analyse_toy(run: Run, quick: bool, store: Path | None = None) -> ToyResult:
    config = toy_config(run, quick)
    source = build_source(config, run)
    truth = run.W[0][represented(run.W)[0]]
    sae = stored_or_trained(config, store, run, source=source)
    scores = evaluate_sae(sae, source, features=truth)
    support = support_scores(sae, source, represented(run.W)[0])
    best = sm.max_cosine(truth, sae.decoder, sae.mask)[0].numpy()
    return ToyResult(best, truth.shape[0], scores.recovered[0], float(scores.loss_recovered[0]),
                     float(support.found[0]), float(support.spurious[0]), float(support.oracle_loss_recovered[0]),
                     config.k[0])


def analyse(runs: dict[str, Run], store: Path | None = None) -> Result:
    """Everything the figures and claims read (the recipe's analysis stage, computed once): the SAEs
    on the generated dictionaries and on the toy models' hidden layers, kept under `store` (one SAE
    run directory each) so that a rerun reads them back instead of training them again."""
    quick = _quick(runs)

    def at(name: str) -> Path | None:
        return None if store is None else store / name

    grids = [dictionary_config(quick, s) for s in ("independent", "correlated")]
    # both grids' size groups in one pool of processes where they are large (`sae.parallel`)
    saes = stored_or_trained_all([(c, at(f"sae_{c.source.dictionary.structure}"), None) for c in grids])
    return Result(*(analyse_dictionary(c, sae=sae) for c, sae in zip(grids, saes, strict=True)),
                  {name: analyse_toy(runs[name], quick, at(f"sae_{name}")) for name in TOYS})


# --- figures ----------------------------------------------------------------------------------


def _figures(res: Result) -> dict[str, object]:
    out = {}
    for label, d in (("independent", res.independent), ("correlated", res.correlated)):
        g = d.config.source.dictionary
        out[f"sae_mmcs_{label}"] = mmcs_grid_figure(
            d.mmcs, d.dead_fraction, d.config.l1_coefficient, d.ratios,
            f"ReLU + L1 SAEs on {g.n_features} {label} features in {g.n_hidden} dimensions")
    d = res.independent
    alphas = [f"α = {a:g}" for a in d.config.l1_coefficient]
    nan = [float("nan")]
    out["sae_counting"] = counting_figure(d.ratios, {
        "dead latents (fraction)": dict(zip(alphas, d.dead_fraction.tolist(), strict=True)),
        "final loss (MSE + α L1)": dict(zip(alphas, d.loss.tolist(), strict=True)),
        "MMCS with the next larger dictionary": {a: row + nan for a, row in zip(alphas, d.larger.tolist(),
                                                                                  strict=True)},
    })
    out["sae_toy_recovery"] = toy_recovery_figure({
        name.replace("toy_", "").replace("_", " → "): (t.best, sm.RECOVERED_COSINE) for name, t in res.toys.items()})
    return out


# --- claims -----------------------------------------------------------------------------------


def _at(d: DictionaryResult, ratio: float) -> int:
    return d.ratios.index(ratio)


def best_alpha(d: DictionaryResult) -> int:
    """The α with the best MMCS at R = 1 (the counting claims look at that α)."""
    return int(np.argmax(d.mmcs[:, _at(d, 1.0)]))


def near_one_claim(d: DictionaryResult) -> ClaimResult:
    cols = [j for j, r in enumerate(d.ratios) if r >= 1]
    best = d.mmcs[:, cols].max(axis=0)
    a = d.config.l1_coefficient[int(np.argmax(d.mmcs[:, _at(d, 1.0)]))]
    held = bool((best >= NEAR_ONE).all())
    failing = [j for j, v in zip(cols, best, strict=True) if v < NEAR_ONE]
    return ClaimResult(SECTION, "Once the dictionary has at least G latents and α is suitable, the SAE recovers the "
                       "true features: MMCS near 1",
                       f"best MMCS over α ≥ {NEAR_ONE:g} at every R ≥ 1",
                       "best MMCS " + ", ".join(f"R = {d.ratios[j]:g}: {fmt(v)}" for j, v in zip(cols, best,
                                                                                              strict=True))
                       + f" (α = {a:g} at R = 1)" + ("" if held else _missed_cause(d, failing)), held)


def _missed_cause(d: DictionaryResult, failing: list[int]) -> str:
    """Where the best dictionary of a failing R leaves features without a latent: how many, and where its
    latents went instead (onto features already covered, dead, or matching no feature)."""
    if d.unrecovered is None or d.doubled is None or d.dead_count is None or d.matchless is None:
        return ""
    g = d.config.source.dictionary.n_features
    parts = []
    for j in failing:
        a = int(np.argmax(d.mmcs[:, j]))
        latents = round(d.ratios[j] * g)
        missed, doubled = int(d.unrecovered[a, j]), int(d.doubled[a, j])
        dead, matchless = int(d.dead_count[a, j]), round(float(d.matchless[a, j]) * latents)
        if missed == 0 or doubled + dead + matchless == 0:
            return ""
        parts.append(f"R = {d.ratios[j]:g} (α = {d.config.l1_coefficient[a]:g}): {missed} of {g} true features "
                     f"have no latent at cosine ≥ {sm.RECOVERED_COSINE:g}, while of its {latents} latents {doubled} "
                     f"double a feature another latent covers, {dead} never fire and {matchless} match no feature "
                     f"(cosine < {sm.MATCHLESS_COSINE:g})")
    return "; cause: latents spent elsewhere: " + "; ".join(parts)


def below_g_claim(d: DictionaryResult) -> ClaimResult:
    best = float(d.mmcs[:, _at(d, 0.5)].max())
    return ClaimResult(SECTION, "A dictionary smaller than G cannot recover every feature",
                       f"best MMCS at R = 1/2 < {BELOW_G:g}", f"{fmt(best)}", best < BELOW_G)


def dead_claim(d: DictionaryResult) -> ClaimResult:
    a = best_alpha(d)
    dead = d.dead_fraction[a]
    small = max(float(dead[j]) for j, r in enumerate(d.ratios) if r <= 1)
    held = small <= DEAD_AT_G and float(dead[-1]) > DEAD_BEYOND_G
    return ClaimResult(SECTION, "Counting features without ground truth (1): dead latents appear once the dictionary "
                       "is larger than G",
                       f"at the best α: dead fraction ≤ {DEAD_AT_G:g} for R ≤ 1, > {DEAD_BEYOND_G:g} at "
                       f"R = {d.ratios[-1]:g}",
                       f"α = {d.config.l1_coefficient[a]:g}: dead fraction "
                       + ", ".join(f"{fmt(v)}" for v in dead) + f" at R = {', '.join(f'{r:g}' for r in d.ratios)}"
                       + ("" if held else _alive_cause(d, a)), held)


def _alive_cause(d: DictionaryResult, a: int) -> str:
    """Said when the largest dictionary has too few dead latents but many that match no true feature:
    the latents beyond G stay alive on combinations or fragments of features instead of dying."""
    if d.matchless is None or not float(d.dead_fraction[a, -1]) <= DEAD_BEYOND_G:
        return ""
    share = float(d.matchless[a, -1])
    if not share > DEAD_BEYOND_G:
        return ""
    latents = round(d.ratios[-1] * d.config.source.dictionary.n_features)
    return (f"; cause: at R = {d.ratios[-1]:g} the latents beyond G stay alive without a feature of their own: "
            f"{round(share * latents)} of {latents} ({share:.0%}) have cosine < {sm.MATCHLESS_COSINE:g} with every "
            f"true feature (at R = 1: {float(d.matchless[a, _at(d, 1.0)]):.0%})")


def elbow_claim(d: DictionaryResult) -> ClaimResult:
    a = best_alpha(d)
    loss = d.loss[a]
    i = _at(d, 1.0)
    before, after = float(loss[i - 1] - loss[i]), float(loss[i] - loss[i + 1])
    held = before > 0 and before >= ELBOW * max(after, 0.0)
    return ClaimResult(SECTION, "Counting features (2): the loss stops improving once the dictionary reaches G",
                       f"at the best α: loss drop R = 1/2 → 1 ≥ {ELBOW:g} × the drop R = 1 → 2",
                       f"α = {d.config.l1_coefficient[a]:g}: drops {fmt(before)} then {fmt(after)}", held)


def larger_claim(d: DictionaryResult) -> ClaimResult:
    a = best_alpha(d)
    row = d.larger[a]
    peak = int(np.argmax(row))
    return ClaimResult(SECTION, "Counting features (3): a dictionary agrees best with a larger one at G latents",
                       "at the best α, MMCS with the next larger dictionary peaks at R = 1",
                       f"α = {d.config.l1_coefficient[a]:g}: " + ", ".join(
                           f"R = {d.ratios[j]:g} vs {d.ratios[j + 1]:g}: {fmt(v)}" for j, v in enumerate(row)),
                       d.ratios[peak] == 1.0)


def correlated_claim(d: DictionaryResult) -> ClaimResult:
    best = float(d.mmcs.max())
    return ClaimResult(SECTION, "Correlated features are recovered too",
                       f"best MMCS ≥ {NEAR_ONE:g} (R ∈ {{1, 2}})", fmt(best), best >= NEAR_ONE)


def toy_claims(name: str, t: ToyResult) -> list[ClaimResult]:
    label = name.replace("toy_", "").replace("_", " → ")
    share = t.recovered / max(t.represented, 1)
    return [
        ClaimResult(SECTION, f"A TopK SAE on the {label} model's hidden layer recovers the features it stores in "
                    "superposition", f"≥ {TOY_RECOVERED:.0%} of the represented features at cosine ≥ "
                    f"{sm.RECOVERED_COSINE:g}", f"{t.recovered} of {t.represented} ({share:.0%})",
                    share >= TOY_RECOVERED),
        ClaimResult(SECTION, f"Spliced into the {label} model, the SAE keeps its loss",
                    f"loss recovered (ablated − spliced)/(ablated − clean) ≥ {TOY_LOSS_RECOVERED:g}",
                    fmt(t.loss_recovered) + ("" if t.loss_recovered >= TOY_LOSS_RECOVERED else _encoder_cause(t)),
                    t.loss_recovered >= TOY_LOSS_RECOVERED),
    ]


def _encoder_cause(t: ToyResult) -> str:
    """Said when the dictionary would keep the loss given the true support: the encoder picks the latents."""
    if t.oracle_loss_recovered is None or t.found is None or t.spurious is None:
        return ""
    if not t.oracle_loss_recovered >= TOY_LOSS_RECOVERED:
        return ""
    fired = f"the k = {t.k} fired" if t.k is not None else "the fired ones"
    return (f"; cause: the encoder picks the wrong latents, not the dictionary: {t.found:.0%} of the active features "
            f"have a matching latent (cosine ≥ {sm.RECOVERED_COSINE:g}) among {fired}, and {t.spurious:.0%} of the "
            f"activation lands on latents matching no active feature; given the true support, the SAE's own decoder "
            f"(least-squares coefficients) recovers {fmt(t.oracle_loss_recovered)} of the loss")


def _claims(res: Result) -> list[ClaimResult]:
    d = res.independent
    out = [near_one_claim(d), below_g_claim(d), dead_claim(d), elbow_claim(d), larger_claim(d),
           correlated_claim(res.correlated)]
    for name, t in res.toys.items():
        out.extend(toy_claims(name, t))
    return out


def analysis_work(quick: bool) -> float:
    """The SAE training `analyse` does, in `RunConfig.work` units (for scheduling)."""
    dictionaries = (dictionary_config(quick, s) for s in ("independent", "correlated"))
    total = sum(c.work(c.source.dictionary.n_hidden) for c in dictionaries)
    steps, batch = (2000, 256) if quick else (10_000, 1024)
    return total + sum(steps * batch * 2 * n * m for n, m, _, _ in TOYS.values())


RECIPE = Recipe("sae-recovery", SECTION, "sparse autoencoders recover the true features of generated data and of "
                "toy models (MMCS, feature counting, toy-model recovery)", configs, _figures, _claims,
                analyse=analyse, stores=True, analysis_work=analysis_work)
