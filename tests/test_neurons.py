# ruff: noqa: N803 - W is the paper's name for the embedding matrix
"""analysis.neurons and figures.neurons on constructed weights: each classifier says both answers."""

import itertools

import pytest
import torch
from matplotlib.figure import Figure

from superposition.analysis import neurons as nr
from superposition.figures.neurons import neuron_stack_figure, polysemanticity_figure, weight_heatmap_figure
from superposition.models import forward

from .conftest import unchecked


def dense_w(n: int = 10, m: int = 5) -> torch.Tensor:
    """The dense optimum: feature i < m alone in neuron i, the rest unrepresented. [feat, hidden]."""
    W = torch.zeros(n, m)
    W[:m] = torch.eye(m)
    return W


def pair_code_w(m: int = 5) -> torch.Tensor:
    """C(m, 2) features, each on its own pair of neurons (the paper's sparsest model). [C(m,2), m]."""
    pairs = list(itertools.combinations(range(m), 2))
    W = torch.full((len(pairs), m), -0.3)  # inhibiting negative weights elsewhere, as trained models have
    for i, (a, b) in enumerate(pairs):
        W[i, [a, b]] = 0.7
    return W


def binary_code_w() -> torch.Tensor:
    """Features 0, 1 dedicated; features 2, 3, 4 in neurons 2 and 3 as codes 10, 01, 11. [6, 4]."""
    W = torch.zeros(6, 4)
    W[0, 0] = W[1, 1] = 1.0
    W[2, 2], W[2, 3] = 0.9, -0.8
    W[3, 2], W[3, 3] = -0.8, 0.9
    W[4, 2], W[4, 3] = 0.9, 0.9
    return W


def abs_w(n: int = 3) -> torch.Tensor:
    """Each feature a ReLU(x) and a ReLU(−x) neuron: W1 [n, 2n]."""
    W = torch.zeros(n, 2 * n)
    for i in range(n):
        W[i, 2 * i], W[i, 2 * i + 1] = 1.0, -1.0
    return W


# --- neurons --------------------------------------------------------------------------------------


def test_shapes_follow_the_leading_axes():
    W = torch.randn(3, 7, 10, 4)  # [inst, snapshot, feat, hidden]
    assert nr.neuron_weights(W).shape == (3, 7, 4, 10)
    classes = nr.classify_neurons(W)
    assert classes.monosemantic.shape == (3, 7, 4) and classes.share.shape == (3, 7, 4, 10)
    feats = nr.classify_features(W)
    assert feats.dedicated.shape == (3, 7, 10) and feats.code.shape == (3, 7, 10, 4)
    exactly_one = classes.monosemantic.int() + classes.polysemantic.int() + classes.dead.int()
    assert bool((exactly_one == 1).all())


def test_dense_model_has_only_monosemantic_neurons_and_dedicated_features():
    classes = nr.classify_neurons(dense_w())
    assert classes.monosemantic.all() and classes.top_feature.tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(classes.features_per_neuron, torch.ones(5))
    feats = nr.classify_features(dense_w())
    assert feats.dedicated.tolist() == [True] * 5 + [False] * 5
    assert not feats.superposed.any() and feats.represented.sum() == 5


def test_pair_code_is_polysemantic_and_every_feature_a_distinct_pair():
    W = pair_code_w()
    classes = nr.classify_neurons(W)
    assert classes.polysemantic.all()
    torch.testing.assert_close(classes.features_per_neuron, torch.full((5,), 4.0))  # 4 equal features each
    feats = nr.classify_features(W)
    assert feats.superposed.all() and (feats.code_size == 2).all()
    codes = {tuple(c.nonzero().flatten().tolist()) for c in feats.code}
    assert codes == set(itertools.combinations(range(5), 2))


def test_monosemantic_threshold_is_a_share_of_squared_weight():
    W = torch.zeros(2, 1)
    W[0, 0] = 1.0
    W[1, 0] = 1 / 3 - 1e-3  # share 0.9+: still monosemantic
    assert nr.classify_neurons(W).monosemantic.item()
    W[1, 0] = 1 / 3 + 1e-3
    assert nr.classify_neurons(W).polysemantic.item()
    assert nr.classify_neurons(W, threshold=0.8).monosemantic.item()


def test_negative_weights_only_count_for_signed_inputs():
    W = torch.tensor([[1.0], [-1.0]])  # feature 1 can only inhibit a neuron fed U[0, 1] inputs
    assert nr.classify_neurons(W).monosemantic.item()
    signed = nr.classify_neurons(W, signed=True)
    assert signed.polysemantic.item() and signed.features_per_neuron.item() == pytest.approx(2.0)


def test_dead_neuron():
    W = torch.tensor([[1.0, 0.01], [0.0, -2.0]])
    classes = nr.classify_neurons(W)
    assert classes.dead.tolist() == [False, True]  # its only sizeable weight is negative
    assert nr.classify_neurons(W, signed=True).dead.tolist() == [False, False]


# --- features ---------------------------------------------------------------------------------------


def test_feature_codes_take_the_fewest_neurons_covering_the_weight():
    W = torch.tensor([[0.9, 0.3, 0.1, 0.0]])  # 0.81 of 0.91 is 89%: one more neuron is needed
    assert nr.feature_codes(W)[0].tolist() == [True, True, False, False]
    assert nr.feature_codes(W, coverage=0.85)[0].tolist() == [True, False, False, False]
    assert not nr.feature_codes(torch.zeros(1, 3)).any()


def test_abs_features_are_dedicated_with_a_neuron_per_sign():
    feats = nr.classify_features(abs_w(), signed=True)
    assert feats.dedicated.all() and (feats.code_size == 2).all()
    # The same weights read with unsigned inputs: the ReLU(−x) neurons are dead, each feature one neuron.
    unsigned = nr.classify_features(abs_w())
    assert unsigned.dedicated.all() and (unsigned.code_size == 1).all()


def test_shared_groups_find_the_binary_code():
    groups = nr.shared_groups(binary_code_w())
    assert len(groups) == 1
    group = groups[0]
    assert group.features == (2, 3, 4) and group.neurons == (2, 3)
    assert group.codes == ((2,), (3,), (2, 3)) and group.binary_code
    assert nr.shared_groups(dense_w()) == []


def test_shared_group_without_distinct_codes_is_not_a_binary_code():
    W = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # features 0 and 1 both on neuron 0 alone
    (group,) = nr.shared_groups(W)
    assert group.features == (0, 1) and group.neurons == (0,) and not group.binary_code
    with pytest.raises(ValueError, match="one model"):
        unchecked(nr.shared_groups)(torch.zeros(2, 3, 2))


# --- rescaling and the asymmetric motif -----------------------------------------------------------


def test_rescaling_keeps_the_function_and_sets_the_largest_input_weight_to_one():
    g = torch.Generator().manual_seed(0)
    params = {"W1": torch.randn(2, 6, 4, generator=g), "W2": torch.randn(2, 4, 6, generator=g),
              "b": torch.randn(2, 6, generator=g)}
    params["W1"][0, :, 3] = 0.0  # a dead neuron stays as it is
    scaled = nr.rescale_neurons(params["W1"], params["W2"])
    peak = scaled.W1.abs().amax(-2)
    torch.testing.assert_close(peak[1], torch.ones(4))
    assert peak[0, 3] == 0 and scaled.scale[0, 3] == 1
    x = torch.rand(2, 32, 6, generator=g) * 2 - 1
    same = forward("abs_mlp", {**params, "W1": scaled.W1, "W2": scaled.W2}, x).output
    torch.testing.assert_close(same, forward("abs_mlp", params, x).output)


def motif_weights(ratio: float = 0.5, inhibit: float = -1.2, out_weak: float | None = None):
    """Neuron 0 stores feature 0 (input 2) and feature 1 (input −2·ratio, output reciprocal);
    neuron 1 fires on feature 0 and inhibits output 1; neuron 2 is a plain ReLU(x) for feature 2."""
    W1, W2 = torch.zeros(3, 3), torch.zeros(3, 3)
    W1[0, 0], W1[1, 0] = 2.0, -2.0 * ratio
    W2[0, 0] = 0.5
    W2[0, 1] = 0.5 / ratio if out_weak is None else out_weak
    W1[0, 1], W2[1, 1] = 1.0, inhibit
    W1[2, 2], W2[2, 2] = 1.0, 1.0
    return W1, W2


def test_asymmetric_motif_found_with_its_parts():
    (motif,) = nr.asymmetric_motifs(*motif_weights())
    assert (motif.instance, motif.neuron, motif.strong, motif.weak, motif.inhibitor) == (0, 0, 0, 1, 1)
    assert motif.ratio == pytest.approx(0.5) and motif.gain_ratio == pytest.approx(1.0)
    assert motif.inhibition == pytest.approx(0.6)
    W1, W2 = motif_weights()
    batched = nr.asymmetric_motifs(torch.stack([torch.eye(3), W1]), torch.stack([torch.eye(3), W2]))
    assert [(m.instance, m.neuron) for m in batched] == [(1, 0)]


def crowded_motif():
    """The motif's neuron also stores two more features, nearly as strongly as the weak one (the pair holds 76%)."""
    base1, base2 = motif_weights()
    W1, W2 = torch.zeros(5, 3), torch.zeros(3, 5)
    W1[:3], W2[:, :3] = base1, base2
    W1[3, 0] = W1[4, 0] = 0.9
    assert nr.asymmetric_motifs(W1, W2, purity=0.7)  # every other part of the motif is there
    return W1, W2


@pytest.mark.parametrize("case", ["no inhibitor", "equal weights", "not reciprocal", "negligible weak", "crowded"])
def test_asymmetric_motif_rejected_without_each_part(case):
    weights = {"no inhibitor": motif_weights(inhibit=0.0), "equal weights": motif_weights(ratio=1.0),
               "not reciprocal": motif_weights(out_weak=0.2), "negligible weak": motif_weights(ratio=0.05),
               "crowded": crowded_motif()}[case]
    assert nr.asymmetric_motifs(*weights) == []


# --- figures ------------------------------------------------------------------------------------------


def test_figures_draw_one_panel_per_model():
    W = torch.stack([dense_w(), pair_code_w()])
    fig = neuron_stack_figure(W, [1.0, 0.01])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert "5 monosemantic" in fig.axes[0].get_title() and "5 polysemantic" in fig.axes[1].get_title()
    big = torch.randn(2, 30, 8)
    assert len(neuron_stack_figure(big, [1.0, 0.1], importance=0.8 ** torch.arange(30.0), signed=True).axes) == 3
    assert len(weight_heatmap_figure(W, [1.0, 0.01]).axes) == 3
    assert len(polysemanticity_figure(W, [1.0, 0.01]).axes) == 2
    with pytest.raises(ValueError, match="one per instance"):
        neuron_stack_figure(W, [1.0])
