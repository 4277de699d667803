"""Vision-Zero (text Who-is-the-Spy): hand-worked rewards on hand-built games, the schedule,
seed and resume, and a smoke run on spkit-tiny."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from spkit.algos import vision_zero as vz
from spkit.games.prompts import format_prompt
from spkit.games.spy import SpyGame, word_pairs
from spkit.rl.advantages import RoleBaseline
from spkit.rl.selfplay import Episode, Turn

TINY_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "spkit-tiny"


def _turn(p: int, action: str | None) -> Turn:
    return Turn("spy", p, [1], [2], [0.0], f"{action}}}", action, True)


def _clue_state(spy: int = 3, pair: int = 0, n_clues: int = 8) -> vz.ClueState:
    s = vz.ClueGame("train").new_initial_state()
    s.apply_action(f"words {pair} 0")
    s.apply_action(f"spy {spy}")
    for i in range(n_clues):
        s.apply_action(f"clue number {i}")
    return s


def _episode(state, invalid_by=None, returns=None) -> Episode:
    turns = [_turn(p, c) for p, c in state.clues]
    return Episode("spy", 0, returns or [0.0] * 4, turns, invalid_by, [0, 1, 2, 3], state)


# ---- known answers -----------------------------------------------------------------------------
def test_clue_reward_hand_worked():
    # everyone but the spy (3) votes for the spy, the spy votes for player 0: v = [1, 0, 0, 3]
    # Ψ = 3 − 1/3 = 8/3; spy −0.1·8/3; civilian 0: 0.1·(8/3)/3 − 0.1·(1 − 1/3); 1, 2: … + 0.1/3
    r = vz.clue_rewards([1.0, 0.0, 0.0, 3.0], spy=3)
    assert r == pytest.approx([8 / 90 - 2 / 30, 8 / 90 + 1 / 30, 8 / 90 + 1 / 30, -8 / 30])
    assert vz.clue_rewards([1.0, 1.0, 1.0, 1.0], spy=0) == pytest.approx([0.0] * 4)  # nobody singled out


def test_clue_reward_is_zero_sum():
    rng = random.Random(0)
    for _ in range(50):
        v = [rng.random() * 3 for _ in range(4)]
        assert sum(vz.clue_rewards(v, rng.randrange(4), rng.random(), rng.random())) == pytest.approx(0.0)


def test_vote_shares_average_each_voters_samples():
    votes = {0: [_turn(0, "3"), _turn(0, "3")], 1: [_turn(1, "3"), _turn(1, None)],
             2: [_turn(2, "0"), _turn(2, "1")], 3: [_turn(3, "0"), _turn(3, "0")]}
    assert vz.vote_shares(votes) == pytest.approx([1.5, 0.5, 0.0, 1.5])  # the invalid vote names nobody


def test_vote_reward_values():
    assert vz.vote_reward("3", spy=3) == pytest.approx(0.3 + 1.2 + 0.99)
    assert vz.vote_reward("1", spy=3) == pytest.approx(0.3)
    assert vz.vote_reward(None, spy=3) == pytest.approx(-0.3)


def test_decision_advantages_are_grpo_over_each_civilians_votes():
    ep = _episode(_clue_state(spy=3))
    votes = {0: [_turn(0, "3"), _turn(0, "1")],  # right, wrong: rewards 2.49, 0.3 -> ±1/√2
             1: [_turn(1, "3"), _turn(1, "3")],  # both right: no signal
             2: [_turn(2, None), _turn(2, "3")],  # invalid, right: -0.3, 2.49 -> ∓1/√2
             3: [_turn(3, "0"), _turn(3, "1")]}  # the spy's votes do not train
    pairs = vz.decision_advantages([ep], [votes])
    assert [t.role for t, _ in pairs] == [0, 0, 1, 1, 2, 2]
    assert [a for _, a in pairs] == pytest.approx([2 ** -0.5, -(2 ** -0.5), 0, 0, -(2 ** -0.5), 2 ** -0.5],
                                                  abs=1e-4)
    acc = vz.vote_accuracy([ep], [votes])
    assert acc["accuracy"] == pytest.approx(4 / 6) and acc["invalid_vote"] == pytest.approx(1 / 6)


def test_clue_advantages_use_role_baselines_and_spiral_returns_after_an_invalid_clue():
    played = _episode(_clue_state(spy=3))
    votes = {p: [_turn(p, "3")] for p in range(3)} | {3: [_turn(3, "0")]}
    broken = _episode(_clue_state(spy=1, n_clues=2), invalid_by=2, returns=[0.5, 0.5, -1.5, 0.5])
    b = RoleBaseline(0.5)
    pairs, rewards = vz.clue_advantages([played, broken], [votes, {}], b, 0.1, 0.1)
    r = vz.clue_rewards([1.0, 0.0, 0.0, 3.0], spy=3)
    assert rewards == [pytest.approx(r), [0.5, 0.5, -1.5, 0.5]]
    # civilian baseline: starts at 0, read before each update (α = 0.5)
    civ = [r[0], r[1] - 0.5 * r[0], r[2] - (0.25 * r[0] + 0.5 * r[1])]
    first = {t.role: a for t, a in pairs[:8]}
    assert [first[0], first[1], first[2]] == pytest.approx(civ)
    assert first[3] == pytest.approx(r[3])  # the spy's own baseline starts at 0
    second = {t.role: a for t, a in pairs[8:]}  # broken game: its 2 clue turns, players 0 and 1
    assert set(second) == {0, 1}
    assert second[1] == pytest.approx(0.5 - 0.5 * r[3])  # player 1 is that game's spy


def test_voter_state_prompt_is_the_real_vote_prompt():
    real = SpyGame().new_initial_state()
    real.apply_action("words 5 1")
    real.apply_action("spy 2")
    for i in range(8):
        real.apply_action(f"hint {i}")
    clue = _clue_state(spy=2, pair=5)
    clue.words, clue.clues = list(real.words), list(real.clues)
    for p in range(4):
        assert format_prompt(vz.voter_state(clue, p), p, "direct") == format_prompt(real, p, "direct")
        real.apply_action("0" if p else "1")


def test_splits_are_disjoint_and_the_clue_game_stops_before_the_vote():
    train, held = vz.split_pairs("train"), vz.split_pairs("heldout")
    assert not set(train) & set(held) and sorted(train + held) == list(range(len(word_pairs())))
    held_words = {w for i in held for w in word_pairs()[i]}
    g = vz.ClueGame("heldout")
    for seed in range(30):
        assert set(g.new_initial_state(seed).words) <= held_words
    s = _clue_state()
    assert s.is_terminal() and s.returns() == [0.0] * 4
    assert not _clue_state(n_clues=7).is_terminal()


def test_schedules():
    alt = vz.StageSwitch("alternate", switch_every=2)
    assert [alt.current(t) for t in range(6)] == ["decision"] * 2 + ["clue"] * 2 + ["decision"] * 2
    assert vz.StageSwitch("clue").current(0) == "clue"
    ad = vz.StageSwitch("adaptive", rho=0.0, min_dwell=2)
    ad.observe(0.95, 0.05)
    assert ad.current(1) == "decision"  # dwell 1 < 2
    ad.observe(0.95, 0.05)
    assert ad.current(2) == "clue"
    ad.observe(0.7, 0.0)
    ad.observe(0.7, 0.0)
    assert ad.current(4) == "clue"  # 1 − 0.7 < 0.4 and few invalid votes
    ad.observe(0.5, 0.0)
    assert ad.current(5) == "decision"
    ad2 = vz.StageSwitch("adaptive")
    ad2.load_state_dict(ad.state_dict())
    assert ad2.state_dict() == ad.state_dict()


# ---- properties and smoke ----------------------------------------------------------------------


def test_seed_and_resume(tiny_1024, tmp_path):
    from spkit.testing import check_seed_and_resume

    cfg = vz.Config(model=tiny_1024, schedule="alternate", switch_every=1, games=2, votes=2, eval_games=2,
                    eval_votes=1, max_new_tokens=4, threads=1, eval_every=1, tensorboard=False, plot=False,
                    device="cpu")
    h = check_seed_and_resume(vz.train, cfg, tmp_path)
    assert [r.get("train/clue_stage") for r in h.rows if "train/clue_stage" in r] == [0.0, 1.0]


@pytest.mark.slow
def test_smoke_on_spkit_tiny_trains_votes_and_clues(tmp_path):
    if not (TINY_DIR / "config.json").exists():
        pytest.skip("assets/models/spkit-tiny not built yet")
    cfg = vz.Config(schedule="alternate", switch_every=1, steps=2, games=2, votes=2, eval_games=2, eval_votes=1,
                    threads=1, tensorboard=False, plot=False, device="cpu")
    h = vz.train(cfg)
    rows = [r for r in h.rows if "train/turns" in r]
    assert [r["train/clue_stage"] for r in rows] == [0.0, 1.0]
    assert all(r["train/turns"] > 0 and "losses/policy" in r for r in rows)
    assert 0.0 <= h.last("eval/accuracy") <= 1.0
    assert "held-out spy-identification accuracy" in vz.summary(h)


def test_cli_flags_come_from_the_config():
    from spkit.cli import build_parser
    from spkit.config import config_from_args

    argv = ["train", "vision_zero", "--schedule", "clue", "--games", "3", "--votes", "5"]
    cfg = config_from_args(vz.Config, build_parser(argv).parse_args(argv))
    assert (cfg.schedule, cfg.games, cfg.votes) == ("clue", 3, 5)
    with pytest.raises(SystemExit):
        build_parser(["train", "vision_zero", "--schedule", "x"]).parse_args(["train", "vision_zero", "--schedule", "x"])
