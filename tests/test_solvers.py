"""Solvers: known answers on Kuhn Poker and TicTacToe, OpenSpiel cross-checks, policies, matches."""

from __future__ import annotations

import random
import time

import pytest

from spkit.errors import SpkitError
from spkit.games import load_game
from spkit.games.kuhn_poker import CARDS
from spkit.games.policies import (
    EpsilonPerfectPolicy,
    HeuristicNegotiator,
    TabularPolicy,
    UniformRandomPolicy,
    play_match,
    wilson_interval,
)
from spkit.solvers import (
    CFRSolver,
    best_response,
    cfr_curve,
    expected_returns,
    exploitability,
    game_tree,
    nash_conv,
    policy_table,
    solve_minimax,
)
from spkit.solvers.exploitability import build_tree
from spkit.solvers.minimax import MinimaxPolicy


@pytest.fixture(scope="module")
def kuhn():
    return load_game("kuhn_poker")


def uniform(state):
    return {a: 1.0 for a in state.legal_actions()}


def first_action(state):
    return {state.legal_actions()[0]: 1.0}


def random_table(game, rng: random.Random):
    tree = game_tree(game)
    table = {}
    for key, state in tree.infoset_states.items():
        w = [rng.random() for _ in state.legal_actions()]
        table[key] = {a: x / sum(w) for a, x in zip(state.legal_actions(), w, strict=True)}
    return table


# ---- known answers ---------------------------------------------------------------------------
def test_kuhn_tree_shape(kuhn):
    tree = game_tree(kuhn)
    assert len(tree) == 58 and len(tree.infoset_states) == 12
    assert game_tree(kuhn) is tree  # cached


def test_kuhn_known_nash_conv(kuhn):
    assert nash_conv(kuhn, uniform) == pytest.approx(11 / 12, abs=1e-12)
    assert nash_conv(kuhn, first_action) == pytest.approx(2.0, abs=1e-12)
    assert exploitability(kuhn, uniform) == pytest.approx(11 / 24, abs=1e-12)
    assert nash_conv(kuhn, UniformRandomPolicy()) == pytest.approx(11 / 12, abs=1e-12)


def test_kuhn_equilibrium_family_has_zero_nash_conv(kuhn):
    # Kuhn's closed-form equilibria: P0 bets J w.p. α ∈ [0, 1/3], K w.p. 3α, calls with K only
    # after check-bet when... (standard parametrisation below); value −1/18 for player 0.
    for alpha in (0.0, 0.1, 1 / 3):
        t = {
            "J": {"bet": alpha, "check": 1 - alpha},
            "Q": {"bet": 0.0, "check": 1.0},
            "K": {"bet": 3 * alpha, "check": 1 - 3 * alpha},
            "Jpb": {"call": 0.0, "fold": 1.0},
            "Qpb": {"call": alpha + 1 / 3, "fold": 2 / 3 - alpha},
            "Kpb": {"call": 1.0, "fold": 0.0},
            "Jp": {"bet": 1 / 3, "check": 2 / 3},
            "Qp": {"bet": 0.0, "check": 1.0},
            "Kp": {"bet": 1.0, "check": 0.0},
            "Jb": {"call": 0.0, "fold": 1.0},
            "Qb": {"call": 1 / 3, "fold": 2 / 3},
            "Kb": {"call": 1.0, "fold": 0.0},
        }
        assert nash_conv(kuhn, t) == pytest.approx(0.0, abs=1e-12)
        assert expected_returns(kuhn, t)[0] == pytest.approx(-1 / 18, abs=1e-12)


def test_best_response_to_always_bet(kuhn):
    always_bet = {k: {"bet": 1.0, "call": 1.0} for k in game_tree(kuhn).infoset_states}
    value, br = best_response(kuhn, always_bet, 1)
    assert br["Jb"] == "fold" and br["Kb"] == "call"
    # P1 vs always-bet P0: fold J (−1), call Q (wins vs J +2, loses vs K −2), call K (+2).
    assert value == pytest.approx((-1 + 0 + 2) / 3)


def test_cfr_converges_on_kuhn(kuhn):
    curve = dict(cfr_curve(kuhn, [1, 10, 100, 1000]))
    assert curve[1] == pytest.approx(11 / 12)
    assert curve[100] <= 0.05 and curve[1000] <= 0.015
    assert curve[1000] < curve[100] < curve[10] < curve[1]
    solver = CFRSolver(kuhn)
    solver.iterate(1000)
    assert expected_returns(kuhn, solver.average_policy())[0] == pytest.approx(-1 / 18, abs=3e-3)
    plus = dict(cfr_curve(kuhn, [100], plus=True))
    assert plus[100] < curve[100]  # CFR+ is faster on Kuhn
    simultaneous = dict(cfr_curve(kuhn, [100, 1000], alternating=False))
    assert simultaneous[100] == pytest.approx(0.0513, abs=1e-3)  # PAPERS.md curve: 0.049
    assert simultaneous[1000] == pytest.approx(0.0145, abs=1e-3)  # PAPERS.md curve: 0.0133


def test_cfr_is_deterministic(kuhn):
    a, b = CFRSolver(kuhn), CFRSolver(kuhn)
    a.iterate(50)
    b.iterate(50)
    assert a.average_policy() == b.average_policy()


def test_policy_table_validation(kuhn):
    with pytest.raises(SpkitError, match="no entry"):
        nash_conv(kuhn, {"J": {"bet": 1.0}})
    with pytest.raises(SpkitError, match="no probability"):
        nash_conv(kuhn, lambda s: {"raise": 1.0})
    # Unnormalised weights are renormalised over legal actions.
    assert nash_conv(kuhn, lambda s: {a: 5.0 for a in s.legal_actions()}) == pytest.approx(11 / 12)


def test_nash_conv_is_fast(kuhn):
    table = policy_table(kuhn, uniform)
    nash_conv(kuhn, table)
    t0 = time.perf_counter()
    for _ in range(20):
        nash_conv(kuhn, table)
    assert (time.perf_counter() - t0) / 20 < 0.05  # target < 10 ms; generous under CI load


def test_tree_size_guard():
    with pytest.raises(SpkitError, match="more than 2000 nodes"):
        build_tree(load_game("negotiation"), max_nodes=2000)


# ---- OpenSpiel cross-check -------------------------------------------------------------------
def test_nash_conv_matches_open_spiel(kuhn):
    pyspiel = pytest.importorskip("pyspiel")
    os_expl = pytest.importorskip("open_spiel.python.algorithms.exploitability")
    os_policy = pytest.importorskip("open_spiel.python.policy")
    game = pyspiel.load_game("kuhn_poker")
    rng = random.Random(0)
    letter_to_action = {"p": 0, "b": 1}
    for _ in range(5):
        table = random_table(kuhn, rng)
        tab = os_policy.TabularPolicy(game)
        for key, probs in table.items():
            # spkit key "Kpb" <-> OpenSpiel "2pb"; our action names map to pass (0) / bet (1).
            os_key = str(CARDS.index(key[0])) + key[1:]
            row = tab.policy_for_key(os_key)
            for a, p in probs.items():
                row[letter_to_action[{"check": "p", "fold": "p", "bet": "b", "call": "b"}[a]]] = p
        ours = nash_conv(kuhn, table)
        theirs = os_expl.nash_conv(game, tab)
        assert ours == pytest.approx(theirs, abs=1e-9)


def test_cfr_curve_matches_open_spiel(kuhn):
    pyspiel = pytest.importorskip("pyspiel")
    os_cfr = pytest.importorskip("open_spiel.python.algorithms.cfr")
    os_expl = pytest.importorskip("open_spiel.python.algorithms.exploitability")
    game = pyspiel.load_game("kuhn_poker")
    solver = os_cfr.CFRSolver(game)
    theirs = []
    for _ in range(20):
        solver.evaluate_and_update_policy()
        theirs.append(os_expl.nash_conv(game, solver.average_policy()))
    ours = [nc for _, nc in cfr_curve(kuhn, list(range(1, 21)))]
    assert ours == pytest.approx(theirs, abs=1e-9)


# ---- minimax ---------------------------------------------------------------------------------
def test_tictactoe_minimax_known_answers():
    game = load_game("tictactoe")
    t0 = time.perf_counter()
    sol = solve_minimax(game)
    elapsed = time.perf_counter() - t0
    assert sol.num_states == 5478
    assert elapsed < 5.0  # ≈0.1 s on an idle core; generous under CI load
    s = game.new_initial_state()
    assert sol.value(s) == 0.0
    assert sol.optimal_actions(s) == [str(i) for i in range(1, 10)]  # every opening draws
    for a in ["1", "5", "9"]:  # X corners, O centre, X opposite corner: O must take an edge
        s.apply_action(a)
    assert sol.optimal_actions(s) == ["2", "4", "6", "8"]
    s = game.new_initial_state()
    for a in ["1", "2", "5"]:  # X threatens 9 (and more); O blundered with an edge
        s.apply_action(a)
    assert sol.value(s) == 1.0
    s.apply_action("9")  # O blocks; X wins fastest by completing a line now if possible
    assert MinimaxPolicy(game).sample_action(s, random.Random(0)) in {"4", "7"}


def test_minimax_policy_never_loses():
    game = load_game("tictactoe")
    perfect, rand = MinimaxPolicy(game), UniformRandomPolicy()
    as_x = play_match(game, [perfect, rand], 100, seed=1)
    as_o = play_match(game, [rand, perfect], 100, seed=2)
    assert as_x.losses[0] == 0 and as_o.losses[1] == 0
    assert as_x.wins[0] > 80
    both = play_match(game, [perfect, perfect], 3, seed=0)
    assert both.draws[0] == 3
    weak = play_match(game, [EpsilonPerfectPolicy(perfect, 1.0), perfect], 100, seed=3)
    assert weak.losses[0] > 30 and weak.wins[0] == 0


def test_tabular_policy_and_exact_vs_sampled_value(kuhn):
    solver = CFRSolver(kuhn)
    solver.iterate(200)
    pol = TabularPolicy(solver.average_policy(), strict=True)
    assert nash_conv(kuhn, pol) == pytest.approx(nash_conv(kuhn, solver.average_policy()))
    exact = expected_returns(kuhn, uniform)[0]
    stats = play_match(kuhn, [UniformRandomPolicy(), UniformRandomPolicy()], 4000, seed=0)
    assert abs(stats.mean_return(0) - exact) < 0.08  # ~4 standard errors
    assert sum(stats.total_returns) == pytest.approx(0.0)


def test_heuristic_negotiator_beats_random():
    game = load_game("negotiation")
    h, u = HeuristicNegotiator(), UniformRandomPolicy()
    first = play_match(game, [h, u], 300, seed=0)
    second = play_match(game, [u, h], 300, seed=0)
    assert first.mean_return(0) > 0.1 and second.mean_return(1) > 0.1


def test_play_match_is_seeded_and_counts_invalid():
    game = load_game("spy")
    pols = [UniformRandomPolicy()] * 4
    a, b = play_match(game, pols, 30, seed=4), play_match(game, pols, 30, seed=4)
    assert a == b
    assert sum(a.total_returns) == pytest.approx(0.0)

    class Broken(UniformRandomPolicy):
        def sample_action(self, state, rng):
            from spkit.games import InvalidMove

            return InvalidMove("no box")

    game = load_game("kuhn_poker")
    stats = play_match(game, [Broken(), UniformRandomPolicy()], 10, seed=0)
    assert stats.invalid == [10, 0] and stats.mean_return(0) == -1.5 and stats.mean_return(1) == 0.5
    with pytest.raises(SpkitError):
        play_match(game, [Broken()], 1)


def test_wilson_interval():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)


def test_nash_conv_interval_brackets_the_known_answer():
    """Uniform Kuhn play has NashConv 11/12: sampled counts give an interval around it that
    narrows with the sample size; infosets without samples play uniformly (interval = point)."""
    from spkit.solvers.exploitability import game_tree, nash_conv_interval

    game = load_game("kuhn_poker")
    keys = {k: s.legal_actions() for k, s in game_tree(game).infoset_states.items()}
    empty = {k: dict.fromkeys(acts, 0) for k, acts in keys.items()}
    assert nash_conv_interval(game, empty, seed=0) == pytest.approx((11 / 12, 11 / 12))
    for n, width in ((40, 0.5), (4000, 0.1)):
        counts = {k: dict.fromkeys(acts, n) for k, acts in keys.items()}
        lo, hi = nash_conv_interval(game, counts, seed=0)
        assert lo <= 11 / 12 <= hi and hi - lo < width


# ---- the entropy-regularised (logit agent QRE) equilibrium ---------------------------------------------
def test_action_values_known_answers(kuhn):
    from spkit.solvers.qre import action_values

    tree = game_tree(kuhn)
    table = policy_table(kuhn, uniform)
    q = action_values(kuhn, table)

    def at(key):
        return dict(zip(tree.actions[tree.key.index(key)], q[key], strict=True))

    assert at("Kb") == pytest.approx({"call": 2.0, "fold": -1.0})  # K calls and wins 2 whatever P0 holds
    assert at("Jb") == pytest.approx({"call": -2.0, "fold": -1.0})
    # P0 with K vs uniform: check -> P1 checks (+1) or bets (P0 calls +2 or folds -1: 0.5) = 0.75;
    # bet -> P1 calls (+2) or folds (+1) = 1.5
    assert at("K") == pytest.approx({"check": 0.75, "bet": 1.5})


def test_logit_qre_is_the_fixed_point_and_its_bias_shrinks_with_beta(kuhn):
    import numpy as np

    from spkit.solvers.qre import action_values, logit_qre

    tree = game_tree(kuhn)
    biases = []
    for beta in (0.4, 0.1):
        t = logit_qre(kuhn, beta)
        q = action_values(kuhn, t)
        for key, probs in t.items():
            z = q[key] / beta
            soft = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            assert list(probs.values()) == pytest.approx(soft.tolist(), abs=1e-7)  # π = softmax(q/β)
        biases.append(nash_conv(kuhn, t))
    assert 0 < biases[1] < biases[0]
    assert nash_conv(kuhn, logit_qre(kuhn, 1e3)) == pytest.approx(11 / 12, abs=0.01)  # β → ∞: uniform
    ref = logit_qre(kuhn, 0.4)  # a magnet moved to the last solution: the next solution is closer to Nash
    assert nash_conv(kuhn, logit_qre(tree, 0.4, ref)) < biases[0]
    with pytest.raises(SpkitError, match="beta"):
        logit_qre(kuhn, 0.0)
