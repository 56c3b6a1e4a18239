import pytest
import torch

import superposition as sp
from superposition.models import (
    forward,
    gradient_fn,
    init_params,
    loss_and_grads,
    loss_and_grads_sparse,
    loss_and_grads_unrolled,
    param_shapes,
    target,
)

KINDS = ["linear", "relu_output", "relu_hidden", "abs_mlp"]


def random_case(kind, n=6, m=3, inst=4, batch=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = sp.ModelConfig(kind, n, m)
    params = {k: torch.randn(s, generator=gen, dtype=torch.float64) * 0.5
              for k, s in param_shapes(model, inst).items()}
    x = torch.rand(inst, batch, n, generator=gen, dtype=torch.float64)
    if kind == "abs_mlp":
        x = 2 * x - 1
    x = torch.where(torch.rand(x.shape, generator=gen, dtype=torch.float64) < 0.5, x, 0.0)
    importance = torch.rand(inst, n, generator=gen, dtype=torch.float64)
    return params, x, importance


@pytest.mark.parametrize("gradients", [loss_and_grads, loss_and_grads_unrolled], ids=["bmm", "unrolled"])
@pytest.mark.parametrize("kind", KINDS)
def test_hand_written_gradients_equal_autograd(kind, gradients):
    params, x, importance = random_case(kind)
    loss, grads = gradients(kind, params, x, importance)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    out = forward(kind, leaves, x).output
    ref = (importance.unsqueeze(1) * (out - target(kind, x)) ** 2).mean(dim=(1, 2))
    ref.sum().backward()
    torch.testing.assert_close(loss, ref.detach())
    for name, leaf in leaves.items():
        torch.testing.assert_close(grads[name], leaf.grad, msg=f"gradient of {name}")


@pytest.mark.parametrize("gradients", [loss_and_grads, loss_and_grads_unrolled], ids=["bmm", "unrolled"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_with_a_separate_goal_and_an_l1_penalty_equal_autograd(kind, gradients):
    params, x, importance = random_case(kind, seed=1)
    goal = target(kind, x.roll(1, dims=1))
    l1 = torch.tensor([0.0, 0.1, 0.5, 2.0], dtype=torch.float64)
    loss, grads = gradients(kind, params, x, importance, goal=goal, l1=l1)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    fwd = forward(kind, leaves, x)
    ref = (importance.unsqueeze(1) * (fwd.output - goal) ** 2).mean(dim=(1, 2))
    penalty = l1 * fwd.hidden.abs().sum(-1).mean(-1)
    (ref + penalty).sum().backward()
    torch.testing.assert_close(loss, ref.detach())  # the reported loss is the squared error alone
    for name, leaf in leaves.items():
        torch.testing.assert_close(grads[name], leaf.grad, msg=f"gradient of {name}")


def as_slots(x):
    """x ``[inst, batch, feat]`` as (index, value) slots: the active features first, then one more slot than
    the fullest example needs; unused slots have value 0 and point at the example's first slot's feature
    (a duplicate of an active index, which the sparse gradients must tolerate)."""
    order = (x == 0).to(torch.int8).argsort(dim=-1, stable=True)
    slots = int((x != 0).sum(-1).max()) + 1
    index = order[..., :slots]
    value = x.gather(-1, index)
    index = torch.where(value != 0, index, index[..., :1])
    return index, value


@pytest.mark.parametrize("unrolled", [False, True], ids=["bmm", "unrolled"])
@pytest.mark.parametrize("kind", KINDS)
def test_sparse_input_gradients_equal_the_dense_ones(kind, unrolled):
    params, x, importance = random_case(kind, n=12, seed=2)
    l1 = torch.tensor([0.0, 0.1, 0.5, 2.0], dtype=torch.float64)
    index, value = as_slots(x)
    assert index.shape[-1] < x.shape[-1]
    for penalty in (None, l1):
        ref = loss_and_grads(kind, params, x, importance, l1=penalty)
        loss, grads = loss_and_grads_sparse(kind, params, index, value, importance, l1=penalty, unrolled=unrolled)
        torch.testing.assert_close(loss, ref.loss)
        assert grads.keys() == ref.grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, ref.grads[name], msg=f"gradient of {name}")


def test_compiled_steps_unroll_small_hidden_sizes_only():
    assert gradient_fn(sp.ModelConfig(n_hidden=2), compiled=True) is loss_and_grads_unrolled
    assert gradient_fn(sp.ModelConfig(n_hidden=2), compiled=False) is loss_and_grads
    assert gradient_fn(sp.ModelConfig(n_features=200, n_hidden=20), compiled=True) is loss_and_grads


def test_forward_definitions():
    params, x, _ = random_case("linear")
    W, b = params["W"], params["b"]
    expected = torch.einsum("ifh,ijh,ibj->ibf", W, W, x) + b[:, None]
    torch.testing.assert_close(forward("linear", params, x).output, expected)
    torch.testing.assert_close(forward("relu_output", params, x).output, torch.relu(expected))
    h = torch.relu(torch.einsum("ibf,ifh->ibh", x, W))
    torch.testing.assert_close(forward("relu_hidden", params, x).output,
                               torch.relu(torch.einsum("ibh,ifh->ibf", h, W) + b[:, None]))


def test_init_is_per_instance_xavier_and_independent_of_batch_mates():
    model = sp.ModelConfig("relu_output", 400, 100)
    one = init_params(model, [11])["W"]
    many = init_params(model, [5, 11, 17])
    torch.testing.assert_close(many["W"][1:2], one, rtol=0, atol=0)
    assert abs(one.std().item() - (2 / 500) ** 0.5) < 0.002  # xavier of one [feat, hidden] matrix
    assert torch.count_nonzero(many["b"]) == 0
    assert not torch.equal(many["W"][0], many["W"][2])


def test_toy_model_module_runs():
    params, x, _ = random_case("abs_mlp")
    model = sp.ToyModel(sp.ModelConfig("abs_mlp", 6, 3), {k: v.float() for k, v in params.items()})
    assert model(x.float()).shape == x.shape
    assert model.n_instances == 4
    assert "kind=abs_mlp, n_instances=4, n_features=6, n_hidden=3" in repr(model)


def test_sparse_gradients_in_blocks_of_rows_equal_one_block(monkeypatch):
    from superposition.models import fused

    params, x, importance = random_case("relu_output", n=12, batch=40, seed=4)
    index, value = as_slots(x)
    whole = loss_and_grads_sparse("relu_output", params, index, value, importance)
    monkeypatch.setattr(fused, "OUTPUT_BLOCK_ELEMENTS", 4 * 12 * 7)  # blocks of 7 rows, the last of 5
    blocks = loss_and_grads_sparse("relu_output", params, index, value, importance)
    torch.testing.assert_close(blocks.loss, whole.loss)
    for name, grad in blocks.grads.items():
        torch.testing.assert_close(grad, whole.grads[name], msg=f"gradient of {name}")
