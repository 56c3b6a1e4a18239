"""The package as a user gets it: the wheel's contents, the shipped examples, and a wheel installed into a
fresh virtual environment outside the checkout running a recipe there."""

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from superposition import ConfigError, cli
from superposition.examples import example_names, example_path
from superposition.sweep import SweepSpec

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_example_is_a_valid_sweep_spec():
    assert example_names() == ["phase", "small"]
    phase = SweepSpec.from_file(example_path("phase"))
    assert phase.name == "phase" and phase.base.model.n_features == 2
    assert SweepSpec.from_file(example_path("small")).name == "small"


def test_the_repository_examples_folder_is_the_shipped_one():
    # README commands say examples/phase-sweep.json; the files live once, inside the package.
    assert (ROOT / "examples" / "phase-sweep.json").resolve() == example_path("phase").resolve()


def test_an_unknown_example_names_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"'nope'.*phase, small"):
        example_path("nope")


@pytest.mark.parametrize("argv, message", [
    ([], "exactly one"), (["SPEC.json", "--example", "small"], "exactly one"), (["--example", "nope"], "phase, small"),
])
def test_sweep_wants_exactly_one_of_spec_and_example(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sweep", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("superposition: error:") and message in err and "Traceback" not in err


def _build_wheel(out: Path) -> Path:
    # No build isolation: the dev extra pins a setuptools that reads this pyproject, and CI needs no download.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True)
    (wheel,) = out.glob("superposition-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.mark.slow
def test_the_wheel_ships_license_types_and_examples(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "superposition/py.typed" in names
    assert {"superposition/examples/phase-sweep.json", "superposition/examples/small-sweep.yaml"} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in meta and "Classifier: Typing :: Typed" in meta


def _fresh_venv(where: Path) -> Path:
    """A virtual environment that sees this interpreter's installed packages (torch among them: nothing is
    downloaded) through a .pth line, but not this checkout: an editable install's finder is not activated
    by a path line, and the current directory of every command run there is outside the checkout."""
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    parents = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_parent_packages.pth").write_text("\n".join(sorted(parents)) + "\n")
    return python


@pytest.mark.slow
def test_the_installed_wheel_runs_a_recipe_outside_the_checkout(wheel, tmp_path):
    python = _fresh_venv(tmp_path)
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    # --force-reinstall: the checkout's own editable install is visible through the .pth and has the same version.
    subprocess.run([*pip, "install", "--no-index", "--no-deps", "--force-reinstall", "-q", str(wheel)],
                   check=True, capture_output=True, text=True)
    check = subprocess.run([*pip, "check"], capture_output=True, text=True).stdout  # the wheel's requirements met?
    assert not [line for line in check.splitlines() if line.startswith("superposition ")], check
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import superposition, superposition.examples as e; "
                            "print(superposition.__file__); print(e.example_path('phase'))"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where), where
    assert json.loads(Path(where[1]).read_text())["name"] == "phase"
    script = tmp_path / "venv" / "bin" / "superposition"
    done = subprocess.run([str(script), "run", "intro", "--quick", "--quiet"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[held" in done.stdout, done.stdout[-2000:]
    assert (work / "runs" / "intro-quick" / "claims.json").is_file()
