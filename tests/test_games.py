"""Games: known payoffs, rules, prompt formats, and a parser that never raises (fuzzed)."""

from __future__ import annotations

import itertools
import random

import pytest

from spkit.errors import SpkitError
from spkit.games import CHANCE, TERMINAL, InvalidMove, load_game
from spkit.games.kuhn_poker import CARDS
from spkit.games.negotiation import all_pools, value_vectors
from spkit.games.prompts import (
    ANSWER_PREFIX,
    MAX_ANSWER_CHARS,
    REASONING_INSTRUCTION,
    format_prompt,
    parse_action,
)
from spkit.games.spy import CLUE, word_pairs

GAMES = ["kuhn_poker", "tictactoe", "negotiation", "spy"]


def random_playout(state, rng: random.Random):
    """Play uniformly random moves (random short clues in Spy) to the end."""
    while not state.is_terminal():
        if state.is_chance_node():
            state.sample_chance(rng)
            continue
        legal = state.legal_actions()
        if legal == [CLUE]:
            state.apply_action(rng.choice(["small and round", "you eat it", "very common"]))
        else:
            state.apply_action(rng.choice(legal))
    return state


# ---- registry ------------------------------------------------------------------------------
def test_registry_loads_every_game():
    for name in GAMES:
        assert load_game(name).name == name


def test_unknown_game_lists_known_names():
    with pytest.raises(SpkitError, match="kuhn_poker.*tictactoe.*negotiation.*spy"):
        load_game("chess960")


# ---- Kuhn Poker ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bets", "stake_if_p0_wins_showdown", "fixed"),
    [
        (["check", "check"], 1.0, None),
        (["check", "bet", "fold"], None, [-1.0, 1.0]),
        (["check", "bet", "call"], 2.0, None),
        (["bet", "fold"], None, [1.0, -1.0]),
        (["bet", "call"], 2.0, None),
    ],
)
def test_kuhn_payoffs_every_deal(bets, stake_if_p0_wins_showdown, fixed):
    game = load_game("kuhn_poker")
    for c0, c1 in itertools.permutations(CARDS, 2):
        s = game.new_initial_state()
        s.apply_action(c0)
        s.apply_action(c1)
        for a in bets:
            assert s.current_player() in (0, 1)
            s.apply_action(a)
        assert s.current_player() == TERMINAL
        if fixed is not None:
            assert s.returns() == fixed
        else:
            sign = 1.0 if CARDS.index(c0) > CARDS.index(c1) else -1.0
            assert s.returns() == [
                sign * stake_if_p0_wins_showdown,
                -sign * stake_if_p0_wins_showdown,
            ]


def test_kuhn_chance_and_infosets():
    game = load_game("kuhn_poker")
    s = game.new_initial_state()
    assert s.current_player() == CHANCE
    assert sum(p for _, p in s.chance_outcomes()) == pytest.approx(1.0)
    keys = set()

    def walk(state):
        if state.is_terminal():
            return
        if state.is_chance_node():
            for a, _ in state.chance_outcomes():
                child = state.clone()
                child.apply_action(a)
                walk(child)
            return
        keys.add(state.information_state_string(state.current_player()))
        for a in state.legal_actions():
            child = state.clone()
            child.apply_action(a)
            walk(child)

    walk(s)
    assert keys == {c + h for c in CARDS for h in ("", "p", "b", "pb")}
    with pytest.raises(ValueError):
        s.apply_action("A")


# ---- TicTacToe -----------------------------------------------------------------------------
def test_tictactoe_win_draw_and_board():
    game = load_game("tictactoe")
    s = game.new_initial_state()
    for a in ["1", "4", "2", "5", "3"]:
        s.apply_action(a)
    assert s.is_terminal() and s.returns() == [1.0, -1.0]
    assert s.board_text() == "X X X\nO O 6\n7 8 9"
    s = game.new_initial_state()
    for a in ["1", "2", "3", "5", "4", "6", "8", "7", "9"]:  # a full board, no line
        s.apply_action(a)
    assert s.is_terminal() and s.returns() == [0.0, 0.0]
    s = game.new_initial_state()
    s.apply_action("5")
    assert s.legal_actions() == ["1", "2", "3", "4", "6", "7", "8", "9"]
    assert s.current_player() == 1 and s.board[4] == "X"
    with pytest.raises(ValueError):
        s.apply_action("5")


# ---- Negotiation ---------------------------------------------------------------------------
def test_negotiation_chance_space_is_consistent():
    for pool in all_pools():
        assert sum(pool) <= 6 and min(pool) >= 1
        vecs = value_vectors(pool)
        assert vecs, pool
        assert all(sum(n * v for n, v in zip(pool, vec, strict=True)) == 10 for vec in vecs)


def test_negotiation_deal_and_no_deal():
    game = load_game("negotiation")
    s = game.new_initial_state()
    for a in ["items 2 1 3", "values 2 0 2", "values 1 2 2"]:
        s.apply_action(a)
    assert s.current_player() == 0
    assert len(s.legal_actions()) == 3 * 2 * 4 and s.legal_actions()[0] == "0 0 0"
    s.apply_action("2 0 1")  # p0 takes 2 books, 1 ball: worth 4 + 2 = 6 to p0
    assert s.legal_actions() == ["accept", "deny"] and s.current_player() == 1
    assert "If you accept, you get 0 1 2" in s.observation_text(1)
    s.apply_action("accept")  # p1 gets 1 hat + 2 balls: worth 2 + 4 = 6 to p1
    assert s.is_terminal() and s.allocation == [[2, 0, 1], [0, 1, 2]]
    assert s.utilities() == pytest.approx([0.6, 0.6]) and s.returns() == pytest.approx([0, 0])

    s = game.new_initial_state()
    for a in ["items 1 1 1", "values 8 1 1", "values 1 1 8"]:
        s.apply_action(a)
    for r in range(4):
        assert s.current_player() == r % 2
        s.apply_action("1 1 1")
        s.apply_action("deny")
    assert s.is_terminal() and s.returns() == [0.0, 0.0]


# ---- Spy -----------------------------------------------------------------------------------
def test_spy_clues_votes_and_payoffs():
    pairs = word_pairs()
    assert len(pairs) >= 30
    game = load_game("spy")
    s = game.new_initial_state()
    s.apply_action("words 0 0")
    s.apply_action("spy 2")
    civ, spy_word = pairs[0]
    assert s.words == [civ, civ, spy_word, civ]
    assert s.legal_actions() == [CLUE]
    assert s.clue_problem(f"my {civ.upper()} is nice") is not None
    assert s.clue_problem("one two three four five six") is not None
    assert s.clue_problem("   ") is not None and s.clue_problem("12 34") is not None
    with pytest.raises(ValueError):
        s.apply_action(civ)
    for _ in range(8):
        s.apply_action("  a  common   thing ")
    assert s.clues[0] == (0, "a common thing")
    assert s.legal_actions() == ["1", "2", "3"]
    for v in ["2", "2", "0", "2"]:
        s.apply_action(v)
    assert s.is_terminal() and s.spy_caught()
    assert s.returns() == [1.0, 1.0, -3.0, 1.0]
    assert "Player 2 (word:" in s.observation_text(0)


# ---- every game: rollouts, determinism, prompts ------------------------------------------
@pytest.mark.parametrize("name", GAMES)
def test_random_rollouts_are_zero_sum_and_seeded(name):
    game = load_game(name)
    for seed in range(100):
        s = random_playout(game.new_initial_state(seed=seed), random.Random(seed))
        assert s.is_terminal() and s.legal_actions() == []
        assert sum(s.returns()) == pytest.approx(0.0)
        assert len(s.returns()) == game.num_players
    a = random_playout(game.new_initial_state(seed=7), random.Random(1))
    b = random_playout(game.new_initial_state(seed=7), random.Random(1))
    assert a.history() == b.history() and a.returns() == b.returns()


@pytest.mark.parametrize("name", GAMES)
def test_prompt_layout_and_roundtrip(name):
    game = load_game(name)
    rng = random.Random(0)
    s = game.new_initial_state(seed=3)
    while not s.is_terminal():
        player, legal = s.current_player(), s.legal_actions()
        direct = format_prompt(s, player, "direct")
        reasoning = format_prompt(s, player, "reasoning")
        lines = direct.split("\n")
        assert lines[0] == game.rules and lines[1] == f"You are Player {player}."
        assert lines[-1] == "Move: " + ANSWER_PREFIX and lines[-2].startswith("Legal moves: ")
        assert reasoning.endswith(REASONING_INSTRUCTION + "\n")
        assert (
            direct[: -len("Move: " + ANSWER_PREFIX)] == reasoning[: -len(REASONING_INSTRUCTION) - 1]
        )
        assert len(direct) < 2000  # far inside a 1024-token context
        if legal == [CLUE]:
            move = "shiny and small"
            assert parse_action(ANSWER_PREFIX + move + "}", legal, state=s) == move
        else:
            move = rng.choice(legal)
            assert parse_action(f"I think so. {ANSWER_PREFIX} {move.upper()} }}", legal) == move
            assert parse_action(ANSWER_PREFIX + move + "}", legal) == move
        s.apply_action(move)
    with pytest.raises(ValueError):
        format_prompt(s, 0, "chatty")


def test_rules_paragraphs_are_short():
    for name in GAMES:
        words = len(load_game(name).rules.split())
        assert 25 <= words <= 90, (name, words)


# ---- parse_action --------------------------------------------------------------------------
def test_parse_action_known_cases():
    legal = ["check", "bet"]
    assert parse_action(r"\boxed{bet}", legal) == "bet"
    assert parse_action(r"\boxed{check} no wait \boxed{bet}", legal) == "bet"
    assert parse_action(r"\boxed{\text{ Bet }}", legal) == "bet"
    assert parse_action(r"\boxed{\boxed{check}}", legal) == "check"
    assert parse_action(r"\boxed{bet.}", legal) == "bet"
    assert parse_action(r"\boxed{$check$}", legal) == "check"
    assert parse_action("  \\boxed{  CHECK\n}  ", legal) == "check"
    for bad in [
        "",
        "bet",
        r"\boxed{}",
        r"\boxed{fold}",
        r"\boxed{bet",
        r"\boxed{bet} \boxed{",
        r"\boxed{{bet}",
        r"\boxed{bet}}}" + r"\boxed{b{e}t}",
        "\\boxed{bet or check}",
        r"\boxed{" + "x" * 10_000 + "}",
    ]:
        out = parse_action(bad, legal)
        assert isinstance(out, InvalidMove) and out.reason, bad
        assert not out
    assert parse_action(r"\boxed{1   2 0}", ["1 2 0", "0 0 0"]) == "1 2 0"
    assert isinstance(parse_action(None, legal), InvalidMove)  # type: ignore[arg-type]


_ALPHABET = list("abcxyz019 {}\\$.\n\t") + [
    "\\boxed{",
    "}",
    "{",
    "\\text{",
    "é",
    "🂡",
    "\u200b",
    "\x00",
    "bet",
    "check",
    "5",
    "1 2 0",
    "deny",
]


def fuzz_strings(rng: random.Random, legal: list[str], n: int):
    """Random and adversarial model outputs."""
    adversarial = [
        "",
        " ",
        "}",
        "{",
        "\\boxed",
        "\\boxed{",
        "\\boxed{}",
        "\\boxed{{}",
        "\\boxed{}}",
        "{" * 5000 + "\\boxed{" + "{" * 5000,
        "\\boxed{" * 3000,
        "}" * 10_000,
        "\\boxed{" + "a" * 1_000_000 + "}",
        "x" * 2_000_000 + "\\boxed{" + legal[0] + "}",
        "\\boxed{" + legal[0] + "}" * 3,
        "\\boxed{" + legal[-1] + "}\\boxed{" + legal[0],
        "\ud800\\boxed{\udfff}",
        "\\boxed{\x00}",
        "\\boxed{ \u3000 }",
    ]
    yield from adversarial
    for _ in range(n - len(adversarial)):
        k = rng.randint(0, 30)
        parts = rng.choices(_ALPHABET + legal, k=k)
        if rng.random() < 0.5:
            parts.insert(rng.randint(0, k), "\\boxed{" + rng.choice(legal) + "}")
        yield "".join(parts)


@pytest.mark.parametrize("name", GAMES)
def test_parse_action_fuzz_never_raises(name):
    game = load_game(name)
    rng = random.Random(123)
    s = game.new_initial_state(seed=5)
    states = []
    while not s.is_terminal():
        states.append(s.clone())
        legal = s.legal_actions()
        s.apply_action("a small clue" if legal == [CLUE] else rng.choice(legal))
    n_valid = 0
    for i, text in enumerate(fuzz_strings(rng, ["check", "bet", "5", "deny", "1 2 0"], 10_000)):
        st = states[i % len(states)]
        legal = st.legal_actions()
        out = parse_action(text, legal, state=st)
        if isinstance(out, InvalidMove):
            assert isinstance(out.reason, str) and out.reason
        else:
            n_valid += 1
            if legal == [CLUE]:
                assert st.clue_problem(out) is None
            else:
                assert out in legal
    assert n_valid > 100  # the fuzzer does hit legal moves, so both branches are exercised


def test_parse_action_caps_answer_length():
    long = "\\boxed{" + "b" * (MAX_ANSWER_CHARS + 1) + "}"
    assert "longer" in parse_action(long, ["bet"]).reason


# ---- TextArena adapter ----------------------------------------------------------------------
def test_textarena_tictactoe_adapter():
    pytest.importorskip("textarena")
    from spkit.games.policies import UniformRandomPolicy, play_match

    game = load_game("textarena:TicTacToe-v0")
    assert game.num_players == 2 and game.name == "textarena:TicTacToe-v0"
    s = game.new_initial_state(seed=0)
    assert s.legal_actions() == [str(i) for i in range(9)]
    prompt = format_prompt(s, s.current_player(), "direct")
    assert "Legal moves: 0, 1, 2" in prompt and prompt.endswith(ANSWER_PREFIX)
    c = s.clone()
    c.apply_action(parse_action(r"\boxed{4}", c.legal_actions(), state=c))
    assert "4" not in c.legal_actions() and "4" in s.legal_actions()  # clones are independent
    stats = play_match(game, [UniformRandomPolicy()] * 2, 10, seed=0)
    assert stats.wins[0] + stats.draws[0] + stats.losses[0] == 10
    assert stats.wins[0] == stats.losses[1]
    a = play_match(game, [UniformRandomPolicy()] * 2, 5, seed=3)
    assert a == play_match(game, [UniformRandomPolicy()] * 2, 5, seed=3)


def test_textarena_single_player_puzzles():
    pytest.importorskip("textarena")
    from spkit.games.prompts import FREE_TEXT
    from spkit.games.textarena import listed_moves

    lake = load_game("textarena:FrozenLake-v0")
    assert lake.num_players == 1
    s = lake.new_initial_state(seed=0)
    assert {"up", "down", "left", "right"} <= set(s.legal_actions())
    rng = random.Random(0)
    steps = 0
    while not s.is_terminal() and steps < 200:
        s.apply_action(rng.choice(s.legal_actions()))
        steps += 1
    assert s.is_terminal() and len(s.returns()) == 1

    mines = load_game("textarena:Minesweeper-v0-small")
    s = mines.new_initial_state(seed=0)
    assert s.legal_actions() == [FREE_TEXT]  # no move list: the boxed text goes to the env
    assert isinstance(parse_action(r"\boxed{ }", s.legal_actions(), state=s), InvalidMove)
    move = parse_action(r"I start in a corner: \boxed{[0 0]}", s.legal_actions(), state=s)
    s.apply_action(move)
    assert "revealed the cell at (0, 0)" in s.observation_text(0)
    assert listed_moves("Available Moves: '[1]', '[2]'\nAvailable Moves: '[2]'") == ["2"]
    assert listed_moves("no list here") is None


def test_textarena_unknown_env():
    pytest.importorskip("textarena")
    with pytest.raises(SpkitError, match="similar: .*TicTacToe-v0"):
        load_game("textarena:TicTacToe-v9")


@pytest.mark.parametrize("name", GAMES)
def test_illegal_actions_raise_value_error_only(name):
    game = load_game(name)
    rng = random.Random(9)
    junk = ["", " ", "raise", "10", "-1", "0 0 0 0", "accept", "\\boxed{bet}", "🂡", "J"]
    for seed in range(20):
        s = game.new_initial_state(seed=seed)
        while not s.is_terminal():
            legal = s.legal_actions()
            for bad in junk:
                if bad in legal or (legal == [CLUE] and s.clue_problem(bad) is None):
                    continue
                before = s.history()
                with pytest.raises(ValueError):
                    s.apply_action(bad)
                assert s.history() == before  # a rejected move changes nothing
            s.apply_action("a small clue" if legal == [CLUE] else rng.choice(legal))
        with pytest.raises(ValueError):
            s.apply_action("anything")


@pytest.mark.parametrize("name", GAMES)
def test_longest_prompts_fit_the_tiny_context(name):
    from spkit.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    game = load_game(name)
    longest = 0
    for seed in range(30):
        s = game.new_initial_state(seed=seed)
        rng = random.Random(seed)
        while not s.is_terminal():
            prompt = format_prompt(s, s.current_player(), "reasoning")
            longest = max(longest, len(tok(prompt)["input_ids"]))
            legal = s.legal_actions()
            if name == "negotiation" and "deny" in legal:
                s.apply_action("deny")  # longest games: every offer denied
            else:
                s.apply_action(
                    "a thing that is " + "x" * 20 if legal == [CLUE] else rng.choice(legal)
                )
    # A 300-token BPE trained on a few lines is a pessimistic proxy for spkit-tiny's 2048.
    assert longest < 1024, longest
