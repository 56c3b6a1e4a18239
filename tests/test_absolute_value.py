"""The absolute-value recipe: its claims on constructed weights (both answers) and on small seeded runs."""

from dataclasses import replace

import pytest
import torch

import superposition as sp
from superposition.experiments import absolute_value as av
from superposition.experiments import get_recipe

from .test_neurons import abs_w, motif_weights


def sign_pairs(n: int, m: int) -> torch.Tensor:
    """The dense optimum: the m/2 most important of n features each get a ReLU(x) and a ReLU(−x) neuron. [n, m]."""
    W = torch.zeros(n, m)
    for i in range(m // 2):
        W[i, 2 * i], W[i, 2 * i + 1] = 1.0, -1.0
    return W


def mixed(n: int = 12, m: int = 8, seed: int = 0) -> torch.Tensor:
    """Neurons 0–3: ReLU(±x) of features 0, 1; neurons 4–7 each a random mixture of all features. [n, m]."""
    W = sign_pairs(n, m)
    W[:, 4:] = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
    return W


def test_two_neurons_claim_says_both():
    assert av.two_neurons_claim(abs_w()).held
    one_sign = abs_w()
    one_sign[0, 1] = 1.0  # feature 0's second neuron now also fires on x > 0
    assert not av.two_neurons_claim(one_sign).held
    shared = abs_w()
    shared[1, 0] = 0.9  # neuron 0 stores features 0 and 1
    assert not av.two_neurons_claim(shared).held


def measured(W1: torch.Tensor, ps, W2: torch.Tensor | None = None, **losses) -> av.SweepAnalysis:
    return av.measure(W1, W2 if W2 is not None else torch.zeros(W1.shape[0], W1.shape[2], W1.shape[1]), ps, **losses)


def test_dense_sparse_and_trend_claims_say_both():
    ps = [1.0, 0.1, 0.001]
    dense, half, poly = sign_pairs(12, 8), mixed(), torch.randn(12, 8, generator=torch.Generator().manual_seed(1))
    good = measured(torch.stack([dense, half, poly]), ps)
    assert av.dense_claim(good).held and av.sparse_claim(good).held and av.trend_claim(good).held
    backwards = measured(torch.stack([poly, half, dense]), ps)
    assert not av.dense_claim(backwards).held
    assert not av.sparse_claim(backwards).held
    assert not av.trend_claim(backwards).held


def importance_sweep(n: int = 40, m: int = 40, mono: int = 10, seed: int = 0) -> torch.Tensor:
    """``[n, m]``: neurons 0..mono-1 monosemantic for features 0..mono/2-1 (one per sign), the rest mixtures."""
    W = torch.zeros(n, m)
    for j in range(mono):
        W[j // 2, j] = 1.0 if j % 2 == 0 else -1.0
    W[:, mono:] = torch.randn(n, m - mono, generator=torch.Generator().manual_seed(seed))
    return W


def test_importance_claim_says_both():
    ps = [1.0, 0.1]
    good = measured(torch.stack([sign_pairs(40, 40), importance_sweep()]), ps)
    claim = av.importance_claim(good)
    assert claim.held, claim.measured
    assert "(10 mono, 30 poly)" in claim.measured
    late = importance_sweep()
    late = late[torch.arange(39, -1, -1)]  # the same neurons, storing the least important features
    assert not av.importance_claim(measured(torch.stack([sign_pairs(40, 40), late]), ps)).held
    assert not av.importance_claim(measured(torch.stack([sign_pairs(12, 8)] * 2), ps)).held  # never both kinds


def test_importance_claim_says_when_the_failing_models_had_not_settled():
    ps = [1.0, 0.1]
    late = importance_sweep()[torch.arange(39, -1, -1)]  # monosemantic neurons on the least important features
    W = torch.stack([sign_pairs(40, 40), late])
    falling = [[1.0] * 40, [2.0] * 15 + [1.0] * 10 + [0.25] * 15]
    claim = av.importance_claim(measured(W, ps, loss_curve=falling))
    assert not claim.held
    assert claim.measured.endswith("; cause: not settled: over the second half of training the loss still fell 75% "
                                   "at 1 − S = 0.1")
    assert "cause" not in av.importance_claim(measured(W, ps, loss_curve=[[1.0] * 40] * 2)).measured  # settled
    assert "cause" not in av.importance_claim(measured(W, ps)).measured  # no curve


def test_importance_claim_needs_significance_not_just_a_majority():
    """Two monosemantic neurons on features 0 and 20, 34 polysemantic ones on features 4..37: the
    monosemantic feature is the more important in most pairs (share 0.757), yet not significantly so."""
    W = torch.zeros(40, 36)
    W[0, 0], W[20, 1] = 1.0, -1.0
    for j in range(2, 36):
        W[j + 2, j], W[j + 3, j] = 1.0, 0.9  # the top feature holds 55%: polysemantic
    claim = av.importance_claim(measured(torch.stack([sign_pairs(40, 36), W]), [1.0, 0.1]))
    assert "(2 mono, 34 poly): share 0.757" in claim.measured and not claim.held, claim.measured


def test_more_important_test_matches_the_normal_approximation():
    share, pvalue = sp.analysis.neurons.more_important_test(torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5, 6]))
    assert share == 1.0 and pvalue == pytest.approx(0.02591, abs=1e-4)  # scipy.stats.mannwhitneyu, asymptotic
    share, pvalue = sp.analysis.neurons.more_important_test(torch.tensor([5, 5]), torch.tensor([5, 5, 5]))
    assert share == 0.5 and pvalue == 1.0  # all tied: no evidence
    with pytest.raises(ValueError, match="both kinds"):
        sp.analysis.neurons.more_important_test(torch.tensor([]), torch.tensor([1]))


def test_motif_claim_reports_sparse_motifs_only():
    W1, W2 = motif_weights()
    plain1, plain2 = torch.eye(3), torch.eye(3)
    held = av.motif_claim(measured(torch.stack([plain1, W1]), [1.0, 0.01], torch.stack([plain2, W2])))
    assert held.held and "1 − S = 0.01: neuron 0 stores 0 (1) and 1 (0.5)" in held.measured
    assert not av.motif_claim(measured(torch.stack([W1, plain1]), [1.0, 0.01], torch.stack([W2, plain2]))).held


def test_few_claim_says_both():
    few = measured(torch.stack([sign_pairs(12, 8), mixed()]), [1.0, 0.03])  # 4 of 8 polysemantic: not a few
    assert not av.few_claim(few).held and "4 of 8 live neurons polysemantic" in av.few_claim(few).measured
    assert av.few_claim(measured(torch.stack([sign_pairs(12, 8)] * 2), [1.0, 0.03])).held
    assert not av.few_claim(measured(torch.stack([sign_pairs(12, 8)] * 2), [1.0, 0.1])).held  # not trained there


def test_construction_claim_says_both():
    importance = 0.8 ** torch.arange(12.0)
    built = float(sp.analysis.neurons.sign_pair_loss(importance, 8, 1.0))
    ps = [1.0, 0.1]
    W = torch.stack([sign_pairs(12, 8), mixed()])
    imp = torch.stack([importance] * 2)
    good = av.construction_claim(measured(W, ps, loss=[built * 0.99, 1.0], loss_se=[built * 0.01, 0.1],
                                          importance=imp))
    assert good.held and "ratio 0.99" in good.measured
    bad = av.construction_claim(measured(W, ps, loss=[built * 1.1, 1.0], loss_se=[built * 0.01, 0.1], importance=imp))
    assert not bad.held
    assert not av.construction_claim(measured(W, ps)).held  # no loss known


def test_construction_claim_says_why_training_stalled():
    importance = 0.8 ** torch.arange(12.0)
    built = float(sp.analysis.neurons.sign_pair_loss(importance, 8, 1.0))
    doubled = torch.zeros(12, 8)  # features 0 and 1 each on two neurons per sign; 2 and 3 without any
    for j in range(8):
        doubled[j // 4, j] = 1.0 if j % 2 == 0 else -1.0
    missing = float(importance[2:4].sum()) * (1 / 3 - 1 / 4) / 12
    flat, falling = [[1.0] * 40, [1.0] * 40], [[1.0] * 30 + [0.9] * 10, [1.0] * 40]
    W, ps, imp = torch.stack([doubled, mixed()]), [1.0, 0.1], torch.stack([importance] * 2)

    def claim(curve):
        return av.construction_claim(measured(W, ps, loss=[built + missing, 1.0], loss_se=[built * 0.01, 0.1],
                                              importance=imp, loss_curve=curve))

    stalled = claim(flat)
    assert not stalled.held
    assert stalled.measured.endswith(
        "4 of 8 neurons repeat another's (feature, sign), at most 4 on one feature; cause: training stalled with its "
        "8 neurons on 2 features (0–1), 4 of them repeats, where the construction gives the 4 most important one "
        f"neuron per sign: those left without a neuron cost {sp.experiments.base.fmt(missing)} at their best "
        "constant, 100% of the gap to the construction; the training loss fell 0.00% over the second half of training")
    still = claim(falling).measured  # still learning: not stalled, not settled
    assert "stalled" not in still and still.endswith(
        "; cause: not settled: the training loss still fell 10% over the second half of training")
    assert "cause" not in claim(None).measured  # no curve, no cause
    assert "cause" not in av.construction_claim(measured(torch.stack([sign_pairs(12, 8), mixed()]), ps,
                                                         loss=[built * 1.1, 1.0], loss_se=[built * 0.01, 0.1],
                                                         importance=imp, loss_curve=flat)).measured  # no repeats


def test_few_claim_says_when_the_model_had_not_settled():
    importance = 0.8 ** torch.arange(12.0)
    built = float(sp.analysis.neurons.sign_pair_loss(importance, 8, 0.03))
    W, ps, imp = torch.stack([sign_pairs(12, 8), mixed()]), [1.0, 0.03], torch.stack([importance] * 2)
    falling = [[1.0] * 40, [2.0] * 15 + [1.0] * 10 + [0.25] * 15]

    def claim(loss, curve):
        return av.few_claim(measured(W, ps, loss=[1.0, loss], loss_se=[0.1, built * 0.01], importance=imp,
                                     loss_curve=curve))

    fmt = sp.experiments.base.fmt
    unsettled = claim(built * 1.01, falling)
    assert not unsettled.held
    assert unsettled.measured.endswith(
        "4 of 8 live neurons polysemantic (50%); cause: not settled: the training loss still fell 75% over the second "
        "half of training, and the polysemantic neurons buy no loss yet: the all-monosemantic sign-pair "
        f"construction's exact loss is {fmt(built)}, trained {fmt(built * 1.01)} ± {fmt(built * 0.01)}")
    assert claim(built * 0.5, falling).measured.endswith("over the second half of training")  # they do buy loss
    assert "cause" not in claim(built, [[1.0] * 40] * 2).measured  # settled: no cause


def test_late_fall():
    assert av.late_fall([[2.0] * 15 + [1.0] * 10 + [0.25] * 15]) == pytest.approx((0.75,))  # middle 1, end 0.25
    assert av.late_fall([[4.0] * 4 + [2.0] * 4 + [1.0] * 4]) == pytest.approx((0.5,))  # 12 logs: windows of 3
    assert av.late_fall([[1.0] * 7]) is None


def test_configs_and_registry():
    full, quick = av.configs(False), av.configs(True)
    assert set(full) == set(quick) == {"abs_3_6", "abs_sweep"}
    sweep = full["abs_sweep"]
    assert (sweep.model.kind, sweep.model.n_features, sweep.model.n_hidden) == ("abs_mlp", 100, 40)
    assert sweep.data.feature_probability == av.PROBABILITIES and sweep.data.signed
    assert sweep.data.importance_decay == 0.8
    assert (full["abs_3_6"].model.n_features, full["abs_3_6"].model.n_hidden) == (3, 6)
    assert quick["abs_sweep"].n_instances * quick["abs_sweep"].train.steps < sweep.n_instances * sweep.train.steps
    assert get_recipe("absolute-value").section == av.SECTION


@pytest.mark.slow
def test_claims_hold_on_small_runs():
    """n = 3, m = 6: a neuron per sign; a 30/12 sweep: monosemantic when dense, polysemantic when sparse."""
    run = sp.train(av.configs(quick=True)["abs_3_6"], compile=False, progress=False)  # as the quick recipe
    sweep = av.configs(quick=True)["abs_sweep"]
    sweep = replace(sweep, model=replace(sweep.model, n_features=30, n_hidden=12),
                    data=replace(sweep.data, feature_probability=(1.0, 0.01)),
                    train=replace(sweep.train, steps=3000, batch_size=512))
    runs = sp.train(sweep, compile=False, progress=False)
    s = av.measure(runs.params["W1"], runs.params["W2"], [1.0, 0.01])
    claims = [av.two_neurons_claim(run.params["W1"][0]), av.dense_claim(s), av.sparse_claim(s)]
    failed = [f"{c.claim}: expected {c.expected}, measured {c.measured}" for c in claims if not c.held]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("p", [1.0, 0.1])
def test_sign_pair_construction_computes_the_top_features_exactly_at_its_closed_form_loss(p):
    from superposition.analysis.neurons import sign_pair_loss, sign_pair_params
    from superposition.estimate import estimate_loss

    config = sp.RunConfig(model=sp.ModelConfig("abs_mlp", n_features=12, n_hidden=8),
                          data=sp.DataConfig(feature_probability=(p,), importance_decay=0.8, signed=True))
    params = sign_pair_params(sp.data.importance_matrix(config)[0], 8, p)
    x = torch.rand(1, 64, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = sp.models.forward(config.model, params, x).output
    assert torch.allclose(out[..., :4], x[..., :4].abs(), atol=1e-6)  # the 4 most important: |x| exactly
    assert torch.allclose(out[..., 4:], torch.full_like(out[..., 4:], p / 2))  # the rest: their mean E|x|
    exact = float(sign_pair_loss(sp.data.importance_matrix(config)[0], 8, p))
    estimate = estimate_loss(config, params, rel_se=0.002)
    assert abs(float(estimate.mean[0]) - exact) <= 3 * float(estimate.se[0]) + 1e-4 * exact


def test_sign_pair_construction_follows_importance_not_index():
    from superposition.analysis.neurons import sign_pair_params

    params = sign_pair_params(torch.tensor([[0.1, 1.0, 0.5]]), 2, 1.0)
    assert params["W1"][0, 1].tolist() == [1.0, -1.0] and params["b"][0].tolist() == [0.5, 0.0, 0.5]
    with pytest.raises(ValueError, match="0 < p"):
        sign_pair_params(torch.ones(3), 2, 0.0)


def test_duplicate_neurons():
    from superposition.analysis.neurons import duplicate_neurons

    W = sign_pairs(12, 8)
    assert int(duplicate_neurons(W).duplicates) == 0 and int(duplicate_neurons(W).most) == 2
    W[0, 2], W[1, 2] = 0.8, 0.0  # neuron 2 now a second ReLU(x) of feature 0
    W[0, 3], W[1, 3] = -0.5, 0.0  # neuron 3 a second ReLU(−x) of feature 0
    dup = duplicate_neurons(torch.stack([sign_pairs(12, 8), W]))
    assert dup.duplicates.tolist() == [0, 2] and dup.most.tolist() == [2, 4]
