# ruff: noqa: N803, N806 - W is the paper's name for the embedding matrix
"""The `confused-feature` recipe: the exact dense loss against theory, the claims on hand-built
models, and a small seeded run."""

import math
from dataclasses import replace

import pytest
import torch

import superposition as sp
from superposition.experiments import confused_feature as cf


def at_angles(degrees) -> torch.Tensor:
    """Unit W ``[inst, 2, 1]`` at the given angles from the first feature's axis."""
    t = torch.deg2rad(torch.tensor(degrees, dtype=torch.float64))
    return torch.stack([t.cos(), t.sin()], -1).unsqueeze(-1)


def test_dense_loss_of_a_unit_direction_without_clipping_is_one_24th():
    """W = e₁ with b = (0, 1/2): feature 1 exact, feature 2 predicted by its mean: (0 + 1/12) / 2."""
    W = at_angles([0.0])
    b = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    assert float(cf.dense_loss(W, b)[0]) == pytest.approx(1 / 24, rel=1e-4)  # midpoint rule: error ~1/GRID²


def test_the_output_relu_favours_tilted_directions_over_the_confused_one():
    """The tie of the linear part is broken by clipping: 45° and the axes lose 1/24, ~15°/75° less."""
    loss = cf.best_bias_loss(at_angles([0.0, 45.0, 75.0]))
    assert float(loss[1]) == pytest.approx(1 / 24, rel=1e-4)
    assert float(loss[2]) < float(loss[1]) - 1e-5


def analysis_at(degrees, loss: float = 1 / 24) -> cf.ConfusedAnalysis:
    w = at_angles(degrees)[..., 0]
    return cf.ConfusedAnalysis(w, torch.tensor(degrees, dtype=torch.float64), w[:, 0] * w[:, 1] > 0,
                               torch.full((len(degrees),), loss, dtype=torch.float64), 1 / 24)


def test_confused_claim_holds_for_45_degrees_only():
    assert cf.confused_claim(analysis_at([45.0] * 10)).held
    assert not cf.confused_claim(analysis_at([75.0] * 10)).held
    assert not cf.confused_claim(analysis_at([135.0] * 10)).held  # W₁ = −W₂: antipodal, not confused
    assert not cf.confused_claim(analysis_at([45.0] * 5 + [80.0] * 5)).held


def test_valley_claim_fails_off_the_valley():
    assert cf.valley_claim(analysis_at([30.0] * 3)).held
    off = analysis_at([30.0] * 3, loss=0.05)
    assert not cf.valley_claim(off).held and "cause" not in cf.valley_claim(off).measured  # no curve: no cause
    loss = off.loss.clone()
    loss[0] = 1 / 24  # model 0 on the valley, models 1 and 2 off it and still learning
    falling = replace(off, loss=loss, late_fall=(0.0, 0.05, 0.2))
    assert cf.valley_claim(falling).measured.endswith(
        "; cause: not settled: the 2 models off the valley (‖W‖ 1, 1) still lost 5.0%–20.0% over the second half "
        "of training")
    stalled = replace(falling, late_fall=(0.0, 0.05, 0.001))  # one off the valley had stopped: no cause
    assert "cause" not in cf.valley_claim(stalled).measured


@pytest.mark.slow
def test_dense_equal_features_land_on_the_unit_circle_valley():
    """The best of four independent models sits on the valley (a restart can stall in a worse local
    minimum: the quick run had one with ‖W₂‖ = 1.38, b₂ = −0.71, loss 0.059)."""
    config = cf.configs(quick=True)[cf.RUN]
    config = replace(config, train=replace(config.train, steps=1500, restarts=4))
    run = sp.train(config, compile=False, progress=False)
    a = cf.analyse({cf.RUN: run})
    assert a.weights.shape == (4, 2) and len(set(a.angle.tolist())) == 4  # independent models
    best = int(a.loss.argmin())
    assert abs(float(a.weights[best].norm()) - 1) < 0.05
    assert float(a.loss[best]) == pytest.approx(1 / 24, rel=cf.LOSS_TOLERANCE)
    assert math.isclose(a.confused_loss, 1 / 24, rel_tol=1e-4)


def test_unconfused_claim_says_why_from_the_angle_profile():
    """A profile lowest at 22.5°/67.5° and peaking at 45°, with the norm curving up there: the message
    names the lowest angle and the saddle; a profile lowest at 45° gives no cause."""
    angles = tuple(float(x) for x in range(0, 91, 15)) + (22.5, 67.5)
    order = sorted(range(len(angles)), key=lambda i: angles[i])
    angles = tuple(angles[i] for i in order)
    bump = {0.0: 1.0, 15.0: 0.3, 22.5: 0.0, 30.0: 0.3, 45.0: 1.0, 60.0: 0.3, 67.5: 0.0, 75.0: 0.3, 90.0: 1.0}
    profile = tuple(0.04163 + 3.6e-5 * bump[x] for x in angles)
    a = replace(analysis_at([20.0, 70.0, 50.0], loss=0.041628), confused_loss=profile[angles.index(45.0)],
                profile_angles=angles, profile_loss=profile, confused_norm_loss=(0.0417, 0.0417))
    msg = cf.confused_claim(a).measured
    assert "; cause: the loss does not select 45°" in msg
    assert "lowest at 22.5° and 67.5° (0.041630)" in msg and "the highest point of the profile" in msg
    assert "a saddle: a maximum along the angle, a minimum along ‖W‖" in msg
    assert "spread" not in msg and "20°–70°" in msg
    flat = replace(a, profile_loss=tuple(0.04167 - 1e-5 * (x == 45.0) for x in angles),
                   confused_loss=0.04166)
    assert "cause" not in cf.confused_claim(flat).measured
