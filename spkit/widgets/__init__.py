"""Notebook widgets: play the games against a model, and watch training live.

    from spkit.widgets import play, TrainingDashboard
    play("kuhn_poker", model="spkit-tiny")          # KuhnPokerBoard, TicTacToeBoard, ...
    CorrectionBoard("runs/score/final")             # "correct yourself": two attempts at a problem
    NegotiationRounds.play("runs/negfb/final")      # bargaining rounds with a critic's feedback
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
from spkit.widgets.negotiation import NegotiationRounds

__all__ = [
    "BOARDS",
    "CorrectionBoard",
    "GameBoard",
    "KuhnPokerBoard",
    "NegotiationBoard",
    "NegotiationRounds",
    "SpyBoard",
    "TicTacToeBoard",
    "TrainingDashboard",
    "play",
]
