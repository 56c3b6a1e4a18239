"""The sae-recovery and sae-absorption recipes: claim logic on constructed results, the analysis
on small seeded runs, and the absorption measure on hand-built dictionaries."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from superposition.experiments import sae_absorption, sae_recovery
from superposition.sae import DictionaryConfig, SAEConfig, SourceConfig
from superposition.sae.absorption import absorption

from .test_sae import orthogonal_run


def _dictionary_result(mmcs, dead=None, loss=None, larger=None) -> sae_recovery.DictionaryResult:
    config = dataclasses.replace(sae_recovery.dictionary_config(True), n_latents=(32, 64, 128, 256))
    n = np.asarray(mmcs, dtype=float)
    zeros = np.zeros_like(n)
    return sae_recovery.DictionaryResult(config, sae_recovery.RATIOS, n, zeros if dead is None else np.asarray(dead),
                                         zeros if loss is None else np.asarray(loss),
                                         np.zeros((n.shape[0], 3)) if larger is None else np.asarray(larger))


def test_recovery_claims_hold_and_fail_as_they_should():
    good = _dictionary_result([[0.6, 0.8, 0.85, 0.8], [0.7, 0.97, 0.99, 0.96], [0.65, 0.9, 0.93, 0.9]],
                              dead=[[0, 0, 0.2, 0.5]] * 3, loss=[[0.03, 0.02, 0.019, 0.019]] * 3,
                              larger=[[0.8, 0.97, 0.7]] * 3)
    assert all(c.held for c in (sae_recovery.near_one_claim(good), sae_recovery.below_g_claim(good),
                                sae_recovery.dead_claim(good), sae_recovery.elbow_claim(good),
                                sae_recovery.larger_claim(good)))
    assert sae_recovery.best_alpha(good) == 1
    bad = _dictionary_result([[0.9, 0.9, 0.94, 0.99]] * 3, dead=[[0.1, 0, 0, 0]] * 3,
                             loss=[[0.03, 0.029, 0.02, 0.019]] * 3, larger=[[0.9, 0.8, 0.95]] * 3)
    claims = (sae_recovery.near_one_claim(bad), sae_recovery.below_g_claim(bad), sae_recovery.dead_claim(bad),
              sae_recovery.elbow_claim(bad), sae_recovery.larger_claim(bad))
    assert not any(c.held for c in claims)
    assert "0.94" in claims[0].measured  # the measured value is reported


def test_dead_claim_says_when_the_extra_latents_stay_alive_without_a_feature():
    alive = dataclasses.replace(_dictionary_result([[0.7, 0.97, 0.99, 0.96]]),
                                matchless=np.array([[0.0, 0.0, 0.1, 0.25]]))
    claim = sae_recovery.dead_claim(alive)
    assert not claim.held and claim.measured.endswith(
        "; cause: at R = 4 the latents beyond G stay alive without a feature of their own: 64 of 256 (25%) have "
        "cosine < 0.5 with every true feature (at R = 1: 0%)")
    matched = dataclasses.replace(alive, matchless=np.array([[0.0, 0.0, 0.0, 0.05]]))
    assert "cause" not in sae_recovery.dead_claim(matched).measured  # they duplicate features: not this cause


def test_near_one_claim_says_where_the_latents_went():
    short = dataclasses.replace(_dictionary_result([[0.7, 0.94, 0.99, 0.96]]), unrecovered=np.array([[40, 6, 0, 1]]),
                                doubled=np.array([[0, 4, 9, 12]]), dead_count=np.array([[0, 1, 2, 30]]),
                                matchless=np.array([[0.0, 1 / 64, 0.1, 0.3]]))
    claim = sae_recovery.near_one_claim(short)
    assert not claim.held and claim.measured.endswith(
        "; cause: latents spent elsewhere: R = 1 (α = 0.003): 6 of 64 true features have no latent at cosine ≥ 0.9, "
        "while of its 64 latents 4 double a feature another latent covers, 1 never fire and 1 match no feature "
        "(cosine < 0.5)")
    spare = dataclasses.replace(short, doubled=np.zeros((1, 4)), dead_count=np.zeros((1, 4)),
                                matchless=np.zeros((1, 4)))
    assert "cause" not in sae_recovery.near_one_claim(spare).measured  # every latent on its own feature


def test_doubled_latents():
    from superposition.sae import metrics

    truth = torch.eye(4)[:3]
    learned = torch.tensor([[[1.0, 0, 0, 0], [0.99, 0.1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]])
    assert metrics.doubled_latents(truth, learned).tolist() == [1]  # two latents on feature 0
    assert metrics.doubled_latents(truth, learned, torch.tensor([[True, False, True, True]])).tolist() == [0]


def test_matchless_latents():
    from superposition.sae import metrics

    truth = torch.eye(4)[:3]  # three true features in four dimensions
    learned = torch.stack([torch.eye(4)[[0, 1, 2, 0]], torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0],
                                                                    [0, 0, 0, 1]])])
    assert metrics.matchless_latents(truth, learned).tolist() == [0, 1]  # (1,1,1,1) reaches 0.5; e₄ reaches 0
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    assert metrics.matchless_latents(truth, learned, mask).tolist() == [0, 0]


def test_toy_claims():
    ok = sae_recovery.ToyResult(np.ones(10), 10, 9, 0.95)
    poor = sae_recovery.ToyResult(np.ones(10), 10, 7, 0.5)
    assert [c.held for c in sae_recovery.toy_claims("toy_20_5", ok)] == [True, True]
    assert [c.held for c in sae_recovery.toy_claims("toy_20_5", poor)] == [False, False]
    assert "cause" not in sae_recovery.toy_claims("toy_20_5", poor)[1].measured  # no support scores: no cause
    encoder = dataclasses.replace(poor, found=0.54, spurious=0.5, oracle_loss_recovered=0.95, k=8)
    assert sae_recovery.toy_claims("toy_400_30", encoder)[1].measured == (
        "0.5; cause: the encoder picks the wrong latents, not the dictionary: 54% of the active features have a "
        "matching latent (cosine ≥ 0.9) among the k = 8 fired, and 50% of the activation lands on latents matching "
        "no active feature; given the true support, the SAE's own decoder (least-squares coefficients) recovers "
        "0.95 of the loss")
    dictionary = dataclasses.replace(encoder, oracle_loss_recovered=0.6)  # the dictionary itself falls short
    assert "cause" not in sae_recovery.toy_claims("toy_400_30", dictionary)[1].measured


def test_dictionary_analysis_on_a_small_seeded_run():
    config = dataclasses.replace(
        sae_recovery.dictionary_config(True), n_latents=(8, 16, 32, 64), l1_coefficient=(3e-2,), steps=2000,
        batch_size=128, source=SourceConfig(dictionary=DictionaryConfig(n_features=16, n_hidden=12, n_active=2)))
    res = sae_recovery.analyse_dictionary(config)
    assert res.mmcs.shape == (1, 4) and res.larger.shape == (1, 3) and res.ratios == sae_recovery.RATIOS
    assert res.mmcs[0, 1] > 0.9 > res.mmcs[0, 0]  # recovered at R = 1, not at R = 1/2
    assert res.loss[0, 0] > res.loss[0, 1]


def test_toy_analysis_recovers_an_orthogonal_model():
    res = sae_recovery.analyse_toy(orthogonal_run(), quick=True)
    assert res.represented == 6 and res.recovered == 6 and res.loss_recovered > 0.9


def test_recipes_are_registered_after_the_paper():
    from superposition.experiments import RECIPES

    names = list(RECIPES)
    assert names[-2:] == ["sae-recovery", "sae-absorption"]
    assert set(sae_recovery.configs(True)) == set(sae_recovery.TOYS)
    assert sae_recovery.configs(True)["toy_20_5"].name.endswith("-quick")
    assert not sae_recovery.configs(False)["toy_20_5"].name.endswith("-quick")
    assert sae_absorption.configs(True) == {}


# --- absorption -----------------------------------------------------------------------------------


def test_absorption_measure_on_hand_built_dictionaries():
    # one group: parent e0, children e1, e2
    directions = torch.eye(3)
    gates = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1]], dtype=torch.bool)
    mask = torch.ones(2, 3, dtype=torch.bool)
    # instance 0: monosemantic latents; instance 1: children latents absorbed the parent (e0 + e_i)
    decoder = torch.stack([torch.eye(3), torch.tensor([[1.0, 0, 0], [0.6, 0.8, 0], [0.6, 0, 0.8]])])
    x = gates.float()
    clean = x.clone()
    absorbed = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]])
    acts = torch.stack([clean, absorbed])
    scores = absorption(directions, gates, decoder, mask, acts, n_children=2)
    assert scores.rate.tolist() == [0.0, 1.0]
    assert scores.parent_recall.tolist() == [1.0, 1.0]
    assert scores.parent_cosine.tolist() == pytest.approx([1.0, 1.0])


@pytest.mark.slow
def test_absorption_rises_with_l1_on_a_small_seeded_run():
    from superposition.sae import build_source, train_sae
    from superposition.sae.evaluate import evaluate_absorption

    config = SAEConfig(architecture="relu", n_latents=(40,), l1_coefficient=(1e-3, 1e-1), steps=1500,
                       batch_size=256, lr=3e-3, source=SourceConfig(dictionary=sae_absorption.DATA))
    scores = evaluate_absorption(train_sae(config), build_source(config))
    low, high = scores.rate.tolist()
    assert high >= low + sae_absorption.RISE


def test_saes_are_trained_once_and_read_back_while_config_and_source_match(tmp_path, monkeypatch):
    from superposition.sae import storage

    trained = []
    real = storage.train_all
    monkeypatch.setattr(storage, "train_all", lambda *a, **k: trained.extend(a[0]) or real(*a, **k))
    run = orthogonal_run()
    config = SAEConfig(architecture="topk", n_latents=(12,), k=(2,), l1_coefficient=(0.0,), steps=20,
                       batch_size=64, source=SourceConfig(kind="run", run_name="orthogonal"))
    path = tmp_path / "sae"
    first = storage.stored_or_trained(config, path, run)
    again = storage.stored_or_trained(config, path, run)
    assert len(trained) == 1 and (path / storage.METRICS).is_file()
    for name in first.params:
        assert torch.equal(first.params[name], again.params[name])
    storage.stored_or_trained(dataclasses.replace(config, steps=21), path, run)  # another config: trained
    moved = dataclasses.replace(run, params={**run.params, "b": run.params["b"] + 0.1})
    storage.stored_or_trained(dataclasses.replace(config, steps=21), path, moved)  # other toy weights: trained
    (path / storage.WEIGHTS).write_bytes(b"damaged")
    storage.stored_or_trained(dataclasses.replace(config, steps=21), path, moved)  # damaged: trained again
    assert len(trained) == 4
    storage.stored_or_trained(config, None, run)  # no store: always trained
    assert len(trained) == 5


def test_run_recipe_gives_a_storing_analysis_its_store_and_overwrite_empties_it(tmp_path):
    from superposition.experiments import get_recipe, run_recipe

    seen = []

    def analyse(runs, store=None):
        seen.append(store)
        (store / "kept").mkdir(parents=True, exist_ok=True)
        return runs

    recipe = dataclasses.replace(get_recipe("sae-absorption"), configs=lambda quick: {}, analyse=analyse,
                                 figures=lambda a: {}, claims=lambda a: [])
    run_recipe(recipe, tmp_path, quick=True, progress=False)
    assert seen == [tmp_path / "analysis"] and (tmp_path / "analysis" / "kept").is_dir()
    (tmp_path / "analysis" / "old").mkdir()
    run_recipe(recipe, tmp_path, quick=True, progress=False, overwrite=True)
    assert not (tmp_path / "analysis" / "old").exists()
