"""Simple Negotiation: split a small pool of items under private values (alternating offers).

A small, fully enumerable variant of the "deal or no deal" game used in SPIRAL's suite:

1. Chance draws a pool of three item types (books, hats, balls), 1–3 of each, at most 6
   items in all; then each player's private integer values per item, such that the whole pool
   is worth exactly 10 to that player (uniform over all such value vectors).
2. Round r = 0, 1, …, ``max_rounds − 1``: player ``r % 2`` proposes a split. An offer is the
   string ``"a b c"``: the proposer takes a books, b hats and c balls, the other player gets
   the rest. All (pool[0]+1)(pool[1]+1)(pool[2]+1) ≤ 27 offers are legal, listed in
   lexicographic order.
3. The other player answers ``accept`` (the game ends with that split) or ``deny`` (next
   round). After ``max_rounds`` denied offers there is no deal.

Payoffs are zero-sum, as in SPIRAL: with u_p = (player p's value of what p receives) / 10
∈ [0, 1], player 0 gets u_0 − u_1 and player 1 gets u_1 − u_0; no deal is 0 for both.
``utilities()`` exposes the general-sum u_p for analysis.

State fields (public, read by the corpus builder):
    pool        list[int], count per item type (ITEMS order); empty until dealt.
    values      list[list[int]], ``values[p][i]`` = player p's private value of one item i.
    offers      list[tuple[int, list[int]]], (proposer, items the proposer takes) per round.
    answers     list[str], "accept"/"deny" per answered offer.
    allocation  list[list[int]] | None, items each player receives once a deal is made.
"""

from __future__ import annotations

import functools
import itertools
import random

from spkit.games.base import CHANCE, TERMINAL, Game, State

ITEMS = ("books", "hats", "balls")
TOTAL_VALUE = 10
MAX_ITEMS = 6
_ANSWER_VERB = {"accept": "accepts", "deny": "denies"}


@functools.lru_cache(maxsize=1)
def all_pools() -> list[tuple[int, ...]]:
    """Every pool: 1–3 of each item type, at most MAX_ITEMS items in all."""
    return [p for p in itertools.product((1, 2, 3), repeat=3) if sum(p) <= MAX_ITEMS]


@functools.lru_cache(maxsize=64)
def value_vectors(pool: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every non-negative integer value vector v with sum(pool[i] * v[i]) == TOTAL_VALUE."""
    ranges = [range(TOTAL_VALUE // n + 1) for n in pool]
    return [
        v
        for v in itertools.product(*ranges)
        if sum(n * x for n, x in zip(pool, v, strict=True)) == TOTAL_VALUE
    ]


def _fmt(counts: list[int] | tuple[int, ...]) -> str:
    return " ".join(str(c) for c in counts)


def _describe(counts: list[int] | tuple[int, ...]) -> str:
    return ", ".join(f"{name} {c}" for name, c in zip(ITEMS, counts, strict=True))


class NegotiationState(State):
    """A negotiation position."""

    def __init__(self, game: NegotiationGame) -> None:
        super().__init__(game)
        self.pool: list[int] = []
        self.values: list[list[int]] = []
        self.offers: list[tuple[int, list[int]]] = []
        self.answers: list[str] = []
        self.allocation: list[list[int]] | None = None

    # ---- whose turn ----------------------------------------------------------------------
    def current_player(self) -> int:
        if not self.pool or len(self.values) < 2:
            return CHANCE
        if self.allocation is not None or len(self.answers) >= self.game.max_rounds:
            return TERMINAL
        round_ = len(self.answers)
        proposer = round_ % 2
        return proposer if len(self.offers) == round_ else 1 - proposer

    def chance_outcomes(self) -> list[tuple[str, float]]:
        if not self.pool:
            options = ["items " + _fmt(p) for p in all_pools()]
        elif len(self.values) < 2:
            options = ["values " + _fmt(v) for v in value_vectors(tuple(self.pool))]
        else:
            return []
        return [(o, 1.0 / len(options)) for o in options]

    # ---- moves -------------------------------------------------------------------------
    def legal_actions(self) -> list[str]:
        player = self.current_player()
        if player < 0:
            return []
        if len(self.offers) > len(self.answers):
            return ["accept", "deny"]
        return [_fmt(o) for o in itertools.product(*(range(n + 1) for n in self.pool))]

    def _apply(self, action: str) -> None:
        if not self.pool:
            self.pool = [int(x) for x in action.split()[1:]]
        elif len(self.values) < 2:
            self.values.append([int(x) for x in action.split()[1:]])
        elif action in ("accept", "deny"):
            self.answers.append(action)
            if action == "accept":
                proposer, take = self.offers[-1]
                rest = [n - t for n, t in zip(self.pool, take, strict=True)]
                self.allocation = [take, rest] if proposer == 0 else [rest, take]
        else:
            self.offers.append((self.current_player(), [int(x) for x in action.split()]))

    # ---- end of game -------------------------------------------------------------------
    def utilities(self) -> list[float]:
        """General-sum u_p ∈ [0, 1]: p's value of what p receives / TOTAL_VALUE (0 if no deal)."""
        if self.allocation is None:
            return [0.0, 0.0]
        return [
            sum(v * n for v, n in zip(self.values[p], self.allocation[p], strict=True))
            / TOTAL_VALUE
            for p in range(2)
        ]

    def returns(self) -> list[float]:
        if not self.is_terminal():
            return [0.0, 0.0]
        u0, u1 = self.utilities()
        return [u0 - u1, u1 - u0]

    # ---- what players see --------------------------------------------------------------
    def observation_text(self, player: int) -> str:
        if not self.pool or len(self.values) <= player:
            return "Items: not dealt yet"
        vals = ", ".join(
            f"{name[:-1]} {v}" for name, v in zip(ITEMS, self.values[player], strict=True)
        )
        lines = [f"Items: {_describe(self.pool)}", f"Your values: {vals}"]
        for i, (proposer, take) in enumerate(self.offers):
            line = f"Player {proposer} offers {_fmt(take)}"
            if i < len(self.answers):
                line += f"; Player {1 - proposer} {_ANSWER_VERB[self.answers[i]]}"
            lines.append(line)
        if len(self.offers) > len(self.answers) and self.offers[-1][0] != player:
            take = self.offers[-1][1]
            lines.append(
                f"If you accept, you get {_fmt([n - t for n, t in zip(self.pool, take, strict=True)])}"
            )
        if not self.is_terminal():
            lines.append(f"Round {len(self.answers) + 1} of {self.game.max_rounds}")
        return "\n".join(lines)


class NegotiationGame(Game):
    """Alternating-offers split of books, hats and balls with private values."""

    name = "negotiation"
    num_players = 2
    rules = (
        "Negotiation. Two players split a pool of books, hats and balls. Each player has "
        "private values per item; the whole pool is worth 10 to each player. Players take "
        "turns to offer a split: offer a b c means the proposer takes a books, b hats and c "
        "balls, and the other player gets the rest. The other player may accept or deny. "
        "After 4 denied offers nobody gets anything. Score: your value minus the other "
        "player's value, divided by 10."
    )

    def __init__(self, max_rounds: int = 4) -> None:
        if max_rounds != 4:
            # The rules paragraph (a fixed prompt prefix) says 4; keep text and game in step.
            self.rules = self.rules.replace("After 4 denied", f"After {max_rounds} denied")
        self.max_rounds = max_rounds

    def new_initial_state(self, seed: int | None = None) -> NegotiationState:
        state = NegotiationState(self)
        if seed is not None:
            state.sample_chance(random.Random(seed))
        return state
