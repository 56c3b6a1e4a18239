"""The tutorial notebooks run end to end (nbclient, a fresh kernel each) so they never rot. Each
executed copy is kept in build/notebooks/ for the docs site (docs/run_notebooks.py)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("nbclient", reason="the notebooks extra (pip install -e '.[notebooks]') runs the notebooks")
pytest.importorskip("ipykernel", reason="the notebooks extra (pip install -e '.[notebooks]') runs the notebooks")


def _runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "docs" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNER = _runner()
NOTEBOOKS = RUNNER.notebooks()


def test_the_tutorials_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01-superposition-in-15-minutes.ipynb", "02-phase-changes.ipynb", "03-geometry.ipynb",
        "04-coming-from-arena.ipynb", "05-your-own-model.ipynb",
    ]


def test_the_notebooks_are_committed_without_outputs():
    import nbformat

    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        assert not [c for c in cells if c.cell_type == "code" and (c.outputs or c.execution_count)], path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_end_to_end_and_shows_its_figures(path):
    reason = RUNNER.missing_requirement(path)
    if reason:
        pytest.skip(reason)
    nb = RUNNER.execute(path)  # raises CellExecutionError naming the failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # Every cell whose last line draws a static figure displays it as a PNG (no %matplotlib inline).
    last_lines = [(c, c.source.strip().splitlines()[-1]) for c in nb.cells if c.cell_type == "code"]
    drawing = [c for c, last in last_lines if last.startswith("figures.")]
    assert len(images) >= len(drawing) > 0
    for cell in drawing:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
    for cell in nb.cells:  # a Run shown as the last expression is its HTML table
        if cell.cell_type == "code" and cell.source.strip().splitlines()[-1] in ("run", "gelu", "custom"):
            assert any('class="superposition-run"' in o.get("data", {}).get("text/html", "") for o in cell.outputs)
    plotly = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    if "interactive." in "".join(c.source for c in nb.cells) or "heatmap(" in "".join(c.source for c in nb.cells):
        assert plotly, "an interactive figure displays as plotly"
