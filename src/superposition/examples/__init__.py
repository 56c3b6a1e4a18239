"""Sweep specs shipped with the package, so an installed wheel can run them without a checkout.

``superposition sweep --example phase`` runs ``phase-sweep.json``; :func:`example_path` finds the file
(the repository's top-level ``examples/`` is a link to this folder).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..config import ConfigError

_SUFFIX = "-sweep"


def example_names() -> list[str]:
    """The names ``--example`` accepts: each spec file's name without ``-sweep`` and its extension."""
    return sorted(p.name.split(".")[0].removesuffix(_SUFFIX) for p in _specs())


def example_path(name: str) -> Path:
    """The shipped sweep spec called `name` (e.g. ``"phase"``); a ConfigError names the ones there are."""
    for spec in _specs():
        if spec.name.split(".")[0].removesuffix(_SUFFIX) == name:
            return spec
    raise ConfigError(f"--example {name!r} is not a shipped example: must be one of {', '.join(example_names())}")


def _specs() -> list[Path]:
    folder = Path(str(resources.files(__name__)))
    return sorted(p for p in folder.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
