r"""Tabular self-play policy gradient on a small extensive-form game, and average policies.

Why this file exists: SPIRAL trains the *last iterate* of plain self-play policy gradient.
In a zero-sum game with mixed equilibria (Kuhn Poker) that iterate need not converge — it can
cycle around the equilibrium. Averaging the iterates is the classic remedy, but its guarantee
(the average of a no-regret learner's iterates converges to equilibrium) does not apply here:
softmax REINFORCE with a constant step is not a no-regret learner, and nothing bounds where its
average ends up. What is measured (lesson 02; `tests/test_spiral.py`) is that the average is far
less exploitable than the last iterate and then plateaus above NashConv 0, not that it converges.
A language model is too slow to run thousands of updates on a
CPU, so this module runs the same algorithm on a softmax table: one logit vector θ[I] per
information set I, both players sharing the table (self-play), returns from sampled games,
SPIRAL's role-conditioned EMA baseline, REINFORCE:

    θ[I] += lr · (1/N) Σ_games Σ_{visits of I} A · (e_a − π(·|I))         (REINFORCE, softmax)
    θ[I] += lr · β · ∇_θ H(π(·|I))  at every I, once per update           (optional entropy bonus)
    A = R_p − b[p],  b[p] ← α b[p] + (1 − α) R_p                           (RAE, α = 0.95)

and measures NashConv (exact, `spkit.solvers.exploitability.nash_conv`) of the last iterate
and of the average policy.

Average policy of iterates π_1..π_T (exact for the uniform *mixture* of the iterates): at each
information set I of player p,

    π̄(a|I) = Σ_t w_t x_p^t(I) π_t(a|I) / Σ_t w_t x_p^t(I)

where x_p^t(I) is player p's own reach probability of I under π_t (product of p's own action
probabilities on the path; the same for every history in I under perfect recall). With
`reach_weighted=False` it is the plain per-infoset mean of the iterates (what the tabular check
in the SPIRAL issue measured). `spkit.algos.spiral` uses the reach-weighted form on tables
read from model checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from spkit.games import load_game
from spkit.games.base import CHANCE, TERMINAL
from spkit.rl.advantages import RoleBaseline
from spkit.rl.preference_games import softmax
from spkit.solvers.exploitability import GameTree, Table, game_tree, nash_conv

__all__ = ["own_reach", "average_policy", "PGHistory", "reinforce_gradient", "run_tabular_pg"]


# ---- average policies ------------------------------------------------------------------------
def own_reach(tree: GameTree, table: Table, player: int) -> dict[str, float]:
    """Player `player`'s own reach probability of each of its information sets under `table`."""
    reach = [0.0] * len(tree)
    reach[0] = 1.0
    out: dict[str, float] = {}
    for i in range(len(tree)):  # parents come before children
        p = tree.player[i]
        if p == TERMINAL:
            continue
        if p == player:
            out.setdefault(tree.key[i], reach[i])
        own = p == player
        for a, c in zip(tree.actions[i], tree.children[i], strict=True):
            reach[c] = reach[i] * (table[tree.key[i]][a] if own else 1.0)
    return out


def average_policy(
    tree: GameTree,
    tables: Sequence[Table],
    weights: Sequence[float] | None = None,
    reach_weighted: bool = True,
) -> Table:
    """The average of policy tables (see the module docstring); `weights` default to uniform."""
    if not tables:
        raise ValueError("average_policy needs at least one table")
    w = list(weights) if weights is not None else [1.0] * len(tables)
    num: dict[str, dict[str, float]] = {}
    den: dict[str, float] = {}
    for wt, table in zip(w, tables, strict=True):
        reach: dict[str, float] = {}
        if reach_weighted:
            for p in range(tree.num_players):
                reach.update(own_reach(tree, table, p))
        for key, probs in table.items():
            x = wt * (reach.get(key, 0.0) if reach_weighted else 1.0)
            den[key] = den.get(key, 0.0) + x
            acc = num.setdefault(key, dict.fromkeys(probs, 0.0))
            for a, pr in probs.items():
                acc[a] += x * pr
    out: Table = {}
    for key, acc in num.items():
        if den[key] > 0:
            out[key] = {a: v / den[key] for a, v in acc.items()}
        else:  # never reached by any iterate: any policy is fine there; use the mean
            out[key] = {a: float(np.mean([t[key][a] for t in tables])) for a in acc}
    return out


# ---- tabular self-play policy gradient -----------------------------------------------------
@dataclass
class PGHistory:
    """NashConv curves of one tabular run (eval steps, last iterate, average policy)."""

    steps: list[int] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    average: list[float] = field(default_factory=list)


def _sample_episode(tree: GameTree, pi: dict[str, np.ndarray], rng: np.random.Generator):
    """Walk one game: ([(player, infoset, action index)], terminal returns)."""
    i, visits = 0, []
    while tree.player[i] != TERMINAL:
        p = tree.player[i]
        probs = np.asarray(tree.chance_probs[i]) if p == CHANCE else pi[tree.key[i]]
        j = int(rng.choice(len(probs), p=probs))
        if p != CHANCE:
            visits.append((p, tree.key[i], j))
        i = tree.children[i][j]
    return visits, tree.returns[i]


def reinforce_gradient(
    tree: GameTree, pi: dict[str, np.ndarray], rng: np.random.Generator, games: int, baseline: RoleBaseline,
    bonus: Callable[[str, int], float] | None = None,
) -> dict[str, np.ndarray]:
    """Σ over `games` sampled self-play games of (A + bonus(I, j))·∇_θ log π(a_j | I), per infoset:
    REINFORCE on a softmax table with the role baseline (RAE: each advantage read before the
    baseline moves). `bonus(I, j)` is an optional per-move reward shaping, e.g. an entropy bonus."""
    grad = {k: np.zeros(len(v)) for k, v in pi.items()}
    for _ in range(games):
        visits, returns = _sample_episode(tree, pi, rng)
        adv = {p: baseline.update(("g", p), returns[p]) for p in {v[0] for v in visits}}
        for p, k, j in visits:
            g = -pi[k].copy()  # ∇_θ log softmax(θ)_j = e_j − π
            g[j] += 1.0
            grad[k] += (adv[p] + (bonus(k, j) if bonus is not None else 0.0)) * g
    return grad


def run_tabular_pg(
    game: str = "kuhn_poker",
    updates: int = 3000,
    games_per_update: int = 64,
    lr: float = 0.5,
    alpha: float = 0.95,
    entropy: float = 0.0,
    seed: int = 0,
    eval_every: int = 25,
    reach_weighted: bool = False,
    init: Table | None = None,
    callback: Callable[[int, float, float], None] | None = None,
) -> PGHistory:
    """Self-play REINFORCE with RAE on a softmax table; NashConv of last and average iterate.

    The average is over all iterates π_1..π_T (uniform weights, per-infoset mean unless
    `reach_weighted`), accumulated at every update so it costs O(#infosets) per step. `init`
    starts from a given table (e.g. a language model's) instead of uniform.
    """
    tree = game_tree(load_game(game))
    rng = np.random.default_rng(seed)
    keys = {tree.key[i]: len(tree.actions[i]) for i in range(len(tree)) if tree.player[i] >= 0}
    actions = {tree.key[i]: tree.actions[i] for i in range(len(tree)) if tree.player[i] >= 0}
    theta = {k: np.zeros(n) for k, n in keys.items()}  # uniform start, or log π_init
    for k, probs in (init or {}).items():
        theta[k] = np.log(np.array([max(probs[a], 1e-9) for a in actions[k]]))
    baseline = RoleBaseline(alpha)
    sums = {k: np.zeros(n) for k, n in keys.items()}
    den = dict.fromkeys(keys, 0.0)
    hist = PGHistory()

    def table_of(pi: dict[str, np.ndarray]) -> Table:
        return {k: dict(zip(actions[k], map(float, v), strict=True)) for k, v in pi.items()}

    for t in range(1, updates + 1):
        pi = {k: softmax(v) for k, v in theta.items()}
        reach: dict[str, float] = {}
        if reach_weighted:
            for p in range(tree.num_players):
                reach.update(own_reach(tree, table_of(pi), p))
        for k in keys:
            x = reach.get(k, 0.0) if reach_weighted else 1.0
            sums[k] += x * pi[k]
            den[k] += x
        grad = reinforce_gradient(tree, pi, rng, games_per_update, baseline)
        for k in keys:
            theta[k] += lr * grad[k] / games_per_update
            if entropy:  # exact entropy gradient at every infoset, once per update
                logp = np.log(pi[k] + 1e-12)
                h = -(pi[k] * logp).sum()
                theta[k] += lr * entropy * (-pi[k] * (logp + h))  # ∇_θ H(π(·|I)) for a softmax
        if t % eval_every == 0 or t == updates:
            last = nash_conv(tree, table_of({k: softmax(v) for k, v in theta.items()}))
            avg_pi = {k: sums[k] / den[k] if den[k] > 0 else np.full(len(sums[k]), 1 / len(sums[k]))
                      for k in keys}
            avg = nash_conv(tree, table_of(avg_pi))
            hist.steps.append(t)
            hist.last.append(last)
            hist.average.append(avg)
            if callback is not None:
                callback(t, last, avg)
    return hist
