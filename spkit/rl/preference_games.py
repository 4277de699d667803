"""The math of preference games over a finite response set, shared by every preference learner.

A "policy" over n responses is a logit vector θ (π = softmax θ) — the finite-response stand-in
for a language model, where log π(y) is what the model would return for a completion y. Each
learner in `spkit.algos` supplies one *step* θ_t -> θ_{t+1}; this module supplies its parts:

- `mirror_step`: the KL-regularised multiplicative-weights step every exact learner is a case of;
- the preference oracle: exact (returns P(y ≻ y')) or noisy (returns a Bernoulli draw of it);
- sampling K responses, win-rate estimates, Bradley–Terry fitting;
- `fit_logits`: a few optimiser steps of a `spkit.rl.losses` loss on the logits (sampled form).

The training loop around a step (iterates, averages, exploitability) is `spkit.algos.preference_game`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from spkit.errors import SpkitError
from spkit.rl.losses import inpo_loss
from spkit.solvers.matrix import check_preference_matrix

__all__ = [
    "softmax",
    "log_softmax",
    "mirror_step",
    "Oracle",
    "sample",
    "empirical_win_rates",
    "ordered_pairs",
    "fit_bradley_terry",
    "fit_logits",
    "inpo_pair_loss",
]

def softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return e / e.sum()


def log_softmax(theta: np.ndarray) -> np.ndarray:
    z = theta - theta.max()
    return z - np.log(np.exp(z).sum())


def mirror_step(
    log_pi: np.ndarray, payoff: np.ndarray, eta: float, tau: float = 0.0, log_ref: np.ndarray | None = None
) -> np.ndarray:
    """KL-regularised mirror-descent step in log space, returned normalised:
    log π_{t+1} = (1 − ητ) log π_t + ητ log π_ref + η·payoff  (− log Z).

    With τ = 0 it is Hedge / multiplicative weights. Every "exact" preference learner is this
    step with a different payoff or anchor, which is what makes them comparable.
    """
    z = (1.0 - eta * tau) * log_pi + eta * payoff
    if tau:
        if log_ref is None:
            raise SpkitError("mirror_step with tau > 0 needs log_ref")
        z = z + eta * tau * log_ref
    return log_softmax(z)


# ---- Oracle and sampling


@dataclass
class Oracle:
    """Preference oracle over responses 0..n−1. `noisy=True` answers with one Bernoulli(P[i, j])
    comparison (a human or a judge model); otherwise with the probability itself."""

    P: np.ndarray
    noisy: bool = True
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    calls: int = 0

    def __post_init__(self) -> None:
        self.P = check_preference_matrix(self.P)

    def __call__(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """P̂(i ≻ j) for index arrays of equal shape (1.0 = i preferred)."""
        p = self.P[i, j]
        self.calls += int(np.size(p))
        if not self.noisy:
            return p
        return (self.rng.random(np.shape(p)) < p).astype(float)


def sample(pi: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """K i.i.d. responses from π (indices)."""
    return rng.choice(len(pi), size=k, p=pi)


def empirical_win_rates(ys: np.ndarray, oracle: Oracle, include_self: bool = True) -> np.ndarray:
    """p̂_i = mean_j P̂(y_i ≻ y_j) over the K samples: an estimate of P(y_i ≻ π_t).

    SPPO includes the sample itself (scored ½); SPO's win rate against the *others* excludes it.
    """
    k = len(ys)
    i, j = np.triu_indices(k, 1)  # query each unordered pair once
    wins = np.full((k, k), 0.5)  # (K, K); the diagonal is a tie with oneself
    wins[i, j] = oracle(ys[i], ys[j])
    wins[j, i] = 1.0 - wins[i, j]
    if include_self:
        return wins.mean(1)
    if k < 2:
        raise SpkitError("win rates against the other samples need K >= 2")
    return (wins.sum(1) - 0.5) / (k - 1)


def ordered_pairs(ys: np.ndarray, oracle: Oracle) -> tuple[np.ndarray, np.ndarray]:
    """All K(K−1)/2 pairs of the samples, each ordered by one preference draw -> (y_w, y_l).

    A noisy oracle already answers 0/1; an exact oracle's probability is turned into one draw,
    because a pairwise loss needs an ordered pair either way.
    """
    i, j = np.triu_indices(len(ys), 1)
    a, b = ys[i], ys[j]
    p = oracle(a, b)
    a_wins = p > 0.5 if oracle.noisy else oracle.rng.random(len(a)) < p
    return np.where(a_wins, a, b), np.where(a_wins, b, a)


# ---- Reward models


def fit_bradley_terry(wins: np.ndarray, ridge: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Maximum-likelihood BT rewards r from a (weighted) win-count matrix wins[i, j] = #(i ≻ j).

    Newton's method on Σ_ij wins_ij log σ(r_i − r_j) − ridge/2 ‖r‖²; rewards are centred.
    The ridge keeps responses that were never compared at r = 0 instead of ±∞.
    """
    W = np.asarray(wins, dtype=float)
    n = W.shape[0]
    N = W + W.T  # comparisons per pair
    r = np.zeros(n)
    for _ in range(iters):
        S = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
        grad = (W - N * S).sum(1) - ridge * r
        C = N * S * (1 - S)
        H = -np.diag(C.sum(1)) + C - ridge * np.eye(n)  # (n, n) Hessian, negative semi-definite
        # r and r + c·1 fit equally well: −11ᵀ removes that flat direction (grad ⟂ 1 at ridge 0)
        delta = np.linalg.solve(H - np.ones((n, n)), -grad)
        r = r + delta
        if np.abs(delta).max() < 1e-12:
            break
    return r - r.mean()


# ---- Sampled-form optimisation on logits


def fit_logits(
    theta: np.ndarray, loss_fn: Callable[[torch.Tensor], torch.Tensor], steps: int, lr: float
) -> np.ndarray:
    """`steps` plain gradient steps of loss_fn(log π_θ) on the logits, starting from θ.

    `loss_fn` receives the (n,) tensor log_softmax(θ) and returns a scalar — exactly what a
    language model's summed token log-probs would feed the same loss.
    """
    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    for _ in range(steps):
        loss = loss_fn(torch.log_softmax(t, dim=0))
        (grad,) = torch.autograd.grad(loss, t)
        with torch.no_grad():
            t -= lr * grad
    return t.detach().numpy()


def inpo_pair_loss(
    theta_t: np.ndarray, log_ref: np.ndarray, yw: np.ndarray, yl: np.ndarray, eta: float, tau: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The INPO pairwise loss on ordered pairs, as a function of log π_θ, anchored at θ_t.

    Its minimiser is the OMD step from π_t against the distribution the pairs were drawn from,
    so INPO (pairs from π_t) and Nash-MP's two half-steps (pairs from π_t, then π_{t+½}) share it.
    """
    prev = torch.tensor(log_softmax(theta_t))  # (n,) log π_t, fixed
    ref = torch.tensor(log_ref)  # (n,)
    w, lo = torch.as_tensor(yw), torch.as_tensor(yl)

    def loss(logp: torch.Tensor) -> torch.Tensor:
        return inpo_loss(logp[w], logp[lo], ref[w], ref[lo], prev[w], prev[lo], eta, tau)

    return loss
