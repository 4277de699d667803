"""The "correct yourself" mode: both attempts at an arithmetic problem, in the widget (driven by
its state) and in the terminal (driven by stdin), model text escaped / stripped."""

from __future__ import annotations

import io

import pytest

from spkit.errors import SpkitError
from spkit.play import CorrectionSession, correction_text, run_correction_terminal
from spkit.sampling import Completion
from spkit.tasks import arithmetic
from spkit.tasks import correction as T
from spkit.widgets import CorrectionBoard

EVIL = "<script>alert(1)</script>\x1b[2J\x1b]52;c;aGk=\x07 #### 3"


class Scripted:
    """A Sampler stand-in: returns the given texts in order and records the prompts."""

    def __init__(self, *texts: str) -> None:
        self.texts, self.prompts = list(texts), []

    def generate(self, prompts, params=None, seed=None, progress=False):
        self.prompts += prompts
        return [Completion(p, self.texts.pop(0), [1], [2], [0.0], "stop", [0.0]) for p in prompts]


def all_html(board) -> str:
    out, stack = [], [board]
    while stack:
        w = stack.pop()
        if hasattr(w, "value") and isinstance(w.value, str):
            out.append(w.value)
        stack += list(getattr(w, "children", ()))
    return "\n".join(out)


def test_session_answers_twice_with_the_tasks_prompts_and_verdicts():
    model = Scripted(" 3 + 4 = 6\n#### 6", " 3 + 4 = 7\n#### 7")
    s = CorrectionSession(model)
    p = s.problem(1, 0)
    assert p == [q for q in s.problems if q["steps"] == 1][0] and s.per_level == 100
    gold = arithmetic.target(p)
    model.texts = [" #### 0", f" #### {gold}"]
    c = s.attempt(p)
    assert model.prompts == [arithmetic.prompt(p["question"]), T.second_prompt(p["question"], " #### 0")]
    assert (c.r1, c.r2, c.gold) == (0.0, 1.0, gold) and c.verdict.startswith("wrong → right")
    own = s.own_problem(" Mia has 3 apples. She buys 4 more. How many? ", "7")
    assert own == {"question": "Mia has 3 apples. She buys 4 more. How many?", "answer": "#### 7"}
    model.texts = [" #### 7", " #### 8"]
    assert s.attempt(own).verdict.startswith("right → wrong")
    for bad in ((9, 0), (1, 100), (1, -1)):
        with pytest.raises(SpkitError):
            s.problem(*bad)
    with pytest.raises(SpkitError, match="number"):
        s.own_problem("q", "seven")


def test_widget_shows_both_attempts_side_by_side_escaped():
    model = Scripted()
    board = CorrectionBoard(model)
    assert board.status.value == "loaded the given model" and board.index.max == 99
    board.level.value, board.index.value = 2, 5
    p = board.session.problem(2, 5)
    model.texts = [EVIL, f" fixed\n#### {arithmetic.target(p)}"]
    board.run_button.click()
    page = all_html(board)
    assert "<script>" not in page and "&lt;script&gt;" in board.result.value
    assert "attempt 1" in board.result.value and "attempt 2 (after review)" in board.result.value
    assert "wrong → right" in board.status.value and board.last.question == p["question"]
    assert model.prompts[1] == T.second_prompt(p["question"], EVIL)  # the model's own attempt, unaltered
    board.own_question.value, board.own_answer.value = "What is 2 + 2?", "x"
    board.run_button.click()  # refused, nothing generated
    assert "number" in board.status.value and len(model.prompts) == 2
    board.own_answer.value = "4"
    model.texts = [" #### 4", " #### 4"]
    board.run_button.click()
    assert "right → right" in board.status.value and "What is 2 + 2?" in board.result.value


@pytest.mark.slow  # importing transformers (load_model) takes half a minute on a busy 2-core machine
def test_widget_reports_a_checkpoint_that_does_not_load(tmp_path):
    board = CorrectionBoard(Scripted())
    board.checkpoint.value = str(tmp_path)  # a directory without a model
    board.load_button.click()
    assert "could not load" in board.status.value and board.session is not None  # the old one stays


def test_terminal_mode_strips_control_characters():
    from rich.console import Console

    model = Scripted()
    s = CorrectionSession(model)
    p = s.problem(1, 3)
    model.texts = [EVIL, " #### 1", " #### 7", " #### 7"]
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    stdin = io.StringIO("1 3\n7 7\nown\nWhat is 3 + 4?\n7\nq\n")
    assert run_correction_terminal(s, stdin, console) == 2
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "<script>alert(1)</script>" in text
    assert f"Question: {p['question'].splitlines()[0]}" in text and "Invalid input: no level 7" in text
    assert "right → right: kept" in text
    model.texts = [" #### 1", EVIL]
    plain = correction_text(s.attempt(s.own_problem("q", "1")))
    assert "\x1b" not in plain and plain.splitlines()[-1] == "Verdict: right → wrong: broken by the revision"
