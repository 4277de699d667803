"""The TextArena adapter: move-list formats, one invalid-move rule, the context policy, and every
two-player env of TextArena's registry (a parse check and one random game each)."""

from __future__ import annotations

import random

import pytest

from spkit.errors import SpkitError
from spkit.games.base import InvalidMove
from spkit.games.policies import INVALID_BONUS, INVALID_PENALTY, play_match
from spkit.games.prompts import FREE_TEXT, format_prompt, parse_action
from spkit.games.textarena import CUT_MARKER, _cut_middle, listed_moves
from spkit.rl.selfplay import LMAgent, outcome_rates, play_episodes
from spkit.sampling import Completion, SamplingParams


# ---- the move-list formats TextArena's envs print (no textarena needed) ----------------------------
@pytest.mark.parametrize("text, moves", [
    ("Available Moves: '[0]', '[1]', '[4]'", ["0", "1", "4"]),  # TicTacToe
    ("[GAME] Your available actions are: '[check]', '[bet]'", ["check", "bet"]),  # KuhnPoker
    ("Available Moves: [a2 b4], [a2 c3], [b2 c4]", ["a2 b4", "a2 c3", "b2 c4"]),  # Crusade
    ("Valid moves: '[0, 1]', '[1, 0]', '[2, 3]'", ["0, 1", "1, 0", "2, 3"]),  # Othello
    ("You control snake 0. Valid moves: '[up]'/'[down]'/'[left]'/'[right]' (or w/s/a/d).",
     ["up", "down", "left", "right"]),  # Snake
    ("You are player 0. Valid moves: '[up]' '[down]' '[left]' '[right]' or w/s/a/d.",
     ["up", "down", "left", "right"]),  # Surround
    ("Available actions: '[roll]' or '[hold]'", ["roll", "hold"]),  # PigDice
    ("Your options: [draw], [take]", ["draw", "take"]),  # Golf
    ("[GAME] Your remaining hand: '[A]' '[2]' '[10]' '[K]'", ["A", "2", "10", "K"]),  # GOPS
    ("Available Moves: [draw], [play K♦ 0], [play K♦ 0]", ["draw", "play K♦ 0"]),  # duplicates
    ("Available Moves: '[1]', '[2]'\nAvailable Moves: '[2]'", ["2"]),  # the last list wins
])
def test_listed_move_formats(text, moves):
    assert listed_moves(text) == moves


@pytest.mark.parametrize("text", [
    "no list here",
    "[GAME] Your possible actions: '[check]', '[bet X]'",  # IndianPoker: a template
    "Available actions (exact tokens):\n  '[Check]'  - when no bet is live",  # list on later lines
    "Reply with your guess in the format '[<number>]'.",
    "Game ends when a player has no legal move.",
    "Available Moves: '[0]'\nAvailable actions: none",  # the last list is empty
])
def test_lines_that_are_not_move_lists(text):
    assert listed_moves(text) is None


def test_cut_middle_keeps_head_and_tail():
    text = "RULES " + "x" * 500 + " BOARD"
    cut = _cut_middle(text, 120)
    assert len(cut) == 120 and cut.startswith("RULES") and cut.endswith("BOARD") and CUT_MARKER in cut
    assert _cut_middle(text, None) == text and _cut_middle("short", 120) == "short"


# ---- the registry: every two-player env ------------------------------------------------------------
def _base_ids() -> list[str]:
    try:
        from textarena.envs.registration import ENV_REGISTRY
    except ImportError:
        return []
    return [e for e in ENV_REGISTRY if not e.endswith(("-train", "-raw"))]  # variants differ in wrappers only


#: The first player's first move list, read by hand from each listing env's opening message.
FIRST_MOVES = {
    "TicTacToe-v0": [str(i) for i in range(9)],
    "KuhnPoker-v0": ["check", "bet"],
    "Othello-v0-tiny": ["0, 1", "1, 0", "2, 3", "3, 2"],
    "PigDice-v0": ["roll", "hold"],
    "Golf-v0": ["draw", "take"],
    "Snake-v0": ["up", "down", "left", "right"],
    "Surround-v0": ["up", "down", "left", "right"],
    "GameOfPureStrategy-v0": ["A", *map(str, range(2, 11)), "J", "Q", "K"],
    "HighSociety-v0": [str(i) for i in range(1, 12)],
    "SimpleTak-v0": [str(i) for i in range(16)],
    "WildTicTacToe-v0": [f"{m} {i}" for i in range(9) for m in "XO"],
}


@pytest.mark.parametrize("env_id", _base_ids())
def test_every_two_player_env_parses_and_plays(env_id):
    pytest.importorskip("textarena")
    from spkit.games.textarena import TextArenaGame

    try:
        game = TextArenaGame(env_id)  # detects the player count (and whether it builds at all)
    except SpkitError as exc:  # network, NLTK corpora, Python-3.12 f-strings, missing files
        pytest.skip(str(exc))
    try:
        game = TextArenaGame(env_id, num_players=2)
        s = game.new_initial_state(seed=0)
    except AssertionError:  # TextArena asserts on the player count
        pytest.skip(f"not a two-player env (plays with {TextArenaGame(env_id).num_players})")
    legal = s.legal_actions()
    if env_id in FIRST_MOVES:
        assert legal == FIRST_MOVES[env_id]
    rng = random.Random(0)
    for _ in range(60):  # one random game (listed moves at random; free text: a junk move)
        if s.is_terminal():
            break
        legal = s.legal_actions()
        listed = legal != [FREE_TEXT]
        s.apply_action(rng.choice(legal) if listed else "pass")
        assert not (listed and s.invalid_by is not None), f"the env rejected a listed move: {legal}"
    assert len(s.returns()) == 2 and "[GAME]" in s.observation_text(0) + s.observation_text(1)


def test_the_registry_has_listing_envs():
    pytest.importorskip("textarena")
    from spkit.games.textarena import TextArenaGame

    for env_id, moves in FIRST_MOVES.items():
        s = TextArenaGame(env_id).new_initial_state(seed=0)
        assert s.legal_actions() == moves, env_id


# ---- one invalid-move rule ----------------------------------------------------------------------
def test_kuhn_v0_is_a_listed_move_game():
    pytest.importorskip("textarena")
    from spkit.games import load_game

    s = load_game("textarena:KuhnPoker-v0").new_initial_state(seed=0)
    prompt = format_prompt(s, s.current_player(), "direct")
    assert "Legal moves: check, bet" in prompt
    assert parse_action("\\boxed{bet}", s.legal_actions(), state=s) == "bet"
    assert isinstance(parse_action("\\boxed{raise}", s.legal_actions(), state=s), InvalidMove)


class _Says:
    """A policy that answers a fixed free-text move (the env judges it)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def sample_action(self, state, rng):
        return self.text


def test_env_rejected_move_gets_spkits_penalty():
    pytest.importorskip("textarena")
    from spkit.games import load_game

    game = load_game("textarena:Nim-v0")  # free text: '[pile quantity]'
    s = game.new_initial_state(seed=0)
    assert s.legal_actions() == [FREE_TEXT]
    s.apply_action("take everything")  # TextArena would allow a retry; spkit ends the game
    assert s.is_terminal() and s.invalid_by == 0 and s.returns() == [INVALID_PENALTY, INVALID_BONUS]
    stats = play_match(game, [_Says("[9 9]"), _Says("[0 1]")], 3, seed=0)
    assert stats.invalid == [3, 0] and stats.losses[0] == 3 and stats.total_returns == [-4.5, 1.5]
    ok = game.new_initial_state(seed=0)
    ok.apply_action("[0 1]")  # a legal free-text move goes on
    assert not ok.is_terminal() and ok.invalid_by is None and ok.current_player() == 1


class _Scripted:
    """A sampler that answers every prompt with one text, with a context limit."""

    def __init__(self, answer: str, limit: int | None, tokenizer) -> None:
        self.answer, self.limit, self.tok, self.prompts = answer, limit, tokenizer, []

    def context_limit(self):
        return self.limit

    def encode(self, prompt):
        return self.tok(prompt)["input_ids"]

    def generate(self, prompts, params=None, seed=None, progress=False):
        self.prompts += prompts
        return [Completion(p, self.answer, [1], [3], [-0.5], "stop") for p in prompts]


def test_rollout_counts_env_rejections_as_invalid_moves():
    pytest.importorskip("textarena")
    from spkit.games import load_game
    from spkit.testing import tiny_tokenizer

    agent = LMAgent(_Scripted("\\boxed{oops}", None, tiny_tokenizer()), "reasoning")
    eps = play_episodes(load_game("textarena:Nim-v0"), lambda i: [agent, agent], 2, seed=0)
    for e in eps:
        assert e.invalid_by == 0 and e.returns == [INVALID_PENALTY, INVALID_BONUS]
        assert [t.action for t in e.turns] == [None]  # parsed, then rejected by the env


# ---- the context policy ---------------------------------------------------------------------------
def test_recent_history_stays_bounded_while_full_grows():
    pytest.importorskip("textarena")
    from spkit.games.textarena import TextArenaGame

    recent = TextArenaGame("TicTacToe-v0").new_initial_state(seed=0)
    full = TextArenaGame("TicTacToe-v0", history="full", max_observation_chars=None).new_initial_state(seed=0)
    lens = {"recent": [], "full": []}
    for move in ["4", "0", "8", "2", "1", "7"]:
        for name, s in (("recent", recent), ("full", full)):
            lens[name].append(len(s.observation_text(s.current_player())))
            s.apply_action(move)
    assert lens["full"][-1] > 2 * lens["full"][0]  # TextArena's own view grows every move
    assert lens["recent"][-1] <= lens["recent"][2] < lens["full"][-1]  # no growth past the first round
    obs = recent.observation_text(recent.current_player())
    assert "Tic Tac Toe" in obs and "Available Moves" in obs  # rules + the current list survive
    capped = TextArenaGame("TicTacToe-v0", history="full", max_observation_chars=300)
    assert len(capped.new_initial_state(seed=0).observation_text(0)) <= 300
    with pytest.raises(SpkitError, match="history"):
        TextArenaGame("TicTacToe-v0", history="everything")


def test_textarena_prompts_fit_spkit_tiny(tiny):
    pytest.importorskip("textarena")
    from spkit.games import load_game

    _, tok = tiny
    for env_id in ("TicTacToe-v0", "KuhnPoker-v0"):
        game = load_game(f"textarena:{env_id}")
        longest = 0
        for seed in range(4):
            s, rng = game.new_initial_state(seed=seed), random.Random(seed)
            while not s.is_terminal():
                longest = max(longest, len(tok(format_prompt(s, s.current_player(), "reasoning"))["input_ids"]))
                s.apply_action(rng.choice(s.legal_actions()))
        assert longest + 64 <= tok.model_max_length or longest + 64 <= 1024, (env_id, longest)


def test_overflow_ends_the_game_counted_not_crashing():
    pytest.importorskip("textarena")
    from spkit.algos.spiral import rae_advantages
    from spkit.games.textarena import TextArenaGame
    from spkit.rl.advantages import RoleBaseline
    from spkit.testing import tiny_tokenizer

    game = TextArenaGame("TicTacToe-v0", history="full", max_observation_chars=None)
    tok = tiny_tokenizer()
    first = len(tok(format_prompt(game.new_initial_state(0), 0, "direct"))["input_ids"])
    # Room for the first prompts, not for the growing ones: games overflow mid-way.
    sampler = _Scripted("4}", first + 60, tok)
    agent = LMAgent(sampler, "direct", SamplingParams(max_new_tokens=8))
    eps = play_episodes(game, lambda i: [agent, agent], 3, seed=0)
    assert all(e.overflow and e.returns == [0.0, 0.0] and e.invalid_by is None for e in eps)
    assert all(len(tok(p)["input_ids"]) + 8 <= first + 60 for p in sampler.prompts)  # never sent
    assert outcome_rates(eps, lambda e: 0)["overflow"] == 1.0
    assert rae_advantages(eps, RoleBaseline(0.95)) == []  # no outcome, no training signal


def test_overflow_with_a_real_sampler_does_not_abort_the_batch(random_tiny):
    pytest.importorskip("textarena")
    from spkit.games.textarena import TextArenaGame
    from spkit.generation import Sampler

    model, tok = random_tiny  # 512 positions
    game = TextArenaGame("TicTacToe-v0", history="full", max_observation_chars=None)
    agent = LMAgent(Sampler(model, tok), "direct", SamplingParams(max_new_tokens=4))
    eps = play_episodes(game, lambda i: [agent, agent], 2, seed=0)
    assert all(e.overflow or e.invalid_by is not None or e.state.is_terminal() for e in eps)


def test_direct_policy_refuses_prompts_past_the_context(random_tiny):
    pytest.importorskip("textarena")
    from spkit.games.textarena import TextArenaGame
    from spkit.lm_policy import LLMPolicy

    model, tok = random_tiny  # 512 positions; TextArena's full TicTacToe prompt is longer
    s = TextArenaGame("TicTacToe-v0", history="full", max_observation_chars=None).new_initial_state(0)
    for move in ["4", "0", "8"]:
        s.apply_action(move)
    policy = LLMPolicy(model, tok, "direct")
    with pytest.raises(SpkitError, match="positions"):
        policy.action_probabilities(s)
    move = policy.sample_action(s, random.Random(0))
    assert isinstance(move, InvalidMove) and "context overflow" in move.reason


# ---- a TextArena game as a training environment ----------------------------------------------------
def test_format_demonstrations_are_legal_moves_in_the_games_prompts():
    pytest.importorskip("textarena")
    from spkit.corpus import format_demonstrations
    from spkit.games import load_game
    from spkit.games.prompts import ANSWER_PREFIX

    game = load_game("textarena:TicTacToe-v0")
    pairs = format_demonstrations(game, 12, "direct", seed=0)
    assert len(pairs) == 12 and pairs == format_demonstrations(game, 12, "direct", seed=0)
    for prompt, answer in pairs:
        legal = prompt.split("Legal moves: ")[1].split("\n")[0].split(", ")
        assert prompt.endswith(ANSWER_PREFIX) and answer[:-1] in legal and answer.endswith("}")
    (prompt, answer), = format_demonstrations(game, 1, "reasoning", seed=1)
    assert parse_action(answer, [str(i) for i in range(9)]) == answer.split("{")[1].rstrip("}")
    with pytest.raises(SpkitError, match="free-text"):
        format_demonstrations(load_game("textarena:Nim-v0"), 1, "direct", seed=0)


def test_spiral_trains_on_a_textarena_game(tmp_path):
    pytest.importorskip("textarena")
    from spkit.algos import spiral

    cfg = spiral.Config(games=("textarena:TicTacToe-v0",), steps=1, episodes=2, sft_steps=2, sft_batch=4,
                        eval_games=2, eval_every=1, out=str(tmp_path), plot=False, tensorboard=False)
    hist = spiral.train(cfg)
    key = "eval/textarena:TicTacToe-v0/win_vs_random"
    assert len(hist.series(key)[1]) == 2  # before and after
    first = hist.rows[0]
    assert first["sft/loss_first"] > 0 and "train/return/textarena:TicTacToe-v0/0" in hist.rows[-1]
    with pytest.raises(SpkitError, match="--games must be one of .*textarena:"):
        spiral.train(spiral.Config(games=("chess",), steps=0))
