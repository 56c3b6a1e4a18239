"""The compressed-sensing bound, checked on trained toy models (the paper's appendix).

Compressed sensing: an n-dimensional k-sparse vector can be recovered from an m-dimensional
projection only if m = Ω(k log(n/k)); the paper applies this to the toy model as an upper bound on
superposition. Empirically, the smallest hidden size m* at which trained models reconstruct k-sparse
inputs to a fixed relative error should then grow like k log(n/k).

Here k is the expected number of active features (independent features at p = k / n, the paper's
setting, where "k = O((1 − S) n)"). `smallest_m` finds m* by interpolating log relative error
linearly in log m between the two grid sizes around the threshold; `linear_fit` regresses m* on
k log(n/k) with the slope's t-interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def relative_error(loss: float, p: float) -> float:
    """MSE per feature over E[x_i²] = p / 3 (uniform magnitudes): 1 for the all-zero output."""
    return loss / (p / 3.0)


def smallest_m(ms: Sequence[int], errors: Sequence[float], threshold: float) -> float | None:
    """The hidden size where the relative error first falls to `threshold`, interpolated in
    (log m, log error) between the grid points around it; the smallest m when already below;
    None when no m of the grid gets there."""
    pairs = sorted(zip(ms, errors, strict=True))
    if pairs[0][1] <= threshold:
        return float(pairs[0][0])
    for (m0, e0), (m1, e1) in zip(pairs, pairs[1:], strict=False):
        if e1 <= threshold:
            a = (math.log(e0) - math.log(threshold)) / (math.log(e0) - math.log(max(e1, 1e-30)))
            return math.exp(math.log(m0) + min(max(a, 0.0), 1.0) * (math.log(m1) - math.log(m0)))
    return None


# Two-sided 95% Student t quantiles by degrees of freedom (1..30); beyond, the normal's.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


@dataclass(frozen=True)
class LinearFit:
    """Least squares y = intercept + slope · x."""

    slope: float
    intercept: float
    r2: float
    slope_ci: tuple[float, float]
    """95% confidence interval of the slope (Student t, n − 2 degrees of freedom)."""
    n: int


def linear_fit(x: Sequence[float], y: Sequence[float]) -> LinearFit:
    """Ordinary least squares of `y` on `x` (at least 3 points, x not constant)."""
    n = len(x)
    if n < 3 or len(y) != n:
        raise ValueError(f"linear_fit needs >= 3 paired points, got {len(x)} x and {len(y)} y")
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    if sxx == 0:
        raise ValueError("linear_fit needs x that is not constant")
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx
    intercept = my - slope * mx
    resid = [b - intercept - slope * a for a, b in zip(x, y, strict=True)]
    ss_res, ss_tot = sum(r * r for r in resid), sum((b - my) ** 2 for b in y)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    se = math.sqrt(ss_res / (n - 2) / sxx)
    t = _T95[n - 3] if n - 2 <= len(_T95) else 1.96
    return LinearFit(slope, intercept, r2, (slope - t * se, slope + t * se), n)
