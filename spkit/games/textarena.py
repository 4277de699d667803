"""Adapter: any TextArena environment id becomes an spkit `Game` (for play and rollouts).

``load_game("textarena:TicTacToe-v0")`` wraps ``textarena.make("TicTacToe-v0")``. TextArena
environments resolve chance internally (from the reset seed) and describe their own rules in
the observation, so:

* There are no chance nodes and no exact solvers here; use `play_match` / rollouts.
* ``observation_text(p)`` is TextArena's accumulated observation for player p (the latest
  one p was shown). ``Game.rules`` is a one-line header; the env's text carries the rules.
* Legal actions: when the observation lists them (``Available Moves: '[0]', '[4]'`` or
  ``Available Actions: [up], [down]``), the bracket contents of the *last* such line are the
  spkit actions (``"4"``, ``"up"``), and the env receives ``"[4]"``. Otherwise the move is free
  text: ``legal_actions() == [FREE_TEXT]`` and the boxed text is sent verbatim.
* ``returns()`` are TextArena's rewards once the env reports the game done.
* The number of players is detected by trying ``reset`` with 1..4 players (cached per id) or
  given explicitly.

textarena is an optional dependency: without it, loading raises a one-line `SpkitError`.
"""

from __future__ import annotations

import copy
import functools
import re

from spkit.errors import SpkitError
from spkit.games.base import TERMINAL, Game, InvalidMove, State
from spkit.games.prompts import FREE_TEXT

_MOVES_LINE = re.compile(r"^\s*Available (?:Moves|Actions)\s*:(.*)$", re.MULTILINE)
_BRACKET = re.compile(r"\[([^\[\]]*)\]")


def _ta():
    try:
        import textarena
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SpkitError(
            "TextArena games need the textarena package: pip install 'spkit[textarena]'"
        ) from exc
    return textarena


def listed_moves(observation: str) -> list[str] | None:
    """Bracket contents of the last 'Available Moves/Actions:' line, or None if there is none."""
    lines = _MOVES_LINE.findall(observation)
    if not lines:
        return None
    moves = [m.strip() for m in _BRACKET.findall(lines[-1])]
    moves = list(dict.fromkeys(m for m in moves if m))  # unique, order kept
    return moves or None


@functools.lru_cache(maxsize=64)
def detect_num_players(env_id: str) -> int:
    """Smallest player count in 1..4 that the environment's reset accepts."""
    ta = _ta()
    for n in (1, 2, 3, 4):
        env = ta.make(env_id)
        try:
            env.reset(num_players=n, seed=0)
        except Exception:  # TextArena asserts on an unsupported player count
            continue
        return n
    raise SpkitError(f"TextArena env {env_id!r} accepts none of 1-4 players")


class TextArenaState(State):
    """A live TextArena environment behind the spkit State API."""

    def __init__(self, game: TextArenaGame, seed: int) -> None:
        super().__init__(game)
        self.env = game.make_env()
        self.env.reset(num_players=game.num_players, seed=seed)
        self.player, obs = self.env.get_observation()
        self.observations: dict[int, str] = {self.player: obs}
        self.done = False
        self.rewards: dict[int, float] = {}
        self.info: dict = {}

    # ---- whose turn ----------------------------------------------------------------------
    def current_player(self) -> int:
        return TERMINAL if self.done else int(self.player)

    # ---- moves -------------------------------------------------------------------------
    def legal_actions(self) -> list[str]:
        if self.done:
            return []
        return listed_moves(self.observations.get(self.player, "")) or [FREE_TEXT]

    def free_text_problem(self, text: str):
        """Free-text moves only need to be non-empty; the env judges the rest."""
        return None if text.strip() else InvalidMove("empty move")

    def apply_action(self, action: str) -> None:
        if self.legal_actions() == [FREE_TEXT] and isinstance(action, str) and action.strip():
            player = self.current_player()
            self._apply(action.strip())
            self._history.append((player, action.strip()))
            return
        super().apply_action(action)

    def _apply(self, action: str) -> None:
        listed = self.legal_actions() != [FREE_TEXT]
        done, _ = self.env.step(f"[{action}]" if listed else action)
        if done:
            self.done = True
            rewards, self.info = self.env.close()
            self.rewards = {int(k): float(v) for k, v in (rewards or {}).items()}
        else:
            self.player, obs = self.env.get_observation()
            self.observations[self.player] = obs

    # ---- end of game -------------------------------------------------------------------
    def returns(self) -> list[float]:
        return [self.rewards.get(p, 0.0) for p in range(self.game.num_players)]

    # ---- what players see --------------------------------------------------------------
    def observation_text(self, player: int) -> str:
        return self.observations.get(player, "").strip()

    def clone(self) -> TextArenaState:
        # Copy the env (its own state and RNG) but share the immutable game object.
        return copy.deepcopy(self, memo={id(self.game): self.game})


class TextArenaGame(Game):
    """A TextArena env id as an spkit game (see the module docstring)."""

    def __init__(self, env_id: str, num_players: int | None = None) -> None:
        ta = _ta()
        from textarena.envs.registration import ENV_REGISTRY

        if env_id not in ENV_REGISTRY:
            close = [e for e in ENV_REGISTRY if env_id.lower().split("-")[0] in e.lower()][:8]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise SpkitError(f"unknown TextArena env {env_id!r}{hint}")
        del ta  # imported above only to fail early; states import it again (no module on self)
        self.env_id = env_id
        self.name = f"textarena:{env_id}"
        self.num_players = num_players or detect_num_players(env_id)
        self.rules = f"A TextArena game ({env_id}); the game describes its rules below."

    def make_env(self):
        return _ta().make(self.env_id)

    def new_initial_state(self, seed: int | None = None) -> TextArenaState:
        # TextArena resolves chance itself from the reset seed; no seed means seed 0.
        return TextArenaState(self, 0 if seed is None else seed)

    def __repr__(self) -> str:
        return f"TextArenaGame({self.env_id!r})"
