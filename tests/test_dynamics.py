"""Section 6: learning dynamics. Trajectory measures on constructed snapshots, the claims on
trajectories and geometries that make them hold and fail, the figures, and the claims on small
seeded runs."""

import math
from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

import superposition as sp
from superposition.analysis.dynamics import (
    DimensionalityTrajectory,
    _runs,
    dimensionality_jumps,
    dimensionality_trajectory,
    interval_activity,
    jump_loss_coincidence,
    jump_loss_matches,
    log_loss_at,
    log_spaced_snapshots,
    loss_drops,
    nearest_fraction,
    on_polytope_fraction,
    polytope_coverage,
)
from superposition.experiments import dynamics, get_recipe, run_recipe
from superposition.figures.dynamics import dynamics_figure, gram_trajectory_figure

from .conftest import unchecked

STEPS = torch.arange(0, 5001, 20)


def sigmoid_step(at: float, low: float, high: float, width: float = 0.03) -> torch.Tensor:
    """A value moving from `low` to `high` around step `at`, quickly on a log axis: ``[snap]``."""
    x = torch.log(STEPS.clamp_min(1).double() / at) / width
    return low + (high - low) * torch.sigmoid(x)


def trajectory(*features: torch.Tensor, norm: float = 1.0) -> DimensionalityTrajectory:
    """One instance with the given D_i curves (each ``[snap]``) and constant norms."""
    D = torch.stack(features, dim=-1).unsqueeze(0)
    return DimensionalityTrajectory(STEPS, D, torch.full_like(D, norm))


def loss_with_drop(at: float, depth: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A loss curve logged every 20 steps, flat except for a fall by `depth` (in log) around `at`."""
    loss_steps = STEPS[1:]
    log_loss = math.log(0.05) - depth * torch.sigmoid(torch.log(loss_steps.double() / at) / 0.05)
    return loss_steps, log_loss.exp().unsqueeze(0)


# --- analysis -------------------------------------------------------------------------------


def test_dimensionality_trajectory_shapes_and_values():
    square = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    W = torch.stack([torch.eye(4, 2) * 0.1, square]).unsqueeze(0).expand(3, 2, 4, 2)  # [inst, snap, feat, hidden]
    traj = dimensionality_trajectory(W, torch.tensor([0, 100]))
    assert traj.dimensionality.shape == (3, 2, 4) and traj.norms.shape == (3, 2, 4)
    assert torch.allclose(traj.dimensionality[:, 1], torch.full((3, 4), 0.5))
    with pytest.raises(ValueError, match="one snapshot per step"):
        unchecked(dimensionality_trajectory)(W, torch.tensor([0, 100, 200]))


def test_nearest_fraction_and_on_polytope_fraction():
    assert torch.allclose(nearest_fraction(torch.tensor([0.5, 0.42, 0.9])), torch.tensor([0.0, 0.02, 0.1]),
                          atol=1e-6)
    on = trajectory(torch.full((len(STEPS),), 0.5), torch.full((len(STEPS),), 2 / 3))
    off = trajectory(torch.full((len(STEPS),), 0.58), torch.full((len(STEPS),), 0.88))
    assert float(on_polytope_fraction(on)) == 1.0
    assert float(on_polytope_fraction(off)) == 0.0
    half = trajectory(torch.where(STEPS < 2500, 0.58, 0.5))
    assert float(on_polytope_fraction(half, after=2500)) == 1.0
    assert 0.45 < float(on_polytope_fraction(half)) < 0.55
    dead = trajectory(torch.full((len(STEPS),), 0.58), norm=0.1)
    assert math.isnan(float(on_polytope_fraction(dead)))  # nothing represented: nothing to count


def test_on_polytope_fraction_leaves_out_jumps_but_not_drift():
    jump = trajectory(sigmoid_step(1000, 2 / 3, 0.5))  # triangle to antipodal pair
    assert float(on_polytope_fraction(jump, moving=0.02, after=30)) > 0.9
    assert float(on_polytope_fraction(jump, after=30)) < float(on_polytope_fraction(jump, moving=0.02, after=30))
    drift = trajectory(0.8 + 0.15 * STEPS.double() / 5000)
    assert float(on_polytope_fraction(drift, moving=0.02, after=500)) < 0.3


def test_polytope_coverage():
    assert polytope_coverage(0.0) == 0.0
    # [0, .03], [.345, .43] (3/8 and 2/5 overlap), then 1/2, 2/3, 3/4 (0.06 each) and [.97, 1]
    assert polytope_coverage(0.03) == pytest.approx(0.03 + 0.085 + 3 * 0.06 + 0.03)
    assert polytope_coverage(1.0) == 1.0


def test_runs_of_signs():
    assert _runs([0, 1, 1, 0, -1, -1, 1]) == [(1, 3), (4, 6), (6, 7)]
    assert _runs([0, 0]) == []


def test_dimensionality_jumps_finds_a_step_and_ignores_flat_and_dead_features():
    traj = trajectory(sigmoid_step(1000, 0.25, 0.5), torch.full((len(STEPS),), 0.5))
    jumps = dimensionality_jumps(traj)
    assert len(jumps) == 1
    jump = jumps[0]
    assert (jump.inst, jump.feat) == (0, 0)
    assert jump.before == pytest.approx(0.25, abs=0.03) and jump.after == pytest.approx(0.5, abs=0.03)
    assert jump.start < 1000 < jump.end and 800 < jump.step < 1250
    dead = trajectory(sigmoid_step(1000, 0.25, 0.5), norm=0.1)
    assert dimensionality_jumps(dead) == []
    drift = trajectory(0.8 + 0.15 * STEPS.double() / 5000)  # as far, but slowly: no jump
    assert dimensionality_jumps(drift) == []


def test_log_loss_at_interpolates_and_smooths():
    loss_steps = torch.tensor([10, 20, 30, 40])
    curve = torch.tensor([[1.0, 1.0, math.e, math.e]])
    values = log_loss_at(torch.tensor([0, 15, 25, 100]), loss_steps, curve)  # mids at 5, 15, 25, 35
    assert torch.allclose(values, torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64))
    noisy = torch.tensor([[1.0, math.e, 1.0, math.e]])
    smooth = log_loss_at(torch.tensor([25]), loss_steps, noisy, smooth=1.0)  # averages over 15..35
    assert 0.0 < float(smooth) < 1.0
    single = log_loss_at(torch.tensor([1, 2]), torch.tensor([10]), torch.tensor([[math.e]]))
    assert torch.allclose(single, torch.ones(1, 2, dtype=torch.float64))


def test_log_spaced_snapshots():
    idx = log_spaced_snapshots(STEPS, per_decade=10)
    assert bool((torch.diff(idx) > 0).all())
    assert int(STEPS[idx[0]]) == 20 and int(STEPS[idx[-1]]) == 5000
    assert int(STEPS[log_spaced_snapshots(STEPS, after=1000)[0]]) == 1000
    with pytest.raises(ValueError, match="no snapshots"):
        log_spaced_snapshots(STEPS, after=6000)


def test_coincidence_holds_when_jumps_meet_loss_drops_and_fails_otherwise():
    jump = trajectory(sigmoid_step(1000, 0.25, 0.5), sigmoid_step(1000, 0.3, 0.0), torch.full((len(STEPS),), 0.5))
    at_jump, elsewhere = loss_with_drop(1000), loss_with_drop(100)
    good = jump_loss_coincidence(jump, *at_jump, top=0.2)
    bad = jump_loss_coincidence(jump, *elsewhere, top=0.2)
    assert float(good.movement_share) > 0.9 and float(good.enrichment) > 4
    assert float(bad.movement_share) < 0.1 and float(bad.enrichment) < 1
    assert float(good.time_share) == pytest.approx(0.2, abs=0.03)
    act = interval_activity(jump, *at_jump, min_move=1.0)  # nothing moves that much
    assert float(act.movement.sum()) == 0.0
    drops = loss_drops(jump, *at_jump, top=0.1)
    assert drops and all(d.inst == 0 for d in drops)
    assert any(d.start <= 1000 <= d.end for d in drops)


def test_plateau_and_coincidence_claims():
    flat = torch.full((len(STEPS),), 0.5)
    on = trajectory(sigmoid_step(1000, 2 / 3, 0.5), flat)
    assert dynamics.plateau_claim(on, [0.3], after=30).held
    drifting = trajectory(0.8 + 0.15 * STEPS.double() / 5000, flat)  # D glides slowly where no polytope is
    assert not dynamics.plateau_claim(drifting, [0.3], after=500).held
    resting_off = trajectory(sigmoid_step(1000, 0.58, 0.88), flat)  # rests, but on no polytope value
    assert not dynamics.plateau_claim(resting_off, [0.3], after=500).held


def three_jumps(at, drops_at) -> tuple[DimensionalityTrajectory, torch.Tensor, torch.Tensor]:
    """Three instances, each with three features jumping (1/2 → 1) at the steps `at`, and a loss
    that falls at the steps `drops_at`."""
    flat = torch.full((len(STEPS),), 0.5)
    D = torch.stack([torch.stack([sigmoid_step(t, 0.5, 1.0) for t in at] + [flat], -1)] * 3)
    traj = DimensionalityTrajectory(STEPS, D, torch.ones_like(D))
    loss_steps = STEPS[1:]
    log_loss = math.log(0.05) - sum(0.3 * torch.sigmoid(torch.log(loss_steps.double() / t) / 0.03) for t in drops_at)
    return traj, loss_steps, log_loss.exp().unsqueeze(0).expand(3, -1)


def test_jump_by_jump_coincidence():
    matches = jump_loss_matches(*three_jumps((300, 1000, 3000), (300, 1000, 3000)), after=30)
    assert len(matches.jumps) == 9 and matches.share == 1.0 and bool((matches.distance == 0).all())
    assert 0.0 < float(matches.chance.min()) < 0.6 and matches.p_value < 0.01
    claim = dynamics.coincidence_claim(matches, [0.3, 0.2, 0.1])
    assert claim.held and "9/9" in claim.measured, claim.measured
    missed = jump_loss_matches(*three_jumps((300, 1000, 3000), (120, 500, 1600)), after=30)
    assert missed.share == 0.0 and not dynamics.coincidence_claim(missed, [0.3, 0.2, 0.1]).held
    some = jump_loss_matches(*three_jumps((300, 1000, 3000), (300, 2000, 600)), after=30)
    assert some.share == pytest.approx(1 / 3) and not dynamics.coincidence_claim(some, [0.3, 0.2, 0.1]).held
    still = DimensionalityTrajectory(STEPS, torch.full((1, len(STEPS), 2), 0.5), torch.ones(1, len(STEPS), 2))
    none = jump_loss_matches(still, *loss_with_drop(1000), after=30)
    assert not none.jumps and math.isnan(none.share) and not dynamics.coincidence_claim(none, [0.3]).held


def octahedron(cross: bool) -> torch.Tensor:
    """W [6, 3]: ±e_k pairs; with `cross`, every pair has one feature of each set of 3."""
    eye = torch.eye(3)
    return torch.cat([eye, -eye]) if cross else torch.stack([eye[0], -eye[0], eye[1], -eye[1], eye[2], -eye[2]])


def test_octahedron_claim():
    assert dynamics.octahedron_claim(octahedron(True).unsqueeze(0), [0.05], 3).held
    assert not dynamics.octahedron_check(octahedron(False), 3)[0]  # correlated features antipodal
    angle = math.radians(40)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1.0]])
    eye = torch.eye(3)
    rotated = torch.cat([eye, -(eye @ rot.T)])  # each set orthonormal, D_i = 1/2, but not an octahedron
    assert not dynamics.octahedron_check(rotated, 3)[0]
    half = octahedron(True).clone()
    half[5] = 0.0
    assert not dynamics.octahedron_check(half, 3)[0]
    mixed = dynamics.octahedron_claim(torch.stack([octahedron(True), rotated]), [0.1, 0.05], 3)
    assert not mixed.held and "p = 0.05" in mixed.measured  # every p must hold


# --- figures ----------------------------------------------------------------------------------


def test_dynamics_figure():
    D = torch.rand(2, len(STEPS), 5)
    loss_steps, curve = loss_with_drop(1000)
    traj = DimensionalityTrajectory(STEPS, D, torch.ones_like(D))
    drops = loss_drops(traj, loss_steps, curve.expand(2, -1))
    fig = dynamics_figure(STEPS, D, loss_steps, curve.expand(2, -1), ["a", "b"], drops=drops, set_size=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert fig.axes[0].get_title() == "a"
    with pytest.raises(ValueError, match="one title per instance"):
        dynamics_figure(STEPS, D, loss_steps, curve, ["a"])


def test_gram_trajectory_figure():
    fig = gram_trajectory_figure(torch.randn(4, 6, 3), [0, 10, 100, 1000], set_size=3, title="p = 0.05")
    assert len(fig.axes) == 5 and fig.get_suptitle() == "p = 0.05"
    assert fig.axes[-2].get_title() == "step 1,000"
    with pytest.raises(ValueError, match="one step per snapshot"):
        gram_trajectory_figure(torch.randn(4, 6, 3), [0, 10])


# --- small seeded runs --------------------------------------------------------------------------


def small(name: str, probabilities, steps: int, restarts: int = 1) -> sp.RunConfig:
    config = dynamics.configs(quick=True)[name]
    data = replace(config.data, feature_probability=tuple(probabilities))
    return replace(config, data=data, train=replace(config.train, steps=steps, restarts=restarts))


@pytest.mark.slow
def test_octahedron_forms_on_a_small_run():
    run = sp.train(small("octahedron", (0.1,), 3500, 2), compile=False, progress=False)
    claim = dynamics.octahedron_claim(run.W, [0.1], 3)
    assert claim.held, claim.measured


@pytest.mark.slow
def test_uniform_claims_hold_on_a_small_run():
    config = small("uniform", (dynamics.UNIFORM_PROBABILITIES[0],), 3000)
    run = sp.train(config, compile=False, progress=False)
    traj, p = dynamics.trajectory(run), [dynamics.UNIFORM_PROBABILITIES[0]]
    matches = jump_loss_matches(traj, torch.tensor(run.metrics.loss_steps), torch.tensor(run.metrics.loss_curve),
                                window=dynamics.WINDOW, top=dynamics.TOP, after=dynamics.AFTER, moving=dynamics.MOVE)
    claims = [dynamics.plateau_claim(traj, p, dynamics.AFTER), dynamics.coincidence_claim(matches, p)]
    failed = [f"{c.claim}: {c.measured}" for c in claims if not c.held]
    assert not failed, failed


@pytest.mark.slow  # draws three multi-panel figures
def test_recipe_writes_figures_and_claims(tmp_path):
    tiny = {name: small(name, cfg.data.feature_probability, 60) for name, cfg in dynamics.configs(True).items()}
    recipe = replace(get_recipe("dynamics"), configs=lambda quick: tiny)
    result = run_recipe(recipe, tmp_path, quick=True, compile=False, progress=False)
    assert {p.name for p in tmp_path.glob("*.png")} == {"dynamics_uniform.png", "dynamics_octahedron.png",
                                                          "dynamics_octahedron_gram.png"}
    assert len(result.claims) == 3 and all(c.section == dynamics.SECTION for c in result.claims)


def test_trajectory_needs_snapshots():
    run = sp.train(replace(small("octahedron", (0.05,), 5), train=sp.TrainConfig(steps=5, batch_size=8)),
                   compile=False, progress=False)
    with pytest.raises(ValueError, match="no snapshots"):
        dynamics.trajectory(run)
