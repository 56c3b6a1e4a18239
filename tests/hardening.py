"""Shared helpers of the hardening probes (tests/test_hardening_*.py): run the CLI in-process or as
a real process, and check that a refusal is one clean line with exit status 2."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from superposition.cli import main

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["train", "--features", "5", "--hidden", "2", "--steps", "20", "--batch", "16", "--log-every", "10",
         "--compile", "off", "--quiet"]


def cli(args, capsys) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(args, capsys, *words: str) -> str:
    """The CLI refuses `args` with exit 2 and one line naming `words`; returns that line."""
    code, out, err = cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("superposition: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + e.get("PYTHONPATH", "")
    return e


def spawn(args, **kw) -> subprocess.Popen:
    """The CLI as a real process."""
    return subprocess.Popen([sys.executable, "-m", "superposition.cli", *map(str, args)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def run_process(args, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "superposition.cli", *map(str, args)], env=env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


def can_mount() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A real tmpfs mounted at `path` (root on Linux only; the test is skipped elsewhere)."""
    if not can_mount():
        pytest.skip("needs root on Linux to mount a filesystem")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
