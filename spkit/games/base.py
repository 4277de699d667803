"""The game API every spkit game follows, in the spirit of OpenSpiel.

A `Game` is a factory of `State`s. A `State` is a mutable game position; actions are *strings*
(the exact text a language model must put in ``\\boxed{}``), so the same object serves the
exact solvers, the random / perfect opponents, the widgets and the LLM rollouts.

Method order is the same in every game file (OpenSpiel's convention), so one file reads like
the next:  current_player → legal_actions → apply_action → is_terminal → returns →
observation_text → information_state_string → clone.

Chance nodes (card deals) have ``current_player() == CHANCE`` and expose
``chance_outcomes()``; ``apply_action`` accepts one of those outcomes. A game created with
``new_initial_state(seed)`` may also resolve chance itself (``sample_chance``) so that players
never see a chance node, which is what rollouts want; solvers walk the chance nodes explicitly.
"""

from __future__ import annotations

import copy
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass

CHANCE = -1
TERMINAL = -4


@dataclass(frozen=True)
class InvalidMove:
    """A model output that is not a legal action. Counted, never raised."""

    reason: str

    def __bool__(self) -> bool:  # `if parsed:` reads naturally as "got a legal move"
        return False


class State(ABC):
    """A game position. Subclasses keep their own fields; `history` is the action list."""

    #: The seat whose move the game itself rejected after it was parsed as legal (a TextArena
    #: env judging a free-text move); the game is then over and rollouts count the invalid move.
    invalid_by: int | None = None

    def __init__(self, game: Game) -> None:
        self.game = game
        self._history: list[tuple[int, str]] = []  # (player or CHANCE, action)

    # ---- whose turn ----------------------------------------------------------------------
    @abstractmethod
    def current_player(self) -> int:
        """Index of the player to move, `CHANCE`, or `TERMINAL`."""

    def is_chance_node(self) -> bool:
        return self.current_player() == CHANCE

    def chance_outcomes(self) -> list[tuple[str, float]]:
        """(outcome, probability) pairs at a chance node; empty elsewhere."""
        return []

    # ---- moves -------------------------------------------------------------------------
    @abstractmethod
    def legal_actions(self) -> list[str]:
        """Legal actions of the current player as strings, in a fixed canonical order."""

    def apply_action(self, action: str) -> None:
        """Play `action` (a legal action or chance outcome). Raises ValueError if illegal."""
        player = self.current_player()
        if player == TERMINAL:
            raise ValueError("game is over")
        legal = (
            [a for a, _ in self.chance_outcomes()] if player == CHANCE else self.legal_actions()
        )
        if action not in legal:
            raise ValueError(f"illegal action {action!r}; legal: {legal}")
        self._apply(action)
        self._history.append((player, action))

    @abstractmethod
    def _apply(self, action: str) -> None:
        """Update the position; `action` has already been checked."""

    def sample_chance(self, rng: random.Random) -> None:
        """Resolve consecutive chance nodes by sampling (used by rollouts)."""
        while self.is_chance_node():
            outcomes, probs = zip(*self.chance_outcomes(), strict=True)
            self.apply_action(rng.choices(outcomes, weights=probs)[0])

    # ---- end of game -------------------------------------------------------------------
    def is_terminal(self) -> bool:
        return self.current_player() == TERMINAL

    @abstractmethod
    def returns(self) -> list[float]:
        """Per-player payoff; all zeros until terminal."""

    # ---- what players see --------------------------------------------------------------
    @abstractmethod
    def observation_text(self, player: int) -> str:
        """What `player` knows right now, as text for a prompt (private info included)."""

    def information_state_string(self, player: int) -> str:
        """Key for tabular policies: identical for states `player` cannot tell apart."""
        return self.observation_text(player)

    def history(self) -> list[tuple[int, str]]:
        return list(self._history)

    def clone(self) -> State:
        return copy.deepcopy(self)

    def __str__(self) -> str:
        return self.observation_text(max(self.current_player(), 0))


class Game(ABC):
    """A game definition. `name` is the registry key (e.g. "kuhn_poker")."""

    name: str = ""
    num_players: int = 2
    #: One paragraph of rules: the shared prefix of every prompt for this game.
    rules: str = ""

    @abstractmethod
    def new_initial_state(self, seed: int | None = None) -> State:
        """A fresh game. With a seed, chance is resolved from it (rollouts); without, the
        state starts at its chance node(s) so solvers can enumerate them."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
