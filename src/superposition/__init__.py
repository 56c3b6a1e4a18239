"""superposition: train, analyse and draw toy models of superposition (Elhage et al., 2022)."""

__version__ = "0.1.0"

import importlib  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from .config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from .models import ToyModel  # noqa: E402
from .registry import (  # noqa: E402
    register_activation,
    register_distribution,
    register_loss,
    register_target,
)
from .run import Run, RunDirError, load_run, save_run  # noqa: E402
from .train import evaluate, train  # noqa: E402

if TYPE_CHECKING:
    from .sweep import Axis, SweepSpec, load_sweep, run_sweep

_SWEEP_API = ("Axis", "SweepSpec", "load_sweep", "run_sweep")

__all__ = [
    "Axis", "ConfigError", "DataConfig", "ModelConfig", "Run", "RunConfig", "RunDirError", "SweepSpec", "ToyModel",
    "TrainConfig", "__version__", "evaluate", "load_run", "load_sweep", "register_activation", "register_distribution",
    "register_loss", "register_target", "run_sweep", "save_run", "train",
]


def __getattr__(name: str) -> Any:
    """The sweep API, imported on first use: it brings pandas, which would add ~0.35 s to every
    ``import superposition``."""
    if name in _SWEEP_API:
        return getattr(importlib.import_module(".sweep", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SWEEP_API})
