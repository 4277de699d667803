r"""The entropy-regularised (logit agent quantal-response) equilibrium of a small extensive-form game.

Why: an entropy bonus β·H(π(·|I)) paid at every decision (SPIRAL's ``--entropy-coef``, reward
shaping −β·log π(a) on the move played) does not pull self-play towards a Nash equilibrium but
towards the fixed point of

    π(a|I) ∝ ρ(a|I) · exp(q(I, a) / β)                                   (logit AQRE)

where q(I, a) = E[return of the player at I | I reached, a played, π elsewhere] is the action
value *conditioned on reaching I* (the policy gradient at I is the reach probability of I
times the gradient of Σ_a π(a|I) q(I, a) + β·H(π(·|I))), and ρ is uniform for the entropy or
any reference policy for a KL bonus −β·KL(π(·|I) ‖ ρ(·|I)). Its NashConv (`nash_conv`) is the
bias the regulariser leaves even if training converged exactly.

Algorithm: damped fixed-point iteration π ← (1 − d)·π + d·softmax(log ρ + q/β) on the exact
values of the tree, by continuation from a large β (where the map is a contraction) down to
the requested β, each solution warm-starting the next; d halves whenever the residual grows.
"""

from __future__ import annotations

import numpy as np

from spkit.errors import SpkitError
from spkit.games.base import Game
from spkit.solvers.exploitability import (
    GameTree,
    Table,
    _on_policy_values,
    _tree,
    counterfactual_reach,
)

__all__ = ["action_values", "logit_qre"]


def action_values(game_or_tree: Game | GameTree, table: Table) -> dict[str, np.ndarray]:
    """q(I, a) for every information set I (actions in the tree's order): the acting player's
    expected return after playing a at I, conditioned on I being reached, under `table`."""
    tree = _tree(game_or_tree)
    values = _on_policy_values(tree, table)
    reach = [counterfactual_reach(tree, table, p) for p in range(tree.num_players)]
    num: dict[str, np.ndarray] = {}
    den: dict[str, float] = {}
    for i, (p, key) in enumerate(zip(tree.player, tree.key, strict=True)):
        if p < 0:
            continue
        r = reach[p][i]
        num[key] = num.get(key, np.zeros(len(tree.actions[i]))) + r * np.array(
            [values[c][p] for c in tree.children[i]])
        den[key] = den.get(key, 0.0) + r
    return {k: num[k] / den[k] if den[k] > 0 else num[k] for k in num}


def _actions(tree: GameTree) -> dict[str, list[str]]:
    return {tree.key[i]: tree.actions[i] for i in range(len(tree)) if tree.player[i] >= 0}


def _step(tree: GameTree, pi: dict[str, np.ndarray], beta: float, log_ref: dict[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    """softmax(log ρ + q/β) at every information set."""
    acts = _actions(tree)
    q = action_values(tree, {k: dict(zip(acts[k], map(float, v), strict=True)) for k, v in pi.items()})
    out = {}
    for k in pi:
        z = log_ref[k] + q[k] / beta
        e = np.exp(z - z.max())
        out[k] = e / e.sum()
    return out


def logit_qre(game_or_tree: Game | GameTree, beta: float, ref: Table | None = None, tol: float = 1e-9,
              max_iter: int = 20000) -> Table:
    """The fixed point π ∝ ρ·exp(q/β) (ρ = `ref`, uniform if None) as a policy table; raises
    SpkitError if the residual max |π − softmax(log ρ + q/β)| is not below `tol`."""
    if beta <= 0:
        raise SpkitError(f"logit_qre: beta must be > 0, got {beta}")
    tree = _tree(game_or_tree)
    acts = _actions(tree)
    log_ref = {k: np.log(np.clip([ref[k][x] for x in a], 1e-12, None)) if ref is not None else np.zeros(len(a))
               for k, a in acts.items()}
    pi = {k: np.exp(v) / np.exp(v).sum() for k, v in log_ref.items()}
    for b in [*np.geomspace(max(beta, 2.0), beta, 8)[:-1], beta]:  # continuation from a large β
        d, last, it = 0.5, np.inf, 0
        while True:
            new = _step(tree, pi, float(b), log_ref)
            res = max(float(np.abs(new[k] - pi[k]).max()) for k in pi)
            if res < (tol if b == beta else 1e-6):
                break
            it += 1
            if it > max_iter:
                raise SpkitError(f"logit_qre did not converge at beta={b:g} (residual {res:.1e})")
            d = max(d / 2, 1e-3) if res > last else min(d * 1.2, 0.5)  # back off on a swing
            last = res
            pi = {k: (1 - d) * pi[k] + d * new[k] for k in pi}
    return {k: dict(zip(acts[k], map(float, v), strict=True)) for k, v in pi.items()}
