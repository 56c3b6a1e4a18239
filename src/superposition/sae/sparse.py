"""The SAE step past the encoder, computed over the latents that fire only.

An SAE's encoder product ``(x − b_dec) W_enc`` is dense: every latent's pre-activation is needed
to know which fire. Everything after it touches only the firing latents: the reconstruction
``x̂ = c W_dec`` sums, for each example, the decoder rows of its active latents; the gradient
with respect to c is needed only where c > 0; the decoder and encoder gradients add, for each
active latent, one example's row. When few latents fire (TopK from the first step, ReLU + L1 once
the penalty has pruned) that is a small fraction of the dense products' work.

The active entries are listed once, in row-major order (instance, example, latent), and every
product is a bag-sum of rows (``embedding_bag`` with per-entry weights) or a sampled product
(``sampled_addmm`` on the entries' pattern), so nothing of size [entries, hidden] is built.
Same results as the dense products up to float rounding (tests/test_sae.py).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn.functional import embedding_bag

SPARSE_DENSITY = 0.15
"""An instance takes the sparse products when at most this fraction of its (unpadded) latent
activations in the batch are non-zero. Measured on the 2-core box (one thread, glibc's freed
memory kept; 5 SAEs of 2048 latents over 256 inputs, batch 512, every instance at the same
density): the gradients cost 66, 83, 117, 145, 157 and 201 ms sparse at densities 1%, 5%, 10%,
15%, 20% and 25%, against 169-186 ms dense; the two meet near 20%."""
SPARSE_MIN_WORK = 1 << 22
"""... and only when one instance's dense product (batch × latents × inputs) has at least this
many multiply-adds: below it the dense products take well under a millisecond and the sparse
path's fixed cost (a dozen small operations per instance) would dominate."""


class Active(NamedTuple):
    """The non-zero latent activations of a batch ``acts [inst, batch, latent]``, row-major."""

    value: Tensor  # [nnz]
    row: Tensor  # [nnz] int64, inst * batch + example
    col: Tensor  # [nnz] int64, inst * latent + latent index
    per_row: Tensor  # [inst * batch] entries per example
    per_inst: Tensor  # [inst] entries per instance


def may_pay(batch: int, width: int, n_inputs: int) -> bool:
    """Whether one instance's products are large enough for the sparse path (`SPARSE_MIN_WORK`)."""
    return batch * width * n_inputs >= SPARSE_MIN_WORK


def worth_it(acts: Tensor, mask: Tensor, n_inputs: int) -> Tensor:
    """bool ``[inst]``: the instances whose batch is better served by the sparse products
    (`SPARSE_DENSITY`, `SPARSE_MIN_WORK`). Decided per instance: over a grid of L1 coefficients
    the fraction of latents that fire spans orders of magnitude (0.04% to 10% at step 2,000 of
    sae-recovery's paper-size grid), and the densest would otherwise set the path for all."""
    inst, batch, width = acts.shape
    if not may_pay(batch, width, n_inputs):
        return torch.zeros(inst, dtype=torch.bool)
    live = mask.sum(1) * batch
    return (torch.count_nonzero(acts, dim=(1, 2)) <= SPARSE_DENSITY * live) & (live > 0)


def active(acts: Tensor) -> Active:
    inst, batch, width = acts.shape
    flat = acts.reshape(-1)
    pos = flat.nonzero().squeeze(1)
    row = pos // width
    col = (row // batch) * width + pos % width
    per_row = torch.bincount(row, minlength=inst * batch)
    return Active(flat[pos], row, col, per_row, per_row.view(inst, batch).sum(1))


def _offsets(counts: Tensor) -> Tensor:
    return torch.cumsum(counts, 0) - counts


def decode(a: Active, w_dec: Tensor, b_dec: Tensor, batch: int) -> Tensor:
    """``x̂ [inst, batch, hidden]``: each example's bag of active decoder rows, weighted."""
    inst, width, hidden = w_dec.shape
    sums = embedding_bag(a.col, w_dec.reshape(inst * width, hidden), _offsets(a.per_row), mode="sum",
                           per_sample_weights=a.value)
    return sums.view(inst, batch, hidden) + b_dec.unsqueeze(1)


def sampled_grad(a: Active, d_out: Tensor, w_dec: Tensor) -> Tensor:
    """``(d_out W_decᵀ)`` at the active entries ``[nnz]``: one sampled product per instance."""
    inst, batch, _ = d_out.shape
    width = w_dec.shape[1]
    out, start = [], 0
    per_row = a.per_row.view(inst, batch)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        for i in range(inst):
            n = int(a.per_inst[i])
            crow = torch.cat([per_row.new_zeros(1), torch.cumsum(per_row[i], 0)])
            cols = a.col[start:start + n] - i * width
            # valid by construction: row-major entries, so each row's columns ascend
            pattern = torch.sparse_csr_tensor(crow, cols, d_out.new_ones(n), (batch, width), check_invariants=False)
            out.append(torch.sparse.sampled_addmm(pattern, d_out[i], w_dec[i].T, beta=0.0).values())
            start += n
    return torch.cat(out) if out else d_out.new_zeros(0)


def latent_grads(a: Active, d_act: Tensor, d_out: Tensor, centred: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of W_dec ``[inst, latent, hidden]``, W_enc ``[inst, hidden, latent]`` and b_enc
    ``[inst, latent]`` from the gradient ``d_act [nnz]`` at the active entries: each latent's bag
    of active examples (entries regrouped by latent, stably, so sums run in a fixed order)."""
    inst, batch, hidden = d_out.shape
    order = torch.argsort(a.col, stable=True)
    rows = a.row[order]
    offsets = _offsets(torch.bincount(a.col, minlength=inst * width))
    w_dec = embedding_bag(rows, d_out.reshape(inst * batch, hidden), offsets, mode="sum",
                            per_sample_weights=a.value[order])
    w_enc = embedding_bag(rows, centred.reshape(inst * batch, hidden), offsets, mode="sum",
                            per_sample_weights=d_act[order])
    b_enc = torch.zeros(inst * width, dtype=d_act.dtype).index_add_(0, a.col, d_act)
    return (w_dec.view(inst, width, hidden), w_enc.view(inst, width, hidden).transpose(1, 2).contiguous(),
            b_enc.view(inst, width))
