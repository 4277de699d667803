"""A real browser plays TicTacToe against a model in JupyterLab (headless Chromium).

JupyterLab is started on 127.0.0.1 with a random port and token, in a temporary copy of
`tests/browser/`; Playwright drives the system `chromium` (Debian's package, installed by
`.ci/run`; `playwright install` is never needed). The test runs the notebook, clicks the top-left
cell and waits for the model's O. The screenshot is kept as `test-artifacts/browser_tictactoe.png`.
JupyterLab (and its kernel) is shut down by the fixture's finalizer, pass or fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "tests" / "browser"
NOTEBOOK = "tictactoe_widget.ipynb"
ARTIFACT = ROOT / "test-artifacts" / "browser_tictactoe.png"
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in CI containers needs it
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited early (rc {proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, base: str, token: str) -> None:
    """Ask the server to shut down (kernels included), then make sure its process group is gone."""
    try:
        req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=5).close()
    except OSError:
        pass
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    # Stray kernel processes started by this server (it leads its own process group).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _start_session(base: str, token: str) -> None:
    """Create the notebook's kernel session through the REST API; JupyterLab then attaches to it."""
    body = json.dumps({"path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK,
                       "kernel": {"name": "python3"}}).encode()
    req = urllib.request.Request(f"{base}/api/sessions?token={token}", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).close()


@pytest.fixture()
def jupyter_lab(tmp_path: Path):
    """(base URL, token) of a JupyterLab serving a temporary copy of tests/browser/."""
    if shutil.which("chromium") is None:
        pytest.skip("no `chromium` on PATH (Debian: apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    root = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOK_DIR, root)
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyterlab.log"
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                cwd=root, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", proc, log)
        yield base, token
    finally:
        _stop(proc, base, token)


def test_tictactoe_widget_in_real_browser(jupyter_lab, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, token = jupyter_lab
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    _start_session(base, token)  # the kernel boots while the browser loads JupyterLab
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1400},
        )
        page = browser.pages[0] if browser.pages else browser.new_page()
        t0 = time.time()

        def mark(what: str) -> None:  # phase timings, shown with `pytest -s`
            print(f"[browser test] {what}: {time.time() - t0:.1f} s")

        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}", timeout=60_000)
            page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
            # The kernel starts directly (the notebook names its kernelspec); wait until it is
            # idle, else "Run All" would race the session and ask which kernel to use.
            page.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle")).wait_for(timeout=60_000)
            mark("notebook open, kernel idle")
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            select = page.locator(".jp-Dialog button", has_text=re.compile(r"^Select$"))
            if select.count():  # a slow session start can still raise the kernel dialog
                select.click()
            cells = page.locator(".jp-OutputArea-output button.spkit-ttt-cell")
            cells.nth(8).wait_for(timeout=90_000)
            assert cells.count() == 9
            mark("widget rendered")
            first = cells.nth(0)
            page.wait_for_function(
                "() => { const b = document.querySelector('button.spkit-ttt-cell');"
                " return b && !b.disabled; }", timeout=30_000)
            first.click()
            page.wait_for_function(
                "() => [...document.querySelectorAll('button.spkit-ttt-cell')]"
                ".some(b => b.textContent.trim() === 'O')", timeout=60_000)
            mark("model answered")
            marks = [cells.nth(i).inner_text().strip() for i in range(9)]
            assert marks[0] == "X" and marks.count("O") == 1, marks
            assert page.locator(".jp-OutputArea-output", has_text="Model's move probabilities").count() >= 1
        finally:
            page.screenshot(path=str(ARTIFACT), full_page=True)
            browser.close()
