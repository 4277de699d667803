"""Who is the Spy: a 4-player text social-deduction game (the text variant of Vision-Zero's game).

1. Chance picks a pair of similar words (``data/spy_words.txt``), which side the civilians get,
   and the spy's seat. Three civilians share one word; the spy gets the other. Nobody is told
   their role.
2. Clue phase: ``clue_rounds`` (2) rounds; players 0..3 in turn give a short clue. A clue is
   free text: 1–5 words, at most 40 characters, at least one letter, and it must not contain the
   player's own word. ``legal_actions()`` returns ``[CLUE]`` (a marker) in this phase; use
   ``clue_problem(text)`` or ``parse_action(text, legal, state=state)`` to validate a clue.
3. Vote phase: players 0..3 in turn vote for another player (action: that player's index,
   ``"0"``–``"3"``). Votes are secret until the game ends.
4. If the spy gets strictly the most votes, civilians win (+1 each, spy −3); otherwise the spy
   wins (+3, civilians −1 each). Zero-sum, so team rewards balance.

State fields (public, read by the corpus builder):
    words     list[str], each player's secret word.
    spy       int, the spy's seat (−1 before the deal).
    clues     list[tuple[int, str]], (player, clue) in order.
    votes     list[int], ``votes[p]`` = the seat player p voted for.
"""

from __future__ import annotations

import functools
import random
import re
from importlib import resources

from spkit.errors import SpkitError
from spkit.games.base import CHANCE, TERMINAL, Game, InvalidMove, State

#: Marker legal action of the clue phase: "any valid short clue".
CLUE = "<clue>"
MAX_CLUE_WORDS = 5
MAX_CLUE_CHARS = 40
NUM_PLAYERS = 4


@functools.lru_cache(maxsize=1)
def word_pairs() -> list[tuple[str, str]]:
    """The shipped word pairs (lower-case single words)."""
    text = resources.files("spkit.games").joinpath("data/spy_words.txt").read_text("utf-8")
    pairs = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [w.strip().lower() for w in line.split(",")]
        if len(parts) != 2 or not all(re.fullmatch(r"[a-z]+", w) for w in parts):
            raise SpkitError(f"spy_words.txt line {n}: expected 'word,word', got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


class SpyState(State):
    """A Who-is-the-Spy position."""

    def __init__(self, game: SpyGame) -> None:
        super().__init__(game)
        self.words: list[str] = []
        self.spy: int = -1
        self.clues: list[tuple[int, str]] = []
        self.votes: list[int] = []
        self._spy_word = ""  # set by the first deal, handed out by the second

    # ---- whose turn ----------------------------------------------------------------------
    def current_player(self) -> int:
        if not self.words or self.spy < 0:
            return CHANCE
        n_clues = self.game.clue_rounds * NUM_PLAYERS
        if len(self.clues) < n_clues:
            return len(self.clues) % NUM_PLAYERS
        if len(self.votes) < NUM_PLAYERS:
            return len(self.votes)
        return TERMINAL

    def phase(self) -> str:
        """ "deal", "clue", "vote" or "over"."""
        p = self.current_player()
        if p == CHANCE:
            return "deal"
        if p == TERMINAL:
            return "over"
        return "clue" if len(self.clues) < self.game.clue_rounds * NUM_PLAYERS else "vote"

    def chance_outcomes(self) -> list[tuple[str, float]]:
        if not self.words:
            n = len(word_pairs())
            return [(f"words {i} {side}", 0.5 / n) for i in range(n) for side in (0, 1)]
        if self.spy < 0:
            return [(f"spy {s}", 1.0 / NUM_PLAYERS) for s in range(NUM_PLAYERS)]
        return []

    # ---- moves -------------------------------------------------------------------------
    def legal_actions(self) -> list[str]:
        phase = self.phase()
        if phase == "clue":
            return [CLUE]
        if phase == "vote":
            me = self.current_player()
            return [str(p) for p in range(NUM_PLAYERS) if p != me]
        return []

    def clue_problem(self, text: str) -> InvalidMove | None:
        """Why `text` is not a valid clue for the current player, or None if it is."""
        clue = " ".join(text.split())
        if not clue:
            return InvalidMove("empty clue")
        if len(clue) > MAX_CLUE_CHARS or len(clue.split()) > MAX_CLUE_WORDS:
            return InvalidMove(f"clue longer than {MAX_CLUE_WORDS} words / {MAX_CLUE_CHARS} chars")
        if not re.search(r"[^\W\d_]", clue):
            return InvalidMove("clue has no letters")
        if self.words[self.current_player()] in clue.lower():
            return InvalidMove("clue contains the secret word")
        return None

    def apply_action(self, action: str) -> None:
        """Clues are free text (validated by `clue_problem`); everything else as in `State`."""
        if self.phase() != "clue":
            super().apply_action(action)
            return
        problem = self.clue_problem(action)
        if problem is not None:
            raise ValueError(f"invalid clue {action!r}: {problem.reason}")
        clue = " ".join(action.split())
        player = self.current_player()
        self._apply(clue)
        self._history.append((player, clue))

    def _apply(self, action: str) -> None:
        phase = self.phase()
        if phase == "deal" and not self.words:
            _, idx, side = action.split()
            civ, spy_word = word_pairs()[int(idx)][:: 1 if side == "0" else -1]
            self.words = [civ] * NUM_PLAYERS
            self._spy_word = spy_word
        elif phase == "deal":
            self.spy = int(action.split()[1])
            self.words[self.spy] = self._spy_word
        elif phase == "clue":
            self.clues.append((self.current_player(), action))
        else:
            self.votes.append(int(action))

    # ---- end of game -------------------------------------------------------------------
    def spy_caught(self) -> bool:
        """True if the spy got strictly more votes than every other player."""
        counts = [self.votes.count(p) for p in range(NUM_PLAYERS)]
        return all(counts[self.spy] > c for p, c in enumerate(counts) if p != self.spy)

    def returns(self) -> list[float]:
        if not self.is_terminal():
            return [0.0] * NUM_PLAYERS
        sign = -1.0 if self.spy_caught() else 1.0  # +1 = spy wins
        return [sign * 3.0 if p == self.spy else -sign for p in range(NUM_PLAYERS)]

    # ---- what players see --------------------------------------------------------------
    def observation_text(self, player: int) -> str:
        if not self.words or self.spy < 0:
            return "Words not dealt yet"
        lines = [f"Your word: {self.words[player]}", "Clues:"]
        lines += [f"Player {p}: {c}" for p, c in self.clues] or ["none yet"]
        phase = self.phase()
        if phase == "vote" and player < len(self.votes):
            lines.append(f"You voted for Player {self.votes[player]}")
        if phase == "over":
            lines.append("Votes: " + ", ".join(f"{p}->{v}" for p, v in enumerate(self.votes)))
            lines.append(f"The spy was Player {self.spy} (word: {self.words[self.spy]})")
        elif phase == "clue":
            lines.append("Give a short clue about your word.")
        elif phase == "vote":
            lines.append("Vote for the player you think is the spy.")
        return "\n".join(lines)


class SpyGame(Game):
    """4-player Who is the Spy with free-text clues and a secret vote."""

    name = "spy"
    num_players = NUM_PLAYERS
    rules = (
        "Who is the Spy. 4 players. Three civilians share one secret word; the spy has a "
        "similar but different word. Nobody knows who the spy is. In each of 2 rounds every "
        "player gives a short clue (1-5 words) without saying their word. Then everyone votes "
        "for one other player. If the spy gets the most votes, the civilians win; otherwise "
        "the spy wins."
    )

    def __init__(self, clue_rounds: int = 2) -> None:
        if clue_rounds != 2:
            self.rules = self.rules.replace("each of 2 rounds", f"each of {clue_rounds} rounds")
        self.clue_rounds = clue_rounds

    def new_initial_state(self, seed: int | None = None) -> SpyState:
        state = SpyState(self)
        if seed is not None:
            state.sample_chance(random.Random(seed))
        return state
