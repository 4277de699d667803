"""Every evaluation command of README.md and evals/README.md that needs only the repository
(spkit-tiny, evals/fixtures) runs as written.

The commands are read from the READMEs' bash blocks, not copied here, so an edit that breaks
one fails this test. They run in a scratch directory that mirrors the repository's layout
(`evals/` linked, `assets/models/spkit-tiny` a tiny random Llama with spkit-tiny's 1,024
positions, also what the name `spkit-tiny` resolves to through $SPKIT_ASSETS), so `$PWD/runs`
lands in the scratch directory and no command reads outside it but evals/.

On demand (`SPKIT_README_COMMANDS=1 python -m pytest -q tests/test_readme_commands.py`): the five
commands took 22 minutes on a busy 2-core machine (the full spkit_arith task through lm-eval's hf
backend alone 13), more than CI's budget leaves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTS = ("lm_eval ", "python -m spkit.evals.lm ", "spkit sample", "spkit eval ")
NEEDS_MORE = ("$PWD/data", "--data-dir data", "Qwen", "runs/spiral/final", "path/to")  # real data/models


def commands() -> list[tuple[str, str]]:
    """(README, command) for each runnable evaluation command, line continuations joined."""
    out = []
    for name in ("README.md", "evals/README.md"):
        text = (ROOT / name).read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                cmd = re.sub(r"\s+#.*$", "", line).strip()
                if cmd.startswith(STARTS) and not any(x in cmd for x in NEEDS_MORE):
                    out.append((name, cmd))
    return out


def test_the_readmes_hold_the_commands_this_test_runs():
    found = [c for _, c in commands()]
    assert any("processbench_local" in c for c in found) and any("spkit_arith_correct" in c for c in found)


def test_every_spkit_command_in_the_readmes_parses():
    """Every `spkit ...` line of the READMEs' bash blocks names a real subcommand and real flags
    (parsing only: the runs themselves are the on-demand test below)."""
    import shlex

    from spkit.cli import build_parser

    lines = []
    for name in ("README.md", "evals/README.md", "CONTRIBUTING.md"):
        for block in re.findall(r"```bash\n(.*?)```", (ROOT / name).read_text(), re.S):
            lines += [re.sub(r"\s+#.*$", "", x).strip() for x in block.replace("\\\n", " ").splitlines()]
    cmds = [shlex.split(c)[1:] for c in lines if c.startswith("spkit ") and "--help" not in c]
    assert len(cmds) >= 15
    for argv in cmds:
        try:
            build_parser(argv).parse_args(argv)
        except SystemExit:
            pytest.fail(f"README command does not parse: spkit {shlex.join(argv)}")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    from spkit.testing import tiny_random_model

    root = tmp_path_factory.mktemp("readme")
    (root / "evals").symlink_to(ROOT / "evals")
    tiny = root / "assets" / "models" / "spkit-tiny"
    model, tok = tiny_random_model()
    model.config.max_position_embeddings = 1024  # spkit-tiny's context, which the commands must fit
    model.save_pretrained(tiny)
    tok.save_pretrained(tiny)
    return root


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SPKIT_README_COMMANDS"),
                    reason="on demand: set SPKIT_README_COMMANDS=1 (about 20 minutes on 2 CPU cores)")
@pytest.mark.skipif(shutil.which("lm_eval") is None and not (Path(sys.executable).parent / "lm_eval").exists(),
                    reason="lm-eval not installed ([eval] extra)")
@pytest.mark.parametrize("readme,cmd", commands(), ids=lambda x: x[:60])
def test_readme_command_runs_as_written(readme, cmd, scratch):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "SPKIT_ASSETS": str(scratch / "assets"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PWD": str(scratch)}
    r = subprocess.run(["bash", "-c", cmd], cwd=scratch, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{readme}: {cmd}\n{r.stderr[-3000:]}"
