"""Preference-game benchmark: learner steps/s (exact and sampled), LP solve time, exploitability table.

Run on demand:  python benchmarks/preference.py [--results] [--steps 2000] [--seeds 3]

Timings are reported as ratios against an anchor measured in the same run — one plain numpy
Hedge step on the same matrix — because absolute numbers move with machine load.
`--results` also prints the final exploitabilities (last / average iterate; sampled form as
mean ± std over seeds) on the 3-cycle with margins (0.3, 0.1, 0.2) and random intransitive matrices.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spkit.games.preference_matrices import make_preference, random_intransitive
from spkit.solvers.matrix import regularized_equilibrium, von_neumann_winner
from spkit.widgets.preference import LEARNERS, compare_learners, summary_table


def _per_second(fn, min_time: float = 0.5) -> float:
    """Calls of fn per second, timed over at least `min_time` seconds."""
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def hedge_anchor(P: np.ndarray) -> float:
    """Plain numpy multiplicative-weights steps per second (the anchor)."""
    pi = np.ones(len(P)) / len(P)

    def step():
        nonlocal pi
        w = pi * np.exp(0.5 * (P @ pi))
        pi = w / w.sum()

    return _per_second(step)


def learner_speed(P: np.ndarray, mode: str, steps: int) -> dict[str, float]:
    out = {}
    for name, (mod, _) in LEARNERS.items():
        cfg = mod.Config(matrix=P.tolist(), mode=mode, steps=steps)
        t = time.perf_counter()
        mod.train(cfg)
        out[name] = steps / (time.perf_counter() - t)
    return out


def solve_time(solver, n: int = 20, reps: int = 20) -> float:
    """Mean seconds per solve over `reps` random intransitive n×n matrices."""
    mats = [random_intransitive(n, s) for s in range(reps)]
    t = time.perf_counter()
    for P in mats:
        solver(P)
    return (time.perf_counter() - t) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", action="store_true", help="also print the exploitability table")
    ap.add_argument("--steps", type=int, default=2000, help="iterations per sampled run for --results")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the sampled form for --results")
    args = ap.parse_args()

    P = random_intransitive(10, 1)
    anchor = hedge_anchor(P)
    print(f"anchor: numpy Hedge step, n=10: {anchor:,.0f} steps/s")
    for mode, steps in (("exact", 300), ("sampled", 100)):
        speeds = learner_speed(P, mode, steps)
        print(f"\n{mode} form, n=10 (steps/s, and anchor/learner = how many Hedge steps one step costs)")
        for name, s in speeds.items():
            print(f"  {name:12s} {s:10,.0f} steps/s   cost = {anchor / s:8.1f} × anchor")
    t = solve_time(von_neumann_winner)
    print(f"\nLP von Neumann winner, 20×20: {1e3 * t:.2f} ms per solve = {t * anchor:.0f} × anchor step")
    t = solve_time(lambda P: regularized_equilibrium(P, np.ones(len(P)) / len(P), 0.01))
    print(f"KL-regularised equilibrium, 20×20, tau=0.01: {1e3 * t:.2f} ms per solve = {t * anchor:.0f} × anchor step")

    if args.results:
        cases = [("three_cycle (0.3,0.1,0.2)", make_preference("three_cycle")),
                 ("random n=10", random_intransitive(10, 1)),
                 ("random n=20", random_intransitive(20, 2))]
        for label, M in cases:
            for mode, seeds in (("exact", (0,)), ("sampled", tuple(range(args.seeds)))):
                if mode == "sampled" and M.shape[0] > 10:
                    continue
                t = time.perf_counter()
                steps = None if mode == "exact" else args.steps  # exact: each learner's default
                rows = summary_table(compare_learners(M, mode, steps, seeds))
                print(f"\n{label}, {mode}, {steps or 'default'} steps, seeds {list(seeds)} "
                      f"({time.perf_counter() - t:.0f} s)")
                print(f"  {'learner':12s} {'theory':6s} {'last':>16s} {'average':>16s}")
                for r in rows:
                    print(f"  {r['learner']:12s} {r['theory iterate']:6s} "
                          f"{r['last']:.4f} ± {r['last_std']:.4f}  {r['avg']:.4f} ± {r['avg_std']:.4f}")


if __name__ == "__main__":
    main()
