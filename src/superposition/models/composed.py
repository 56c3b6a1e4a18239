"""Toy models composed from parts (`ModelConfig.parts`), batched over instances, differentiated by autograd.

With the model's input ``u = x`` (or ``x E`` with an embedding), every family is

    z = u W_enc (+ b_hidden)           h = act_h(z)            (h = act_h(h W_h) with a hidden layer)
    y = act_out(h W_dec (Eᵀ) + b)

where W_dec = W_encᵀ when tied. Parameters, all with a leading ``inst`` axis:

- tied: ``W [inst, in, hidden]``; untied: ``W1 [inst, in, hidden]`` and ``W2 [inst, hidden, in]``
  (``in`` is n_features, or embedding_dim with an embedding);
- ``b [inst, feat]``; optional ``b_hidden [inst, hidden]``, ``W_h [inst, hidden, hidden]``;
- with an embedding the fixed ``E [inst, feat, in]`` (orthonormal rows; never trained, see `FROZEN`).

The paper's four kinds are presets of these parts and give the same forward pass as their fused
versions (`superposition.models.fused`), which the training step uses for them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..config import ModelConfig
from ..registry import ACTIVATIONS
from .base import Forward, Params

# Parameters that are part of the model but never trained.
FROZEN = frozenset({"E"})


def param_shapes(model: ModelConfig, n_inst: int) -> dict[str, tuple[int, ...]]:
    """Name → shape of every parameter of the composed `model` with `n_inst` instances."""
    parts, n, m = model.parts, model.n_features, model.n_hidden
    d = parts.embedding_dim or n
    shapes: dict[str, tuple[int, ...]] = {}
    if parts.embedding_dim is not None:
        shapes["E"] = (n_inst, n, d)
    if parts.tied:
        shapes["W"] = (n_inst, d, m)
    else:
        shapes.update(W1=(n_inst, d, m), W2=(n_inst, m, d))
    if parts.hidden_bias:
        shapes["b_hidden"] = (n_inst, m)
    if parts.hidden_layer:
        shapes["W_h"] = (n_inst, m, m)
    shapes["b"] = (n_inst, n)
    return shapes


def init_params(model: ModelConfig, seeds: list[int]) -> Params:
    """Xavier-normal weight matrices (or normal with `model.init_std`), zero biases, identity W_h and
    a random orthonormal embedding; every instance from its own generator."""
    from .random import generator

    parts = model.parts
    d = parts.embedding_dim or model.n_features
    std = model.init_std if model.init_std is not None else math.sqrt(2.0 / (d + model.n_hidden))
    params: Params = {}
    for name, shape in param_shapes(model, len(seeds)).items():
        if name in ("b", "b_hidden"):
            params[name] = torch.zeros(shape)
        elif name == "W_h":
            params[name] = torch.eye(shape[-1]).expand(shape).contiguous()
        elif name == "E":
            params[name] = torch.stack([_orthonormal_rows(shape[1], shape[2], generator(s, name)) for s in seeds])
        else:
            params[name] = torch.stack([torch.randn(shape[1:], generator=generator(s, name)) for s in seeds]) * std
    return params


def _orthonormal_rows(n: int, d: int, gen: torch.Generator) -> Tensor:
    """A random [n, d] matrix with orthonormal rows (n <= d)."""
    q, r = torch.linalg.qr(torch.randn(d, n, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r)).unsqueeze(0)).T.contiguous().float()


def forward(model: ModelConfig, params: Params, x: Tensor) -> Forward:
    """Run the composed `model` on ``x [inst, batch, feat]``."""
    parts = model.parts
    act_h = ACTIVATIONS.get(parts.hidden_activation)
    u = torch.bmm(x, params["E"]) if "E" in params else x
    w_enc = params["W"] if parts.tied else params["W1"]
    z = torch.bmm(u, w_enc)
    if "b_hidden" in params:
        z = z + params["b_hidden"].unsqueeze(1)
    h = act_h(z)
    if "W_h" in params:
        h = act_h(torch.bmm(h, params["W_h"]))
    output, pre = _readout(model, params, h)
    return Forward(output, pre, h)


def readout(model: ModelConfig, params: Params, hidden: Tensor) -> Tensor:
    """The second half of `forward`: the output ``[inst, batch, feat]`` from the (post-activation)
    hidden layer ``[inst, batch, hidden]``, e.g. with an SAE's reconstruction spliced in."""
    return _readout(model, params, hidden)[0]


def _readout(model: ModelConfig, params: Params, h: Tensor) -> tuple[Tensor, Tensor]:
    parts = model.parts
    w_dec = params["W"].transpose(1, 2) if parts.tied else params["W2"]
    pre = torch.bmm(h, w_dec)
    if "E" in params:
        pre = torch.bmm(pre, params["E"].transpose(1, 2))
    pre = pre + params["b"].unsqueeze(1)
    return ACTIVATIONS.get(parts.output_activation)(pre), pre


def feature_directions(params: Params) -> Tensor:
    """Each feature's direction in the hidden space, ``[inst, feat, hidden]``: W (or W1), mapped
    through the embedding when there is one."""
    w = params["W"] if "W" in params else params["W1"]
    return torch.bmm(params["E"], w) if "E" in params else w


def forward_unrolled(model: ModelConfig, params: Params, x: Tensor) -> Forward:
    """`forward` written for the compiler at small hidden sizes (same maths; slower when eager).

    As in `fused.loss_and_grads_unrolled`: the batch is the innermost axis (``[inst, feat, batch]``)
    and the hidden axis is unrolled into rows, so Inductor fuses the products (and the autograd
    backward it derives) into a few vectorised loops instead of skinny batched matrix products.
    The outputs are views in the usual ``[inst, batch, ...]`` layout.
    """
    from .fused import _materialize

    parts = model.parts
    act_h, act_out = ACTIVATIONS.get(parts.hidden_activation), ACTIVATIONS.get(parts.output_activation)
    xt = _materialize(x.transpose(1, 2))  # [inst, feat, batch]
    if "E" in params:
        xt = torch.bmm(params["E"].transpose(1, 2), xt)  # [inst, in, batch]
    w_enc = params["W"] if parts.tied else params["W1"]  # [inst, in, hidden]
    m = w_enc.shape[-1]
    z = torch.cat([(xt * w_enc[:, :, k : k + 1]).sum(1, keepdim=True) for k in range(m)], 1)  # [inst, hidden, batch]
    if "b_hidden" in params:
        z = z + params["b_hidden"].unsqueeze(2)
    h = act_h(z.transpose(1, 2)).transpose(1, 2)  # activations see [.., hidden] last (SoLU normalises over it)
    if "W_h" in params:
        w_h = params["W_h"]
        mixed = torch.cat([(h * w_h[:, :, k : k + 1]).sum(1, keepdim=True) for k in range(m)], 1)
        h = act_h(mixed.transpose(1, 2)).transpose(1, 2)
    w_dec = w_enc if parts.tied else params["W2"].transpose(1, 2)  # [inst, in, hidden]
    pre = h[:, 0:1, :] * w_dec[:, :, 0:1]
    for k in range(1, m):
        pre = pre + h[:, k : k + 1, :] * w_dec[:, :, k : k + 1]
    if "E" in params:
        pre = torch.bmm(params["E"], pre)
    pre = pre + params["b"].unsqueeze(2)
    return Forward(act_out(pre).transpose(1, 2), pre.transpose(1, 2), h.transpose(1, 2))
