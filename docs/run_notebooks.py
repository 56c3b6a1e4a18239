"""Execute the tutorial notebooks (notebooks/*.ipynb) and keep the executed copies.

Used by tests/test_notebooks.py (which executes each notebook in CI) and by the docs build
(docs/hooks.py renders the executed copies, so the site shows the outputs without running the
notebooks twice). An executed copy lives in build/notebooks/ and records the hash of the source it
came from; a changed notebook is executed again.

    python docs/run_notebooks.py            # execute every runnable notebook into build/notebooks/
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "notebooks"
TIMEOUT = 300
"""Seconds one cell may run (the notebooks are sized to take well under two minutes in all)."""


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def missing_requirement(path: Path) -> str | None:
    """Why `path` cannot run with the installed package (a notebook's ``superposition.requires``
    metadata), or None. "ModelConfig.custom": the composable engine of issue 10."""
    import nbformat

    need = nbformat.read(path, as_version=4).metadata.get("superposition", {}).get("requires")
    if need == "ModelConfig.custom":
        from superposition.config import ModelConfig

        if "custom" not in {f.name for f in dataclasses.fields(ModelConfig)}:
            return "needs ModelConfig(custom=...), the composable engine (issue 10)"
    return None


@contextlib.contextmanager
def _kernel_imports_this_package():
    """The kernel imports the same `superposition` as this process (a relative PYTHONPATH=src, or
    another checkout's editable install, would otherwise win in the kernel's working directory)."""
    import importlib.util

    spec = importlib.util.find_spec("superposition")
    before = os.environ.get("PYTHONPATH")
    if spec is not None and spec.origin is not None:
        here = str(Path(spec.origin).resolve().parents[1])
        os.environ["PYTHONPATH"] = os.pathsep.join([here, *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def execute(path: Path, out_dir: Path = EXECUTED):
    """Run every cell of `path` in a fresh kernel, in a temporary working directory; raise
    nbclient's CellExecutionError on the first failing cell. Writes the executed copy to `out_dir`
    and returns it (an nbformat notebook)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as work, _kernel_imports_this_package():
        NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3", resources={"metadata": {"path": work}}).execute()
    nb.metadata.setdefault("superposition", {})["source_sha256"] = source_hash(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    tmp = target.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(target)
    return nb


def executed_copy(path: Path, out_dir: Path = EXECUTED) -> Path | None:
    """The executed copy of `path` if it is up to date with the source, else None."""
    import nbformat

    target = out_dir / path.name
    if not target.is_file():
        return None
    meta = nbformat.read(target, as_version=4).metadata.get("superposition", {})
    return target if meta.get("source_sha256") == source_hash(path) else None


if __name__ == "__main__":
    for nb_path in notebooks():
        reason = missing_requirement(nb_path)
        if reason:
            print(f"skip     {nb_path.name}: {reason}")  # noqa: T201
            continue
        if executed_copy(nb_path) is None:
            execute(nb_path)
        print(f"executed {nb_path.name}")  # noqa: T201
    sys.exit(0)
