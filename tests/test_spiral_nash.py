"""SPIRAL's Kuhn Poker options (magnet, entropy half-life, linear averaging, CPU budget) and the
exact TicTacToe analysis against perfect play (`spkit.solvers.minimax.mass_on_optimal`)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from spkit.algos import spiral
from spkit.games import load_game
from spkit.rl.tabular_pg import average_policy
from spkit.solvers.exploitability import game_tree
from spkit.solvers.minimax import MinimaxPolicy, mass_on_optimal, solved


# ---- TicTacToe against perfect play, exactly -------------------------------------------------------
def _uniform(states):
    return [{a: 1 / len(s.legal_actions()) for a in s.legal_actions()} for s in states], [1.0] * len(states)


def _brute_not_lose(game, policy, seat: int) -> float:
    """P(not losing) of `policy` in `seat` vs MinimaxPolicy by full enumeration (no pruning)."""
    perfect = MinimaxPolicy(game)

    def value(state) -> float:
        if state.is_terminal():
            return float(state.returns()[seat] >= 0)
        if state.current_player() != seat:
            child = state.clone()
            child.apply_action(perfect.solution.best_action(state))
            return value(child)
        (probs,), (legal,) = policy([state])
        total = 0.0
        for a, p in probs.items():
            child = state.clone()
            child.apply_action(a)
            total += p * value(child)
        return legal * total

    return value(game.new_initial_state())


def _skewed(states):
    """A deterministic non-uniform policy that answers illegally 10% of the time."""
    probs = []
    for s in states:
        w = [1.0 + sum(map(ord, s.information_state_string(0) + a)) % 7 for a in s.legal_actions()]
        probs.append({a: x / sum(w) for a, x in zip(s.legal_actions(), w, strict=True)})
    return probs, [0.9] * len(states)


@pytest.mark.parametrize("seat", [0, 1])
@pytest.mark.parametrize("policy", [_uniform, _skewed])
def test_mass_on_optimal_equals_full_enumeration(seat, policy):
    game = load_game("tictactoe")
    r = mass_on_optimal(game, policy, seat)
    assert r["not_lose"] == pytest.approx(_brute_not_lose(game, policy, seat), abs=1e-12)
    assert all(-1e-12 <= x <= 1 + 1e-12 for x in r["by_move"]) and r["positions"] > 0


def test_optimal_policy_never_loses_and_a_blunder_shows_where():
    game = load_game("tictactoe")
    sol = solved(game)

    def optimal(states, blunder_at: int | None = None):
        out = []
        for s in states:
            good = sol.optimal_actions(s)
            bad = [a for a in s.legal_actions() if a not in good]
            if blunder_at is not None and (9 - len(s.legal_actions())) // 2 == blunder_at and bad:
                out.append({a: (1.0 / len(bad) if a in bad else 0.0) for a in s.legal_actions()})
            else:
                out.append({a: (1.0 / len(good) if a in good else 0.0) for a in s.legal_actions()})
        return out, [1.0] * len(states)

    for seat in (0, 1):
        r = mass_on_optimal(game, optimal, seat)
        assert r["not_lose"] == pytest.approx(1.0) and all(x == pytest.approx(1.0) for x in r["by_move"])
    r = mass_on_optimal(game, lambda s: optimal(s, blunder_at=1), 1)  # O's second move always gives the game away
    assert r["not_lose"] == 0.0 and r["by_move"][0] == pytest.approx(1.0) and r["by_move"][1] == 0.0


def test_greedy_play_against_perfect_play_is_the_argmax_game(random_tiny):
    """The greedy metric is one game per seat: the model's most probable legal move against
    deterministic perfect play, enumerated here without pruning."""
    from spkit.lm_policy import LLMPolicy

    model, tok = random_tiny
    game = load_game("tictactoe")
    policy = LLMPolicy(model, tok, "direct")

    def argmax(states):
        probs = policy.table(states).probs
        return [{a: float(a == max(p, key=p.get)) for a in p} for p in probs], [1.0] * len(states)

    m = spiral.tictactoe_optimal_mass(model, tok)
    for seat in (0, 1):
        got = m[f"eval/tictactoe/greedy_not_lose_vs_perfect/{seat}"]
        assert got in (0.0, 1.0) and got == _brute_not_lose(game, argmax, seat)
        assert 0.0 <= m[f"eval/tictactoe/exact_not_lose_vs_perfect/{seat}"] <= 1.0


# ---- Kuhn Poker options ---------------------------------------------------------------------------
def test_linear_weights_count_a_later_table_more():
    tree = game_tree(load_game("kuhn_poker"))
    rng = random.Random(0)
    a, b = ({k: dict(zip(s.legal_actions(), [x, 1 - x], strict=True))
             for k, s in tree.infoset_states.items() for x in [rng.random()]} for _ in range(2))
    got = spiral.kuhn_average(spiral.Config(avg_weights="linear"), [a, b])
    want = average_policy(tree, [a, b, b])  # table 2 weighs 2, table 1 weighs 1
    assert all(got[k][x] == pytest.approx(want[k][x], abs=1e-12) for k in want for x in want[k])
    uniform = spiral.kuhn_average(spiral.Config(), [a, b])
    assert any(abs(uniform[k][x] - got[k][x]) > 1e-3 for k in got for x in got[k])


def test_magnet_kl_is_zero_at_the_magnet_and_its_gradient_pulls_towards_it(random_tiny):
    model, tok = random_tiny
    game = load_game("kuhn_poker")
    tree = game_tree(game)
    keys = list(tree.infoset_states)
    states = [tree.infoset_states[k] for k in keys]
    own, _ = spiral.kuhn_table(model, tok, game, spiral.Config(), seed=0)
    assert spiral.magnet_kl(model, tok, states, keys, own).item() == pytest.approx(0.0, abs=1e-6)
    bet = {k: {a: (0.9 if a in ("bet", "call") else 0.1) for a in s.legal_actions()} for k, s in zip(keys, states, strict=True)}
    before = spiral.magnet_kl(model, tok, states, keys, bet)
    assert before.item() > 0.01
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        spiral.magnet_kl(model, tok, states, keys, bet).backward()
        opt.step()
    assert spiral.magnet_kl(model, tok, states, keys, bet).item() < before.item()


def test_entropy_half_life_magnet_and_cpu_budget_in_a_run(tiny_dir, tmp_path):
    cfg = spiral.Config(model=str(tiny_dir), steps=50, episodes=4, eval_every=1, eval_games=0, entropy_coef=0.2,
                        entropy_half_life=1.0, magnet_coef=1.0, avg_weights="linear", max_cpu_minutes=1e-4,
                        out=str(tmp_path), plot=False, tensorboard=False)
    h = spiral.train(cfg)
    assert h.last("train/cpu_seconds") > 60 * cfg.max_cpu_minutes
    assert len(h.series("train/cpu_seconds")[1]) == 1  # the CPU budget ended the run after one step
    assert h.last("train/entropy_coef") == pytest.approx(0.2)  # β_0 = β
    cfg2 = spiral.Config(**{**cfg.__dict__, "max_cpu_minutes": 0.0, "steps": 2, "out": str(tmp_path / "b")})
    h2 = spiral.train(cfg2)
    assert h2.series("train/entropy_coef")[1] == pytest.approx([0.2, 0.1])  # halved after one step
    assert h2.last("losses/magnet") > 0.0  # the iterate has moved off the average


# ---- the entropy bonus measured against the average policy (--entropy-ref average) ------------------
def test_entropy_bonus_against_a_reference_is_a_kl_estimate():
    from spkit.rl.selfplay import Turn

    ok = Turn("kuhn_poker", 0, [1], [2, 3], [-0.5, -0.25], "bet}", "bet", True)  # log π(y) = −0.75
    bad = Turn("kuhn_poker", 1, [1], [4] * 8, [-3.0] * 8, "zzz", None, True)
    out = spiral.entropy_bonus([(ok, 1.0), (bad, -1.5)], 2.0, lambda t: math.log(0.25))
    assert [a for _, a in out] == pytest.approx([1.0 + 2.0 * (0.75 + math.log(0.25)), -1.5])  # invalid: none
    same = spiral.entropy_bonus([(ok, 1.0)], 2.0, lambda t: sum(t.old_logprobs))
    assert same[0][1] == pytest.approx(1.0)  # π = ρ on the move played: no bonus


def test_kuhn_ref_logprob_reads_each_turns_infoset():
    from spkit.errors import SpkitError
    from spkit.generation import Sampler
    from spkit.models import load_model
    from spkit.rl.selfplay import LMAgent, Turn, play_episodes
    from spkit.sampling import SamplingParams

    model, tok = load_model("spkit-tiny", device="cpu")  # it answers Kuhn legally; the random test model does not
    keys = spiral.kuhn_prompt_keys(tok)
    tree = game_tree(load_game("kuhn_poker"))
    assert sorted(keys.values()) == sorted(tree.infoset_states)  # 12 distinct prompts
    table = {k: {a: (0.8 if a in ("bet", "call") else 0.2) for a in s.legal_actions()}
             for k, s in tree.infoset_states.items()}
    agent = LMAgent(Sampler(model, tok), "direct", SamplingParams(max_new_tokens=8), learner=True)
    eps = play_episodes(load_game("kuhn_poker"), lambda i: [agent, agent], 8, 0)
    ref = spiral.kuhn_ref_logprob(keys, table)
    turns = [t for e in eps for t in e.turns if t.action is not None]
    assert turns
    for t in turns:
        assert ref(t) == pytest.approx(math.log(0.8 if t.action in ("bet", "call") else 0.2))
        assert t.action in tree.infoset_states[keys[tuple(t.prompt_ids)]].legal_actions()
    with pytest.raises(SpkitError, match="infosets"):
        ref(Turn("kuhn_poker", 0, [1, 2, 3], [2], [-0.1], "bet}", "bet", True))


def test_entropy_ref_average_in_a_run(tmp_path):
    from spkit.errors import SpkitError

    # spkit-tiny answers Kuhn legally (the random test model does not, and invalid moves get no bonus)
    kw = dict(model="spkit-tiny", steps=1, episodes=4, eval_every=1, eval_games=0, entropy_coef=0.2,
              plot=False, tensorboard=False, avg_weights="linear", threads=1)
    a = spiral.train(spiral.Config(out=str(tmp_path / "a"), entropy_ref="average", **kw))
    b = spiral.train(spiral.Config(out=str(tmp_path / "b"), **kw))
    assert len(a.series("eval/kuhn_poker/nashconv_avg")[1]) == 2
    assert a.last("train/invalid_rate") < 1.0
    # the bonus log ρ(a) − log π(y) is not −log π(y): the same games give another update
    assert a.last("losses/policy") != pytest.approx(b.last("losses/policy"))
    with pytest.raises(SpkitError, match="entropy-ref"):
        spiral.train(spiral.Config(out=str(tmp_path / "c"), entropy_ref="average", **{**kw, "games": ("tictactoe",)}))
