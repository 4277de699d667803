"""The embedded model's recipe: corpus formats, determinism, a small pretraining run, the card."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from spkit import corpus, pretrain
from spkit.games import load_game
from spkit.games.prompts import ANSWER_PREFIX, REASONING_INSTRUCTION, parse_action
from spkit.solvers.exploitability import nash_conv
from spkit.tasks import steps
from spkit.tasks.arithmetic import split_of


def test_corpus_is_deterministic_and_mixed():
    a, b = corpus.build(400, seed=1), corpus.build(400, seed=1)
    assert a == b and a != corpus.build(400, seed=2)
    assert sum(corpus.counts(400).values()) == 400
    assert any(d.startswith("Question: ") and "\n#### " in d for d in a)
    assert any(d.startswith(load_game("kuhn_poker").rules) for d in a)
    assert any(d.startswith(load_game("spy").rules) for d in a)


def test_corpus_critiques_use_training_problems_only():
    """ProcessBench-style critiques are in the corpus, but never on held-out (test) problems."""
    docs = [d for d in corpus.build(1000, seed=0) if "[Math Problem]" in d]
    assert len(docs) == corpus.counts(1000)["steps"] == 50
    for d in docs:
        problem = d.split("[Math Problem]\n\n")[1].split("\n\n[Solution]")[0]
        assert split_of(problem) == "train"
        assert steps.extract_index(d.rsplit("\n\n", 1)[1]) in range(-1, 4)


def test_kuhn_style_is_exploitable_and_is_what_the_demonstrator_plays():
    """Known answer: the demonstrator's style has NashConv 0.38166...; sampled moves follow it."""
    g = load_game("kuhn_poker")
    table = {k: dict(zip(("check", "bet") if k[-1:] != "b" else ("fold", "call"), (1 - p, p), strict=True))
             for k, p in corpus.KUHN_AGGRESSION.items()}
    assert nash_conv(g, table) == pytest.approx(0.3816666666, abs=1e-9)
    rng, seen = random.Random(0), {}
    for _ in range(4000):
        state = g.new_initial_state(seed=rng.randrange(2**31))
        while not state.is_terminal():
            p = state.current_player()
            move, _ = corpus.kuhn_demo(state, p, rng)
            key = state.information_state_string(p)
            seen.setdefault(key, []).append(move in ("bet", "call"))
            state.apply_action(move)
    for key, moves in seen.items():  # 4000 games: every infoset is visited >= 250 times
        assert sum(moves) / len(moves) == pytest.approx(corpus.KUHN_AGGRESSION[key], abs=0.1), key


@pytest.mark.parametrize("game", ["kuhn_poker", "tictactoe", "negotiation", "spy"])
def test_game_demonstrations_are_legal_moves_in_the_prompt_format(game):
    """Replay demonstrations: every one parses to a legal move of the state it was made in."""
    rng = random.Random(0)
    g = load_game(game)
    for _ in range(30):
        state = g.new_initial_state(seed=rng.randrange(2**31))
        while not state.is_terminal():
            p = state.current_player()
            move, why = corpus.DEMONSTRATORS[game](state, p, rng)
            completion = f"{why} \\boxed{{{move}}}"
            assert parse_action(completion, state.legal_actions(), state) == move
            assert parse_action(ANSWER_PREFIX + move + "}", state.legal_actions(), state) == move
            state.apply_action(move)
    docs = corpus.game_documents(game, 20, random.Random(1))
    assert all(d.startswith(g.rules) for d in docs)
    assert any(REASONING_INSTRUCTION in d for d in docs)


@pytest.mark.timeout(300)
def test_small_pretrain_run_learns_and_saves_a_plain_transformers_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = pretrain.Config(docs=300, vocab_size=400, hidden=32, layers=1, intermediate=64, seq_len=128, batch=8,
                          steps=25, warmup=5, lr=1e-2, out=str(tmp_path / "run"), export=str(tmp_path / "model"))
    hist = pretrain.train(cfg)
    final = tmp_path / "model"  # --export: the final model, copied where it is used
    rows = (final / "loss.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[1]) for r in rows]
    assert len(losses) == 25 and losses[-1] < losses[0] - 1.0  # it learns
    summary = json.loads((final / "pretrain.json").read_text())
    assert summary["params"] < 100_000 and (final / "loss.png").exists() and summary["corpus_docs"] == 300
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    assert type(model).__name__ == "LlamaForCausalLM" and tok.eos_token == "<|endoftext|>"
    assert (hist.final_dir / "model.safetensors").read_bytes() == (final / "model.safetensors").read_bytes()
    # --eval-every: the held-out loss falls too, and measuring it changes nothing of the training
    watched = pretrain.train(replace(cfg, eval_every=10, out=str(tmp_path / "watched"), export=""))
    steps, held_out = watched.series("eval/loss")
    assert steps == [0, 10, 20, 25] and held_out[-1] < held_out[0] - 1.0
    assert (watched.final_dir / "model.safetensors").read_bytes() == (final / "model.safetensors").read_bytes()


def test_embedded_model_card_is_measured_and_consistent(tiny):
    """The shipped card's numbers come from card.json, which `spkit card` wrote."""
    from spkit.models import resolve_model_path

    path = Path(resolve_model_path("spkit-tiny"))
    card = json.loads((path / "card.json").read_text())
    readme = (path / "README.md").read_text()
    assert f"{card['kuhn_nash_conv_direct']:.3f}" in readme
    # a model that can still learn: well above zero on format, well below perfect on skill
    assert all(r["reasoning"] > 0.5 for r in card["legal_move_rate"].values())
    assert 0.05 < card["kuhn_nash_conv_direct"] < 0.9
    assert 0.0 < min(card["arithmetic_accuracy_by_steps"].values()) < 0.9


def test_card_measures_a_model_quickly(tiny):
    """`spkit card`'s functions on the real model with tiny sample sizes (smoke + ranges)."""
    from spkit import card
    from spkit.generation import Sampler

    model, tok = tiny
    sampler = Sampler(model, tok)
    rates = card.legal_move_rates(sampler, "kuhn_poker", 8, seed=0)
    assert 0.0 <= rates["direct"] <= 1.0 and rates["reasoning_tokens"] > 3
    assert rates == card.legal_move_rates(sampler, "kuhn_poker", 8, seed=0)  # seeded
    acc = card.arithmetic_accuracy(sampler, 4, levels=(1,))
    assert set(acc) == {1}
