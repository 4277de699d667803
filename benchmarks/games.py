"""Games and solvers speed, each against an OpenSpiel anchor measured in the same run.

    python benchmarks/games.py [--repeats 5] [--rollouts 2000]

1. NashConv of a fixed random Kuhn Poker policy: spkit `nash_conv` (cached flat tree) vs
   OpenSpiel's Python `exploitability.nash_conv` on the same policy (values must agree).
   Target: < 10 ms for spkit.
2. Tabular CFR on Kuhn Poker, 100 iterations: spkit `CFRSolver` vs OpenSpiel's Python
   `CFRSolver` (same alternating-update algorithm; the NashConv of both averages is printed).
3. TicTacToe full solve: spkit memoised minimax over all 5,478 positions from a fresh game
   (target < 1 s) vs OpenSpiel's `get_all_states` enumeration of the same 5,478 positions
   (deduplicated by board; C++ game, Python driver) — enumeration only, no values.
4. Uniform-random rollouts, steps/s, for every spkit game, vs OpenSpiel's C++ Kuhn Poker and
   TicTacToe driven from Python with the same loop.

Every timing is the best of `--repeats`. On a shared machine absolute numbers are noisy; the
ratios (spkit time / anchor time; < 1 means spkit is faster) are the comparable figures.
The last line is ``ratio_nash_conv=.. ratio_cfr=.. ratio_ttt_solve=..``.
"""

from __future__ import annotations

import argparse
import random
import time

from spkit.games import load_game
from spkit.games.kuhn_poker import CARDS, LETTER
from spkit.games.spy import CLUE
from spkit.solvers import CFRSolver, game_tree, nash_conv
from spkit.solvers.exploitability import build_tree
from spkit.solvers.minimax import solve


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def random_kuhn_table(seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    tree = game_tree(load_game("kuhn_poker"))
    table = {}
    for key, state in tree.infoset_states.items():
        w = [rng.random() for _ in state.legal_actions()]
        table[key] = {a: x / sum(w) for a, x in zip(state.legal_actions(), w, strict=True)}
    return table


def to_open_spiel(table, game):
    from open_spiel.python import policy as os_policy

    tab = os_policy.TabularPolicy(game)
    for key, probs in table.items():
        row = tab.policy_for_key(str(CARDS.index(key[0])) + key[1:])
        for a, p in probs.items():
            row[0 if LETTER[a] == "p" else 1] = p
    return tab


def spkit_rollouts(name: str, n_steps: int) -> float:
    """Uniform-random steps per second (chance resolved by the seeded deal)."""
    game = load_game(name)
    rng = random.Random(0)
    steps, seed = 0, 0
    t0 = time.perf_counter()
    while steps < n_steps:
        s = game.new_initial_state(seed=seed)
        seed += 1
        while not s.is_terminal():
            legal = s.legal_actions()
            s.apply_action("a short clue" if legal == [CLUE] else rng.choice(legal))
            steps += 1
    return steps / (time.perf_counter() - t0)


def open_spiel_rollouts(name: str, n_steps: int) -> float:
    import pyspiel

    game = pyspiel.load_game(name)
    rng = random.Random(0)
    steps = 0
    t0 = time.perf_counter()
    while steps < n_steps:
        s = game.new_initial_state()
        while not s.is_terminal():
            if s.is_chance_node():
                outcomes = s.chance_outcomes()
                s.apply_action(rng.choices([o for o, _ in outcomes], [p for _, p in outcomes])[0])
                continue
            s.apply_action(rng.choice(s.legal_actions()))
            steps += 1
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rollouts", type=int, default=2000, help="steps per rollout measurement")
    args = ap.parse_args()
    try:
        import pyspiel
        from open_spiel.python.algorithms import cfr as os_cfr
        from open_spiel.python.algorithms import exploitability as os_expl
        from open_spiel.python.algorithms.get_all_states import get_all_states
    except ImportError as exc:
        raise SystemExit(
            "this benchmark needs open_spiel for its anchors: pip install open_spiel"
        ) from exc

    # 1. NashConv
    kuhn = load_game("kuhn_poker")
    table = random_kuhn_table(0)
    t_build = best_of(lambda: build_tree(kuhn), 1)
    ours_nc = nash_conv(kuhn, table)
    os_game = pyspiel.load_game("kuhn_poker")
    os_tab = to_open_spiel(table, os_game)
    theirs_nc = os_expl.nash_conv(os_game, os_tab)
    t_ours = best_of(lambda: nash_conv(kuhn, table), args.repeats * 20)
    t_theirs = best_of(lambda: os_expl.nash_conv(os_game, os_tab), args.repeats)
    print(
        f"nash_conv kuhn: spkit {t_ours * 1e3:.3f} ms (tree build once {t_build * 1e3:.1f} ms), "
        f"open_spiel {t_theirs * 1e3:.3f} ms; values {ours_nc:.12f} vs {theirs_nc:.12f}"
    )
    r_nc = t_ours / t_theirs

    # 2. CFR
    def run_ours():
        s = CFRSolver(kuhn)
        s.iterate(100)
        return s

    def run_theirs():
        s = os_cfr.CFRSolver(os_game)
        for _ in range(100):
            s.evaluate_and_update_policy()
        return s

    t_cfr = best_of(run_ours, max(1, args.repeats // 2))
    t_cfr_os = best_of(run_theirs, 1)
    nc_ours = nash_conv(kuhn, run_ours().average_policy())
    nc_theirs = os_expl.nash_conv(os_game, run_theirs().average_policy())
    print(
        f"cfr kuhn x100: spkit {t_cfr * 1e3:.1f} ms, open_spiel {t_cfr_os * 1e3:.1f} ms; "
        f"nash_conv {nc_ours:.6f} vs {nc_theirs:.6f}"
    )
    r_cfr = t_cfr / t_cfr_os

    # 3. TicTacToe solve
    def solve_fresh():
        return solve(load_game("tictactoe"))

    t_ttt = best_of(solve_fresh, args.repeats)
    n_states = solve_fresh().num_states
    ttt = pyspiel.load_game("tic_tac_toe")
    t_enum = best_of(
        lambda: get_all_states(ttt, include_terminals=True, to_string=str),
        max(1, args.repeats // 2),
    )
    n_os = len(get_all_states(ttt, include_terminals=True, to_string=str))
    print(
        f"tictactoe: spkit minimax solve {t_ttt * 1e3:.0f} ms ({n_states} positions, value 0); "
        f"open_spiel get_all_states {t_enum * 1e3:.0f} ms ({n_os} states)"
    )
    r_ttt = t_ttt / t_enum

    # 4. rollouts
    for name, os_name in [
        ("kuhn_poker", "kuhn_poker"),
        ("tictactoe", "tic_tac_toe"),
        ("negotiation", None),
        ("spy", None),
    ]:
        ours = spkit_rollouts(name, args.rollouts)
        line = f"rollouts {name}: spkit {ours:,.0f} steps/s"
        if os_name:
            theirs = open_spiel_rollouts(os_name, args.rollouts)
            line += (
                f", open_spiel (C++) {theirs:,.0f} steps/s, throughput ratio {ours / theirs:.2f}"
            )
        print(line)
    print(f"ratio_nash_conv={r_nc:.3f} ratio_cfr={r_cfr:.3f} ratio_ttt_solve={r_ttt:.3f}")


if __name__ == "__main__":
    main()
