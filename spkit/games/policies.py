"""Policies (OpenSpiel-style) and evaluation matches between them.

A policy is anything with

    action_probabilities(state) -> dict[str, float]   # over state.legal_actions()
    sample_action(state, rng: random.Random) -> str

and must only depend on what the player to move knows (its information state), so the exact
solvers in `spkit.solvers` can evaluate it. `Policy` supplies `sample_action` from
`action_probabilities`. Language models implement the same protocol (`spkit.lm_policy.LLMPolicy`).

Opponents: `UniformRandomPolicy`, `TabularPolicy` (infoset -> probs, e.g. a CFR average),
`EpsilonPerfectPolicy` (a perfect policy that errs with
probability ε), `HeuristicNegotiator` (a fixed, sensible negotiation strategy).

`play_match` plays seeded games and reports per-seat returns and win/draw/loss rates with
Wilson 95% confidence intervals.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from spkit.errors import SpkitError
from spkit.games.base import Game, InvalidMove, State
from spkit.games.prompts import is_free_text

#: SPIRAL's rule for an invalid move: the game ends, offender −1.5, every other player +0.5.
INVALID_PENALTY = -1.5
INVALID_BONUS = 0.5

#: Generic clues a non-language policy gives in Who-is-the-Spy (filtered per state).
GENERIC_CLUES = ("it is common", "you can find it easily", "many people know it", "quite nice")


@runtime_checkable
class PolicyProtocol(Protocol):
    def action_probabilities(self, state: State) -> dict[str, float]: ...

    def sample_action(self, state: State, rng: random.Random) -> str | InvalidMove: ...


class Policy:
    """Base class: subclasses implement `action_probabilities`; sampling comes for free."""

    def action_probabilities(self, state: State) -> dict[str, float]:
        raise NotImplementedError

    def sample_action(self, state: State, rng: random.Random) -> str | InvalidMove:
        probs = self.action_probabilities(state)
        actions = list(probs)
        return rng.choices(actions, weights=[probs[a] for a in actions])[0]


def free_text_options(state: State) -> list[str]:
    """Stand-in actions for a free-text phase (Spy clues): the valid generic clues."""
    check = getattr(state, "clue_problem", None)
    return [c for c in GENERIC_CLUES if check is None or check(c) is None]


def _options(state: State) -> list[str]:
    legal = state.legal_actions()
    return free_text_options(state) if is_free_text(legal) else legal


class UniformRandomPolicy(Policy):
    """Every legal action equally likely (generic clues in Spy's clue phase)."""

    def action_probabilities(self, state: State) -> dict[str, float]:
        options = _options(state)
        return {a: 1.0 / len(options) for a in options}


class TabularPolicy(Policy):
    """infoset string -> {action: prob}; unseen infosets fall back to uniform (documented,
    so a partial table is usable) unless ``strict=True``."""

    def __init__(self, table: Mapping[str, Mapping[str, float]], strict: bool = False) -> None:
        self.table = {k: dict(v) for k, v in table.items()}
        self.strict = strict

    def action_probabilities(self, state: State) -> dict[str, float]:
        key = state.information_state_string(state.current_player())
        if key not in self.table:
            if self.strict:
                raise SpkitError(f"tabular policy has no entry for information state {key!r}")
            return UniformRandomPolicy().action_probabilities(state)
        legal = state.legal_actions()
        probs = {a: max(self.table[key].get(a, 0.0), 0.0) for a in legal}
        total = sum(probs.values())
        if total <= 0:
            return {a: 1.0 / len(legal) for a in legal}
        return {a: p / total for a, p in probs.items()}


class EpsilonPerfectPolicy(Policy):
    """(1 − ε) · perfect + ε · uniform: a beatable but strong opponent."""

    def __init__(self, perfect: Policy, epsilon: float) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise SpkitError(f"epsilon must be in [0, 1], got {epsilon}")
        self.perfect, self.epsilon = perfect, epsilon

    def action_probabilities(self, state: State) -> dict[str, float]:
        legal = _options(state)
        base = self.perfect.action_probabilities(state)
        return {a: (1 - self.epsilon) * base.get(a, 0.0) + self.epsilon / len(legal) for a in legal}


class HeuristicNegotiator(Policy):
    """A fixed, deterministic negotiation strategy with a conceding aspiration level.

    Aspiration in round r (0-based): ``aspirations[min(r, len-1)]`` (default 0.8, 0.7, 0.6, 0.5)
    of the player's own pool value.
    * Proposer: among offers worth at least the aspiration to itself, the one that leaves the
      most items to the other player (a proxy for the other's value, which it cannot see);
      ties -> higher own value, then canonical order. If none qualifies, keep everything valued.
    * Responder: accept iff what it would receive is worth at least the aspiration; in the last
      round accept anything worth more than 0 (no deal is worth 0).
    """

    def __init__(self, aspirations: Sequence[float] = (0.8, 0.7, 0.6, 0.5)) -> None:
        self.aspirations = tuple(aspirations)

    def _aspiration(self, state: State) -> float:
        r = len(state.answers)  # type: ignore[attr-defined]
        return self.aspirations[min(r, len(self.aspirations) - 1)]

    def choose(self, state: State) -> str:
        me = state.current_player()
        values, pool = state.values[me], state.pool  # type: ignore[attr-defined]
        total = sum(v * n for v, n in zip(values, pool, strict=True))
        legal = state.legal_actions()
        if legal == ["accept", "deny"]:
            take = state.offers[-1][1]  # type: ignore[attr-defined]
            got = sum(v * (n - t) for v, n, t in zip(values, pool, take, strict=True)) / total
            last = len(state.answers) + 1 >= state.game.max_rounds  # type: ignore[attr-defined]
            return "accept" if got >= self._aspiration(state) or (last and got > 0) else "deny"
        best, best_key = legal[0], None
        for offer in legal:
            take = [int(x) for x in offer.split()]
            mine = sum(v * t for v, t in zip(values, take, strict=True)) / total
            if mine + 1e-9 < self._aspiration(state):
                continue
            key = (sum(pool) - sum(take), mine)
            if best_key is None or key > best_key:
                best, best_key = offer, key
        if best_key is None:
            best = " ".join(str(n if v > 0 else 0) for v, n in zip(values, pool, strict=True))
        return best

    def action_probabilities(self, state: State) -> dict[str, float]:
        choice = self.choose(state)
        return {a: float(a == choice) for a in state.legal_actions()}


# ---- matches -------------------------------------------------------------------------------
def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (well behaved at 0 and 1, unlike ±1.96·se)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class MatchStats:
    """Outcome counts per seat over `n_games` games (win = positive return, loss = negative)."""

    n_games: int
    num_players: int
    total_returns: list[float] = field(default_factory=list)
    wins: list[int] = field(default_factory=list)
    draws: list[int] = field(default_factory=list)
    losses: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)  # invalid moves made by each seat
    moves: int = 0

    def mean_return(self, seat: int = 0) -> float:
        return self.total_returns[seat] / max(self.n_games, 1)

    def rate(self, kind: str, seat: int = 0) -> float:
        return getattr(self, kind)[seat] / max(self.n_games, 1)

    def interval(self, kind: str, seat: int = 0) -> tuple[float, float]:
        """Wilson 95% interval of the win / draw / loss rate ("wins", "draws", "losses")."""
        return wilson_interval(getattr(self, kind)[seat], self.n_games)

    def summary(self, seat: int = 0) -> str:
        parts = []
        for kind in ("wins", "draws", "losses"):
            lo, hi = self.interval(kind, seat)
            parts.append(f"{kind} {self.rate(kind, seat):.3f} [{lo:.3f}, {hi:.3f}]")
        return f"seat {seat}: " + ", ".join(parts) + f", mean return {self.mean_return(seat):+.3f}"


def play_game(
    game: Game, policies: Sequence[PolicyProtocol], seed: int
) -> tuple[State, int | None]:
    """One seeded game; returns (final state, seat of an invalid move or None).

    Chance is resolved from `seed`; each policy samples with its own RNG derived from
    (seed, seat), so adding a player's randomness never shifts another's.
    """
    state = game.new_initial_state(seed=seed)
    rngs = [random.Random(seed * 1_000_003 + 7919 * seat) for seat in range(game.num_players)]
    while not state.is_terminal():
        if state.is_chance_node():
            state.sample_chance(random.Random(seed))
            continue
        seat = state.current_player()
        action = policies[seat].sample_action(state, rngs[seat])
        if isinstance(action, InvalidMove):
            return state, seat
        state.apply_action(action)
    return state, state.invalid_by


def play_match(
    game: Game, policies: Sequence[PolicyProtocol], n_games: int, seed: int = 0
) -> MatchStats:
    """Play `n_games` seeded games with ``policies[seat]`` in each seat (swap seats yourself).

    Game i uses seed ``seed + i``. An invalid move ends the game with SPIRAL's penalty
    (offender −1.5, others +0.5) and is counted in ``invalid``.
    """
    if len(policies) != game.num_players:
        raise SpkitError(f"{game.name} needs {game.num_players} policies, got {len(policies)}")
    n = game.num_players
    stats = MatchStats(n_games, n, [0.0] * n, [0] * n, [0] * n, [0] * n, [0] * n)
    for i in range(n_games):
        state, bad = play_game(game, policies, seed + i)
        stats.moves += len([h for h in state.history() if h[0] >= 0])
        if bad is None:
            returns = state.returns()
        else:
            stats.invalid[bad] += 1
            returns = [INVALID_PENALTY if p == bad else INVALID_BONUS for p in range(n)]
        for p, r in enumerate(returns):
            stats.total_returns[p] += r
            kind = stats.wins if r > 0 else stats.losses if r < 0 else stats.draws
            kind[p] += 1
    return stats
