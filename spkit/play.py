r"""Play a game against a model: the UI-free session logic, and the terminal front end.

    spkit play tictactoe --model spkit-tiny
    spkit play kuhn_poker --model runs/spiral/final --mode reasoning --temperature 0.7
    spkit play negotiation --first model
    spkit play correct --model runs/score/final          # "correct yourself": two attempts at a problem

Both front ends (this terminal one and the notebook boards in `spkit.widgets`) drive the same
`GameSession`, so the rules below hold in both:

* The human holds one seat; the opponent (a language model, or any policy) plays every other
  seat. Chance (card deals, item pools) is resolved from ``seed + game index``.
* A model move is one `ModelMove`: the action, the model's text (its reasoning in reasoning
  mode) and, in direct mode, its probabilities over the legal moves, p(action + "}" | prompt)
  renormalised over the legal actions (`spkit.games.prompts`). Temperature T samples from
  p^(1/T) (T = 0: the most likely move), so the probabilities shown are the model's own.
* **Invalid model output** (no ``\boxed{}`` answer, an illegal move, a bad Spy clue) follows
  SPIRAL's convention: the game ends at once, the offender scores −1.5 and everybody else +0.5
  (`spkit.games.policies.INVALID_PENALTY`); the move is counted in the tally's ``invalid``.
* Human input is matched case-insensitively, and a unique prefix is enough (``b`` = bet);
  anything else is refused with a message naming the legal moves, and nothing is played.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from spkit.errors import SpkitError
from spkit.games import Game, InvalidMove, State, load_game
from spkit.games.policies import INVALID_BONUS, INVALID_PENALTY
from spkit.games.prompts import ANSWER_PREFIX, normalize
from spkit.games.spy import CLUE
from spkit.text import terminal_safe

MODES = ("direct", "reasoning")
CLI_GAMES = ("tictactoe", "kuhn_poker", "negotiation")
CORRECT = "correct"  # not a game: the two-attempt arithmetic mode (`CorrectionSession`)


# ---- Model moves ---------------------------------------------------------------------------
@dataclass
class ModelMove:
    """What the opponent did at one decision: shown to the human, then applied."""

    player: int
    action: str | None  # the legal action played, or None for an invalid output
    text: str = ""  # the model's own words (reasoning mode) or its boxed answer (direct)
    probs: dict[str, float] | None = None  # direct mode: p over the legal actions
    invalid_reason: str | None = None

    @property
    def invalid(self) -> bool:
        return self.action is None


class Player(Protocol):
    """Anything that can move for the seat to play: a language model, a policy, a script."""

    def move(self, state: State, seed: int) -> ModelMove: ...


def _tempered_choice(probs: dict[str, float], temperature: float, rng: random.Random) -> str:
    """Sample from p^(1/T) (renormalised); T = 0 takes the most likely action."""
    actions = list(probs)
    if temperature <= 0:
        return max(actions, key=lambda a: probs[a])
    top = max(probs.values())
    weights = [(probs[a] / top) ** (1.0 / temperature) if top > 0 else 1.0 for a in actions]
    return rng.choices(actions, weights=weights)[0]


class LMPlayer:
    r"""A causal LM playing through `spkit.lm_policy.LLMPolicy` (spkit's prompt formats).

    direct: the exact probabilities of each legal move, then a tempered sample (free-text Spy
    clues are sampled after the ``\boxed{`` prefix instead). reasoning: one sampled reasoning
    that ends in ``\boxed{move}``, parsed; a missing or illegal answer is an invalid move.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        mode: str = "direct",
        temperature: float = 1.0,
        max_new_tokens: int = 96,
    ) -> None:
        from spkit.lm_policy import LLMPolicy

        if mode not in MODES:
            raise SpkitError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.policy = LLMPolicy(
            model, tokenizer, mode=mode, temperature=temperature, max_new_tokens=max_new_tokens
        )

    @property
    def temperature(self) -> float:
        return self.policy.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.policy.temperature = float(value)

    def move(self, state: State, seed: int) -> ModelMove:
        player, legal = state.current_player(), state.legal_actions()
        rng = random.Random(seed)
        if self.mode == "direct" and legal != [CLUE]:
            probs = self.policy.action_probabilities(state)
            action = _tempered_choice(probs, self.temperature, rng)
            return ModelMove(player, action, ANSWER_PREFIX + action + "}", probs)
        self.policy.last_completion = None
        parsed = self.policy.sample_action(state, rng)
        text = self.policy.last_completion or ""
        if self.mode == "direct":  # the completion continued the answer prefix
            text = ANSWER_PREFIX + text
        if isinstance(parsed, InvalidMove):
            return ModelMove(player, None, text, None, parsed.reason)
        return ModelMove(player, parsed, text)


class PolicyPlayer:
    """Any `spkit.games.policies` policy as an opponent (e.g. random, minimax)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def move(self, state: State, seed: int) -> ModelMove:
        player = state.current_player()
        action = self.policy.sample_action(state, random.Random(seed))
        if isinstance(action, InvalidMove):
            return ModelMove(player, None, "", None, action.reason)
        probs = None
        if state.legal_actions() != [CLUE]:
            probs = dict(self.policy.action_probabilities(state))
        return ModelMove(player, action, "", probs)


def as_player(
    model: Any = "spkit-tiny",
    tokenizer: Any = None,
    mode: str = "direct",
    temperature: float = 1.0,
) -> Player:
    """A `Player` from a model name/checkpoint dir, a (model, tokenizer) pair, a loaded model +
    `tokenizer`, a policy (has `action_probabilities`), or anything with a `move` method."""
    if hasattr(model, "move"):
        return model
    if hasattr(model, "action_probabilities") and not hasattr(model, "generate"):
        return PolicyPlayer(model)
    if isinstance(model, tuple) and len(model) == 2:
        model, tokenizer = model
    if tokenizer is None:
        from spkit.models import load_model

        model, tokenizer = load_model(model, device="cpu")
    return LMPlayer(model, tokenizer, mode=mode, temperature=temperature)


# ---- Session -------------------------------------------------------------------------------
def match_human_input(state: State, text: str) -> str | InvalidMove:
    """The legal action the human meant, or `InvalidMove` with a message to show them.

    Case and spacing do not matter, and a unique prefix is enough (``b`` -> ``bet``). In the
    Spy clue phase the text is the clue, checked by the game (it must not contain your word).
    """
    legal = state.legal_actions()
    if not legal:
        return InvalidMove("the game is over")
    if legal == [CLUE]:
        problem = state.clue_problem(text)  # type: ignore[attr-defined]
        return problem if problem is not None else " ".join(text.split())
    key = normalize(text)
    if not key:
        return InvalidMove("empty input; legal moves: " + ", ".join(legal))
    exact = [a for a in legal if normalize(a) == key]
    prefix = [a for a in legal if normalize(a).startswith(key)]
    if exact or len(prefix) == 1:
        return (exact or prefix)[0]
    shown = text.strip()[:40]
    return InvalidMove(f"{shown!r} is not a legal move; legal moves: " + ", ".join(legal))


OUTCOME_TEXT = {"win": "you win", "loss": "you lose", "draw": "draw"}


@dataclass
class Tally:
    """Results across games, from the human's point of view."""

    games: int = 0
    wins: int = 0
    losses: int = 0
    draws: int = 0
    model_invalid: int = 0  # invalid outputs by the model (each ended a game)
    human_return: float = 0.0  # sum of the human's payoffs

    def text(self) -> str:
        return (
            f"You {self.wins} – {self.losses} model, {self.draws} draws "
            f"({self.games} games, your total {self.human_return:+.2f}, "
            f"model invalid moves {self.model_invalid})"
        )


@dataclass
class GameSession:
    """One human seat against a `Player`, game after game, with a running tally."""

    game: Game
    opponent: Player
    human_seat: int = 0
    seed: int = 0
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self) -> None:
        if not 0 <= self.human_seat < self.game.num_players:
            raise SpkitError(f"human seat must be 0..{self.game.num_players - 1}")
        self.game_index = -1
        self.new_game()

    def new_game(self, human_seat: int | None = None) -> None:
        """Deal a fresh game (seed + game index); the old one is dropped unscored."""
        if human_seat is not None:
            self.human_seat = human_seat
        self.game_index += 1
        self.state = self.game.new_initial_state(seed=self.seed + self.game_index)
        self.moves: list[ModelMove] = []  # the opponent's moves in this game
        self.forfeit: int | None = None  # seat that made an invalid move
        self.scored = False

    # -- whose turn --
    @property
    def over(self) -> bool:
        return self.forfeit is not None or self.state.is_terminal()

    @property
    def human_turn(self) -> bool:
        return not self.over and self.state.current_player() == self.human_seat

    # -- moves --
    def human_move(self, text: str) -> str | None:
        """Play the human's move; returns an error message (nothing played) if it is invalid."""
        if not self.human_turn:
            return "it is not your turn" if not self.over else "the game is over"
        action = match_human_input(self.state, text)
        if isinstance(action, InvalidMove):
            return action.reason
        self.state.apply_action(action)
        self._score_if_over()
        return None

    def model_move(self) -> ModelMove:
        """One opponent move at the current seat; invalid output ends the game (SPIRAL rule)."""
        if self.over or self.human_turn:
            raise SpkitError("it is not the model's turn")
        seed = (self.seed * 1_000_003 + self.game_index) * 1_000 + len(self.moves)
        move = self.opponent.move(self.state, seed)
        if move.action is not None and move.action not in self.state.legal_actions():
            legal = self.state.legal_actions()
            if legal != [CLUE] or self.state.clue_problem(move.action) is not None:  # type: ignore[attr-defined]
                move.invalid_reason = f"not a legal move: {move.action[:40]!r}"
                move.action = None
        self.moves.append(move)
        if move.action is None:
            self.forfeit = move.player
            self.tally.model_invalid += 1
        else:
            self.state.apply_action(move.action)
        self._score_if_over()
        return move

    def play_until_human(self, on_move: Callable[[ModelMove], None] | None = None) -> None:
        """Let the opponent move until it is the human's turn or the game is over."""
        while not self.over and not self.human_turn:
            move = self.model_move()
            if on_move is not None:
                on_move(move)

    # -- results --
    def returns(self) -> list[float]:
        if self.forfeit is not None:
            n = self.game.num_players
            return [INVALID_PENALTY if p == self.forfeit else INVALID_BONUS for p in range(n)]
        return self.state.returns()

    def outcome(self) -> str:
        """"win" / "loss" / "draw" for the human (only meaningful once over)."""
        r = self.returns()[self.human_seat]
        return "win" if r > 0 else "loss" if r < 0 else "draw"

    def outcome_text(self) -> str:
        """The outcome as the end-of-game line says it: "you win", "you lose" or "draw"."""
        return OUTCOME_TEXT[self.outcome()]

    def _score_if_over(self) -> None:
        if self.over and not self.scored:
            self.scored = True
            t = self.tally
            t.games += 1
            t.human_return += self.returns()[self.human_seat]
            kind = self.outcome()
            t.wins += kind == "win"
            t.losses += kind == "loss"
            t.draws += kind == "draw"


def play_transcript(
    game: Game, players: list[Player], seed: int = 0, names: list[str] | None = None
) -> tuple[str, list[float]]:
    """One seeded game between `players` (seat i -> players[i]), as readable text + returns.

    What the notebooks show when nobody can click: each move with the mover's probabilities
    (when it has them); invalid output ends the game with SPIRAL's penalty, as in `GameSession`.
    """
    if len(players) != game.num_players:
        raise SpkitError(f"{game.name} needs {game.num_players} players, got {len(players)}")
    names = names or [f"player {p}" for p in range(game.num_players)]
    state = game.new_initial_state(seed=seed)
    lines = [f"{names[p]} sees: " + state.observation_text(p).replace("\n", " | ")
             for p in range(game.num_players)]
    returns = None
    for i in range(10_000):
        if state.is_terminal():
            break
        seat = state.current_player()
        move = players[seat].move(state, seed * 1_000_003 + i)
        shown = ""
        if move.probs:
            top = sorted(move.probs.items(), key=lambda kv: -kv[1])[:4]
            shown = "   [" + ", ".join(f"{a}: {p:.2f}" for a, p in top) + "]"
        if move.action is None or (state.legal_actions() != [CLUE]
                                   and move.action not in state.legal_actions()):
            lines.append(f"{names[seat]}: INVALID ({move.invalid_reason or move.action!r})")
            n = game.num_players
            returns = [INVALID_PENALTY if p == seat else INVALID_BONUS for p in range(n)]
            break
        lines.append(f"{names[seat]}: {move.action}{shown}")
        state.apply_action(move.action)
    if returns is None:
        returns = state.returns()
        lines.append("end: " + state.observation_text(0).replace("\n", " | "))
    lines.append("returns: " + ", ".join(f"{names[p]} {r:+.2f}" for p, r in enumerate(returns)))
    return terminal_safe("\n".join(lines)), returns  # clues and invalid outputs are model text


# ---- "Correct yourself": two attempts at an arithmetic problem -------------------------------
VERDICTS = {(0.0, 1.0): "wrong → right: corrected", (1.0, 0.0): "right → wrong: broken by the revision",
            (1.0, 1.0): "right → right: kept", (0.0, 0.0): "wrong → wrong: not corrected"}


@dataclass
class Correction:
    """One problem answered twice: attempt 1, then attempt 2 after the task's fixed "review and
    correct" instruction (`spkit.tasks.correction.second_prompt`), each checked against the gold."""

    question: str
    gold: str  # the gold answer number
    attempt1: str
    attempt2: str
    r1: float
    r2: float

    @property
    def verdict(self) -> str:
        return VERDICTS[(self.r1, self.r2)]


class CorrectionSession:
    """The UI-free logic of the "correct yourself" mode (terminal and widget): pick a held-out
    `spkit_arith` problem (level, index) or write one, and see both attempts with their verdicts.

    `model`: "spkit-tiny", a checkpoint directory, a (model, tokenizer) pair, or any object with
    `generate(prompts, params, seed=)` returning completions (a `Sampler`). Temperature 0 is the
    greedy decoding `spkit eval --tasks spkit_arith_correct` scores."""

    def __init__(self, model: Any = "spkit-tiny", temperature: float = 0.0, seed: int = 0) -> None:
        from spkit.rl import verifiable as V

        if not temperature >= 0:
            raise SpkitError(f"temperature must be >= 0, got {temperature}")
        self.temperature, self.seed, self.tries = temperature, seed, 0
        self.sampler = model if hasattr(model, "generate") else self._sampler(model)
        self.problems = V.heldout_problems()
        self.levels = tuple(V.EVAL_LEVELS)
        self.per_level = min(sum(p.get("steps") == lv for p in self.problems) for lv in self.levels)

    @staticmethod
    def _sampler(model: Any):
        from spkit.generation import Sampler
        from spkit.models import load_model

        m, tok = load_model(model) if isinstance(model, str) else model
        return Sampler(m, tok)

    def problem(self, level: int, index: int) -> dict:
        """The held-out problem `index` (0-based) of `level` reasoning steps."""
        if level not in self.levels:
            raise SpkitError(f"no level {level}: the levels are {', '.join(map(str, self.levels))}")
        rows = [p for p in self.problems if p.get("steps") == level]
        if not 0 <= index < len(rows):
            raise SpkitError(f"no problem {index} at level {level}: indices 0..{len(rows) - 1}")
        return rows[index]

    @staticmethod
    def own_problem(question: str, answer: str) -> dict:
        """A problem you write: the question and its gold answer (a number)."""
        from spkit.tasks import arithmetic

        question, answer = question.strip(), answer.strip()
        if not question or arithmetic.extract_answer(f"#### {answer}") is None:
            raise SpkitError("write a question and its answer as a number (e.g. 7)")
        return {"question": question, "answer": f"#### {answer}"}

    def attempt(self, problem: dict) -> Correction:
        """Both attempts at `problem` (seeded: the n-th try of a session draws seed + n)."""
        from spkit.rl import verifiable as V
        from spkit.sampling import SamplingParams
        from spkit.tasks import arithmetic
        from spkit.tasks import correction as T

        params = SamplingParams(max_new_tokens=V.EVAL_MAX_NEW_TOKENS, temperature=self.temperature,
                                stop=V.EVAL_STOP)
        seed = self.seed * 1_000_003 + self.tries
        self.tries += 1
        q = problem["question"]
        a1 = self.sampler.generate([arithmetic.prompt(q)], params, seed=seed)[0].text
        a2 = self.sampler.generate([T.second_prompt(q, a1)], params, seed=seed + 1)[0].text
        r1, r2 = T.outcomes(a1, a2, problem["answer"])
        return Correction(q, arithmetic.target(problem), a1, a2, r1, r2)


def correction_text(c: Correction, width: int = 38) -> str:
    """Both attempts side by side as plain text (model text stripped of control characters)."""
    def col(title: str, text: str, r: float) -> list[str]:
        lines = [title, "-" * width]
        for raw in terminal_safe(text).strip().splitlines() or [""]:
            lines += [raw[i:i + width] for i in range(0, max(len(raw), 1), width)]
        return lines + ["-" * width, "right" if r else "wrong"]

    left, right = col("attempt 1", c.attempt1, c.r1), col("attempt 2 (after review)", c.attempt2, c.r2)
    n = max(len(left), len(right))
    rows = [f"{a:<{width}} | {b}" for a, b in zip(left + [""] * (n - len(left)), right + [""] * (n - len(right)),
                                                   strict=True)]
    return "\n".join([f"Question: {terminal_safe(c.question)}", f"Gold answer: {terminal_safe(c.gold)}", *rows,
                      f"Verdict: {c.verdict}"])


def run_correction_terminal(session: CorrectionSession, stdin: IO[str], console, max_tries: int | None = None) -> int:
    """The "correct yourself" loop: read "LEVEL INDEX" (a held-out problem) or "own", show both
    attempts side by side; ends on EOF, q, or after `max_tries`. Returns problems shown."""
    from rich.text import Text

    shown = 0
    levels = ", ".join(map(str, session.levels))
    while max_tries is None or shown < max_tries:
        line = _read(stdin, console, f"Problem: LEVEL INDEX (levels {levels}, index 0-{session.per_level - 1}), 'own', or q: ")
        if line is None or line.strip().lower() in ("q", "quit", "exit"):
            break
        try:
            if line.strip().lower() == "own":
                q = _read(stdin, console, "Question: ")
                a = _read(stdin, console, "Its answer (a number): ")
                if q is None or a is None:
                    break
                problem = session.own_problem(q, a)
            else:
                parts = line.split()
                if len(parts) != 2 or not all(x.lstrip("-").isdigit() for x in parts):
                    raise SpkitError("type two numbers, e.g. '2 5' (level 2, problem 5)")
                problem = session.problem(int(parts[0]), int(parts[1]))
        except SpkitError as e:
            console.print(Text(f"Invalid input: {terminal_safe(e)}", style="bold red"))
            continue
        console.print(Text(correction_text(session.attempt(problem))))
        shown += 1
    return shown


# ---- Terminal front end --------------------------------------------------------------------
def board_renderable(session: GameSession):
    """A rich renderable of what the human sees (TicTacToe as a grid, others as text)."""
    from rich import box
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    state, seat = session.state, session.human_seat
    if session.game.name == "tictactoe":
        grid = Table(show_header=False, show_lines=True, box=box.SQUARE)
        for _ in range(3):
            grid.add_column(justify="center", width=3)
        for r in range(3):
            cells = []
            for i in range(r * 3, r * 3 + 3):
                c = state.board[i]  # type: ignore[attr-defined]
                style = "bold cyan" if c == "X" else "bold magenta" if c == "O" else "dim"
                cells.append(Text(c if c != "." else str(i + 1), style=style))
            grid.add_row(*cells)
        mark = "X" if seat == 0 else "O"
        return Panel(grid, title=f"TicTacToe — you play {mark}", expand=False)
    # observations can quote model text (clues, messages): no escape sequences reach the terminal
    return Panel(Text(terminal_safe(state.observation_text(seat))), title=session.game.name,
                 expand=False)


def _read(stdin: IO[str], console, prompt: str) -> str | None:
    console.print(prompt, end="", markup=False, highlight=False)
    line = stdin.readline()
    if not line:  # EOF
        return None
    return line.rstrip("\n")


def _show_move(console, session: GameSession, move: ModelMove, show_text: bool) -> None:
    from rich.text import Text

    # Everything here can contain model text: terminal_safe strips escape sequences and
    # control characters (clear screen, clipboard writes) before rich prints it.
    who = "Model" if session.game.num_players == 2 else f"Model (player {move.player})"
    if show_text and move.text and not move.probs:
        console.print(Text(f"{who} wrote: {terminal_safe(move.text).strip()[:400]}", style="dim"))
    if move.probs:
        top = sorted(move.probs.items(), key=lambda kv: -kv[1])[:5]
        shown = ", ".join(f"{terminal_safe(a)} {p:.2f}" for a, p in top)
        console.print(Text(f"{who} probabilities: {shown}", style="dim"))
    if move.invalid:
        why = terminal_safe(move.invalid_reason)
        console.print(Text(f"{who} made an invalid move ({why}) and forfeits.", style="bold red"))
    else:
        console.print(Text(f"{who} plays: {terminal_safe(move.action)}", style="bold"))


def run_terminal(
    session: GameSession, stdin: IO[str], console, max_games: int | None = None, show_text: bool = True
) -> int:
    """The interactive loop: board, prompt, validate, model reply; returns games finished.

    Ends on EOF, on ``quit``/``q``, on "n" at the play-again prompt, or after `max_games`.
    """
    from rich.text import Text

    while True:
        console.print(board_renderable(session))
        if session.over:
            r = session.returns()[session.human_seat]
            console.print(Text(f"Game over: {session.outcome_text()} ({r:+.2f}).",
                               style="bold green"))
            console.print(Text(session.tally.text()))
            if max_games is not None and session.tally.games >= max_games:
                return session.tally.games
            answer = _read(stdin, console, "Play again? [Y/n] ")
            if answer is None or answer.strip().lower() in ("n", "no", "q", "quit"):
                return session.tally.games
            session.new_game()
            continue
        if not session.human_turn:
            console.print(Text("Model is thinking…", style="italic"))
            session.play_until_human(lambda m: _show_move(console, session, m, show_text))
            continue
        legal = session.state.legal_actions()
        hint = "a short clue" if legal == [CLUE] else ", ".join(legal)
        line = _read(stdin, console, f"Your move ({hint}; q to quit): ")
        if line is None or line.strip().lower() in ("q", "quit", "exit"):
            return session.tally.games
        error = session.human_move(line)
        if error is not None:
            console.print(Text(f"Invalid input: {error}. Try again.", style="bold red"))


# ---- Entry ---------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    from spkit.config import add_common_arguments

    p.add_argument("game", choices=(*CLI_GAMES, CORRECT),
                   help=f"which game to play; '{CORRECT}': the model answers an arithmetic problem twice "
                        "(attempt 1, then a review) and you see both, side by side")
    add_common_arguments(p)
    p.add_argument("--mode", choices=MODES, default="direct", help="how the model answers")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = best move)")
    p.add_argument("--first", choices=("human", "model"), default="human", help="who moves first")
    p.add_argument("--games", type=int, default=None, help="stop after this many games")
    p.add_argument("--hide-reasoning", action="store_true", help="do not print the model's text")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if not args.temperature >= 0:  # also refuses nan
        raise SpkitError(f"--temperature must be >= 0, got {args.temperature}")
    if args.games is not None and args.games < 1:
        raise SpkitError(f"--games must be >= 1, got {args.games}")
    console.print(f"Loading {terminal_safe(args.model)} …", markup=False)  # a path is not markup
    if args.game == CORRECT:
        shown = run_correction_terminal(CorrectionSession(args.model, args.temperature, args.seed), sys.stdin,
                                        console, args.games)
        console.print(f"{shown} problems. Bye.")
        return 0
    game = load_game(args.game)
    player = as_player(args.model, mode=args.mode, temperature=args.temperature)
    seat = 0 if args.first == "human" else 1
    session = GameSession(game, player, human_seat=seat, seed=args.seed)
    try:
        run_terminal(session, sys.stdin, console, args.games, not args.hide_reasoning)
    except KeyboardInterrupt:
        console.print("\nInterrupted.")
    console.print(session.tally.text())
    console.print("Bye.")
    return 0
