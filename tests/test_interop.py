"""ARENA / tms-kit weights and inputs: the converters move axes only, so their forward pass on their
layout equals ours on the converted tensors."""

import pytest
import torch

import superposition as sp
from superposition import figures
from superposition.interop import (
    inputs_from_arena,
    inputs_to_arena,
    params_from_arena,
    params_to_arena,
    run_from_arena,
)
from superposition.models import forward

G = torch.Generator().manual_seed(0)
W_ARENA = torch.randn(3, 2, 5, generator=G)  # [inst, hidden, feat]
B_ARENA = torch.randn(3, 5, generator=G)  # [inst, feat]


def arena_forward(W, b_final, x):
    """ARENA's Model.forward: x [batch, inst, feat] -> ReLU(Wᵀ W x + b_final), [batch, inst, feat]."""
    h = torch.einsum("bif,ihf->bih", x, W)
    return torch.relu(torch.einsum("bih,ihf->bif", h, W) + b_final)


def test_converted_weights_and_inputs_compute_the_same_outputs():
    x = torch.rand(7, 3, 5, generator=G)  # [batch, inst, feat]
    params = params_from_arena(W_ARENA, B_ARENA)
    assert params["W"].shape == (3, 5, 2) and params["b"].shape == (3, 5)
    ours = forward("relu_output", params, inputs_from_arena(x)).output  # [inst, batch, feat]
    torch.testing.assert_close(inputs_to_arena(ours), arena_forward(W_ARENA, B_ARENA, x))


def test_the_converters_round_trip():
    back = params_to_arena(params_from_arena(W_ARENA, B_ARENA))
    assert torch.equal(back["W"], W_ARENA) and torch.equal(back["b_final"], B_ARENA)
    x = torch.rand(4, 3, 5, generator=G)
    assert torch.equal(inputs_to_arena(inputs_from_arena(x)), x)


def test_wrong_layouts_are_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"W \[inst, hidden, feat\].*\(3, 5, 2\)"):
        params_from_arena(W_ARENA.transpose(1, 2), B_ARENA)  # already in our layout
    with pytest.raises(ValueError, match="tied model"):
        params_to_arena({"W1": W_ARENA})


def test_a_run_from_arena_weights_works_with_the_analysis_and_figures():
    p = torch.tensor([1.0, 0.3, 0.1])[:, None].expand(3, 5)  # ARENA: feature_probability [inst, feat]
    importance = 0.9 ** torch.arange(5.0)
    run = run_from_arena(W_ARENA, B_ARENA, p, importance, steps=100)
    assert torch.equal(run.W, W_ARENA.transpose(1, 2))
    assert run.metrics.feature_probability == pytest.approx([1.0, 0.3, 0.1])
    torch.testing.assert_close(run.importance, importance.expand(3, 5))
    assert torch.isfinite(torch.tensor(run.metrics.final_loss)).all()
    torch.testing.assert_close(torch.tensor(run.metrics.final_loss), sp.evaluate(run.config, run.params))
    assert repr(run).startswith("Run(relu_output 5→2, 3 instances")
    assert len(figures.intro_figure(run).axes) == 3 + 1


def test_a_run_from_arena_refuses_untied_kinds_and_bad_probabilities():
    with pytest.raises(sp.ConfigError, match="abs_mlp"):
        run_from_arena(W_ARENA, B_ARENA, 0.1, kind="abs_mlp")
    with pytest.raises(ValueError, match=r"feature_probability has shape \(4,\)"):
        run_from_arena(W_ARENA, B_ARENA, torch.ones(4))
