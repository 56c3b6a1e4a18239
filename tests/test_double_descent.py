"""Follow-up 1 (memorisation and double descent): data dimensionality on constructed hidden
vectors, the run helper, memorisation of a tiny training set, the claims on constructed models,
the figures, and the recipe on a small seeded run."""

import math
from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

import superposition as sp
from superposition.analysis import (
    data_dimensionality,
    feature_dimensionality,
    run_data_dimensionality,
    training_hidden,
    training_inputs,
)
from superposition.experiments import double_descent as dd
from superposition.experiments import get_recipe, run_recipe


def polygon(T: int, radius: float = 1.0, phase: float = 0.3) -> torch.Tensor:
    """``[T, 2]``: a regular T-gon."""
    angle = phase + 2 * math.pi * torch.arange(T, dtype=torch.float64) / T
    return radius * torch.stack([angle.cos(), angle.sin()], dim=-1)


@pytest.mark.parametrize("T", [3, 4, 5, 7, 12, 50])
def test_regular_polygon_has_data_dimensionality_m_over_T(T):
    D = data_dimensionality(polygon(T, radius=0.7))
    assert torch.allclose(D, torch.full((T,), 2.0 / T, dtype=torch.float64), atol=1e-12)


def test_polygon_in_a_plane_of_a_larger_space_and_batched():
    plane = torch.linalg.qr(torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    h = torch.stack([polygon(6) @ plane.T, polygon(6, radius=3.0) @ plane.T])  # [inst, T, hidden=5]
    assert data_dimensionality(h).shape == (2, 6)
    assert torch.allclose(data_dimensionality(h), torch.full((2, 6), 2.0 / 6, dtype=torch.float64), atol=1e-12)


def test_orthogonal_examples_have_one_dimension_each_and_dead_ones_zero():
    h = torch.cat([torch.diag(torch.tensor([0.5, 2.0, 1.0])), torch.zeros(1, 3)])  # 3 orthogonal + one at 0
    assert data_dimensionality(h).tolist() == [1.0, 1.0, 1.0, 0.0]
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert data_dimensionality(antipodal).tolist() == [0.5, 0.5]


def test_data_dimensionality_equals_the_gram_formula():
    h = torch.randn(3, 40, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(data_dimensionality(h), feature_dimensionality(h), atol=1e-12)
    with pytest.raises(ValueError, match="T, hidden"):
        data_dimensionality(torch.ones(3))


def finite(T: int, n: int = 20, p: float = 0.1, steps: int = 600, restarts: int = 2, seed: int = 0) -> sp.RunConfig:
    return sp.RunConfig(
        model=sp.ModelConfig("relu_output", n_features=n, n_hidden=2),
        data=sp.DataConfig(feature_probability=(p,), normalize=True, n_train=T, n_test=256),
        train=sp.TrainConfig(steps=steps, batch_size=T, lr=1e-2, schedule="cosine", warmup_steps=steps // 20,
                             weight_decay=1e-2, restarts=restarts, seed=seed, eps=1e-8 / n, log_every=100))


def test_the_hidden_vectors_of_a_sparse_set_are_read_in_chunks(monkeypatch):
    cfg = finite(30, n=800, p=0.002, steps=20)
    cfg = replace(cfg, data=replace(cfg.data, sampler="sparse"))
    run = sp.train(cfg, compile=False, progress=False)
    whole = training_inputs(run) @ run.W
    monkeypatch.setattr(sp.data, "FINITE_CHUNK_ELEMENTS", 800 * 4)  # 8 chunks of 4 examples
    assert len(list(sp.data.dataset_parts(run.config))) == 8
    torch.testing.assert_close(training_hidden(run), whole)


def test_run_helpers_regenerate_the_training_set():
    run = sp.train(finite(5, steps=20), compile=False, progress=False)
    x = training_inputs(run)
    assert x.shape == (1, 5, 20)
    assert torch.equal(x, sp.data.dataset(run.config, "train")[:1])
    assert torch.allclose(training_hidden(run), x @ run.W)
    assert run_data_dimensionality(run).shape == (1, 5)
    every = sp.train(replace(finite(5, steps=20), train=replace(finite(5).train, steps=20, keep_all_restarts=True)),
                     compile=False, progress=False)
    assert training_inputs(every).shape == (2, 5, 20)
    with pytest.raises(ValueError, match="n_train"):
        training_inputs(sp.train(replace(finite(5), data=sp.DataConfig(), train=sp.TrainConfig(steps=2)),
                                 compile=False, progress=False))


def test_tiny_training_set_is_memorised_to_near_zero_loss():
    """A 3-example set (T·(1−S) = 0.3) is stored exactly, but not in a way that generalises."""
    run = sp.train(finite(3, steps=1500), compile=False, progress=False)
    zero = float(training_inputs(run).square().mean())
    assert run.metrics.final_loss[0] <= dd.NEAR_ZERO * zero
    assert run.metrics.test_loss[0] > 0.5 * float(sp.data.dataset(run.config, "test").square().mean())


def model(T: int, D_X: torch.Tensor | None = None, D: torch.Tensor | None = None, test: float = 1.0,
          W_norm: float = 1.0, b_norm: float = 1.0, seed: int = 0, train: float = 0.0) -> dd.Model:
    D_X = torch.full((T,), 2.0 / T) if D_X is None else D_X
    D = torch.zeros(10) if D is None else D
    return dd.Model(T=T, seed=seed, m=2, train_loss=train, test_loss=test, train_zero=1.0, test_zero=1.0,
                    W_norm=W_norm, b_norm=b_norm, D=D, D_X=D_X, W=torch.zeros(10, 2), h=torch.zeros(T, 2))


def test_claims_on_constructed_models():
    pentagon = torch.tensor([0.4] * 5 + [0.01] * 5)
    models = [model(3, test=1.2, W_norm=1, b_norm=1), model(10, test=1.0, W_norm=3, b_norm=2),
              model(30, test=1.05, W_norm=4, b_norm=3), model(100, D_X=torch.zeros(100), D=pentagon, test=0.9,
                                                             W_norm=2, b_norm=1)]
    p = 0.05  # T·p = 0.15, 0.5 (memorising), 1.5, 5
    claims = dd._claims_of(models, p)
    assert [c.held for c in claims] == [True, True, True, True, True, True, True]
    assert "T = 30" in claims[3].measured and "T = 100" in claims[6].measured
    monotone = [replace(m, test_loss=t, W_norm=t, b_norm=t, D=torch.zeros(10))
                for m, t in zip(models, [4, 3, 2, 1], strict=True)]
    held = [c.held for c in dd._claims_of(monotone, p)]
    assert held == [True, True, False, False, False, False, False]
    assert "cause" not in dd.bump_claim(monotone, p).measured  # every set memorised: nothing to blame
    unlearnt = [replace(m, train_loss=r, steps=1500) for m, r in zip(monotone, [0.0, 0.3, 0.5, 0.8], strict=True)]
    bump, onset = dd.bump_claim(unlearnt, p), dd.generalising_claim(unlearnt, p)
    assert bump.measured.endswith(
        "; cause: no memorisation regime to peak after: the test loss is highest at the smallest T = 3 and only the "
        "sets up to T = 3 are memorised after 1,500 steps (training loss ≤ 1% of the zero output's); from T = 10 on "
        "they keep 30%–80% of it")
    assert onset.measured.endswith("; cause: the test loss has no peak (see the double-descent row): it is highest "
                                   "at the smallest T = 3, so the half-way point is measured down from there")
    gaps = [replace(m, train_loss=r) for m, r in zip(monotone, [0.0, 0.3, 0.0, 0.8], strict=True)]
    assert "cause" not in dd.bump_claim(gaps, p).measured  # memorised sets after unmemorised ones: no clean story
    smeared = [replace(models[0], D_X=torch.tensor([0.1, 0.3, 0.9]), train_loss=0.5), *models[1:]]
    assert [c.held for c in dd._claims_of(smeared, p)][:2] == [False, False]


def test_gon_claim_says_when_the_set_is_only_partly_memorised():
    D_X = torch.tensor([1 / 3] * 6 + [0.1, 0.05, 0.01, 0.0])
    error = torch.tensor([0.05] * 6 + [0.6, 0.8, 0.9, float("nan")])  # three given up, one empty example
    partial = replace(model(10, D_X=D_X, train=0.35), example_error=error, steps=3000)
    claim = dd.gon_claim([model(3), partial], 0.05)
    assert not claim.held
    assert claim.measured.endswith(
        "cause: at T = 10 (seed 0) the set is only partly memorised after 3,000 steps, where the note trains 50,000: "
        "training loss 35% of the zero output's, 3 of 10 examples given up and 1 empty (reconstruction error > "
        "50% of ‖x‖², D_X 0.01–0.1); the other 6 form a 6-gon: 100% have D_X within ±25% of m/6 = 0.333")
    assert "after" not in dd.gon_claim([model(3), replace(partial, steps=None)], 0.05).measured
    assert "cause" not in dd.gon_claim([model(3), replace(partial, example_error=None)], 0.05).measured
    smeared = replace(partial, D_X=torch.tensor([0.5, 0.2] * 3 + [0.1, 0.05, 0.01, 0.0]))
    assert "cause" not in dd.gon_claim([model(3), smeared], 0.05).measured  # the rest is no 6-gon either
    kept = replace(partial, example_error=torch.zeros(10))
    assert "cause" not in dd.gon_claim([model(3), kept], 0.05).measured  # nothing given up


def test_reconstruction_error_of_a_run():
    config = dd._config(replace(dd.QUICK, steps=5, warmup=1), 5, 0)
    run = sp.train(config, compile=False, progress=False)
    error = dd.reconstruction_error(run)
    x = training_inputs(run)[0]
    assert error.shape == (5,) and bool((error[x.square().sum(-1) > 0] >= 0).all())
    assert dd.measure(run).steps == 5
    assert torch.equal(error.isnan(), x.square().sum(-1) == 0)


def test_interior_peak_needs_a_rise_above_the_minimum_before_it():
    assert dd.interior_peak([1.0, 0.9, 0.95, 0.5]) == 2
    assert dd.interior_peak([1.0, 0.9, 0.905, 0.5]) is None  # 0.6% < BUMP
    assert dd.interior_peak([3.0, 2.0, 1.0]) is None


def test_figures_draw():
    from superposition.figures.double_descent import (
        dimensionality_figure,
        geometry_figure,
        norms_figure,
        plane_figure,
        test_loss_figure,
    )

    T = [3, 3, 30, 30]
    assert isinstance(test_loss_figure(T, [1, 1.1, 0.9, 0.8], [0, 0, 0.5, 0.6], 0.05), Figure)
    assert isinstance(geometry_figure([polygon(3), polygon(5)], [3, 5], [torch.randn(10, 2)], [300]), Figure)
    assert isinstance(dimensionality_figure(T, [torch.rand(t) for t in T], [torch.rand(10)] * 4, 0.05), Figure)
    assert isinstance(norms_figure(T, [1, 2, 3, 4], [1, 2, 3, 4], 0.05), Figure)
    assert isinstance(plane_figure(T, [1, 2, 1, 2], [1, 1.1, 0.9, 0.8], 0.05), Figure)
    with pytest.raises(ValueError, match="one per model"):
        norms_figure(T, [1], [1], 0.05)


def test_configs_follow_the_published_setup():
    assert get_recipe("double-descent") is dd.RECIPE
    configs = dd.configs(True)
    assert len(configs) == len(dd.QUICK.sizes) * dd.QUICK.dataset_seeds
    for c in configs.values():
        assert c.model.kind == "relu_output" and c.model.n_hidden == 2 and c.model.init_std is None
        assert c.data.normalize and c.train.batch_size >= c.data.n_train
        assert c.train.optimizer == "adamw" and c.train.schedule == "cosine" and c.train.weight_decay == 1e-2
    full = dd.size_configs(dd.FULL)
    assert len(full) == len(dd.GRID) * (dd.FULL.dataset_seeds + len(dd.FULL.widths))
    assert full["T000040-m3-s0"].model.n_hidden == 3 and full["T000040-s1"].model.n_hidden == 2
    wide = [replace(model(3), m=3), model(3)]
    assert dd.main_models(wide) == [wide[1]]
    paper = dd.paper_configs()
    big = paper[f"T{100_000:06d}-s3"]
    assert big.model.n_features == 10_000 and big.data.feature_probability == (0.001,)
    assert big.train.steps == 50_000 and big.train.warmup_steps == 2_500 and big.train.lr == 1e-3


SMALL = dd.Size(20, 0.1, (3, 5, 20, 80, 320), 2, 2, 1500, 75, 512)


@pytest.mark.slow
def test_recipe_on_a_small_seeded_run(tmp_path):
    """The whole recipe at n = 20, p = 0.1 (T·p from 0.3 to 32), 2 dataset seeds, lr raised to 1e-2 so
    1,500 steps suffice: figures written; memorisation, the test-loss bump and the norm peaks hold."""
    configs = {k: replace(c, train=replace(c.train, lr=1e-2)) for k, c in dd.size_configs(SMALL).items()}
    recipe = replace(dd.RECIPE, configs=lambda quick: configs)
    result = run_recipe(recipe, tmp_path, quick=True, compile=False, progress=False)
    assert sorted(p.name for p in result.figures.values()) == [
        "double_descent_dimensionality.png", "double_descent_geometry.png", "double_descent_loss.png",
        "double_descent_norms.png"]
    held = {c.claim.split(":")[0]: c.held for c in result.claims}
    assert len(result.claims) == 7
    assert held["Tiny training sets are memorised"] and held["Double descent"]
    assert held["‖W‖_F peaks at intermediate T"] and held["‖b‖ peaks at intermediate T"]
    # The T-gon claim is not held at this size (empty examples and irregular triangles): see the recipe.


def test_scorecard_puts_follow_ups_in_their_own_table():
    from superposition.reproduce import Scorecard, ScoreRow

    rows = [ScoreRow("intro", "1 Introduction", "c", "e", "m", "held"),
            ScoreRow("double-descent", dd.SECTION, "c", "e", "m", "not held")]
    text = Scorecard(True, rows).to_markdown()
    assert text.index("| 1 Introduction") < text.index("## Follow-ups") < text.index(f"| {dd.SECTION}")
    assert "## Follow-ups" not in Scorecard(True, rows[:1]).to_markdown()


def test_pentagon_claim_says_when_the_layout_was_still_forming():
    forming = torch.tensor([0.4] * 4 + [0.19, 0.14] + [0.01] * 4)
    history = torch.stack([torch.tensor([0.4] * 4 + [0.15, 0.17] + [0.01] * 4),  # step 0
                           torch.tensor([0.4] * 4 + [0.16, 0.16] + [0.01] * 4),  # step 750
                           forming])  # step 1500
    unfinished = [replace(model(640, D=forming, seed=s), D_history=history, history_steps=(0, 750, 1500))
                  for s in range(2)]
    claim = dd.pentagon_claim(unfinished)
    assert not claim.held
    assert claim.measured.endswith(
        "; cause: the layout was still forming when the cosine schedule ran out at step 1,500 (the note trains "
        "50,000): from step 750 to 1,500 the 5th or 6th largest D_i moved by more than 10% (seed 0: the 5th "
        "0.16 → 0.19, the 6th 0.16 → 0.14; seed 1: the 5th 0.16 → 0.19, the 6th 0.16 → 0.14)")
    still = torch.stack([forming, forming, forming])  # the same layout all along: stuck, not forming
    assert "cause" not in dd.pentagon_claim([replace(m, D_history=still) for m in unfinished]).measured
    assert "cause" not in dd.pentagon_claim([replace(m, D_history=None) for m in unfinished]).measured
    pentagon = torch.tensor([0.4] * 5 + [0.01] * 5)
    mixed = [replace(unfinished[0], D=pentagon), replace(unfinished[1], D_history=still)]
    assert dd.pentagon_claim(mixed).held and "cause" not in dd.pentagon_claim(mixed).measured


def test_runs_keep_snapshots_that_give_the_layout_history():
    config = dd._config(replace(dd.QUICK, steps=40, warmup=4, n_test=64), 20, 0)
    assert config.train.snapshot_every == 4
    m = dd.measure(sp.train(config, compile=False, progress=False))
    assert m.D_history is not None and m.D_history.shape == (11, 100)
    assert m.history_steps == tuple(range(0, 41, 4))
    assert torch.allclose(m.D_history[-1], m.D)
