from dataclasses import replace

import pytest
import torch

import superposition as sp
from superposition import run as rundir
from superposition.train import train
from tests.conftest import small_config


def test_batched_training_equals_training_each_instance_alone():
    both = train(small_config(probs=(1.0, 0.1), restarts=2, keep_all_restarts=True), compile=False, progress=False)
    for c, p in enumerate((1.0, 0.1)):
        alone = train(small_config(probs=(p,), restarts=2, keep_all_restarts=True), compile=False, progress=False)
        torch.testing.assert_close(both.W[2 * c: 2 * c + 2], alone.W, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(both.b[2 * c: 2 * c + 2], alone.b, rtol=1e-5, atol=1e-6)


def test_same_config_gives_same_weights_and_seed_changes_them():
    cfg = small_config()
    a, b = (train(cfg, compile=False, progress=False) for _ in range(2))
    assert torch.equal(a.W, b.W)
    other = sp.RunConfig(model=cfg.model, data=cfg.data, train=sp.TrainConfig(**{**cfg.train.__dict__, "seed": 1}))
    assert not torch.equal(a.W, train(other, compile=False, progress=False).W)


def test_best_of_n_keeps_the_lowest_loss_restart():
    run = train(small_config(probs=(1.0, 0.1), restarts=3), compile=False, progress=False)
    m = run.metrics
    assert run.n_instances == 2 and len(m.restart_losses) == 2 and len(m.restart_losses[0]) == 3
    for c in range(2):
        assert m.final_loss[c] == min(m.restart_losses[c])
        assert m.restart_losses[c][m.restart[c]] == m.final_loss[c]
    assert m.feature_probability == [1.0, 0.1] and m.config_index == [0, 1]


def test_loss_curve_and_snapshots_are_recorded():
    run = train(small_config(steps=40, snapshot_every=20), compile=False, progress=False)
    assert run.metrics.loss_steps == [10, 20, 30, 40]
    assert len(run.metrics.loss_curve) == 2 and len(run.metrics.loss_curve[0]) == 4
    assert run.snapshots["steps"].tolist() == [0, 20, 40]
    assert run.snapshots["W"].shape == (2, 3, 5, 2)  # [inst, snapshot, feat, hidden]
    torch.testing.assert_close(run.snapshots["W"][:, -1], run.W)


@pytest.mark.parametrize("kind", ["linear", "relu_output", "relu_hidden", "abs_mlp"])
def test_training_reduces_the_loss(kind):
    run = train(small_config(kind, steps=300, probs=(0.3,)), compile=False, progress=False)
    curve = run.metrics.loss_curve[0]
    assert curve[-1] < 0.8 * curve[0]


def test_trained_linear_model_reaches_the_closed_form_optimum():
    from superposition.analysis.theory import linear_optimal_loss

    cfg = sp.RunConfig(model=sp.ModelConfig("linear", 8, 3),
                       data=sp.DataConfig(feature_probability=(1.0, 0.3), importance_decay=0.8),
                       train=sp.TrainConfig(steps=2000, lr=3e-3, weight_decay=0.0, eval_batches=16))
    run = train(cfg, compile=False, progress=False)
    importance = 0.8 ** torch.arange(8.0)
    for loss, p in zip(run.metrics.final_loss, (1.0, 0.3), strict=True):
        best = float(linear_optimal_loss(importance, p, 3))
        assert best * 0.98 < loss < best * 1.03, (p, loss, best)


@pytest.mark.slow
@pytest.mark.parametrize("kind, distribution", [
    ("linear", "independent"), ("relu_output", "independent"), ("relu_hidden", "independent"),
    ("abs_mlp", "independent"), ("relu_output", "correlated"), ("relu_output", "anticorrelated"),
])
def test_compiled_step_matches_eager(kind, distribution):
    cfg = small_config(kind, n=6, m=3, steps=100)
    if distribution != "independent":
        cfg = sp.RunConfig(model=cfg.model, train=cfg.train,
                           data=sp.DataConfig(feature_probability=(0.3,), distribution=distribution, set_size=3))
    eager = train(cfg, compile=False, progress=False)
    compiled = train(cfg, compile=True, progress=False)
    assert compiled.metrics.compiled and not eager.metrics.compiled
    for name in eager.params:
        torch.testing.assert_close(compiled.params[name], eager.params[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{"adversarial_eps": 0.1},
                                   {"adversarial_eps": (0.0, 0.5), "adversarial_attack": "random"},
                                   {"l1_hidden": (0.0, 0.2)}], ids=["adversarial", "adversarial-random", "l1"])
def test_compiled_step_matches_eager_with_objective_extras(extra):
    cfg = small_config("relu_output", n=6, m=3, probs=(1.0, 0.1), steps=100)
    cfg = sp.RunConfig(model=cfg.model, data=cfg.data, train=replace(cfg.train, **extra))
    eager = train(cfg, compile=False, progress=False)
    compiled = train(cfg, compile=True, progress=False)
    assert compiled.metrics.compiled
    for name in eager.params:
        torch.testing.assert_close(compiled.params[name], eager.params[name], rtol=1e-4, atol=1e-5)


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    cfg = small_config(steps=60, snapshot_every=20)
    full = train(cfg, compile=False, progress=False)
    saves = []
    real_save = rundir.save_checkpoint

    def crash_after_two(out, tensors, meta):
        real_save(out, tensors, meta)
        saves.append(meta["step"])
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "save_checkpoint", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, compile=False, progress=False, out=tmp_path, checkpoint_every=15)
    assert not rundir.is_complete(tmp_path) and (tmp_path / rundir.CHECKPOINT).exists()
    with pytest.raises(sp.RunDirError, match="not finished"):
        sp.load_run(tmp_path)
    monkeypatch.setattr(rundir, "save_checkpoint", real_save)
    resumed = train(cfg, compile=False, progress=False, out=tmp_path, checkpoint_every=15)
    assert saves == [15, 30]
    assert torch.equal(resumed.W, full.W)
    assert resumed.metrics.loss_curve == full.metrics.loss_curve
    assert torch.equal(resumed.snapshots["W"], full.snapshots["W"])
    assert not (tmp_path / rundir.CHECKPOINT).exists()


def test_out_dir_rules(tmp_path):
    cfg = small_config(steps=10)
    train(cfg, compile=False, progress=False, out=tmp_path / "r")
    with pytest.raises(sp.RunDirError, match="already holds a finished run"):
        train(cfg, compile=False, progress=False, out=tmp_path / "r")
    train(cfg, compile=False, progress=False, out=tmp_path / "r", overwrite=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(sp.RunDirError, match="not a superposition run directory"):
        train(cfg, compile=False, progress=False, out=tmp_path / "junk")
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"
    (tmp_path / "killed").mkdir()  # killed during the first write of config.json
    (tmp_path / "killed" / ".config.json.abc123.tmp").write_text("{")
    train(cfg, compile=False, progress=False, out=tmp_path / "killed")
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == sorted(
        ["config.json", "weights.safetensors", "metrics.json", "provenance.json"])


def test_cuda_request_without_cuda_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(sp.ConfigError, match="device"):
        train(small_config(), device="cuda", progress=False)
