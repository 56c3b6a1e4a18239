"""Section 5.2 (non-uniform superposition): families, claims on constructed weights (held and not
held), the figures, the recipe end to end, and the claims on a small seeded run."""

import math
from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

import superposition as sp
from superposition.experiments import get_recipe, nonuniform, run_recipe
from superposition.experiments.nonuniform import DIGON, OTHER, PENTAGON
from superposition.figures.nonuniform import family_geometry_figure, family_loss_figure, ratio_label


def at_angles(degrees, norms=None) -> torch.Tensor:
    a = torch.deg2rad(torch.tensor(degrees, dtype=torch.float32))
    W = torch.stack([torch.cos(a), torch.sin(a)], -1)
    return W if norms is None else W * torch.tensor(norms)[:, None]


def pentagon(gap: float) -> torch.Tensor:
    """Feature 0 on +x with its neighbours `gap` degrees away on each side, the rest evenly spread."""
    d = (360 - 2 * gap) / 3
    return at_angles([0, gap, gap + d, gap + 2 * d, 360 - gap])


def digons(varied_norm: float = 0.0) -> torch.Tensor:
    return at_angles([30, 0, 90, 180, 270], [varied_norm, 1, 1, 1, 1])


RATIO = torch.tensor([1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8])


def test_classify_families():
    W = torch.stack([pentagon(72), digons(), digons(0.3), at_angles([0, 90, 180, 270, 45], [1, 1, 1, 1, 0]),
                     at_angles([0, 1, 2, 3, 4]), at_angles([0, 60, 180, 240, 120], [0, 1, 1, 1, 1])])
    assert nonuniform.classify(W).tolist() == [PENTAGON, DIGON, OTHER, OTHER, OTHER, OTHER]
    assert nonuniform.classify(digons()[[1, 0, 2, 3, 4]], varied=1) == DIGON


def test_room_claim_holds_when_neighbours_move_away_and_fails_when_they_do_not():
    gaps = [60, 66, 70, 72, 74, 75.5, 76]
    W = torch.stack([pentagon(g) for g in gaps])
    fam = torch.full((7,), PENTAGON)
    claim = nonuniform.room_claim(RATIO, W, fam)
    assert claim.held, claim.measured
    assert "8: 76.0°" in claim.measured
    regular = torch.stack([pentagon(72)] * 7)
    assert not nonuniform.room_claim(RATIO, regular, fam).held  # never above 74°
    shrinking = torch.stack([pentagon(g) for g in reversed(gaps)])
    assert not nonuniform.room_claim(RATIO, shrinking, fam).held
    assert not nonuniform.room_claim(RATIO, W, torch.full((7,), DIGON)).held  # no pentagon at all


def snap_inputs(families):
    W = torch.stack([digons() if f == DIGON else pentagon(72) for f in families])
    return RATIO, W, torch.tensor(families)


def test_snap_claim_measures_where_the_pentagon_becomes_two_digons():
    claim = nonuniform.snap_claim(*snap_inputs([DIGON, DIGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON]))
    assert claim.held, claim.measured
    assert "2.83× sparser" in claim.measured  # between 4× and 2×: sqrt(8)


@pytest.mark.parametrize("families", [
    [PENTAGON] * 7,  # never snaps
    [DIGON] * 7,  # never a pentagon
    [DIGON, PENTAGON, DIGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON],  # back and forth
    [DIGON, DIGON, DIGON, DIGON, PENTAGON, PENTAGON, PENTAGON],  # snaps only when denser than the others
    [DIGON, OTHER, PENTAGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON],
])
def test_snap_claim_fails_without_one_snap_at_the_right_place(families):
    assert not nonuniform.snap_claim(*snap_inputs(families)).held


def test_snap_claim_needs_the_varied_feature_dropped():
    ratio, W, fam = snap_inputs([DIGON, DIGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON])
    W[0] = digons(0.3)  # still labelled a digon, but the varied feature is not gone
    assert not nonuniform.snap_claim(ratio, W, fam).held


def test_snap_claim_outside_the_papers_place_is_not_held_and_says_why():
    claim = nonuniform.snap_claim(*snap_inputs([DIGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON]))
    assert not claim.held and "5.66× sparser" in claim.measured and "not the paper's" in claim.measured


def test_snap_claim_says_what_breaks_the_order_when_other_solutions_win_at_the_dense_end():
    """Digons, then pentagons, then a third solution (the varied feature kept in a digon, another feature
    stacked weakly on one): the cause gives the snap without it and the third one's geometry and loss."""
    families = [DIGON, DIGON, PENTAGON, PENTAGON, PENTAGON, OTHER, OTHER]
    ratio, W, _ = snap_inputs(families)
    stacked = at_angles([0, 90, 270, 90, 180], [1, 1, 1, 0.35, 1])
    assert nonuniform.classify(stacked) == OTHER
    W[5:] = stacked
    loss = torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0, 3.4, 3.9]) * 1e-3
    pent = torch.tensor([math.nan, math.nan, 2.0, 2.5, 3.0, 3.5, 4.0]) * 1e-3
    claim = nonuniform.snap_claim(ratio, W, torch.tensor(families), loss=loss, pentagon=pent)
    assert not claim.held
    assert "; cause: leaving out the 'other' densities, the families snap once" in claim.measured
    assert "≈ 2.83× sparser, inside 2–3×" in claim.measured
    assert "the best restart at 2 densities" in claim.measured
    assert ("x = 4: 2 antipodal pairs of represented features, the varied feature kept (‖W_v‖ 1.00), feature 3 "
            "(‖W‖ 0.35) stacked on feature 1 (cos 1.00); loss 0.003400 vs the best pentagon's 0.003500 (-2.9%)"
            in claim.measured)
    assert "cause" not in nonuniform.snap_claim(ratio, W, torch.tensor(families)).measured  # no losses given
    back_and_forth = torch.tensor([DIGON, PENTAGON, DIGON, PENTAGON, PENTAGON, OTHER, OTHER])
    assert "cause" not in nonuniform.snap_claim(ratio, W, back_and_forth, loss=loss, pentagon=pent).measured


def stretched_pentagons(biases):
    """Regular pentagons whose features have norm sqrt(1 − b_i) (longer where the bias is more negative)."""
    b = torch.tensor(biases, dtype=torch.float32)
    return pentagon(72) * (1 - b).sqrt()[..., None], b


def test_norms_claim_holds_when_longer_features_have_more_negative_biases():
    rows = [stretched_pentagons([-0.1 * (k + 1), -0.1, -0.12, -0.15, -0.1]) for k in range(4)]
    W, b = torch.stack([w for w, _ in rows]), torch.stack([v for _, v in rows])
    fam = torch.full((4,), PENTAGON)
    claim = nonuniform.norms_claim(W, b, fam)
    assert claim.held, claim.measured
    assert not nonuniform.norms_claim(W, -b, fam).held  # positive biases
    assert not nonuniform.norms_claim(W / W.norm(dim=-1, keepdim=True), b, fam).held  # on the unit circle
    shuffled = b[:, [1, 2, 3, 4, 0]]  # the norms no longer follow the biases
    assert not nonuniform.norms_claim(W, shuffled.flip(0), fam).held
    assert not nonuniform.norms_claim(W, b, torch.full((4,), DIGON)).held
    assert nonuniform.rank_correlation(torch.tensor([1.0, 2, 3]), torch.tensor([3.0, 2, 1])) == pytest.approx(-1)


def test_norms_claim_says_when_only_the_varied_feature_follows_its_bias():
    """The varied feature's norm tied to its bias, the others' norms falling with x at unrelated biases:
    the cause names the two relations and the feature at ‖W_i‖ ≤ 1."""
    ratio = torch.tensor([0.5, 1.0, 2.0, 4.0])
    bv = torch.tensor([-0.3, -0.2, -0.1, -0.001])
    others_b = torch.tensor([[-0.20, -0.21, -0.19, -0.22], [-0.22, -0.19, -0.21, -0.20],
                             [-0.19, -0.22, -0.20, -0.21], [-0.21, -0.20, -0.22, -0.19]])
    b = torch.cat([bv[:, None], others_b], 1)
    others_n = torch.tensor([1.10, 1.09, 1.07, 1.05])[:, None] + torch.tensor([0.0, 0.002, 0.004, 0.001])
    norms = torch.cat([torch.tensor([[1.12], [1.10], [1.06], [0.984]]), others_n], 1)
    W = torch.stack([pentagon(72)] * 4) * norms[..., None]
    fam = torch.full((4,), PENTAGON)
    claim = nonuniform.norms_claim(W, b, fam, ratio)
    assert not claim.held
    assert "; cause: the pooled ranks mix two relations: the varied feature's norm follows its bias" in claim.measured
    assert "(ρ 1)" in claim.measured and "their norms fall as the varied feature gets denser" in claim.measured
    assert "‖W_i‖ ≤ 1: x = 4 feature 0 (‖W_i‖ 0.984, b_i -0.001)" in claim.measured
    assert "cause" not in nonuniform.norms_claim(W, b, fam).measured  # no densities given
    rows = [stretched_pentagons([-0.1 * (k + 1), -0.1, -0.12, -0.15, -0.1]) for k in range(4)]
    tied = nonuniform.norms_claim(torch.stack([w for w, _ in rows]), torch.stack([v for _, v in rows]), fam, ratio)
    assert tied.held and "cause" not in tied.measured


def test_crossing_claim_and_interpolation():
    x = RATIO
    pent = 1.0 + 0.1 * x.log()  # grows slowly with log density
    digon = 1.0 + 0.3 * x.log()  # grows faster: equal at x = 1
    claim = nonuniform.crossing_claim(x, pent, digon)
    assert claim.held, claim.measured
    assert nonuniform.crossing(x, pent, digon) == pytest.approx(1.0)
    assert nonuniform.crossing(x, pent, digon - 0.1 * math.log(2)) == pytest.approx(2**0.5, rel=1e-5)
    nan = torch.full_like(x, math.nan)
    digon_dense_only = torch.where(x > 1, digon, nan)
    assert not nonuniform.crossing_claim(x, pent, digon_dense_only).held  # families never coexist
    assert not nonuniform.crossing_claim(x, pent, pent + 0.1).held  # pentagon always better
    wiggle = digon - torch.tensor([0.0, 0, 0, 0, 0, 0, 1.0])  # digon best again at the densest
    assert not nonuniform.crossing_claim(x, pent, wiggle).held
    assert not nonuniform.crossing_claim(x, nan, nan).held


def constructed_sweep(families, losses) -> nonuniform.Sweep:
    """Two restarts per density; the first of the given family and loss, the second 'other'."""
    W = torch.stack([torch.stack([digons() if f == DIGON else pentagon(72), at_angles([0, 0, 0, 0, 0], [0] * 5)])
                     for f in families])
    probability = torch.cat([0.05 * RATIO[:, None], torch.full((7, 4), 0.05)], 1)
    loss = torch.stack([torch.tensor(losses), torch.full((7,), 1.0)], 1)
    return nonuniform.Sweep(RATIO, 0.05, W, torch.zeros(7, 2, 5), loss, probability, torch.ones(7, 5),
                            nonuniform.classify(W))


def test_digon_continuation_is_the_dropped_feature_variance_over_a_constant():
    p = 0.05 * RATIO
    var = p / 3 - p**2 / 4
    losses = (0.01 + var / 5).tolist()
    s = constructed_sweep([DIGON, DIGON, DIGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON], losses)
    assert s.family[:, 1].tolist() == [OTHER] * 7
    assert torch.allclose(nonuniform.digon_continuation(s), 0.01 + var / 5, rtol=1e-5)
    pent = nonuniform.family_loss(s.loss, s.family, PENTAGON)
    assert torch.isnan(pent[:3]).all() and torch.allclose(pent[3:], torch.tensor(losses[3:]))
    none = constructed_sweep([PENTAGON] * 7, losses)
    assert torch.isnan(nonuniform.digon_continuation(none)).all()


def test_family_solutions_are_canonical_and_nan_where_missing():
    s = constructed_sweep([DIGON, DIGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON], [0.5] * 7)
    rotated = replace(s, W=s.W @ torch.tensor([[0.0, -1.0], [1.0, 0.0]]))
    rows = nonuniform.family_solutions(rotated)
    assert rows.shape == (2, 7, 5, 2)
    assert torch.isnan(rows[0, :2]).all() and torch.isnan(rows[1, 2:]).all()
    assert rows[0, 3, 0].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)  # varied feature on +x
    assert rows[1, 0, 1].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)  # dropped: feature 1 on +x
    assert torch.allclose(rows[:, :, :, :], nonuniform.family_solutions(s), equal_nan=True, atol=1e-6)


def test_figures_draw_families_and_losses():
    s = constructed_sweep([DIGON, DIGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON, PENTAGON], [0.5] * 7)
    rows = nonuniform.family_solutions(s)
    best = [nonuniform.FAMILIES[int(f)] for f in s.best_family]
    fig = family_geometry_figure(rows, RATIO, 0.05, ["pentagon", "digon"], best)
    assert isinstance(fig, Figure) and len(fig.axes) == 14
    assert fig.axes[0].get_title() == "$p_v\\,/\\,p$ = 1/8"
    with pytest.raises(ValueError, match="shape"):
        family_geometry_figure(rows[:, :3], RATIO, 0.05, ["pentagon", "digon"], best)
    pent = 1.0 + 0.1 * RATIO.log()
    digon = torch.where(RATIO < 2, 1.0 + 0.3 * RATIO.log(), torch.tensor(math.nan))
    fig = family_loss_figure(RATIO, {"pentagon": pent, "digon": digon}, 0.05, restart_loss=s.loss,
                             restart_family=[["pentagon", "other"]] * 7, continuation={"digon": 1 + 0.3 * RATIO.log()},
                             crossing=1.0)
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["1/8", "1/4", "1/2", "1", "2", "4", "8"]
    with pytest.raises(ValueError, match="two families"):
        family_loss_figure(RATIO, {"pentagon": pent}, 0.05)
    assert ratio_label(0.125) == "1/8" and ratio_label(0.3) == "0.3" and ratio_label(2.0) == "2"


def test_configs_sweep_one_feature_around_a_pentagon():
    for quick, points in ((True, 13), (False, 25)):
        config = nonuniform.configs(quick)["relu_output"]
        probs = torch.tensor(config.data.feature_probability)
        assert probs.shape == (points, 5) and (probs[:, 1:] == nonuniform.BASE_P).all()
        ratio = probs[:, 0] / nonuniform.BASE_P
        assert ratio[0] == pytest.approx(1 / 8) and ratio[-1] == pytest.approx(8) and ratio[points // 2] == 1
        assert config.train.keep_all_restarts and config.model.n_hidden == 2
    assert get_recipe("nonuniform") is nonuniform.RECIPE


def tiny_configs(steps: int, restarts: int, ratios) -> dict[str, sp.RunConfig]:
    config = nonuniform.configs(True)["relu_output"]
    probs = tuple((nonuniform.BASE_P * x,) + (nonuniform.BASE_P,) * 4 for x in ratios)
    train = replace(config.train, steps=steps, restarts=restarts, eval_batches=16)
    return {"relu_output": replace(config, data=replace(config.data, feature_probability=probs), train=train)}


def test_recipe_writes_figures_and_claims(tmp_path):
    recipe = replace(nonuniform.RECIPE, configs=lambda quick: tiny_configs(20, 2, (1.0, 0.125, 8.0)))
    result = run_recipe(recipe, tmp_path, quick=True, compile=False, progress=False)
    assert {p.name for p in tmp_path.glob("*.png")} == {"nonuniform_geometry.png", "nonuniform_loss.png"}
    assert len(result.claims) == 4 and (tmp_path / "claims.json").exists()
    s = nonuniform.sweep(result.runs["relu_output"])
    assert s.ratio.tolist() == pytest.approx([0.125, 1.0, 8.0]) and s.W.shape == (3, 2, 5, 2)
    assert s.probability[:, 0].tolist() == pytest.approx([nonuniform.BASE_P * x for x in (0.125, 1.0, 8.0)])
    config = result.runs["relu_output"].config
    best_only = sp.train(replace(config, train=replace(config.train, keep_all_restarts=False)), compile=False,
                         progress=False)
    assert nonuniform.sweep(best_only).W.shape == (3, 1, 5, 2)


@pytest.mark.slow
def test_claims_hold_on_a_small_seeded_run():
    # digons up to 1/0.354 = 2.83x sparser, a pentagon from 2x on: the snap at 2.38x, the paper's place
    config = tiny_configs(2000, 6, (0.125, 0.354, 0.5, 1.0, 4.0))["relu_output"]
    run = sp.train(config, compile=False, progress=False)
    claims = nonuniform.RECIPE.claims(nonuniform.RECIPE.analysed({"relu_output": run}))
    # Room and snap. The crossing needs both families at two densities or more (6 restarts find both
    # only at 0.354 here; the quick run finds them at 0.177-0.707 and crosses at 2.42x); the norm-bias
    # claim is not held at quick size either (pooled rank correlation 0.55, see the module).
    failed = [f"{c.claim}: expected {c.expected}, measured {c.measured}" for c in claims[:2] if not c.held]
    assert not failed, "\n".join(failed)
