import pytest
import torch

import superposition as sp
from superposition.data import derive_seed, feature_spec, instances, probability_matrix, random_bits, sample
from superposition.data import draw as draw_data


def spec_for(p, n=8, restarts=1, **data_kw):
    cfg = sp.RunConfig(model=sp.ModelConfig(n_features=n, n_hidden=2),
                       data=sp.DataConfig(feature_probability=tuple(p), **data_kw),
                       train=sp.TrainConfig(restarts=restarts))
    return cfg, feature_spec(cfg)


def draw(spec, step=0, batch=20000, **kw):
    return sample(spec, torch.tensor(step), batch, **kw)


def test_independent_features_have_probability_p_and_uniform_values():
    _, spec = spec_for([1.0, 0.3, 0.05])
    x = draw(spec)
    on = (x != 0).float().mean(dim=(1, 2))
    torch.testing.assert_close(on, torch.tensor([1.0, 0.3, 0.05]), atol=0.01, rtol=0)
    values = x[x != 0]
    assert 0 <= values.min() and values.max() < 1
    assert abs(values.mean().item() - 0.5) < 0.01 and abs(values.var().item() - 1 / 12) < 0.005


def test_per_feature_probability():
    p = (1.0, 0.5, 0.1, 0.01)
    _, spec = spec_for([p], n=4)
    on = (draw(spec) != 0).float().mean(dim=(0, 1))
    torch.testing.assert_close(on, torch.tensor(p), atol=0.01, rtol=0)


def test_signed_values_cover_minus_one_to_one():
    _, spec = spec_for([0.5])
    values = draw(spec, signed=True)
    values = values[values != 0]
    assert values.min() < -0.99 and values.max() > 0.99 and abs(values.mean().item()) < 0.02


def test_correlated_sets_switch_on_together():
    _, spec = spec_for([0.2], n=6, distribution="correlated", set_size=3)
    x = draw(spec, distribution="correlated", set_size=3).view(-1, 2, 3)
    on = x != 0
    assert torch.equal(on.all(-1), on.any(-1))  # all or nothing within a set
    assert abs(on[..., 0].float().mean().item() - 0.2) < 0.01


def test_anticorrelated_sets_have_at_most_one_member_on():
    _, spec = spec_for([0.3], n=6, distribution="anticorrelated", set_size=3)
    x = draw(spec, distribution="anticorrelated", set_size=3).view(-1, 2, 3)
    count = (x != 0).sum(-1)
    assert count.max() == 1
    assert abs((count == 1).float().mean().item() - 0.3) < 0.01
    member = (x != 0).float().mean(dim=0).flatten()  # each member equally likely: 0.1
    torch.testing.assert_close(member, torch.full((6,), 0.1), atol=0.01, rtol=0)


def test_samples_are_deterministic_per_step_and_differ_across_steps():
    _, spec = spec_for([0.5])
    assert torch.equal(draw(spec, step=3, batch=64), draw(spec, step=3, batch=64))
    assert not torch.equal(draw(spec, step=3, batch=64), draw(spec, step=4, batch=64))


def test_features_are_uncorrelated():
    _, spec = spec_for([1.0], n=8)
    x = draw(spec, batch=50000)[0]
    corr = torch.corrcoef(x.T)
    off = corr - torch.diag(torch.diag(corr))
    assert off.abs().max() < 0.03


def test_an_instance_stream_does_not_depend_on_its_batch_mates():
    cfg, spec = spec_for([1.0, 0.1], restarts=2)
    alone_cfg, alone = spec_for([0.1], restarts=2)
    assert instances(cfg).seeds[2:] == instances(alone_cfg).seeds
    torch.testing.assert_close(draw(spec, batch=32)[2:], draw(alone, batch=32), rtol=0, atol=0)


def test_random_bits_are_balanced():
    bits = random_bits(torch.tensor([derive_seed(7)]), torch.tensor(0), 1000, 64)
    ones = torch.stack([(bits >> k) & 1 for k in range(64)]).float().mean(dim=(1, 2, 3))
    assert (ones - 0.5).abs().max() < 0.02


def _batch(steps=4, batch=4096, **data):
    n = data.pop("n", 8)
    cfg = sp.RunConfig(model=sp.ModelConfig(n_features=n, n_hidden=2), data=sp.DataConfig(**data))
    spec = feature_spec(cfg)
    return torch.cat([draw_data(spec, torch.tensor(t), batch, cfg.data) for t in range(steps)], dim=1)


def test_exactly_k_inputs_have_k_distinct_uniformly_chosen_features():
    x = _batch(distribution="exactly_k", n_active=3, feature_probability=(0.01,))
    assert ((x != 0).sum(-1) == 3).all()
    share = (x != 0).float().mean(dim=(0, 1))
    assert torch.allclose(share, torch.full((8,), 3 / 8), atol=0.02)
    one_hot = _batch(distribution="exactly_k", n_active=1, magnitude="constant")
    assert ((one_hot == 1).sum(-1) == 1).all() and ((one_hot == 0) | (one_hot == 1)).all()


@pytest.mark.parametrize("magnitude, mean", [("uniform", 0.5), ("constant", 1.0), ("exponential", 1.0),
                                             ("folded_normal", (2 / torch.pi) ** 0.5)])
def test_magnitudes_have_their_laws_mean(magnitude, mean):
    x = _batch(magnitude=magnitude, feature_probability=(0.5,))
    values = x[x != 0]
    assert values.min() > 0
    assert abs(values.mean().item() - mean) < 0.01 * max(1.0, mean) + 3 * values.std().item() / values.numel() ** 0.5
    signed = _batch(magnitude=magnitude, feature_probability=(0.5,), signed=True)
    assert abs((signed[signed != 0] < 0).float().mean().item() - 0.5) < 0.01


@pytest.mark.parametrize("law, parameter", [("power_law", 1.0), ("exponential", 0.7)])
def test_probability_laws_keep_the_mean_and_shape_the_features(law, parameter):
    cfg = sp.RunConfig(model=sp.ModelConfig(n_features=8, n_hidden=2),
                       data=sp.DataConfig(feature_probability=(0.2,), probability_law=law, law_parameter=parameter))
    p = probability_matrix(cfg)[0].double()
    assert p.mean().item() == pytest.approx(0.2, rel=1e-6)
    ratio = p[1:] / p[:-1]
    steps = torch.arange(1, 8.0) / torch.arange(2, 9.0)
    expected = steps**parameter if law == "power_law" else torch.full((7,), 0.7)
    torch.testing.assert_close(ratio, expected.double(), rtol=1e-5, atol=0)
    x = _batch(steps=8, probability_law=law, law_parameter=parameter, feature_probability=(0.2,))
    share = (x != 0).double().mean(dim=(0, 1))
    standard_error = (p * (1 - p) / x.shape[1]).sqrt()
    assert ((share - p).abs() < 4 * standard_error).all()


def test_normalised_inputs_have_unit_norm():
    x = _batch(feature_probability=(0.3,), normalize=True)
    norms = x.norm(dim=-1)
    nonzero = norms > 0
    torch.testing.assert_close(norms[nonzero], torch.ones_like(norms[nonzero]))
    assert (~nonzero).any()  # all-zero inputs exist at p = 0.3 and stay zero


def test_a_registered_sampler_feeds_training_and_is_deterministic():
    def two_level(stream, batch, probability):
        u = stream.uniform(batch, probability.shape[-1])
        level = stream.uniform(batch, probability.shape[-1], salt=1)
        return torch.where(u < probability.unsqueeze(1), torch.where(level < 0.5, 0.5, 1.0), 0.0)

    sp.register_distribution("two_level", two_level, overwrite=True)
    x = _batch(distribution="two_level", feature_probability=(0.25,))
    assert set(x.unique().tolist()) == {0.0, 0.5, 1.0}
    assert torch.equal(x, _batch(distribution="two_level", feature_probability=(0.25,)))
    run = sp.train(sp.RunConfig(data=sp.DataConfig(distribution="two_level"), train=sp.TrainConfig(steps=20)),
                   progress=False)
    assert run.config.data.distribution == "two_level" and len(run.metrics.final_loss) == 1
    with pytest.raises(ValueError, match="data.distribution"):
        sp.DataConfig(distribution="three_level")


def test_configurations_get_independent_initial_weights_unless_told_to_share():
    from superposition.models import init_params

    cfg, _ = spec_for([1.0, 0.1, 0.1], restarts=2)
    cfg = sp.RunConfig(model=cfg.model, data=cfg.data, train=sp.TrainConfig(restarts=2, share_init=False))
    table = instances(cfg)
    assert table.seeds[0] == table.seeds[2] == table.seeds[4]  # data shared across configurations
    assert len({table.init_seeds[0], table.init_seeds[2]}) == 2  # initial weights not
    assert table.init_seeds[2] == table.init_seeds[4]  # equal configurations, equal weights
    alone, _ = spec_for([0.1], restarts=2)
    alone = sp.RunConfig(model=alone.model, data=alone.data, train=sp.TrainConfig(restarts=2, share_init=False))
    assert instances(alone).init_seeds == table.init_seeds[2:4]  # wherever the configuration is trained
    assert instances(sp.RunConfig(model=cfg.model, data=cfg.data, train=sp.TrainConfig(restarts=2))) == table
    shared = sp.RunConfig(model=cfg.model, data=cfg.data, train=sp.TrainConfig(restarts=2, share_init=True))
    assert instances(shared).init_seeds == instances(shared).seeds
    w = init_params(cfg.model, table.init_seeds)["W"]
    assert not torch.equal(w[0], w[2]) and torch.equal(w[2], w[4])


@pytest.mark.parametrize("options", [
    {}, {"distribution": "correlated", "set_size": 2}, {"distribution": "anticorrelated", "set_size": 3},
    {"distribution": "exactly_k", "n_active": 2}, {"signed": True, "magnitude": "folded_normal"},
    {"magnitude": "exponential", "normalize": True}])
def test_eager_batches_drawn_in_blocks_of_rows_equal_whole_batches(monkeypatch, options):
    import superposition.data as data_module

    keys = torch.tensor([3, -7, 11], dtype=torch.int64)
    spec = data_module.FeatureSpec(keys, keys * 5 + 1, torch.full((3, 6), 0.4), torch.ones(3, 6))
    step = torch.tensor(9)
    whole = data_module.sample(spec, step, 50, **options)
    monkeypatch.setattr(data_module, "EAGER_BLOCK_ELEMENTS", 40)  # blocks of 2 rows of 3 × 6 elements
    assert len(data_module._row_blocks(spec, 50)) == 25
    assert torch.equal(data_module.sample(spec, step, 50, **options), whole)


# --- the sparse sampler -------------------------------------------------------------------------


def sparse_draw(p, n=40, step=0, batch=20000, **data_kw):
    cfg, spec = spec_for(p, n=n, sampler="sparse", **data_kw)
    return cfg, spec, draw_data(spec, torch.tensor(step), batch, cfg.data)


def test_sparse_sampler_gives_each_feature_its_probability_and_uniform_values():
    ps = [0.3, 0.05, 0.01, tuple([0.2] * 20 + [0.02] * 20)]  # the last one thinned
    _, spec, x = sparse_draw(ps)
    assert spec.capacity < 40 and spec.thinned
    on = (x != 0).float().mean(1)  # [inst, feat]
    expected = torch.tensor([[p] * 40 if not isinstance(p, tuple) else list(p) for p in ps])
    se = (expected * (1 - expected) / x.shape[1]).sqrt()
    assert ((on - expected).abs() < 4.5 * se + 1e-6).all()
    values = x[x != 0]
    assert 0 <= values.min() and values.max() < 1
    assert abs(values.mean().item() - 0.5) < 0.01 and abs(values.var().item() - 1 / 12) < 0.005


def test_sparse_sampler_draws_features_independently():
    _, _, x = sparse_draw([0.2], n=12, batch=50000)
    on = (x[0] != 0).float()
    joint = on.T @ on / on.shape[0]
    excess = joint - torch.outer(on.mean(0), on.mean(0))
    excess.fill_diagonal_(0)
    se = (0.04 * (1 - 0.04) / on.shape[0]) ** 0.5
    assert excess.abs().max() < 5 * se
    counts = on.sum(1)  # Binomial(12, 0.2) active features per example
    assert abs(counts.mean().item() - 2.4) < 0.03 and abs(counts.var().item() - 1.92) < 0.06


def test_sparse_capacity_bounds_the_tail():
    from superposition.data import sparse_capacity

    assert sparse_capacity(400, 1.0) == 400 and sparse_capacity(5, 0.5) == 5
    k = sparse_capacity(400, 0.05)
    assert 20 < k < 80  # mean 20, sd 4.4
    tail = torch.distributions.Binomial(400, torch.tensor(0.05)).log_prob(torch.arange(k + 1, 401.0)).exp().sum()
    assert tail <= 1e-12
    assert sparse_capacity(10_000, 0.001) < 60


def test_sparse_streams_do_not_depend_on_batch_mates_or_capacity():
    cfg, spec, x = sparse_draw([0.05, 1.0], n=40, batch=64, step=3)  # p = 1 makes the capacity 40
    alone_cfg, alone, y = sparse_draw([0.05], n=40, batch=64, step=3)
    assert spec.capacity == 40 and alone.capacity < 40
    assert torch.equal(x[0], y[0])
    assert (x[1] != 0).all()
    again = draw_data(spec, torch.tensor(3), 64, cfg.data)
    other = draw_data(spec, torch.tensor(4), 64, cfg.data)
    assert torch.equal(again, x) and not torch.equal(other, x)


def test_sparse_sampler_is_the_same_compiled():
    cfg, spec, x = sparse_draw([0.05, tuple([0.1] * 20 + [0.01] * 20)], batch=256, step=5)
    compiled = torch.compile(lambda step: draw_data(spec, step, 256, cfg.data), dynamic=False)
    assert torch.equal(compiled(torch.tensor(5)), x)


def test_sparse_sampler_needs_independent_features():
    with pytest.raises(sp.ConfigError, match="data.sampler"):
        sp.DataConfig(sampler="sparse", distribution="correlated", set_size=2)
    with pytest.raises(sp.ConfigError, match="data.sampler"):
        sp.DataConfig(sampler="fast")


def test_a_run_trains_on_sparse_data_with_the_same_loss_as_on_dense():
    base = sp.RunConfig(model=sp.ModelConfig(n_features=40, n_hidden=5),
                        data=sp.DataConfig(feature_probability=(0.05,), importance_decay=0.9),
                        train=sp.TrainConfig(steps=600, batch_size=256))
    dense = sp.train(base, compile=False, progress=False)
    sparse_cfg = sp.RunConfig(model=base.model, data=sp.DataConfig(feature_probability=(0.05,), importance_decay=0.9,
                                                                  sampler="sparse"), train=base.train)
    sparse = sp.train(sparse_cfg, compile=False, progress=False)
    d, s = dense.metrics.final_loss[0], sparse.metrics.final_loss[0]
    assert abs(d - s) / d < 0.05  # same distribution, other draws
    assert not torch.equal(dense.W, sparse.W)


def test_integer_gate_equals_the_float_comparison_bit_for_bit():
    """`_gate` (integer compare) keeps exactly the elements `_unit(bits, 0) < p` keeps, at every p, including
    probabilities on the 2⁻²⁴ grid, where the two comparisons are closest to differing."""
    from superposition.data import _gate, _unit, random_bits

    bits = random_bits(torch.tensor([3, 7]), torch.tensor(5), 512, 64)  # [2, 512, 64]
    grid = torch.tensor([0.0, 2.0**-24, 3 * 2.0**-24, 0.5, 1 - 2.0**-24, 1.0])
    p = torch.cat([torch.rand(58, generator=torch.Generator().manual_seed(0)), grid]).float()
    p = torch.stack([p, p.flip(0)]).unsqueeze(1)  # [2, 1, 64]
    assert torch.equal(_gate(bits, p), _unit(bits, 0) < p)
    exact = (bits[..., :1] & 0xFFFFFF).to(torch.float32) * 2.0**-24  # p equal to an element's own uniform
    assert torch.equal(_gate(bits[..., :1], exact), _unit(bits[..., :1], 0) < exact)


# --- the sparse step ----------------------------------------------------------------------------


def sparse_run_config(**data_kw):
    return sp.RunConfig(model=sp.ModelConfig(n_features=800, n_hidden=3),
                        data=sp.DataConfig(feature_probability=(0.002, 0.001), sampler="sparse", **data_kw),
                        train=sp.TrainConfig(steps=150, batch_size=64, lr=3e-3, log_every=50))


def train_both_ways(cfg, monkeypatch):
    """The run with sparse batches kept sparse, and the same run with them made dense first."""
    import importlib

    train_module = importlib.import_module("superposition.train")

    assert train_module.sparse_inputs(cfg)
    sparse = sp.train(cfg, compile=False, progress=False)
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "sparse_inputs", lambda config: False)
        dense = sp.train(cfg, compile=False, progress=False)
    return sparse, dense


def test_the_sparse_step_trains_as_the_dense_step_on_the_same_draws(monkeypatch):
    sparse, dense = train_both_ways(sparse_run_config(), monkeypatch)
    torch.testing.assert_close(sparse.W, dense.W, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sparse.b, dense.b, rtol=1e-4, atol=1e-5)
    assert sparse.metrics.final_loss == pytest.approx(dense.metrics.final_loss, rel=1e-4)


def test_a_sparse_finite_set_trains_in_minibatches_and_scores_in_chunks_as_dense(monkeypatch):
    from superposition import data as data_module
    from superposition.train import evaluate

    cfg = sparse_run_config(n_train=100, n_test=300)
    codes = data_module.dataset_codes(cfg, "test")
    assert codes.index.shape[1] == 300 and codes.index.shape[2] < 800 // 32
    assert torch.equal(codes.dense(800), data_module.dataset(cfg, "test"))
    train_codes, train_set = data_module.dataset_codes(cfg), data_module.dataset(cfg)
    keys = data_module.shuffle_keys(cfg)
    for step in (0, 1, 7):  # minibatches of 64 of the 100 examples: the same rows either way
        rows = data_module.minibatch(train_codes, keys, torch.tensor(step), 64)
        assert torch.equal(rows.dense(800), data_module.minibatch(train_set, keys, torch.tensor(step), 64))
    # The weights agree only loosely: features absent from the set get gradients of float-rounding
    # size, which Adam turns into steps of either sign. The losses agree.
    sparse, dense = train_both_ways(cfg, monkeypatch)
    assert sparse.metrics.final_loss == pytest.approx(dense.metrics.final_loss, rel=1e-4)
    assert sparse.metrics.test_loss == pytest.approx(dense.metrics.test_loss, rel=1e-4)
    whole = evaluate(cfg, sparse.params, split="test")
    monkeypatch.setattr(data_module, "FINITE_CHUNK_ELEMENTS", 800 * 7)  # 43 chunks of 7 examples
    assert len(list(data_module.dataset_parts(cfg, "test"))) == 43
    torch.testing.assert_close(evaluate(cfg, sparse.params, split="test"), whole)


def test_the_step_keeps_batches_sparse_only_where_that_pays():
    from superposition.train import sparse_inputs

    assert sparse_inputs(sparse_run_config())
    dense_sampler = sp.RunConfig(model=sp.ModelConfig(n_features=800, n_hidden=3))
    few_features = sp.RunConfig(model=sp.ModelConfig(n_features=400, n_hidden=30),
                                data=sp.DataConfig(feature_probability=(0.05,), sampler="sparse"))
    autograd = sp.RunConfig(model=sp.ModelConfig(n_features=800, n_hidden=3),
                            data=sparse_run_config().data, train=sp.TrainConfig(gradients="autograd"))
    assert not any(sparse_inputs(c) for c in (dense_sampler, few_features, autograd))


def test_the_compiled_sparse_step_trains_as_the_eager_one():
    cfg = sparse_run_config()
    eager = sp.train(cfg, compile=False, progress=False)
    compiled = sp.train(cfg, compile=True, progress=False)
    torch.testing.assert_close(compiled.W, eager.W, rtol=1e-4, atol=1e-5)
    assert compiled.metrics.final_loss == pytest.approx(eager.metrics.final_loss, rel=1e-4)
