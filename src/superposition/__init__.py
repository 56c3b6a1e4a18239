"""superposition: train, analyse and draw toy models of superposition (Elhage et al., 2022)."""

__version__ = "0.1.0"

from .config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from .models import ToyModel  # noqa: E402
from .run import Run, RunDirError, load_run, save_run  # noqa: E402
from .train import evaluate, train  # noqa: E402

__all__ = [
    "ConfigError", "DataConfig", "ModelConfig", "Run", "RunConfig", "RunDirError", "ToyModel",
    "TrainConfig", "__version__", "evaluate", "load_run", "save_run", "train",
]
