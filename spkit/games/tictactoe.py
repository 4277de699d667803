"""TicTacToe: a perfect-information game small enough to solve exactly (5,478 positions).

Player 0 plays X and moves first; player 1 plays O. Cells are numbered 1–9 row by row:

    1 2 3
    4 5 6
    7 8 9

An action is the cell number as a one-character string ("1" … "9"). The board is rendered in
three short lines with free cells shown as their number (``X O 3``), so the legal moves can be
read off the board itself. Payoffs: win +1, loss −1, draw 0.

State fields (public, read by the corpus builder):
    board     list[str] of 9 cells, each "X", "O" or "." (index 0 = cell "1").
"""

from __future__ import annotations

from spkit.games.base import TERMINAL, Game, State

LINES = (
    (0, 1, 2),
    (3, 4, 5),
    (6, 7, 8),  # rows
    (0, 3, 6),
    (1, 4, 7),
    (2, 5, 8),  # columns
    (0, 4, 8),
    (2, 4, 6),  # diagonals
)
MARKS = ("X", "O")


class TicTacToeState(State):
    """A TicTacToe position."""

    def __init__(self, game: TicTacToeGame) -> None:
        super().__init__(game)
        self.board: list[str] = ["."] * 9

    # ---- whose turn ----------------------------------------------------------------------
    def current_player(self) -> int:
        if self.winner() is not None or "." not in self.board:
            return TERMINAL
        return (9 - self.board.count(".")) % 2

    def winner(self) -> int | None:
        """0 or 1 if that player has three in a row, else None."""
        b = self.board
        for i, j, k in LINES:
            if b[i] != "." and b[i] == b[j] == b[k]:
                return MARKS.index(b[i])
        return None

    # ---- moves -------------------------------------------------------------------------
    def legal_actions(self) -> list[str]:
        if self.current_player() == TERMINAL:
            return []
        return [str(i + 1) for i, c in enumerate(self.board) if c == "."]

    def _apply(self, action: str) -> None:
        self.board[int(action) - 1] = MARKS[self.current_player()]

    # ---- end of game -------------------------------------------------------------------
    def returns(self) -> list[float]:
        w = self.winner()
        if w is None:
            return [0.0, 0.0]
        return [1.0, -1.0] if w == 0 else [-1.0, 1.0]

    # ---- what players see --------------------------------------------------------------
    def board_text(self) -> str:
        """Three lines, free cells shown as their number: ``X O 3\\n4 X 6\\n7 8 O``."""
        cells = [c if c != "." else str(i + 1) for i, c in enumerate(self.board)]
        return "\n".join(" ".join(cells[r * 3 : r * 3 + 3]) for r in range(3))

    def observation_text(self, player: int) -> str:
        return f"You play {MARKS[player]}.\nBoard:\n{self.board_text()}"

    def information_state_string(self, player: int) -> str:
        # Perfect information: the board (whose turn follows from the mark counts) is the key.
        return "".join(self.board)

    def clone(self) -> TicTacToeState:
        # Much faster than deepcopy; the solvers clone once per node.
        other = TicTacToeState.__new__(TicTacToeState)
        other.game = self.game
        other._history = list(self._history)
        other.board = list(self.board)
        return other


class TicTacToeGame(Game):
    """Classic 3x3 TicTacToe; X (player 0) moves first."""

    name = "tictactoe"
    num_players = 2
    rules = (
        "TicTacToe. Player 0 is X and moves first, Player 1 is O. Players take turns "
        "marking a free cell, numbered 1-9 row by row. Three marks in a row, column or "
        "diagonal win. A full board with no line is a draw."
    )

    def new_initial_state(self, seed: int | None = None) -> TicTacToeState:
        # No chance in TicTacToe: the seed is accepted for API uniformity and ignored.
        return TicTacToeState(self)
