"""A user's own `nn.Module` for one instance, trained as many instances at once with `torch.func`.

`ModelConfig.custom` is the import path of a module class (or factory) called as
``Custom(n_features, n_hidden)``. Its ``forward(x [batch, feat])`` returns ``(output [batch, feat],
hidden [batch, width])`` (a tuple, or any object with ``output`` and ``hidden`` attributes). Each
instance is built under its own seed of torch's generator (so its own initialisation is used and
reproducible); the parameters are stacked along a leading ``inst`` axis and the forward pass runs
under `torch.func.vmap` over `torch.func.functional_call`. Buffers are shared by all instances.
Loading a run of a custom model imports the same path again; where that fails, loading is refused.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..config import ConfigError, ModelConfig
from ..registry import import_object
from .base import Forward, Params
from .random import torch_seed


def build_module(model: ModelConfig, seed: int) -> nn.Module:
    """One instance of the custom module, initialised under `seed`."""
    factory = _factory(model.custom)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed(seed))
        try:
            module = factory(model.n_features, model.n_hidden)
        except Exception as exc:
            raise ConfigError(f"model.custom = {model.custom!r} is invalid: building it as "
                              f"{model.custom}({model.n_features}, {model.n_hidden}) failed "
                              f"({exc.__class__.__name__}: {exc})") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model.custom = {model.custom!r} is invalid: it built a {type(module).__name__}, "
                          "not a torch.nn.Module")
    return module


def _factory(path: str) -> Any:
    try:
        factory = import_object(path, "model.custom")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not callable(factory):
        raise ConfigError(f"model.custom = {path!r} is invalid: not a class or function")
    return factory


_TEMPLATES: dict[ModelConfig, nn.Module] = {}
"""`template`'s modules by config, which `forward` reads while torch.compile traces it: tracing into
`template` itself (an lru_cache around imports and module construction) is unsupported, and the
compiled step fell back to eager (measured on compression's bottleneck model)."""


@functools.lru_cache(maxsize=32)
def template(model: ModelConfig) -> nn.Module:
    """The module whose structure (and buffers) every instance shares; its own weights are unused."""
    module = build_module(model, 0)
    _TEMPLATES[model] = module
    return module


def param_shapes(model: ModelConfig, n_inst: int) -> dict[str, tuple[int, ...]]:
    return {name: (n_inst, *p.shape) for name, p in template(model).named_parameters()}


def init_params(model: ModelConfig, seeds: list[int]) -> Params:
    """Each instance's own initialisation, stacked: ``[inst, *shape]`` per parameter."""
    template(model)  # the shared module, built eagerly before any trace of `forward`
    per_instance = [dict(build_module(model, s).named_parameters()) for s in seeds]
    names = list(per_instance[0])
    return {n: torch.stack([p[n].detach() for p in per_instance]).float() for n in names}


def forward(model: ModelConfig, params: Params, x: Tensor) -> Forward:
    """The custom module on ``x [inst, batch, feat]``, vmapped over instances."""
    module = _TEMPLATES.get(model) if torch.compiler.is_compiling() else None
    if module is None:  # eagerly; compiled, only where nothing built the template before the trace
        module = template(model)
    buffers = dict(module.named_buffers())

    def one(p: Params, xi: Tensor) -> tuple[Tensor, Tensor]:
        return _unpack(functional_call(module, (p, buffers), (xi,)), model)

    output, hidden = vmap(one)(params, x)
    return Forward(output, output, hidden)


def _unpack(result: Any, model: ModelConfig) -> tuple[Tensor, Tensor]:
    if isinstance(result, tuple) and len(result) == 2:
        return result[0], result[1]
    if hasattr(result, "output") and hasattr(result, "hidden"):
        return result.output, result.hidden
    raise ConfigError(f"model.custom = {model.custom!r} is invalid: forward must return (output, hidden), "
                      f"got {type(result).__name__}")


def check_shapes(model: ModelConfig, params: Params) -> None:
    """Refuse a module whose forward returns the wrong shapes, naming what it returned."""
    n = model.n_features
    probe = torch.zeros(next(iter(params.values())).shape[0], 3, n, device=next(iter(params.values())).device)
    try:
        out = forward(model, params, probe)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"model.custom = {model.custom!r} is invalid: its forward failed on x [batch, {n}] "
                          f"({exc.__class__.__name__}: {exc})") from None
    inst = probe.shape[0]
    if tuple(out.output.shape) != (inst, 3, n):
        raise ConfigError(f"model.custom = {model.custom!r} is invalid: forward(x [3, {n}]) must return an "
                          f"output [3, {n}], got {list(out.output.shape[1:])}")
    if out.hidden.dim() != 3 or out.hidden.shape[1] != 3:
        raise ConfigError(f"model.custom = {model.custom!r} is invalid: forward(x [3, {n}]) must return hidden "
                          f"activations [3, width], got {list(out.hidden.shape[1:])}")


def feature_directions(params: Params, model: ModelConfig) -> Tensor:
    """``[inst, feat, hidden]`` from a parameter named W or W1 of shape [feat, hidden] (or W_enc)."""
    n = model.n_features
    for name in ("W", "W1", "W_enc"):
        w = params.get(name)
        if w is not None and w.dim() == 3 and w.shape[1] == n:
            return w
        if w is not None and w.dim() == 3 and w.shape[2] == n:  # nn.Linear layout [hidden, feat]
            return w.transpose(1, 2)
    raise ValueError(f"model.custom = {model.custom!r}: the analysis needs the feature directions, a parameter "
                     f"named W, W1 or W_enc of shape [{n}, hidden] (or [hidden, {n}]); the module has "
                     f"{', '.join(params)}")
