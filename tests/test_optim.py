import pytest
import torch

import superposition as sp
from superposition.optim import adam_update, lr_at, sgd_update


@pytest.mark.parametrize("optimizer, decay", [("adamw", None), ("adam", None), ("adam", 0.1)])
def test_update_matches_torch_optim(optimizer, decay):
    cfg = sp.TrainConfig(optimizer=optimizer, weight_decay=decay, lr=0.01)
    gen = torch.Generator().manual_seed(0)
    ours = torch.randn(3, 4, generator=gen)
    ref = ours.clone().requires_grad_(True)
    kind = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    opt = kind([ref], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.resolved_weight_decay, foreach=False)
    m, v = torch.zeros_like(ours), torch.zeros_like(ours)
    for t in range(1, 6):
        grad = torch.randn(3, 4, generator=gen)
        ref.grad = grad.clone()
        opt.step()
        adam_update(ours, grad, m, v, torch.tensor(cfg.lr), torch.tensor(t), cfg)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-6, atol=1e-7)


def test_schedules():
    warm = sp.TrainConfig(steps=100, lr=1.0, warmup_steps=10, schedule="cosine")
    assert lr_at(0, warm) == pytest.approx(0.1)
    assert lr_at(9, warm) == pytest.approx(1.0)
    assert lr_at(10, warm) == pytest.approx(1.0)
    assert lr_at(55, warm) == pytest.approx(0.5)
    linear = sp.TrainConfig(steps=100, lr=1.0, schedule="linear")
    assert lr_at(50, linear) == pytest.approx(0.5)
    assert lr_at(99, sp.TrainConfig(steps=100, lr=2.0)) == 2.0


@pytest.mark.parametrize("momentum, nesterov, decay", [(0.0, False, None), (0.9, False, 0.01), (0.9, True, None)])
def test_sgd_update_matches_torch_optim(momentum, nesterov, decay):
    cfg = sp.TrainConfig(optimizer="sgd", lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=decay)
    gen = torch.Generator().manual_seed(1)
    ours = torch.randn(3, 4, generator=gen)
    ref = ours.clone().requires_grad_(True)
    opt = torch.optim.SGD([ref], lr=cfg.lr, momentum=momentum, nesterov=nesterov,
                          weight_decay=cfg.resolved_weight_decay, foreach=False)
    buf = torch.zeros_like(ours)
    for _ in range(5):
        grad = torch.randn(3, 4, generator=gen)
        ref.grad = grad.clone()
        opt.step()
        sgd_update(ours, grad, buf, torch.tensor(cfg.lr), cfg)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-6, atol=1e-7)
