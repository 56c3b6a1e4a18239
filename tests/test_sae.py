"""Sparse autoencoders: config validation, gradients, batched == alone, scores, toy-model recovery."""

from __future__ import annotations

import math

import pytest
import torch

from superposition.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from superposition.run import Metrics, Run
from superposition.sae import (
    DictionaryConfig,
    SAEConfig,
    SAERun,
    SourceConfig,
    build_source,
    evaluate_sae,
    support_scores,
    train_all,
    train_sae,
)
from superposition.sae import metrics as sm
from superposition.sae.model import init_params, loss_and_grads, reference_loss
from superposition.sae.train import learning_rate, make_buffers

SMALL = DictionaryConfig(n_features=24, n_hidden=12)


def small(architecture: str = "relu", **kw) -> SAEConfig:
    base = dict(n_latents=(8, 16), steps=60, batch_size=64, source=SourceConfig(dictionary=SMALL))
    if architecture == "relu":
        base["l1_coefficient"] = (1e-3, 1e-2)
    else:
        base["k"] = (2, 3)
        base["l1_coefficient"] = (0.0,)
    return SAEConfig(architecture=architecture, **(base | kw))


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(architecture="topk", n_latents=(4, 16), k=(5,)), r"sae.k\[0\] = 5 is invalid: must be at most the smallest"),
    (dict(l1_coefficient=(0.1, -0.5)), r"sae.l1_coefficient\[1\] = -0.5 is invalid: must be a number in \[0"),
    (dict(architecture="topk"), r"sae.k = None is invalid: is required for architecture topk"),
    (dict(k=(3,)), r"sae.k = \(3,\) is invalid: must be unset"),
    (dict(architecture="gated"), r"sae.architecture = 'gated' is invalid: must be one of relu, topk"),
    (dict(n_latents=(0,)), r"sae.n_latents\[0\] = 0 is invalid: must be an integer >= 1"),
    (dict(n_latents=()), r"sae.n_latents = \(\) is invalid: must be a non-empty list"),
    (dict(steps=0), r"sae.steps = 0 is invalid"),
    (dict(steps=10, lr_decay_steps=11), r"sae.lr_decay_steps = 11 is invalid: must be at most sae.steps \(10\)"),
    (dict(lr_decay_steps=-1), r"sae.lr_decay_steps = -1 is invalid: must be an integer >= 0"),
])
def test_bad_config_names_field_value_and_range(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SAEConfig(**kwargs)


def test_bad_dictionary_and_source():
    with pytest.raises(ConfigError, match=r"dictionary.orthogonal = True is invalid: needs n_features <= n_hidden"):
        DictionaryConfig(n_features=10, n_hidden=4, orthogonal=True)
    with pytest.raises(ConfigError, match=r"n_features = 10 is invalid: must be a multiple of 1 \+ n_children"):
        DictionaryConfig(n_features=10, structure="hierarchy", n_children=2)
    with pytest.raises(ConfigError, match="source.kind = 'file' is invalid"):
        SourceConfig(kind="file")
    with pytest.raises(ConfigError, match="needs the toy-model run"):
        build_source(SAEConfig(source=SourceConfig(kind="run")))


def test_config_json_round_trip_and_unknown_keys():
    config = small("topk", seeds=(0, 3))
    assert SAEConfig.from_json(config.to_json()) == config
    raw = config.to_dict() | {"l1": 0.1}
    with pytest.raises(ConfigError, match="unknown field"):
        SAEConfig.from_dict(raw)
    raw = config.to_dict()
    raw["source"]["dictionary"]["decay"] = 2.0
    with pytest.raises(ConfigError, match=r"dictionary.decay = 2.0 is invalid"):
        SAEConfig.from_dict(raw)


def test_grid_order_and_alone():
    config = small(seeds=(0, 1))
    grid = config.grid()
    assert len(grid) == 8 and grid[0] == (8, 1e-3, None, 0) and grid[-1] == (16, 1e-2, None, 1)
    assert config.alone(5).grid() == [grid[5]]


# --- data -----------------------------------------------------------------------------------------


def test_sharkey_dictionary_defaults():
    source = build_source(SAEConfig())
    assert source.features.shape == (512, 256)
    assert torch.allclose(source.features.norm(dim=1), torch.ones(512), atol=1e-5)
    assert math.isclose(float(source.probability.sum()), 5.0, rel_tol=1e-5)
    assert math.isclose(float(source.probability[1] / source.probability[0]), 0.99, rel_tol=1e-5)
    codes = source.codes(0, 4096)
    assert abs(float((codes > 0).sum(1).float().mean()) - 5.0) < 0.2
    assert 0.0 < float(codes.max()) <= 1.0


def test_correlated_dictionary_keeps_probabilities_and_correlates():
    config = DictionaryConfig(n_features=32, n_hidden=16, n_active=4, structure="correlated", correlation_rank=2)
    source = build_source(SAEConfig(source=SourceConfig(dictionary=config)))
    gates = source.gates(0, 20_000).float()
    assert torch.allclose(gates.mean(0), source.probability, atol=0.015)
    corr = torch.corrcoef(gates.T)
    off = corr[~torch.eye(32, dtype=torch.bool)]
    assert float(off.abs().mean()) > 0.05  # independent gates would give ~0.01


def test_hierarchy_children_only_with_their_parent():
    config = DictionaryConfig(n_features=12, n_hidden=12, structure="hierarchy", n_children=2, n_active=1.5,
                              orthogonal=True, magnitude="one")
    gates = build_source(SAEConfig(source=SourceConfig(dictionary=config))).gates(0, 5000).view(5000, 4, 3)
    parent, children = gates[:, :, 0], gates[:, :, 1:]
    assert not bool((children & ~parent[:, :, None]).any())
    on = children[parent].float().mean()
    assert abs(float(on) - 0.5) < 0.03


def test_batches_depend_only_on_seed_and_step():
    a, b = build_source(small()), build_source(small(n_latents=(4,)))
    assert torch.equal(a.batch(3, 16), b.batch(3, 16))
    assert not torch.equal(a.batch(3, 16), a.batch(4, 16))


# --- model --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk"])
def test_hand_written_gradients_match_autograd(architecture, sparse):
    config = small(architecture)
    grid, buffers = config.grid(), make_buffers(config)
    params = init_params(12, [p.n_latents for p in grid], [p.seed for p in grid])
    gen = torch.Generator().manual_seed(0)
    params["b_dec"] = 0.1 * torch.randn(params["b_dec"].shape, generator=gen)
    params["b_enc"] = 0.1 * torch.randn(params["b_enc"].shape, generator=gen) * buffers.mask
    params["W_enc"] = params["W_enc"] + 0.1 * torch.randn(params["W_enc"].shape, generator=gen) * buffers.mask[:, None]
    x = build_source(config).batch(0, 64)
    out = loss_and_grads(params, x, buffers, sparse=sparse)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    reference = reference_loss(leaves, x, buffers)
    reference.backward()
    assert torch.allclose(out.loss.sum(), reference, rtol=1e-5)
    for name, value in leaves.items():
        assert value.grad.abs().sum() > 0
        assert torch.allclose(out.grads[name], value.grad, atol=1e-6, rtol=1e-4), name


@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk"])
def test_sparse_and_dense_steps_train_the_same_saes(architecture, monkeypatch):
    import superposition.sae.sparse as sparse

    config = small(architecture, decoder_bias=architecture != "topk")
    monkeypatch.setattr(sparse, "SPARSE_MIN_WORK", 0)
    monkeypatch.setattr(sparse, "SPARSE_DENSITY", 2.0)
    calls = []
    monkeypatch.setattr(sparse, "active", lambda acts, f=sparse.active: calls.append(1) or f(acts))
    on = train_sae(config)
    assert len(calls) == config.steps * len(config.size_groups())
    monkeypatch.setattr(sparse, "SPARSE_DENSITY", -1.0)
    off = train_sae(config)
    assert len(calls) == config.steps * len(config.size_groups())
    for name, value in off.params.items():
        assert torch.allclose(on.params[name], value, atol=1e-5), name
    assert on.final_loss == pytest.approx(off.final_loss, rel=1e-4)


def test_the_sparse_products_are_chosen_per_instance_when_few_latents_fire():
    from superposition.sae.sparse import worth_it

    mask = torch.ones(2, 2048, dtype=torch.bool)
    acts = torch.zeros(2, 512, 2048)
    acts[:, :, :10] = 1.0  # 0.5% of the latents fire
    assert worth_it(acts, mask, 256).tolist() == [True, True]
    assert worth_it(acts, mask, 1).tolist() == [False, False]  # too small to pay the sparse path's fixed cost
    acts[1, :, :1024] = 1.0
    assert worth_it(acts, mask, 256).tolist() == [True, False]


@pytest.mark.parametrize("architecture", ["relu", "topk"])
def test_a_step_split_between_sparse_and_dense_instances_equals_either(architecture, monkeypatch):
    import superposition.sae.sparse as sparse

    config = small(architecture, seeds=(0, 1))
    grid, buffers = config.grid(), make_buffers(config)
    params = init_params(12, [p.n_latents for p in grid], [p.seed for p in grid])
    x = build_source(config).batch(0, 64)
    monkeypatch.setattr(sparse, "worth_it", lambda acts, mask, n: torch.arange(acts.shape[0]) % 2 == 0)
    split = loss_and_grads(params, x, buffers)
    for forced in (False, True):
        whole = loss_and_grads(params, x, buffers, sparse=forced)
        assert torch.allclose(split.loss, whole.loss, rtol=1e-6)
        for name, value in whole.grads.items():
            assert torch.allclose(split.grads[name], value, atol=1e-7, rtol=1e-4), (forced, name)


@pytest.mark.parametrize("split", [False, True], ids=["padded", "one-step-per-size"])
@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk"])
def test_batched_saes_equal_saes_trained_alone(architecture, split, monkeypatch):
    import superposition.sae.config as sae_config

    monkeypatch.setattr(sae_config, "SPLIT_WASTE", 0 if split else float("inf"))
    config = small(architecture, seeds=(0, 1))
    assert len(config.size_groups()) == (len(config.n_latents) if split else 1)
    batched = train_sae(config)
    for i, point in enumerate(config.grid()):
        alone = train_sae(config.alone(i))
        n = point.n_latents
        for name, value in alone.params.items():
            got = batched.params[name][i]
            got = got[..., :n] if name == "W_enc" else got[:n] if name in ("W_dec", "b_enc") else got
            assert torch.allclose(got, value[0], atol=1e-5), (i, name)
        assert torch.allclose(batched.threshold[i, :n], alone.threshold[0], atol=1e-5)
        assert batched.final_loss[i] == pytest.approx(alone.final_loss[0], rel=1e-4)
    pad = ~batched.mask
    assert not batched.params["W_dec"][pad].any() and not batched.params["b_enc"][pad].any()


def test_workers_train_the_same_saes_bit_for_bit(monkeypatch):
    """Size groups of two configs spread over two processes: the same weights, thresholds and loss
    curves as one process at one thread."""
    import superposition.sae.config as sae_config
    from superposition.train import torch_threads

    monkeypatch.setattr(sae_config, "SPLIT_WASTE", 0)  # one step per dictionary size
    configs = [small(), small("batchtopk", n_latents=(8, 12, 16))]
    sources = [build_source(c) for c in configs]
    with torch_threads(1):
        alone = train_all(configs, sources)
        pooled = train_all(configs, sources, workers=2)
    for a, b in zip(alone, pooled, strict=True):
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
        assert torch.equal(a.threshold, b.threshold)
        assert a.loss_steps == b.loss_steps and a.loss_curve == b.loss_curve and a.final_loss == b.final_loss


def test_workers_auto_uses_the_cores_only_for_large_generated_grids(monkeypatch):
    from superposition.sae import parallel

    config = small()
    source = build_source(config)
    assert parallel.resolve_workers("auto", [config], [source]) == 1  # below PARALLEL_MIN_WORK
    monkeypatch.setattr(parallel, "PARALLEL_MIN_WORK", 0.0)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 8)
    assert parallel.resolve_workers("auto", [config], [source]) == len(config.size_groups())
    assert parallel.resolve_workers("auto", [config, config], [source, source]) == 2 * len(config.size_groups())
    run = orthogonal_run()
    toy = SAEConfig(architecture="relu", n_latents=(12,), l1_coefficient=(1e-3,), steps=5,
                    source=SourceConfig(kind="run", run_name="orthogonal"))
    assert parallel.resolve_workers("auto", [toy], [build_source(toy, run)]) == 1  # toy-model sources: in process
    assert parallel.resolve_workers(5, [config], [source]) == len(config.size_groups())
    for bad in (0, -1, True, 1.5, "all"):
        with pytest.raises(ConfigError, match=r"workers = .* is invalid: must be a positive integer or 'auto'"):
            parallel.resolve_workers(bad, [config], [source])


def test_training_is_deterministic_and_decoder_stays_unit_norm():
    a, b = train_sae(small()), train_sae(small())
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    norms = a.params["W_dec"].norm(dim=-1)[a.mask]
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_learning_rate_decays_linearly_over_the_last_steps():
    config = small(steps=10, lr=1e-3, lr_decay_steps=4)
    rates = [float(learning_rate(config, torch.tensor(float(t)))) for t in range(1, 11)]
    assert rates == pytest.approx([1e-3] * 6 + [1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert learning_rate(small(steps=10), torch.tensor(3.0)) == small().lr  # no decay: the constant
    decayed, constant = train_sae(small(lr_decay_steps=30, log_every=10)), train_sae(small(log_every=10))
    assert [row[:3] for row in decayed.loss_curve] == [row[:3] for row in constant.loss_curve]  # until step 31
    assert not torch.equal(decayed.params["W_dec"], constant.params["W_dec"])


def test_topk_keeps_k_latents_and_batchtopk_on_average():
    scores = evaluate_sae(train_sae(small("topk")), build_source(small("topk")))
    # at most k per example; fewer only where fewer than k pre-activations are positive
    assert all(0.9 * k < v <= k for v, k in zip(scores.l0, [2, 3, 2, 3], strict=True)), scores.l0
    bt = evaluate_sae(train_sae(small("batchtopk", steps=200)), build_source(small()))
    assert all(abs(v - k) < 1.0 for v, k in zip(bt.l0, [2, 3, 2, 3], strict=True))


# --- metrics --------------------------------------------------------------------------------------


def test_mmcs_of_the_truth_is_one_and_of_a_random_dictionary_its_known_value():
    truth = build_source(SAEConfig()).features  # 512 Gaussian unit directions in 256 dimensions
    assert torch.allclose(sm.mmcs(truth, truth[None]), torch.ones(1))
    shuffled = truth[torch.randperm(512, generator=torch.Generator().manual_seed(1))]
    assert sm.recovered(truth, shuffled[None]).all()
    gen = torch.Generator().manual_seed(2)
    random = torch.randn(4, 1024, 256, generator=gen)
    got = sm.mmcs(truth, random)
    expected = sm.random_mmcs(256, 1024)
    assert expected == pytest.approx(0.204, abs=0.01)
    assert torch.allclose(got, torch.full((4,), expected), rtol=0.03)
    assert not sm.recovered(truth, random).any()


def test_masked_latents_are_ignored():
    truth = torch.eye(4)
    learned = torch.zeros(1, 6, 4)
    learned[0, :4] = torch.eye(4)
    learned[0, 4:] = 5 * torch.ones(2, 4)
    mask = torch.tensor([[True, True, True, False, False, False]])
    assert sm.mmcs(truth, learned, mask).item() == pytest.approx(0.75)
    assert sm.mmcs_between(learned, truth[None], mask).item() == pytest.approx(1.0)


def test_activation_metrics():
    acts = torch.tensor([[[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.5, 3.0, 0.0], [1.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, True]])
    assert sm.dead_latents(acts, mask).tolist() == [1]
    assert sm.dense_latents(acts, mask, 0.5).tolist() == [1]
    assert sm.l0(acts).tolist() == [1.25]
    x = torch.randn(50, 3)
    assert sm.fraction_variance_explained(x, x[None]).item() == pytest.approx(1.0)
    assert sm.fraction_variance_explained(x, x.mean(0).expand(1, 50, 3)).item() == pytest.approx(0.0, abs=1e-6)


# --- toy models ---------------------------------------------------------------------------------


def orthogonal_run(n: int = 6, m: int = 8, p: float = 0.15) -> Run:
    """A ReLU-output toy model whose n features are orthonormal directions in m dimensions."""
    q, _ = torch.linalg.qr(torch.randn(m, n, generator=torch.Generator().manual_seed(0)))
    config = RunConfig(ModelConfig("relu_output", n_features=n, n_hidden=m), DataConfig(feature_probability=(p,)),
                       TrainConfig(steps=1), name="orthogonal")
    metrics = Metrics([0.0], [], [[]], [0], [0], [p], [[0.0]])
    return Run(config, {"W": q.T[None].contiguous(), "b": torch.zeros(1, n)}, metrics)


def test_topk_sae_on_a_toy_model_with_orthogonal_features_recovers_them_all():
    run = orthogonal_run()
    config = SAEConfig(architecture="topk", n_latents=(12,), k=(2,), l1_coefficient=(0.0,), steps=800,
                       batch_size=256, lr=3e-3, source=SourceConfig(kind="run", run_name="orthogonal"))
    sae = train_sae(config, run=run)
    scores = evaluate_sae(sae, build_source(config, run))
    assert scores.n_true == 6 and scores.recovered == [6]
    assert scores.mmcs[0] > 0.97 and scores.fve[0] > 0.9
    assert scores.loss_recovered is not None and scores.loss_recovered[0] > 0.9


def exact_sae(run: Run, k: int) -> SAERun:
    """A TopK SAE whose decoder rows and encoder columns are the toy model's features: a perfect dictionary
    (a small negative encoder bias keeps rounding noise from firing latents)."""
    n, m = run.config.model.n_features, run.config.model.n_hidden
    config = SAEConfig(architecture="topk", n_latents=(n,), k=(k,), l1_coefficient=(0.0,), steps=1, batch_size=8,
                       source=SourceConfig(kind="run", run_name=run.config.name))
    W = run.W[0]
    params = {"W_enc": W.T[None].contiguous(), "b_enc": torch.full((1, n), -1e-3), "W_dec": W[None].contiguous(),
              "b_dec": torch.zeros(1, m)}
    return SAERun(config, params, torch.zeros(1, n), m)


def test_support_scores_tell_the_encoder_from_the_dictionary():
    run = orthogonal_run()
    source = build_source(exact_sae(run, 6).config, run)
    exact = support_scores(exact_sae(run, 6), source, torch.ones(6, dtype=torch.bool))
    assert float(exact.found[0]) > 0.99 and float(exact.spurious[0]) == pytest.approx(0.0, abs=1e-6)  # x < 1e-3: off
    assert float(exact.oracle_loss_recovered[0]) == pytest.approx(1.0, abs=1e-4)
    scrambled = exact_sae(run, 6)
    scrambled.params["W_enc"] = scrambled.params["W_enc"][..., [1, 2, 3, 4, 5, 0]].contiguous()  # reads the wrong one
    bad = support_scores(scrambled, source, torch.ones(6, dtype=torch.bool))
    assert float(bad.found[0]) < 0.5 and float(bad.spurious[0]) > 0.5  # each latent fires for its neighbour
    assert float(bad.oracle_loss_recovered[0]) == pytest.approx(1.0, abs=1e-4)  # the dictionary is still perfect
    half = support_scores(exact_sae(run, 6), source, torch.tensor([0, 1, 2]))  # three of the features as the truth
    assert float(half.found[0]) > 0.99 and 0.3 < float(half.spurious[0]) < 0.7


def test_run_source_errors():
    run = orthogonal_run()
    with pytest.raises(ConfigError, match=r"source.instance = 3 is invalid: the run has 1 instance"):
        build_source(SAEConfig(source=SourceConfig(kind="run", instance=3)), run)
    with pytest.raises(ConfigError, match="does not match the run given"):
        build_source(SAEConfig(source=SourceConfig(kind="run", run_name="other")), run)
    no_hidden = Run(run.config, {"b": run.b}, run.metrics)
    with pytest.raises(ConfigError, match="has no hidden layer"):
        build_source(SAEConfig(source=SourceConfig(kind="run")), no_hidden)
    with pytest.raises(ConfigError, match="run is given but source.kind = dictionary"):
        build_source(SAEConfig(), run)


@pytest.mark.slow
def test_compiled_step_equals_eager():
    config = small("batchtopk", steps=50)
    eager, compiled = train_sae(config), train_sae(config, compile=True)
    for name, value in eager.params.items():
        assert torch.allclose(compiled.params[name], value, atol=1e-5), name
    assert torch.allclose(compiled.threshold, eager.threshold, atol=1e-5)


@pytest.mark.parametrize("parts", [{}, {"hidden_activation": "gelu", "hidden_bias": True},
                                   {"tied": False, "output_activation": "identity"}, {"embedding_dim": 9}])
def test_readout_is_the_second_half_of_forward_so_any_composed_model_can_be_spliced(parts):
    from superposition.models import forward, init_params, readout

    model = ModelConfig("relu_output", n_features=6, n_hidden=3, **parts)
    params = init_params(model, [1, 2])
    x = torch.rand(2, 16, 6)
    fwd = forward(model, params, x)
    torch.testing.assert_close(readout(model, params, fwd.hidden), fwd.output)
    out = sm.spliced_loss(lambda h: readout(model, {k: v[:1].expand(h.shape[0], *v.shape[1:])
                                                    for k, v in params.items()}, h),
                          x[:1], torch.ones(1, 6), fwd.hidden[:1], torch.cat([fwd.hidden[:1], 0 * fwd.hidden[:1]]),
                          lambda o, g, w: (w.unsqueeze(1) * (o - g) ** 2).mean(dim=(1, 2)))
    torch.testing.assert_close(out.spliced, torch.stack([out.clean[0], out.ablated[1]]))  # exact, then ablated
    assert out.clean[0] > 0 and not torch.isclose(out.clean[0], out.ablated[0])


def test_a_custom_module_has_no_readout():
    from superposition.config import ConfigError
    from superposition.models import readout

    with pytest.raises(ConfigError, match="hidden layer"):
        readout(ModelConfig(custom="tests.engine_models:GeluOutput", n_features=5, n_hidden=2), {},
                torch.zeros(1, 2, 2))
