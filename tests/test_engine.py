"""The open engine: parts, presets, custom modules, targets, losses, optimisers and their paths."""

import pytest
import torch

import superposition as sp
from superposition import run as rundir
from superposition.config import PRESETS, ConfigError
from superposition.models import composed, forward, fused, init_params, param_shapes
from superposition.registry import ACTIVATIONS
from superposition.train import uses_fused_gradients

from .engine_models import GeluOutput, ReluOutput

KINDS = list(PRESETS)


def small(model=None, steps=60, probs=(1.0, 0.3), **train):
    model = model or sp.ModelConfig(n_features=5, n_hidden=2)
    return sp.RunConfig(model=model, data=sp.DataConfig(feature_probability=probs),
                        train=sp.TrainConfig(steps=steps, batch_size=64, log_every=20, **train))


def random_params(model, inst=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen, dtype=torch.float64) * 0.5 for k, s in param_shapes(model, inst).items()}


@pytest.mark.parametrize("kind", KINDS)
def test_each_preset_composed_forward_equals_the_fused_kind(kind):
    model = sp.ModelConfig(kind, 6, 3)
    params = random_params(model)
    x = torch.rand(3, 16, 6, dtype=torch.float64) * 2 - 1
    ours, theirs = composed.forward(model, params, x), fused.forward(kind, params, x)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_each_preset_trains_the_same_on_both_gradient_paths(kind):
    model = sp.ModelConfig(kind, 5, 2)
    runs = [sp.train(small(model, gradients=g), compile=False, progress=False) for g in ("fused", "autograd")]
    for name in runs[0].params:
        torch.testing.assert_close(runs[0].params[name], runs[1].params[name], rtol=1e-4, atol=1e-5)
    assert uses_fused_gradients(small(model)) and not uses_fused_gradients(small(model, gradients="autograd"))


def test_presets_keep_their_initial_weights():
    """The composed init draws the same numbers as the four kinds always did (same generator, salt, scale)."""
    from superposition.models.random import generator

    params = init_params(sp.ModelConfig("abs_mlp", 7, 3), [11, 12])
    std = (2.0 / 10) ** 0.5
    torch.testing.assert_close(params["W1"][1], torch.randn(7, 3, generator=generator(12, "W1")) * std)
    torch.testing.assert_close(params["W2"][0], torch.randn(3, 7, generator=generator(11, "W2")) * std)


@pytest.mark.parametrize("activation", ["identity", "relu", "gelu", "silu", "sigmoid", "tanh", "solu"])
def test_every_activation_has_correct_gradients(activation):
    model = sp.ModelConfig(n_features=4, n_hidden=3, hidden_activation=activation, output_activation=activation,
                           hidden_bias=True, hidden_layer=True, tied=False)
    params = {k: v.requires_grad_(True) for k, v in random_params(model, inst=2).items()}
    x = torch.rand(2, 5, 4, dtype=torch.float64)
    names = list(params)

    def out(*values):
        return composed.forward(model, dict(zip(names, values, strict=True)), x).output

    assert torch.autograd.gradcheck(out, tuple(params.values()))


@pytest.mark.parametrize("parts", [
    {"kind": "relu_output"}, {"kind": "abs_mlp"}, {"hidden_activation": "solu", "hidden_bias": True},
    {"hidden_layer": True, "hidden_activation": "gelu", "tied": False},
    {"embedding_dim": 9, "output_activation": "tanh"},
])
def test_the_unrolled_forward_for_the_compiler_equals_the_plain_one(parts):
    model = sp.ModelConfig(n_features=6, n_hidden=3, **parts)
    params = random_params(model)
    x = torch.rand(3, 16, 6, dtype=torch.float64)
    for a, b in zip(composed.forward_unrolled(model, params, x), composed.forward(model, params, x), strict=True):
        torch.testing.assert_close(a, b)


def test_embedding_is_fixed_orthonormal_and_not_trained():
    model = sp.ModelConfig(n_features=4, n_hidden=2, embedding_dim=9)
    run = sp.train(small(model), compile=False, progress=False)
    e0 = init_params(model, [sp.data.instances(small(model)).init_seeds[0]])["E"][0]
    torch.testing.assert_close(run.params["E"][0], e0)  # untouched by the optimiser
    torch.testing.assert_close(e0 @ e0.T, torch.eye(4), atol=1e-6, rtol=0)
    assert run.W.shape == (2, 4, 2)  # feature directions E·W


def test_a_custom_module_trained_batched_equals_it_trained_alone():
    model = sp.ModelConfig(n_features=5, n_hidden=2, custom=GeluOutput)
    assert model.custom == "tests.engine_models:GeluOutput"
    both = sp.train(small(model, probs=(1.0, 0.3)), compile=False, progress=False)
    alone = sp.train(small(model, probs=(0.3,)), compile=False, progress=False)
    for name in ("W", "b_hidden", "b"):
        torch.testing.assert_close(both.params[name][1], alone.params[name][0], rtol=1e-5, atol=1e-6)
    assert both.W.shape == (2, 5, 2)


def test_a_custom_module_of_the_paper_model_matches_the_built_in_one_on_the_same_weights():
    model = sp.ModelConfig(n_features=5, n_hidden=2, custom=ReluOutput)
    params = init_params(model, [1, 2])
    x = torch.rand(2, 8, 5)
    torch.testing.assert_close(forward(model, params, x).output, forward("relu_output", params, x).output)


def test_a_custom_run_saves_loads_and_resumes_exactly(tmp_path, monkeypatch):
    config = small(sp.ModelConfig(n_features=5, n_hidden=2, custom=GeluOutput), steps=40)
    whole = sp.train(config, compile=False, progress=False)
    _interrupt_after_first_checkpoint(monkeypatch, lambda: sp.train(config, compile=False, progress=False,
                                                                    out=tmp_path / "r", checkpoint_every=15))
    resumed = sp.train(config, compile=False, progress=False, out=tmp_path / "r", checkpoint_every=15)
    for name in whole.params:
        assert torch.equal(whole.params[name], resumed.params[name])
    loaded = sp.load_run(tmp_path / "r")
    assert loaded.config.model.custom == "tests.engine_models:GeluOutput"
    torch.testing.assert_close(loaded.model(torch.rand(2, 3, 5)).shape, torch.Size([2, 3, 5]))


def _interrupt_after_first_checkpoint(monkeypatch, start) -> None:
    """Run `start()` until its first checkpoint is written, then interrupt it as Ctrl-C would."""
    real = rundir.save_checkpoint

    def crash(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(rundir, "save_checkpoint", crash)
        with pytest.raises(KeyboardInterrupt):
            start()


def test_a_custom_module_compiles_and_trains_as_it_does_eagerly():
    """torch.compile traces `custom.forward` without tracing the template's construction (which it
    cannot: the step used to fall back to eager with a warning)."""
    import warnings

    cfg = small(sp.ModelConfig(n_features=5, n_hidden=2, custom=GeluOutput), steps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "torch.compile failed (...); training eagerly"
        warnings.filterwarnings("ignore", message=".*lru_cache.*")
        compiled = sp.train(cfg, compile=True, progress=False)
    assert compiled.provenance["step"] == "compiled"
    eager = sp.train(cfg, compile=False, progress=False)
    for name in eager.params:
        torch.testing.assert_close(compiled.params[name], eager.params[name], rtol=1e-4, atol=1e-6)


def test_a_run_whose_custom_module_cannot_be_imported_is_refused(tmp_path):
    import json

    run = sp.train(small(sp.ModelConfig(n_features=5, n_hidden=2, custom=GeluOutput), steps=5), compile=False,
                   progress=False, out=tmp_path / "r")
    raw = json.loads((run.path / "config.json").read_text())
    raw["model"]["custom"] = "not_a_module_here:GeluOutput"
    (run.path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(sp.RunDirError, match="not_a_module_here:GeluOutput.*cannot be imported"):
        sp.load_run(run.path)


@pytest.mark.parametrize("build, words", [
    (lambda: sp.ModelConfig(hidden_activation="swish2"), "model.hidden_activation"),
    (lambda: sp.ModelConfig(custom="tests.engine_models:GeluOutput", hidden_bias=True), "model.hidden_bias"),
    (lambda: sp.ModelConfig(custom=lambda n, m: None), "model.custom"),
    (lambda: sp.ModelConfig(n_features=5, embedding_dim=3), "model.embedding_dim"),
    (lambda: sp.TrainConfig(optimizer="RMSprop", optimizer_options={"alphaa": 0.9}), "train.optimizer_options.alphaa"),
    (lambda: sp.TrainConfig(optimizer="Adamax2"), "train.optimizer"),
    (lambda: sp.TrainConfig(nesterov=True), "train.nesterov"),
    (lambda: sp.TrainConfig(target="cube"), "train.target"),
    (lambda: sp.TrainConfig(loss="huberish"), "train.loss"),
    (lambda: sp.DataConfig(distribution="exactly_k"), "data.n_active"),
    (lambda: sp.RunConfig(model=sp.ModelConfig(n_features=3), data=sp.DataConfig(distribution="exactly_k", n_active=4)),
     "data.n_active"),
    (lambda: sp.train(small(sp.ModelConfig(n_features=5, custom="tests.engine_models:WrongShape")), progress=False),
     "model.custom"),
    (lambda: sp.train(small(gradients="fused", loss="mae"), progress=False), "train.gradients"),
])
def test_bad_engine_input_is_a_value_error_naming_the_field(build, words):
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        build()


def test_a_target_or_loss_of_the_wrong_shape_is_refused_before_training(tmp_path):
    sp.register_target("first_feature_only", lambda x: x[..., :1], overwrite=True)
    sp.register_loss("not_per_instance", lambda out, goal, imp: ((out - goal) ** 2).mean(), overwrite=True)
    with pytest.raises(ConfigError, match="train.target"):
        sp.train(small(target="first_feature_only"), progress=False, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="train.loss"):
        sp.train(small(loss="not_per_instance"), progress=False, out=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any directory


def test_targets_and_a_registered_activation_train():
    sp.register_activation("leaky", lambda z: torch.nn.functional.leaky_relu(z, 0.1), overwrite=True)
    model = sp.ModelConfig(n_features=5, n_hidden=5, output_activation="leaky", tied=False)
    run = sp.train(small(model, steps=400, target="x_plus_relu", lr=1e-2), compile=False, progress=False)
    assert run.config.target == "x_plus_relu"
    x = torch.rand(2, 256, 5)
    err = ((run.model(x) - 2 * x) ** 2).mean()
    assert err < 0.5 * ((2 * x) ** 2).mean()  # learnt the doubled identity for x >= 0 far better than zero
    assert "leaky" in ACTIVATIONS.names


def test_sgd_with_nesterov_momentum_and_a_torch_optimiser_train():
    sgd = sp.train(small(steps=300, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True), progress=False)
    rms = sp.train(small(steps=300, optimizer="RMSprop", optimizer_options={"alpha": 0.9}), progress=False)
    first = sp.train(small(steps=1), progress=False)
    for run in (sgd, rms):
        assert all(a < b for a, b in zip(run.metrics.final_loss, first.metrics.final_loss, strict=True))
    assert not rms.metrics.compiled


def test_a_torch_optimiser_run_resumes_exactly(tmp_path, monkeypatch):
    config = small(steps=40, optimizer="Adagrad", optimizer_options={"lr_decay": 0.01})
    whole = sp.train(config, progress=False)
    _interrupt_after_first_checkpoint(monkeypatch, lambda: sp.train(config, progress=False, out=tmp_path / "r",
                                                                    checkpoint_every=25))
    resumed = sp.train(config, progress=False, out=tmp_path / "r")
    for name in whole.params:
        assert torch.equal(whole.params[name], resumed.params[name])


def test_finite_data_is_memorised_to_zero_training_loss():
    # Linear, so no output unit can die: with m = T = 3 the projection onto the three examples is exact.
    config = sp.RunConfig(model=sp.ModelConfig("linear", n_features=6, n_hidden=3),
                          data=sp.DataConfig(feature_probability=(0.3,), n_train=3, n_test=256),
                          train=sp.TrainConfig(steps=3000, lr=1e-2, weight_decay=0.0, restarts=2))
    run = sp.train(config, progress=False)
    assert run.metrics.final_loss[0] < 1e-3
    assert run.metrics.test_loss[0] > 10 * run.metrics.final_loss[0]  # three points do not generalise


def test_minibatches_of_a_finite_set_visit_every_example_once_per_epoch():
    from superposition.data import dataset, minibatch, shuffle_keys

    config = sp.RunConfig(model=sp.ModelConfig(n_features=4, n_hidden=2),
                          data=sp.DataConfig(feature_probability=(1.0, 0.5), n_train=12),
                          train=sp.TrainConfig(batch_size=4, restarts=2))
    train_set, keys = dataset(config), shuffle_keys(config)
    assert train_set.shape == (4, 12, 4) and torch.equal(train_set[0], train_set[1])  # restarts share the set
    epochs = [torch.cat([minibatch(train_set, keys, torch.tensor(3 * e + i), 4) for i in range(3)], 1)
              for e in range(2)]
    for seen in epochs:
        for k in range(4):
            assert sorted(map(tuple, seen[k].tolist())) == sorted(map(tuple, train_set[k].tolist()))
    assert not torch.equal(epochs[0], epochs[1])  # a new order each epoch
    assert not torch.equal(epochs[0][0], epochs[0][1])  # and each restart its own


@pytest.mark.slow
def test_compiled_autograd_step_equals_eager():
    model = sp.ModelConfig(n_features=5, n_hidden=2, output_activation="gelu", hidden_bias=True)
    runs = [sp.train(small(model, steps=30), compile=c, progress=False) for c in (False, True)]
    assert runs[1].metrics.compiled
    for name in runs[0].params:
        torch.testing.assert_close(runs[0].params[name], runs[1].params[name], rtol=1e-4, atol=1e-6)


def test_configs_written_before_the_parts_existed_still_load():
    old = {"model": {"kind": "abs_mlp", "n_features": 4, "n_hidden": 2, "init_std": None},
           "data": {"feature_probability": [0.5], "importance_decay": 1.0, "importance": None,
                    "distribution": "independent", "set_size": None, "signed": True},
           "train": {"steps": 5, "optimizer": "adam", "l1_hidden": 0.0}, "name": "old"}
    config = sp.RunConfig.from_dict(old)
    assert config.model.parts == PRESETS["abs_mlp"] and config.target == "abs" and config.data.signed
    assert sp.RunConfig.from_json(config.to_json()) == config
    assert sp.RunConfig(model=sp.ModelConfig("abs_mlp")).data.signed  # the preset's default, not a CLI one
