"""LLMPolicy: exact direct-mode distributions, sampled reasoning-mode distributions, NashConv."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
import torch

from spkit.errors import SpkitError
from spkit.games import InvalidMove, load_game
from spkit.games.prompts import ANSWER_PREFIX
from spkit.lm_policy import LLMPolicy
from spkit.solvers import nash_conv, policy_table


@pytest.fixture(scope="module")
def tiny():
    from spkit.testing import tiny_random_model

    torch.set_num_threads(1)
    return tiny_random_model(seed=0)


@pytest.fixture(scope="module")
def kuhn():
    return load_game("kuhn_poker")


@dataclass
class FakeCompletion:
    text: str


class FakeSampler:
    """Returns scripted completions in order; records the seeds it was given."""

    def __init__(self, texts: list[str]) -> None:
        self.texts, self.seeds, self.prompts, self.calls = texts, [], [], 0

    def generate(self, prompts, params, seed=None, progress=False):
        self.seeds.append(seed)
        self.prompts.extend(prompts)
        out = []
        for _ in prompts:
            out.append(FakeCompletion(self.texts[self.calls % len(self.texts)]))
            self.calls += 1
        return out


def test_direct_mode_is_exact_softmax_over_legal(tiny, kuhn):
    from spkit.logprobs import score_continuations

    model, tok = tiny
    pol = LLMPolicy(model, tok, mode="direct")
    state = kuhn.new_initial_state(seed=1)
    probs = pol.action_probabilities(state)
    assert list(probs) == ["check", "bet"] and sum(probs.values()) == pytest.approx(1.0)
    prompt = pol.prompt(state)
    assert prompt.endswith("Move: " + ANSWER_PREFIX)
    with torch.no_grad():
        lp = score_continuations(model, tok, prompt, ["check}", "bet}"]).double().tolist()
    assert probs["bet"] == pytest.approx(math.exp(lp[1]) / (math.exp(lp[0]) + math.exp(lp[1])))
    assert 0 < pol.legal_mass <= 1
    assert pol.sample_action(state, random.Random(0)) in ("check", "bet")


def test_nash_conv_of_a_language_model(tiny, kuhn):
    model, tok = tiny
    pol = LLMPolicy(model, tok, mode="direct")
    nc = nash_conv(kuhn, pol)
    table = policy_table(kuhn, pol)
    assert len(table) == 12
    assert nc == pytest.approx(nash_conv(kuhn, table))
    assert 0.0 <= nc <= 4.0
    assert nash_conv(kuhn, LLMPolicy(model, tok, mode="direct")) == nc  # deterministic


def test_reasoning_mode_empirical_distribution(kuhn):
    state = kuhn.new_initial_state(seed=2)
    texts = [
        "K is strong. \\boxed{bet}",
        "\\boxed{check}",
        "hmm \\boxed{bet}",
        "no answer at all",
        "\\boxed{raise}",
        "\\boxed{Bet}",
        "",
        "\\boxed{bet",
    ]
    fake = FakeSampler(texts)
    pol = LLMPolicy(None, None, mode="reasoning", n_samples=8, sampler=fake)
    probs = pol.action_probabilities(state)
    assert probs == {"check": 0.25, "bet": 0.75}
    stats = pol.last_stats
    assert stats.n == 8 and stats.n_invalid == 4 and stats.invalid_rate == 0.5
    assert stats.counts == {"bet": 3, "check": 1}
    lo, hi = stats.invalid_interval()
    assert lo < 0.5 < hi
    lo, hi = stats.action_interval("bet")
    assert lo < 0.75 < hi
    # Seeded by (seed, prompt): same state -> same seed; the prompt is the reasoning prompt.
    assert pol.action_probabilities(state) == probs  # the script repeats every 8 samples
    assert fake.seeds[0] == fake.seeds[1]
    assert fake.prompts[0].endswith("\\boxed{move}.\n")


def test_reasoning_mode_all_invalid_falls_back_to_uniform(kuhn):
    state = kuhn.new_initial_state(seed=2)
    pol = LLMPolicy(None, None, mode="reasoning", n_samples=3, sampler=FakeSampler(["???"]))
    assert pol.action_probabilities(state) == {"check": 0.5, "bet": 0.5}
    assert pol.last_stats.invalid_rate == 1.0
    out = pol.sample_action(state, random.Random(0))
    assert isinstance(out, InvalidMove)


def test_reasoning_mode_with_a_real_sampler_is_seeded(tiny, kuhn):
    model, tok = tiny
    state = kuhn.new_initial_state(seed=0)
    a = LLMPolicy(model, tok, mode="reasoning", n_samples=3, max_new_tokens=6, seed=5)
    b = LLMPolicy(model, tok, mode="reasoning", n_samples=3, max_new_tokens=6, seed=5)
    pa, pb = a.action_probabilities(state), b.action_probabilities(state)
    assert pa == pb and a.last_stats.texts == b.last_stats.texts
    assert sum(pa.values()) == pytest.approx(1.0)


def test_free_text_clues_are_sampled_and_validated():
    game = load_game("spy")
    state = game.new_initial_state(seed=0)
    word = state.words[state.current_player()]
    fake = FakeSampler(["shiny thing}", f"my {word}}}"])
    pol = LLMPolicy(None, None, mode="direct", sampler=fake)
    assert pol.sample_action(state, random.Random(0)) == "shiny thing"
    bad = pol.sample_action(state, random.Random(0))
    assert isinstance(bad, InvalidMove) and "secret" in bad.reason
    pol.n_samples = 2  # one valid clue, one with the secret word
    assert pol.action_probabilities(state) == {"shiny thing": 1.0}
    assert pol.last_stats.n_invalid == 1


def test_bad_arguments():
    with pytest.raises(SpkitError):
        LLMPolicy(None, None, mode="chatty")
    with pytest.raises(SpkitError):
        LLMPolicy(None, None, n_samples=0)
