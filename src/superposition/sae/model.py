"""Batched sparse autoencoders, instance axis first, as pure functions with hand-written gradients.

Parameters of a batch of SAEs over ``hidden``-dimensional activations, padded to ``latent`` =
the largest dictionary:

- ``W_enc [inst, hidden, latent]``, ``b_enc [inst, latent]``: encoder.
- ``W_dec [inst, latent, hidden]``: decoder; row j is dictionary element j (unit norm).
- ``b_dec [inst, hidden]``: decoder bias (zeros and never trained when `decoder_bias` is off).

Buffers that are not trained: ``mask [inst, latent]`` (bool, False for padding: a smaller
dictionary's missing latents never fire and get no gradient), ``k [inst]`` (int64, topk and
batchtopk) and ``threshold [inst, latent]`` (the inference threshold of batchtopk, learnt as one
number per instance, and of jumprelu SAEs imported from SAELens, one per latent).

Padding lets one step serve every dictionary size (one set of kernels, one compiled graph), and
masked latents are exact zeros in every sum, so a padded SAE computes what it computes alone. When
the sizes differ a lot the padded latents' compute dominates instead, and `train.size_groups`
trains one batched step per size (same results).

The model: ``pre = (x − b_dec) W_enc + b_enc``, ``c = act(pre)``, ``x̂ = c W_dec + b_dec``;
the loss is the per-element mean squared error plus α · mean_batch ‖c‖₁.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..data import derive_seed
from . import sparse as sp

Params = dict[str, Tensor]
TRAINED = ("W_enc", "b_enc", "W_dec", "b_dec")


class Buffers(NamedTuple):
    """What configures each instance but is not trained."""

    architecture: str
    mask: Tensor  # [inst, latent] bool
    k: Tensor | None  # [inst] int64 (topk, batchtopk)
    l1: Tensor  # [inst] float32, α
    decoder_bias: bool
    k_max: int = 0  # max(k) as a Python int, so the compiled step has no .item() graph break


class Encoded(NamedTuple):
    pre: Tensor  # [inst, batch, latent], masked latents -inf
    acts: Tensor  # [inst, batch, latent]


def init_params(n_inputs: int, n_latents: list[int], seeds: list[int], n_max: int | None = None) -> Params:
    """Unit-norm Gaussian decoder rows, encoder its transpose, zero biases; per-instance generators.

    Instance i's weights depend only on (seeds[i], n_latents[i], n_inputs): padding is zeros.
    """
    width = n_max or max(n_latents)
    w_dec = torch.zeros(len(seeds), width, n_inputs)
    for i, (n, seed) in enumerate(zip(n_latents, seeds, strict=True)):
        gen = torch.Generator().manual_seed(derive_seed(seed, 31, n) & ((1 << 63) - 1))
        rows = torch.randn(n, n_inputs, generator=gen)
        w_dec[i, :n] = rows / rows.norm(dim=1, keepdim=True)
    return {"W_enc": w_dec.transpose(1, 2).contiguous(), "b_enc": torch.zeros(len(seeds), width),
            "W_dec": w_dec, "b_dec": torch.zeros(len(seeds), n_inputs)}


def latent_mask(n_latents: list[int], width: int | None = None) -> Tensor:
    """bool ``[inst, latent]``: True for the first n_latents[i] latents of instance i."""
    width = width or max(n_latents)
    return torch.arange(width)[None, :] < torch.tensor(n_latents)[:, None]


def pre_activations(params: Params, x: Tensor, mask: Tensor) -> Tensor:
    """``x [inst, batch, hidden]`` (or ``[batch, hidden]``, shared) → ``[inst, batch, latent]``."""
    if x.ndim == 2:
        x = x.expand(params["W_enc"].shape[0], *x.shape)
    pre = torch.baddbmm(params["b_enc"].unsqueeze(1), x - params["b_dec"].unsqueeze(1), params["W_enc"])
    return pre.masked_fill(~mask.unsqueeze(1), float("-inf"))


def _rank_mask(k: Tensor, width: int) -> Tensor:
    """``[inst, 1, width]``: the first k[i] positions of a sorted top-k."""
    return (torch.arange(width, device=k.device)[None, :] < k[:, None]).unsqueeze(1)


def topk_acts(pre: Tensor, k: Tensor, k_max: int | None = None) -> Tensor:
    """Keep the k[i] largest positive latents of each example (instances may differ in k)."""
    k_max = k_max or int(k.max())
    values, index = pre.topk(k_max, dim=-1)
    keep = _rank_mask(k, k_max) & (values > 0)
    return torch.zeros_like(pre).scatter(-1, index, torch.where(keep, values, 0.0))


def batchtopk_acts(pre: Tensor, k: Tensor, k_max: int | None = None) -> tuple[Tensor, Tensor]:
    """Keep the k[i]·batch largest positive latents of instance i's whole batch.

    Returns the activations and the smallest kept value per instance ``[inst]`` (for the threshold).
    """
    inst, batch, width = pre.shape
    flat = pre.reshape(inst, batch * width)
    k_max = (k_max or int(k.max())) * batch
    values, index = flat.topk(k_max, dim=-1)
    keep = (torch.arange(k_max, device=pre.device)[None, :] < (k * batch)[:, None]) & (values > 0)
    acts = torch.zeros_like(flat).scatter(-1, index, torch.where(keep, values, 0.0))
    smallest = torch.where(keep, values, float("inf")).amin(-1)
    return acts.view(inst, batch, width), smallest


def encode(params: Params, x: Tensor, buffers: Buffers, threshold: Tensor | None = None) -> Encoded:
    """Latent activations. batchtopk with a `threshold` ``[inst, latent]`` is the inference rule
    (fire where pre > threshold, as a JumpReLU); without it, the training rule (batch top-k).
    jumprelu (imported, inference only) always needs the threshold."""
    pre = pre_activations(params, x, buffers.mask)
    arch = buffers.architecture
    if arch == "relu":
        acts = torch.relu(pre)
    elif arch == "topk":
        assert buffers.k is not None
        acts = topk_acts(pre, buffers.k, buffers.k_max)
    elif threshold is not None:
        acts = torch.where((pre > threshold.unsqueeze(1)) & (pre > 0), pre, 0.0)
    else:
        if arch == "jumprelu" or buffers.k is None:
            raise ValueError(f"architecture {arch}: encoding needs the threshold [inst, latent]")
        acts = batchtopk_acts(pre, buffers.k, buffers.k_max)[0]
    return Encoded(pre, acts)


def decode(params: Params, acts: Tensor) -> Tensor:
    """``[inst, batch, latent]`` → reconstruction ``[inst, batch, hidden]``."""
    return torch.baddbmm(params["b_dec"].unsqueeze(1), acts, params["W_dec"])


class LossAndGrads(NamedTuple):
    loss: Tensor  # [inst] reconstruction + α L1
    mse: Tensor  # [inst] reconstruction alone
    grads: Params
    smallest: Tensor | None  # [inst] batchtopk: smallest kept activation


def loss_and_grads(params: Params, x: Tensor, buffers: Buffers, sparse: bool | None = None) -> LossAndGrads:
    """Per-instance loss and the gradient of its sum over instances, by hand.

    ``x [batch, hidden]`` is shared by every instance. mse = mean over batch and hidden of
    (x̂ − x)²; loss = mse + α · mean_batch ‖c‖₁. The top-k selections are treated as constants
    (gradients flow through the kept latents), as in Gao et al.

    Past the dense encoder product, the step runs over the latents that fire (`sae.sparse`) when
    few do, else as dense products; the two agree up to float rounding. `sparse=None` decides per
    instance and batch (`sparse.worth_it`; always dense under torch.compile), True or False forces.
    """
    inst = params["W_enc"].shape[0]
    batch, hidden = x.shape
    xs = x.expand(inst, batch, hidden)
    centred = xs - params["b_dec"].unsqueeze(1)
    pre = torch.baddbmm(params["b_enc"].unsqueeze(1), centred, params["W_enc"])
    pre.masked_fill_(~buffers.mask.unsqueeze(1), float("-inf"))  # in place: pre is not kept
    smallest = None
    if buffers.architecture == "relu":
        acts = torch.relu_(pre)
    elif buffers.architecture == "topk":
        acts = topk_acts(pre, buffers.k, buffers.k_max)
    else:
        acts, smallest = batchtopk_acts(pre, buffers.k, buffers.k_max)
    if sparse is None:
        chosen = None if torch.compiler.is_compiling() else sp.worth_it(acts, buffers.mask, hidden)
        sparse = False if chosen is None or not chosen.any() else True if chosen.all() else None
    if sparse is None:  # some instances each way
        mse, l1, grads = _split_rest(params, xs, centred, acts, buffers, chosen)
    else:
        mse, l1, grads = (_sparse_rest if sparse else _dense_rest)(params, xs, centred, acts, buffers)
    if not buffers.decoder_bias:
        grads["b_dec"] = torch.zeros_like(grads["b_dec"])
    return LossAndGrads(mse + buffers.l1 * l1, mse, grads, smallest)


Rest = tuple[Tensor, Tensor, Params]
"""What the step computes past the encoder: mse [inst], mean L1 [inst], gradients."""


def _dense_rest(params: Params, xs: Tensor, centred: Tensor, acts: Tensor, buffers: Buffers) -> Rest:
    """Reconstruction, loss terms and gradients from the activations, as dense products."""
    _, batch, hidden = xs.shape
    err = decode(params, acts) - xs
    d_out = err * (2.0 / (batch * hidden))  # dL/dx̂
    d_acts = torch.bmm(d_out, params["W_dec"].transpose(1, 2)) + (buffers.l1 / batch).view(-1, 1, 1)
    d_pre = torch.where(acts > 0, d_acts, 0.0)
    b_enc = d_pre.sum(1)
    grads = {"W_dec": torch.bmm(acts.transpose(1, 2), d_out), "W_enc": torch.bmm(centred.transpose(1, 2), d_pre),
             "b_enc": b_enc, "b_dec": _b_dec_grad(params, d_out, b_enc)}
    return err.square().mean(dim=(1, 2)), acts.sum(-1).mean(-1), grads  # acts >= 0


def _sparse_rest(params: Params, xs: Tensor, centred: Tensor, acts: Tensor, buffers: Buffers) -> Rest:
    """The same as `_dense_rest`, over the active latents only (`sae.sparse`)."""
    inst, batch, hidden = xs.shape
    a = sp.active(acts)
    err = sp.decode(a, params["W_dec"], params["b_dec"], batch) - xs
    d_out = err * (2.0 / (batch * hidden))
    d_act = sp.sampled_grad(a, d_out, params["W_dec"]) + (buffers.l1 / batch).repeat_interleave(a.per_inst)
    w_dec, w_enc, b_enc = sp.latent_grads(a, d_act, d_out, centred, acts.shape[-1])
    l1 = torch.zeros(inst * batch, dtype=acts.dtype).index_add_(0, a.row, a.value).view(inst, batch).mean(-1)
    grads = {"W_dec": w_dec, "W_enc": w_enc, "b_enc": b_enc, "b_dec": _b_dec_grad(params, d_out, b_enc)}
    return err.square().mean(dim=(1, 2)), l1, grads


def _split_rest(params: Params, xs: Tensor, centred: Tensor, acts: Tensor, buffers: Buffers,
                chosen: Tensor) -> Rest:
    """`_sparse_rest` on the instances `chosen` ``[inst]`` picks, `_dense_rest` on the others."""
    parts = []
    for rest, index in ((_sparse_rest, chosen.nonzero().squeeze(1)), (_dense_rest, (~chosen).nonzero().squeeze(1))):
        sub = {name: value.index_select(0, index) for name, value in params.items()}
        mse, l1, grads = rest(sub, xs.index_select(0, index), centred.index_select(0, index),
                              acts.index_select(0, index), buffers._replace(l1=buffers.l1.index_select(0, index)))
        parts.append((index, {"mse": mse, "l1": l1, **grads}))
    merged = {}
    for key, first in parts[0][1].items():
        merged[key] = first.new_empty((acts.shape[0], *first.shape[1:]))
        for index, part in parts:
            merged[key].index_copy_(0, index, part[key])
    return merged.pop("mse"), merged.pop("l1"), merged


def _b_dec_grad(params: Params, d_out: Tensor, b_enc_grad: Tensor) -> Tensor:
    """dL/db_dec = Σ_batch d_out − W_enc · Σ_batch d_pre (b_dec enters the encoder as −b_dec, and the
    batch sum of d_pre is b_enc's gradient: one matrix-vector product, not a batch of them)."""
    return d_out.sum(1) - torch.bmm(params["W_enc"], b_enc_grad.unsqueeze(-1)).squeeze(-1)


def reference_loss(params: Params, x: Tensor, buffers: Buffers) -> Tensor:
    """The summed loss by plain autograd-able operations (the reference `loss_and_grads` is tested against)."""
    acts = encode(params, x, buffers).acts
    err = decode(params, acts) - x
    return (err.square().mean(dim=(1, 2)) + buffers.l1 * acts.sum(-1).mean(-1)).sum()


def normalize_decoder(params: Params, mask: Tensor) -> None:
    """In place: every unmasked decoder row to unit norm (padding rows stay zero)."""
    w = params["W_dec"]
    norms = w.norm(dim=-1, keepdim=True)
    w.copy_(torch.where(mask.unsqueeze(-1), w / norms.clamp(min=1e-12), 0.0))
