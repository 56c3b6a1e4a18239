"""A tiny reproduction (two real recipes shrunk to seconds, plus one that fails) shared by the
reproduce, report and browser tests."""

from dataclasses import replace
from pathlib import Path

import pytest

from superposition import experiments
from superposition.experiments import basic, intro
from superposition.reproduce import reproduce


def _shrink(recipe, steps: int):
    def configs(quick):
        return {k: replace(v, train=replace(v.train, steps=steps, restarts=1, log_every=20))
                for k, v in recipe.configs(quick).items()}

    return replace(recipe, configs=configs)


def _broken(quick):
    raise RuntimeError("deliberate failure")


TINY = {"intro": _shrink(intro.RECIPE, 200), "basic": _shrink(basic.RECIPE, 100),
        "broken": replace(intro.RECIPE, name="broken", section="9 Broken on purpose", configs=_broken)}


def tiny_reproduction(out: Path, **kwargs):
    """Run the tiny recipes into `out` (the registry is swapped for the duration)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiments, "RECIPES", dict(TINY))
        mp.setattr("superposition.reproduce.RECIPES", experiments.RECIPES)
        mp.setattr("superposition.report.RECIPES", experiments.RECIPES)
        kwargs.setdefault("jobs", 1)  # worker processes would not see the swapped registry
        return reproduce(out, quick=True, compile=False, progress=False, **kwargs)
