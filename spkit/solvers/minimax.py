"""Exact minimax for two-player zero-sum games of perfect information without chance.

Algorithm (memoised negamax over the reachable positions):

1. A position is keyed by ``state.information_state_string(0)``; in a perfect-information game
   that string identifies the position (TicTacToe: the 9-character board).
2. value(terminal) = returns()[0];  value(s) = max over children for player 0 to move, min for
   player 1. Each reachable position is solved once (TicTacToe: 5,478 positions, including the
   empty board and all terminal ones).
3. For move choice a second score breaks ties between equally valued moves: win as fast as
   possible, lose as slowly as possible (``value * (100 - plies_to_end)``), then the first
   action in the game's canonical order (TicTacToe: the lowest cell number). The game value
   itself is the plain minimax value.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field

from spkit.errors import SpkitError
from spkit.games.base import Game, State
from spkit.games.policies import Policy


@dataclass
class MinimaxSolution:
    """Solved positions of a game: key -> (value for player 0, tie-break score for player 0)."""

    game: Game
    values: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def num_states(self) -> int:
        return len(self.values)

    def value(self, state: State) -> float:
        """Game-theoretic value of `state` for player 0 (solving it if not seen yet)."""
        key = state.information_state_string(0)
        if key not in self.values:
            _solve(state, self)
        return self.values[key]

    def action_values(self, state: State) -> dict[str, tuple[float, float]]:
        """For the player to move: action -> (value, tie-break score), both from *their* side."""
        sign = 1.0 if state.current_player() == 0 else -1.0
        out = {}
        for action in state.legal_actions():
            child = state.clone()
            child.apply_action(action)
            self.value(child)
            key = child.information_state_string(0)
            out[action] = (sign * self.values[key], sign * self.scores[key])
        return out

    def best_action(self, state: State) -> str:
        """The deterministic optimal move: best value, then fastest win / slowest loss, then
        the first legal action in canonical order."""
        scored = self.action_values(state)
        best = max(scored[a] for a in state.legal_actions())
        return next(a for a in state.legal_actions() if scored[a] == best)

    def optimal_actions(self, state: State) -> list[str]:
        """Every move that keeps the game-theoretic value (ignores the speed tie-break)."""
        scored = self.action_values(state)
        best = max(v for v, _ in scored.values())
        return [a for a in state.legal_actions() if scored[a][0] == best]


def _solve(state: State, sol: MinimaxSolution) -> None:
    key = state.information_state_string(0)
    if key in sol.values:
        return
    if state.is_terminal():
        v = state.returns()[0]
        sol.values[key], sol.scores[key] = v, v * 100.0
        return
    player = state.current_player()
    if player not in (0, 1):
        raise SpkitError(
            f"minimax needs a 2-player game without chance; {sol.game.name} has player {player}"
        )
    children = []
    for action in state.legal_actions():
        child = state.clone()
        child.apply_action(action)
        _solve(child, sol)
        ck = child.information_state_string(0)
        # A move one ply further from the end shrinks the magnitude of the speed score by 1.
        s = sol.scores[ck]
        children.append((sol.values[ck], s - 1.0 if s > 0 else s + 1.0 if s < 0 else 0.0))
    pick = max if player == 0 else min
    sol.values[key] = pick(v for v, _ in children)
    sol.scores[key] = pick(s for _, s in children)


def solve(game: Game) -> MinimaxSolution:
    """Solve every position reachable from the initial state (memoised, one pass)."""
    sol = MinimaxSolution(game)
    t0 = time.perf_counter()
    _solve(game.new_initial_state(), sol)
    sol.seconds = time.perf_counter() - t0
    return sol


_SOLVED: weakref.WeakKeyDictionary[Game, MinimaxSolution] = weakref.WeakKeyDictionary()


def solved(game: Game) -> MinimaxSolution:
    """`solve`, cached per game object (TicTacToe is solved once per game instance)."""
    sol = _SOLVED.get(game)
    if sol is None:
        sol = _SOLVED[game] = solve(game)
    return sol


class MinimaxPolicy(Policy):
    """Perfect play in a two-player perfect-information game (TicTacToe), deterministic.

    Tie-break among optimal moves: fastest win / slowest loss, then the lowest cell (first
    legal action). The game is solved once (≈0.1 s) and cached.
    """

    def __init__(self, game: Game) -> None:
        self.solution = solved(game)

    def action_probabilities(self, state: State) -> dict[str, float]:
        best = self.solution.best_action(state)
        return {a: float(a == best) for a in state.legal_actions()}


def mass_on_optimal(game: Game, table, seat: int) -> dict[str, object]:
    """Exact play of a stochastic policy in seat `seat` against `MinimaxPolicy`.

    `table(states)` returns, for a list of states, ``(probs, legal_mass)``: per state a dict
    legal move -> probability (renormalised over the legal moves) and the probability of
    answering legally at all (an illegal answer loses). Against perfect play a move that gives
    up game-theoretic value loses, so only value-keeping moves are followed; level by level
    (one `table` call per learner move) this gives
      ``not_lose``: P(draw or win) against perfect play, exactly;
      ``by_move``: for the policy's k-th move, Σ reach · mass on value-keeping moves / Σ reach
        over the positions it reaches still holding the game value (what is lost where);
      ``positions``: how many such positions were evaluated.
    """
    sol = solved(game)
    perfect = MinimaxPolicy(game)
    frontier = [(game.new_initial_state(), 1.0)]
    not_lose, by_move, positions = 0.0, [], 0
    while frontier:
        mine: list[tuple[State, float]] = []
        while frontier:  # the opponent's deterministic replies, up to the policy's next move
            state, reach = frontier.pop()
            if state.is_terminal():
                not_lose += reach * (state.returns()[seat] >= 0)
            elif state.current_player() == seat:
                mine.append((state, reach))
            else:
                child = state.clone()
                child.apply_action(perfect.solution.best_action(state))
                frontier.append((child, reach))
        if not mine:
            break
        probs, legal = table([s for s, _ in mine])
        kept = total = 0.0
        for (state, reach), p, m in zip(mine, probs, legal, strict=True):
            good = sol.optimal_actions(state)
            kept += reach * sum(p[a] for a in good)
            total += reach
            for a in good:
                child = state.clone()
                child.apply_action(a)
                frontier.append((child, reach * m * p[a]))
        by_move.append(kept / total if total else float("nan"))
        positions += len(mine)
    return {"not_lose": not_lose, "by_move": by_move, "positions": positions}
