"""Notebook-native objects: figures that show themselves as PNGs, a Run's short repr and HTML table,
and figure functions that take a Run or a run directory in place of its tensors."""

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import superposition as sp
from superposition import figures
from superposition.display import MAX_ROWS
from superposition.figures import interactive
from superposition.figures.style import Figure

from .conftest import small_config

PNG = b"\x89PNG\r\n\x1a\n"
FIGURES = Path(figures.__file__).parent


@pytest.fixture(scope="module")
def run():
    return sp.train(small_config(probs=(1.0, 0.3, 0.05), steps=60), progress=False)


def test_no_figure_module_builds_a_plain_matplotlib_figure():
    # Every static figure is our Figure (with _repr_png_): no module but style imports matplotlib's own.
    offenders = [p.name for p in FIGURES.glob("*.py")
                 if p.name != "style.py" and re.search(r"from matplotlib\.figure import|matplotlib\.figure\.Figure\(",
                                                       p.read_text())]
    assert offenders == []


def test_a_figure_renders_itself_as_png(run):
    fig = figures.intro_figure(run)
    assert isinstance(fig, Figure)
    assert fig._repr_png_().startswith(PNG)


def test_ipython_displays_a_figure_without_matplotlib_inline(run):
    shell = pytest.importorskip("IPython.core.interactiveshell").InteractiveShell.instance()
    data, _ = shell.display_formatter.format(figures.dimensionality_figure(run))
    assert data["image/png"].startswith(PNG)


def test_a_run_repr_is_one_short_line(run):
    text = repr(run)
    assert "\n" not in text and len(text) < 120
    assert text.startswith("Run(relu_output 5→2, 3 instances, 60 steps, loss ")


def test_a_run_html_table_has_a_row_per_instance_with_its_measures(run):
    html = run._repr_html_()
    assert html.count("<tr>") == 1 + 3
    d_star = sp.analysis.dimensions_per_feature(run.W)
    count = sp.analysis.represented_count(run.W)
    assert f"<td>{float(d_star[2]):.3f}</td>" in html and f"<td>{int(count[2])} / 5</td>" in html
    loss, error = run.metrics.final_loss[1], run.metrics.final_loss_se[1]
    assert f"<td>{loss:.4g} ± {error:.2g}</td>" in html and "<td>0.05</td>" in html
    assert "relu_output 5→2" in html and "60 steps" in html


def test_the_html_table_shows_the_loss_error_when_metrics_have_one(run, monkeypatch):
    monkeypatch.setattr(run.metrics, "final_loss_se", [0.001, 0.002, 0.003], raising=False)
    assert f"<td>{run.metrics.final_loss[2]:.4g} ± 0.003</td>" in run._repr_html_()


def test_a_long_run_table_is_cut_with_a_count(run):
    big = sp.train(small_config(probs=tuple(0.9 ** i for i in range(MAX_ROWS + 3)), steps=2), progress=False)
    html = big._repr_html_()
    assert html.count("<tr>") == 1 + MAX_ROWS + 1 and "… 3 more instances" in html


def _lines(fig):
    return [line.get_xydata() for ax in fig.axes for line in ax.lines]


def test_a_figure_takes_a_run_in_place_of_its_tensors(run):
    by_run = figures.intro_figure(run)
    by_hand = figures.intro_figure(run.W, run.metrics.feature_probability, run.importance)
    assert [ax.get_title() for ax in by_run.axes] == [ax.get_title() for ax in by_hand.axes]
    for a, b in zip(_lines(by_run), _lines(by_hand), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_figure_takes_a_run_directory(run, tmp_path):
    sp.save_run(replace(run), tmp_path / "r")  # a copy: save_run sets the path of the run it saves
    fig = figures.dimensionality_figure(str(tmp_path / "r"))
    ref = figures.dimensionality_figure(run.W, run.metrics.feature_probability)
    np.testing.assert_allclose(fig.axes[0].lines[-1].get_xydata(), ref.axes[0].lines[-1].get_xydata())
    with pytest.raises(sp.RunDirError, match="missing"):
        figures.dimensionality_figure(tmp_path / "missing")


def test_a_keyword_wins_over_the_run_and_later_arguments_bind_after_it(run):
    fig = figures.intro_figure(run, importance=torch.ones(5), ncols=1)
    assert len(fig.axes) == 3 + 1
    fig = figures.set_gram_figure(run, 5)  # independent data: the run has no set_size, so 5 is it
    assert len(fig.axes) == 3 + 1
    with pytest.raises(TypeError, match="too many positional"):
        figures.dimensionality_figure(run, [1.0], 3)


def test_a_mapping_of_runs_feeds_the_per_model_figures(run, tmp_path):
    path = sp.save_run(replace(run), tmp_path / "r")
    fig = figures.basic_figure({"first": run, "again": path})
    assert len(fig.axes) == 2 * 2 * 3 + 2
    slider = interactive.superposition_slider({"first": run})
    assert len(slider.data) > 0


def test_interactive_figures_take_a_run_too(run):
    assert len(interactive.loss_curves(run, title="loss").data) == 3
    assert len(interactive.dimensionality_slider(run).data) > 0
    assert len(interactive.geometry_slider(run).data) > 0
    assert len(figures.loss_curve_figure(run).axes[0].lines) >= 3


def test_a_sweep_outcome_has_a_short_repr_and_a_summary_table(tmp_path):
    import pandas as pd

    from superposition.sweep.driver import SweepOutcome

    index = pd.DataFrame({"final_loss": [0.1, 0.3], "represented": [2, 4], "p": [1.0, 0.1]})
    outcome = SweepOutcome(tmp_path, index, chunks=1, trained=1, models_trained=2, seconds=1.5)
    assert repr(outcome) == f"SweepOutcome({tmp_path}: 2 models in 1 chunks, 1 trained now, 1.5 s)"
    html = outcome._repr_html_()
    assert "<table" in html and "final_loss" in html and "0.2" in html and "p</th>" not in html
