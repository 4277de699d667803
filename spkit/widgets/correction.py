"""Notebook widget: "correct yourself" — a model answers an arithmetic problem twice.

    from spkit.widgets import CorrectionBoard
    CorrectionBoard("runs/score/final")       # or "spkit-tiny", or (model, tok)

Pick a checkpoint (any `runs/**/final` found, or type a path), a held-out `spkit_arith` problem
(level and index) or write your own, and press "Answer twice": attempt 1, then attempt 2 after
the task's fixed "review and correct" instruction, side by side, each with its verdict, and the
transition (corrected, broken, kept, not corrected). The logic is `spkit.play.CorrectionSession`,
which the terminal (`spkit play correct`) drives too; temperature 0 is what `spkit eval --tasks
spkit_arith_correct` scores. Everything a model writes is HTML-escaped before it reaches the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as W

from spkit.errors import SpkitError
from spkit.play import Correction, CorrectionSession
from spkit.widgets.boards import esc

__all__ = ["CorrectionBoard", "checkpoints", "correction_html"]


def checkpoints(root: str | Path = "runs") -> list[str]:
    """"spkit-tiny" and every `final/` model directory under `root`, sorted."""
    found = sorted(str(p.parent) for p in Path(root).glob("**/final/config.json")) if Path(root).is_dir() else []
    return ["spkit-tiny", *found]


def _column(title: str, text: str, right: float) -> str:
    colour = "#1a7f37" if right else "#cf222e"
    return (f"<div style='flex:1;min-width:0'><b>{esc(title)}</b>"
            f"<pre style='white-space:pre-wrap;border:1px solid #ccc;padding:6px'>{esc(text.strip())}</pre>"
            f"<span style='color:{colour};font-weight:bold'>{'right' if right else 'wrong'}</span></div>")


def correction_html(c: Correction) -> str:
    """Both attempts side by side with their verdicts (every model string escaped)."""
    return (f"<div><b>Question:</b> {esc(c.question)}<br><b>Gold answer:</b> {esc(c.gold)}</div>"
            f"<div style='display:flex;gap:12px'>{_column('attempt 1', c.attempt1, c.r1)}"
            f"{_column('attempt 2 (after review)', c.attempt2, c.r2)}</div>"
            f"<div><b>Verdict:</b> {esc(c.verdict)}</div>")


class CorrectionBoard(W.VBox):
    """Controls (checkpoint, level, index or your own question, temperature) and the two attempts.
    `model`: a name/path (loaded on "Load"), a (model, tokenizer) pair or a Sampler-like object."""

    def __init__(self, model: Any = "spkit-tiny", runs: str | Path = "runs", temperature: float = 0.0,
                 seed: int = 0) -> None:
        self.seed = seed
        self.session: CorrectionSession | None = None
        self.last: Correction | None = None
        self.checkpoint = W.Combobox(value=model if isinstance(model, str) else "(given model)",
                                     options=checkpoints(runs), description="checkpoint", ensure_option=False)
        self.load_button = W.Button(description="Load")
        self.level = W.Dropdown(options=[1, 2, 3, 4], value=1, description="level")
        self.index = W.BoundedIntText(value=0, min=0, max=99, description="problem #")
        self.own_question = W.Text(placeholder="or write a question ...", description="question")
        self.own_answer = W.Text(placeholder="its answer", description="answer")
        self.temperature = W.FloatSlider(value=temperature, min=0.0, max=1.5, step=0.1, description="temperature")
        self.run_button = W.Button(description="Answer twice", button_style="primary")
        self.status = W.HTML()
        self.result = W.HTML()
        self.load_button.on_click(lambda _: self.load())
        self.run_button.on_click(lambda _: self.run())
        super().__init__([W.HBox([self.checkpoint, self.load_button]), W.HBox([self.level, self.index]),
                          W.HBox([self.own_question, self.own_answer]), W.HBox([self.temperature, self.run_button]),
                          self.status, self.result])
        self.load(None if isinstance(model, str) else model)

    def load(self, model: Any = None) -> None:
        """Load the checkpoint named in the box (or `model`); the status says which, or why not."""
        name = self.checkpoint.value.strip()
        try:
            self.session = CorrectionSession(model if model is not None else name, self.temperature.value, self.seed)
        except (SpkitError, OSError, ValueError) as e:
            self.status.value = f"<span style='color:#cf222e'>could not load {esc(name)}: {esc(e)}</span>"
            return
        self.level.options = list(self.session.levels)
        self.index.max = self.session.per_level - 1
        self.status.value = f"loaded {esc(name)}" if model is None else "loaded the given model"

    def run(self) -> Correction | None:
        """Answer the chosen problem twice and show both attempts."""
        if self.session is None:
            self.status.value = "<span style='color:#cf222e'>load a checkpoint first</span>"
            return None
        self.session.temperature = self.temperature.value
        try:
            if self.own_question.value.strip():
                problem = self.session.own_problem(self.own_question.value, self.own_answer.value)
            else:
                problem = self.session.problem(self.level.value, self.index.value)
        except SpkitError as e:
            self.status.value = f"<span style='color:#cf222e'>{esc(e)}</span>"
            return None
        self.last = self.session.attempt(problem)
        self.result.value = correction_html(self.last)
        self.status.value = esc(self.last.verdict)
        return self.last
