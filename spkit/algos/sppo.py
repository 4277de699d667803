"""SPPO — Self-Play Preference Optimization for Language Model Alignment.

Wu, Sun, Yuan, Ji, Yang, Gu (2024), arXiv:2405.00675. Here on a finite response set, where the
von Neumann winner is known exactly (`spkit.solvers.matrix`).

Idea: alignment is a symmetric two-player constant-sum game whose payoff is the preference
probability itself, so no Bradley–Terry reward is needed. SPPO plays multiplicative weights
(Hedge) against its own last iterate; the *average* iterate converges to the von Neumann winner
(duality gap O(1/√T)). A language model cannot apply the multiplicative update directly, so
SPPO regresses log π_{t+1}(y)/π_t(y) onto η(P(y ≻ π_t) − ½), approximating log Z_t by η/2.

Equations (numbered here; the paper's Sec. 3–4):
  (1) π_{t+1}(y) ∝ π_t(y) exp(η P(y ≻ π_t))                      — the Hedge update
  (2) L(θ) = E_{y~π_t} (log π_θ(y)/π_t(y) − η(P̂(y ≻ π_t) − ½))²  — `spkit.rl.losses.sppo_loss`
  (3) P̂(y_k ≻ π_t) = (1/K) Σ_j P̂(y_k ≻ y_j), the K samples (self included, scored ½)

Algorithm (one step t):
  1. exact form: apply (1) with P(y ≻ π_t) = (P π_t)_y.
  2. sampled form: draw K responses from π_t; ask the noisy oracle one comparison per pair;
     estimate (3); take `inner_steps` gradient steps of (2) on the logits from θ_t.
  3. log exploitability of π_t and of the average π̄_t (the iterate the theory covers).

Deviations from the paper:
  1. A finite response set and an explicit P replace prompts, an LM and PairRM.
  2. The sampled loss uses all K samples (the paper's Algorithm 1); the released code keeps only
     the best and worst sample of each prompt.
  3. Plain gradient descent on logits replaces RMSprop on LM weights.

Commands:
  spkit train sppo --family three_cycle --steps 2000
  spkit train sppo --family random --n 10 --mode sampled --K 8 --seed 1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spkit.rl import tabular as tb
from spkit.rl.losses import sppo_loss

PAPER = {
    "title": "Self-Play Preference Optimization for Language Model Alignment",
    "arxiv": "2405.00675",
    "citation": "Wu, Sun, Yuan, Ji, Yang, Gu. SPPO. arXiv:2405.00675, 2024.",
}


# ---- Config


@dataclass
class Config(tb.ProblemConfig):
    steps: int = tb.param(2000, "number of self-play iterations t")
    eta: float = tb.param(1.0, "η = 1/β: step size of the multiplicative-weights update")
    K: int = tb.param(8, "samples per iteration (sampled form)")
    inner_steps: int = tb.param(5, "gradient steps on the SPPO loss per iteration (sampled form)")
    lr: float = tb.param(0.1, "learning rate of those gradient steps (sampled form)")


# ---- Loss / update


def exact_step(theta: np.ndarray, P: np.ndarray, cfg: Config) -> np.ndarray:
    """One Hedge step on the expected win rates."""
    win = P @ tb.softmax(theta)  # (n,) P(y ≻ π_t)
    return tb.mirror_step(tb.log_softmax(theta), win - 0.5, cfg.eta)  # Eq. (1)


def sampled_step(theta: np.ndarray, oracle: tb.Oracle, rng: np.random.Generator, cfg: Config) -> np.ndarray:
    """K samples, win rates among them, a few gradient steps of the SPPO regression."""
    ys = tb.sample(tb.softmax(theta), cfg.K, rng)  # (K,)
    p_hat = torch.tensor(tb.empirical_win_rates(ys, oracle, include_self=True))  # (K,) Eq. (3)
    prev = torch.tensor(tb.log_softmax(theta)[ys])  # (K,) log π_t(y_k), fixed
    idx = torch.as_tensor(ys)

    def loss(logp: torch.Tensor) -> torch.Tensor:
        return sppo_loss(logp[idx], prev, p_hat, cfg.eta)  # Eq. (2)

    return tb.fit_logits(theta, loss, cfg.inner_steps, cfg.lr)


# ---- Train


def train(cfg: Config, callback=None) -> tb.History:
    """Run SPPO from π_0 = uniform and return the exploitability curves."""
    P, ref = cfg.problem()
    rng = np.random.default_rng(cfg.seed)
    oracle = tb.Oracle(P, noisy=True, rng=rng)
    if cfg.mode == "exact":
        step = lambda th, t: exact_step(th, P, cfg)  # noqa: E731
    else:
        step = lambda th, t: sampled_step(th, oracle, rng, cfg)  # noqa: E731
    hist = tb.run(step, P, np.zeros(len(ref)), cfg.steps, callback=callback)
    hist.oracle_calls = oracle.calls
    return hist


# ---- Entry


add_arguments, main = tb.cli(Config, train, "sppo")
