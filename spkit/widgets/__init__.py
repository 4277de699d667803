"""Notebook widgets: play the games against a model, and watch training live.

    from spkit.widgets import play, TrainingDashboard
    play("kuhn_poker", model="spkit-tiny")          # KuhnPokerBoard, TicTacToeBoard, ...
    CorrectionBoard("runs/score/final")             # "correct yourself": two attempts at a problem
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
from spkit.widgets.correction import CorrectionBoard
from spkit.widgets.dashboard import TrainingDashboard

__all__ = [
    "BOARDS",
    "CorrectionBoard",
    "GameBoard",
    "KuhnPokerBoard",
    "NegotiationBoard",
    "SpyBoard",
    "TicTacToeBoard",
    "TrainingDashboard",
    "play",
]
