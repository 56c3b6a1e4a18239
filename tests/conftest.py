import pytest

import superposition as sp


def small_config(kind: str = "relu_output", n: int = 5, m: int = 2, probs=(1.0, 0.1), steps: int = 50,
                 restarts: int = 1, **train_kw) -> sp.RunConfig:
    """A run that trains in well under a second."""
    return sp.RunConfig(
        model=sp.ModelConfig(kind, n, m),
        data=sp.DataConfig(feature_probability=probs, importance_decay=0.9, signed=kind == "abs_mlp"),
        train=sp.TrainConfig(steps=steps, batch_size=64, restarts=restarts, log_every=10, eval_batches=2, **train_kw),
    )


@pytest.fixture
def tiny():
    return small_config
