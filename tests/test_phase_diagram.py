"""Section 4: the extra-feature classifier, stratified expected loss and best-of-N on constructed
weights; the recipe's claims on constructed grids (hold and fail) and on a small seeded run."""

import math
from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

import superposition as sp
from superposition.analysis.phase import (
    OTHER,
    best_restarts,
    by_configuration,
    classify_extra_feature,
    drop_worst,
    expected_loss,
    extra_feature_overlap,
    phase_shares,
)
from superposition.analysis.theory import (
    DEDICATED,
    NOT_REPRESENTED,
    SUPERPOSITION,
    phase_candidate,
    phase_diagram,
)
from superposition.experiments import get_recipe, run_recipe
from superposition.experiments import phase_diagram as recipe
from superposition.figures.phase import OrderRow, PhaseRow, order_parameter_figure, phase_diagram_figure

# --- the classifier on constructed weights --------------------------------------------------


def rotate(W: torch.Tensor, angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return W @ torch.tensor([[c, -s], [s, c]], dtype=W.dtype)


@pytest.mark.parametrize("n_hidden", [1, 2])
@pytest.mark.parametrize("phase", [NOT_REPRESENTED, DEDICATED, SUPERPOSITION])
def test_theory_candidates_are_classified_as_their_phase(n_hidden, phase):
    W = phase_candidate(n_hidden, phase, 0.1)["W"]
    assert classify_extra_feature(W).phase.tolist() == [phase]
    assert classify_extra_feature(0.9 * W).phase.tolist() == [phase]  # a slightly shrunk model too
    if n_hidden == 2:
        assert classify_extra_feature(rotate(W[0], 0.7)).phase.item() == phase  # [feat, hidden], rotated
        if phase == DEDICATED:
            paired = phase_candidate(2, DEDICATED, 0.1, pair_freed=True)["W"]
            assert classify_extra_feature(paired).phase.tolist() == [DEDICATED]


def test_classifier_order_parameters_and_edge_cases():
    W = torch.tensor([
        [[1.0, 0.0], [0.0, 1.0], [-0.8, 0.0]],  # antipodal to feature 0
        [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],  # positive overlap: no phase of the theory
        [[1.0, 0.0], [0.0, 0.1], [0.0, -1.0]],  # feature 1 is dead: the extra feature has its dimension
        [[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]],  # triangle: obtuse, superposed
        [[1.0, 0.0], [0.0, 1.0], [0.1, -0.1]],  # too short: not represented
    ])
    found = classify_extra_feature(W)
    assert found.phase.tolist() == [SUPERPOSITION, OTHER, DEDICATED, SUPERPOSITION, NOT_REPRESENTED]
    torch.testing.assert_close(found.norm[:3], torch.tensor([0.8, 1.0, 1.0]))
    assert found.partner.tolist()[:3] == [0, 1, 0]
    torch.testing.assert_close(found.partner_cos[0], torch.tensor(-1.0))
    cos, partner = extra_feature_overlap(torch.tensor([[[0.0], [1.0]]]))  # nothing else represented
    assert cos.tolist() == [0.0] and partner.tolist() == [-1]
    # The extra feature need not be the last one.
    assert classify_extra_feature(W[0].flip(0), extra=0).phase.item() == SUPERPOSITION


# --- expected loss and best-of-N ------------------------------------------------------------


@pytest.mark.parametrize("n_hidden", [1, 2])
def test_expected_loss_matches_the_closed_forms(n_hidden):
    ps, r = (0.5, 0.05, 0.005), 0.4
    for phase in (NOT_REPRESENTED, DEDICATED, SUPERPOSITION):
        params = [phase_candidate(n_hidden, phase, p) for p in ps]
        batch = {k: torch.cat([q[k] for q in params]) for k in ("W", "b")}
        prob = torch.tensor(ps)[:, None].expand(-1, n_hidden + 1)
        imp = torch.tensor([1.0] * n_hidden + [r]).expand(len(ps), -1)
        got = expected_loss("relu_output", batch, prob, imp, samples=32768)
        exact = phase_diagram(n_hidden, [r], list(ps)).losses[phase, 0]
        if phase == DEDICATED and n_hidden == 2:  # the candidate drops feature 1: var/3
            exact = torch.tensor([p / 3 - p * p / 4 for p in ps], dtype=torch.float64) / 3
        torch.testing.assert_close(got, exact, rtol=0.02, atol=0)  # 2% even at p = 0.005


def test_expected_loss_agrees_with_plain_sampling_and_chunks():
    config = sp.RunConfig(model=sp.ModelConfig("relu_output", 3, 2), data=sp.DataConfig((0.3, 1.0)))
    params = sp.models.init_params(config.model, [1, 2])
    prob = torch.tensor([[0.3] * 3, [1.0] * 3])
    imp = torch.ones(2, 3)
    got = expected_loss("relu_output", params, prob, imp, samples=4096)
    torch.testing.assert_close(expected_loss("relu_output", params, prob, imp, samples=4096, chunk=4096), got)
    g = torch.Generator().manual_seed(1)
    x = torch.where(torch.rand(2, 200_000, 3, generator=g) < prob[:, None], torch.rand(2, 200_000, 3, generator=g), 0.0)
    plain = sp.models.instance_loss(sp.models.forward("relu_output", params, x).output, x, imp).double()
    torch.testing.assert_close(got, plain, rtol=0.03, atol=0)


def test_best_restarts():
    losses = torch.tensor([3.0, 1.0, 2.0, float("nan"), 5.0, 5.0, 0.5, 0.7])
    assert best_restarts(losses, [0, 0, 0, 1, 1, 1, 2, 2]).tolist() == [1, 4, 6]  # NaN loses, ties: first
    assert best_restarts(losses[:2], [1, 0]).tolist() == [1, 0]  # any instance order
    with pytest.raises(ValueError, match="every configuration"):
        best_restarts(losses[:2], [0, 2])


def test_restart_bookkeeping():
    values = torch.arange(6.0)
    assert by_configuration(values, [0, 0, 1, 1, 2, 2]).tolist() == [[0, 1], [2, 3], [4, 5]]
    assert by_configuration(values, [1, 0, 1, 0, 2, 2]).tolist() == [[1, 3], [0, 2], [4, 5]]
    with pytest.raises(ValueError, match="same number"):
        by_configuration(values, [0, 0, 0, 1, 1, 2])
    losses = torch.tensor([[3.0, 1.0, 2.0], [1.0, float("nan"), 0.0], [2.0, 2.0, 1.0]])
    assert drop_worst(losses).tolist() == [[False, True, True], [True, False, True], [True, False, True]]
    assert drop_worst(losses[:, :1]).all()  # one restart: nothing to drop
    phases = torch.tensor([[0, 2, 2], [1, 3, 1], [0, 0, 0]])
    shares = phase_shares(phases, drop_worst(losses))
    torch.testing.assert_close(shares[0], torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(shares[1], torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))


def test_recipe_cells_start_from_independent_weights():
    """share_init is off: within a restart, no two cells of a grid share their initial weights."""
    for quick in (True, False):
        cfg = recipe.config(2, quick)
        assert cfg.train.share_init is False and cfg.train.restarts == 10
    cfg = recipe.grid_config(1, SMALL_R, SMALL_P, restarts=2, steps=10)
    table = sp.data.instances(cfg)
    assert len(set(table.init_seeds)) == cfg.n_instances
    W = sp.models.init_params(cfg.model, table.init_seeds)["W"].reshape(len(SMALL_R) * len(SMALL_P), 2, -1)
    first = W[:, 0].reshape(len(W), -1)  # restart 0 of every cell
    assert torch.cdist(first, first).add(torch.eye(len(W))).min() > 1e-4
    assert len(set(table.seeds)) == 2  # data events stay shared across cells (one stream per restart)


# --- claims on constructed grids ------------------------------------------------------------

R_GRID = [0.1, 0.3, 0.6, 1.5, 4.0, 10.0]
P_GRID = [1.0, 0.6, 0.35, 0.2, 0.1, 0.03, 0.01]


def ideal(n_hidden: int, shrink: float = 1.0) -> recipe.PhaseResult:
    """Every cell holds the theory's own candidate: the claims must hold."""
    theory = phase_diagram(n_hidden, R_GRID, P_GRID)
    W = torch.cat([phase_candidate(n_hidden, int(theory.phase[i, j]), p)["W"]
                   for i in range(len(R_GRID)) for j, p in enumerate(P_GRID)])
    W[:, -1] *= shrink
    loss = theory.losses.min(0).values.reshape(-1)
    return recipe.analyse_weights(W, loss, n_hidden, R_GRID, P_GRID, restarts=3, steps=100)


def with_phases(result: recipe.PhaseResult, phases: torch.Tensor) -> recipe.PhaseResult:
    W = torch.cat([phase_candidate(result.n_hidden, int(k), 0.1)["W"] for k in phases.reshape(-1)])
    return recipe.analyse_weights(W, result.loss.reshape(-1), result.n_hidden, R_GRID, P_GRID)


@pytest.mark.parametrize("n_hidden", [1, 2])
def test_claims_hold_on_the_theory_itself(n_hidden):
    claims = recipe.result_claims(ideal(n_hidden))
    assert len(claims) == 5 and all(c.held for c in claims), [c for c in claims if not c.held]
    assert claims[2].measured.startswith("100.0%")
    # Against our theory the paper's candidates are up to a few percent above the optimum.
    assert "0/42 cells below it" in claims[4].measured and "trained / theory 1–1.0" in claims[4].measured


def test_sparsity_claim_fails_with_dense_superposition():
    result = ideal(1)
    phases = result.trained.phase.clone()
    phases[0, 0] = SUPERPOSITION
    assert not recipe.sparsity_claim(with_phases(result, phases)).held
    phases = result.trained.phase.clone()
    phases[phases == SUPERPOSITION] = NOT_REPRESENTED  # no superposition anywhere
    assert not recipe.sparsity_claim(with_phases(result, phases)).held


def test_sharpness_claim_fails_on_a_gradual_or_ragged_change():
    assert not recipe.sharpness_claim(ideal(1, shrink=0.5)).held  # every extra feature half-length
    result = ideal(2)
    phases = result.trained.phase.clone()
    phases[0, -2] = NOT_REPRESENTED  # the r = 0.1 row goes . → S → . → S over three cells
    ragged = recipe.sharpness_claim(with_phases(result, phases))
    assert not ragged.held and "1 rows change over more cells (widest: 3)" in ragged.measured
    phases = result.trained.phase.clone()
    phases[3, 1] = SUPERPOSITION  # r = 1.5: D → S → D, a one-cell excursion (seen next to the triple point)
    assert recipe.sharpness_claim(with_phases(result, phases)).held


def test_transition_width():
    rows = torch.tensor([[0, 0, 0, 0], [0, 0, 2, 2], [1, 2, 1, 1], [0, 2, 0, 2], [1, 1, 1, 2]])
    assert recipe.transition_width(rows).tolist() == [0, 1, 2, 3, 1]


def test_agreement_and_loss_claims_fail_when_off():
    result = ideal(2)
    phases = torch.full_like(result.trained.phase, DEDICATED)
    assert not recipe.agreement_claim(with_phases(result, phases)).held
    worse = replace(result, loss=result.loss * 1.2)
    assert not recipe.loss_claim(worse).held
    better = replace(result, loss=result.loss.clone().index_put_((torch.tensor([0]), torch.tensor([3])),
                                                                  result.loss[0, 3] * 0.97))
    below = recipe.loss_claim(better)  # one cell 3% below the optimum: the candidates miss a solution
    assert not below.held and "1/42 cells below it" in below.measured
    assert "of the 1 cells below it, 1 not identified" in below.measured  # it holds a candidate itself
    ours = recipe.our_loss_claim(replace(result, loss=result.ours.losses.min(0).values))
    assert ours.held and "0/42 cells below it" in ours.measured


def _unit(degrees: list[float], norms: list[float]) -> torch.Tensor:
    angles = torch.deg2rad(torch.tensor(degrees))
    return torch.stack([angles.cos(), angles.sin()], -1) * torch.tensor(norms)[:, None]


LAYOUTS = {  # (row, column) of `ideal(2)`: a best model the paper's candidates lack
    (0, 0): _unit([90, 210, 330], [1.0, 1.0, 1.0]),  # a triangle: no antipodal pair
    (0, 1): _unit([0, 90, 180], [1.0, 1.0, 0.8]),  # the extra feature antipodal, unequal norms
    (0, 2): _unit([0, 180, 90], [0.85, 0.85, 1.0]),  # the freed pair, both norms shrunk
    (1, 0): _unit([0, 180, 90], [0.45, 0.93, 1.0]),  # the freed pair, unequal norms, one short
}


def with_layouts(result: recipe.PhaseResult) -> recipe.PhaseResult:
    W = result.best_weights.clone()
    for (i, j), w in LAYOUTS.items():
        W[i, j] = w
    return replace(result, best_weights=W)


def test_layouts_outside_the_candidates_are_recognised():
    result = ideal(2)
    none = torch.zeros_like(result.trained.phase, dtype=torch.bool)
    assert result.best_weights.shape == (len(R_GRID), len(P_GRID), 3, 2)
    assert (recipe.planar_layouts(result) == none).all()  # the candidates themselves
    assert all((m == none).all() for m in recipe.pair_layouts(result))
    laid = with_layouts(result)
    planar, (unequal, shrunk) = recipe.planar_layouts(laid), recipe.pair_layouts(laid)
    assert planar.nonzero().tolist() == [[0, 0]]
    assert unequal.nonzero().tolist() == [[0, 1]]
    assert shrunk.nonzero().tolist() == [[0, 2], [1, 0]]
    assert not recipe.planar_layouts(ideal(1)).any()  # n = 2: no third feature


def test_loss_claims_name_the_layouts_below_the_candidates():
    laid = with_layouts(ideal(2))
    loss = laid.loss.clone()
    for i, j in LAYOUTS:
        loss[i, j] *= 0.97
    below = recipe.loss_claim(replace(laid, loss=loss))
    assert not below.held and "4/42 cells below it" in below.measured
    assert ("of the 4 cells below it, 1 pair the extra feature antipodally with unequal norms, 2 free a "
            "dimension with an antipodal pair of important features with a norm below 1, 1 hold all 3 "
            "features with no antipodal pair") in below.measured
    ours = recipe.our_loss_claim(replace(laid, loss=loss))
    assert not ours.held and "cause: 1 of the 4 cells below it hold all 3 features" in ours.measured
    assert "(r = 0.1, 1 − S = 1); pair angles 120–120°" in ours.measured and "3 cells below it not identified" \
        in ours.measured


def test_sharpness_cause_names_a_layout_outside_the_phases():
    laid = with_layouts(ideal(2))
    phases = laid.trained.phase.clone()
    phases[0, -2] = NOT_REPRESENTED  # the r = 0.1 row goes ragged, as in the test above
    ragged = replace(with_phases(laid, phases), best_weights=laid.best_weights)
    claim = recipe.sharpness_claim(ragged)
    assert not claim.held and "cause: 0 of the 0 cells between phases and 1 of the 1 rough rows" in claim.measured
    plain = recipe.sharpness_claim(replace(ragged, best_weights=ideal(2).best_weights))
    assert not plain.held and "cause" not in plain.measured  # nothing outside the phases: no cause


def test_the_paper_protocol_averages_the_kept_restarts():
    """Ten restarts per cell, the worst dropped: the average counts the nine kept ones."""
    theory = phase_diagram(1, R_GRID, P_GRID)
    cells = len(R_GRID) * len(P_GRID)
    phases = theory.phase.reshape(-1, 1).repeat(1, 10)
    phases[:, 7:] = (phases[:, 7:] + 1) % 3  # restarts 7, 8, 9 disagree everywhere
    W = torch.stack([torch.cat([phase_candidate(1, int(k), 0.1)["W"] for k in row]) for row in phases])
    loss = torch.ones(cells, 10)
    loss[:, 9] = 2.0  # restart 9 is the worst: dropped
    loss[:, 0] = 0.5  # restart 0 is the best
    result = recipe.analyse_weights(W, loss, 1, R_GRID, P_GRID, restarts=10, steps=1, unequal_pairs=False)
    torch.testing.assert_close(result.mean_agreement(), torch.full((len(R_GRID), len(P_GRID)), 7 / 9,
                                                                   dtype=torch.float64))
    assert result.seed_agreement().tolist() == [1.0] * 7 + [0.0] * 3
    assert (result.trained.phase == theory.phase).all() and (result.mean_phase() == theory.phase).all()
    claim = recipe.agreement_claim(result)
    assert not claim.held and claim.measured.startswith("77.8% averaged over the 9 kept seeds")
    assert "single seeds 0%–100%" in claim.measured and "best of 10: 100.0%" in claim.measured


# --- figures --------------------------------------------------------------------------------


def test_figures_draw_and_check_shapes():
    result = ideal(2)
    row = PhaseRow(result.label, result.relative_importance, result.feature_probability, result.trained.phase,
                   result.theory.phase)
    fig = phase_diagram_figure([row, row])
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    order = OrderRow(result.label, result.relative_importance, result.feature_probability, result.trained.norm,
                     result.trained.partner_cos, result.trained.phase)
    assert len(order_parameter_figure([order]).axes) == 4  # 2 panels + 2 colourbars
    with pytest.raises(ValueError, match="shape"):
        phase_diagram_figure([row._replace(theory=result.theory.phase[:, :3])])


# --- the recipe on seeded runs --------------------------------------------------------------

SMALL_R = (0.1, 0.3, 5.0)
SMALL_P = (1.0, 0.3, 0.05)


@pytest.mark.slow
@pytest.mark.parametrize("n_hidden", [1, 2])
def test_claims_on_a_small_seeded_run(n_hidden):
    """A 3 × 3 grid with a cell of every phase, ten restarts at the quick recipe's training settings.

    Sparsity, sharpness and the loss claim against our theory hold. The best of ten agrees with the
    theory everywhere, but the paper's average over nine seeds does not reach 85%: in superposition
    cells about a third of the seeds settle with one feature dropped (a local minimum). Against the
    paper's own candidates the loss claim fails: trained pairs with unequal norms beat W = [1, −1].
    """
    quick = recipe.SIZES[True]
    config = recipe.grid_config(n_hidden, SMALL_R, SMALL_P, restarts=10, steps=quick.steps)
    config = replace(config, train=replace(config.train, batch_size=quick.batch_size, lr=quick.lr,
                                           schedule="cosine"))
    result = recipe.analyse(sp.train(config, compile=False, progress=False))
    assert set(result.theory.phase.reshape(-1).tolist()) == {NOT_REPRESENTED, DEDICATED, SUPERPOSITION}
    assert result.restart_phase.shape == (3, 3, 10) and int(result.kept.sum()) == 81
    sparsity, sharp, agree, paper, ours = recipe.result_claims(result)
    for claim in (sparsity, sharp, ours):
        assert claim.held, f"{claim.claim}: {claim.measured}"
    assert "best of 10: 100.0%" in agree.measured
    assert float(result.mean_agreement().mean()) < float(result.seed_agreement().max())
    assert not paper.held and "unequal norms" in paper.measured


@pytest.mark.slow
def test_recipe_writes_figures_and_claims(tmp_path):
    tiny = {recipe._run_name(m): recipe.grid_config(m, SMALL_R[:2], SMALL_P, restarts=2, steps=20)
            for m in recipe.HIDDEN}
    rec = replace(get_recipe("phase-diagram"), configs=lambda quick: tiny)
    result = run_recipe(rec, tmp_path, quick=True, compile=False, progress=False)
    assert {p.name for p in tmp_path.glob("*.png")} == {"phase_diagram.png", "phase_order.png"}
    assert len(result.claims) == 10 and (tmp_path / "claims.json").exists()
    assert all(c.section == recipe.SECTION for c in result.claims)


def test_recipe_sizes():
    for quick, size in recipe.SIZES.items():
        rs, ps = recipe.grid(quick)
        assert (len(rs), len(ps)) == (size.rows, size.columns)
        assert rs[0] == pytest.approx(0.1) and rs[-1] == pytest.approx(10) and ps[0] == 1 and ps[-1] == 0.01
        cfg = recipe.config(2, quick)
        assert cfg.data.n_configs == size.rows * size.columns and cfg.train.keep_all_restarts
        assert (cfg.train.steps, cfg.train.batch_size, cfg.train.lr) == (size.steps, size.batch_size, size.lr)
        assert cfg.data.importance[size.columns] == (1.0, 1.0, rs[1])  # row-major: r changes every P configs
    assert recipe.SIZES[False].restarts == 10
