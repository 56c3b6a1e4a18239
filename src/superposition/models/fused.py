"""The paper's four models with hand-written gradients, instance axis first.

Parameters (all with a leading ``inst`` axis):

- linear, relu_output, relu_hidden: ``W [inst, feat, hidden]`` (column W_i of the paper is
  ``W[k, i, :]``) and ``b [inst, feat]``.
- abs_mlp: ``W1 [inst, feat, hidden]``, ``W2 [inst, hidden, feat]``, ``b [inst, feat]``.

The training path uses hand-written gradients (both checked against autograd in the tests), so a
whole step is a handful of fusable tensor operations: `loss_and_grads` (batched matrix products;
the eager reference and the compiled path for larger hidden sizes) and `loss_and_grads_unrolled`
(the same maths unrolled over `hidden`, batch innermost, for the compiler).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..config import ModelConfig
from .base import Forward, LossAndGrads, Params

# --- the gradient path of the compiled step -------------------------------------------------
# Batched matrix products at these skinny shapes cost ~40 µs each through BLAS. When the hidden
# size is small, unrolling over it lets the compiler fuse the products into its loops instead.

# Measured on the 2-core EPYC box, compiled, batch 1024: `loss_and_grads_unrolled` beats bmm
# 3-4x from 2 up to 10 hidden units (5/2, 20/5, 50/5, 200/5, 40/10, 100/10) and is only on par at
# 20 (60/20, 200/20), where its compile also grows (~13 s).
UNROLL_MAX_HIDDEN = 12


def gradient_fn(model: ModelConfig, compiled: bool):
    """`loss_and_grads_unrolled` inside a compiled step with a small hidden size, else
    `loss_and_grads` (bmm). Both have the signature (kind, params, x, importance, goal=None, l1=None);
    `model.fused_kind` must not be None."""
    return loss_and_grads_unrolled if compiled and model.n_hidden <= UNROLL_MAX_HIDDEN else loss_and_grads


def loss_and_grads_unrolled(kind: str, params: Params, x: Tensor, importance: Tensor, goal: Tensor | None = None,
                            l1: Tensor | None = None) -> LossAndGrads:
    """`loss_and_grads` for a small hidden size, written for the compiler (same maths, same
    results up to float rounding; slower than `loss_and_grads` when run eagerly).

    Three things make Inductor turn this into a few tight loops with no BLAS calls:

    - Batch-innermost layout ``[inst, feat, batch]``: vector lanes run over the 1024-long batch
      instead of a feature axis of 5 or 20 (16-wide lanes over 5 features waste 11 of them).
    - x is materialised once in that layout (`_materialize`); otherwise its hash is recomputed
      in every loop that reads it, and the hash is the dearest part of the step.
    - The hidden axis is unrolled: unit k has its own ``[inst, 1, batch]`` row (no cat/stack on
      the batch side), and W's two gradient terms share one reduction over the batch,
      ``gW[:, :, k] = sum_b (d * h_k + x * (d . W_k))``.
    """
    xt = _materialize(x.transpose(1, 2))  # [inst, feat, batch]
    untied = kind == "abs_mlp"
    w_in = params["W1"] if untied else params["W"]  # [inst, feat, hidden]
    win = [w_in[:, :, k : k + 1] for k in range(w_in.shape[-1])]  # [inst, feat, 1] each
    wout = [params["W2"][:, k, :, None] for k in range(len(win))] if untied else win
    z = [(xt * w).sum(1, keepdim=True) for w in win]  # [inst, 1, batch] each
    h = [torch.relu(zk) for zk in z] if kind in ("relu_hidden", "abs_mlp") else z
    pre = params["b"].unsqueeze(2)
    for hk, w in zip(h, wout, strict=True):
        pre = pre + hk * w
    out = pre if kind == "linear" else torch.relu(pre)
    err = out - (target(kind, xt) if goal is None else _materialize(goal.transpose(1, 2)))
    weighted = importance.unsqueeze(2) * err
    loss = (weighted * err).mean(dim=(1, 2))
    d = weighted * (2.0 / (err.shape[1] * err.shape[2]))  # dL/d output
    if kind != "linear":
        d = torch.where(pre > 0, d, 0.0)
    grads = {"b": d.sum(2)}
    dh = [(d * w).sum(1, keepdim=True) for w in wout]  # [inst, 1, batch] each
    if l1 is not None:  # d/dh of l1 * mean_batch sum_k |h_k|
        scale = (l1 / err.shape[2]).view(-1, 1, 1)
        dh = [g + scale * torch.sign(hk) for g, hk in zip(dh, h, strict=True)]
    if kind in ("relu_hidden", "abs_mlp"):
        dh = [torch.where(zk > 0, g, 0.0) for zk, g in zip(z, dh, strict=True)]
    if untied:
        grads["W2"] = torch.stack([(d * hk).sum(2) for hk in h], 1)  # [inst, hidden, feat]
        grads["W1"] = torch.stack([(xt * g).sum(2) for g in dh], -1)  # [inst, feat, hidden]
    else:
        grads["W"] = torch.stack([(d * hk + xt * g).sum(2) for hk, g in zip(h, dh, strict=True)], -1)
    return LossAndGrads(loss, grads)


def _materialize(t: Tensor) -> Tensor:
    """`t` as a contiguous tensor that Inductor stores once instead of recomputing in each
    consumer (its `as_strided` lowering needs real storage). A plain copy when eager."""
    t = t.contiguous()
    return torch.as_strided(t, t.shape, t.stride())


# --- forward and gradients ------------------------------------------------------------------


def forward(kind: str, params: Params, x: Tensor) -> Forward:
    """Run the model `kind` on ``x [inst, batch, feat]``."""
    b = params["b"].unsqueeze(1)
    if kind == "abs_mlp":
        h = torch.relu(torch.bmm(x, params["W1"]))
        pre = torch.bmm(h, params["W2"]) + b
        return Forward(torch.relu(pre), pre, h)
    h = torch.bmm(x, params["W"])
    if kind == "relu_hidden":
        h = torch.relu(h)
    pre = torch.bmm(h, params["W"].transpose(1, 2)) + b
    out = pre if kind == "linear" else torch.relu(pre)
    return Forward(out, pre, h)


def target(kind: str, x: Tensor) -> Tensor:
    """What the paper's model `kind` must reproduce: x itself, or |x| for the absolute-value model."""
    return x.abs() if kind == "abs_mlp" else x


def loss_and_grads(kind: str, params: Params, x: Tensor, importance: Tensor, goal: Tensor | None = None,
                   l1: Tensor | None = None) -> LossAndGrads:
    """Per-instance loss and the gradient of its sum over instances, by hand.

    - ``x [inst, batch, feat]``: the model's input.
    - ``importance [inst, feat]``: weights of the squared error.
    - ``goal [inst, batch, feat]``: what the output should be; default `target(kind, x)` (differs
      from it in adversarial training, where x is the attacked input and goal the clean target).
    - ``l1 [inst]``: optional coefficient λ of the hidden-activation penalty λ · mean_batch ‖h‖₁.
      The gradients include it; the returned loss is the squared error alone.
    """
    fwd = forward(kind, params, x)
    err = fwd.output - (target(kind, x) if goal is None else goal)
    weighted = importance.unsqueeze(1) * err
    loss = (weighted * err).mean(dim=(1, 2))
    d = weighted * (2.0 / (err.shape[1] * err.shape[2]))  # dL/d output
    if kind != "linear":
        d = torch.where(fwd.pre_output > 0, d, 0.0)
    grads = {"b": d.sum(1)}
    if kind == "abs_mlp":
        w2t = params["W2"].transpose(1, 2)
        grads["W2"] = torch.bmm(fwd.hidden.transpose(1, 2), d)
        dh = torch.where(fwd.hidden > 0, _add_l1(torch.bmm(d, w2t), fwd.hidden, l1), 0.0)
        grads["W1"] = torch.bmm(x.transpose(1, 2), dh)
        return LossAndGrads(loss, grads)
    w = params["W"]
    dh = _add_l1(torch.bmm(d, w), fwd.hidden, l1)
    if kind == "relu_hidden":
        dh = torch.where(fwd.hidden > 0, dh, 0.0)
    grads["W"] = torch.bmm(d.transpose(1, 2), fwd.hidden) + torch.bmm(x.transpose(1, 2), dh)
    return LossAndGrads(loss, grads)


def _add_l1(dh: Tensor, hidden: Tensor, l1: Tensor | None) -> Tensor:
    """dh plus the gradient of l1 · mean_batch ‖h‖₁ with respect to h ``[inst, batch, hidden]``."""
    if l1 is None:
        return dh
    return dh + (l1 / hidden.shape[1]).view(-1, 1, 1) * torch.sign(hidden)


# --- sparse inputs --------------------------------------------------------------------------


def loss_and_grads_sparse(kind: str, params: Params, index: Tensor, value: Tensor, importance: Tensor,
                          l1: Tensor | None = None, unrolled: bool = False) -> LossAndGrads:
    """`loss_and_grads` on a sparse batch (the kind's own target), touching only the active inputs
    on the input side.

    - ``index, value [inst, batch, K]``: slot j of an example is feature ``index`` with ``value``;
      unused slots have value 0 and the kept indices of an example are distinct
      (`superposition.data.SparseBatch`).
    - `unrolled`: the dense output side written for the compiler (as `loss_and_grads_unrolled`),
      for a small hidden size inside a compiled step.

    The input-side products (h = x W and its gradient xᵀ dh) gather and add K rows of W per example
    instead of multiplying by all n. The output side stays dense ([batch, feat]: every output can be
    wrong), but never forms x: the error is split into the output itself, everywhere (`_output_side`),
    and a correction at the K active slots, −target there (the loss uses (o − t)² = o² + t·(t − 2o)).
    Same values as `loss_and_grads` on the dense batch up to float rounding.
    """
    n_inst, batch, slots = index.shape
    untied = kind == "abs_mlp"
    w_in = params["W1"] if untied else params["W"]  # [inst, feat, hidden]
    w_out = params["W2"].transpose(1, 2) if untied else w_in  # [inst, feat, hidden]: output weight of each feature
    n_feat, n_hidden = w_in.shape[1], w_in.shape[2]
    # Rows of the instances' weights stacked as [inst * feat, hidden]: one index_select / index_add
    # (row copies) instead of a gather / scatter over an expanded index (element by element).
    rows = (index + torch.arange(n_inst, device=index.device).view(-1, 1, 1) * n_feat).view(-1)
    w_in_k = _rows(w_in, rows).view(n_inst, batch, slots, n_hidden)
    w_out_k = w_in_k if not untied else _rows(w_out, rows).view(n_inst, batch, slots, n_hidden)
    z = (value.unsqueeze(-1) * w_in_k).sum(2)  # [inst, batch, hidden]
    h = torch.relu(z) if kind in ("relu_hidden", "abs_mlp") else z
    # the active slots' outputs, from their own rows
    pre_k = params["b"].reshape(-1)[rows].view_as(value) + (h.unsqueeze(2) * w_out_k).sum(-1)
    out_k = pre_k if kind == "linear" else torch.relu(pre_k)
    goal = value.abs() if untied else value  # the target at the active slots (0 elsewhere)
    scale = 2.0 / (batch * n_feat)
    imp_k = importance.reshape(-1)[rows].view_as(value)
    dense = (_output_side_unrolled if unrolled else _output_side)(kind, h, w_out, params["b"], importance, scale)
    loss = (dense.loss + (imp_k * goal * (goal - 2.0 * out_k)).sum((1, 2))) / (batch * n_feat)
    d_k = -scale * imp_k * goal  # dL/d output: the dense part's plus this at the active slots
    if kind != "linear":
        d_k = torch.where(pre_k > 0, d_k, 0.0)
    grads = {"b": dense.b.reshape(-1).index_add(0, rows, d_k.reshape(-1)).view(n_inst, n_feat)}
    dh = _add_l1(dense.hidden + (d_k.unsqueeze(-1) * w_out_k).sum(2), h, l1)  # [inst, batch, hidden]
    if kind in ("relu_hidden", "abs_mlp"):
        dh = torch.where(z > 0, dh, 0.0)
    out_side = (d_k.unsqueeze(-1) * h.unsqueeze(2)).reshape(-1, n_hidden)
    in_side = (value.unsqueeze(-1) * dh.unsqueeze(2)).reshape(-1, n_hidden)
    if untied:
        grads["W2"] = _add_rows(dense.w_out, rows, out_side).transpose(1, 2)
        grads["W1"] = _add_rows(torch.zeros_like(w_in), rows, in_side)
    else:
        grads["W"] = _add_rows(dense.w_out, rows, out_side + in_side)
    return LossAndGrads(loss, grads)


class _Dense(NamedTuple):
    """The dense output side of a sparse step, as if every target were 0: Σ imp·o² per instance
    ``[inst]`` and the gradients of that loss's mean for b ``[inst, feat]``, h ``[inst, batch, hidden]``
    and the output weight ``[inst, feat, hidden]``."""

    loss: Tensor
    b: Tensor
    hidden: Tensor
    w_out: Tensor


OUTPUT_BLOCK_ELEMENTS = 1 << 24
"""Eagerly, the dense output side of a sparse step runs over blocks of batch rows of about this many
outputs (64 MB of float32), so a full batch of 10⁵ examples × 10⁴ features never holds its [batch,
feat] outputs at once (4 GB per instance). Compiled, the step is one graph over the whole batch."""


def _output_side(kind: str, h: Tensor, w_out: Tensor, b: Tensor, importance: Tensor, scale: float) -> _Dense:
    n_inst, batch, n_feat = h.shape[0], h.shape[1], w_out.shape[1]
    rows = max(1, OUTPUT_BLOCK_ELEMENTS // (n_inst * n_feat))
    if torch.compiler.is_compiling() or batch <= rows:
        return _output_block(kind, h, w_out, b, importance, scale)
    parts = [_output_block(kind, h[:, lo : lo + rows], w_out, b, importance, scale) for lo in range(0, batch, rows)]
    return _Dense(sum(p.loss for p in parts), sum(p.b for p in parts), torch.cat([p.hidden for p in parts], 1),
                  sum(p.w_out for p in parts))


def _output_block(kind: str, h: Tensor, w_out: Tensor, b: Tensor, importance: Tensor, scale: float) -> _Dense:
    out = torch.baddbmm(b.unsqueeze(1), h, w_out.transpose(1, 2))  # [inst, batch, feat], pre-activation
    if kind != "linear":
        out = out.relu_()
    d = (importance * scale).unsqueeze(1) * out  # zero already where a ReLU output is off
    loss = torch.linalg.vecdot(d, out).sum(1) / scale
    return _Dense(loss, d.sum(1), torch.bmm(d, w_out), torch.bmm(d.transpose(1, 2), h))


def _output_side_unrolled(kind: str, h: Tensor, w_out: Tensor, b: Tensor, importance: Tensor,
                          scale: float) -> _Dense:
    """`_output_side` in the batch-innermost layout ``[inst, feat, batch]``, unrolled over the hidden units."""
    ht = h.transpose(1, 2)  # [inst, hidden, batch]
    cols = [w_out[:, :, k : k + 1] for k in range(w_out.shape[-1])]  # [inst, feat, 1] each
    pre = b.unsqueeze(2)
    for k, w in enumerate(cols):
        pre = pre + ht[:, k : k + 1, :] * w
    out = pre if kind == "linear" else torch.relu(pre)
    weighted = importance.unsqueeze(2) * out
    d = weighted * scale
    hidden = torch.cat([(d * w).sum(1, keepdim=True) for w in cols], 1).transpose(1, 2)  # [inst, batch, hidden]
    w_grad = torch.stack([(d * ht[:, k : k + 1, :]).sum(2) for k in range(len(cols))], -1)
    return _Dense((weighted * out).sum((1, 2)), d.sum(2), hidden, w_grad)


def _rows(w: Tensor, rows: Tensor) -> Tensor:
    """Rows `rows` of ``w [inst, feat, hidden]`` seen as ``[inst * feat, hidden]``."""
    return w.reshape(-1, w.shape[-1]).index_select(0, rows)


def _add_rows(w: Tensor, rows: Tensor, src: Tensor) -> Tensor:
    """``w [inst, feat, hidden]`` plus `src` added to its rows `rows` (of the ``[inst * feat, hidden]`` view)."""
    return w.reshape(-1, w.shape[-1]).index_add(0, rows, src).view(w.shape)
