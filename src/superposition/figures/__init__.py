"""Static figures in the paper's style (matplotlib). Plotting only draws what `analysis` computes.

Every function takes plain tensors plus the values its labels come from, and returns a
`matplotlib.figure.Figure` built without pyplot (no global state, no display needed; Jupyter still
shows it). `save_figure` writes a PNG atomically.

One module per part of the paper; `style` holds what they share (colour maps, labels, the PNG
writer). Vocabulary: ``W [inst, feat, hidden]``, ``b [inst, feat]``; p = `feature_probability` = 1 − S.
"""

from .core import POLYTOPE_DIMENSIONALITIES, basic_figure, dimensionality_figure, intro_figure, loss_curve_figure
from .style import DPI, GRAM_CMAP, IMPORTANCE_CMAP, SUPERPOSITION_CMAP, Probability, save_figure, sparsity_label

__all__ = ["DPI", "GRAM_CMAP", "IMPORTANCE_CMAP", "POLYTOPE_DIMENSIONALITIES", "SUPERPOSITION_CMAP", "Probability",
           "basic_figure", "dimensionality_figure", "intro_figure", "loss_curve_figure", "save_figure",
           "sparsity_label"]
