"""Command-line options generated from the config dataclasses, so every option is declared once.

Each field of `ModelConfig`, `DataConfig` and `TrainConfig` (and `RunConfig.name`) becomes a flag
named after it (``n_hidden`` → ``--n-hidden``, plus any short names in the field's
``metadata["flags"]``), typed from its annotation, with the docstring under the field as its help
and the config's default shown there. A flag that is not given leaves the field as the base config
has it (the defaults, or ``--config FILE``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import types
import typing
from typing import Any, Literal, get_args, get_origin

from .config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig

PART_FIELDS = ("tied", "hidden_bias", "hidden_activation", "output_activation", "hidden_layer", "signed", "target")

SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of dataclass `cls`."""
    body = _class_node(inspect.getsourcefile(cls) or "", cls.__qualname__).body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


@functools.cache
def _module_tree(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read())


def _class_node(path: str, name: str) -> ast.ClassDef:
    """The top-level class `name` of the module at `path`, parsed once per module (`inspect.getsource`
    per class re-read and re-tokenised config.py each time: 54 of a warm run's 600 ms)."""
    for node in _module_tree(path).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise LookupError(f"class {name} not found in {path}")


def flags(f: dataclasses.Field) -> tuple[str, ...]:
    own = "--" + f.name.replace("_", "-")
    extra = tuple(f.metadata.get("flags", ()))
    return extra + ((own,) if own not in extra else ())


def _strip_optional(tp: Any) -> Any:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _argument(f: dataclasses.Field, tp: Any) -> dict[str, Any]:
    """argparse keywords for a field of type `tp`."""
    tp = _strip_optional(tp)
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if get_origin(tp) is Literal:
        return {"choices": list(get_args(tp))}
    if tp in (int, float, str):
        return {"type": _number(tp) if tp is not str else str, "metavar": f.name.upper()}
    if f.name == "optimizer_options":
        return {"nargs": "+", "metavar": "KEY=VALUE", "type": _key_value}
    if f.name == "betas":
        return {"nargs": 2, "type": _number(float), "metavar": ("BETA1", "BETA2")}
    # per-configuration or per-feature lists: feature_probability, importance, l1_hidden
    return {"nargs": "+", "type": _number(float), "metavar": "X"}


def _number(kind: type):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None

    parse.__name__ = kind.__name__
    return parse


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One flag per config field, grouped by section."""
    for section, cls in (*SECTIONS.items(), ("run", RunConfig)):
        group = parser.add_argument_group(f"{section} options" if section != "run" else "run options")
        hints, docs, default = typing.get_type_hints(cls), field_docs(cls), cls()
        for f in dataclasses.fields(cls):
            if section == "run" and f.name != "name":
                continue
            value = getattr(default, f.name)
            help_text = docs.get(f.name, f.name).replace("%", "%%") + f" (default: {_show(value, f.name)})"
            group.add_argument(*flags(f), dest=_dest(section, f.name), default=None, help=help_text,
                               **_argument(f, hints[f.name]))


def _dest(section: str, name: str) -> str:
    return f"{section}.{name}"


def _show(value: Any, name: str = "") -> str:
    if value is None:
        return "the preset's" if name in PART_FIELDS else "none"
    if isinstance(value, tuple) and not value:
        return "none"
    return json.dumps(value) if isinstance(value, (tuple, list)) else str(value)


def config_from_options(args: argparse.Namespace, base: RunConfig) -> RunConfig:
    """`base` with every config flag that was given."""
    sections = {}
    for section, cls in SECTIONS.items():
        given = {f.name: _coerce(f.name, getattr(args, _dest(section, f.name)))
                 for f in dataclasses.fields(cls) if getattr(args, _dest(section, f.name), None) is not None}
        if section == "data" and "importance_decay" in given and "importance" not in given:
            given["importance"] = None  # a decay replaces the base config's explicit importance
        try:
            sections[section] = dataclasses.replace(getattr(base, section), **given)
        except TypeError as exc:
            raise ConfigError(f"{section}: {exc}") from None
    name = getattr(args, _dest("run", "name"), None)
    if sections["model"].kind != base.model.kind and getattr(args, _dest("data", "signed"), None) is None:
        sections["data"] = dataclasses.replace(sections["data"], signed=None)  # the new preset's default
    return RunConfig(**sections, name=name if name is not None else base.name)


def _coerce(name: str, value: Any) -> Any:
    """List flags to the config's form: one value of a per-configuration list stays a list, except λ."""
    if name == "l1_hidden":
        return value[0] if len(value) == 1 else tuple(value)
    if name == "optimizer_options":
        return dict(value)
    if isinstance(value, list):
        return tuple(value)
    return value
