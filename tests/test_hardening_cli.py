"""Hardening probes of the CLI: bad values, unusable output paths (files, read-only mounts,
immutable directories, a full disk), sizes that cannot fit, unparsable files. Each must end in one
line, ``superposition: error: ...``, exit status 2, and leave nothing behind that blocks the
corrected command."""

from __future__ import annotations

import json
import subprocess

import pytest

import superposition as sp
from superposition import guard

from .hardening import TRAIN, can_mount, cli, refused, run_process, tmpfs


def test_no_command_prints_the_usage_once(capsys):
    code, out, err = cli([], capsys)
    assert code == 2
    assert err.count("usage:") == 1 and "train" in err and "reproduce" in err
    assert "superposition: error: superposition:" not in err


def test_a_bad_command_has_a_single_prefix(capsys):
    line = refused(["frobnicate"], capsys, "frobnicate")
    assert line.count("superposition") == 1


@pytest.mark.parametrize("args, words", [
    (["--seed", str(2**64)], ["train.seed", "2**63"]),
    (["--seed", str(2**63)], ["train.seed", "2**63"]),
    (["--seed", "-1"], ["train.seed", ">= 0"]),
    (["--lr", "inf"], ["train.lr", "finite"]),
    (["--lr", "nan"], ["train.lr", "finite"]),
    (["--features", str(10**30)], ["model.n_features", "2**63"]),
])
def test_values_outside_the_supported_range(tmp_path, capsys, args, words):
    line = refused([*TRAIN, "--out", tmp_path / "r", *args], capsys, *words)
    assert "inf]" not in line
    assert not (tmp_path / "r").exists()


def test_the_largest_seed_is_accepted_and_differs_from_seed_0():
    big = sp.TrainConfig(seed=2**63 - 1)
    assert big.seed == 2**63 - 1
    from superposition.data import derive_seed

    assert derive_seed(big.seed, 0) != derive_seed(0, 0)


# --- output paths -----------------------------------------------------------------------------


def test_out_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    refused([*TRAIN, "--out", tmp_path / "f"], capsys, str(tmp_path / "f"), "not a directory")
    refused([*TRAIN, "--out", tmp_path / "f" / "r"], capsys, str(tmp_path / "f"), "is a file")
    assert (tmp_path / "f").read_text() == "mine"


def test_report_out_is_a_directory(tmp_path, capsys):
    assert cli([*TRAIN, "--out", tmp_path / "r"], capsys)[0] == 0
    (tmp_path / "html").mkdir()
    refused(["report", tmp_path / "r", "--out", tmp_path / "html"], capsys, str(tmp_path / "html"), "directory")


@pytest.mark.skipif(not can_mount(), reason="needs root on Linux to mount a filesystem")
def test_read_only_filesystem(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        refused([*TRAIN, "--out", ro / "r"], capsys, str(ro / "r"), "Read-only file system")
        refused(["sweep", _spec_file(tmp_path), "--out", ro / "s", "--quiet"], capsys, "Read-only file system")
        refused(["run", "intro", "--quick", "--out", ro / "e", "--quiet"], capsys, "Read-only file system")
        refused(["reproduce", "--quick", "--only", "intro", "--out", ro / "p", "--quiet"], capsys,
                "Read-only file system")
    assert cli([*TRAIN, "--out", tmp_path / "r"], capsys)[0] == 0
    with tmpfs(tmp_path / "ro2", "ro,size=1m") as ro:
        refused(["report", tmp_path / "r", "--out", ro / "report.html"], capsys, str(ro / "report.html"),
                "Read-only file system")


@pytest.mark.skipif(not can_mount(), reason="needs root on Linux (chattr)")
def test_immutable_directory(tmp_path, capsys):
    target = tmp_path / "imm"
    target.mkdir()
    if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        refused([*TRAIN, "--out", target], capsys, str(target), "Operation not permitted")
        refused([*TRAIN, "--out", target / "r"], capsys, str(target / "r"), "Operation not permitted")
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=False)
    assert not any(target.iterdir())


@pytest.mark.skipif(not can_mount(), reason="needs root on Linux to mount a filesystem")
def test_full_disk_says_what_could_not_be_written_and_leaves_nothing_half_written(tmp_path, capsys):
    with tmpfs(tmp_path / "full", "size=64k") as full:
        args = [*TRAIN, "--features", "200", "--hidden", "20", "--snapshot-every", "1", "--out", full / "r"]
        line = refused(args, capsys, str(full / "r"), "No space left on device", "cannot write")
        assert ".tmp" not in line
        assert not list((full / "r").glob(".*.tmp"))
        assert not (full / "r" / "metrics.json").exists()


# --- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--features", "1000000000"],
    ["--hidden", "1000000", "--batch", "1024"],  # the default batch
    ["--batch", "1000000000"],
    ["--restarts", "1000000000"],
])
def test_sizes_that_cannot_fit_are_refused_up_front_leaving_nothing(tmp_path, capsys, args):
    line = refused([*TRAIN, "--out", tmp_path / "r", *args], capsys, "memory", "free")
    assert "B of memory" in line
    assert not (tmp_path / "r").exists()
    assert cli([*TRAIN, "--out", tmp_path / "r"], capsys)[0] == 0  # the corrected command just works


def test_an_existing_directory_holding_only_an_untrained_config_is_reused(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text(sp.RunConfig(train=sp.TrainConfig(lr=1e6)).to_json())  # killed before training
    assert cli([*TRAIN, "--out", out], capsys)[0] == 0
    assert sp.load_run(out).config.train.lr == 1e-3


def test_memory_estimate_matches_the_refusal():
    config = sp.RunConfig(model=sp.ModelConfig(n_features=10**9, n_hidden=2))
    assert guard.run_bytes(config) > guard.available_memory()
    with pytest.raises(guard.MemoryEstimateError, match="free on cpu"):
        guard.check_run_memory(config)
    guard.check_run_memory(sp.RunConfig())  # the default run fits anywhere


# --- parse errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("content, words", [
    (b'{"model": {"n_features": 5', ["--config", "not valid JSON"]),
    (b"\xff\xfe{}", ["--config", "not UTF-8"]),
    (b"[" * 200_000 + b"]" * 200_000, ["--config", "nested too deeply"]),
    (b'{"train": {"lr": NaN}}', ["--config", "NaN"]),
    (b'[1, 2]', ["config must be a JSON object"]),
])
def test_bad_config_files(tmp_path, capsys, content, words):
    (tmp_path / "c.json").write_bytes(content)
    refused([*TRAIN, "--config", tmp_path / "c.json", "--out", tmp_path / "r"], capsys, *words)
    assert not (tmp_path / "r").exists()


def test_config_is_a_directory(tmp_path, capsys):
    refused([*TRAIN, "--config", tmp_path, "--out", tmp_path / "r"], capsys, "--config")


# --- small ones -------------------------------------------------------------------------------


def test_reproduce_only_with_no_names_is_refused(tmp_path, capsys):
    refused(["reproduce", "--only", ",", "--out", tmp_path / "p"], capsys, "--only")
    refused(["reproduce", "--only", " , ,", "--out", tmp_path / "p"], capsys, "--only")
    assert not (tmp_path / "p").exists()


def test_run_refuses_a_foreign_non_empty_out(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    refused(["run", "intro", "--quick", "--out", out, "--quiet"], capsys, str(out), "not empty")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_show_into_a_closed_pipe_ends_quietly(tmp_path, capsys):
    assert cli([*TRAIN, "-p", *["1"] * 60, "--out", tmp_path / "r"], capsys)[0] == 0
    shown = subprocess.run(f"{_python()} -m superposition.cli show {tmp_path / 'r'} | head -n 1",
                           shell=True, capture_output=True, text=True, env=_env(), timeout=120)
    assert "Traceback" not in shown.stderr and "BrokenPipeError" not in shown.stderr, shown.stderr
    assert shown.stdout.count("\n") == 1


def test_no_command_as_a_real_process():
    done = run_process([])
    assert done.returncode == 2 and done.stderr.count("usage:") == 1 and "Traceback" not in done.stderr


def _spec_file(tmp_path):
    spec = {"name": "s", "base": {"model": {"n_features": 3, "n_hidden": 2},
                                  "train": {"steps": 10, "batch_size": 16, "log_every": 5}},
            "axes": [{"field": "p", "values": [1.0, 0.5]}]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _python() -> str:
    import sys

    return sys.executable


def _env():
    from .hardening import env

    return env()


def test_more_probes(tmp_path, capsys):
    refused([*TRAIN, "--p-grid", "1", "0.1", "inf", "--out", tmp_path / "a"], capsys, "--p-grid", "inf")
    (tmp_path / "zero.json").symlink_to("/dev/zero")  # would never end if read
    refused([*TRAIN, "--config", tmp_path / "zero.json", "--out", tmp_path / "a"], capsys, "not a regular file")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "a.txt").write_text("x")
    refused(["reproduce", "--quick", "--only", "intro", "--out", tmp_path / "foreign", "--quiet"], capsys,
            "not a superposition reproduction directory")
    assert cli([*TRAIN, "--out", tmp_path / "r"], capsys)[0] == 0
    refused(["report", tmp_path / "r", "--out", tmp_path / "r" / "config.json" / "x.html"], capsys, "is a file")
    spec = _spec_file(tmp_path)
    refused(["sweep", spec, "--out", tmp_path / "s", "--workers", "100000", "--quiet"], capsys,
            "workers", "per CPU core")
    assert not (tmp_path / "a").exists() and not (tmp_path / "s").exists()


def test_a_diverging_sweep_leaves_nothing_behind(tmp_path, capsys):
    spec = json.loads(_spec_file(tmp_path).read_text())
    spec["base"]["train"]["lr"] = 1e6
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    refused(["sweep", tmp_path / "spec.json", "--out", tmp_path / "deep" / "s", "--workers", "1", "--compile", "off",
             "--quiet"], capsys, "diverged", "train.lr")
    assert not (tmp_path / "deep").exists()


def test_handle_errors_maps_user_and_machine_errors_to_one_line():
    from superposition.errors import handle_errors

    said = []

    def run(exc):
        def call():
            raise exc
        return handle_errors(call, said.append, lambda: said.append("interrupted"))

    assert run(MemoryError()) == 2 and "out of memory" in said[-1]
    assert run(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried 9 TB")) == 2
    assert "out of memory" in said[-1]
    assert run(PermissionError(13, "Permission denied", "/x/y")) == 2 and said[-1] == "/x/y: Permission denied"
    assert run(sp.ConfigError("a\nb")) == 2 and said[-1] == "a b"
    assert run(KeyboardInterrupt()) == 130 and said[-1] == "interrupted"
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run(ZeroDivisionError("bug"))
    with pytest.raises(RuntimeError):
        run(RuntimeError("an internal error"))


@pytest.mark.skipif(not can_mount(), reason="needs root on Linux to mount a filesystem")
def test_full_disk_for_report_and_sweep(tmp_path, capsys):
    assert cli([*TRAIN, "--out", tmp_path / "r"], capsys)[0] == 0
    with tmpfs(tmp_path / "full", "size=64k") as full:
        refused(["report", tmp_path / "r", "--out", full / "report.html"], capsys, str(full / "report.html"),
                "No space left on device")
        assert not list(full.iterdir())
        spec = json.loads(_spec_file(tmp_path).read_text())
        spec["base"]["model"] = {"n_features": 100, "n_hidden": 20}
        spec["base"]["train"]["snapshot_every"] = 1
        (tmp_path / "big.json").write_text(json.dumps(spec))
        refused(["sweep", tmp_path / "big.json", "--out", full / "s", "--workers", "1", "--compile", "off", "--quiet"],
                capsys, "No space left on device")
        assert not list(full.rglob("*.tmp"))
