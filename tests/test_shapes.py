"""The analysis functions' shape annotations are enforced in the test suite (conftest.py installs
jaxtyping's import hook with beartype for superposition.analysis): wrong ranks, inconsistent sizes and
wrong dtypes fail at the call."""

import pytest
import torch
from jaxtyping import TypeCheckError

from superposition.analysis import (
    dimensions_per_feature,
    feature_norms,
    gram,
    linear_loss_terms,
    represented_count,
    rescale_neurons,
)


def test_the_hook_is_active_for_the_analysis_modules():
    assert hasattr(feature_norms, "__wrapped__")  # jaxtyped's wrapper


def test_good_shapes_pass_with_any_leading_instance_axes():
    W = torch.randn(3, 5, 2)
    assert gram(W).shape == (3, 5, 5) and gram(W[0]).shape == (5, 5)
    assert dimensions_per_feature(torch.randn(4, 3, 5, 2)).shape == (4, 3)
    assert represented_count(W).dtype == torch.int64


def test_a_wrong_rank_fails_at_the_call():
    with pytest.raises(TypeCheckError, match="W"):
        feature_norms(torch.ones(3))


def test_inconsistent_sizes_between_arguments_fail():
    # W2 must be [inst, hidden, feat] with W1's inst, feat and hidden.
    with pytest.raises(TypeCheckError, match="W2"):
        rescale_neurons(torch.randn(2, 5, 3), torch.randn(2, 4, 5))
    with pytest.raises(TypeCheckError, match="b"):
        linear_loss_terms(torch.randn(2, 5, 3), torch.randn(2, 4), torch.ones(2, 5), torch.ones(2, 5))


def test_a_wrong_dtype_fails():
    assert gram(torch.ones(3, 5, 2, dtype=torch.int64)).dtype == torch.float32  # integers are promoted
    with pytest.raises(TypeCheckError):
        gram(torch.ones(3, 5, 2, dtype=torch.bool))
    with pytest.raises(TypeCheckError):
        rescale_neurons(torch.ones(2, 5, 3, dtype=torch.int64), torch.ones(2, 3, 5))
