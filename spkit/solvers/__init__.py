"""Exact solvers for small games: best response / NashConv, tabular CFR, minimax, logit QRE (`qre.py`).

(`matrix.py`, Nash equilibria of preference matrices, lives here too.)
"""

from spkit.solvers.cfr import CFRSolver, cfr_curve
from spkit.solvers.exploitability import (
    best_response,
    expected_returns,
    exploitability,
    game_tree,
    nash_conv,
    policy_table,
)
from spkit.solvers.minimax import solve as solve_minimax

__all__ = [
    "CFRSolver",
    "best_response",
    "cfr_curve",
    "expected_returns",
    "exploitability",
    "game_tree",
    "nash_conv",
    "policy_table",
    "solve_minimax",
]
