"""Bargaining over one balloon: the game of Fu et al. (2023), with integer prices.

Fu, Peng, Khot, Lapata (2023), "Improving Language Model Negotiation with Self-Play and In-Context
Learning from AI Feedback", arXiv:2305.10142. A seller (Player 0) and a buyer (Player 1) haggle
over one balloon:

1. The seller's cost is $8. The first two messages are fixed, as in the paper: the seller opens
   at $20, the buyer at $10.
2. Then the players alternate, seller first. A move is ``offer P`` (an integer price between the
   two standing offers: the seller may hold or lower its own last offer but must stay above the
   buyer's; the buyer may hold or raise its own but must stay below the seller's) or ``accept``
   (the other player's last offer). ``accept`` is legal only while that offer is between $11 and
   $19: the paper's moderator counts a deal only if 10 < p < 20.
3. After `max_messages` messages (10, openings included) without an accept there is no deal.

Because moves are listed legal actions, the deal price is exact and the game itself is the
"moderator" the paper asked an LLM to be (deviation: no free text, no parser of the last "$x").

Returns (general-sum, in dollars): a deal at p gives the seller p − 8 and the buyer 20 − p (the
buyer values the balloon at the seller's opening price, $20); no deal gives both 0.

In-context feedback (``spkit.algos.negotiation_feedback``) lives on the state: the seller's
observation shows its earlier rounds' prices (``past``) and the critic's suggestions so far
(``feedback``); the buyer's observation shows neither (the rival resets every round).

`Trader` is a scripted player (a limit price and a concession step) and `scripted_game` plays two
of them, exactly: the best response of a seller against a known scripted buyer is a search over a
few dozen (limit, step) pairs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from spkit.games.base import TERMINAL, Game, State

SELLER, BUYER = 0, 1
COST = 8  # the seller's cost
VALUE = 20  # the buyer's value (= the seller's opening)
SELLER_OPEN, BUYER_OPEN = 20, 10
MIN_DEAL, MAX_DEAL = 11, 19  # a deal counts only if 10 < p < 20
ACCEPT = "accept"
ROLE = ("Seller", "Buyer")


def offer(price: int) -> str:
    """The action string of an offer at `price` dollars."""
    return f"offer {price}"


def price_of(action: str) -> int:
    """The price of an ``offer P`` action."""
    return int(action.split()[1])


class BargainingState(State):
    """A bargaining position. `moves` is [(player, action)] including the two openings."""

    def __init__(self, game: BargainingGame) -> None:
        super().__init__(game)
        self.moves: list[tuple[int, str]] = []
        self.price: int | None = None  # the deal price once accepted
        self.feedback: list[str] = []  # the critic's suggestions to the seller, oldest first
        self.past: list[int | None] = []  # the seller's earlier rounds: deal price or None

    # ---- whose turn ----------------------------------------------------------------------
    def current_player(self) -> int:
        if self.price is not None or len(self.moves) >= self.game.max_messages:
            return TERMINAL
        return len(self.moves) % 2

    def last_offer(self, player: int) -> int:
        """The standing offer of `player` (its opening until it makes another)."""
        for p, a in reversed(self.moves):
            if p == player and a != ACCEPT:
                return price_of(a)
        return SELLER_OPEN if player == SELLER else BUYER_OPEN

    # ---- moves -------------------------------------------------------------------------
    def legal_actions(self) -> list[str]:
        player = self.current_player()
        if player < 0:
            return []
        if len(self.moves) < 2:  # the fixed openings
            return [offer(SELLER_OPEN if player == SELLER else BUYER_OPEN)]
        s, b = self.last_offer(SELLER), self.last_offer(BUYER)
        prices = range(b + 1, s + 1) if player == SELLER else range(b, s)
        theirs = b if player == SELLER else s
        accept = [ACCEPT] if MIN_DEAL <= theirs <= MAX_DEAL else []
        return accept + [offer(p) for p in prices]

    def _apply(self, action: str) -> None:
        player = self.current_player()
        if action == ACCEPT:
            self.price = self.last_offer(1 - player)
        self.moves.append((player, action))

    # ---- end of game -------------------------------------------------------------------
    def returns(self) -> list[float]:
        if self.price is None:
            return [0.0, 0.0]
        return [float(self.price - COST), float(VALUE - self.price)]

    # ---- what players see --------------------------------------------------------------
    def transcript(self) -> list[str]:
        """One line per message: ``Seller offers $20``, ``Buyer accepts $14``."""
        lines = []
        for i, (p, a) in enumerate(self.moves):
            if a == ACCEPT:
                lines.append(f"{ROLE[p]} accepts ${self.last_offer_before(i, 1 - p)}")
            else:
                lines.append(f"{ROLE[p]} offers ${price_of(a)}")
        return lines

    def last_offer_before(self, i: int, player: int) -> int:
        for p, a in reversed(self.moves[:i]):
            if p == player and a != ACCEPT:
                return price_of(a)
        return SELLER_OPEN if player == SELLER else BUYER_OPEN

    def observation_text(self, player: int) -> str:
        head = (f"You are the seller of one balloon; your cost is ${COST}." if player == SELLER
                else "You are the buyer of one balloon.")
        lines = [head]
        if player == SELLER and self.past:
            lines.append("Earlier rounds: " + ", ".join("no deal" if p is None else f"${p}" for p in self.past))
        if player == SELLER and self.feedback:
            lines.append("Feedback: " + "; ".join(self.feedback))
        lines += self.transcript()
        if self.is_terminal():
            lines.append(f"Deal at ${self.price}" if self.price is not None else "No deal")
        else:
            lines.append(f"Message {len(self.moves) + 1} of {self.game.max_messages}")
        return "\n".join(lines)


class BargainingGame(Game):
    """One balloon, seller cost $8, openings $20 / $10, alternating integer offers."""

    name = "bargaining"
    num_players = 2
    rules = (
        "Bargaining. Player 0 sells one balloon to Player 1. The seller's cost is $8. The seller "
        "opens at $20 and the buyer at $10; then they take turns. A move is offer P, a whole-dollar "
        "price between the two last offers, or accept the other player's last offer. A deal counts "
        "only between $11 and $19. After 10 messages without a deal nobody gets anything. Seller's "
        "score: price minus $8. Buyer's score: $20 minus price."
    )

    def __init__(self, max_messages: int = 10) -> None:
        if max_messages < 3:
            raise ValueError("max_messages must be at least 3 (two openings and one reply)")
        if max_messages != 10:  # the rules paragraph (a fixed prompt prefix) says 10
            self.rules = self.rules.replace("After 10 messages", f"After {max_messages} messages")
        self.max_messages = max_messages

    def new_initial_state(self, seed: int | None = None) -> BargainingState:
        """The position after the two fixed openings (no chance: `seed` is not used)."""
        state = BargainingState(self)
        state.apply_action(offer(SELLER_OPEN))
        state.apply_action(offer(BUYER_OPEN))
        return state


# ---- scripted players and exact play --------------------------------------------------------------
@dataclass(frozen=True)
class Trader:
    """A scripted trader: a limit price (the seller's floor, the buyer's ceiling), a concession
    step per own turn, and a slack (accept an offer within `slack` of the own next offer).

    Seller: next = max(own last − step, limit); accept the buyer's offer b if b ≥ limit and
    b ≥ next − slack, else offer max(next, b + 1). Buyer: the mirror image. On the last message
    a trader accepts any offer within its limit (refusing there means no deal)."""

    role: int
    limit: int
    step: int
    slack: int = 0

    def act(self, state: BargainingState) -> str:
        legal = state.legal_actions()
        own, theirs = state.last_offer(self.role), state.last_offer(1 - self.role)
        last = len(state.moves) + 1 == state.game.max_messages
        sign = -1 if self.role == SELLER else 1  # a seller concedes down, a buyer up
        target = own + sign * self.step
        nxt = max(target, self.limit) if self.role == SELLER else min(target, self.limit)
        within = theirs >= self.limit if self.role == SELLER else theirs <= self.limit
        good = -sign * (nxt - theirs) <= self.slack  # their offer is at least as good as my next
        if ACCEPT in legal and within and (good or last):
            return ACCEPT
        price = min(max(nxt, theirs + 1), own) if self.role == SELLER else max(min(nxt, theirs - 1), own)
        return offer(price)

    def sample_action(self, state: BargainingState, rng: random.Random) -> str:
        """The `Policy` protocol of `spkit.games.policies` (deterministic)."""
        return self.act(state)

    def action_probabilities(self, state: BargainingState) -> dict[str, float]:
        return {self.act(state): 1.0}


def scripted_game(seller: Trader, buyer: Trader, game: BargainingGame | None = None,
                  feedback: list[str] | None = None) -> BargainingState:
    """Play two scripted traders to the end (deterministic); `feedback` is only shown."""
    state = (game or BargainingGame()).new_initial_state()
    state.feedback = list(feedback or [])
    while not state.is_terminal():
        state.apply_action((seller if state.current_player() == SELLER else buyer).act(state))
    return state


def seller_best_response(buyers: list[Trader], limits: range = range(MIN_DEAL, MAX_DEAL + 1),
                         steps: range = range(1, 6), game: BargainingGame | None = None
                         ) -> tuple[Trader, float, dict[Trader, float]]:
    """Exact best scripted seller (limit, step) against a uniform mixture of scripted `buyers`:
    (best seller, its expected return, every candidate's expected return)."""
    value = {}
    for limit in limits:
        for step in steps:
            s = Trader(SELLER, limit, step)
            value[s] = sum(scripted_game(s, b, game).returns()[SELLER] for b in buyers) / len(buyers)
    best = max(value, key=lambda s: (value[s], -s.limit, -s.step))
    return best, value[best], value
