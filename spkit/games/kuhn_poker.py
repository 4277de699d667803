"""Kuhn Poker (Kuhn, 1950): the smallest poker with bluffing, and SPIRAL's headline game.

Rules (standard, as in OpenSpiel, so exploitability is exact): a deck of three cards J < Q < K;
each of two players antes 1 chip and is dealt one private card. Player 0 acts first.

    first decision:  check | bet (add 1 chip)
    facing a bet:    fold (lose the pot) | call (add 1 chip, then showdown)

Terminal sequences and player 0's payoff (higher card wins at showdown):
``check check`` ±1, ``check bet fold`` −1, ``check bet call`` ±2, ``bet fold`` +1,
``bet call`` ±2. The game value for player 0 at equilibrium is −1/18.

State fields (public, read by the corpus builder):
    cards     list[str], ``cards[p]`` is player p's card ("J"/"Q"/"K"); filled by the deal.
    bets      list[str], the betting actions so far ("check", "bet", "fold", "call").

Information state strings are OpenSpiel-like keys: the player's card then one letter per
betting action, ``p`` for check/fold (OpenSpiel's "pass") and ``b`` for bet/call.
E.g. ``"Kpb"`` = holding the King, player 0 checked, player 1 bet. There are 12 such keys
(``J Q K Jp Qp Kp Jb Qb Kb Jpb Qpb Kpb``), one per infoset.
"""

from __future__ import annotations

import random

from spkit.games.base import CHANCE, TERMINAL, Game, State

CARDS = ("J", "Q", "K")
RANK = {c: i for i, c in enumerate(CARDS)}
#: Betting action -> OpenSpiel letter (p = pass, b = bet).
LETTER = {"check": "p", "fold": "p", "bet": "b", "call": "b"}


class KuhnPokerState(State):
    """A Kuhn Poker position: dealt cards and the betting so far."""

    def __init__(self, game: KuhnPokerGame) -> None:
        super().__init__(game)
        self.cards: list[str] = []
        self.bets: list[str] = []

    # ---- whose turn ----------------------------------------------------------------------
    def current_player(self) -> int:
        if len(self.cards) < 2:
            return CHANCE
        if self._betting_over():
            return TERMINAL
        return len(self.bets) % 2

    def _betting_over(self) -> bool:
        b = self.bets
        return b in (["check", "check"], ["bet", "fold"], ["bet", "call"]) or len(b) == 3

    def chance_outcomes(self) -> list[tuple[str, float]]:
        if len(self.cards) >= 2:
            return []
        left = [c for c in CARDS if c not in self.cards]
        return [(c, 1.0 / len(left)) for c in left]

    # ---- moves -------------------------------------------------------------------------
    def legal_actions(self) -> list[str]:
        if self.current_player() < 0:
            return []
        return ["fold", "call"] if self.bets and self.bets[-1] == "bet" else ["check", "bet"]

    def _apply(self, action: str) -> None:
        if len(self.cards) < 2:
            self.cards.append(action)
        else:
            self.bets.append(action)

    # ---- end of game -------------------------------------------------------------------
    def returns(self) -> list[float]:
        if not self.is_terminal():
            return [0.0, 0.0]
        b = self.bets
        if b[-1] == "fold":  # the folder loses just the ante
            loser = (len(b) - 1) % 2
            return [-1.0, 1.0] if loser == 0 else [1.0, -1.0]
        stake = 2.0 if "call" in b else 1.0
        winner = 0 if RANK[self.cards[0]] > RANK[self.cards[1]] else 1
        return [stake, -stake] if winner == 0 else [-stake, stake]

    # ---- what players see --------------------------------------------------------------
    def observation_text(self, player: int) -> str:
        card = self.cards[player] if len(self.cards) > player else "?"
        if self.bets:
            moves = ", ".join(f"Player {i % 2} {_verb(a)}" for i, a in enumerate(self.bets))
        else:
            moves = "none"
        text = f"Your card: {card}\nBetting so far: {moves}"
        if self.is_terminal():
            text += f"\nCards: Player 0 {self.cards[0]}, Player 1 {self.cards[1]}"
        return text

    def information_state_string(self, player: int) -> str:
        card = self.cards[player] if len(self.cards) > player else "?"
        return card + "".join(LETTER[a] for a in self.bets)


def _verb(action: str) -> str:
    return {"check": "checks", "bet": "bets", "fold": "folds", "call": "calls"}[action]


class KuhnPokerGame(Game):
    """Two-player Kuhn Poker with ante 1 and bet 1."""

    name = "kuhn_poker"
    num_players = 2
    rules = (
        "Kuhn Poker. Three cards: J < Q < K. Each of 2 players antes 1 chip and gets one "
        "private card. Player 0 acts first: check or bet 1 chip; after a check, Player 1 may "
        "check or bet. Facing a bet, a player must "
        "fold (lose the pot) or call 1 chip. After check-check or bet-call, the higher card "
        "wins the pot."
    )

    def new_initial_state(self, seed: int | None = None) -> KuhnPokerState:
        state = KuhnPokerState(self)
        if seed is not None:
            state.sample_chance(random.Random(seed))
        return state
