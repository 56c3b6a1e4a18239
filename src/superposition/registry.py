"""Named parts a config can refer to: activations, targets, losses and feature distributions.

A config names a part by a string, so it stays JSON and never pickles code. A name is either
registered (the built-ins below, or a user's `register_activation("mine", fn)` in the same process)
or an import path ``"package.module:attribute"``, which any later process can resolve again, so a
saved run that uses it loads wherever the definition is importable, and is refused with a clear
message where it is not.

Contracts (shapes with the instance axis first):

- activation: ``fn(z [inst, batch, width]) -> [inst, batch, width]``, elementwise or along the last axis.
- target: ``fn(x [inst, batch, feat]) -> [inst, batch, feat]``, what the model must reproduce.
- loss: ``fn(output, goal, importance [inst, feat]) -> [inst]``, the per-instance loss.
- distribution: ``fn(stream: superposition.data.Stream, batch: int, probability [inst, feat])
  -> x [inst, batch, feat]`` (draw every random number from `stream`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from .config import ConfigError


class Registry:
    """Name → callable, with "module:attr" import paths accepted as names."""

    def __init__(self, what: str, builtins: dict[str, Callable[..., Any]]):
        self.what = what
        self._items = dict(builtins)
        self._builtin = frozenset(builtins)

    def register(self, name: str, fn: Callable[..., Any], *, overwrite: bool = False) -> None:
        if not isinstance(name, str) or not name or ":" in name:
            raise ValueError(f"{self.what} name {name!r} is invalid: a non-empty string without ':'")
        if name in self._builtin:
            raise ValueError(f"{self.what} {name!r} is built in and cannot be replaced")
        if name in self._items and not overwrite:
            raise ValueError(f"{self.what} {name!r} is already registered; pass overwrite=True to replace it")
        if not callable(fn):
            raise ValueError(f"{self.what} {name!r}: {fn!r} is not callable")
        self._items[name] = fn

    def add_builtin(self, name: str, fn: Callable[..., Any]) -> None:
        self._items[name] = fn
        self._builtin = self._builtin | {name}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def is_known(self, name: Any) -> bool:
        """Registered, or shaped like an import path (resolved, and checked, when used)."""
        return isinstance(name, str) and (name in self._items or is_import_path(name))

    def allowed(self) -> str:
        return f"one of {', '.join(self._items)}, or an import path 'package.module:name'"

    def get(self, name: str) -> Callable[..., Any]:
        if name in self._items:
            return self._items[name]
        if is_import_path(name):
            return import_object(name, self.what)
        raise ConfigError(f"{self.what} {name!r} is unknown: must be {self.allowed()}")


def is_import_path(name: str) -> bool:
    module, _, attr = name.partition(":")
    return bool(module) and bool(attr) and all(p.isidentifier() for p in module.split(".") + attr.split("."))


def import_path_of(obj: Any) -> str:
    """The "module:qualname" under which `obj` can be imported again."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError(f"{obj!r} has no import path: define it at the top level of a module")
    return f"{module}:{qualname}"


def import_object(path: str, what: str = "object") -> Any:
    """Import "module:attr.sub"; every failure is a ValueError that names the path."""
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # an ImportError, or the module failing as it runs
        raise ConfigError(f"{what} {path!r} cannot be imported here ({exc.__class__.__name__}: {exc}); "
                         "install or import its module first") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what} {path!r} cannot be imported here: module {module_name!r} has no "
                             f"attribute {attr!r}") from None
    return obj


# --- built-in parts ---------------------------------------------------------------------------


def solu(z: Tensor) -> Tensor:
    """SoLU with its LayerNorm (Elhage et al., 2022, "Softmax Linear Units"): LN(z · softmax(z))."""
    y = z * torch.softmax(z, dim=-1)
    return F.layer_norm(y, y.shape[-1:])


ACTIVATIONS = Registry("activation", {
    "identity": lambda z: z,
    "relu": torch.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "solu": solu,
})

TARGETS = Registry("target", {
    "identity": lambda x: x,
    "abs": torch.abs,
    # The compressed-computation benchmark of parameter-decomposition work: y = x + ReLU(x).
    "x_plus_relu": lambda x: x + torch.relu(x),
})


def weighted_mse(output: Tensor, goal: Tensor, importance: Tensor) -> Tensor:
    """Importance-weighted squared error, mean over batch and features: ``[inst]``."""
    return (importance.unsqueeze(1) * (output - goal) ** 2).mean(dim=(1, 2))


def weighted_mae(output: Tensor, goal: Tensor, importance: Tensor) -> Tensor:
    """Importance-weighted absolute error, mean over batch and features: ``[inst]``."""
    return (importance.unsqueeze(1) * (output - goal).abs()).mean(dim=(1, 2))


LOSSES = Registry("loss", {"mse": weighted_mse, "mae": weighted_mae})

# Samplers; `superposition.data` adds the built-in ones when it is imported.
DISTRIBUTIONS = Registry("distribution", {})


def register_activation(name: str, fn: Callable[[Tensor], Tensor], *, overwrite: bool = False) -> None:
    """Make `fn` usable as ``hidden_activation`` / ``output_activation = name`` in this process."""
    ACTIVATIONS.register(name, fn, overwrite=overwrite)


def register_target(name: str, fn: Callable[[Tensor], Tensor], *, overwrite: bool = False) -> None:
    """Make `fn` usable as ``train.target = name`` in this process."""
    TARGETS.register(name, fn, overwrite=overwrite)


def register_distribution(name: str, fn: Callable[..., Tensor], *, overwrite: bool = False) -> None:
    """Make the sampler `fn(stream, batch, probability) -> x [inst, batch, feat]` usable as
    ``data.distribution = name`` in this process (see `superposition.data.Stream`)."""
    DISTRIBUTIONS.register(name, fn, overwrite=overwrite)


def register_loss(name: str, fn: Callable[[Tensor, Tensor, Tensor], Tensor], *, overwrite: bool = False) -> None:
    """Make `fn` usable as ``train.loss = name`` in this process."""
    LOSSES.register(name, fn, overwrite=overwrite)

