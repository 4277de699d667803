"""The project's promises about itself: install files agree, CI runs the README's test command,
the code is ruff-clean, and no lesson or checkpoint ships a pickle."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Run the tests", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return block.strip()


def test_ci_runs_exactly_the_readme_test_command():
    cmd = _readme_test_command()
    ci_lines = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()]
    assert cmd in ci_lines, f"README's test command {cmd!r} is not a line of .ci/run"


def test_environment_yml_installs_the_same_package_as_ci():
    env = (ROOT / "environment.yml").read_text()
    ci = (ROOT / ".ci/run").read_text()
    env_extras = re.search(r'-e "\.\[([^\]]+)\]"', env).group(1)
    ci_extras = re.search(r'-e "\.\[([^\]]+)\]"', ci).group(1)
    assert env_extras == ci_extras
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(env_extras.split(",")) <= set(project["optional-dependencies"])
    py = re.search(r"python=(\d+)\.(\d+)", env)
    low = re.search(r">=\s*(\d+)\.(\d+)", project["requires-python"])
    assert (int(py[1]), int(py[2])) >= (int(low[1]), int(low[2]))


def test_readme_setup_command_matches_ci_install():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    torch_pin = re.search(r'"torch==([^"]+)"', ci).group(1)
    assert f'"torch=={torch_pin}"' in readme
    assert re.search(r'-e "\.\[([^\]]+)\]"', ci).group(0) in readme


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff not installed")
    out = subprocess.run([ruff, "check", "spkit", "tests", "benchmarks", "evals"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def test_import_layers_hold():
    """The layer contracts in pyproject.toml (`[tool.importlinter]`): nothing imports upward, and
    there are no import circles between layers. No exceptions are listed there."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    assert Path(lint).exists(), "import-linter is a dev dependency: pip install -e '.[dev]'"
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert all("ignore_imports" not in c for c in config["contracts"])
    out = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "BROKEN" not in out.stdout, out.stdout[-3000:]


def test_no_pickles_shipped():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    bad = [f for f in tracked if f.endswith((".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt"))]
    assert not bad, f"pickle-based files are tracked: {bad}"
