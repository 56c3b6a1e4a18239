"""One adapter that lets every figure take a `Run` (or a run directory) in place of the tensors and
lists it would otherwise be given.

``intro_figure(run)`` is ``intro_figure(run.W, run.metrics.feature_probability, run.importance)``;
``basic_figure({"linear": run_a, "relu": run_b})`` takes the (W, b) of each run and the
probabilities of the first. The run fills the figure's leading parameters that it knows (below, by
name) up to the first it cannot fill or has no value for; arguments given after it bind to the
parameters that follow, and a keyword always wins over the run's value.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .style import sparsity_label

F = TypeVar("F", bound=Callable[..., Any])


def _provide(run, name: str) -> Any:
    """The value of figure parameter `name` taken from `run`, or None where the run has none."""
    m = run.metrics
    values = {
        "W": lambda: run.W,
        "feature_probability": lambda: list(m.feature_probability),
        "importance": lambda: run.importance,
        "models": lambda: {run.config.model.kind: (run.W, run.b)},
        "steps": lambda: list(m.loss_steps),
        "curves": lambda: [list(c) for c in m.loss_curve],
        "labels": lambda: [sparsity_label(p, short=True).replace("\n", ", ") for p in m.feature_probability],
        "set_size": lambda: run.config.data.set_size,
    }
    return values[name]() if name in values else None


def is_run_like(value: Any) -> bool:
    """A `Run`, or a path (str or path-like) naming a run directory."""
    from ..run import Run

    return isinstance(value, Run | str | os.PathLike)


def as_run(value: Any):
    """`value` as a `Run`: a Run is returned as it is, a path is loaded with `load_run` (which
    raises `RunDirError` naming the path when it is not a complete run directory)."""
    from ..run import Run, load_run

    return value if isinstance(value, Run) else load_run(value)


def _models_of(models: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """label → Run (or run directory) becomes label → (W, b); returns it and the first run."""
    runs = {label: as_run(v) if is_run_like(v) else v for label, v in models.items()}
    first = next((r for r in runs.values() if not isinstance(r, tuple)), None)
    return {k: v if isinstance(v, tuple) else (v.W, v.b) for k, v in runs.items()}, first


def accepts_run(fn: F) -> F:
    """Decorate a figure function so that its first argument may be a `Run` or a run directory
    (and, for a ``models`` mapping, each of its values)."""
    leading = [p.name for p in inspect.signature(fn).parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not args:
            return fn(*args, **kwargs)
        first, rest = args[0], args[1:]
        if leading[0] == "models" and isinstance(first, Mapping):
            models, run = _models_of(first)
            if run is None:
                return fn(*args, **kwargs)
            return fn(models, **_bind(run, leading[1:], rest, kwargs))
        if not is_run_like(first):
            return fn(*args, **kwargs)
        return fn(**_bind(as_run(first), leading, rest, kwargs))

    return wrapper  # type: ignore[return-value]


def _bind(run, names: list[str], rest: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments: the run's values for the leading `names` it can fill (a keyword given
    wins), then `rest` bound, in order, to the names after those."""
    bound = dict(kwargs)
    n = 0
    for name in names:
        if name not in kwargs:
            value = _provide(run, name)
            if value is None:
                break
            bound[name] = value
        n += 1
    after = names[n:]
    if len(rest) > len(after):
        raise TypeError(f"too many positional arguments after the run: {len(rest)} given, {len(after)} expected")
    for name, value in zip(after, rest, strict=False):
        if name in kwargs:
            raise TypeError(f"{name} given both positionally and as a keyword")
        bound[name] = value
    return bound
