"""The paper's neuron codes of section 8: construction, structure, polishing."""

import itertools

import pytest
import torch

from superposition.analysis import codes as cd
from superposition.analysis.neurons import classify_neurons, feature_codes, shared_groups
from superposition.config import DataConfig, ModelConfig, RunConfig
from superposition.estimate import estimate_loss

IMPORTANCE = 0.75 ** torch.arange(10, dtype=torch.float32)


def as_code(W: torch.Tensor) -> cd.Code:
    return tuple(tuple(row.nonzero().flatten().tolist()) for row in feature_codes(W))


def loss(W: torch.Tensor, b: torch.Tensor, p: float) -> float:
    config = RunConfig(model=ModelConfig("relu_hidden", n_features=10, n_hidden=5),
                       data=DataConfig(feature_probability=(p,), importance_decay=0.75))
    return float(estimate_loss(config, {"W": W.unsqueeze(0), "b": b.unsqueeze(0)}).mean[0])


def test_pair_code_is_every_pair_once():
    code = cd.pair_code(10, 5)
    assert sorted(code) == list(itertools.combinations(range(5), 2))
    assert cd.pair_code(12, 5)[10:] == ((), ())


@pytest.mark.parametrize("marks", ["important", "unimportant"])
def test_distinguisher_codes_are_the_papers(marks):
    six = cd.distinguisher_code(10, 1, 3, marks)
    assert six[0] == (0,) and six[7:] == ((),) * 3
    important, unimportant = six[1:4], six[4:7]
    a_on, a_off = (important, unimportant) if marks == "important" else (unimportant, important)
    assert all(1 in c for c in a_on) and not any(1 in c for c in a_off)
    strip = lambda cs: [tuple(j for j in c if j != 1) for c in cs]  # noqa: E731
    assert sorted(strip(important)) == sorted(itertools.combinations((2, 3, 4), 2))  # two of the other three
    assert sorted(strip(unimportant)) == [(2,), (3,), (4,)]  # one neuron each
    eight = cd.distinguisher_code(10, 0, 4, marks)
    assert sorted(len(c) for c in strip_zero(eight[:8])) == [1] * 4 + [3] * 4 and eight[8:] == ((), ())
    with pytest.raises(ValueError, match="marks"):
        cd.distinguisher_code(10, 1, 3, "both")
    with pytest.raises(ValueError, match="too small"):
        cd.distinguisher_code(6, 1, 3, marks)


def strip_zero(codes):
    return [tuple(j for j in c if j != 0) for c in codes]


def test_code_weights_realise_their_code_and_group():
    for code in (cd.pair_code(), cd.distinguisher_code(10, 1, 3, "unimportant"),
                 cd.distinguisher_code(10, 0, 4, "important")):
        W = cd.code_weights(code, 5)
        assert as_code(W) == code
        assert ((W < 0) <= cd.support_mask(code, 5)).all()  # inhibition only inside the feature's group
    six = cd.code_weights(cd.distinguisher_code(10, 1, 3, "unimportant"), 5)
    assert classify_neurons(six).monosemantic.tolist() == [True, False, False, False, False]
    assert cd.code_groups(cd.distinguisher_code(10, 1, 3, "unimportant")) == [{0}, {1, 2, 3, 4}]


def test_distinguisher_finds_the_papers_neuron_and_only_it():
    for n_dedicated, others in ((1, 3), (0, 4)):
        for marks in ("important", "unimportant"):
            W = cd.code_weights(cd.distinguisher_code(10, n_dedicated, others, marks), 5)
            (group,) = [g for g in shared_groups(W) if len(g.neurons) == others + 1]
            assert cd.distinguisher(group) == n_dedicated
    (pairs,) = shared_groups(cd.code_weights(cd.pair_code(), 5))
    assert cd.distinguisher(pairs) is None
    W = cd.code_weights(cd.distinguisher_code(10, 1, 3, "unimportant"), 5)
    W[[1, 4]] = W[[4, 1]]  # an unimportant feature swaps code with an important one: no importance split
    (group,) = [g for g in shared_groups(W) if len(g.neurons) == 4]
    assert cd.distinguisher(group) is None


def test_block_start_keeps_dedicated_neurons_and_its_support():
    code = ((0,), (1,)) + ((2, 3, 4),) * 5 + ((),) * 3
    W = cd.block_start(code, 5, seed=3)
    assert W[0].tolist() == [1, 0, 0, 0, 0] and W[1].tolist() == [0, 1, 0, 0, 0]
    assert (W[2:7, :2] == 0).all() and (W[7:] == 0).all() and (W[2:7, 2:] != 0).all()
    torch.testing.assert_close(W, cd.block_start(code, 5, seed=3))
    assert not torch.equal(W, cd.block_start(code, 5, seed=4))


def test_optimise_locally_is_seeded_masked_and_descends():
    code = cd.distinguisher_code(10, 1, 3, "unimportant")
    W0 = cd.code_weights(code, 5).unsqueeze(0)
    mask = cd.support_mask(code, 5).unsqueeze(0)
    a = cd.optimise_locally(W0, [0.12], IMPORTANCE, mask=mask, steps=150, batch=256, seed=1)
    b = cd.optimise_locally(W0, [0.12], IMPORTANCE, mask=mask, steps=150, batch=256, seed=1)
    torch.testing.assert_close(a.W, b.W)
    assert (a.W[~mask] == 0).all()
    assert loss(a.W[0], a.b[0], 0.12) < 0.9 * loss(W0[0], torch.zeros(10), 0.12)
    with pytest.raises(ValueError, match="instances"):
        cd.optimise_locally(W0, [0.1, 0.2], IMPORTANCE, steps=1)


def test_polished_pair_code_keeps_its_pairs_and_beats_one_neuron_per_feature_when_sparse():
    """The paper's point: at 1 − S = 0.04, superposition (10 features on pairs) beats 5 monosemantic neurons."""
    dense = ((0,), (1,), (2,), (3,), (4,)) + ((),) * 5
    candidates = [cd.Candidate("pairs", 0.04, cd.code_weights(cd.pair_code(), 5)),
                  cd.Candidate("dense", 0.04, cd.code_weights(dense, 5))]
    out = cd.polish(candidates, IMPORTANCE, steps=600)
    assert sorted(as_code(out.W[0])) == list(itertools.combinations(range(5), 2))
    assert classify_neurons(out.W[1]).monosemantic.all()
    pairs, mono = loss(out.W[0], out.b[0], 0.04), loss(out.W[1], out.b[1], 0.04)
    assert pairs < 0.8 * mono


def test_paper_candidates_cover_the_regimes():
    cands = cd.paper_candidates([("five_in_three", [0.15]), ("six_in_four", [0.12]), ("eight_in_five", [0.07, 0.06]),
                                ("pairs", [0.04])], random_starts=2)
    assert [c.p for c in cands] == [0.15, 0.15, 0.12, 0.12, 0.07, 0.07, 0.06, 0.06, 0.04]
    assert all(c.W.shape == (10, 5) for c in cands)
    with pytest.raises(ValueError, match="regime"):
        cd.paper_candidates([("seven_in_two", [0.1])])
