"""The paper's claims on small seeded runs of each recipe (best-of-N where the paper needed it)."""

from dataclasses import replace

import pytest

import superposition as sp
from superposition.experiments import FOLLOW_UPS, RECIPES, basic, get_recipe, intro, run_recipe


def shrink(config: sp.RunConfig, probabilities, steps: int, restarts: int) -> sp.RunConfig:
    data = replace(config.data, feature_probability=tuple(probabilities))
    return replace(config, data=data, train=replace(config.train, steps=steps, restarts=restarts))


def assert_all_held(claims):
    failed = [f"{c.claim}: expected {c.expected}, measured {c.measured}" for c in claims if not c.held]
    assert not failed, "\n".join(failed)


@pytest.mark.slow
def test_intro_claims_hold_on_a_small_run():
    config = shrink(intro.configs(quick=True)["relu_output"], intro.HIGHLIGHT, steps=4000, restarts=8)
    run = sp.train(config, compile=False, progress=False)
    W = {p: run.W[k] for k, p in enumerate(intro.HIGHLIGHT)}
    assert_all_held([intro.dense_claim(W[1.0]), intro.antipodal_claim(W[0.2]), intro.pentagon_claim(W[0.1])])


@pytest.mark.slow
def test_basic_claims_hold_on_a_small_run():
    probabilities = (1.0, 0.3, 0.03, 0.003)
    steps = {"linear": 8000, "relu_output": 4000}  # the dense linear model leaves a slow saddle late
    runs = {name: sp.train(shrink(cfg, probabilities, steps=steps[name], restarts=1), compile=False, progress=False)
            for name, cfg in basic.configs(quick=True).items()}
    claims = basic.RECIPE.claims(basic.RECIPE.analysed(runs))
    assert len(claims) == 6
    assert_all_held([c for c in claims if "2m = 10" not in c.expected])
    counts = sp.analysis.represented_count(runs["relu_output"].W).tolist()
    assert counts[0] == 5 and counts[-1] > 5, counts  # superposition appears with sparsity


def test_claims_detect_wrong_geometry():
    """The checks can fail: feed them geometries the paper rules out."""
    import torch

    square = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1], [0, 0]])  # 4 features, two antipodal pairs
    assert intro.antipodal_claim(square).held
    assert not intro.pentagon_claim(square).held
    assert not intro.dense_claim(square).held
    pentagon = torch.stack([torch.tensor([torch.cos(a), torch.sin(a)]) for a in torch.arange(5) * 2 * torch.pi / 5])
    assert intro.pentagon_claim(pentagon).held and not intro.antipodal_claim(pentagon).held


def _basic_model(norms: list[list[float]]) -> basic.Model:
    import torch

    W = torch.zeros(len(norms), 20, 5)
    for k, row in enumerate(norms):
        W[k, : len(row), 0] = torch.tensor(row)
    return basic.Model(W, torch.zeros(len(norms), 20), tuple(10.0 ** -k for k in range(len(norms))))


def test_basic_packing_claim_says_why_a_count_falls():
    """A fall of the count with features just under the cut is told apart from a fall of the storage."""
    under = basic._packing_claim(_basic_model([[1.0] * 5, [1.0] * 11 + [0.6], [1.0] * 10 + [0.45, 0.42, 0.3]]))
    assert not under.held
    assert under.measured == ("counts [5, 12, 10]; cause: the count falls, not the storage: at 1 − S = 0.01 "
                              "features [10, 11] sit just under the cut (‖W_i‖ 0.45, 0.42); "
                              "counted at ‖W_i‖ > 0.4: [5, 12, 12]")
    dropped = basic._packing_claim(_basic_model([[1.0] * 5, [1.0] * 12, [1.0] * 10 + [0.1, 0.1]]))
    assert not dropped.held and "cause" not in dropped.measured
    assert dropped.measured.endswith("no feature within 0.4–0.5; counted at ‖W_i‖ > 0.4: [5, 12, 10] (fall too)")
    rising = basic._packing_claim(_basic_model([[1.0] * 5, [1.0] * 10 + [0.45], [1.0] * 12]))
    assert rising.held and rising.measured == "counts [5, 10, 12]"


def test_recipe_writes_runs_figures_and_claims_and_reuses_runs(tmp_path, monkeypatch):
    tiny = {"relu_output": shrink(intro.configs(True)["relu_output"], intro.HIGHLIGHT + intro.GRID, 30, 1)}
    recipe = replace(get_recipe("intro"), configs=lambda quick: tiny)
    first = run_recipe(recipe, tmp_path, quick=True, compile=False, progress=False)
    assert (tmp_path / "relu_output" / "metrics.json").exists()
    assert {p.name for p in tmp_path.glob("*.png")} == {"intro.png", "intro_grid.png"}
    assert all(p.stat().st_size > 10_000 for p in tmp_path.glob("*.png"))
    assert (tmp_path / "claims.json").exists() and len(first.claims) == 4
    again = run_recipe(recipe, tmp_path, quick=True, compile=False, progress=False)
    assert again.reused == ["relu_output"]
    other = replace(recipe, configs=lambda quick: {"relu_output": shrink(tiny["relu_output"], intro.HIGHLIGHT, 30, 1)})
    with pytest.raises(sp.RunDirError, match="different config"):
        run_recipe(other, tmp_path, quick=True, compile=False, progress=False)


def test_registry():
    assert list(RECIPES) == ["intro", "basic", "basic-rescaled", "loss-decomposition", "phase-diagram",
                             "confused-feature", "uniform", "uniform-scaling", "geometry", "tegum",
                             "nonuniform", "correlated", "dynamics", "adversarial", "privileged-basis",
                             "absolute-value", "l1-hidden", "compression", "compressed-sensing", *FOLLOW_UPS]
    assert list(RECIPES)[-len(FOLLOW_UPS):] == list(FOLLOW_UPS) == ["double-descent", "sae-recovery",
                                                                      "sae-absorption"]  # after the paper's
    paper = [r.section for r in RECIPES.values() if r.name not in FOLLOW_UPS]
    appendix = [s.startswith("Appendix") for s in paper]
    assert appendix == sorted(appendix)  # the appendices after the numbered sections
    sections = [float(s.split()[0].split(".")[0]) for s in paper if not s.startswith("Appendix")]
    assert sections == sorted(sections)  # the paper's order
    with pytest.raises(sp.ConfigError, match="intro"):
        get_recipe("nope")


def test_recipes_do_not_import_each_other():
    import ast
    from pathlib import Path

    from superposition import experiments

    folder = Path(experiments.__file__).parent
    recipes = {p.stem for p in folder.glob("*.py")} - {"__init__", "base", "runs"}
    for name in recipes:
        tree = ast.parse((folder / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported = {node.module} if node.module else {a.name for a in node.names}
                assert not imported & recipes, f"{name} imports the recipe {imported & recipes}"
