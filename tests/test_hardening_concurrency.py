"""Hardening probes with real concurrent processes: two trainings on one run directory, two sweeps
on one sweep directory. The loser gets a clear one-line refusal (or finds the work done), never a
traceback, and the counts each process prints are what it did."""

from __future__ import annotations

import json
import re

import superposition as sp
from superposition import run as rundir
from superposition.sweep.driver import _sweep_lock

from .hardening import TRAIN, spawn

LINE = re.compile(r"^superposition: error: .*$")


def _finish(procs, timeout=240):
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        results.append((p.returncode, out, err))
    return results


def _clean(code, err):
    assert "Traceback" not in err, err
    if code != 0:
        lines = [x for x in err.strip().splitlines() if x]
        assert code == 2 and len(lines) == 1 and LINE.match(lines[0]), err


def test_a_run_directory_in_use_is_refused(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    with rundir.locked(out):  # another process training into it
        code, _, err = _finish([spawn([*TRAIN, "--out", out])])[0]
    assert code == 2 and "in use" in err and str(out) in err
    _clean(code, err)
    assert not any(out.iterdir())


def test_two_trainings_racing_on_one_out(tmp_path):
    for pair in range(3):
        out = tmp_path / f"r{pair}"
        results = _finish([spawn([*TRAIN, "--out", out]) for _ in range(2)])
        for code, _, err in results:
            _clean(code, err)
        assert any(code == 0 for code, _, _ in results)
        for code, _, err in results:
            if code:
                assert "in use" in err or "already holds a finished run" in err, err
        sp.load_run(out)  # whoever won, the directory holds one complete, valid run


def _sweep_spec(tmp_path):
    spec = {"name": "race", "chunk_size": 1,
            "base": {"model": {"n_features": 3, "n_hidden": 2},
                     "train": {"steps": 10, "batch_size": 16, "log_every": 5, "eval_batches": 1}},
            "axes": [{"field": "p", "values": [1.0, 0.5, 0.2]}]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


SWEEP = ["--workers", "1", "--compile", "off", "--quiet"]


def test_a_sweep_directory_in_use_is_refused(tmp_path):
    out = tmp_path / "s"
    with _sweep_lock(out):
        code, _, err = _finish([spawn(["sweep", _sweep_spec(tmp_path), "--out", out, *SWEEP])])[0]
    assert code == 2 and "in use" in err
    _clean(code, err)


def test_two_sweeps_racing_report_what_each_did(tmp_path):
    out = tmp_path / "s"
    spec = _sweep_spec(tmp_path)
    results = _finish([spawn(["sweep", spec, "--out", out, *SWEEP]) for _ in range(2)])
    trained = 0
    for code, text, err in results:
        _clean(code, err)
        if code == 0:
            found = re.search(r"\((\d+) trained now, (\d+) done before\)", text)
            assert found, text
            trained += int(found.group(1))
        else:
            assert "in use" in err
    assert trained == 3  # every chunk trained exactly once, by one of them
    assert len(sp.load_sweep(out)) == 3
