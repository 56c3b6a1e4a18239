"""Nonlinear compression (the paper's appendix): two uniform values in one number, and its ReLU form.

The paper compresses x, y ∈ [0, 1) into one t ∈ [0, 1) by quantising x with an integer Z,
t = (⌊Zx⌋ + y) / Z, and decodes x̂ = (⌊Zt⌋ + ½) / Z, ŷ = Zt − ⌊Zt⌋. Floor and fmod are
discontinuous, so each jump is replaced by "steep linear segments that are only some epsilon value
wide": here each jump of the staircase ⌊u⌋ (u = Zx for the encoder, u = Zt for the decoder) becomes
a ramp of width ε in u, centred on the jump, i.e. ε is a fraction of one quantisation step (the
paper: larger Z is easier, "even with ... Z values as small as 3"). A ramp is two ReLU neurons,
(ReLU(u − k + ε/2) − ReLU(u − k − ε/2)) / ε, so the scheme is a ReLU network (`relu_construction`).

Linear compression of two independent uniforms into one dimension loses a whole variance: the best
linear code (any unit direction, e.g. keep x, or the average) has MSE 1/12 summed over x and y,
1/24 per value (`LINEAR_MSE`). MSEs here are per value (mean over x and y), as the trained models'.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LINEAR_MSE = 1.0 / 24.0
"""Best linear compression of two U[0, 1) values into one: Var(U) = 1/12 lost, averaged over the two."""


def soft_floor(u: Tensor, z: int, eps: float) -> Tensor:
    """⌊u⌋ on [0, z) with each jump k = 1 … z−1 a linear ramp of width `eps` centred on k (two ReLUs)."""
    if not 0 < eps <= 1:
        raise ValueError(f"eps = {eps!r} is invalid: must be in (0, 1] (a fraction of one step)")
    k = torch.arange(1, z, dtype=u.dtype, device=u.device)
    ramps = torch.relu(u.unsqueeze(-1) - (k - eps / 2)) - torch.relu(u.unsqueeze(-1) - (k + eps / 2))
    return ramps.sum(-1) / eps


def compress(x: Tensor, y: Tensor, z: int, eps: float) -> Tensor:
    """t = (soft ⌊Zx⌋ + y) / Z."""
    return (soft_floor(z * x, z, eps) + y) / z


def decompress(t: Tensor, z: int, eps: float) -> tuple[Tensor, Tensor]:
    """(x̂, ŷ) = ((soft ⌊Zt⌋ + ½) / Z, Zt − soft ⌊Zt⌋)."""
    g = soft_floor(z * t, z, eps)
    return (g + 0.5) / z, z * t - g


def nonlinear_mse(z: int, eps: float, grid: int = 2048) -> float:
    """MSE per value of the scheme on x, y ~ U[0, 1) independent, by the midpoint rule on a
    ``grid × grid`` lattice (float64; the integrand is piecewise quadratic, error ≲ 1e-6 at 2048)."""
    g = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    x, y = torch.meshgrid(g, g, indexing="ij")
    xh, yh = decompress(compress(x, y, z, eps), z, eps)
    return float(((xh - x).square() + (yh - y).square()).mean() / 2)


def ideal_mse(z: int) -> float:
    """ε → 0: y exact, x off by a uniform error over a bin of width 1/Z: 1/(12 Z²), halved per value."""
    return 1.0 / (24.0 * z * z)


@dataclass(frozen=True)
class ReluConstruction:
    """The scheme as a 2 → h → 1 → h → 2 ReLU autoencoder (h = 2(Z − 1) + 1 neurons each side):
    t = w_t · ReLU(A x + a), (x̂, ŷ) = B ReLU(c t + d) + e. Shapes as in ``nn.Linear`` (out, in)."""

    enc_weight: Tensor
    """A [h, 2]."""
    enc_bias: Tensor
    """a [h]."""
    mid_weight: Tensor
    """w_t [1, h] (no bias)."""
    dec_weight: Tensor
    """c [h, 1]."""
    dec_bias: Tensor
    """d [h]."""
    out_weight: Tensor
    """B [2, h]."""
    out_bias: Tensor
    """e [2]."""

    @property
    def neurons(self) -> int:
        """ReLU neurons in encoder and decoder together."""
        return self.enc_weight.shape[0] + self.dec_weight.shape[0]


def relu_construction(z: int, eps: float) -> ReluConstruction:
    """The ReLU network computing `compress` then `decompress` exactly (see `ReluConstruction`).

    Encoder neurons: per jump k two ramps ReLU(Zx − k ± ε/2), and ReLU(y) = y. Decoder neurons: per
    jump two ramps of Zt, and ReLU(Zt) = Zt (t ≥ 0), from which x̂ = (G + ½)/Z and ŷ = Zt − G.
    """
    k = torch.arange(1, z, dtype=torch.float64)
    starts = torch.stack([k - eps / 2, k + eps / 2], -1).flatten()  # ramp on, ramp off
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(z - 1)
    h = 2 * (z - 1) + 1
    enc_w = torch.zeros(h, 2, dtype=torch.float64)
    enc_w[:-1, 0], enc_w[-1, 1] = z, 1.0
    enc_b = torch.cat([-starts, torch.zeros(1, dtype=torch.float64)])
    mid_w = torch.cat([signs / (eps * z), torch.tensor([1.0 / z], dtype=torch.float64)]).view(1, h)
    dec_w = torch.full((h, 1), float(z), dtype=torch.float64)
    dec_b = enc_b.clone()
    out_w = torch.zeros(2, h, dtype=torch.float64)
    out_w[0, :-1] = signs / (eps * z)
    out_w[1, :-1], out_w[1, -1] = -signs / eps, 1.0
    out_b = torch.tensor([0.5 / z, 0.0], dtype=torch.float64)
    return ReluConstruction(enc_w, enc_b, mid_w, dec_w, dec_b, out_w, out_b)


def apply_construction(c: ReluConstruction, xy: Tensor) -> tuple[Tensor, Tensor]:
    """(output [..., 2], t [..., 1]) of the network on ``xy [..., 2]``."""
    xy = xy.to(c.enc_weight.dtype)
    t = torch.relu(xy @ c.enc_weight.T + c.enc_bias) @ c.mid_weight.T
    return torch.relu(t @ c.dec_weight.T + c.dec_bias) @ c.out_weight.T + c.out_bias, t
