"""The toy models, instance axis first: pure functions plus a thin `nn.Module`.

Three implementations behind one interface (`param_shapes`, `init_params`, `forward`):

- `fused`: the paper's four kinds with hand-written gradients (the fast training path);
- `composed`: any combination of parts in `ModelConfig` (tied or not, biases, activations, an
  identity-initialised hidden layer, a fixed embedding), differentiated by autograd;
- `custom`: a user's own `nn.Module` for one instance, stacked over instances with `torch.func`.

`forward(model, params, x)` takes a `ModelConfig` (or, for the paper's kinds, the kind's name).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..config import MODEL_KINDS, ConfigError, ModelConfig
from ..registry import TARGETS
from . import composed, custom, fused
from .base import Forward, LossAndGrads, Params, instance_loss
from .fused import gradient_fn, loss_and_grads, loss_and_grads_sparse, loss_and_grads_unrolled

__all__ = [
    "FROZEN", "Forward", "LossAndGrads", "Params", "ToyModel", "feature_directions", "forward", "gradient_fn",
    "init_params", "instance_loss", "loss_and_grads", "loss_and_grads_sparse", "loss_and_grads_unrolled",
    "param_shapes", "readout", "target", "trainable",
]

FROZEN = composed.FROZEN


def _config(model: ModelConfig | str) -> ModelConfig:
    return ModelConfig(model) if isinstance(model, str) else model


def param_shapes(model: ModelConfig | str, n_inst: int) -> dict[str, tuple[int, ...]]:
    """Name → shape of every parameter of `model` with `n_inst` instances."""
    model = _config(model)
    return custom.param_shapes(model, n_inst) if model.custom else composed.param_shapes(model, n_inst)


def init_params(model: ModelConfig | str, seeds: list[int]) -> Params:
    """Initial parameters of one instance per seed; each instance from its own generator, so neither
    values nor scale depend on the other instances."""
    model = _config(model)
    if model.custom:
        params = custom.init_params(model, seeds)
        custom.check_shapes(model, params)
        return params
    return composed.init_params(model, seeds)


def forward(model: ModelConfig | str, params: Params, x: Tensor) -> Forward:
    """Run `model` on ``x [inst, batch, feat]``."""
    if isinstance(model, str):
        return fused.forward(model, params, x)
    if model.custom:
        return custom.forward(model, params, x)
    if model.fused_kind is not None:
        return fused.forward(model.fused_kind, params, x)
    return composed.forward(model, params, x)


def readout(model: ModelConfig, params: Params, hidden: Tensor) -> Tensor:
    """The output ``[inst, batch, feat]`` from the hidden layer ``[inst, batch, hidden]`` (what
    `forward` does after it), for every model but a custom module, whose forward is one piece."""
    if model.custom:
        raise ConfigError(f"model.custom = {model.custom!r}: a custom module's forward cannot be entered at its "
                          "hidden layer, so nothing can be spliced in there")
    return composed.readout(model, params, hidden)


def target(name: str, x: Tensor) -> Tensor:
    """What the model must reproduce: a paper kind's target (|x| for abs_mlp, else x) or a target's name
    (identity, abs, x_plus_relu, registered or 'module:function')."""
    if name in MODEL_KINDS:
        return fused.target(name, x)
    return TARGETS.get(name)(x)


def trainable(params: Params) -> Params:
    """The parameters the optimiser updates (all but the fixed embedding)."""
    return {k: v for k, v in params.items() if k not in FROZEN}


def feature_directions(model: ModelConfig | str, params: Params) -> Tensor:
    """Each feature's direction in the hidden space, ``[inst, feat, hidden]`` (the paper's W_i as rows)."""
    model = _config(model)
    if model.custom:
        return custom.feature_directions(params, model)
    return composed.feature_directions(params)


class ToyModel(nn.Module):
    """A batch of toy models as an `nn.Module`: ``model(x [inst, batch, feat]) -> [inst, batch, feat]``.

    Built by `load_run` and `Run.model`; parameters are the same tensors as in the run's weights.
    """

    def __init__(self, config: ModelConfig, params: Params):
        super().__init__()
        self.config = config
        self.kind = config.kind
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value.detach().clone(), requires_grad=name not in FROZEN))

    @property
    def n_instances(self) -> int:
        return next(iter(self.parameters())).shape[0]

    def params(self) -> Params:
        return dict(self.named_parameters())

    def extra_repr(self) -> str:
        c = self.config
        what = f"custom={c.custom}" if c.custom else f"kind={c.kind}"
        return f"{what}, n_instances={self.n_instances}, n_features={c.n_features}, n_hidden={c.n_hidden}"

    def forward(self, x: Tensor) -> Tensor:
        return forward(self.config, self.params(), x).output
