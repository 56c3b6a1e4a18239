# ruff: noqa: N803 - W is the paper's name for the embedding matrix
"""Weights and inputs from ARENA's superposition chapter and tms-kit, in this package's layout.

Their toy model keeps ``W [inst, hidden, feat]`` (the paper's m×n matrix per instance) and
``b_final [inst, feat]``, and batches inputs as ``x [batch, inst, feat]``. Here the instance axis
comes first everywhere and a feature is a row: ``W [inst, feat, hidden]``, ``b [inst, feat]``,
``x [inst, batch, feat]``. The converters only move axes (the models compute the same function:
``ReLU(WᵀW x + b)`` in the paper's notation); `run_from_arena` wraps converted weights in a `Run`, so
every analysis and figure of the package applies to a model trained elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from .config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from .run import Metrics, Run

TIED_KINDS = ("linear", "relu_output", "relu_hidden")
"""The models that share ARENA's parameters (one W, tied, and an output bias)."""


def params_from_arena(W: Float[Tensor, "inst hidden feat"], b_final: Float[Tensor, "inst feat"]) -> dict[str, Tensor]:
    """ARENA / tms-kit ``W [inst, hidden, feat]`` and ``b_final [inst, feat]`` as this package's
    params ``{"W": [inst, feat, hidden], "b": [inst, feat]}`` (detached float32 copies)."""
    W, b = torch.as_tensor(W), torch.as_tensor(b_final)
    if W.ndim != 3 or b.ndim != 2 or b.shape != (W.shape[0], W.shape[2]):
        raise ValueError(f"expected W [inst, hidden, feat] and b_final [inst, feat]; got W {tuple(W.shape)}, "
                         f"b_final {tuple(b.shape)}")
    return {"W": W.detach().transpose(1, 2).float().contiguous(), "b": b.detach().float().clone()}


def params_to_arena(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """This package's ``{"W": [inst, feat, hidden], "b": [inst, feat]}`` as ARENA's
    ``{"W": [inst, hidden, feat], "b_final": [inst, feat]}``."""
    if "W" not in params or "b" not in params:
        raise ValueError(f"expected params with W and b (a tied model), got {sorted(params)}")
    return {"W": params["W"].detach().transpose(1, 2).contiguous(), "b_final": params["b"].detach().clone()}


def inputs_from_arena(x: Float[Tensor, "batch inst feat"]) -> Float[Tensor, "inst batch feat"]:
    """ARENA's batch ``[batch, inst, feat]`` in this package's order ``[inst, batch, feat]``."""
    return torch.as_tensor(x).transpose(0, 1)


def inputs_to_arena(x: Float[Tensor, "inst batch feat"]) -> Float[Tensor, "batch inst feat"]:
    """This package's ``[inst, batch, feat]`` in ARENA's order ``[batch, inst, feat]``."""
    return torch.as_tensor(x).transpose(0, 1)


def _per_instance(values: Tensor | Sequence[float] | float, n_inst: int, n_feat: int, name: str) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float64)
    try:
        return t.expand(n_inst, n_feat) if t.ndim < 2 else t.reshape(n_inst, n_feat)
    except RuntimeError:
        raise ValueError(f"{name} has shape {tuple(t.shape)}: must broadcast to [inst, feat] = "
                         f"[{n_inst}, {n_feat}]") from None


def _row(values: Tensor) -> float | tuple[float, ...]:
    row = tuple(round(float(v), 12) for v in values)
    return row[0] if all(v == row[0] for v in row) else row


def run_from_arena(W: Float[Tensor, "inst hidden feat"], b_final: Float[Tensor, "inst feat"],
                   feature_probability: Tensor | Sequence[float] | float,
                   importance: Tensor | Sequence[float] | float = 1.0, *, kind: str = "relu_output",
                   steps: int = 0, name: str = "arena") -> Run:
    """A model trained with ARENA-style code as a `Run` of this package, scored on its own data.

    **Arguments:**
    - ``W [inst, hidden, feat]``, ``b_final [inst, feat]``: their parameters.
    - ``feature_probability``, ``importance``: what it was trained on, broadcastable to
      ``[inst, feat]`` (ARENA's ``feature_probability [inst, feat]`` and ``importance [inst, feat]``).
    - ``kind``: which of this package's models computes their forward pass (relu_output is
      ARENA's ``Model``; linear and relu_hidden share the parameters).
    - ``steps``: how long it was trained (recorded in the config only).

    **Returns:** a `Run` whose config describes the data, whose ``metrics.final_loss`` is this
    package's evaluation loss of each instance, and with no loss curve (``path`` is None).
    """
    if kind not in TIED_KINDS:
        raise ConfigError(f"kind = {kind!r} is invalid: must be one of {', '.join(TIED_KINDS)} (ARENA's tied models)")
    from .train import evaluate

    params = params_from_arena(W, b_final)
    n_inst, n_feat, n_hidden = params["W"].shape
    p = _per_instance(feature_probability, n_inst, n_feat, "feature_probability")
    imp = _per_instance(importance, n_inst, n_feat, "importance")
    config = RunConfig(
        model=ModelConfig(kind, n_features=n_feat, n_hidden=n_hidden),
        data=DataConfig(feature_probability=tuple(_row(r) for r in p),
                        importance=tuple(tuple(float(v) for v in r) for r in imp)),
        train=TrainConfig(steps=max(int(steps), 1)),
        name=name,
    )
    loss = evaluate(config, params).tolist()
    probs = [list(r) if isinstance(r, tuple) else r for r in config.data.feature_probability]
    metrics = Metrics(final_loss=loss, loss_steps=[], loss_curve=[[] for _ in loss],
                      config_index=list(range(n_inst)), restart=[0] * n_inst, feature_probability=probs,
                      restart_losses=[[v] for v in loss])
    return Run(config=config, params=params, metrics=metrics, provenance={"source": "arena"})
