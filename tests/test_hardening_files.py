"""Hardening probes of what is read back: tampered run directories (config, metrics, weights,
snapshots, provenance), crafted checkpoints, divergence, and byte-equal files from equal runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import superposition as sp
from superposition import run as rundir
from superposition.train import init_state, restore_state

from .hardening import TRAIN, cli, env, refused


def small(**train_kw) -> sp.RunConfig:
    return sp.RunConfig(model=sp.ModelConfig("relu_output", 5, 2),
                        data=sp.DataConfig(feature_probability=(1.0, 0.1)),
                        train=sp.TrainConfig(steps=20, batch_size=16, log_every=10, eval_batches=1, **train_kw))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "r"
    sp.train(small(snapshot_every=10), compile=False, progress=False, out=out)
    return out


@pytest.fixture
def copy(trained, tmp_path):
    target = tmp_path / "r"
    shutil.copytree(trained, target)
    return target


def _edit_json(path, edit):
    raw = json.loads(path.read_text())
    raw = edit(raw)
    path.write_text(json.dumps(raw))


def _metrics(key, value):
    def edit(raw):
        raw[key] = value
        return raw
    return edit


# --- tampered run directories: show and load_run ---------------------------------------------

TAMPERED = {
    "config {}": ("config.json", lambda p: p.write_text("{}"), ["entries"]),
    "config kind linear over relu weights": (
        "config.json", lambda p: _edit_json(p, lambda r: {**r, "model": {**r["model"], "kind": "linear"}}), ["kind"]),
    "config with 3 configurations over 2 instances": (
        "config.json",
        lambda p: _edit_json(p, lambda r: {**r, "data": {**r["data"], "feature_probability": [1, .5, .1]}}),
        ["metrics.json", "entries"]),
    "config not an object": ("config.json", lambda p: p.write_text("[]"), ["config.json", "object"]),
    "metrics not an object": ("metrics.json", lambda p: p.write_text("3"), ["metrics.json", "object"]),
    "metrics final_loss too short": ("metrics.json", lambda p: _edit_json(p, _metrics("final_loss", [0.1])),
                                     ["final_loss", "entries"]),
    "metrics final_loss strings": ("metrics.json", lambda p: _edit_json(p, _metrics("final_loss", ["a", "b"])),
                                   ["final_loss"]),
    "metrics loss_curve ragged": ("metrics.json", lambda p: _edit_json(p, _metrics("loss_curve", [[1.0], [1.0, 2.0]])),
                                  ["loss_curve"]),
    "metrics config_index out of range": ("metrics.json", lambda p: _edit_json(p, _metrics("config_index", [0, 7])),
                                          ["config_index"]),
    "metrics restart not a list": ("metrics.json", lambda p: _edit_json(p, _metrics("restart", 0)), ["restart"]),
    "metrics NaN": ("metrics.json",
                    lambda p: p.write_text(p.read_text().replace('"final_loss": [', '"final_loss": [NaN, ')),
                    ["metrics.json"]),
    "metrics unknown field": ("metrics.json", lambda p: _edit_json(p, _metrics("bogus", 1)), ["metrics.json", "bogus"]),
    "provenance not an object": ("provenance.json", lambda p: p.write_text("[1]"), ["provenance.json", "object"]),
    "provenance truncated": ("provenance.json", lambda p: p.write_text('{"a": '), ["provenance.json", "unreadable"]),
}


def _retype(path, dtype):
    tensors = load_file(path)
    save_file({k: v.to(dtype) for k, v in tensors.items()}, path,
              metadata={"format": "superposition-run", "kind": "relu_output"})


def _weights(edit):
    def apply(path):
        tensors = load_file(path)
        tensors, meta = edit(tensors)
        save_file(tensors, path, metadata=meta)
    return apply


OK_META = {"format": "superposition-run", "kind": "relu_output"}
TAMPERED_WEIGHTS = {
    "float64": (lambda p: _retype(p, torch.float64), ["float64", "float32"]),
    "float16": (lambda p: _retype(p, torch.float16), ["float16"]),
    "int32": (lambda p: _retype(p, torch.int32), ["int32"]),
    "bool": (lambda p: _retype(p, torch.bool), ["bool"]),
    "NaN": (_weights(lambda t: ({**t, "W": torch.full_like(t["W"], float("nan"))}, OK_META)), ["NaN"]),
    "missing b": (_weights(lambda t: ({"W": t["W"]}, OK_META)), ["missing", "b"]),
    "wrong shape": (_weights(lambda t: ({**t, "W": torch.zeros(2, 5, 3)}, OK_META)), ["shape"]),
    "extra tensor": (_weights(lambda t: ({**t, "evil": torch.zeros(1)}, OK_META)), ["unexpected", "evil"]),
    "metadata kind": (_weights(lambda t: (t, {**OK_META, "kind": "abs_mlp"})), ["abs_mlp", "relu_output"]),
    "metadata format": (_weights(lambda t: (t, {"kind": "relu_output"})), ["format"]),
    "metadata shapes": (_weights(lambda t: (t, {**OK_META, "shapes": json.dumps({"W": [9, 5, 2], "b": [9, 5]})})),
                        ["shapes"]),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_run_files_are_refused_naming_the_file(copy, capsys, case):
    name, tamper, words = TAMPERED[case]
    tamper(copy / name)
    with pytest.raises(sp.RunDirError) as info:
        sp.load_run(copy)
    assert all(w in str(info.value) for w in words), str(info.value)
    refused(["show", copy], capsys, *words)
    refused(["report", copy, "--out", copy.parent / "report.html"], capsys, *words)


@pytest.mark.parametrize("case", sorted(TAMPERED_WEIGHTS))
def test_tampered_weights_are_refused(copy, capsys, case):
    tamper, words = TAMPERED_WEIGHTS[case]
    tamper(copy / "weights.safetensors")
    with pytest.raises(sp.RunDirError) as info:
        sp.load_run(copy)
    assert "weights.safetensors" in str(info.value)
    assert all(w in str(info.value) for w in words), str(info.value)
    refused(["show", copy], capsys, "weights.safetensors")


@pytest.mark.parametrize("edit, words", [
    (lambda t: {k: v for k, v in t.items() if k != "steps"}, ["steps"]),
    (lambda t: {**t, "W": t["W"][:, :1].contiguous()}, ["W", "shape"]),
    (lambda t: {**t, "W": t["W"].double()}, ["float64"]),
])
def test_tampered_snapshots_are_refused(copy, edit, words):
    path = copy / "snapshots.safetensors"
    save_file(edit(load_file(path)), path)
    with pytest.raises(sp.RunDirError) as info:
        sp.load_run(copy)
    assert "snapshots.safetensors" in str(info.value) and all(w in str(info.value) for w in words)


def test_an_untampered_run_still_loads(copy):
    run = sp.load_run(copy)
    assert run.n_instances == 2 and run.snapshots["W"].shape == (2, 3, 5, 2)


# --- crafted checkpoints ----------------------------------------------------------------------


def _checkpoint(out, config, step=10, edit=None, meta_edit=None):
    """A checkpoint like the one `train` writes at `step`, optionally edited."""
    state = init_state(config, torch.device("cpu"))
    state.step.fill_(step)
    state.loss_steps = list(range(config.train.log_every, step + 1, config.train.log_every))
    state.loss_curve = [[0.1] * config.n_instances for _ in state.loss_steps]
    tensors = state.tensors()
    meta = {"config": config.to_dict(), "step": step, "loss_steps": state.loss_steps, "loss_curve": state.loss_curve,
            "snapshot_steps": []}
    if edit:
        tensors = edit(tensors)
    if meta_edit:
        meta = meta_edit(meta)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.to_json())
    rundir.save_checkpoint(out, tensors, meta)


CRAFTED = {
    "step beyond the run": (dict(step=10**6), ["step", "outside"]),
    "another lr": (dict(meta_edit=lambda m: {**m, "config": small(lr=0.5).to_dict()}), ["different config"]),
    "NaN parameters": (dict(edit=lambda t: {**t, "params.W": torch.full_like(t["params.W"], float("nan"))}), ["NaN"]),
    "wrong shape": (dict(edit=lambda t: {**t, "params.W": torch.zeros(2, 5, 3)}), ["params.W", "shape"]),
    "float64 state": (dict(edit=lambda t: {**t, "exp_avg.W": t["exp_avg.W"].double()}), ["float64"]),
    "missing Adam state": (dict(edit=lambda t: {k: v for k, v in t.items() if not k.startswith("exp_avg_sq")}),
                           ["missing"]),
    "step tensor disagrees": (dict(edit=lambda t: {**t, "step": torch.tensor(3)}), ["disagrees"]),
    "logs of another step": (dict(meta_edit=lambda m: {**m, "loss_steps": [10, 20, 30]}), ["loss_steps"]),
    "metadata not an object": (dict(meta_edit=lambda m: [1, 2]), ["not a superposition checkpoint"]),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_checkpoints_are_refused_before_training(tmp_path, case):
    kwargs, words = CRAFTED[case]
    config = small()
    _checkpoint(tmp_path / "r", config, **kwargs)
    with pytest.raises(sp.RunDirError) as info:
        sp.train(config, compile=False, progress=False, out=tmp_path / "r")
    assert "checkpoint.safetensors" in str(info.value) and all(w in str(info.value) for w in words), str(info.value)
    assert not rundir.is_complete(tmp_path / "r")


def test_an_honest_checkpoint_still_resumes(tmp_path):
    config = small()
    _checkpoint(tmp_path / "r", config)
    run = sp.train(config, compile=False, progress=False, out=tmp_path / "r")
    assert run.metrics.loss_steps == [10, 20] and run.metrics.loss_curve[0][0] == pytest.approx(0.1)


def test_checkpoint_check_agrees_with_restore(tmp_path):
    config = small()
    _checkpoint(tmp_path / "r", config)
    state = init_state(config, torch.device("cpu"))
    rundir.resume(tmp_path / "r", state, config, restore_state)
    assert int(state.step) == 10


# --- divergence -------------------------------------------------------------------------------


def test_divergence_stops_with_a_clear_line_and_writes_no_nan(tmp_path, capsys):
    out = tmp_path / "deep" / "r"
    line = refused([*TRAIN, "--lr", "1e6", "--out", out], capsys, "diverged", "train.lr")
    assert "nothing was saved" in line
    assert not (tmp_path / "deep").exists()  # nothing left to block the corrected command
    assert cli([*TRAIN, "--out", out], capsys)[0] == 0


def test_a_diverged_restart_is_dropped_and_written_as_null(tmp_path, monkeypatch):
    """Best-of-N keeps a finite restart; the diverged one's loss is JSON null, never NaN."""
    import importlib

    train_mod = importlib.import_module("superposition.train")

    real = train_mod.estimate_loss

    def one_restart_nan(config, params, **kwargs):
        estimate = real(config, params, **kwargs)
        estimate.mean[1] = estimate.se[1] = float("nan")
        return estimate

    monkeypatch.setattr(train_mod, "estimate_loss", one_restart_nan)
    config = sp.RunConfig(train=sp.TrainConfig(steps=10, batch_size=16, log_every=5, restarts=2, eval_batches=1))
    sp.train(config, compile=False, progress=False, out=tmp_path / "r")
    text = (tmp_path / "r" / "metrics.json").read_text()
    assert "NaN" not in text and json.loads(text)["restart_losses"][0][1] is None
    assert sp.load_run(tmp_path / "r").metrics.restart[0] == 0


def test_json_writes_refuse_nan(tmp_path):
    with pytest.raises(ValueError):
        rundir.atomic_write_json(tmp_path / "x.json", {"a": float("nan")})
    assert not list(tmp_path.iterdir())


# --- determinism ------------------------------------------------------------------------------


def test_equal_runs_in_two_processes_write_byte_equal_files(tmp_path):
    """safetensors writes metadata in hash order, which changes per process (PYTHONHASHSEED and
    Rust's RandomState); the files must not."""
    args = [*TRAIN, "--seed", "5"]
    procs = []
    for k in range(2):
        e = env()
        e["PYTHONHASHSEED"] = str(k + 1)
        procs.append(subprocess.Popen([sys.executable, "-m", "superposition.cli", *args, "--out", tmp_path / f"r{k}"],
                                      env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    for name in ("weights.safetensors", "config.json"):
        assert (tmp_path / "r0" / name).read_bytes() == (tmp_path / "r1" / name).read_bytes(), name


def test_tensor_files_have_sorted_metadata():
    data = rundir.tensor_file_bytes({"b": torch.zeros(2), "W": torch.ones(2, 3)},
                                    {"z": "1", "a": "2", "m": "3"})
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    assert list(header["__metadata__"]) == ["a", "m", "z"]
    from safetensors.torch import load

    assert torch.equal(load(data)["W"], torch.ones(2, 3))


def test_optional_per_instance_metrics_are_checked_when_present(copy):
    from superposition.runcheck import check_metrics

    raw = json.loads((copy / "metrics.json").read_text())
    config = sp.load_run(copy).config
    check_metrics({**raw, "test_loss": [0.1, None]}, config, copy / "metrics.json")
    with pytest.raises(sp.RunDirError, match="test_loss"):
        check_metrics({**raw, "test_loss": [0.1]}, config, copy / "metrics.json")
    with pytest.raises(sp.RunDirError, match="final_loss_se"):
        check_metrics({**raw, "final_loss_se": ["x", 1]}, config, copy / "metrics.json")
