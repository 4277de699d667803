"""Every lesson runs top to bottom (small settings, same code path) and is stored clean."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[1] / "lessons").glob("*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_is_stored_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs; clear them"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_executes(path: Path, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {"SPKIT_SMALL": "1", "SPKIT_LESSON_OUT": str(tmp_path)}
    os.environ.update(env)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
