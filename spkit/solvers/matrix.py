"""Exact solutions of preference games over a finite response set.

A preference matrix P (n × n) holds P[i, j] = P(response i ≻ response j), with P + Pᵀ = 1.
Two copies of a policy play the symmetric zero-sum game with payoff P(π ≻ π') = πᵀ P π'.

- The **von Neumann (minimax) winner** is a π with P(π ≻ y) ≥ ½ for every response y; it always
  exists (von Neumann's minimax theorem), even when preferences are intransitive and no single
  response beats all others (a Condorcet winner). We find it with one linear program.
- The **KL-regularised equilibrium** that Nash-MD, INPO and Nash-MP converge to (last iterate)
  is the unique fixed point π = softmax(log π_ref + P π / τ): the von Neumann winner pulled
  toward π_ref, reached exactly as τ → 0.
- **Exploitability** of π: max_y P(y ≻ π) − ½ ≥ 0, zero exactly at a von Neumann winner. The
  duality gap max_y P(y ≻ π) − min_y P(π ≻ y) equals twice the exploitability.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog, root

from spkit.errors import SpkitError

__all__ = [
    "check_preference_matrix",
    "von_neumann_winner",
    "exploitability",
    "duality_gap",
    "regularized_equilibrium",
    "regularized_exploitability",
]


def check_preference_matrix(P: np.ndarray, atol: float = 1e-8) -> np.ndarray:
    """Return P as a float array, or raise SpkitError naming what is wrong with it."""
    P = np.asarray(P, dtype=float)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 1:
        raise SpkitError(f"preference matrix must be square n×n, got shape {P.shape}")
    if not np.all(np.isfinite(P)) or P.min() < -atol or P.max() > 1 + atol:
        raise SpkitError("preference matrix entries must be probabilities in [0, 1]")
    if not np.allclose(P + P.T, 1.0, atol=1e-6):
        i, j = np.unravel_index(np.argmax(np.abs(P + P.T - 1.0)), P.shape)
        raise SpkitError(f"P[{i},{j}] + P[{j},{i}] must be 1 (got {P[i, j] + P[j, i]:.4f})")
    return P


def _check_policy(pi: np.ndarray, n: int, name: str = "policy") -> np.ndarray:
    pi = np.asarray(pi, dtype=float)
    if pi.shape != (n,) or pi.min() < -1e-9 or abs(pi.sum() - 1.0) > 1e-6:
        raise SpkitError(f"{name} must be a probability vector of length {n}")
    return pi


def von_neumann_winner(P: np.ndarray) -> np.ndarray:
    """A von Neumann winner of P by linear programming.

    Variables (π, v): maximise v subject to Σ_i π_i (P_ij − ½) ≥ v for every j, π ≥ 0, Σ π = 1.
    For a preference matrix the optimum is v = 0 (the game is symmetric).
    """
    P = check_preference_matrix(P)
    n = P.shape[0]
    M = P - 0.5  # (n, n) antisymmetric margins
    c = np.zeros(n + 1)
    c[-1] = -1.0  # minimise −v
    A_ub = np.hstack([-M.T, np.ones((n, 1))])  # v − (Mᵀπ)_j ≤ 0
    A_eq = np.hstack([np.ones((1, n)), np.zeros((1, 1))])
    bounds = [(0, None)] * n + [(None, None)]
    res = linprog(
        c, A_ub=A_ub, b_ub=np.zeros(n), A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs"
    )
    if not res.success:  # pragma: no cover - the LP is always feasible and bounded
        raise SpkitError(f"LP for the von Neumann winner failed: {res.message}")
    pi = np.clip(res.x[:n], 0.0, None)
    return pi / pi.sum()


def exploitability(P: np.ndarray, pi: np.ndarray) -> float:
    """max_y P(y ≻ π) − ½: how much the best single response beats π by (0 at a winner)."""
    P = np.asarray(P, dtype=float)
    pi = _check_policy(pi, P.shape[0])
    return float(np.max(P @ pi) - 0.5)


def duality_gap(P: np.ndarray, pi: np.ndarray) -> float:
    """max_y P(y ≻ π) − min_y P(π ≻ y) (= 2 × exploitability for a preference matrix)."""
    P = np.asarray(P, dtype=float)
    pi = _check_policy(pi, P.shape[0])
    return float(np.max(P @ pi) - np.min(pi @ P))


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.clip(x, 1e-300, None))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def regularized_equilibrium(
    P: np.ndarray, ref: np.ndarray, tau: float, max_iter: int = 20000
) -> np.ndarray:
    """The equilibrium of max_π min_π' P(π ≻ π') − τ KL(π‖ref) + τ KL(π'‖ref).

    By symmetry it is the unique fixed point π = softmax(log ref + Pπ/τ). We run mirror-prox
    (extragradient), which converges linearly for τ > 0 and needs no good start, and every 200
    steps try to finish with Newton's method (scipy `root`) on the fixed-point equation,
    accepting its answer only if the regularised exploitability is below 1e-10. τ = 0 gives
    the LP winner.
    """
    P = check_preference_matrix(P)
    n = P.shape[0]
    ref = _check_policy(ref, n, "reference policy")
    if tau < 0:
        raise SpkitError(f"tau must be >= 0, got {tau}")
    if tau == 0:
        return von_neumann_winner(P)
    log_ref = _log(ref)
    eta = 1.0 / (tau + 2.0 * np.abs(P - 0.5).max() + 1e-12)  # below 1/L in the entropic geometry
    def fixed_point(z: np.ndarray) -> np.ndarray:  # z = unnormalised log π
        g = log_ref + (P @ _softmax(z)) / tau
        return (z - z.max()) - (g - g.max())

    pi = ref.copy()
    for it in range(1, max_iter + 1):
        half = _softmax((1 - eta * tau) * _log(pi) + eta * tau * log_ref + eta * (P @ pi))
        pi = _softmax((1 - eta * tau) * _log(pi) + eta * tau * log_ref + eta * (P @ half))
        if it % 200 == 0:  # try to finish with Newton every 200 extragradient steps
            sol = root(fixed_point, _log(pi), method="hybr", tol=1e-14)
            cand = _softmax(sol.x)
            if regularized_exploitability(P, cand, ref, tau) < 1e-10:
                return cand
    if regularized_exploitability(P, pi, ref, tau) > 1e-7:
        raise SpkitError(
            f"regularised equilibrium did not converge for tau={tau}; try a larger tau"
        )
    return pi


def regularized_exploitability(P: np.ndarray, pi: np.ndarray, ref: np.ndarray, tau: float) -> float:
    """Exploitability in the KL-regularised game: zero exactly at `regularized_equilibrium`.

    max_π' [P(π' ≻ π) − τ KL(π'‖ref)] + τ KL(π‖ref) − ½, where the max has the closed form
    τ log Σ_y ref(y) exp(P(y ≻ π)/τ) (Gibbs variational principle).
    """
    P = np.asarray(P, dtype=float)
    pi = _check_policy(pi, P.shape[0])
    ref = _check_policy(ref, P.shape[0], "reference policy")
    if tau == 0:
        return exploitability(P, pi)
    z = np.log(np.clip(ref, 1e-300, None)) + (P @ pi) / tau
    best = tau * (z.max() + np.log(np.exp(z - z.max()).sum()))
    supp = pi > 0
    kl = float(np.sum(pi[supp] * (np.log(pi[supp]) - np.log(np.clip(ref[supp], 1e-300, None)))))
    return float(best + tau * kl - 0.5)
