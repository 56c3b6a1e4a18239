"""The paper's experiments as recipes: `superposition run NAME`."""

from __future__ import annotations

from ..config import ConfigError
from . import (
    absolute_value,
    adversarial,
    basic,
    basic_rescaled,
    compressed_sensing,
    compression,
    confused_feature,
    correlated,
    double_descent,
    dynamics,
    geometry,
    intro,
    l1_hidden,
    loss_decomposition,
    nonuniform,
    phase_diagram,
    privileged_basis,
    sae_absorption,
    sae_recovery,
    tegum,
    uniform,
    uniform_scaling,
)
from .base import ClaimResult, Recipe, RecipeResult, run_recipe

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    intro.RECIPE,  # 1 introduction
    basic.RECIPE, basic_rescaled.RECIPE, loss_decomposition.RECIPE,  # 3 demonstrating superposition
    phase_diagram.RECIPE, confused_feature.RECIPE,  # 4 superposition as a phase change
    uniform.RECIPE, uniform_scaling.RECIPE, geometry.RECIPE, tegum.RECIPE,  # 5 the geometry of superposition
    nonuniform.RECIPE, correlated.RECIPE,
    dynamics.RECIPE,  # 6 learning dynamics
    adversarial.RECIPE,  # 7 adversarial robustness
    privileged_basis.RECIPE,  # 8 privileged basis
    absolute_value.RECIPE,  # 9 computation in superposition
    l1_hidden.RECIPE,  # 10 removing superposition
    compression.RECIPE, compressed_sensing.RECIPE,  # appendix: nonlinear compression, compressed sensing
)}
"""Every experiment, in the paper's order (the order `reproduce` runs them in), then the follow-ups."""

FOLLOW_UPS: dict[str, Recipe] = {r.name: r for r in (
    double_descent.RECIPE,  # follow-up 1: memorisation and double descent (Henighan et al. 2023)
    sae_recovery.RECIPE, sae_absorption.RECIPE,  # follow-up 2: sparse autoencoders (Sharkey et al. 2022)
)}
"""Experiments of the paper's successors: their own section of `reproduce`, after the paper's."""
RECIPES.update(FOLLOW_UPS)


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"experiment = {name!r} is invalid: must be one of {', '.join(RECIPES)}")
    return RECIPES[name]


__all__ = ["FOLLOW_UPS", "RECIPES", "ClaimResult", "Recipe", "RecipeResult", "get_recipe", "run_recipe"]
