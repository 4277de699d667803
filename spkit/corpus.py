r"""The synthetic pretraining corpus of spkit-tiny, in the exact formats the rest of spkit uses.

Formats are imported, never restated: game prompts come from `spkit.games.prompts`, arithmetic
from `spkit.tasks.arithmetic` (GSM8K format, train split only), instructions from
`spkit.tasks.instructions` (IFEval format, train split only). Change a format there and
regenerate the model with `spkit pretrain`.

What the model is shown decides what it can later *learn*, so the demonstrations are
deliberately mediocre:
- game moves are always legal and in the right format, but chosen by a weak, noisy policy
  (a loose, exploitable card-and-situation style in Kuhn Poker, half-random play in
  TicTacToe, greedy offers in Negotiation), so self-play has something to improve;
- reasoning is one or two short template sentences read off the state, then `\boxed{move}`;
- arithmetic solutions are correct and step by step, so accuracy grows with training but
  falls with the number of steps;
- a few ProcessBench-style critiques (train-split problems, the critic template of
  `spkit.tasks.steps`, the index of the first wrong step) so the answer format is known.

Why the Kuhn Poker style differs by card *and* by situation: what self-play can later learn
is limited by what the network tells apart. With a style that played J and Q alike (bet 30%
vs 45%), spkit-tiny's gradients for the J and Q prompts had cosine similarity 1.00, so no RL
update could ever separate the two cards — and the best Kuhn policy with J and Q tied (and
the betting history ignored) has NashConv 0.19. See `spkit.algos.spiral` for the measurements.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from spkit.errors import SpkitError
from spkit.games import load_game
from spkit.games.base import Game, State
from spkit.games.prompts import format_prompt, is_free_text
from spkit.tasks import arithmetic, instructions, steps

#: Share of documents per kind (games split evenly in prompt modes: 60% reasoning, 40% direct).
MIX = {
    "kuhn_poker": 0.16,
    "tictactoe": 0.16,
    "negotiation": 0.10,
    "spy": 0.08,
    "arithmetic": 0.31,
    "instructions": 0.14,
    "steps": 0.05,
}
DIRECT_SHARE = 0.4


def counts(n: int) -> dict[str, int]:
    """Documents per kind for a corpus of `n` (the remainder goes to arithmetic)."""
    c = {k: int(n * w) for k, w in MIX.items()}
    c["arithmetic"] += n - sum(c.values())
    return c


def build(n: int, seed: int = 0) -> list[str]:
    """`n` documents (prompt + completion), shuffled; same seed -> same corpus."""
    rng = random.Random(f"spkit-corpus-{seed}")
    docs: list[str] = []
    per_kind = counts(n)
    for game in ("kuhn_poker", "tictactoe", "negotiation", "spy"):
        docs += game_documents(game, per_kind[game], rng)
    docs += [
        arithmetic.prompt(r["question"]) + " " + r["answer"]
        for r in arithmetic.generate(per_kind["arithmetic"], seed=seed, split="train")
    ]
    docs += [
        r["prompt"] + "\n" + instructions.reference_response(r, rng)
        for r in instructions.generate(per_kind["instructions"], seed=seed, split="train")
    ]
    docs += critique_documents(per_kind["steps"], seed)
    rng.shuffle(docs)
    return docs


def critique_documents(n: int, seed: int) -> list[str]:
    """`n` ProcessBench-style critiques of train-split solutions, spread over the subsets."""
    subsets = list(steps.SUBSETS)
    per = [n // len(subsets) + (i < n % len(subsets)) for i in range(len(subsets))]
    return [steps.document(r) for sub, k in zip(subsets, per, strict=True)
            for r in steps.generate(k, seed=seed, subset=sub, split="train")]


# ---- game transcripts ---------------------------------------------------------------------


def game_documents(name: str, n: int, rng: random.Random) -> list[str]:
    """`n` decision points from whole games: each is one prompt and its demonstration."""
    game = load_game(name)
    docs: list[str] = []
    while len(docs) < n:
        state = game.new_initial_state(seed=rng.randrange(2**31))
        while not state.is_terminal() and len(docs) < n:
            player = state.current_player()
            move, why = DEMONSTRATORS[name](state, player, rng)
            if rng.random() < DIRECT_SHARE:
                docs.append(format_prompt(state, player, "direct") + move + "}")
            else:
                docs.append(format_prompt(state, player, "reasoning") + f"{why} \\boxed{{{move}}}")
            state.apply_action(move)
    return docs


def format_demonstrations(game: Game, n: int, mode: str, seed: int) -> list[tuple[str, str]]:
    """`n` (prompt, completion) pairs from random games of any game (a TextArena env too): at
    each decision point a uniformly random legal move, answered in `mode`'s format (direct:
    ``move}``; reasoning: ``I play move. \boxed{move}``). What a short SFT on a new game's rules
    trains on: the prompt layout and the legal moves, with no strategy (self-play adds that).
    Free-text turns end a game (there is no move to demonstrate), unless the game scripts its
    own demonstrations: a game with ``demonstrate(state, rng, mode) -> (move, completion)``
    (e.g. `spkit.games.redteam`, whose attacker writes free text) is played with those moves
    and completions at every decision point."""
    demonstrate = getattr(game, "demonstrate", None)
    if demonstrate is not None:
        return _scripted_demonstrations(game, demonstrate, n, mode, random.Random(seed))
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    for attempt in range(100 * n + 100):
        if len(pairs) >= n:
            break
        if attempt >= 100 and not pairs:
            raise SpkitError(f"{game.name}: no listed legal moves to demonstrate (a free-text game)")
        state = game.new_initial_state(seed=rng.randrange(2**31))
        while not state.is_terminal() and len(pairs) < n and not is_free_text(state.legal_actions()):
            move = rng.choice(state.legal_actions())
            answer = f"{move}}}" if mode == "direct" else f"I play {move}. \\boxed{{{move}}}"
            pairs.append((format_prompt(state, state.current_player(), mode), answer))
            state.apply_action(move)
    return pairs


def _scripted_demonstrations(game: Game, demonstrate, n: int, mode: str, rng: random.Random
                             ) -> list[tuple[str, str]]:
    """`format_demonstrations` for a game that writes its own (move, completion) pairs."""
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        state = game.new_initial_state(seed=rng.randrange(2**31))
        while not state.is_terminal() and len(pairs) < n:
            move, completion = demonstrate(state, rng, mode)
            pairs.append((format_prompt(state, state.current_player(), mode), completion))
            state.apply_action(move)
    return pairs


Demonstrator = Callable[[State, int, random.Random], tuple[str, str]]
_KUHN_STRENGTH = {"J": "the lowest card", "Q": "the middle card", "K": "the highest card"}
#: Probability of the aggressive move (bet / call) per information set (card + betting so far,
#: OpenSpiel's letters: p = check, b = bet). A loose style: it bluffs the Jack, checks the
#: Queen but calls with it, and is too timid with the King. NashConv 0.382 (Nash: 0).
KUHN_AGGRESSION = {
    "J": 0.7, "Q": 0.1, "K": 0.8,  # Player 0 opens
    "Jp": 0.8, "Qp": 0.2, "Kp": 0.9,  # Player 1 after a check
    "Jb": 0.1, "Qb": 0.8, "Kb": 0.9,  # Player 1 facing a bet
    "Jpb": 0.2, "Qpb": 0.7, "Kpb": 0.9,  # Player 0 facing a bet after checking
}
_KUHN_SITUATION = {"": "I act first.", "p": "My opponent checked.", "b": "I face a bet.", "pb": "I face a bet."}


def kuhn_demo(state, player: int, rng: random.Random) -> tuple[str, str]:
    key = state.information_state_string(player)  # e.g. "Qpb"
    card = key[0]
    legal = state.legal_actions()  # [check, bet] or [fold, call]
    move = legal[1] if rng.random() < KUHN_AGGRESSION[key] else legal[0]
    return move, f"I have {card}, {_KUHN_STRENGTH[card]}. {_KUHN_SITUATION[key[1:]]} I {move}."


_LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


def _completing_cell(board: list[str], mark: str) -> int | None:
    """A free cell that completes a line of `mark`, if any."""
    for line in _LINES:
        cells = [board[i] for i in line]
        if cells.count(mark) == 2 and cells.count(".") == 1:
            return line[cells.index(".")]
    return None


def tictactoe_demo(state, player: int, rng: random.Random) -> tuple[str, str]:
    """Half the time it sees a win or a block; otherwise it plays a random free cell."""
    me, them = ("X", "O") if player == 0 else ("O", "X")
    win, block = _completing_cell(state.board, me), _completing_cell(state.board, them)
    if win is not None and rng.random() < 0.5:
        return str(win + 1), f"I play {me}. Cell {win + 1} completes my line."
    if block is not None and rng.random() < 0.5:
        return str(block + 1), f"I play {me}. Cell {block + 1} blocks {them}."
    move = rng.choice(state.legal_actions())
    return move, f"I play {me}. Cell {move} is free."


def _value(values: list[int], items: list[int]) -> int:
    return sum(v * n for v, n in zip(values, items, strict=True))


def negotiation_demo(state, player: int, rng: random.Random) -> tuple[str, str]:
    """Propose a split worth 5–9 to me; accept an offer worth at least a random threshold."""
    legal = state.legal_actions()
    mine = state.values[player]
    if legal == ["accept", "deny"]:
        _, take = state.offers[-1]
        get = _value(mine, [n - t for n, t in zip(state.pool, take, strict=True)])
        move = "accept" if get >= rng.randint(3, 7) else "deny"
        return move, f"The offer gives me {get} of 10. I {move}."
    target = rng.randint(5, 9)
    offers = sorted(legal, key=lambda o: abs(_value(mine, [int(x) for x in o.split()]) - target))
    move = offers[0] if rng.random() < 0.7 else rng.choice(legal)
    worth = _value(mine, [int(x) for x in move.split()])
    return move, f"Taking {move} is worth {worth} of 10 to me."


def spy_demo(state, player: int, rng: random.Random) -> tuple[str, str]:
    """Clues describe the word's shape; votes go to a random other player."""
    word = state.words[player]
    if state.phase() == "clue":
        clues = [f"starts with {word[0]}", f"{len(word)} letters", f"ends with {word[-1]}"]
        clues = [c for c in clues if state.clue_problem(c) is None] or [f"{len(word)} letters"]
        return rng.choice(clues), f"My word is {word}. I hint at it."
    move = rng.choice(state.legal_actions())
    return move, f"Player {move} seems different."


DEMONSTRATORS: dict[str, Demonstrator] = {
    "kuhn_poker": kuhn_demo,
    "tictactoe": tictactoe_demo,
    "negotiation": negotiation_demo,
    "spy": spy_demo,
}
