"""Static figures in the paper's style (matplotlib). Plotting only draws what `analysis` computes.

Every function takes plain tensors plus the values its labels come from, and returns a
`matplotlib.figure.Figure` built without pyplot (no global state, no display needed). It is our
subclass `style.Figure`, which shows itself in Jupyter as a PNG without ``%matplotlib inline``.
`save_figure` writes a PNG atomically. The figures that draw one run's weights also take the
`Run` itself, or its directory, in place of the tensors (``intro_figure(run)``; `runs.accepts_run`).

One module per part of the paper; `style` holds what they share (colour maps, labels, the PNG
writer). Vocabulary: ``W [inst, feat, hidden]``, ``b [inst, feat]``; p = `feature_probability` = 1 − S.
"""

from .core import POLYTOPE_DIMENSIONALITIES, basic_figure, dimensionality_figure, intro_figure, loss_curve_figure
from .correlated import set_geometry_figure, set_gram_figure
from .dynamics import dynamics_figure, gram_trajectory_figure
from .geometry import (
    dimensionality_histogram_figure,
    geometry_graph_figure,
    polytope_counts_figure,
    relative_loss_figure,
    shape_dimensionality_figure,
)
from .neurons import neuron_stack_figure, polysemanticity_figure, weight_heatmap_figure
from .nonuniform import family_geometry_figure, family_loss_figure
from .phase import OrderRow, PhaseRow, order_parameter_figure, phase_diagram_figure
from .robustness import adversarial_figure, l1_figure, loss_terms_figure
from .style import DPI, GRAM_CMAP, IMPORTANCE_CMAP, SUPERPOSITION_CMAP, Probability, save_figure, sparsity_label

__all__ = ["DPI", "GRAM_CMAP", "IMPORTANCE_CMAP", "POLYTOPE_DIMENSIONALITIES", "SUPERPOSITION_CMAP", "Probability",
           "basic_figure", "dimensionality_figure", "family_geometry_figure", "family_loss_figure", "intro_figure",
           "dimensionality_histogram_figure", "geometry_graph_figure", "polytope_counts_figure", "relative_loss_figure",
           "shape_dimensionality_figure",
           "OrderRow", "PhaseRow", "order_parameter_figure", "phase_diagram_figure",
           "adversarial_figure", "l1_figure", "loss_terms_figure",
           "set_geometry_figure", "set_gram_figure", "dynamics_figure", "gram_trajectory_figure",
           "neuron_stack_figure", "polysemanticity_figure", "weight_heatmap_figure",
           "loss_curve_figure", "save_figure", "sparsity_label"]
