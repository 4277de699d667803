"""Games with one small API (see `base.py`) and their LLM prompt formats (see `prompts.py`).

``load_game(name)`` is the registry: "kuhn_poker", "tictactoe", "negotiation", "spy",
"bargaining", or
"textarena:<EnvId>" for any installed TextArena environment (e.g. "textarena:TicTacToe-v0").
"""

from __future__ import annotations

from collections.abc import Callable

from spkit.errors import SpkitError
from spkit.games.base import CHANCE, TERMINAL, Game, InvalidMove, State


def _kuhn() -> Game:
    from spkit.games.kuhn_poker import KuhnPokerGame

    return KuhnPokerGame()


def _tictactoe() -> Game:
    from spkit.games.tictactoe import TicTacToeGame

    return TicTacToeGame()


def _negotiation() -> Game:
    from spkit.games.negotiation import NegotiationGame

    return NegotiationGame()


def _bargaining() -> Game:
    from spkit.games.bargaining import BargainingGame

    return BargainingGame()


def _spy() -> Game:
    from spkit.games.spy import SpyGame

    return SpyGame()


GAMES: dict[str, Callable[[], Game]] = {
    "kuhn_poker": _kuhn,
    "tictactoe": _tictactoe,
    "negotiation": _negotiation,
    "spy": _spy,
    "bargaining": _bargaining,
}


def load_game(name: str) -> Game:
    """A game by registry name; unknown names raise `SpkitError` listing the known ones."""
    if not isinstance(name, str):
        raise SpkitError(f"game name must be a string, got {type(name).__name__}")
    key = name.strip()
    if key.lower().startswith("textarena:"):
        from spkit.games.textarena import TextArenaGame

        return TextArenaGame(key.split(":", 1)[1])
    if key.lower() in GAMES:
        return GAMES[key.lower()]()
    known = ", ".join([*GAMES, "textarena:<EnvId>"])
    raise SpkitError(f"unknown game {name!r}; known games: {known}")


__all__ = ["CHANCE", "GAMES", "TERMINAL", "Game", "InvalidMove", "State", "load_game"]
