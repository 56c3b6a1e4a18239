"""`reproduce`: scorecard, failure isolation, reuse on a second run, and the HTML report."""

import json
import re

import pytest

from superposition import cli
from superposition.report import build_report
from superposition.reproduce import read_scorecard, select_recipes
from tests.reproduction import tiny_reproduction


@pytest.fixture(scope="module")
def reproduction(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    return out, tiny_reproduction(out)


def test_scorecard_has_every_claim_and_isolates_a_failing_experiment(reproduction):
    out, card = reproduction
    assert [e.name for e in card.experiments] == ["intro", "basic", "broken"]
    assert [e.status for e in card.experiments] == ["done", "done", "error"]
    assert len(card.rows) == 4 + 6 + 1 and card.rows[-1].status == "error"
    assert "deliberate failure" in card.rows[-1].measured
    assert "RuntimeError: deliberate failure" in (out / "broken" / "error.txt").read_text()
    saved = read_scorecard(out)
    assert saved is not None and saved.rows == card.rows
    md = (out / "scorecard.md").read_text()
    assert md.count("\n| ") == 1 + len(card.rows) and "⚠️ error" in md
    assert {p.name for p in (out / "intro").glob("*.png")} == {"intro.png", "intro_grid.png"}


def test_a_second_run_reuses_finished_experiments(reproduction):
    out, card = reproduction
    weights = out / "basic" / "linear" / "weights.safetensors"
    before = weights.stat().st_mtime_ns
    again = tiny_reproduction(out, report=False)
    assert weights.stat().st_mtime_ns == before
    assert json.loads((out / "basic" / "experiment.json").read_text())["reused"] == ["linear", "relu_output"]
    assert again.rows == card.rows


def test_only_adds_to_the_scorecard_instead_of_replacing_it(reproduction, tmp_path):
    import shutil

    out, card = reproduction
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    again = tiny_reproduction(copy, only=["basic"], report=False)  # registry order, intro and broken kept
    assert [e.name for e in again.experiments] == ["intro", "basic", "broken"] and again.rows == card.rows
    assert read_scorecard(copy).rows == card.rows
    (copy / "scorecard.json").write_text("{damaged")
    assert [e.name for e in tiny_reproduction(copy, only=["basic"], report=False).experiments] == ["basic"]


def test_report_is_self_contained_with_sections_claims_figures_and_runs(reproduction):
    out, card = reproduction
    text = (out / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"http|<img[^>]+src=\"http", text)
    assert "Plotly.newPlot" in text and text.count('class="js-plotly-plot"') == 0  # plots are drawn at load
    assert f"{card.n_held}/{len(card.rows)} claims held, 1 experiment(s) failed" in text
    for section in ("1 Introduction", "3 Demonstrating superposition", "9 Broken on purpose"):
        assert f">{section}</h2>" in text
    assert len(re.findall(r"<img alt=\"[^\"]+\" src=\"data:image/png;base64,", text)) == 3  # 2 intro, 1 basic
    assert "RuntimeError: deliberate failure" in text
    assert "&quot;steps&quot;: 100" in text  # each run's config (escaped JSON) is in the report


def test_report_of_plain_runs_and_of_one_experiment(reproduction, tmp_path):
    out, _ = reproduction
    one = build_report(out / "basic", tmp_path / "basic.html").read_text()
    assert ">3 Demonstrating superposition</h2>" in one and "fig-basic-basic-slider" in one
    runs = build_report(out / "intro" / "relu_output", tmp_path / "run.html").read_text()
    assert ">Runs</h2>" in runs and "geometry" in runs
    with pytest.raises(cli.RunDirError, match="no experiment or run"):
        build_report(tmp_path, tmp_path / "none.html")


def test_cli_reproduce_rejects_unknown_experiments(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["reproduce", "--only", "intro,nonsense", "--out", "/tmp/never"])
    assert exit_.value.code == 2
    assert "experiment = 'nonsense' is invalid" in capsys.readouterr().err
    assert select_recipes(["basic", "intro"]) == ["intro", "basic"]  # registry order


def test_recipes_needing_the_same_config_share_one_run(tmp_path):
    from dataclasses import replace

    from superposition.experiments import run_recipe
    from tests.reproduction import TINY

    shared = {}
    first = run_recipe(TINY["intro"], tmp_path / "intro", quick=True, compile=False, progress=False, shared=shared)
    twin = replace(TINY["intro"], name="twin")
    second = run_recipe(twin, tmp_path / "twin", quick=True, compile=False, progress=False, shared=shared)
    assert second.reused == ["relu_output"] and not (tmp_path / "twin" / "relu_output").exists()
    assert json.loads((tmp_path / "twin" / "experiment.json").read_text())["runs"] == {
        "relu_output": "../intro/relu_output"}
    assert second.claims == first.claims
    assert "twin" in build_report(tmp_path / "twin", tmp_path / "twin.html").read_text()


def test_recipes_that_train_the_same_config_share_a_worker():
    from superposition.reproduce import _sharing_groups

    groups = _sharing_groups(["intro", "basic", "loss-decomposition", "uniform", "geometry", "l1-hidden"], quick=True)
    assert ["basic", "loss-decomposition"] in groups and ["uniform", "geometry"] in groups
    assert sorted(n for g in groups for n in g) == sorted(["intro", "basic", "loss-decomposition", "uniform",
                                                           "geometry", "l1-hidden"])


def test_the_costliest_groups_start_first():
    from superposition.experiments import get_recipe
    from superposition.reproduce import _sharing_groups

    groups = _sharing_groups(["intro", "confused-feature", "uniform", "geometry", "sae-recovery"], quick=False)
    assert groups[0] == ["sae-recovery"] and groups[-1] == ["confused-feature"]  # SAE work counts: analysis_work
    assert groups[1] == ["uniform", "geometry"]
    assert get_recipe("uniform").work(False) > 50 * get_recipe("intro").work(False) > 0


def test_parallel_experiments_give_the_scorecard_of_a_serial_reproduction(tmp_path):
    from superposition.reproduce import reproduce

    names = ["confused-feature", "compression"]  # two of the cheapest quick recipes (5-8 s each)
    serial = reproduce(tmp_path / "serial", quick=True, only=names, compile=False, progress=False, report=False, jobs=1)
    parallel = reproduce(tmp_path / "parallel", quick=True, only=names, compile=False, progress=False, report=False,
                         jobs=2)
    assert [e.name for e in parallel.experiments] == names  # registry order, whichever finished first
    assert [(r.claim, r.measured, r.status) for r in parallel.rows] == [(r.claim, r.measured, r.status)
                                                                        for r in serial.rows]
