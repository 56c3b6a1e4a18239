"""Section 5.3: correlated and anticorrelated features. Measures on constructed geometries, the
claims on geometries that make them hold and fail, the figures, and the claims on small seeded runs."""

import math
from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

import superposition as sp
from superposition.analysis.correlation import (
    antipodal_pairing,
    cosines,
    pair_collapse,
    pair_cosine,
    planar_layout,
    set_index,
    set_overlaps,
    sets_contiguous,
)
from superposition.experiments import correlated, get_recipe, run_recipe
from superposition.figures.correlated import _tip_groups, set_geometry_figure, set_gram_figure

from .conftest import unchecked


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def ring(angles) -> torch.Tensor:
    """W [feat, 2] of unit vectors at the given angles (degrees)."""
    return torch.tensor([unit(a) for a in angles])


# Correlated pairs (0, 1), (2, 3): orthogonal within a pair, each antipodal to one of the other pair.
SQUARE_CORRELATED = ring([0, 90, 180, 270])
# Anticorrelated pairs: antipodal within a pair, pairs orthogonal.
SQUARE_ANTI = ring([0, 180, 90, 270])
HEXAGON_PAIRED = ring([0, 60, 120, 180, 240, 300])  # pairs (0,1), (2,3), (4,5) adjacent
HEXAGON_INTERLEAVED = ring([0, 180, 60, 240, 120, 300])  # each pair antipodal, not adjacent


# --- analysis -------------------------------------------------------------------------------


def test_set_index_and_errors():
    assert set_index(6, 2).tolist() == [0, 0, 1, 1, 2, 2]
    assert set_index(4, 4).tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="divide"):
        set_index(5, 2)


def test_cosines_and_pair_cosine():
    cos = cosines(SQUARE_CORRELATED)
    assert cos.shape == (4, 4)
    assert torch.allclose(cos.diagonal(), torch.ones(4))
    assert torch.allclose(pair_cosine(SQUARE_CORRELATED), torch.zeros(2), atol=1e-6)
    assert torch.allclose(pair_cosine(SQUARE_ANTI), -torch.ones(2), atol=1e-6)
    batched = torch.stack([SQUARE_CORRELATED, SQUARE_ANTI])
    assert pair_cosine(batched).shape == (2, 2)
    with pytest.raises(ValueError, match="sets of 2"):
        pair_cosine(SQUARE_CORRELATED, set_size=4)


def test_set_overlaps_local_basis_vs_mixed():
    eye = torch.eye(10)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    local = torch.cat([eye, -eye[perm]])  # each set an orthonormal basis, sets antipodal
    overlaps = set_overlaps(local, 10)
    assert float(overlaps.within_max) < 1e-6 and float(overlaps.within_mean) < 1e-6
    assert float(overlaps.between_mean) == pytest.approx(1.0)
    mixed = torch.cat([eye[:5], eye[:5], eye[5:], eye[5:]])  # duplicates inside each set
    bad = set_overlaps(mixed, 10)
    assert float(bad.within_max) == pytest.approx(1.0)
    assert float(bad.between_mean) == pytest.approx(0.0)
    dead = local.clone()
    dead[0] = 0.0  # a dead feature is ignored, not counted as orthogonal-with-overlap
    assert float(set_overlaps(dead, 10).within_max) < 1e-6


def test_pair_collapse_values():
    parallel = torch.tensor([[1.0, 0], [0.5, 0]])
    assert float(pair_collapse(parallel)) == pytest.approx(1.0)
    assert float(pair_collapse(SQUARE_CORRELATED[:2])) == pytest.approx(0.5)
    theta = torch.tensor([[1.0, 0.0], unit(60)])
    assert float(pair_collapse(theta)) == pytest.approx((1 + 0.5) / 2, abs=1e-5)
    assert pair_collapse(torch.stack([HEXAGON_PAIRED] * 3)).shape == (3, 3)
    assert float(pair_collapse(torch.tensor([[1, 0], [1, 0]]))) == pytest.approx(1.0)  # integers accepted


def test_antipodal_pairing():
    pairing = antipodal_pairing(SQUARE_ANTI)
    assert pairing.partner.tolist() == [1, 0, 3, 2]
    assert bool(pairing.mutual.all())
    assert torch.allclose(pairing.cos, -torch.ones(4), atol=1e-6)
    assert float(pairing.off_pair_max.max()) < 1e-6
    tri = ring([0, 120, 240])  # no antipodes: partners not mutual for all, cos = -1/2
    t = antipodal_pairing(tri)
    assert torch.allclose(t.cos, torch.full((3,), -0.5), atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        antipodal_pairing(torch.ones(1, 2))


def test_planar_layout_and_contiguity():
    layout = planar_layout(HEXAGON_PAIRED)
    assert torch.allclose(layout.gaps, torch.full((6,), 60.0), atol=1e-4)
    assert float(layout.gaps.sum()) == pytest.approx(360.0)
    assert bool(sets_contiguous(HEXAGON_PAIRED, 2))
    assert not bool(sets_contiguous(HEXAGON_INTERLEAVED, 2))
    assert bool(sets_contiguous(HEXAGON_PAIRED, 6))  # one set is always contiguous
    assert sets_contiguous(torch.stack([HEXAGON_PAIRED, HEXAGON_INTERLEAVED]), 2).tolist() == [True, False]
    with pytest.raises(ValueError, match="2-d"):
        unchecked(planar_layout)(torch.ones(3, 3))


# --- claims -----------------------------------------------------------------------------------


def test_orthogonal_and_antipodal_claims_tell_the_geometries_apart():
    assert correlated.orthogonal_claim(SQUARE_CORRELATED, 0.03).held
    assert not correlated.orthogonal_claim(SQUARE_ANTI, 0.03).held
    assert correlated.antipodal_claim(SQUARE_ANTI, 0.03).held
    assert not correlated.antipodal_claim(SQUARE_CORRELATED, 0.03).held
    collapsed = ring([0, 0, 180, 180])  # pairs collapsed onto one direction each
    assert not correlated.orthogonal_claim(collapsed, 0.3).held
    missing = SQUARE_CORRELATED.clone()
    missing[3] = 0.0
    assert not correlated.orthogonal_claim(missing, 0.03).held


def test_hexagon_claim():
    assert correlated.hexagon_claim(HEXAGON_PAIRED, 0.01).held
    assert not correlated.hexagon_claim(HEXAGON_INTERLEAVED, 0.01).held  # pairs not side by side
    squashed = ring([0, 20, 120, 140, 240, 260])  # side by side but not a hexagon
    assert not correlated.hexagon_claim(squashed, 0.01).held


def test_collapse_claim():
    one = ring([0, 60, 120, 180, 240, 240])
    every = ring([0, 0, 120, 120, 240, 240]) * 0.7
    grid = torch.stack([every, one, HEXAGON_PAIRED])
    claim = correlated.collapse_claim(grid, [0.5, 0.1, 0.01])
    assert claim.held, claim.measured
    assert "[0, 1, 3]" in claim.measured
    assert correlated.collapsed_pairs(grid).tolist() == [3, 1, 0]
    assert not correlated.collapse_claim(grid, [0.01, 0.1, 0.5]).held  # collapse with sparsity: wrong way
    assert not correlated.collapse_claim(torch.stack([one, HEXAGON_PAIRED]), [0.5, 0.01]).held  # not all collapse


def test_collapse_claim_names_the_instance_in_a_worse_minimum():
    one = ring([0, 60, 120, 180, 240, 240])
    every = ring([0, 0, 120, 120, 240, 240]) * 0.7
    grid = torch.stack([every, HEXAGON_PAIRED, one, HEXAGON_PAIRED])  # sparse → dense: 0, 1, 0, 3
    ps = [0.5, 0.1, 0.02, 0.01]
    claim = correlated.collapse_claim(grid, ps, {2: (3, 0.0005, 0.0004)})
    assert not claim.held
    assert claim.measured.endswith("; cause: training stopped in a worse minimum there: at 1 − S = 0.02 (1 collapsed) "
                                   "the W, b trained at 1 − S = 0.01 (0 collapsed) do better on its inputs "
                                   "(loss 0.0004 vs its own best restart's 0.0005)")
    assert "no neighbour's weights" in correlated.collapse_claim(grid, ps, {}).measured
    assert "cause" not in correlated.collapse_claim(grid, ps, {3: (2, 0.005, 0.004)}).measured  # would not fix it


def test_antipodal_claim_says_why_the_partners_are_wrong():
    claim = correlated.antipodal_claim(SQUARE_CORRELATED, 0.03, restarts=[3.6e-5, 3.5e-5], repaired=(3.5e-5, 1e-8))
    assert not claim.held
    assert ("cause: every restart stopped in a worse minimum (the kept one antipodal across the pairs); partners "
            "[2, 3, 0, 1]") in claim.measured
    assert "loss 1e-08 vs trained 3.5e-05 on the same inputs (lower)" in claim.measured
    plain = correlated.antipodal_claim(SQUARE_CORRELATED, 0.03, restarts=[3.6e-5], repaired=(3.5e-5, 4e-5))
    assert "cause" not in plain.measured and "(not lower)" in plain.measured
    assert "partners" not in correlated.antipodal_claim(SQUARE_ANTI, 0.03).measured


def test_mates_antipodal_reassigns_the_trained_directions():
    W, b = correlated.mates_antipodal(SQUARE_CORRELATED, torch.arange(4.0))
    assert correlated.antipodal_claim(W, 0.03).held
    assert b.tolist() == [0.0, 2.0, 1.0, 3.0]
    assert correlated.mates_antipodal(HEXAGON_PAIRED[:4], torch.zeros(4)) is None  # not in antipodal pairs


def test_local_basis_claim():
    eye = torch.eye(10)
    local = torch.cat([eye, -eye.flip(0)])
    assert correlated.local_basis_claim(local, 0.01, 10).held
    rand = torch.randn(20, 10, generator=torch.Generator().manual_seed(1))
    rand = rand / rand.norm(dim=1, keepdim=True)
    assert not correlated.local_basis_claim(rand, 0.01, 10).held
    separate = torch.cat([torch.eye(10)[:5], torch.zeros(5, 10), torch.eye(10)[5:], torch.zeros(5, 10)])
    assert not correlated.local_basis_claim(separate, 0.01, 10).held  # half the features dropped


# --- figures ----------------------------------------------------------------------------------


def test_set_geometry_figure():
    W = torch.stack([SQUARE_CORRELATED, SQUARE_ANTI, ring([0, 0, 90, 90])])
    fig = set_geometry_figure({"correlated": W, "anticorrelated": W}, [0.3, 0.1, 0.03], 2)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert fig.axes[0].get_title().startswith("S = 70%")
    with pytest.raises(ValueError, match="2-d"):
        set_geometry_figure({"x": torch.ones(1, 4, 3)}, [0.1], 2)
    with pytest.raises(ValueError, match="one per instance"):
        set_geometry_figure({"x": W}, [0.1], 2)
    with pytest.raises(ValueError, match="at least one row"):
        set_geometry_figure({}, [0.1], 2)


def test_tip_groups_share_a_label():
    assert _tip_groups(ring([0, 0, 90, 180]).numpy(), 0.1) == [[0, 1], [2], [3]]


def test_set_gram_figure():
    fig = set_gram_figure(torch.randn(2, 20, 10), [0.1, 0.01], 10)
    assert len(fig.axes) == 3  # two heatmaps and a colourbar


# --- small seeded runs --------------------------------------------------------------------------


def small(name: str, probabilities, steps: int, restarts: int) -> sp.RunConfig:
    config = correlated.configs(quick=True)[name]
    data = replace(config.data, feature_probability=tuple(probabilities))
    return replace(config, data=data, train=replace(config.train, steps=steps, restarts=restarts))


@pytest.mark.slow
def test_pair_claims_hold_on_small_runs():
    # best of 4, the quick recipe's protocol for these 2-d models (best of 2 stalled once seeds changed)
    runs = {name: sp.train(small(name, (0.1,), 2000, 4), compile=False, progress=False)
            for name in ("correlated_4", "anticorrelated_4")}
    claims = [correlated.orthogonal_claim(runs["correlated_4"].W[0], 0.1),
              correlated.antipodal_claim(runs["anticorrelated_4"].W[0], 0.1)]
    failed = [f"{c.claim}: {c.measured}" for c in claims if not c.held]
    assert not failed, failed


@pytest.mark.slow
def test_hexagon_and_collapse_hold_on_a_small_run():
    # the quick recipe's protocol (3000 steps, best of 4); 2000 steps, best of 2 stalled on a 40° gap
    run = sp.train(small("correlated_6", (0.5, 0.01), 3000, 4), compile=False, progress=False)
    claims = [correlated.hexagon_claim(run.W[1], 0.01), correlated.collapse_claim(run.W, [0.5, 0.01])]
    failed = [f"{c.claim}: {c.measured}" for c in claims if not c.held]
    assert not failed, failed


@pytest.mark.slow
def test_local_basis_holds_on_a_small_run():
    # the quick recipe's 3000 steps: at 1500 one set was still mixed (|cos| 0.33) from these initial weights
    run = sp.train(small("correlated_20", (0.01,), 3000, 1), compile=False, progress=False)
    claim = correlated.local_basis_claim(run.W[0], 0.01, 10)
    assert claim.held, claim.measured


def test_recipe_writes_figures_and_claims(tmp_path):
    tiny = {name: small(name, cfg.data.feature_probability, 20, 1) for name, cfg in correlated.configs(True).items()}
    recipe = replace(get_recipe("correlated"), configs=lambda quick: tiny)
    result = run_recipe(recipe, tmp_path, quick=True, compile=False, progress=False)
    assert {p.name for p in tmp_path.glob("*.png")} == {"correlated_pairs.png", "correlated_hexagon.png",
                                                          "correlated_sets.png"}
    assert (tmp_path / "claims.json").exists() and len(result.claims) == 5
    assert all(c.section == correlated.SECTION for c in result.claims)


def test_full_configs_are_the_paper_sizes():
    full, quick = correlated.configs(False), correlated.configs(True)
    assert full.keys() == quick.keys()
    sizes = {name: (c.model.n_features, c.model.n_hidden, c.data.distribution, c.data.set_size)
             for name, c in full.items()}
    assert sizes == {"correlated_4": (4, 2, "correlated", 2), "anticorrelated_4": (4, 2, "anticorrelated", 2),
                     "correlated_6": (6, 2, "correlated", 2), "correlated_20": (20, 10, "correlated", 10)}
    assert all(full[n].train.steps >= quick[n].train.steps for n in full)
