"""Notebook widgets: play the games against a model, and watch training live.

    from spkit.widgets import play, TrainingDashboard
    play("kuhn_poker", model="spkit-tiny")          # KuhnPokerBoard, TicTacToeBoard, ...
    dash = TrainingDashboard(); spiral.train(cfg, callback=dash)
"""

from spkit.widgets.boards import (
    BOARDS,
    GameBoard,
    KuhnPokerBoard,
    NegotiationBoard,
    SpyBoard,
    TicTacToeBoard,
    play,
)
from spkit.widgets.dashboard import TrainingDashboard

__all__ = [
    "BOARDS",
    "GameBoard",
    "KuhnPokerBoard",
    "NegotiationBoard",
    "SpyBoard",
    "TicTacToeBoard",
    "TrainingDashboard",
    "play",
]
