"""Sweeps: spec and expansion, packing into chunks, the local executor, resume and crash safety, the index."""

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

import superposition as sp
from superposition import sweep as sw
from superposition.cli import main
from superposition.config import ConfigError
from superposition.data import importance_matrix, probability_matrix
from superposition.run import load_run
from superposition.sweep import Axis, SweepError, SweepSpec, load_model, load_sweep, plan, run_sweep
from superposition.sweep import chunks as sw_chunks
from superposition.sweep import driver as sw_driver
from superposition.sweep.job import MODELS, ChunkJob, chunk_rows, run_chunk


def base_config(steps: int = 30, **train_kw) -> sp.RunConfig:
    return sp.RunConfig(model=sp.ModelConfig("relu_output", 2, 1), data=sp.DataConfig(importance=(1.0, 1.0)),
                        train=sp.TrainConfig(steps=steps, batch_size=32, log_every=10, eval_batches=1, **train_kw))


def small_spec(chunk_size: int | None = 4, steps: int = 30, **train_kw) -> SweepSpec:
    """3 densities × 2 importances × 2 seeds = 12 models; chunk size 4: 2 chunks of 3 per seed."""
    axes = (Axis.log("p", 1.0, 0.1, 3), Axis("importance[1]", (0.5, 2.0)), Axis.range("seed", 2))
    return SweepSpec(base_config(steps, **train_kw), axes, name="t", chunk_size=chunk_size)


def sweep(spec: SweepSpec, out: Path, **kw) -> sw.SweepOutcome:
    return run_sweep(spec, out, workers=1, compile=False, progress=False, **kw)


# --- spec -------------------------------------------------------------------------------------


def test_axis_ranges_and_field_names():
    assert Axis.log("p", 1, 0.01, 3).values == (1.0, 0.1, 0.01)
    assert Axis.linear("lr", 0.0, 1.0, 5).values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert Axis.range("seed", 3).values == (0, 1, 2) and Axis.range("seed", 2, 8, 3).values == (2, 5)
    assert Axis("data.feature_probability", [0.5]).field == "p"
    assert Axis("train.seed", [1]).field == "seed" and Axis("data.importance[1]", [2]).field == "importance[1]"
    assert Axis.from_dict({"field": "p", "log": [1, 0.01, 3]}) == Axis.log("p", 1, 0.01, 3)
    assert Axis.from_dict({"field": "seed", "range": [4]}).values == (0, 1, 2, 3)


@pytest.mark.parametrize("raw, words", [
    ({"field": "colour", "values": [1]}, ["colour", "config field"]),
    ({"field": "model.seed", "values": [1]}, ["model.seed"]),
    ({"field": "steps[1]", "values": [1]}, ["steps[1]", "[i] only on"]),
    ({"field": "p", "log": [1, 0, 3]}, ["log range", "> 0"]),
    ({"field": "p", "log": [1, 0.1, 0]}, ["num", ">= 1"]),
    ({"field": "p", "values": []}, ["non-empty"]),
    ({"field": "p", "values": [0.1], "log": [1, 0.1, 2]}, ["one of values"]),
])
def test_bad_axes_are_named(raw, words):
    with pytest.raises(ConfigError) as err:
        Axis.from_dict(raw)
    for word in words:
        assert word in str(err.value)


def test_bad_specs_are_named():
    base = base_config()
    cases = [
        (dict(axes=((Axis("p", (1.0, 0.5)), Axis("seed", (0,))),)), "equal lengths"),
        (dict(axes=(Axis("p", (1.0,)), Axis("feature_probability", (0.5,)))), "p swept twice"),
        (dict(axes=(Axis("p", (1.0, 0.0)),)), "sweep point (p = 0.0): data.feature_probability[0]"),
        (dict(axes=(Axis("n_features", (2, 3)),)), "sweep point (n_features = 3): data.importance"),
        (dict(axes=(Axis("importance[2]", (1.0,)),)), "importance[2] is out of range"),
        (dict(base=replace(base, data=sp.DataConfig(feature_probability=(1.0, 0.5)))), "one configuration"),
        (dict(chunk_size=0), "chunk_size = 0"),
        (dict(name="a b"), "sweep name"),
    ]
    for kwargs, words in cases:
        with pytest.raises(ConfigError) as err:
            SweepSpec(**{"base": base, **kwargs})
        assert words in str(err.value), (kwargs, str(err.value))


def test_spec_round_trips_through_json_and_yaml(tmp_path):
    spec = SweepSpec(base_config(), (Axis.log("p", 1, 0.1, 2), (Axis("seed", (0, 1)), Axis("lr", (1e-3, 3e-3)))),
                     name="rt", chunk_size=7)
    raw = spec.to_dict()
    assert raw["axes"][1] == {"zip": [{"field": "seed", "values": [0, 1]}, {"field": "lr", "values": [1e-3, 3e-3]}]}
    (tmp_path / "s.json").write_text(json.dumps(raw))
    assert SweepSpec.from_file(tmp_path / "s.json") == spec
    yaml_text = ("name: rt\nchunk_size: 7\nbase:\n  model: {kind: relu_output, n_features: 2, n_hidden: 1}\n"
                 "  data: {importance: [1.0, 1.0]}\n"
                 "  train: {steps: 30, batch_size: 32, log_every: 10, eval_batches: 1}\n"
                 "axes:\n  - {field: p, log: [1, 0.1, 2]}\n"
                 "  - zip: [{field: seed, values: [0, 1]}, {field: lr, values: [0.001, 0.003]}]\n")
    (tmp_path / "s.yaml").write_text(yaml_text)
    assert SweepSpec.from_file(tmp_path / "s.yaml") == spec
    (tmp_path / "bad.json").write_text('{"base": {}, "axes": [], "colour": 1}')
    with pytest.raises(ConfigError, match="colour"):
        SweepSpec.from_file(tmp_path / "bad.json")


def test_points_are_row_major_and_zipped_axes_move_together():
    spec = SweepSpec(base_config(), (Axis("p", (1.0, 0.5)), (Axis("seed", (0, 1, 2)), Axis("lr", (1.0, 2.0, 3.0)))))
    points = list(spec.points())
    assert spec.shape == (2, 3) and spec.n_points == 6 == len(points)
    assert points[0] == {"p": 1.0, "seed": 0, "lr": 1.0} and points[4] == {"p": 0.5, "seed": 1, "lr": 2.0}
    assert spec.config(4).train.seed == 1 and spec.config(4).data.feature_probability == (0.5,)


def test_element_axes_edit_lists_the_base_implies():
    decay = replace(base_config(), model=sp.ModelConfig("relu_output", 3, 1),
                    data=sp.DataConfig(feature_probability=(0.2,), importance_decay=0.5))
    cfg = sw.point_config(decay, {"importance[1]": 3.0, "p[0]": 0.9})
    assert cfg.data.importance == (1.0, 3.0, 0.25)
    assert cfg.data.feature_probability == ((0.9, 0.2, 0.2),)


# --- planning ---------------------------------------------------------------------------------


def test_plan_packs_only_per_configuration_values():
    spec = SweepSpec(base_config(restarts=2), (Axis("n_hidden", (1, 2)), Axis.range("seed", 2),
                                               Axis.log("p", 1, 0.1, 5), Axis("l1_hidden", (0.0, 0.1))), chunk_size=6)
    chunks = plan(spec, 6)
    covered = sorted(i for c in chunks for i in c.points)
    assert covered == list(range(spec.n_points))
    for c in chunks:
        configs = [spec.config(i) for i in c.points]
        assert {(k.model.n_hidden, k.train.seed) for k in configs} == {(c.config.model.n_hidden, c.config.train.seed)}
        assert c.config.n_instances <= 6 and c.config.data.n_configs in (2, 3)  # 10 points, 3 per chunk: 3, 3, 2, 2
        assert c.config.train.l1_hidden == tuple(k.train.l1_hidden for k in configs)
        assert torch.equal(probability_matrix(c.config), torch.cat([probability_matrix(k) for k in configs]))
    sizes = sorted(c.config.data.n_configs for c in plan(spec, 6))
    assert len(chunks) == 4 * 4 and sizes.count(3) == 8 and sizes.count(2) == 8


def test_importance_and_decay_axes_pack_without_changing_a_value():
    spec = SweepSpec(replace(base_config(), model=sp.ModelConfig("relu_output", 4, 2), data=sp.DataConfig()),
                     (Axis("importance_decay", (0.9, 0.7, 0.3)), Axis("p", (1.0, 0.1))))
    (chunk,) = plan(spec, 100)
    assert chunk.config.data.per_config_importance
    expected = torch.cat([importance_matrix(spec.config(i)) for i in chunk.points])
    assert torch.equal(importance_matrix(chunk.config), expected)


def test_auto_chunk_size_bounds(monkeypatch):
    tiny = replace(base_config(), train=sp.TrainConfig(batch_size=1024))
    big = replace(tiny, model=sp.ModelConfig("relu_output", 100, 20), data=sp.DataConfig())
    monkeypatch.setattr(sw_chunks, "available_memory", lambda device="cpu": 64 << 30)
    assert sw.auto_chunk_size(tiny, 10_000, workers=2) == sw.TARGET_STEP_ELEMENTS["cpu"] // (1024 * 3) == 170
    assert sw.auto_chunk_size(tiny, 10, workers=2) == 5  # every worker gets a chunk
    assert sw.auto_chunk_size(big, 10_000) == 4 and sw.auto_chunk_size(big, 10_000, device="cuda") == 136
    monkeypatch.setattr(sw_chunks, "available_memory", lambda device="cpu": 40 * sw.model_bytes(tiny))
    assert sw.auto_chunk_size(tiny, 10_000, workers=2) == 5  # a quarter of the memory, shared by two workers


# --- running, resuming, the index -------------------------------------------------------------


def test_each_model_equals_training_it_alone(tmp_path):
    seen = []
    result = sweep(small_spec(), tmp_path / "s", on_progress=seen.append)
    index = result.index
    assert len(index) == 12 and result.chunks == 4 and result.trained == 4
    assert [(p.chunks_done, p.models_done) for p in seen] == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert seen[0].eta > 0 and seen[-1].eta == 0 and seen[-1].chunks_total == 4 and seen[-1].models_total == 12
    assert list(index.columns[:5]) == ["point", "p", "importance[1]", "seed", "restart"]
    assert index["point"].tolist() == list(range(12)) and set(index["chunk"]) == {f"chunks/c000{k}" for k in range(4)}
    for row in (0, 5, 11):
        model = load_model(tmp_path / "s", row)
        alone = sp.train(model.config, compile=False, progress=False)
        assert torch.equal(model.params["W"], alone.W) and torch.equal(model.params["b"], alone.b)
        assert model.row["final_loss"] == alone.metrics.final_loss[0]
        assert model.model(torch.ones(1, 3, 2)).shape == (1, 3, 2)
    grid = sw.pivot_grid(index, "final_loss", "p", "importance[1]")
    assert grid.shape == (3, 2) and grid.index.tolist() == sorted(index["p"].unique())
    cell = index[(index["p"] == 1.0) & (index["importance[1]"] == 2.0)]["final_loss"].mean()
    assert grid.loc[1.0, 2.0] == pytest.approx(cell)


def test_rerun_trains_nothing_and_a_changed_spec_is_refused(tmp_path):
    out = tmp_path / "s"
    first = sweep(small_spec(), out)
    weights = {p: p.stat().st_mtime_ns for p in out.glob("chunks/*/weights.safetensors")}
    again = sweep(small_spec(chunk_size=None), out)  # the stored chunk size is used
    assert again.trained == 0 and again.models_trained == 0
    pd.testing.assert_frame_equal(again.index, first.index)
    assert weights == {p: p.stat().st_mtime_ns for p in out.glob("chunks/*/weights.safetensors")}
    with pytest.raises(SweepError, match=r"different spec \(base.train.steps: was 30, now 40\)"):
        sweep(small_spec(steps=40), out)
    with pytest.raises(SweepError, match="planned with chunk_size 4, not 3"):
        sweep(small_spec(chunk_size=3), out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match="not a sweep directory"):
        sweep(small_spec(), tmp_path / "other")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / ".sweep.json.abc.tmp").write_text("{")  # first start killed while writing sweep.json
    assert sweep(small_spec(), tmp_path / "new").trained == 4


def test_chunks_left_half_done_are_finished_without_retraining(tmp_path):
    out = tmp_path / "s"
    first = sweep(small_spec(), out)
    (out / "index.parquet").unlink()
    (out / "chunks/c0001" / MODELS).unlink()  # trained, killed before its rows were written
    (out / "chunks/c0002/metrics.json").unlink()  # killed while saving: an unfinished run
    for name in (out / "chunks/c0003").iterdir():  # killed while train() wrote its first file
        name.unlink()
    (out / "chunks/c0003/.config.json.x1y2.tmp").write_text("{")
    (out / ".index.parquet.999.tmp").write_text("")
    trained_at = (out / "chunks/c0001/provenance.json").read_text()
    status = sw.sweep_status(out)
    assert (status.chunks_done, status.chunks_total, status.models_done, status.finished) == (1, 4, 3, False)
    with pytest.raises(SweepError, match=r"not finished \(1/4 chunks done\)"):
        load_sweep(out)
    assert len(load_sweep(out, partial=True)) == 3
    again = sweep(small_spec(), out)
    assert again.trained == 3 and not list(out.rglob("*.tmp"))
    assert (out / "chunks/c0001/provenance.json").read_text() == trained_at  # measured, not trained again
    pd.testing.assert_frame_equal(again.index, first.index)
    pd.testing.assert_frame_equal(load_sweep(out), first.index)


def test_a_locked_chunk_is_waited_for_never_trained_twice(tmp_path):
    out = tmp_path / "s"
    chunk = plan(small_spec(), 4)[0]
    job = ChunkJob(str(out), chunk.id, chunk.config.to_json(), chunk.points)
    path = out / "chunks" / chunk.id
    path.parent.mkdir(parents=True)
    holder = open(path.parent / f"{chunk.id}.lock", "a")  # another process working on the chunk
    fcntl.flock(holder, fcntl.LOCK_EX)
    results = []
    waiter = threading.Thread(target=lambda: results.append(run_chunk(job)))
    waiter.start()
    time.sleep(0.3)
    assert not results and not path.exists()  # blocked on the lock
    run = sp.train(chunk.config, compile=False, progress=False, out=path)  # the other process's work
    rows = chunk_rows(run, chunk.points)
    (path / MODELS).write_text(json.dumps({"points": list(chunk.points), "rows": rows}))
    trained_at = (path / "weights.safetensors").stat().st_mtime_ns
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    waiter.join(30)
    assert results[0].trained is False and results[0].rows == rows
    assert (path / "weights.safetensors").stat().st_mtime_ns == trained_at


def test_cli_sweep_and_show(tmp_path, capsys):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(small_spec(chunk_size=None).to_dict()))
    out = tmp_path / "s"
    args = ["sweep", str(spec_file), "--out", str(out), "--workers", "1", "--compile", "off", "--quiet"]
    assert main([*args, "--chunk-size", "4"]) == 0
    text = capsys.readouterr().out
    assert "sweep t: 12 models in 4 chunks (4 trained now, 0 done before)" in text and "index.parquet" in text
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sweep t" in text and "chunks 4/4 done" in text and "importance[1]" in text and "finished" in text
    assert main(["show", str(out), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 12 and rows[0]["chunk"] == "chunks/c0000"
    assert main(args) == 0 and "(0 trained now, 4 done before)" in capsys.readouterr().out


@pytest.mark.parametrize("extra, words", [
    (["--chunk-size", "0"], ["chunk_size = 0"]),
    (["--workers", "0"], ["workers = 0"]),
    (["--executor", "ray", "--workers", "2"], ["--workers"]),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, extra, words):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(small_spec().to_dict()))
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(spec_file), "--out", str(tmp_path / "s"), "--quiet", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("superposition: error:")
    for word in words:
        assert word in err[0]


# --- parallel workers and kill -9 (real processes) --------------------------------------------


@pytest.mark.slow
def test_helper_processes_train_chunks_bit_for_bit_like_this_process(tmp_path):
    one = sweep(small_spec(), tmp_path / "one")
    out = tmp_path / "two"
    sw_driver._open_sweep(small_spec(), out, 2, "cpu")
    holder = open(out / "chunks" / "c0000.lock", "a")  # keeps this process on c0000 while the helper starts
    fcntl.flock(holder, fcntl.LOCK_EX)

    def release_when_the_helper_is_done() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(out.glob(f"chunks/*/{MODELS}"))) < 3:
            time.sleep(0.05)
        fcntl.flock(holder, fcntl.LOCK_UN)

    releaser = threading.Thread(target=release_when_the_helper_is_done)
    releaser.start()
    two = run_sweep(small_spec(), out, workers=2, compile=False, progress=False)
    releaser.join()
    holder.close()
    pids = {json.loads(p.read_text())["pid"] for p in out.glob(f"chunks/*/{MODELS}")}
    assert len(pids) == 2 and os.getpid() in pids
    pd.testing.assert_frame_equal(one.index, two.index)
    for chunk in sorted(set(one.index["chunk"])):
        assert torch.equal(load_run(tmp_path / "one" / chunk).W, load_run(out / chunk).W)


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find the worker processes")
def test_kill_9_then_rerun_trains_only_the_missing_chunks(tmp_path):
    spec = SweepSpec(base_config(steps=800), (Axis.log("p", 1, 0.1, 4), Axis.range("seed", 4)), name="k",
                     chunk_size=2)  # 8 chunks of 2 models, about half a second each
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "superposition.cli", "sweep", str(spec_file), "--out", str(out), "--workers", "2",
           "--compile", "off", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, workers = time.monotonic() + 180, set()
    while proc.poll() is None and time.monotonic() < deadline and not list(out.glob(f"chunks/*/{MODELS}")):
        workers.update(_children(proc.pid))
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done = {p.parent.name: (p.parent / "provenance.json").read_text() for p in out.glob(f"chunks/*/{MODELS}")}
    assert 1 <= len(done) < 8, f"kill landed at {len(done)}/8 chunks done; {proc.stderr.read().decode()[-500:]}"
    assert not (out / "index.parquet").exists()
    gone = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < gone:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "worker processes outlived the killed driver"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"({8 - len(done)} trained now, {len(done)} done before)" in rerun.stdout
    assert {name: (out / "chunks" / name / "provenance.json").read_text() for name in done} == done
    reference = sweep(spec, tmp_path / "ref")
    pd.testing.assert_frame_equal(load_sweep(out), reference.index)
    for chunk in sorted(set(reference.index["chunk"])):
        assert torch.equal(load_run(out / chunk).W, load_run(tmp_path / "ref" / chunk).W)
