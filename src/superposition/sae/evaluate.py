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
    from .sources import EVAL_STEP

    if source.model.custom:
        return {}
    inputs = source.inputs(EVAL_STEP, batch)  # the same inputs as eval_batch(source, batch)
    out = _spliced_loss(source, inputs, x_hat)
    return {"loss_recovered": out.loss_recovered.tolist(), "spliced_loss": out.spliced.tolist(),
            "clean_loss": float(out.clean[0])}


def _spliced_loss(source: RunSource, inputs: torch.Tensor, reconstruction: torch.Tensor) -> metrics.SplicedLoss:
    """`metrics.spliced_loss` of the run on ``inputs [1, batch, feat]`` with ``reconstruction [inst, batch,
    hidden]`` as its hidden layer."""
    from ..models import forward, readout, target
    from ..registry import LOSSES

    hidden = forward(source.model, source.params, inputs).hidden

    def read(h: torch.Tensor) -> torch.Tensor:
        params = {k: v.expand(h.shape[0], *v.shape[1:]) for k, v in source.params.items()}
        return readout(source.model, params, h)

    return metrics.spliced_loss(read, target(source.target, inputs), source.spec.importance, hidden, reconstruction,
                                LOSSES.get(source.loss))


@dataclass(frozen=True)
class SupportScores:
    """How well the encoder picks the latents of the active true features (a toy-model source, whose inputs
    say which features are on); every field ``[inst]``."""

    found: torch.Tensor
    """Share of the active true features that some fired latent matches (cosine ≥ the threshold)."""
    spurious: torch.Tensor
    """Share of the latents' total activation on latents that match no active true feature."""
    oracle_loss_recovered: torch.Tensor
    """Loss recovered when the SAE's own decoder is given the true support: each active feature's best-matching
    latent, with least-squares coefficients (what a perfect encoder could reach with this dictionary)."""


RIDGE = 1e-6
"""Ridge on the oracle's least squares (zero-padded supports give zero coefficients)."""


def support_scores(sae: SAERun, source: RunSource, features: torch.Tensor, batch: int = 4096,
                   threshold: float = metrics.RECOVERED_COSINE) -> SupportScores:
    """Score the encoder against the truth on one held-out batch of `source`.

    `features` ``[feat]`` bool or int: which of the toy model's features are the true features
    (e.g. those it represents; `source.features[features]` are their directions).
    """
    from ..models import forward
    from .sources import EVAL_STEP

    index = torch.as_tensor(features)
    index = index.nonzero().flatten() if index.dtype == torch.bool else index.long()
    truth = source.features[index]  # [T, hidden]
    with torch.no_grad():
        inputs = source.inputs(EVAL_STEP, batch)  # [1, batch, feat], the inputs of eval_batch
        hidden = forward(source.model, source.params, inputs).hidden  # [1, batch, hidden]
        active = inputs[0][:, index] != 0  # [batch, T]
        threshold_t = sae.threshold if sae.config.architecture in ("batchtopk", "jumprelu") else None
        acts = encode(sae.params, hidden[0], sae.buffers, threshold_t).acts  # [inst, batch, latent]
        fired = acts > 0
        cos = metrics.cosine_matrix(truth, sae.decoder).masked_fill(~sae.mask.unsqueeze(1), -2.0)  # [inst, T, L]
        match = (cos >= threshold).float()
        hits = torch.einsum("ibl,itl->ibt", fired.float(), match) > 0  # [inst, batch, T]
        found = (hits & active).sum((1, 2)) / active.sum().clamp(min=1)
        # A fired latent that matches an active feature (contracted over t first: the three-way einsum
        # built an [inst, batch, T, latent] product, 16 GB for three 800-latent SAEs on 4096 examples).
        useful = fired & (torch.einsum("bt,itl->ibl", active.float(), match) > 0)
        spurious = 1 - (acts * useful).sum((1, 2)) / acts.sum((1, 2)).clamp(min=1e-30)
        oracle = _oracle_reconstruction(sae, hidden[0], active, cos.argmax(-1))
        out = _spliced_loss(source, inputs, oracle)
    return SupportScores(found, spurious, out.loss_recovered)


def _oracle_reconstruction(sae: SAERun, hidden: torch.Tensor, active: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """``[inst, batch, hidden]``: b_dec + Σ c_j d_j over the best latents ``best [inst, T]`` of each example's
    active features ``active [batch, T]``, c by least squares (ridge `RIDGE`) on ``hidden [batch, hidden]``."""
    width = int(active.sum(-1).max()) if active.any() else 1
    order = torch.argsort(active.float(), dim=-1, descending=True, stable=True)[:, :width]  # active first
    on = active.gather(1, order)  # [batch, width]
    dec, b_dec = sae.params["W_dec"].double(), sae.params["b_dec"].double()  # [inst, L, hidden], [inst, hidden]
    latents = best.gather(1, order.flatten().expand(best.shape[0], -1)).view(best.shape[0], *order.shape)
    A = torch.stack([dec[i][latents[i]] for i in range(dec.shape[0])]) * on[None, ..., None]  # [inst, batch, w, h]
    y = hidden.double()[None] - b_dec[:, None]  # [inst, batch, hidden]
    gram = A @ A.transpose(-1, -2) + RIDGE * torch.eye(width, dtype=torch.float64)
    coef = torch.linalg.solve(gram, (A @ y.unsqueeze(-1))).squeeze(-1)  # [inst, batch, w]
    return (b_dec[:, None] + (coef.unsqueeze(-1) * A).sum(-2)).to(hidden.dtype)


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
