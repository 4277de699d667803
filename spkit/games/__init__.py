"""Games with one small API (see `base.py`) and their LLM prompt formats (see `prompts.py`)."""

from spkit.games.base import CHANCE, TERMINAL, Game, InvalidMove, State

__all__ = ["CHANCE", "TERMINAL", "Game", "InvalidMove", "State"]
