"""Every lesson runs top to bottom (small settings, same code path) and is stored clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LESSONS = sorted((Path(__file__).resolve().parents[1] / "lessons").glob("*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_is_stored_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have stored outputs; clear them"
    no_id = [i for i, c in enumerate(nb["cells"]) if "id" not in c]  # nbformat 4.5 requires them
    assert not no_id, f"{path.name}: cells {no_id} have no id; run nbformat.validator.normalize on it"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_executes(path: Path, tmp_path: Path, monkeypatch) -> None:
    """...and every cell that shows a figure has an image in its output: the kernel uses the
    inline backend a reader's JupyterLab uses, so a library call that switched matplotlib's
    global backend (after which `plt.show()` shows nothing) fails here."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for key, value in {"SPKIT_SMALL": "1", "SPKIT_LESSON_OUT": str(tmp_path),
                       "MPLBACKEND": "module://matplotlib_inline.backend_inline"}.items():
        monkeypatch.setenv(key, value)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    shows = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and ("plt.show()" in c.source or "display(fig" in c.source)]
    blank = [i for i in shows if not any("image/png" in o.get("data", {}) for o in nb.cells[i].outputs)]
    assert not blank, f"{path.name}: cells {blank} draw a figure but show no image"
