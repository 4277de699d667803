"""Known answers and properties of the exact preference-game solvers and families."""

from __future__ import annotations

import numpy as np
import pytest

from spkit.errors import SpkitError
from spkit.games.preference_matrices import (
    bradley_terry,
    condorcet_cycle,
    condorcet_winner,
    is_transitive,
    make_preference,
    random_intransitive,
    three_cycle,
    three_cycle_winner,
)
from spkit.solvers.matrix import (
    duality_gap,
    exploitability,
    regularized_equilibrium,
    regularized_exploitability,
    von_neumann_winner,
)


def test_condorcet_cycle_winner_is_uniform():
    P = condorcet_cycle(0.3)
    assert np.allclose(P, [[0.5, 0.8, 0.2], [0.2, 0.5, 0.8], [0.8, 0.2, 0.5]])
    assert np.allclose(von_neumann_winner(P), [1 / 3, 1 / 3, 1 / 3], atol=1e-9)


@pytest.mark.parametrize("xyz", [(0.3, 0.1, 0.2), (0.05, 0.4, 0.25), (0.45, 0.45, 0.1)])
def test_three_cycle_winner_proportional_to_y_z_x(xyz):
    x, y, z = xyz
    w = von_neumann_winner(three_cycle(x, y, z))
    assert np.allclose(w, np.array([y, z, x]) / (x + y + z), atol=1e-9)
    assert np.allclose(three_cycle_winner(x, y, z), w, atol=1e-9)


def test_margins_03_01_02_winner_and_exploitability_of_uniform():
    P = three_cycle(0.3, 0.1, 0.2)
    assert np.allclose(von_neumann_winner(P), [1 / 6, 1 / 3, 1 / 2], atol=1e-9)
    u = np.ones(3) / 3
    # P u = ½ + (x − z, y − x, z − y)/3 = ½ + (0.1, −0.2, 0.1)/3 -> exploitability 1/30
    assert exploitability(P, u) == pytest.approx(0.1 / 3)
    assert duality_gap(P, u) == pytest.approx(2 * 0.1 / 3)


def test_transitive_winner_is_best_response():
    P = bradley_terry([0.0, 2.0, 1.0, -1.0])
    assert is_transitive(P) and condorcet_winner(P) == 1
    assert np.allclose(von_neumann_winner(P), [0, 1, 0, 0], atol=1e-9)


@pytest.mark.parametrize("n", [5, 9, 20])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_intransitive_winner_properties(n, seed):
    P = random_intransitive(n, seed)
    assert np.allclose(P + P.T, 1.0) and not is_transitive(P) and condorcet_winner(P) is None
    w = von_neumann_winner(P)
    assert abs(exploitability(P, w)) < 1e-9  # nothing beats the winner
    assert (w > 1e-9).sum() >= 3  # no Condorcet winner -> a mixed winner
    assert duality_gap(P, w) == pytest.approx(2 * exploitability(P, w), abs=1e-12)
    # every pure response is exploitable
    assert min(exploitability(P, np.eye(n)[i]) for i in range(n)) > 0
    assert np.array_equal(P, random_intransitive(n, seed))  # same seed -> same matrix


def test_regularized_equilibrium_fixed_point_and_limits():
    P = three_cycle(0.3, 0.1, 0.2)
    ref = np.array([0.6, 0.3, 0.1])
    for tau in (1.0, 0.1, 0.01):
        pi = regularized_equilibrium(P, ref, tau)
        # fixed point π = softmax(log ref + Pπ/τ)
        z = np.log(ref) + P @ pi / tau
        assert np.allclose(pi, np.exp(z - z.max()) / np.exp(z - z.max()).sum(), atol=1e-9)
        assert abs(regularized_exploitability(P, pi, ref, tau)) < 1e-7
    # large τ stays at the reference, small τ approaches the winner
    assert np.allclose(regularized_equilibrium(P, ref, 100.0), ref, atol=2e-3)
    assert exploitability(P, regularized_equilibrium(P, ref, 1e-3)) < 2e-3
    assert np.allclose(regularized_equilibrium(P, ref, 0.0), [1 / 6, 1 / 3, 1 / 2], atol=1e-9)


def test_regularized_exploitability_positive_off_equilibrium():
    P = random_intransitive(6, 3)
    ref = np.ones(6) / 6
    rng = np.random.default_rng(0)
    for _ in range(20):
        pi = rng.dirichlet(np.ones(6))
        assert regularized_exploitability(P, pi, ref, 0.1) >= -1e-12
        assert exploitability(P, pi) >= -1e-12


def test_bad_input_raises_one_line_errors():
    with pytest.raises(SpkitError, match="square"):
        von_neumann_winner(np.ones((2, 3)))
    with pytest.raises(SpkitError, match="must be 1"):
        von_neumann_winner(np.array([[0.5, 0.9], [0.9, 0.5]]))
    with pytest.raises(SpkitError, match="probabilities"):
        von_neumann_winner(np.array([[0.5, 1.5], [-0.5, 0.5]]))
    with pytest.raises(SpkitError, match="probability vector"):
        exploitability(condorcet_cycle(), np.array([1.0, 1.0, 1.0]))
    with pytest.raises(SpkitError, match="unknown preference family"):
        make_preference("nope")
    with pytest.raises(SpkitError):
        three_cycle(0.0, 0.1, 0.2)
