"""mkdocs hook: the generated pages of the docs site, written before mkdocs collects its files.

- ``reference/config.md``: every field of the config dataclasses (ModelConfig, DataConfig,
  TrainConfig, RunConfig) with its type, default and the docstring under it, read from the source
  (so a new field documents itself; nothing is copied by hand).
- ``recipes.md``: every recipe of the registry with its section, summary and module docstring, and,
  when a reproduction directory is there (``$SUPERPOSITION_DOCS_RUNS``, default
  ``build/reproduce-quick``), its figures and its claims as measured.
- ``notebooks/*.ipynb``: the tutorials, executed copies from ``build/notebooks`` where they are up to
  date (tests/test_notebooks.py writes them), else the sources as they are (rendered without outputs).

Generated files are git-ignored; a file is only rewritten when its content changes.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAGES = HERE / "pages"
"""The site's docs_dir (mkdocs.yml); the generated files below are written into it."""
CONFIG_CLASSES = ("RunConfig", "ModelConfig", "DataConfig", "TrainConfig")


def _write(path: Path, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --- the config reference ---------------------------------------------------------------------------


def field_docs(cls: type) -> dict[str, tuple[str, str]]:
    """name → (annotation source, docstring) for each annotated field of dataclass `cls`, read
    from its source: the string literal right under a field is its docstring."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    out: dict[str, tuple[str, str]] = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            value = after.value if isinstance(after, ast.Expr) else None
            is_doc = isinstance(value, ast.Constant) and isinstance(value.value, str)
            doc = inspect.cleandoc(value.value) if is_doc else ""
            out[node.target.id] = (ast.unparse(node.annotation), doc)
    return out


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return f"`{field.default!r}`"
    if field.default_factory is not dataclasses.MISSING:
        return f"`{type(field.default_factory()).__name__}()`"
    return "required"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def config_reference() -> str:
    config = importlib.import_module("superposition.config")
    lines = ["# Config reference", "",
             "Generated from `superposition.config` by `docs/hooks.py`: every field of the run configuration, "
             "its type, its default and its documentation. A `RunConfig` is JSON (`config.json` of every run "
             "directory, `RunConfig.from_json`); the CLI flags of `superposition train` set the same fields.", ""]
    for name in CONFIG_CLASSES:
        cls = getattr(config, name)
        docs = field_docs(cls)
        lines += [f"## {name}", "", inspect.cleandoc(cls.__doc__ or ""), "",
                  "| field | type | default | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            annotation, doc = docs.get(f.name, (str(f.type), ""))
            lines.append(f"| `{f.name}` | `{_cell(annotation)}` | {_cell(_default(f))} | {_cell(doc)} |")
        lines.append("")
    return "\n".join(lines)


# --- the recipes ----------------------------------------------------------------------------------


def _runs_dir() -> Path:
    return Path(os.environ.get("SUPERPOSITION_DOCS_RUNS", ROOT / "build" / "reproduce-quick"))


def recipes_page(out: Path) -> str:
    from superposition.experiments import RECIPES

    runs = _runs_dir()
    lines = ["# Recipes", "",
             "Every experiment of the paper is a recipe: `superposition run NAME [--quick]` trains it, draws its "
             "figures and checks the paper's claims; `superposition reproduce --quick` runs them all."]
    if (runs / "scorecard.json").is_file():
        lines += ["", f"The figures and measured claims below come from `superposition reproduce --quick` "
                  f"(`{runs.name}`, built with this site)."]
    else:
        lines += ["", "Figures and measured claims appear here when the site is built after a reproduction "
                  "(`superposition reproduce --quick --out build/reproduce-quick`, as CI does)."]
    for name, recipe in RECIPES.items():
        lines += ["", f"## {name}", "", f"*Section {recipe.section}.* {recipe.summary}.", "",
                  f"`superposition run {name} --quick`", ""]
        doc = inspect.getdoc(sys.modules[recipe.configs.__module__]) or ""
        lines += [doc, ""]
        lines += _recipe_results(runs / name, out / "recipes" / name, name)
    return "\n".join(lines)


def _recipe_results(folder: Path, target: Path, name: str) -> list[str]:
    lines: list[str] = []
    for png in sorted(folder.glob("*.png")):
        _write(target / png.name, png.read_bytes())
        lines += [f"![{name}: {png.stem}](recipes/{name}/{png.name})", ""]
    claims_file = folder / "claims.json"
    if claims_file.is_file():
        claims = json.loads(claims_file.read_text())
        claims = claims.get("claims", claims) if isinstance(claims, dict) else claims
        lines += ["| claim | expected | measured | held |", "|---|---|---|---|"]
        for c in claims:
            lines.append(f"| {_cell(c['claim'])} | {_cell(c['expected'])} | {_cell(c['measured'])} | "
                         f"{'held' if c['held'] else '**not held**'} |")
        lines.append("")
    return lines


# --- the notebooks --------------------------------------------------------------------------------


def copy_notebooks(out: Path) -> None:
    sys.path.insert(0, str(HERE))
    try:
        import run_notebooks as runner
    finally:
        sys.path.remove(str(HERE))
    for source in runner.notebooks():
        executed = runner.executed_copy(source)
        _write(out / source.name, (executed or source).read_bytes())


def on_pre_build(config, **kwargs) -> None:
    docs = Path(config["docs_dir"])
    _write(docs / "reference" / "config.md", config_reference())
    _write(docs / "recipes.md", recipes_page(docs))
    copy_notebooks(docs / "notebooks")


def clean() -> None:
    """Remove the generated files (not called by mkdocs; for `python docs/hooks.py clean`)."""
    for path in (PAGES / "reference" / "config.md", PAGES / "recipes.md"):
        path.unlink(missing_ok=True)
    shutil.rmtree(PAGES / "notebooks", ignore_errors=True)
    shutil.rmtree(PAGES / "recipes", ignore_errors=True)


if __name__ == "__main__" and sys.argv[1:] == ["clean"]:
    clean()
