r"""Prompt formats for playing spkit games with a language model, and the action parser.

Every prompt has the same five parts, one per line, so the rules paragraph is a shared prefix
(cacheable, and the tiny model's 1024-token context is not wasted)::

    {game.rules}
    You are Player {player}.
    {state.observation_text(player)}
    Legal moves: {a}, {b}, ...
    {mode line}

Mode line:
  * ``reasoning``: ``Think briefly, then give your move as \boxed{move}.`` followed by a
    newline; the model writes a short reasoning and ends with ``\boxed{action}``.
  * ``direct``: ``Move: \boxed{`` (no newline); the model writes ``action}``, so an action's
    probability is p(action + "}" | prompt) — exact, no sampling.

In Who-is-the-Spy's clue phase the legal "move" is free text; the moves line then reads
``Legal moves: a short clue (1-5 words) that does not contain your word``. A TextArena game
whose observation lists no moves has the marker `FREE_TEXT`; its moves line reads
``Legal moves: any move in the format the game asks for``.

`parse_action` never raises: it returns the legal action (canonical spelling) or an
`InvalidMove` with a reason, which rollouts count.
"""

from __future__ import annotations

import re

from spkit.games.base import InvalidMove, State
from spkit.games.spy import CLUE, MAX_CLUE_WORDS

MODES = ("reasoning", "direct")
REASONING_INSTRUCTION = "Think briefly, then give your move as \\boxed{move}."
#: The direct-mode answer prefix; a direct completion is parsed as ANSWER_PREFIX + completion.
ANSWER_PREFIX = "\\boxed{"
DIRECT_SUFFIX = "Move: " + ANSWER_PREFIX
CLUE_MOVES = f"a short clue (1-{MAX_CLUE_WORDS} words) that does not contain your word"
#: Marker legal action of a free-text move that the game itself judges (TextArena).
FREE_TEXT = "<text>"
FREE_TEXT_MOVES = "any move in the format the game asks for"

#: Only the last MAX_SCAN characters of a model output are searched (bounds the work).
MAX_SCAN = 20_000
#: A boxed answer longer than this is rejected without matching.
MAX_ANSWER_CHARS = 200


def is_free_text(legal: list[str]) -> bool:
    """True if the legal "actions" are a free-text marker (Spy clue, TextArena text)."""
    return list(legal) in ([CLUE], [FREE_TEXT])


def moves_line(legal: list[str]) -> str:
    """``Legal moves: ...`` for a list of legal actions (or the clue marker)."""
    if legal == [CLUE]:
        return "Legal moves: " + CLUE_MOVES
    if legal == [FREE_TEXT]:
        return "Legal moves: " + FREE_TEXT_MOVES
    return "Legal moves: " + ", ".join(legal)


def format_prompt(state: State, player: int, mode: str = "reasoning") -> str:
    """The prompt `player` sees at `state` (see the module docstring for the exact layout)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    head = [
        state.game.rules,
        f"You are Player {player}.",
        state.observation_text(player),
        moves_line(state.legal_actions()),
    ]
    if mode == "reasoning":
        return "\n".join([*head, REASONING_INSTRUCTION]) + "\n"
    return "\n".join([*head, DIRECT_SUFFIX])


def extract_boxed(text: str) -> str | InvalidMove:
    r"""Content of the LAST ``\boxed{...}`` in `text`, braces matched by depth.

    ``\boxed{a} then \boxed{b}`` -> ``b``; ``\boxed{\text{bet}}`` -> ``\text{bet}``;
    an unclosed last box (e.g. a truncated generation) is invalid rather than falling back
    to an earlier box, so that a model cannot hedge with two answers.
    """
    if not isinstance(text, str):
        return InvalidMove("output is not a string")
    tail = text[-MAX_SCAN:]
    start = tail.rfind(ANSWER_PREFIX)
    if start < 0:
        return InvalidMove("no \\boxed{...} answer")
    depth, i = 1, start + len(ANSWER_PREFIX)
    for j in range(i, min(len(tail), i + MAX_ANSWER_CHARS + 1)):
        ch = tail[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return tail[i:j]
    if len(tail) - i > MAX_ANSWER_CHARS:
        return InvalidMove(f"boxed answer longer than {MAX_ANSWER_CHARS} characters")
    return InvalidMove("unclosed \\boxed{")


_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|texttt)\{(.*)\}$", re.DOTALL)


def normalize(answer: str) -> str:
    """Canonical comparison form: unwrap ``\\text{}``, drop quotes/``$``/final period,
    collapse whitespace, lower-case."""
    s = answer.strip()
    m = _WRAPPER.match(s)
    if m:
        s = m.group(1).strip()
    s = s.strip("$\"'`").strip()
    if s.endswith("."):
        s = s[:-1]
    return " ".join(s.split()).lower()


def parse_action(
    text: str, legal_actions: list[str], state: State | None = None
) -> str | InvalidMove:
    r"""The legal action named in the last ``\boxed{}`` of `text`, else `InvalidMove`.

    Matching is exact after `normalize` (case-insensitive, whitespace-insensitive) and returns
    the canonical legal spelling. For a free-text move (``legal_actions`` is ``[CLUE]`` or
    ``[FREE_TEXT]``) the text itself is returned, whitespace collapsed; pass `state` so the
    game can check it (``state.clue_problem`` / ``state.free_text_problem``, e.g. Spy's
    secret word).
    Never raises.
    """
    boxed = extract_boxed(text)
    if isinstance(boxed, InvalidMove):
        return boxed
    if is_free_text(legal_actions):
        return _parse_free_text(boxed, state)
    key = normalize(boxed)
    if not key:
        return InvalidMove("empty answer")
    for action in legal_actions:
        if normalize(action) == key:
            return action
    return InvalidMove(f"not a legal move: {key[:40]!r}")


def _parse_free_text(boxed: str, state: State | None) -> str | InvalidMove:
    clue = " ".join(boxed.split())
    checker = getattr(state, "clue_problem", None) or getattr(state, "free_text_problem", None)
    if checker is not None:
        try:
            problem = checker(clue)
        except Exception as exc:  # a state in the wrong phase must not crash a rollout
            return InvalidMove(f"clue check failed: {exc}")
        if problem is not None:
            return problem
    elif not clue:
        return InvalidMove("empty move")
    return clue
