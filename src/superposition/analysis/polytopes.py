# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""Uniform polytopes and tegum factors: the geometry features take in uniform superposition.

With every feature equally important and equally sparse (the paper's section "The geometry of
superposition"), the represented features of a ReLU output model split into groups that are
orthogonal to each other (the paper's *tegum factors*), and each group is a uniform polytope: an
antipodal pair (digon, D_i = 1/2), a triangle (2/3), a tetrahedron (3/4), a pentagon (2/5), a
square antiprism (3/8), or a feature alone in its own dimension (1).

The decomposition here works from the geometry, not from D_i (a fraction alone does not identify
a shape, e.g. the square antiprism and the cube both give 3/8):

1. the *interference graph*: represented features (‖W_i‖ > 0.5) are nodes, with an edge where
   |cos(W_i, W_j)| exceeds a threshold;
2. its connected components are the tegum factors (so two orthogonal digons, the paper's
   "tegum product", are two factors, never one square);
3. each factor of k features is matched against templates: the rank of its vectors, near-equal
   norms, and every feature's sorted row of cosines to the factor (all the templates are
   vertex-transitive, so every row must match the template's one profile);
4. a matched factor must also be a factor of the whole model: its features' D_i (which count the
   overlap with every feature, represented or not) must be rank/k, else it is "other".

Shapes follow the package vocabulary: ``W [feat, hidden]`` for one model (the functions here take
one model at a time; map over the ``inst`` axis for a run).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from .geometry import REPRESENTED_THRESHOLD, feature_dimensionality, feature_norms, unit_directions

EDGE_THRESHOLD = 0.1
"""|cos(W_i, W_j)| above this is an edge of the interference graph (trained models show a wide gap
between ≈0 for features of different factors and ≥ 0.14 within a polytope)."""
COSINE_TOLERANCE = 0.1
"""Largest |cosine − template cosine| for a factor to count as that template."""
NORM_TOLERANCE = 0.2
"""Largest relative spread of norms, (max − min) / max, within a uniform polytope."""
RANK_TOLERANCE = 0.2
"""Singular values of a factor's unit vectors below this fraction of the largest do not count."""
DIMENSIONALITY_TOLERANCE = 0.05
"""Largest |D_i − rank/k| of a recognised tegum factor's features: more means unrepresented
features still share its dimensions, so it is no clean factor."""
OTHER = "other"
"""The shape of a factor that matches no template."""


@dataclass(frozen=True)
class Shape:
    """A uniform polytope as a template: size, rank and one vertex's sorted cosines to all vertices."""

    name: str
    k: int
    rank: int
    profile: tuple[float, ...]
    """Cosines of a vertex to every vertex (itself included), in descending order."""

    @property
    def dimensionality(self) -> float:
        """D_i of each of its features when it is a tegum factor: rank / k."""
        return self.rank / self.k


@dataclass(frozen=True)
class TegumFactor:
    """One connected component of a model's interference graph, and what it is."""

    features: tuple[int, ...]
    """Feature indices, ascending."""
    shape: str
    """A `Shape` name, or ``"other"``."""
    rank: int
    """Number of hidden dimensions the factor's directions span."""
    dimensionality: tuple[float, ...]
    """D_i of each feature (aligned with `features`), measured in the whole model."""
    deviation: float
    """Largest |cosine − template| of the matched shape; ``nan`` for ``"other"``."""

    @property
    def k(self) -> int:
        return len(self.features)


# --- templates ---------------------------------------------------------------------------------


def _polygon(k: int) -> Tensor:
    angles = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    return torch.stack([angles.cos(), angles.sin()], -1)


def _simplex(k: int) -> Tensor:
    """k unit vectors with pairwise cosine −1/(k − 1), spanning k − 1 dimensions."""
    centred = torch.eye(k, dtype=torch.float64) - 1.0 / k
    return unit_directions(centred)


def _cross_polytope(r: int) -> Tensor:
    eye = torch.eye(r, dtype=torch.float64)
    return torch.cat([eye, -eye])


def _square_antiprism() -> Tensor:
    """Two squares, one turned by 45°, at heights ±1/√3: the antiprism whose D_i is exactly 3/8."""
    top = torch.arange(4, dtype=torch.float64) * math.pi / 2
    angles = torch.cat([top, top + math.pi / 4])
    z = torch.tensor([1.0] * 4 + [-1.0] * 4, dtype=torch.float64) / math.sqrt(3)
    r = math.sqrt(2 / 3)
    return torch.stack([r * angles.cos(), r * angles.sin(), z], -1)


def _cube() -> Tensor:
    corners = torch.tensor([[(i >> b) & 1 for b in range(3)] for i in range(8)], dtype=torch.float64)
    return (2 * corners - 1) / math.sqrt(3)


def _shape(name: str, vertices: Tensor) -> Shape:
    profile = torch.sort(vertices @ vertices.T, dim=-1, descending=True).values[0]
    rank = int(torch.linalg.matrix_rank(vertices))
    return Shape(name, vertices.shape[0], rank, tuple(round(float(c), 6) for c in profile))


SHAPES: tuple[Shape, ...] = (
    _shape("single", torch.ones(1, 1, dtype=torch.float64)),
    _shape("digon", _simplex(2)),
    _shape("triangle", _simplex(3)),
    _shape("tetrahedron", _simplex(4)),
    _shape("pentagon", _polygon(5)),
    _shape("square antiprism", _square_antiprism()),
    _shape("cube", _cube()),
    # Cross polytopes are orthogonal antipodal pairs: as tegum factors they split into digons,
    # but `classify_shape` names them when given the vectors directly.
    _shape("square", _cross_polytope(2)),
    _shape("octahedron", _cross_polytope(3)),
)
"""The templates, ordered by size then by rank."""

SHAPE_NAMES: tuple[str, ...] = tuple(s.name for s in SHAPES) + (OTHER,)


# --- classification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeMatch:
    """What `classify_shape` found: the shape (or ``"other"``), the rank and the deviation."""

    shape: str
    rank: int
    deviation: float


def vector_rank(W: Float[Tensor, "k hidden"], tolerance: float = RANK_TOLERANCE) -> int:
    """Dimensions spanned by the unit directions of ``W [k, hidden]`` (singular values above
    ``tolerance`` × the largest)."""
    s = torch.linalg.svdvals(unit_directions(W).double())
    return int((s > tolerance * s.max()).sum()) if s.numel() else 0


def classify_shape(W: Float[Tensor, "k hidden"], *, cosine_tolerance: float = COSINE_TOLERANCE,
                   norm_tolerance: float = NORM_TOLERANCE,
                   rank_tolerance: float = RANK_TOLERANCE) -> ShapeMatch:
    """Which uniform polytope the vectors ``W [k, hidden]`` form (rotation- and scale-invariant).

    Matches a template of the same size and rank when the norms agree within `norm_tolerance`
    (relative) and every vector's sorted cosines to the others are within `cosine_tolerance` of the
    template's. **Returns:** a `ShapeMatch`; ``"other"`` (deviation ``nan``) when nothing matches.
    """
    W = torch.as_tensor(W).double()
    rank = vector_rank(W, rank_tolerance)
    norms = feature_norms(W)
    if W.shape[0] == 0 or float((norms.max() - norms.min()) / norms.max().clamp_min(1e-12)) > norm_tolerance:
        return ShapeMatch(OTHER, rank, math.nan)
    U = unit_directions(W)
    profiles = torch.sort(U @ U.T, dim=-1, descending=True).values
    for shape in SHAPES:
        if shape.k != W.shape[0] or shape.rank != rank:
            continue
        deviation = float((profiles - torch.tensor(shape.profile, dtype=W.dtype)).abs().max())
        if deviation <= cosine_tolerance:
            return ShapeMatch(shape.name, rank, deviation)
    return ShapeMatch(OTHER, rank, math.nan)


# --- decomposition -----------------------------------------------------------------------------


def interference_graph(W: Float[Tensor, "*inst feat hidden"], *, edge_threshold: float = EDGE_THRESHOLD,
                       norm_threshold: float = REPRESENTED_THRESHOLD) -> Bool[Tensor, "*inst feat feat"]:
    """Adjacency of the interference graph: represented i ≠ j with |cos(W_i, W_j)| > edge_threshold.

    **Arguments:** ``W [feat, hidden]`` (leading batch axes allowed). **Returns:** bool ``[feat, feat]``.
    """
    U = unit_directions(W)
    on = feature_norms(W) > norm_threshold
    adjacent = (U @ U.transpose(-1, -2)).abs() > edge_threshold
    adjacent &= on.unsqueeze(-1) & on.unsqueeze(-2)
    return adjacent & ~torch.eye(W.shape[-2], dtype=torch.bool, device=W.device)


def connected_components(adjacency: Tensor, nodes: Iterable[int]) -> list[tuple[int, ...]]:
    """Connected components among `nodes` of a symmetric bool ``adjacency [feat, feat]``.

    **Returns:** components as ascending index tuples, ordered by their first index.
    """
    neighbours = {i: adjacency[i].nonzero().flatten().tolist() for i in nodes}
    seen: set[int] = set()
    components = []
    for start in sorted(neighbours):
        if start in seen:
            continue
        stack, members = [start], {start}
        while stack:
            for j in neighbours[stack.pop()]:
                if j not in members:
                    members.add(j)
                    stack.append(j)
        seen |= members
        components.append(tuple(sorted(members)))
    return components


def tegum_factors(W: Float[Tensor, "feat hidden"], *, edge_threshold: float = EDGE_THRESHOLD,
                  norm_threshold: float = REPRESENTED_THRESHOLD, cosine_tolerance: float = COSINE_TOLERANCE,
                  norm_tolerance: float = NORM_TOLERANCE, rank_tolerance: float = RANK_TOLERANCE,
                  dimensionality_tolerance: float = DIMENSIONALITY_TOLERANCE) -> tuple[TegumFactor, ...]:
    """Split one model's represented features into tegum factors and name each factor's shape.

    **Arguments:** ``W [feat, hidden]``; thresholds as in `interference_graph` and `classify_shape`;
    a matched shape whose features' D_i are not within `dimensionality_tolerance` of rank/k is "other".
    **Returns:** one `TegumFactor` per connected component of the interference graph, ordered by
    first feature; unrepresented features (‖W_i‖ ≤ norm_threshold) belong to none.
    """
    W = torch.as_tensor(W)
    if W.ndim != 2:
        raise ValueError(f"tegum_factors takes one model W [feat, hidden], got shape {tuple(W.shape)}")
    adjacency = interference_graph(W, edge_threshold=edge_threshold, norm_threshold=norm_threshold)
    on = (feature_norms(W) > norm_threshold).nonzero().flatten().tolist()
    dims = feature_dimensionality(W)
    factors = []
    for members in connected_components(adjacency, on):
        index = list(members)
        match = classify_shape(W[index], cosine_tolerance=cosine_tolerance, norm_tolerance=norm_tolerance,
                               rank_tolerance=rank_tolerance)
        if float((dims[index] - match.rank / len(index)).abs().max()) > dimensionality_tolerance:
            match = ShapeMatch(OTHER, match.rank, math.nan)
        factors.append(TegumFactor(members, match.shape, match.rank, tuple(float(d) for d in dims[index]),
                                   match.deviation))
    return tuple(factors)


# --- summaries ---------------------------------------------------------------------------------


def shape_counts(factors: Sequence[TegumFactor], *, features: bool = False) -> dict[str, int]:
    """How many factors (or, with ``features=True``, features) of each shape, in `SHAPE_NAMES` order,
    shapes that do not occur included as 0."""
    counts = dict.fromkeys(SHAPE_NAMES, 0)
    for factor in factors:
        counts[factor.shape] += factor.k if features else 1
    return counts


@dataclass(frozen=True)
class Peak:
    """How many D_i lie near a fraction, against the windows of the same width either side."""

    name: str
    value: float
    count: int
    left: int
    right: int

    def is_peak(self, prominence: float = 1.0, min_count: int = 1) -> bool:
        """At least `min_count` D_i in the window, and more than `prominence` × either neighbour's
        (prominence 1: a local maximum of the histogram)."""
        return self.count >= min_count and self.count > prominence * max(self.left, self.right)


def dimensionality_peaks(D: Tensor, fractions: Mapping[str, float], width: float) -> tuple[Peak, ...]:
    """Count D_i in the window [f − w, f + w) around each fraction f (w = `width`) and in the windows
    of the same width just left and right of it; a neighbouring window that would overlap another
    fraction's window moves past it (so 3/8 and 2/5, 0.025 apart, are not each other's background).

    **Arguments:** ``D [N]`` (any shape; flattened), e.g. the D_i of the represented features of
    every model; `fractions` name → value. **Returns:** one `Peak` per fraction, in the given order.
    """
    D = torch.as_tensor(D).flatten().double()

    def count(low: float, high: float) -> int:
        return int(((D >= low) & (D < high)).sum())

    peaks = []
    for name, f in fractions.items():
        others = [c for c in fractions.values() if c != f]
        left = _clear_window(f - 3 * width, -width / 2, width, others)
        right = _clear_window(f + width, width / 2, width, others)
        peaks.append(Peak(name, f, count(f - width, f + width), count(left, left + 2 * width),
                          count(right, right + 2 * width)))
    return tuple(peaks)


def _clear_window(low: float, step: float, width: float, others: Sequence[float]) -> float:
    """Slide the window [low, low + 2·width) by `step` until it overlaps none of [c − width, c + width)."""
    while any(low < c + width and c - width < low + 2 * width for c in others):
        low += step
    return low
