"""A sweep's spec: `Axis`, `SweepSpec`, reading them from JSON/YAML, and a grid point's config.

`SweepSpec` validates itself on construction (every axis value is tried on the base), raising
`ConfigError` that names the field and the value.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .. import guard
from ..config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, _freeze
from ..errors import read_bytes, read_json

_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
FIELDS: dict[str, str] = {f.name: s for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)}
"""Every sweepable config field → its section."""
PACKED = ("feature_probability", "importance", "importance_decay", "l1_hidden")
"""Fields that may differ between the configurations of one run, hence between the points of a chunk."""
_LISTS = ("feature_probability", "importance", "betas")  # fields an axis may index: importance[1]
_FIELD = re.compile(r"^(?:(model|data|train)\.)?([a-z_0-9]+)(?:\[(\d+)\])?$")


def canonical_field(name: str) -> str:
    """The column name of a config field: ``data.importance[1]`` → ``importance[1]``; ``feature_probability`` → ``p``.

    Raises ConfigError for names that are not sweepable config fields."""
    match = _FIELD.match(str(name).strip())
    section, base, index = match.groups() if match else (None, None, None)
    base = "feature_probability" if base == "p" else base
    if base not in FIELDS or (section and FIELDS[base] != section) or (index and base not in _LISTS):
        raise ConfigError(f"axis field {name!r} is invalid: must be a config field such as p, importance[1], seed, "
                          f"n_hidden, lr (any of model.*, data.*, train.*; [i] only on {', '.join(_LISTS)})")
    short = "p" if base == "feature_probability" else base
    return f"{short}[{int(index)}]" if index else short


def _target(field: str) -> tuple[str, str, int | None]:
    """(section, field name, element index or None) of a canonical axis field."""
    base, _, index = field.partition("[")
    base = "feature_probability" if base == "p" else base
    return FIELDS[base], base, int(index[:-1]) if index else None


def _round(value: float) -> float:
    return float(f"{value:.10g}")


@dataclass(frozen=True)
class Axis:
    """One swept field and its values (one value per grid point along this axis)."""

    field: str
    """A config field: ``p``, ``seed``, ``n_hidden``, ``data.importance[1]`` (element 1 of the list) ..."""
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", canonical_field(self.field))
        values = _freeze(list(self.values) if isinstance(self.values, (list, tuple, range)) else self.values)
        if not isinstance(values, tuple) or not values:
            raise ConfigError(f"axis {self.field}: values = {self.values!r} is invalid: must be a non-empty list")
        object.__setattr__(self, "values", values)

    @classmethod
    def linear(cls, field: str, start: float, stop: float, num: int) -> Axis:
        """`num` evenly spaced values from `start` to `stop` inclusive."""
        _check_ends(field, "linear", start, stop)
        _check_num(field, num)
        return cls(field, tuple(_round(start + (stop - start) * i / max(num - 1, 1)) for i in range(num)))

    @classmethod
    def log(cls, field: str, start: float, stop: float, num: int) -> Axis:
        """`num` log-spaced values from `start` to `stop` inclusive (both > 0)."""
        _check_ends(field, "log", start, stop)
        _check_num(field, num)
        if not (start > 0 and stop > 0):
            raise ConfigError(f"axis {field}: log range {start!r} … {stop!r} is invalid: both ends must be > 0")
        a, b = math.log10(start), math.log10(stop)
        return cls(field, tuple(_round(10 ** (a + (b - a) * i / max(num - 1, 1))) for i in range(num)))

    @classmethod
    def range(cls, field: str, start: int, stop: int | None = None, step: int = 1) -> Axis:
        """Integers like Python's range (seeds: ``Axis.range("seed", 10)`` is 0 … 9)."""
        args = (start,) if stop is None else (start, stop, step)
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args) or step == 0:
            raise ConfigError(f"axis {field}: range = {list(args)!r} is invalid: must be integers [stop] or "
                              "[start, stop] or [start, stop, step] with step != 0")
        first, last, by = (0, args[0], 1) if len(args) == 1 else args
        guard.check_sweep_points(max(0, -(-(last - first) // by)), f"axis {field}")  # len() overflows past 2**63
        return cls(field, tuple(range(*args)))

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "values": _jsonable(self.values)}

    @classmethod
    def from_dict(cls, raw: Any) -> Axis:
        """``{"field": F, "values": [...]}``, or ``"linear"``/``"log": [start, stop, num]``, or ``"range": [...]``."""
        kinds = ("values", "linear", "log", "range")
        given = [k for k in kinds if isinstance(raw, dict) and k in raw]
        if not isinstance(raw, dict) or "field" not in raw or len(given) != 1 or set(raw) - {"field", *kinds}:
            raise ConfigError(f"axis {raw!r} is invalid: must be {{\"field\": NAME, and one of {', '.join(kinds)}}}")
        kind, args = given[0], raw[given[0]]
        if kind == "values":
            return cls(raw["field"], args)
        sizes = (1, 2, 3) if kind == "range" else (3,)
        if not isinstance(args, list) or len(args) not in sizes:
            raise ConfigError(f"axis {raw['field']}: {kind} = {args!r} is invalid: must be [start, stop, num]"
                              if kind != "range" else f"axis {raw['field']}: range = {args!r} is invalid: must be "
                              "[stop], [start, stop] or [start, stop, step]")
        return getattr(cls, kind)(raw["field"], *args)


def _check_num(field: str, num: Any) -> None:
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ConfigError(f"axis {field}: num = {num!r} is invalid: must be an integer >= 1")
    guard.check_sweep_points(num, f"axis {field}")


def _check_ends(field: str, kind: str, *ends: Any) -> None:
    for end in ends:
        if isinstance(end, bool) or not isinstance(end, (int, float)) or not math.isfinite(end):
            raise ConfigError(f"axis {field}: {kind} range end {end!r} is invalid: must be a finite number")


@dataclass(frozen=True)
class SweepSpec:
    """A base config and the axes swept over it: the whole description of a sweep."""

    base: RunConfig
    """One model configuration: a single feature probability, one importance list, one l1_hidden."""
    axes: tuple[tuple[Axis, ...], ...] = ()
    """Groups of axes; the axes of a group are zipped (equal lengths), the groups crossed. An `Axis`
    given on its own is a group of one."""
    name: str = "sweep"
    chunk_size: int | None = None
    """Models (instances, counting restarts) per chunk; None: chosen from model size and free memory."""

    def __post_init__(self) -> None:
        groups = tuple((g,) if isinstance(g, Axis) else tuple(g) for g in self.axes)
        object.__setattr__(self, "axes", groups)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(self.name)):
            raise ConfigError(f"sweep name = {self.name!r} is invalid: use letters, digits, '_', '-', '.'")
        if self.chunk_size is not None and (isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int)
                                            or self.chunk_size < 1):
            raise ConfigError(f"chunk_size = {self.chunk_size!r} is invalid: must be an integer >= 1 or null")
        _check_axes(groups)
        _check_base(self.base)
        guard.check_sweep_points(self.n_points)
        for axis in self.axis_list:
            for value in axis.values:
                _point_or_fail(self.base, {axis.field: value})

    @property
    def axis_list(self) -> list[Axis]:
        return [a for group in self.axes for a in group]

    @property
    def shape(self) -> tuple[int, ...]:
        """Points along each group of axes."""
        return tuple(len(g[0].values) for g in self.axes)

    @property
    def n_points(self) -> int:
        return math.prod(self.shape)

    def points(self) -> Iterator[dict[str, Any]]:
        """Every grid point as {axis field: value}, row-major (the last group varies fastest)."""
        for idx in itertools.product(*(range(n) for n in self.shape)):
            yield {a.field: a.values[i] for group, i in zip(self.axes, idx, strict=True) for a in group}

    def config(self, point: int | dict[str, Any]) -> RunConfig:
        """The standalone RunConfig of a grid point (by index or values): training it alone gives that model."""
        values = next(itertools.islice(self.points(), point, None)) if isinstance(point, int) else point
        return _point_or_fail(self.base, values)

    def to_dict(self) -> dict[str, Any]:
        axes = [g[0].to_dict() if len(g) == 1 else {"zip": [a.to_dict() for a in g]} for g in self.axes]
        return {"name": self.name, "base": self.base.to_dict(), "axes": axes, "chunk_size": self.chunk_size}

    @classmethod
    def from_dict(cls, raw: Any) -> SweepSpec:
        if not isinstance(raw, dict) or set(raw) - {"name", "base", "axes", "chunk_size"}:
            raise ConfigError("a sweep spec must be an object with keys name, base, axes, chunk_size; "
                              f"got {sorted(raw) if isinstance(raw, dict) else type(raw).__name__}")
        axes = raw.get("axes", [])
        if not isinstance(axes, list):
            raise ConfigError(f"axes = {axes!r} is invalid: must be a list of axes")
        groups = [tuple(Axis.from_dict(a) for a in _zip_members(g)) if isinstance(g, dict) and "zip" in g
                  else Axis.from_dict(g) for g in axes]
        return cls(RunConfig.from_dict(raw.get("base", {})), tuple(groups), raw.get("name", "sweep"),
                   raw.get("chunk_size"))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SweepSpec:
        """Read a spec from JSON, or YAML (``.yaml``/``.yml``)."""
        path = Path(path)
        where = f"sweep spec {path}"
        if path.suffix not in (".yaml", ".yml"):
            try:
                return cls.from_dict(read_json(path, what="sweep spec"))
            except FileNotFoundError:
                raise ConfigError(f"{where}: unreadable (no such file)") from None
            except ConfigError as exc:
                raise ConfigError(_prefixed(str(exc), where)) from None
        try:
            text = read_bytes(path, what="sweep spec").decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{where}: unreadable (no such file)") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}: unreadable, not UTF-8 text (byte {exc.start})") from None
        try:
            return cls.from_dict(_load_yaml(text, where))
        except ConfigError as exc:
            raise ConfigError(_prefixed(str(exc), where)) from None


def _prefixed(message: str, where: str) -> str:
    return message if message.startswith(where) else f"{where}: {message}"


def _load_yaml(text: str, where: str) -> Any:
    """Safe YAML (no tags that build Python objects) as plain JSON-like data, or a ConfigError
    naming the line."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise ConfigError(f"{where}: not valid YAML{line}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a sweep spec") from None


def _zip_members(group: dict) -> list:
    if set(group) != {"zip"} or not isinstance(group["zip"], list) or len(group["zip"]) < 2:
        raise ConfigError(f"axis group {group!r} is invalid: must be {{\"zip\": [axis, axis, ...]}}")
    return group["zip"]


def _check_axes(groups: tuple[tuple[Axis, ...], ...]) -> None:
    fields = [a.field for g in groups for a in g]
    for group in groups:
        if not group or not all(isinstance(a, Axis) for a in group):
            raise ConfigError(f"axes: {group!r} is invalid: each entry is an Axis or a group of Axis to zip")
        if len({len(a.values) for a in group}) != 1:
            lengths = ", ".join(f"{a.field}: {len(a.values)}" for a in group)
            raise ConfigError(f"zipped axes must have equal lengths, got {lengths}")
    dup = sorted({f for f in fields if fields.count(f) > 1})
    if dup:
        raise ConfigError(f"axes: {', '.join(dup)} swept twice; give each field one axis (zip axes to move together)")


def _check_base(base: RunConfig) -> None:
    if not isinstance(base, RunConfig):
        raise ConfigError(f"sweep base must be a RunConfig, got {type(base).__name__}")
    if base.data.n_configs != 1:
        raise ConfigError(f"base data.feature_probability = {list(base.data.feature_probability)} is invalid: the base "
                          "describes one configuration; sweep p with an axis")
    if base.data.per_config_importance or isinstance(base.train.l1_hidden, tuple):
        raise ConfigError("base data.importance / train.l1_hidden must be one configuration's values; sweep them "
                          "with an axis")


# --- grid points ------------------------------------------------------------------------------


def _point_or_fail(base: RunConfig, values: dict[str, Any]) -> RunConfig:
    try:
        return point_config(base, values)
    except (ConfigError, TypeError, ValueError) as exc:
        where = ", ".join(f"{k} = {v!r}" for k, v in values.items())
        raise ConfigError(f"sweep point ({where}): {exc}") from None


def point_config(base: RunConfig, values: dict[str, Any]) -> RunConfig:
    """`base` with the axis values of one point applied, in order (an element axis such as
    ``importance[1]`` edits the list the base, or an earlier axis, gave)."""
    changes: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    for field, value in values.items():
        section, name, index = _target(field)
        if index is not None:
            value = _with_element(base, changes, name, index, value)
        changes[section][name] = _freeze(value)
    data = changes["data"]
    if "feature_probability" in data:
        data["feature_probability"] = (data["feature_probability"],)
    return RunConfig(replace(base.model, **changes["model"]), replace(base.data, **data),
                     replace(base.train, **changes["train"]), base.name)


def _with_element(base: RunConfig, changes: dict, name: str, index: int, value: Any) -> tuple:
    section = FIELDS[name]
    current = changes[section].get(name, getattr(getattr(base, section), name))
    if name == "feature_probability" and name not in changes[section]:
        current = current[0]
    n = changes["model"].get("n_features", base.model.n_features)
    if name == "importance" and current is None:
        current = _decay_row(n, changes["data"].get("importance_decay", base.data.importance_decay))
    elif name == "feature_probability" and not isinstance(current, tuple):
        current = (current,) * n
    if index >= len(current):
        raise ConfigError(f"{name}[{index}] is out of range: the list has {len(current)} entries")
    return tuple(value if i == index else v for i, v in enumerate(current))


def _decay_row(n: int, decay: float) -> tuple[float, ...]:
    """decay**i exactly as `data.importance_matrix` makes it (so packing does not change a value)."""
    return tuple((decay ** torch.arange(n, dtype=torch.float64)).to(torch.float32).tolist())


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
