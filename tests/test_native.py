"""The native step (`superposition.native`): the same training as the torch step, up to float rounding;
bit-identical between batched and alone, between thread counts, and across a resume."""

from dataclasses import replace

import pytest
import torch

import superposition as sp
from superposition import native
from superposition import run as rundir
from superposition.train import torch_threads, train
from tests.conftest import small_config

pytestmark = pytest.mark.skipif(native.compiler() is None, reason="no C compiler")


def _with(cfg: sp.RunConfig, **train_kw) -> sp.RunConfig:
    return replace(cfg, train=replace(cfg.train, **train_kw))


def _assert_same_training(a: sp.Run, b: sp.Run) -> None:
    for name in a.params:
        torch.testing.assert_close(a.params[name], b.params[name], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(a.metrics.loss_curve), torch.tensor(b.metrics.loss_curve),
                               rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", ["linear", "relu_output", "relu_hidden"])
@pytest.mark.parametrize("extra", [{}, {"optimizer": "adam", "weight_decay": 0.01},
                                   {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
                                   {"l1_hidden": 0.01, "schedule": "cosine", "warmup_steps": 5}])
def test_native_step_matches_eager(kind, extra):
    cfg = _with(small_config(kind, n=7, m=3, probs=(1.0, 0.2), steps=40), batch_size=100, **extra)
    eager = train(cfg, compile=False, progress=False)
    fast = train(cfg, compile="native", progress=False)
    assert fast.provenance["step"] == "native" and eager.provenance["step"] == "eager"
    _assert_same_training(fast, eager)


def test_native_step_matches_eager_on_signed_inputs_and_uneven_importance():
    base = _with(small_config("relu_output", n=9, m=2, probs=(0.5,), steps=30), batch_size=70)  # a partial block
    cfg = replace(base, data=replace(base.data, signed=True, importance_decay=0.7))
    _assert_same_training(train(cfg, compile="native", progress=False), train(cfg, compile=False, progress=False))


@pytest.mark.parametrize("batch_size", [50, 64])  # the set exactly, and a batch larger than the set
def test_native_step_matches_eager_on_a_finite_set_in_full_batches(batch_size):
    base = _with(small_config("relu_output", n=20, m=2, probs=(0.1,), steps=60, restarts=2), batch_size=batch_size,
                 optimizer="adamw", weight_decay=0.01, schedule="cosine", warmup_steps=10)
    cfg = replace(base, data=replace(base.data, n_train=50, n_test=30, normalize=True, magnitude="exponential"))
    assert native.unsupported(cfg) is None  # normalize and the law apply to the set, which the kernel only reads
    fast, eager = train(cfg, compile="native", progress=False), train(cfg, compile=False, progress=False)
    _assert_same_training(fast, eager)
    torch.testing.assert_close(torch.tensor(fast.metrics.test_loss), torch.tensor(eager.metrics.test_loss), rtol=1e-4,
                               atol=1e-7)
    minibatches = _with(cfg, batch_size=10)
    assert "a finite training set in minibatches (batch_size 10 < n_train 50)" in native.unsupported(minibatches)
    assert train(minibatches, progress=False).provenance["step"] in ("eager", "compiled")


def test_native_batched_equals_alone_and_thread_counts_agree():
    both = train(small_config(probs=(1.0, 0.1), restarts=2, keep_all_restarts=True), compile="native", progress=False)
    for c, p in enumerate((1.0, 0.1)):
        alone = train(small_config(probs=(p,), restarts=2, keep_all_restarts=True), compile="native", progress=False)
        assert torch.equal(both.W[2 * c: 2 * c + 2], alone.W) and torch.equal(both.b[2 * c: 2 * c + 2], alone.b)
    with torch_threads(2):
        two = train(small_config(probs=(1.0, 0.1), restarts=2, keep_all_restarts=True), compile="native",
                    progress=False)
    assert torch.equal(two.W, both.W)


def test_native_run_resumes_exactly_and_keeps_its_path(tmp_path, monkeypatch):
    cfg = small_config(steps=60, snapshot_every=20)
    full = train(cfg, compile="native", progress=False)
    real_save, saves = rundir.save_checkpoint, []

    def crash_after_two(out, tensors, meta):
        real_save(out, tensors, meta)
        saves.append(meta["step"])
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "save_checkpoint", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, compile="native", progress=False, out=tmp_path, checkpoint_every=15)
    monkeypatch.setattr(rundir, "save_checkpoint", real_save)
    resumed = train(cfg, compile="auto", progress=False, out=tmp_path, checkpoint_every=15)
    assert saves == [15, 30] and resumed.provenance["step"] == "native"
    assert torch.equal(resumed.W, full.W) and resumed.metrics.loss_curve == full.metrics.loss_curve
    assert torch.equal(resumed.snapshots["W"], full.snapshots["W"])
    assert full.metrics.loss_steps == [10, 20, 30, 40, 50, 60]


def test_auto_takes_the_native_step_where_it_can(monkeypatch):
    assert train(small_config(steps=20), progress=False).provenance["step"] == "native"
    monkeypatch.setenv(native.ENABLE_ENV, "0")
    assert train(small_config(steps=20), progress=False).provenance["step"] == "eager"
    assert train(small_config(steps=20), compile="native", progress=False).provenance["step"] == "native"
    monkeypatch.delenv(native.ENABLE_ENV)
    for cfg in (small_config("abs_mlp", steps=20), _with(small_config(steps=20), optimizer="RMSprop")):
        assert native.unsupported(cfg) is not None
        assert train(cfg, compile="auto", progress=False).provenance["step"] in ("eager", "compiled")


def test_unsupported_runs_and_missing_compilers_are_refused_with_the_reason(monkeypatch):
    base = small_config(steps=5)
    sparse = replace(base, data=replace(base.data, sampler="sparse"))
    assert "data.sampler = 'sparse'" in native.unsupported(sparse)
    assert "device cuda" in native.unsupported(base, "cuda")
    with pytest.raises(sp.ConfigError, match="compile = 'native' is unavailable.*abs_mlp"):
        train(small_config("abs_mlp", steps=5), compile="native", progress=False)
    monkeypatch.setattr(native, "compiler", lambda: None)
    with pytest.raises(sp.ConfigError, match="no C compiler"):
        train(base, compile="native", progress=False)
    assert train(base, compile="auto", progress=False).provenance["step"] == "eager"


def test_a_failed_build_falls_back_and_is_not_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_failures", {})
    monkeypatch.setattr(native, "FLAG_SETS", (["-O3", "--no-such-flag"],))
    with pytest.raises(native.NativeUnavailableError, match="did not build"):
        native.library()
    assert train(small_config(steps=5), progress=False).provenance["step"] == "eager"
    assert not list((tmp_path / "cache").glob("superposition-native/*.tmp"))  # nothing half-written is left


def test_the_library_is_built_once_into_the_compile_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_loaded", {})
    native.library()
    built = list((tmp_path / "cache" / "superposition-native").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_compile", lambda *a: pytest.fail("rebuilt a library already in the cache"))
    native.library()


def test_the_portable_build_trains_the_same(tmp_path, monkeypatch):
    """The last flag set (no -march=native: 4-lane vectors, 64-row blocks) is the path of machines
    where the others fail; it must train as the eager step does too."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "FLAG_SETS", native.FLAG_SETS[-1:])
    cfg = _with(small_config("relu_hidden", n=6, m=3, probs=(1.0, 0.3), steps=30), batch_size=100, l1_hidden=0.01)
    _assert_same_training(train(cfg, compile="native", progress=False), train(cfg, compile=False, progress=False))
