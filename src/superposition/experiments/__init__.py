"""The paper's experiments as recipes: `superposition run NAME`."""

from __future__ import annotations

from ..config import ConfigError
from . import basic, intro
from .base import ClaimResult, Recipe, RecipeResult, run_recipe

RECIPES: dict[str, Recipe] = {r.name: r for r in (intro.RECIPE, basic.RECIPE)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"experiment = {name!r} is invalid: must be one of {', '.join(RECIPES)}")
    return RECIPES[name]


__all__ = ["RECIPES", "ClaimResult", "Recipe", "RecipeResult", "get_recipe", "run_recipe"]
