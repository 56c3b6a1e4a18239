"""Hardening probes of sweeps (spec parsing, sizes, devices, tampered sweep directories) and of the
report (nothing outside its directory is embedded; tampered experiment files are named)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch

import superposition as sp
from superposition.sweep import Axis, SweepSpec, run_sweep

from .hardening import TRAIN, cli, refused

BASE = {"model": {"n_features": 3, "n_hidden": 2},
        "train": {"steps": 10, "batch_size": 16, "log_every": 5, "eval_batches": 1}}
SWEEP = ["--workers", "1", "--compile", "off", "--quiet"]


def _spec(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


# --- spec parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, words", [
    ("name: s\naxes: [\n  - field: p\n", ["not valid YAML", "line"]),
    ("name: s\nbase: !!python/object/apply:os.system ['echo hacked']\n", ["not valid YAML", "python"]),
    ("name: s\naxes:\n  - {field: p, linear: [a, 1, 3]}\n", ["linear", "'a'", "finite number"]),
    ("name: s\naxes:\n  - {field: p, log: [1, 0.1, 2.5]}\n", ["num", "2.5", "integer"]),
    ("name: s\naxes:\n  - {field: p, linear: [0.1, 1]}\n", ["linear", "[start, stop, num]"]),
    ("name: s\naxes:\n  - {field: seed, range: [0.5, 3]}\n", ["range", "integers"]),
    ("name: s\naxes:\n  - {field: seed, range: [0, 10, 0]}\n", ["range", "step"]),
    ("name: s\naxes:\n  - {field: p, linear: [0.1, 1, 1000000000]}\n", ["1,000,000,000", "memory"]),
    ("name: s\naxes:\n  - {field: seed, range: [1000000000]}\n", ["memory"]),
    ("name: s\naxes:\n  - {field: p, values: [x, y]}\n", ["feature_probability", "'x'"]),
    ("- just\n- a list\n", ["object"]),
])
def test_bad_yaml_specs_are_one_line(tmp_path, capsys, text, words):
    spec = _spec(tmp_path, text)
    line = refused(["sweep", spec, "--out", tmp_path / "s", *SWEEP], capsys, *words)
    assert str(spec) in line
    assert not (tmp_path / "s").exists()


def test_grids_too_large_for_memory_are_refused_before_they_are_built(tmp_path, capsys):
    axes = [{"field": "p", "log": [1, 0.01, 100_000]}, {"field": "importance[1]", "log": [0.1, 10, 100_000]}]
    spec = _spec(tmp_path, json.dumps({"name": "big", "base": BASE, "axes": axes}), "spec.json")
    refused(["sweep", spec, "--out", tmp_path / "s", *SWEEP], capsys, "10,000,000,000 grid points", "memory")


@pytest.mark.parametrize("content, words", [
    (b'{"name": "s", "axes": [', ["not valid JSON"]),
    (b"\xff\xfe", ["not UTF-8"]),
    (b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"]),
])
def test_bad_json_specs(tmp_path, capsys, content, words):
    spec = _spec(tmp_path, content, "spec.json")
    refused(["sweep", spec, "--out", tmp_path / "s", *SWEEP], capsys, str(spec), *words)


def test_python_axis_ranges_check_their_arguments():
    with pytest.raises(sp.ConfigError, match="finite number"):
        Axis.linear("p", "a", 1, 3)
    with pytest.raises(sp.ConfigError, match="integers"):
        Axis.range("seed", 2.5)
    with pytest.raises(sp.ConfigError, match="memory"):
        Axis.range("seed", 10**12)
    with pytest.raises(sp.ConfigError, match="memory"):
        Axis.range("seed", 2**70)  # len(range) itself would overflow


def test_sweep_on_cuda_without_cuda(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    spec = _spec(tmp_path, json.dumps({"name": "s", "base": BASE, "axes": [{"field": "p", "values": [1, .5]}]}),
                 "spec.json")
    refused(["sweep", spec, "--out", tmp_path / "s", "--device", "cuda", "--quiet"], capsys, "CUDA")
    assert not (tmp_path / "s").exists()


# --- tampered sweep directories ---------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    spec = SweepSpec.from_dict({"name": "t", "base": BASE, "axes": [{"field": "p", "values": [1.0, 0.5]}],
                                "chunk_size": 1})
    run_sweep(spec, out, workers=1, compile=False, progress=False)
    return out


@pytest.fixture
def sweep_copy(swept, tmp_path):
    shutil.copytree(swept, tmp_path / "s")
    return tmp_path / "s"


def _rewrite(path, edit):
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


SWEEP_TAMPER = {
    "index garbage": (lambda d: (d / "index.parquet").write_bytes(b"PAR1 not really"), ["index.parquet", "unreadable"]),
    "index without a column": (lambda d: pd.read_parquet(d / "index.parquet").drop(columns=["final_loss"])
                               .to_parquet(d / "index.parquet"), ["index.parquet", "final_loss"]),
    "index chunk path out": (lambda d: pd.read_parquet(d / "index.parquet").assign(chunk="../../etc")
                             .to_parquet(d / "index.parquet"), ["index.parquet", "chunk"]),
    "sweep.json truncated": (lambda d: (d / "sweep.json").write_text('{"format": "superposition-sweep"'),
                             ["sweep.json", "unreadable"]),
    "sweep.json chunk_size string": (lambda d: _rewrite(d / "sweep.json", lambda r: {**r, "chunk_size": "big"}),
                                     ["sweep.json", "chunk_size"]),
    "sweep.json spec invalid": (lambda d: _rewrite(d / "sweep.json", lambda r: {**r, "spec": {**r["spec"],
                                                                                           "axes": 3}}),
                                ["sweep.json", "axes"]),
    "models.json rows wrong": (lambda d: ((d / "index.parquet").unlink(),
                                          _rewrite(d / "chunks/c0000/models.json", lambda r: {**r, "rows": [1]})),
                               ["models.json", "rows[0]"]),
    "models.json loss string": (lambda d: ((d / "index.parquet").unlink(), _rewrite(
        d / "chunks/c0000/models.json",
        lambda r: {**r, "rows": [{**r["rows"][0], "final_loss": "low"}]})), ["models.json", "final_loss"]),
    "chunk weights missing": (lambda d: ((d / "index.parquet").unlink(), (d / "chunks/c0000/weights.safetensors")
                                         .unlink()), None),
}


@pytest.mark.parametrize("case", sorted(SWEEP_TAMPER))
def test_tampered_sweep_directories_are_named(sweep_copy, capsys, case):
    tamper, words = SWEEP_TAMPER[case]
    tamper(sweep_copy)
    if words is None:  # a chunk whose run lost its weights is not done: show reports the rest
        code, text, err = cli(["show", sweep_copy], capsys)
        assert code == 0 and "chunks 1/2 done" in text, err
        return
    refused(["show", sweep_copy], capsys, *words)


def test_an_untampered_sweep_shows(sweep_copy, capsys):
    code, text, _ = cli(["show", sweep_copy], capsys)
    assert code == 0 and "chunks 2/2 done" in text


# --- the report -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory):
    """A minimal recipe directory: one run, one PNG figure, claims, experiment.json."""
    out = tmp_path_factory.mktemp("recipe") / "exp"
    sp.train(sp.RunConfig(train=sp.TrainConfig(steps=10, batch_size=16, log_every=5, eval_batches=1)),
             compile=False, progress=False, out=out / "run")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    fig.savefig(out / "fig.png")
    plt.close(fig)
    (out / "claims.json").write_text(json.dumps([{"section": "2", "claim": "c", "expected": "e", "measured": "m",
                                                  "held": True}]))
    (out / "experiment.json").write_text(json.dumps({"experiment": "mine", "section": "2", "summary": "s",
                                                     "quick": True, "runs": {"run": "run"}, "figures": ["fig.png"],
                                                     "seconds": 1.0}))
    return out


@pytest.fixture
def exp(recipe_dir, tmp_path):
    shutil.copytree(recipe_dir, tmp_path / "exp")
    return tmp_path / "exp"


def _meta(path, **changes):
    _rewrite(path / "experiment.json", lambda r: {**r, **changes})


def test_the_report_of_an_honest_recipe_dir(exp, capsys):
    code, text, err = cli(["report", exp], capsys)
    assert code == 0, err
    assert "data:image/png;base64," in (exp / "report.html").read_text()


@pytest.mark.parametrize("figures, words", [
    (["/etc/passwd"], ["/etc/passwd", "relative"]),
    (["../../../../etc/passwd"], ["outside"]),
    (["run/config.json"], ["not a .png"]),
    (["fake.png"], ["not a PNG"]),
    (["link.png"], ["outside"]),
])
def test_the_report_embeds_nothing_from_outside_its_directory(exp, tmp_path, capsys, figures, words):
    (exp / "fake.png").write_text("root:x:0:0")
    secret = tmp_path / "secret.png"
    shutil.copy(exp / "fig.png", secret)
    (exp / "link.png").symlink_to(secret)
    _meta(exp, figures=figures)
    refused(["report", exp], capsys, "experiment.json" if "not a PNG" not in words else "fake.png", *words)
    assert not (exp / "report.html").exists()


@pytest.mark.parametrize("change, words", [
    (dict(runs={"run": "/tmp"}), ["runs", "relative"]),
    (dict(runs={"run": "../../.."}), ["outside"]),
    (dict(runs=["run"]), ["runs", "wrong type"]),
    (dict(figures="fig.png"), ["figures", "wrong type"]),
    (dict(quick="yes"), ["quick"]),
    (dict(seconds="long"), ["seconds"]),
])
def test_tampered_experiment_json(exp, capsys, change, words):
    _meta(exp, **change)
    refused(["report", exp], capsys, "experiment.json", *words)


@pytest.mark.parametrize("claims, words", [
    ({"a": 1}, ["claims.json", "list"]),
    ([{"claim": 3}], ["claims.json", "claim [0]"]),
    ([{"section": "2", "claim": "c", "expected": "e", "measured": "m", "held": "yes"}], ["claims.json"]),
])
def test_tampered_claims_json(exp, capsys, claims, words):
    (exp / "claims.json").write_text(json.dumps(claims))
    refused(["report", exp], capsys, *words)


def test_tampered_scorecard_json(exp, tmp_path, capsys):
    root = tmp_path / "repro"
    root.mkdir()
    shutil.move(exp, root / "exp")
    (root / "scorecard.json").write_text(json.dumps({"quick": True, "rows": "many", "experiments": []}))
    refused(["report", root], capsys, "scorecard.json", "rows")


def test_runs_symlinked_out_of_a_folder_of_runs_are_not_reported(tmp_path, capsys):
    outside = tmp_path / "outside"
    assert cli([*TRAIN, "--out", outside / "r"], capsys)[0] == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "link").symlink_to(outside / "r")
    refused(["report", tmp_path / "mine"], capsys, "no experiment or run")


def test_scorecard_repr_and_html():
    from superposition.scorecard import Scorecard, ScoreRow

    card = Scorecard(True, [ScoreRow("intro", "1", "a <claim>", "x", "y", "held"),
                            ScoreRow("intro", "1", "b", "x", "y", "not held")])
    assert repr(card) == "<Scorecard (quick): 1/2 claims held, 0 experiments>"
    html = card._repr_html_()
    assert html.count("<tr>") == 3 and "a &lt;claim&gt;" in html
    assert Scorecard.from_dict(card.to_dict()) == card
