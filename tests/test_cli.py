"""The CLI end to end, in-process (fast) and once through the installed console script."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import superposition as sp
from superposition.cli import main

TRAIN = ["train", "--features", "5", "--hidden", "2", "--steps", "30", "--batch", "64", "--log-every", "10",
         "--compile", "off", "--quiet"]


def run_cli(args, capsys):
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_show(tmp_path, capsys):
    out = tmp_path / "r"
    code, text, _ = run_cli([*TRAIN, "-p", "1", "0.1", "--importance-decay", "0.9", "--restarts", "2",
                             "--out", str(out)], capsys)
    assert code == 0, text
    assert "trained 4 instances (2 configurations × 2 restarts)" in text
    run = sp.load_run(out)
    assert run.config.data.feature_probability == (1.0, 0.1) and run.n_instances == 2
    code, text, _ = run_cli(["show", str(out)], capsys)
    assert code == 0 and "represented" in text and "90.0%" in text
    code, text, _ = run_cli(["show", str(out), "--json"], capsys)
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["p"] for r in rows] == [1.0, 0.1] and all(0 <= r["represented"] <= 5 for r in rows)


def test_p_grid_and_config_file(tmp_path, capsys):
    out = tmp_path / "g"
    assert run_cli([*TRAIN, "--p-grid", "1", "0.01", "3", "--kind", "linear", "--out", str(out)], capsys)[0] == 0
    cfg = sp.load_run(out).config
    assert cfg.data.feature_probability == pytest.approx((1.0, 0.1, 0.01)) and cfg.model.kind == "linear"
    again = tmp_path / "again"
    assert run_cli(["train", "--config", str(out / "config.json"), "--steps", "20", "--compile", "off", "--quiet",
                    "--out", str(again)], capsys)[0] == 0
    assert sp.load_run(again).config.model.kind == "linear" and sp.load_run(again).config.train.steps == 20


def test_train_composes_parts_from_flags(tmp_path, capsys):
    out = tmp_path / "r"
    code, text, err = run_cli([*TRAIN, "--hidden-activation", "gelu", "--hidden-bias", "--no-tied",
                               "--optimizer", "sgd",
                               "--momentum", "0.9", "--nesterov", "--lr", "0.05", "--distribution", "exactly_k",
                               "--n-active", "1", "--out", str(out)], capsys)
    assert code == 0, err
    config = sp.load_run(out).config
    assert config.model.parts.hidden_activation == "gelu" and config.model.hidden_bias and not config.model.parts.tied
    assert config.train.nesterov and config.data.n_active == 1
    code, text, _ = run_cli(["show", str(out)], capsys)
    assert "relu_output (tied=False, hidden_bias=True, hidden_activation=gelu)" in text


def test_abs_mlp_defaults_to_signed_inputs(tmp_path, capsys):
    out = tmp_path / "abs"
    assert run_cli([*TRAIN, "--kind", "abs_mlp", "--hidden", "6", "--out", str(out)], capsys)[0] == 0
    assert sp.load_run(out).config.data.signed


@pytest.mark.parametrize(
    "args, words",
    [
        (["-p", "0"], ["data.feature_probability[0]", "0", "(0, 1]"]),
        (["-p", "1.5"], ["data.feature_probability[0]", "1.5", "(0, 1]"]),
        (["--features", "0"], ["model.n_features", "0", ">= 1"]),
        (["--hidden", "0"], ["model.n_hidden", "0", ">= 1"]),
        (["--steps", "0"], ["train.steps", "0", ">= 1"]),
        (["--importance", "1", "0.5"], ["data.importance", "one value per feature"]),
        (["--kind", "cnn"], ["--kind", "cnn", "linear"]),
        (["--steps", "many"], ["--steps", "many"]),
        (["--p-grid", "1", "0.01", "2.5"], ["--p-grid", "2.5", "integer"]),
        (["--device", "tpu"], ["device", "tpu", "cpu"]),
        (["--hidden-activation", "swish2"], ["model.hidden_activation", "swish2", "gelu"]),
        (["--optimizer", "RMSprop", "--optimizer-options", "alphaa=0.9"], ["optimizer_options.alphaa", "alpha"]),
        (["--optimizer-options", "alpha"], ["--optimizer-options", "KEY=VALUE"]),
        (["--optimizer", "Adamm"], ["train.optimizer", "Adamm", "torch.optim"]),
        (["--custom", "tests.engine_models:WrongShape"], ["model.custom", "output [3, 5]"]),
        (["--custom", "nowhere_module:Model"], ["model.custom", "nowhere_module", "cannot be imported"]),
        (["--target", "cube"], ["train.target", "cube", "x_plus_relu"]),
        (["--distribution", "exactly_k"], ["data.n_active", "required"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    code, _, err = run_cli([*TRAIN, "--out", str(tmp_path / "x"), *args], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("superposition: error:"), err
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "x" / "metrics.json").exists()


@pytest.mark.parametrize("setup, words", [
    (lambda d: None, ["no such run directory"]),
    (lambda d: d.mkdir(), ["not a superposition run directory"]),
    (lambda d: (d.mkdir(), (d / "config.json").write_text("[1, 2")), ["unreadable"]),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"model": {"kind": "cnn"}}')), ["model.kind", "cnn"]),
])
def test_show_refuses_foreign_directories(tmp_path, capsys, setup, words):
    target = tmp_path / "d"
    setup(target)
    code, _, err = run_cli(["show", str(target)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert all(w in err for w in words), err


def test_show_on_an_experiment_directory_lists_its_runs(tmp_path, capsys):
    assert run_cli([*TRAIN, "--out", str(tmp_path / "exp" / "a")], capsys)[0] == 0
    code, _, err = run_cli(["show", str(tmp_path / "exp")], capsys)
    assert code == 2 and "show one of" in err and str(tmp_path / "exp" / "a") in err


def test_finished_run_is_not_overwritten_silently(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli([*TRAIN, "--out", str(out)], capsys)[0] == 0
    before = (out / "weights.safetensors").read_bytes()
    code, _, err = run_cli([*TRAIN, "--seed", "3", "--out", str(out)], capsys)
    assert code == 2 and "--overwrite" in err
    assert (out / "weights.safetensors").read_bytes() == before


def test_unknown_experiment(capsys):
    code, _, err = run_cli(["run", "nope"], capsys)
    assert code == 2 and "intro" in err and "basic" in err


def test_console_script_is_installed(tmp_path):
    exe = shutil.which("superposition", path=os.path.dirname(sys.executable)) or shutil.which("superposition")
    assert exe, "the console script `superposition` is not on PATH; install the package"
    result = subprocess.run([exe, *TRAIN, "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    bad = subprocess.run([exe, "show", str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_python_dash_m_is_the_same_command_line(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "superposition", "--version"], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("superposition ")
    bad = subprocess.run([sys.executable, "-m", "superposition", "show", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "missing" in bad.stderr


@pytest.mark.parametrize("fast_exit", ["1", "0"])
def test_the_command_line_exits_fast_with_its_output_flushed(tmp_path, fast_exit):
    """`cli.entry` skips the interpreter's teardown: the exit status, a redirected stdout (block-buffered)
    and the atexit handlers must all survive it; `SUPERPOSITION_FAST_EXIT=0` exits as usual."""
    out = tmp_path / "stdout.txt"
    code = ("import atexit, sys; atexit.register(lambda: print('atexit ran', file=sys.stderr)); "
            "sys.argv = ['superposition', *sys.argv[1:]]; from superposition.cli import entry; entry()")
    env = {**os.environ, "SUPERPOSITION_FAST_EXIT": fast_exit}
    with out.open("w") as stdout:
        done = subprocess.run([sys.executable, "-c", code, *TRAIN, "--out", str(tmp_path / "r")], stdout=stdout,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stderr.endswith("atexit ran\n"), done.stderr
    text = out.read_text()
    assert f"saved {tmp_path / 'r'}" in text and text.endswith("\n") and text.count("\n") >= 5, text
    printed = subprocess.run([sys.executable, "-c", code, "show", str(tmp_path / "r")], capture_output=True, text=True,
                             env=env, timeout=60)
    assert printed.returncode == 0 and printed.stdout.count("\n") >= 3 and printed.stdout.endswith("\n")
    bad = subprocess.run([sys.executable, "-c", code, "show", str(tmp_path / "missing")], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "missing" in bad.stderr


def test_kill_9_then_the_same_command_resumes_to_the_same_weights(tmp_path):
    """A real SIGKILL mid-run: the directory never looks finished, and rerunning completes it exactly."""
    import signal
    import time

    import torch

    exe = shutil.which("superposition", path=os.path.dirname(sys.executable)) or shutil.which("superposition")
    out = tmp_path / "r"
    cmd = [exe, "train", "-p", "1", "0.1", "--steps", "4000", "--batch", "256", "--compile", "off", "--quiet",
           "--checkpoint-every", "200", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (out / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists() and (out / "checkpoint.safetensors").exists()
    assert not list(out.glob("*.tmp")) or all(p.name.startswith(".") for p in out.glob("*.tmp"))
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    reference = sp.train(sp.load_run(out).config, compile=False, progress=False)
    torch.testing.assert_close(sp.load_run(out).W, reference.W, rtol=0, atol=0)
