import json

import pytest
import torch

import superposition as sp
from superposition import run as rundir
from tests.conftest import small_config


@pytest.mark.parametrize("kind", ["relu_output", "abs_mlp"])
def test_save_load_round_trip_reproduces_outputs_exactly(tmp_path, kind):
    run = sp.train(small_config(kind, steps=20, snapshot_every=10), compile=False, progress=False, out=tmp_path)
    loaded = sp.load_run(tmp_path)
    assert loaded.config == run.config
    x = torch.rand(2, 16, 5)
    assert torch.equal(loaded.model(x), run.model(x))
    assert loaded.metrics == run.metrics
    assert torch.equal(loaded.snapshots["W1" if kind == "abs_mlp" else "W"],
                       run.snapshots["W1" if kind == "abs_mlp" else "W"])
    names = {"W1", "W2", "b"} if kind == "abs_mlp" else {"W", "b"}
    assert set(loaded.params) == names


def test_run_directory_contents(tmp_path):
    sp.train(small_config(steps=10), compile=False, progress=False, out=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "metrics.json", "provenance.json",
                                                          "weights.safetensors"]
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert {"version", "git_commit", "command", "started", "finished", "torch", "device"} <= set(prov)
    assert sp.RunConfig.from_json((tmp_path / "config.json").read_text()) == small_config(steps=10)


def test_unreadable_or_foreign_directories_are_clear_errors(tmp_path):
    with pytest.raises(sp.RunDirError, match="no such run directory"):
        sp.load_run(tmp_path / "missing")
    with pytest.raises(sp.RunDirError, match="no config.json"):
        sp.load_run(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(sp.RunDirError, match="unreadable"):
        sp.load_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": {"kind": "cnn"}}))
    with pytest.raises(sp.RunDirError, match="model.kind"):
        sp.load_run(tmp_path)


def test_corrupt_weights_are_a_clear_error(tmp_path):
    sp.train(small_config(steps=10), compile=False, progress=False, out=tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(sp.RunDirError, match="weights.safetensors"):
        sp.load_run(tmp_path)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    rundir.atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
