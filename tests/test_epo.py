"""EPO: the strategy grammar and its follower, the rule judge, Eq. (1)-(4) on hand-worked numbers,
the guided sampler, seed and resume, and the command line."""

from __future__ import annotations

import json

import pytest
import torch

from spkit.algos import epo
from spkit.games.negotiation import NegotiationGame
from spkit.rl.losses import reward_weighted_nll
from spkit.rl.selfplay import Episode, Turn
from spkit.sampling import Completion, SamplingParams


def _state(*moves: str):
    """Pool 2 books, 1 hat, 3 balls; Player 0 values (2, 0, 2), Player 1 (0, 4, 2)."""
    s = NegotiationGame().new_initial_state()
    for a in ("items 2 1 3", "values 2 0 2", "values 0 4 2", *moves):
        s.apply_action(a)
    return s


# ---- the grammar and the scripted follower -------------------------------------------------------
def test_grammar_and_parser():
    g = epo.grammar()
    assert len(g) == 7 and g[0] == "keep books" and g[-1] == "keep books, hats and balls"
    assert [epo.parse_strategy(s) for s in g] == [frozenset(i for i in range(3) if m >> i & 1) for m in range(1, 8)]
    assert epo.parse_strategy("Keep balls and books") == frozenset({0, 2})
    for bad in ("none", "", "keep", "keep books and", "keep books books", "keep cats", "give books", "keep and hats"):
        assert epo.parse_strategy(bad) is None, bad
    assert epo.clean_strategy(" keep   books\nmore") == "keep books"
    assert len(epo.clean_strategy("a " * 30).split()) == epo.MAX_STRATEGY_WORDS


def test_follower_proposes_the_kept_items_and_accepts_iff_it_gets_them():
    s = _state()
    assert epo.follow_strategy(s, frozenset({0, 2})) == "2 0 3"
    assert epo.follow_strategy(s, frozenset({1})) == "0 1 0"
    s = _state("2 0 0")  # Player 0 takes the books; Player 1 would get 0 1 3
    assert epo.follow_strategy(s, frozenset({1, 2})) == "accept"
    assert epo.follow_strategy(s, frozenset({0})) == "deny"


def test_prompts_insert_the_strategy_before_the_move_line():
    from spkit.games.prompts import format_prompt

    p = format_prompt(_state(), 0, "direct")
    a = epo.actor_prompt(p, "keep hats")
    assert a.endswith("\nStrategy: keep hats\nMove: \\boxed{") and a.replace("Strategy: keep hats\n", "") == p
    assert epo.strategy_prompt(p).endswith("\nStrategy:") and "Move:" not in epo.strategy_prompt(p)
    assert epo.strategy_of(a) == "keep hats"


# ---- the rule judge and Eq. (1)-(3) --------------------------------------------------------------
def test_key_turns_hand_worked():
    s = _state()
    assert epo.key_turn(s, "2 0 2")  # P0 gets 8/10, P1 6/10: margin +0.2, the other keeps 0.6 >= 0.5
    assert not epo.key_turn(s, "2 0 3")  # margin +0.6 but P1 keeps 0.4
    assert not epo.key_turn(s, "2 0 0")  # margin 0.4 − 1.0 < 0
    s = _state("2 0 2")  # P1 answers: margin for P1 = 0.6 − 0.8 = −0.2
    assert epo.key_turn(s, "deny") and not epo.key_turn(s, "accept")
    s = _state("2 0 0")  # P1 would get 1.0 vs 0.4
    assert epo.key_turn(s, "accept") and not epo.key_turn(s, "deny")
    s = _state("2 0 0", "deny", "0 0 0", "deny", "2 0 0", "deny", "0 1 3")  # last round, P0 answers
    assert not epo.key_turn(s, "deny")  # a deny in the last round ends with no deal


def test_process_rewards_discounting_and_scaling():
    assert epo.process_rewards([False, True, False], 0.4) == [0.0, 1.0, 0.4]
    assert epo.process_rewards([True, True], -0.2, key_reward=0.5) == [0.5, -0.2]  # the last turn: the score
    assert epo.discounted_returns([0.0, 1.0, 0.4], 0.5) == pytest.approx([0.6, 1.2, 0.4])
    a, b = epo.scale_returns([[0.6, 1.2, 0.4], [-2.4]])  # the episode's max |G| is 2.4
    assert a == pytest.approx([0.25, 0.5, 1 / 6]) and b == pytest.approx([-1.0])
    assert epo.scale_returns([[0.0], [0.0, 0.0]]) == [[0.0], [0.0, 0.0]]


def _turn(role: int, action: str | None) -> Turn:
    return Turn("negotiation", role, [1, 2], [3], [0.0], f"{action}}}", action, True)


def test_episode_weights_hand_worked():
    # P0 offers 2 0 2 (key), P1 denies (key), P1 offers 0 1 1 (margin −0.2 for P1), P0 accepts
    # (its last turn: the final score +0.2). γ = 0.5: P0 G = [1 + 0.5·0.2, 0.2] = [1.1, 0.2],
    # P1 G = [1 + 0.5·(−0.2), −0.2] = [0.9, −0.2]; all divided by max |G| = 1.1.
    s = _state("2 0 2", "deny", "0 1 1", "accept")
    assert s.returns() == pytest.approx([0.2, -0.2])
    turns = [_turn(0, "2 0 2"), _turn(1, "deny"), _turn(1, "0 1 1"), _turn(0, "accept")]
    ep = Episode("negotiation", 0, s.returns(), turns, None, [0, 1], s)
    w, keys = epo.episode_weights(ep, 0.5, 1.0, [0, 1])
    assert keys == [True, True, False, True]
    assert w == pytest.approx([1.0, 0.9 / 1.1, -0.2 / 1.1, 0.2 / 1.1])
    w0, _ = epo.episode_weights(ep, 0.5, 1.0, [0])  # only seat 0 learns: P1's turns weigh 0
    assert w0 == pytest.approx([1.1 / 1.1, 0.0, 0.0, 0.2 / 1.1])


def test_replay_skips_scripted_moves_and_the_invalid_turn():
    s = _state("2 0 2", "deny")  # P1 (scripted) denied, then P1's own offer was... never made: P0 invalid later
    turns = [_turn(0, "2 0 2")]
    ep = Episode("negotiation", 0, [0.0, 0.0], turns, None, [0], s)
    assert [(ti, m) for _, ti, m in epo.replay(ep)] == [(0, "2 0 2"), (None, "deny")]
    ep = Episode("negotiation", 0, [-1.5, 0.5], [*turns, _turn(0, None)], 0, [0], s)
    assert epo.replay_keys(ep) == [True, False]


def test_reward_weighted_nll_hand_worked():
    logp = torch.tensor([[-1.0, -3.0], [-2.0, -9.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    w = torch.tensor([0.5, -1.0])
    loss = reward_weighted_nll(logp, mask, w)  # mean(−0.5·(−2), +1·(−2)) = −0.5
    assert loss.item() == pytest.approx(-0.5)
    loss.backward()  # d/dlogp = −w_i / (|y_i| · B); padding gets none
    assert torch.allclose(logp.grad, torch.tensor([[-0.125, -0.125], [0.5, 0.0]]))


# ---- the guided sampler --------------------------------------------------------------------------
class _FakeSampler:
    """Answers every prompt with `reply(prompt)`; prompt ids are the prompt's length and index."""

    def __init__(self, reply) -> None:
        self.reply, self.calls = reply, []

    def generate(self, prompts, params, seed):
        self.calls.append(list(prompts))
        return [Completion(p, self.reply(p), [len(p), i], [7, 8], [0.0, 0.0], "stop") for i, p in enumerate(prompts)]

    def context_limit(self):
        return None

    def encode(self, p):
        return [len(p)]


def test_guided_sampler_inserts_strategies_and_logs_segments():
    strategist = _FakeSampler(lambda p: " keep books and hats\nignored")
    actor = _FakeSampler(lambda p: "2 1 0}" if "Strategy: keep books and hats" in p else "0 0 0}")
    g = epo.GuidedSampler(actor, strategist, SamplingParams())
    outs = g.generate(["rules\nobs\nMove: \\boxed{"], SamplingParams(), seed=1)
    assert strategist.calls == [["rules\nobs\nStrategy:"]]
    assert actor.calls == [["rules\nobs\nStrategy: keep books and hats\nMove: \\boxed{"]]
    assert outs[0].text == "2 1 0}"
    seg = g.segment(outs[0].prompt_ids)
    assert seg.text == "keep books and hats" and seg.token_ids == [7, 8]
    assert g.segment(outs[0].prompt_ids) is None  # consumed
    neutral = epo.GuidedSampler(actor)  # no strategist: the fixed neutral strategy, nothing logged
    assert neutral.generate(["a\nMove: \\boxed{"], SamplingParams(), seed=1)[0].text == "0 0 0}"
    assert actor.calls[-1] == ["a\nStrategy: none\nMove: \\boxed{"] and not neutral.log


def test_demonstrations_follow_the_grammar():
    rows = epo.actor_demonstrations(40, 0.25, seed=3)
    assert len(rows) == 40 and all(c.endswith("}") for _, c in rows)
    assert any(epo.strategy_of(p) == epo.NEUTRAL for p, _ in rows)
    assert all(epo.strategy_of(p) in (*epo.grammar(), epo.NEUTRAL) for p, _ in rows)
    s_rows = epo.strategy_demonstrations(10, seed=3)
    assert all(p.endswith("Strategy:") and c.strip() in epo.grammar() and c.endswith("\n") for p, c in s_rows)


# ---- properties and smoke ----------------------------------------------------------------------


def _cfg(model: str, **kw) -> epo.Config:
    base = dict(model=model, games=2, actor_sft_steps=1, strategy_sft_steps=1, sft_batch=2, eval_games=2,
                strategy_tokens=3, heldout_opponent="random", epochs=1, threads=1, eval_every=1,
                tensorboard=False, plot=False, device="cpu")
    return epo.Config(**(base | kw))


def test_seed_and_resume(tiny_1024, tmp_path):
    from spkit.testing import check_seed_and_resume

    h = check_seed_and_resume(epo.train, _cfg(tiny_1024), tmp_path)
    assert "setup/actor_sft" in h.rows[1] and h.rows[1]["train/segments"] > 0
    assert "eval/heldout/guided/return" in h.rows[-1] and "mean negotiation return" in epo.summary(h)
    assert (h.out_dir / "actor" / "model.safetensors").exists()


def test_cli_trains_and_saves_both_models(tiny_1024, tmp_path):
    from spkit.cli import main

    out = tmp_path / "run"
    main(["train", "epo", "--model", tiny_1024, "--steps", "1", "--games", "2", "--actor-sft-steps", "1",
          "--strategy-sft-steps", "1", "--sft-batch", "2", "--eval-games", "2", "--strategy-tokens", "3",
          "--heldout-opponent", "random", "--epochs", "1", "--threads", "1", "--out", str(out),
          "--no-tensorboard", "--no-plot"])
    cfg = json.loads((out / "run.json").read_text())["config"]
    assert cfg["heldout_opponent"] == "random" and cfg["gamma"] == 0.99
    assert (out / "final" / "model.safetensors").exists() and (out / "actor" / "model.safetensors").exists()
    # a second run reuses that actor instead of building one
    h = epo.train(_cfg(tiny_1024, actor=str(out / "actor"), steps=1, eval_every=0))
    assert not any(k.startswith("setup/actor") for r in h.rows for k in r)


def test_same_opponents_are_refused(tiny_1024):
    from spkit.errors import SpkitError

    with pytest.raises(SpkitError, match="must differ"):
        epo.train(_cfg(tiny_1024, heldout_opponent="heuristic"))
