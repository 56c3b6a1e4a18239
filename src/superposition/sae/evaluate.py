"""Score a trained batch of SAEs on held-out activations: `evaluate_sae(sae, source) -> SAEScores`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from . import metrics
from .model import decode, encode
from .sources import RunSource, Source, eval_batch
from .train import SAERun


@dataclass(frozen=True)
class SAEScores:
    """Per-instance scores (lists indexed like `SAEConfig.grid()`)."""

    mmcs: list[float]
    """Mean max cosine similarity of the true features with the dictionary."""
    recovered: list[int]
    """True features with a dictionary element at cosine ≥ `threshold`."""
    n_true: int
    """Number of true features scored (all of them, or those given as `features`)."""
    dead: list[int]
    """Latents that never fire on the evaluation batch."""
    dense: list[int]
    """Latents firing on more than `metrics.DENSE_FREQUENCY` of the examples."""
    l0: list[float]
    """Mean active latents per example."""
    fve: list[float]
    """Fraction of variance explained."""
    mse: list[float]
    """Mean squared reconstruction error per element."""
    threshold: float = metrics.RECOVERED_COSINE
    """The cosine that counts as recovered."""
    loss_recovered: list[float] | None = None
    """Run sources: (ablated − spliced) / (ablated − clean) toy-model loss with the SAE spliced in."""
    spliced_loss: list[float] | None = None
    """Run sources: the toy model's loss with the SAE's reconstruction as its hidden layer."""
    clean_loss: float | None = None
    """Run sources: the toy model's own loss on the same inputs."""

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_sae(sae: SAERun, source: Source, batch: int = 4096, features: torch.Tensor | None = None,
                 threshold: float = metrics.RECOVERED_COSINE) -> SAEScores:
    """Score every instance of `sae` on one held-out batch of `source`.

    `features` ``[feat, hidden]`` overrides the true features scored (e.g. only the features the
    toy model represents); default all of `source.features`.
    """
    truth = source.features if features is None else features
    mask, buffers = sae.mask, sae.buffers
    with torch.no_grad():
        x = eval_batch(source, batch)
        threshold_t = sae.threshold if sae.config.architecture in ("batchtopk", "jumprelu") else None
        acts = encode(sae.params, x, buffers, threshold_t).acts
        x_hat = decode(sae.params, acts)
        best = metrics.max_cosine(truth, sae.decoder, mask)
        scores = dict(
            mmcs=best.mean(-1).tolist(), recovered=(best >= threshold).sum(-1).tolist(), n_true=truth.shape[0],
            dead=metrics.dead_latents(acts, mask).tolist(), dense=metrics.dense_latents(acts, mask).tolist(),
            l0=metrics.l0(acts).tolist(), fve=metrics.fraction_variance_explained(x, x_hat).tolist(),
            mse=(x_hat - x).square().mean(dim=(1, 2)).tolist(), threshold=threshold)
        if isinstance(source, RunSource):
            scores.update(_spliced(source, batch, x_hat))
    return SAEScores(**scores)


def _spliced(source: RunSource, batch: int, x_hat: torch.Tensor) -> dict:
    """The spliced-loss scores: the run's own loss with each SAE's reconstruction as its hidden layer
    (`superposition.models.readout`); none for a custom module, whose forward cannot be split."""
    from ..models import forward, readout, target
    from ..registry import LOSSES
    from .sources import EVAL_STEP

    if source.model.custom:
        return {}
    inputs = source.inputs(EVAL_STEP, batch)  # the same inputs as eval_batch(source, batch)
    hidden = forward(source.model, source.params, inputs).hidden

    def read(h: torch.Tensor) -> torch.Tensor:
        params = {k: v.expand(h.shape[0], *v.shape[1:]) for k, v in source.params.items()}
        return readout(source.model, params, h)

    out = metrics.spliced_loss(read, target(source.target, inputs), source.spec.importance, hidden, x_hat,
                               LOSSES.get(source.loss))
    return {"loss_recovered": out.loss_recovered.tolist(), "spliced_loss": out.spliced.tolist(),
            "clean_loss": float(out.clean[0])}


def evaluate_absorption(sae: SAERun, source, batch: int = 4096):
    """`absorption.absorption` of every instance on a held-out batch of a hierarchy `DictionarySource`."""
    from .absorption import absorption
    from .sources import EVAL_STEP

    if source.config.structure != "hierarchy":
        raise ValueError(f"absorption needs hierarchy data, got dictionary.structure = {source.config.structure!r}")
    with torch.no_grad():
        x = eval_batch(source, batch)
        threshold = sae.threshold if sae.config.architecture in ("batchtopk", "jumprelu") else None
        acts = encode(sae.params, x, sae.buffers, threshold).acts
        gates = source.gates(EVAL_STEP, batch)
    return absorption(source.features, gates, sae.decoder, sae.mask, acts, source.config.n_children)
