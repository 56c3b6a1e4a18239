"""compile="auto": the decision on measured cost, its records, and runs that switch paths mid-way."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import superposition as sp
from superposition import compiling, native
from superposition.models.fused import UNROLL_MAX_HIDDEN
from superposition.train import _padded


def small(steps: int = 40, **train) -> sp.RunConfig:
    return sp.RunConfig(model=sp.ModelConfig("relu_output", n_features=5, n_hidden=2),
                        data=sp.DataConfig(feature_probability=(1.0, 0.1)), train=sp.TrainConfig(steps=steps, **train))


@pytest.fixture(autouse=True)
def fresh_process_memory(monkeypatch):
    """No test here sees what another test compiled in this process (`compiling.compiled_here`)."""
    monkeypatch.setattr(compiling, "_compiled_here", {})


@pytest.fixture(autouse=True)
def torch_paths_only(monkeypatch):
    """These tests are about torch.compile's choice: `auto` does not take the native step here."""
    monkeypatch.setenv(native.ENABLE_ENV, "0")


@pytest.fixture
def records(tmp_path, monkeypatch):
    """Records in a temporary file instead of the machine's Inductor cache."""
    path = tmp_path / compiling.RECORD_FILE
    monkeypatch.setattr(compiling, "record_path", lambda: path)
    return path


def test_signature_ignores_tensor_data_but_not_what_the_step_bakes_in():
    base = small()
    key = compiling.signature(base, "cpu")
    same = replace(base, data=replace(base.data, feature_probability=(0.5, 0.01), importance_decay=0.9),
                   train=replace(base.train, steps=999, seed=3, lr=0.01, log_every=7), name="other")
    assert compiling.signature(same, "cpu") == key
    assert compiling.signature(base, "cuda") != key
    for changed in (replace(base.train, batch_size=512), replace(base.train, weight_decay=0.1)):
        assert compiling.signature(replace(base, train=changed), "cpu") != key
    assert compiling.signature(replace(base, data=replace(base.data, feature_probability=(1.0,))), "cpu") != key
    for changed in (replace(base.model, n_hidden=3), replace(base.model, kind="relu_hidden")):
        assert compiling.signature(replace(base, model=changed), "cpu") != key


def test_with_shared_shapes_the_signature_leaves_out_the_sizes_compiled_symbolically():
    """Feature and instance counts (and hidden sizes past the unrolled ones) share one dynamic-shape graph."""
    base = small()
    alone = compiling.signature(base, "cpu")
    with compiling.shared_shapes():
        assert compiling.shapes_shared()
        key = compiling.signature(base, "cpu")
        for other in (replace(base, model=replace(base.model, n_features=40)),
                      replace(base, data=replace(base.data, feature_probability=(1.0, 0.3, 0.1, 0.01))),
                      replace(base, train=replace(base.train, restarts=7))):
            assert compiling.signature(other, "cpu") == key
        assert compiling.signature(replace(base, model=replace(base.model, n_hidden=3)), "cpu") != key
        wide = replace(base, model=replace(base.model, n_features=100, n_hidden=UNROLL_MAX_HIDDEN + 1))
        wider = replace(wide, model=replace(wide.model, n_hidden=UNROLL_MAX_HIDDEN + 20))
        assert compiling.signature(wide, "cpu") == compiling.signature(wider, "cpu") != key
    assert key != alone and not compiling.shapes_shared()
    assert compiling.signature(replace(base, model=replace(base.model, n_features=40)), "cpu") != alone


def test_a_recipe_compiles_one_graph_for_runs_of_different_shapes(records, tmp_path, monkeypatch):
    """Within shared shapes the second shape of a family reuses the first one's graph: no new compile."""
    monkeypatch.setattr(compiling, "DEFAULT_COLD_COMPILE_S", 0.0)  # compiling "pays" at once
    monkeypatch.setattr(compiling, "DEFAULT_SPEEDUP", 1e6)
    with compiling.shared_shapes():
        first = sp.train(small(steps=30), compile=True, progress=False)
        other = small(steps=30)
        other = replace(other, model=replace(other.model, n_features=9),
                        data=replace(other.data, feature_probability=(1.0, 0.3, 0.1)))
        counters = torch._dynamo.utils.counters
        before = counters["stats"]["unique_graphs"]
        second = sp.train(other, compile=True, progress=False)
        assert counters["stats"]["unique_graphs"] == before  # the same graph, dynamic in features and instances
    assert first.metrics.compiled and second.metrics.compiled and second.W.shape == (3, 9, 2)


def test_a_step_compiled_in_this_process_costs_its_last_first_call_and_is_recorded_once(records):
    compiling.note_compiled("k", 14.0, speedup=5.0)  # the process's compile: recorded for the next process
    est = compiling.estimate("k", eager_step=0.01, remaining=100)
    assert est.recorded and est.compile == 14.0
    compiling.note_compiled("k", 0.02, speedup=7.0)  # dynamo reused the graph: not a cache load
    entry = json.loads(records.read_text())["k"]
    assert entry == {"compile_s": [14.0], "speedup": [5.0, 7.0]}
    est = compiling.estimate("k", eager_step=0.01, remaining=100)
    assert est.compile == 0.02 and est.compiled_step == pytest.approx(0.01 / 6.0) and est.pays


def test_unseen_step_assumes_defaults_and_the_median_recorded_cold_compile(records):
    est = compiling.estimate("new", eager_step=0.003, remaining=1000, records={})
    assert est.compile == compiling.DEFAULT_COLD_COMPILE_S and not est.recorded
    assert est.compiled_step == pytest.approx(0.003 / compiling.SMALL_STEP_DEFAULT_SPEEDUP)
    assert not est.pays  # 1000 × 2.5 ms saved < 15 s of compiling
    big = compiling.estimate("new", eager_step=0.1, remaining=1000, records={})
    assert big.compiled_step == pytest.approx(0.1 / compiling.DEFAULT_SPEEDUP) and big.pays
    assert compiling.estimate("new", 0.003, 10_000_000, records={}).pays
    seen = {"a": {"compile_s": [30.0, 2.0], "speedup": [5.0]}, "b": {"compile_s": [9.0], "speedup": []},
            "c": {"compile_s": [12.0], "speedup": []}}
    assert compiling.estimate("new", 0.003, 1000, records=seen).compile == 12.0  # the median cold compile


def test_a_recorded_step_uses_its_cache_load_time_and_speedup(records):
    compiling.record("k", 12.0, speedup=8.0)
    compiling.record("k", 1.5, speedup=10.0)
    compiling.record("k", 1.7)  # compile=True: no eager steps to compare with
    est = compiling.estimate("k", eager_step=0.002, remaining=2000)
    assert est.recorded and est.compile == 1.5 and est.compiled_step == pytest.approx(0.002 / 9.0)
    assert est.pays  # 2000 × 1.8 ms = 3.6 s saved > 1.5 s to load
    assert json.loads(records.read_text())["k"]["compile_s"] == [12.0, 1.5, 1.7]


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"k": {"compile_s": "x"}}', '{"k": {"compile_s": [-1]}}',
                                     '{"k": {"compile_s": [1], "speedup": [0]}}'])
def test_a_damaged_record_is_ignored(records, content):
    records.write_text(content)
    assert compiling.read_records() == {}
    compiling.record("k", 2.0)  # and replaced
    assert compiling.read_records()["k"]["compile_s"] == [2.0]


def test_padded_learning_rates_share_shapes_across_step_counts():
    assert _padded(torch.ones(3000)).shape == _padded(torch.ones(4000)).shape == (4096,)
    table = torch.arange(5.0)
    assert torch.equal(_padded(table)[:5], table) and _padded(table).shape == (8,)
    assert _padded(torch.ones(1)).shape == (1,)


def test_auto_stays_eager_when_compiling_cannot_pay_and_says_why(records, tmp_path):
    run = sp.train(small(steps=40), compile="auto", progress=False, out=tmp_path / "run")
    assert not run.metrics.compiled
    choice = json.loads((tmp_path / "run" / "provenance.json").read_text())["compile_choice"]
    assert choice["remaining"] == 40 - 1 - compiling.PROBE_STEPS and not choice["compiled"]
    assert choice["eager_step"] > 0 and choice["compile"] == compiling.DEFAULT_COLD_COMPILE_S


def test_auto_switches_to_the_compiled_step_mid_run_on_the_same_data(records, monkeypatch):
    config = small(steps=30)
    eager = sp.train(config, compile=False, progress=False)
    monkeypatch.setattr(compiling, "DEFAULT_COLD_COMPILE_S", 0.0)  # compiling "pays" at once
    monkeypatch.setattr(compiling, "DEFAULT_SPEEDUP", 1e6)
    switched = sp.train(config, compile="auto", progress=False)
    assert switched.metrics.compiled
    for k, v in eager.params.items():
        torch.testing.assert_close(switched.params[k], v, rtol=1e-4, atol=1e-5)
    entry = compiling.read_records()[compiling.signature(config, "cpu")]
    assert len(entry["compile_s"]) == 1 and len(entry["speedup"]) == 1


def test_short_runs_never_probe(records):
    run = sp.train(small(steps=compiling.PROBE_STEPS + 1), compile="auto", progress=False)
    assert not run.metrics.compiled and "compile_choice" not in run.provenance


def test_a_resumed_auto_run_keeps_the_path_its_checkpoint_chose(records, tmp_path, monkeypatch):
    from superposition import run as rundir
    from superposition.train import init_state, restore_state
    from tests.test_engine import _interrupt_after_first_checkpoint

    config = small(steps=40)
    out = tmp_path / "run"
    _interrupt_after_first_checkpoint(
        monkeypatch, lambda: sp.train(config, compile="auto", progress=False, out=out, checkpoint_every=20))
    state = init_state(config, torch.device("cpu"))
    rundir.resume(out, state, config, restore_state)
    assert state.compiled is False and int(state.step) == 20
    resumed = sp.train(config, compile="auto", progress=False, out=out)
    straight = sp.train(config, compile=False, progress=False)
    for k, v in straight.params.items():
        assert torch.equal(resumed.params[k], v)  # eager throughout: bit for bit


def test_threads_apply_while_training_and_are_restored_after(monkeypatch):
    import importlib

    train_module = importlib.import_module("superposition.train")
    before, seen = torch.get_num_threads(), []
    real = train_module._loop
    monkeypatch.setattr(train_module, "_loop", lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    sp.train(small(steps=3), threads=1, progress=False)
    assert seen == [1] and torch.get_num_threads() == before
    with pytest.raises(sp.ConfigError, match="threads"):
        sp.train(small(steps=3), threads=0, progress=False)


def warming(monkeypatch) -> list[tuple[str, Path]]:
    """Background compiles on, with the child processes replaced by a list of what would start."""
    started: list[tuple[str, Path]] = []
    monkeypatch.setenv(compiling.BACKGROUND_ENV, "1")
    monkeypatch.setattr(compiling, "_spawn", lambda mode, lock, wait: started.append((mode, lock)))
    return started


def test_an_eager_choice_on_a_step_never_compiled_here_warms_it_in_the_background(records, monkeypatch):
    started = warming(monkeypatch)
    monkeypatch.setattr(compiling, "DEFAULT_LOAD_S", 0.0)  # a cache load would pay in any run this long
    config = small(steps=40)
    run = sp.train(config, compile="auto", progress=False)
    assert not run.metrics.compiled  # 15 s of compiling cannot pay in 35 steps
    assert run.provenance["compile_choice"]["background_compile"]
    assert [mode for mode, _ in started] == ["warm"]
    lock = started[0][1]
    assert lock.parent == records.parent and compiling.signature(config, "cpu") in lock.name
    held = json.loads(lock.read_text())
    assert sp.RunConfig.from_dict(held["config"]) == config and held["device"] == "cpu"
    sp.train(config, compile="auto", progress=False)
    assert len(started) == 1  # one background compile per step at a time
    lock.unlink()
    with compiling.background_compiles(False):
        sp.train(config, compile="auto", progress=False)
    monkeypatch.setenv(compiling.BACKGROUND_ENV, "0")
    sp.train(config, compile="auto", progress=False)
    assert len(started) == 1


def test_no_background_compile_where_a_cache_load_would_not_pay_either(records, monkeypatch):
    started = warming(monkeypatch)
    sp.train(small(steps=40), compile="auto", progress=False)  # 35 steps × ~1 ms < 5 s of loading
    assert started == []
    est = compiling.Estimate(eager_step=0.002, compiled_step=0.0003, compile=30.0, remaining=10_000, recorded=False)
    assert compiling.worth_warming(est, records={})  # 17 s saved: < 30 s to compile, > 5 s to load
    assert not compiling.worth_warming(replace(est, recorded=True), records={})
    loads = {"a": {"compile_s": [20.0, 40.0], "speedup": []}}  # loading takes 20 s here
    assert compiling.load_estimate(loads) == 20.0 and not compiling.worth_warming(est, records=loads)


def test_a_step_compiled_once_is_next_weighed_at_a_cache_load_not_a_compile(records):
    compiling.record("once", 18.0, speedup=6.0)  # the cold compile of a run that compiled inline
    est = compiling.estimate("once", eager_step=0.0016, remaining=10_000)
    assert est.recorded and est.compile == compiling.DEFAULT_LOAD_S and est.pays  # 13 s saved > 5 s to load
    compiling.record("other", 20.0)
    compiling.record("other", 3.0)  # a load measured for another step here
    assert compiling.estimate("once", 0.0016, 10_000).compile == 3.0
    compiling.record("once", 4.0)
    assert compiling.estimate("once", 0.0016, 10_000).compile == 4.0  # its own load, once measured


def test_an_unmeasured_speedup_defaults_by_step_size(records):
    compiling.record("k", 3.0)  # compile=True: no eager steps measured
    assert compiling.estimate("k", 0.002, 100).compiled_step == pytest.approx(
        0.002 / compiling.SMALL_STEP_DEFAULT_SPEEDUP)
    assert compiling.estimate("k", 0.1, 100).compiled_step == pytest.approx(0.1 / compiling.DEFAULT_SPEEDUP)


@pytest.mark.slow
def test_the_background_compile_records_a_compile_then_the_load_the_next_run_pays(tmp_path, monkeypatch):
    """The real thing, in child processes: a cold compile, then a fresh process loading it from the
    cache; the next run of the step weighs that load."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    config = small(steps=3000)
    lock = tmp_path / "superposition-warming-test.json"
    lock.write_text(json.dumps({"config": config.to_dict(), "device": "cpu"}))
    compiling._spawn("warm", lock, wait=True)
    assert not lock.exists()
    entry = compiling.read_records(tmp_path / compiling.RECORD_FILE)[compiling.signature(config, "cpu")]
    cold, load = entry["compile_s"]
    assert load < cold and len(entry["speedup"]) == 2 and min(entry["speedup"]) > 1
    run = sp.train(config, compile="auto", progress=False)
    choice = run.provenance["compile_choice"]
    assert choice["recorded"] and choice["compile"] == load  # the next run weighs the load, not the compile
    assert run.metrics.compiled == (choice["remaining"] * (choice["eager_step"] - choice["compiled_step"]) > load)


def test_at_most_max_warming_background_compiles_run_at_once(records, monkeypatch):
    started = warming(monkeypatch)
    configs = [small(batch_size=64 + i) for i in range(compiling.MAX_WARMING + 2)]  # distinct steps, distinct locks
    assert [compiling.warm_in_background(c, "cpu") for c in configs] == \
        [True] * compiling.MAX_WARMING + [False, False]
    assert len(started) == compiling.MAX_WARMING
    started[0][1].unlink()  # one finishes: the next step may start
    assert compiling.warm_in_background(configs[-1], "cpu")
    stale = started[1][1]
    os.utime(stale, (0, 0))  # a dead compile's lock does not count
    assert compiling.warm_in_background(configs[-2], "cpu")


def test_cpu_seconds_count_this_process_and_its_finished_children_not_waiting():
    """What a background compile records: CPU time, which waiting at idle priority does not inflate."""
    import subprocess
    import sys
    import time

    start = compiling.cpu_seconds()
    time.sleep(0.3)  # waiting costs no CPU
    assert compiling.cpu_seconds() - start < 0.1
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)  # 0.3 s of CPU, however fast the machine
    assert compiling.cpu_seconds() - start > 0.25  # a child's work (the C++ compiler's) counts
