"""Pure measures of trained toy models: tensors in, tensors and small frozen dataclasses out."""

from .geometry import (
    GeometrySummary,
    dimensions_per_feature,
    feature_dimensionality,
    feature_norms,
    gram,
    interference,
    represented,
    represented_count,
    summarize,
    unit_directions,
)
from .theory import feature_moments, linear_optimal_loss

__all__ = [
    "GeometrySummary",
    "dimensions_per_feature",
    "feature_dimensionality",
    "feature_moments",
    "feature_norms",
    "gram",
    "interference",
    "linear_optimal_loss",
    "represented",
    "represented_count",
    "summarize",
    "unit_directions",
]
