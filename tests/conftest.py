"""Test-wide setup. The shape annotations of superposition.analysis (jaxtyping, e.g.
``Float[Tensor, "*inst feat hidden"]``) are checked at test time: the import hook below decorates every
function of the package's analysis modules with jaxtyping + beartype before anything imports them, so a
tensor of the wrong rank, dtype or inconsistent sizes fails the test that passed it."""

import os

from jaxtyping import install_import_hook

import tests.typecheck  # noqa: F401 - the hook's decorator is looked up as tests.typecheck.beartype_tower

install_import_hook("superposition.analysis", "tests.typecheck.beartype_tower")

import pytest  # noqa: E402

# No background compiles from the tests' runs (nor from the CLI processes they start): they would
# outlive the test and load the cores; tests/test_compiling.py turns them on where it tests them.
os.environ["SUPERPOSITION_BACKGROUND_COMPILE"] = "0"

import superposition as sp  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One worker process per core (the README's `-n auto`): one torch thread each, or they oversubscribe.
    import torch  # noqa: E402

    torch.set_num_threads(1)


def unchecked(fn):
    """`fn` without the test-time shape check: for tests of the function's own error messages, which are
    what a user sees (the annotations are not enforced outside the tests)."""
    return getattr(fn, "__wrapped__", fn)


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
