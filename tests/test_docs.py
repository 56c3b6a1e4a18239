"""The docs site: its generated pages (config reference from the dataclasses and their field
docstrings, recipes from the registry) and a strict build that fails on a broken reference."""

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from superposition import config

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = _hooks()


@pytest.mark.parametrize("cls", [config.ModelConfig, config.DataConfig, config.TrainConfig, config.RunConfig])
def test_the_config_reference_has_every_field_with_its_docstring(cls):
    page = HOOKS.config_reference()
    docs = HOOKS.field_docs(cls)
    assert f"## {cls.__name__}" in page
    for f in dataclasses.fields(cls):
        row = next(line for line in page.splitlines() if line.startswith(f"| `{f.name}` |"))
        annotation, doc = docs[f.name]
        assert " ".join(doc.split())[:40].replace("|", "\\|") in row, (f.name, row)


def test_field_docstrings_are_read_from_the_source():
    annotation, doc = HOOKS.field_docs(config.ModelConfig)["n_hidden"]
    assert annotation == "int" and doc == "m: hidden dimensions (neurons)."


def test_the_recipes_page_lists_every_recipe_and_shows_results_when_there(tmp_path, monkeypatch):
    from superposition.experiments import RECIPES

    runs = tmp_path / "reproduce"
    (runs / "intro").mkdir(parents=True)
    (runs / "intro" / "intro.png").write_bytes(b"\x89PNG fake")
    (runs / "intro" / "claims.json").write_text(
        '[{"section": "1", "claim": "pairs", "expected": "4", "measured": "4", "held": true}]')
    (runs / "scorecard.json").write_text("{}")
    monkeypatch.setenv("SUPERPOSITION_DOCS_RUNS", str(runs))
    page = HOOKS.recipes_page(tmp_path / "pages")
    assert [line[3:] for line in page.splitlines() if line.startswith("## ")] == list(RECIPES)
    assert "![intro: intro](recipes/intro/intro.png)" in page and "| pairs | 4 | 4 | held |" in page
    assert (tmp_path / "pages" / "recipes" / "intro" / "intro.png").is_file()


@pytest.mark.slow
def test_a_strict_build_fails_on_a_broken_reference(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocs_jupyter"):
        pytest.importorskip(module, reason="the docs extra (pip install -e '.[docs]') builds the site")
    pages = tmp_path / "pages"
    shutil.copytree(ROOT / "docs" / "pages", pages)
    (pages / "broken.md").write_text("# Broken\n\nSee [the missing page](nowhere.md).\n")
    yml = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs/pages", f"docs_dir: {pages}")
    yml = yml.replace("site_dir: build/site", f"site_dir: {tmp_path / 'site'}")
    yml = yml.replace("  - docs/hooks.py", f"  - {ROOT / 'docs' / 'hooks.py'}")
    yml = yml.replace("nav:", "nav:\n  - broken.md", 1)
    (tmp_path / "mkdocs.yml").write_text(yml)
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"})
    log = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    assert done.returncode != 0
    assert "contains a link 'nowhere.md'" in log and "Aborted with 1 warnings in strict mode" in log, log[-3000:]
    # Everything but the broken page was fine: the generated pages were written into the copy.
    assert (pages / "reference" / "config.md").is_file() and (pages / "notebooks").is_dir()
