"""Negotiation with AI feedback: the bargaining game by hand, the feedback semantics, the
critics, the per-round metrics on hand-built chains, seed and resume, the CLI and the widget."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from spkit.algos import negotiation_feedback as nf
from spkit.games import load_game
from spkit.games.bargaining import (
    ACCEPT,
    BUYER,
    SELLER,
    BargainingGame,
    Trader,
    offer,
    scripted_game,
    seller_best_response,
)
from spkit.games.prompts import format_prompt, parse_action

TINY_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "spkit-tiny"


def _play(*actions: str):
    s = BargainingGame().new_initial_state()
    for a in actions:
        s.apply_action(a)
    return s


# ---- the game ----------------------------------------------------------------------------------
def test_openings_and_legal_moves():
    s = load_game("bargaining").new_initial_state()
    assert [line for line in s.transcript()] == ["Seller offers $20", "Buyer offers $10"]
    assert s.current_player() == SELLER
    # the buyer's $10 is outside 11..19: no accept; the seller may hold $20 or go down to $11
    assert s.legal_actions() == [offer(p) for p in range(11, 21)]
    s.apply_action(offer(15))
    assert s.legal_actions() == [ACCEPT, *[offer(p) for p in range(10, 15)]]  # buyer: hold 10 .. 14
    s.apply_action(offer(12))
    assert s.legal_actions() == [ACCEPT, *[offer(p) for p in range(13, 16)]]  # seller: 13 .. hold 15


def test_deal_price_and_returns_by_hand():
    s = _play(offer(16), offer(13), ACCEPT)  # the seller accepts the buyer's $13
    assert s.is_terminal() and s.price == 13
    assert s.returns() == [13 - 8, 20 - 13]
    assert s.transcript()[-1] == "Seller accepts $13"
    assert "Deal at $13" in s.observation_text(BUYER)


def test_no_deal_after_ten_messages():
    s = _play(*[offer(20), offer(10)] * 4)  # both hold for 8 more messages
    assert s.is_terminal() and s.price is None and s.returns() == [0.0, 0.0]
    assert len(s.moves) == 10


def test_feedback_is_in_the_sellers_context_only():
    s = BargainingGame().new_initial_state()
    s.feedback, s.past = ["do not accept below $15"], [13, None]
    seller, buyer = format_prompt(s, SELLER, "direct"), format_prompt(s, BUYER, "direct")
    assert "Feedback: do not accept below $15" in seller and "Earlier rounds: $13, no deal" in seller
    assert "Feedback" not in buyer and "Earlier" not in buyer
    assert parse_action("\\boxed{offer 14}", s.legal_actions()) == "offer 14"


def test_scripted_game_by_hand():
    # seller floor 14 step 3: 20 → 17 → 14; buyer ceiling 16 step 2: 10 → 12 → (14 ≥ seller's 14: accept)
    s = scripted_game(Trader(SELLER, 14, 3), Trader(BUYER, 16, 2))
    assert s.transcript() == ["Seller offers $20", "Buyer offers $10", "Seller offers $17", "Buyer offers $12",
                              "Seller offers $14", "Buyer accepts $14"]
    # a firm seller (floor 18) and a buyer who never pays more than 16: no deal
    s = scripted_game(Trader(SELLER, 18, 1), Trader(BUYER, 16, 2))
    assert s.price is None and len(s.moves) == 10


def test_seller_best_response_exact():
    # Against one buyer (ceiling 16, step 2) the best scripted seller gets $16 − 8 = 8: no seller
    # can get more than the buyer's ceiling, and a seller conceding $1 a turn reaches it.
    best, value, table = seller_best_response([Trader(BUYER, 16, 2)])
    assert value == 8.0 and scripted_game(best, Trader(BUYER, 16, 2)).price == 16
    assert table[Trader(SELLER, 17, 1)] == 0.0  # a floor above the ceiling breaks the deal


# ---- feedback semantics and the critics ------------------------------------------------------------
def test_follow_feedback_by_hand():
    s = Trader(SELLER, 12, 3)
    assert nf.follow(s, []) == s
    assert nf.follow(s, ["do not accept below $15", nf.SMALLER]) == Trader(SELLER, 15, 2)
    assert nf.follow(s, ["do not accept below $15", "do not accept below $13"]).limit == 13  # newest wins
    assert nf.follow(Trader(SELLER, 12, 1), [nf.SMALLER, nf.BIGGER, nf.SOONER]) == Trader(SELLER, 12, 2, 2)
    assert len(nf.FEEDBACK) == len(set(nf.FEEDBACK)) == 11 and all("{" not in f for f in nf.FEEDBACK)


def test_scripted_critic_by_hand():
    s = scripted_game(Trader(SELLER, 14, 3), Trader(BUYER, 16, 2))  # deal at 14, concessions of $3
    assert nf.seller_concessions(s) == [3, 3]
    assert nf.scripted_critic(s, push=2) == ["do not accept below $16", nf.SMALLER]
    assert nf.scripted_critic(s, push=9) == ["do not accept below $19", nf.SMALLER]  # capped at $19
    assert nf.scripted_critic(scripted_game(Trader(SELLER, 18, 1), Trader(BUYER, 16, 2))) == [nf.SOONER]


def test_demonstrations_follow_their_feedback():
    pairs = nf.demonstrations(200, seed=3)
    assert pairs == nf.demonstrations(200, seed=3) and len(pairs) == 200
    for prompt, completion in pairs:
        assert completion.endswith("}") and prompt.endswith("\\boxed{")
        legal = prompt.rsplit("Legal moves: ", 1)[1].split("\n")[0].split(", ")
        assert completion[:-1] in legal
        if "You are Player 0." in prompt and "Feedback: " in prompt and "below $" in prompt:
            last_floor = [f for f in prompt.split("Feedback: ")[1].split("\n")[0].split("; ") if "below" in f][-1]
            floor = int(last_floor.rsplit("$", 1)[1])
            if completion.startswith("offer"):  # never offers below its floor (unless the buyer is above)
                assert int(completion[6:-1]) >= floor


def test_critic_format_demos_are_pool_lines_on_critic_prompts():
    pairs = nf.critic_format_demos(30, seed=1)
    assert pairs == nf.critic_format_demos(30, seed=1)
    assert all(p.endswith("\\boxed{") and "You are the critic." in p and c[:-1] in nf.FEEDBACK for p, c in pairs)
    assert ("Deal at $" in pairs[0][0]) or ("No deal" in pairs[0][0])  # a finished round
    assert len({c for _, c in pairs}) > 3  # drawn across the pool, not one fixed line


# ---- metrics on hand-built chains ------------------------------------------------------------------
def _chain(*prices):
    c = nf.Chain()
    for p in prices:
        st = BargainingGame().new_initial_state()
        st.price = p
        c.rounds.append(nf.RoundRecord(st, p, invalid=False))
    return c


def test_round_stats_and_gain_by_hand():
    chains = [_chain(12, 14, None), _chain(14, 16, 17), _chain(None)]
    stats = nf.round_stats(chains, 3)
    assert [s["deal"] for s in stats] == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert [s["price"] for s in stats] == pytest.approx([13.0, 15.0, 17.0])
    assert stats[0]["return"] == pytest.approx(((12 - 8) + (14 - 8)) / 3)
    assert stats[0]["price_ci"] == pytest.approx(1.96 * 2 ** 0.5 / 2 ** 0.5)  # sd √2, n 2
    assert stats[2]["return"] == pytest.approx((17 - 8) / 3)
    assert nf.price_gain(chains) == pytest.approx(((14 - 12) + (17 - 14)) / 2)  # chain 3 never dealt


def test_unroll_with_scripted_players_stops_at_no_deal():
    # a Policy in both seats: the seller's Trader ignores feedback, so every round is the same deal
    agent = Trader(SELLER, 14, 3)

    class Both:
        params = type("P", (), {"temperature": 1.0})()

        def sample_action(self, state, rng):
            return (agent if state.current_player() == SELLER else Trader(BUYER, 16, 2)).act(state)

    chains, bad = nf.unroll(Both(), "scripted", games=2, rounds=3, seed=0)
    assert bad == 0 and all([r.price for r in c.rounds] == [14, 14, 14] for c in chains)
    assert chains[0].rounds[0].feedback == ["do not accept below $16", nf.SMALLER]
    assert chains[0].rounds[1].state.feedback == ["do not accept below $16", nf.SMALLER]  # in context
    assert chains[0].rounds[1].state.past == [14]
    assert chains[0].rounds[-1].feedback == []  # no critic after the last round
    agent = Trader(SELLER, 18, 1)  # now no deal: the chain stops after round 1
    chains, _ = nf.unroll(Both(), "none", games=1, rounds=3, seed=0)
    assert len(chains[0].rounds) == 1 and chains[0].rounds[0].price is None


def test_random_critic_draws_from_the_pool():
    lines = nf.random_critic(random.Random(0), 3)
    assert 1 <= len(lines) <= 3 and set(lines) <= set(nf.FEEDBACK)


# ---- properties, CLI, widget -------------------------------------------------------------------------


def _cfg(model: str, **kw) -> nf.Config:
    base = dict(model=model, sft_batch=4, games=2, rounds=2, critics="none,scripted,model", threads=1, eval_every=1,
                tensorboard=False, plot=False, device="cpu")
    return nf.Config(**(base | kw))


def test_seed_and_resume(tiny_1024, tmp_path):
    from spkit.testing import check_seed_and_resume

    h = check_seed_and_resume(nf.train, _cfg(tiny_1024), tmp_path)
    assert [r["step"] for r in h.rows if "eval/none/deal_r1" in r] == [0, 1, 2]
    assert all(0 <= r["eval/model/critic_invalid"] <= 1 for r in h.rows if "eval/model/critic_invalid" in r)


def test_bad_critic_is_one_line(tiny_1024):
    from spkit.errors import SpkitError

    with pytest.raises(SpkitError, match="--critics: unknown judge"):
        nf.train(_cfg(tiny_1024, critics="none,judge", steps=0))


def test_cli_train_one_step(tiny_1024, tmp_path):
    from spkit.cli import main

    out = tmp_path / "run"
    code = main(["train", "negotiation_feedback", "--model", tiny_1024, "--steps", "1", "--sft-batch", "4",
                 "--games", "2", "--rounds", "2", "--critics", "none,scripted", "--threads", "1",
                 "--no-tensorboard", "--out", str(out)])
    assert code in (0, None)
    assert (out / "metrics.csv").is_file() and (out / "final" / "config.json").is_file()
    assert (out / "negotiation_feedback_rounds.png").is_file()


def test_widget_shows_rounds_escaped():
    from spkit.widgets import NegotiationRounds

    chains = [_chain(12, 15), _chain(None)]
    chains[0].rounds[0].feedback = ["<script>alert(1)</script>"]
    chains[0].rounds[1].state.feedback = ["do not accept below $15"]
    w = NegotiationRounds(chains, title="critic: <b>x</b>")
    assert w.round.max == 2 and "deal at $12" in w.view.value
    assert "&lt;script&gt;" in w.view.value and "<script>" not in w.view.value
    w.round.value = 2
    assert "deal at $15" in w.view.value and "do not accept below $15" in w.view.value
    w.chain.value = 1
    assert w.round.max == 1 and w.round.value == 1 and "no deal" in w.view.value
    assert "prices by round: no deal" in w.prices.value


@pytest.mark.slow
def test_meta_sft_on_spkit_tiny_lowers_the_demonstration_loss():
    if not (TINY_DIR / "config.json").exists():
        pytest.skip("assets/models/spkit-tiny not built yet")
    cfg = nf.Config(steps=8, sft_batch=8, games=2, rounds=1, critics="none", eval_every=0, threads=1,
                    tensorboard=False, plot=False, device="cpu")
    h = nf.train(cfg)
    loss = h.series("train/sft_loss")[1]
    assert len(loss) == 8 and loss[-1] < 0.5 * loss[0]  # spkit-tiny starts far from the bargaining format
    assert "none: gain" in nf.summary(h)
