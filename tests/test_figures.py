import pytest
import torch
from matplotlib.figure import Figure

from superposition import figures

PROBS = [1.0, 0.1, 0.003]


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_sparsity_label_is_computed_from_p():
    assert figures.sparsity_label(0.1) == "1 − S = p = 0.1 (S = 90%)"
    assert figures.sparsity_label(1.0) == "1 − S = p = 1 (S = 0%)"
    assert figures.sparsity_label(0.003, short=True) == "S = 99.7%\np = 0.003"
    assert figures.sparsity_label([0.3, 0.3]) == "1 − S = p = 0.3 (S = 70%)"
    assert figures.sparsity_label(0.7166081) == "1 − S = p = 0.7166 (S = 28.34%)"
    assert "per feature" in figures.sparsity_label([1.0, 0.5])


def test_intro_figure():
    fig = figures.intro_figure(rand(3, 5, 2), PROBS, 0.9 ** torch.arange(5.0))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 + 1  # a panel per instance and the importance colourbar
    assert fig.axes[1].get_title() == "1 − S = p = 0.1 (S = 90%)"
    assert len(fig.axes[0].lines) == 5 + 2  # a line per feature and the two axis guides


def test_intro_figure_wraps_panels_into_rows():
    probs = [20.0 ** (-i / 9) for i in range(7)]
    fig = figures.intro_figure(rand(7, 5, 2), probs, torch.ones(5), ncols=3)
    assert len(fig.axes) == 7 + 1
    assert fig.axes[6].get_title() == figures.sparsity_label(probs[6])
    assert fig.axes[3].get_position().y0 < fig.axes[0].get_position().y0  # second row below the first


def test_intro_figure_rejects_other_hidden_sizes_and_mismatched_labels():
    with pytest.raises(ValueError, match="2-d"):
        figures.intro_figure(rand(3, 5, 3), PROBS, torch.ones(5))
    with pytest.raises(ValueError, match="one per instance"):
        figures.intro_figure(rand(2, 5, 2), PROBS, torch.ones(5))


def test_basic_figure():
    models = {
        "linear": (rand(3, 6, 2, seed=1), rand(3, 6, seed=2)),
        "relu_output": (rand(3, 6, 2, seed=3), rand(3, 6, seed=4)),
    }
    fig = figures.basic_figure(models, PROBS)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 2 * 3 + 2  # (WᵀW with b, norms) per model and p, two colourbars
    assert fig.axes[0].get_title() == figures.sparsity_label(1.0, short=True)
    assert len(fig.axes[3].patches) == 6  # one norm bar per feature (second row)


def test_loss_curve_figure():
    steps = list(range(10, 110, 10))
    curves = (torch.rand(3, 10, generator=torch.Generator().manual_seed(0)) + 0.1).tolist()
    fig = figures.loss_curve_figure(steps, curves, ["a", "b", "c"], reference=[0.1, 0.2, 0.3])
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "log"
    assert len(fig.axes[0].get_legend().get_texts()) == 3


def test_dimensionality_figure():
    fig = figures.dimensionality_figure(rand(3, 8, 3), PROBS)
    assert len(fig.axes) == 1 and fig.axes[0].get_xscale() == "log"
    with pytest.raises(ValueError, match="per-feature"):
        figures.dimensionality_figure(rand(1, 2, 3), [[1.0, 0.5]])


def test_save_figure_writes_png_atomically(tmp_path):
    fig = figures.loss_curve_figure([1, 2], [[1.0, 0.5]])
    out = figures.save_figure(fig, tmp_path / "sub" / "loss.png")
    assert out == tmp_path / "sub" / "loss.png"
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert [p.name for p in out.parent.iterdir()] == ["loss.png"]  # no temporary file left


def test_save_figure_closes_pyplot_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.add_subplot().plot([0, 1])
    figures.save_figure(fig, tmp_path / "p.png")
    assert not plt.fignum_exists(fig.number)


def test_save_figure_failure_leaves_nothing(tmp_path, monkeypatch):
    fig = figures.loss_curve_figure([1, 2], [[1.0, 0.5]])

    def broken(handle, **kw):
        handle.write(b"half a png")
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        figures.save_figure(fig, tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []
