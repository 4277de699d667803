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
  4. lm form (`--mode lm`): the same as 2 on spkit-tiny's completions (`spkit.rl.lm_preference`):
     K completions per prompt from π_t, win rates (3) among them from the class oracle or the
     learned judge, `inner_steps` Adam steps of (2) on sequence log-probs log π_θ(y|x) with the
     sampling policy π_t as reference.

Deviations from the paper:
  1. A finite response set and an explicit P replace prompts, an LM and PairRM.
  2. The sampled loss uses all K samples (the paper's Algorithm 1); the released code keeps only
     the best and worst sample of each prompt.
  3. Plain gradient descent on logits replaces RMSprop on LM weights.

Commands:
  spkit train sppo --family three_cycle --steps 2000
  spkit train sppo --family random --n 10 --mode sampled --K 8 --seed 1
  spkit train sppo --mode lm --steps 200 --threads 1 --out runs/sppo_lm
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spkit.algos.preference_game import (
    LMPreferenceRun,
    PreferenceHistory,
    PreferenceRun,
    ProblemConfig,
    summary,
)
from spkit.config import param
from spkit.rl import preference_games as pg
from spkit.rl.losses import sppo_loss

PAPER = {
    "title": "Self-Play Preference Optimization for Language Model Alignment",
    "arxiv": "2405.00675",
    "citation": "Wu, Sun, Yuan, Ji, Yang, Gu. SPPO. arXiv:2405.00675, 2024.",
}


# ---- Config


@dataclass
class Config(ProblemConfig):
    steps: int = param(2000, "number of self-play iterations t", ge=0, identity=False)
    eta: float = param(1.0, "η = 1/β: step size of the multiplicative-weights update", gt=0)
    K: int = param(8, "samples per iteration (sampled form)", ge=2)
    inner_steps: int = param(5, "gradient steps on the SPPO loss per iteration (sampled form)", ge=1)
    lr: float = param(0.1, "learning rate of those gradient steps (sampled form)", gt=0)


# ---- Loss / update


def exact_step(theta: np.ndarray, P: np.ndarray, cfg: Config) -> np.ndarray:
    """One Hedge step on the expected win rates."""
    win = P @ pg.softmax(theta)  # (n,) P(y ≻ π_t)
    return pg.mirror_step(pg.log_softmax(theta), win - 0.5, cfg.eta)  # Eq. (1)


def sampled_step(theta: np.ndarray, oracle: pg.Oracle, rng: np.random.Generator, cfg: Config) -> np.ndarray:
    """K samples, win rates among them, a few gradient steps of the SPPO regression."""
    ys = pg.sample(pg.softmax(theta), cfg.K, rng)  # (K,)
    p_hat = torch.tensor(pg.empirical_win_rates(ys, oracle, include_self=True))  # (K,) Eq. (3)
    prev = torch.tensor(pg.log_softmax(theta)[ys])  # (K,) log π_t(y_k), fixed
    idx = torch.as_tensor(ys)

    def loss(logp: torch.Tensor) -> torch.Tensor:
        return sppo_loss(logp[idx], prev, p_hat, cfg.eta)  # Eq. (2)

    return pg.fit_logits(theta, loss, cfg.inner_steps, cfg.lr)


def lm_step(game: LMPreferenceRun, t: int, cfg: Config) -> dict[str, float]:
    """The sampled step on the language model: K completions per prompt, Eq. (3), Eq. (2)."""
    b = game.rollout(t)
    p_hat = game.win_rates(b, include_self=True).float()  # (B,) Eq. (3)
    loss = game.fit(lambda: sppo_loss(game.logps(b), b.prev_logps, p_hat, cfg.eta), cfg.inner_steps)  # Eq. (2)
    return {"losses/sppo": loss}


# ---- Train


def train(cfg: Config, callback=None) -> PreferenceHistory:
    """Run SPPO from π_0 = uniform and return the exploitability curves."""
    if cfg.mode == "lm":
        lm = LMPreferenceRun(cfg, "sppo", callback)
        return lm.run(lambda t: lm_step(lm, t, cfg))
    game = PreferenceRun(cfg, "sppo", callback)
    if cfg.mode == "exact":
        step = lambda th, t: exact_step(th, game.P, cfg)  # noqa: E731
    else:
        step = lambda th, t: sampled_step(th, game.oracle, game.rng, cfg)  # noqa: E731
    return game.run(step)


# ---- Entry: `spkit train sppo` takes its flags from Config and prints summary(history)

__all__ = ["PAPER", "Config", "train", "summary"]
