"""Preference-matrix families with known structure: the toys of the preference-game lessons.

Each function returns P (n × n) with P[i, j] = P(i ≻ j) and P + Pᵀ = 1.

- `bradley_terry`: transitive, P[i, j] = σ(s_i − s_j); a reward model fits it exactly and the
  von Neumann winner is the single best response.
- `condorcet_cycle`: rock-paper-scissors with one margin; winner uniform. A sanity case only:
  its Bradley–Terry fit is flat, so reward-model RLHF from a uniform reference looks right by
  accident.
- `three_cycle(x, y, z)`: a ≻ b by x, b ≻ c by y, c ≻ a by z (margins over ½); winner
  ∝ (y, z, x). Non-uniform margins separate the learners.
- `random_intransitive(n, seed)`: a random antisymmetric margin matrix plus a weak transitive
  trend; its winner is mixed and no reward model can represent it.
"""

from __future__ import annotations

import numpy as np

from spkit.errors import SpkitError

__all__ = [
    "bradley_terry",
    "condorcet_cycle",
    "three_cycle",
    "three_cycle_winner",
    "random_intransitive",
    "is_transitive",
    "condorcet_winner",
    "FAMILIES",
    "make_preference",
]


def _from_margins(M: np.ndarray) -> np.ndarray:
    P = 0.5 + M
    np.fill_diagonal(P, 0.5)
    return P


def bradley_terry(scores: np.ndarray | list[float]) -> np.ndarray:
    """Transitive preferences P[i, j] = σ(s_i − s_j) from scalar qualities s."""
    s = np.asarray(scores, dtype=float)
    return 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))


def condorcet_cycle(margin: float = 0.3) -> np.ndarray:
    """The symmetric 3-cycle: [[.5, .8, .2], [.2, .5, .8], [.8, .2, .5]] for margin 0.3."""
    return three_cycle(margin, margin, margin)


def three_cycle(x: float = 0.3, y: float = 0.1, z: float = 0.2) -> np.ndarray:
    """P_ab = ½ + x, P_bc = ½ + y, P_ca = ½ + z (each margin in (0, ½])."""
    for m in (x, y, z):
        if not 0.0 < m <= 0.5:
            raise SpkitError(f"3-cycle margins must be in (0, 0.5], got {(x, y, z)}")
    M = np.array([[0.0, x, -z], [-x, 0.0, y], [z, -y, 0.0]])
    return _from_margins(M)


def three_cycle_winner(x: float, y: float, z: float) -> np.ndarray:
    """Closed form: M π = 0 with M = margins gives π ∝ (y, z, x)."""
    w = np.array([y, z, x], dtype=float)
    return w / w.sum()


def random_intransitive(
    n: int, seed: int = 0, scale: float = 0.45, trend: float = 0.3
) -> np.ndarray:
    """Random intransitive preferences over n responses.

    Margins M = scale · tanh(S + trend·(s_i − s_j)) with S a random antisymmetric Gaussian
    matrix and s random qualities: the trend makes some responses better on average, the
    antisymmetric noise makes cycles. Redrawn (deterministically) until it has a 3-cycle and
    no Condorcet winner (a response beating all others), so the von Neumann winner is mixed.
    """
    if not 2 <= n <= 200:
        raise SpkitError(f"random_intransitive needs 2 <= n <= 200, got {n}")
    rng = np.random.default_rng(seed)
    for _ in range(100):
        G = rng.normal(size=(n, n))
        S = (G - G.T) / np.sqrt(2.0)
        s = rng.normal(size=n)
        M = scale * np.tanh(S + trend * (s[:, None] - s[None, :]))
        P = _from_margins(M)
        if n < 3 or (not is_transitive(P) and condorcet_winner(P) is None):
            return P
    raise SpkitError("could not draw an intransitive matrix; raise `scale`")  # pragma: no cover


def condorcet_winner(P: np.ndarray) -> int | None:
    """The response that beats every other one with probability > ½, if there is one."""
    beats = np.asarray(P) > 0.5
    n = beats.shape[0]
    for i in range(n):
        if beats[i].sum() == n - 1:
            return i
    return None


def is_transitive(P: np.ndarray) -> bool:
    """True if the majority relation (P[i, j] > ½) has no cycle (checked on all 3-cycles)."""
    beats = np.asarray(P) > 0.5
    # A tournament is acyclic iff it has no 3-cycle: count i→j→k→i paths.
    b = beats.astype(np.int64)
    return int(np.trace(b @ b @ b)) == 0


FAMILIES = ("transitive", "condorcet", "three_cycle", "random")


def make_preference(family: str, n: int = 8, seed: int = 0) -> np.ndarray:
    """One matrix of a named family. `n` is used by "transitive" and "random" (3-cycles are n=3);
    `seed` draws the transitive scores, the 3-cycle margins (seed > 0) and the random matrix."""
    rng = np.random.default_rng(seed)
    if family == "transitive":
        return bradley_terry(rng.normal(size=n))
    if family == "condorcet":
        return condorcet_cycle()
    if family == "three_cycle":
        if seed == 0:
            return three_cycle(0.3, 0.1, 0.2)
        return three_cycle(*rng.uniform(0.05, 0.45, size=3))
    if family == "random":
        return random_intransitive(n, seed)
    raise SpkitError(f"unknown preference family {family!r}; choose one of {', '.join(FAMILIES)}")
