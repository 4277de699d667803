"""INPO — Iterative Nash Policy Optimization: Aligning LLMs with General Preferences via No-Regret Learning.

Zhang, Yu, Huang, Lin, Zhao, Zhang, Zhao, Liu (2024), arXiv:2410.14086. On a finite response set,
where both the von Neumann winner and the KL-regularised equilibrium are known exactly.

Idea: run online mirror descent (OMD) in the KL-regularised preference game against yourself.
The OMD step needs P(y ≻ π_t) for every y — unavailable for an LM — but a *pairwise* squared
loss has exactly that step as its population minimiser, because the log-normaliser cancels in
differences. So each iteration is a regression on ordered pairs sampled from π_t; no win-rate
estimation per response. The *last* iterate converges to the regularised equilibrium π*_τ.

Equations (numbered here; the paper's Sec. 4):
  (1) π_{t+1}(y) ∝ π_t(y)^{1−ητ} π_ref(y)^{ητ} exp(η P(y ≻ π_t))          — OMD step
  (2) L(θ) = E_{(y_w, y_l)~π_t, P}[(log π_θ(y_w)/π_θ(y_l) − ητ log π_ref(y_w)/π_ref(y_l)
                                    − (1−ητ) log π_t(y_w)/π_t(y_l) − η/2)²]
      (`spkit.rl.losses.inpo_loss`); its minimiser over all policies is exactly (1)
      (tests/test_preference_learners.py minimises (2) and recovers (1)).

Algorithm (one step t):
  1. exact form: apply (1) with P(y ≻ π_t) = (P π_t)_y.
  2. sampled form: draw K responses from π_t, order all K(K−1)/2 pairs by one noisy
     comparison each, take `inner_steps` gradient steps of (2) on the logits from θ_t.
  3. log exploitability of π_t (the iterate the theory covers) and of the average.
  4. lm form (`--mode lm`): as 2 on spkit-tiny's completions (`spkit.rl.lm_preference`), pairs
     within each prompt's K completions, (2) on sequence log-probs with π_t the sampling policy
     and π_ref the initial model.

Deviations from the paper:
  1. A finite response set with logits replaces an LM; plain gradient steps replace AdamW.
  2. All pairs of the K samples are used (the paper pairs best and worst by a preference model).

Commands:
  spkit train inpo --family three_cycle --steps 2000
  spkit train inpo --family random --n 10 --mode sampled --K 8 --seed 1
  spkit train inpo --mode lm --steps 200 --eta 2 --tau 0.1 --threads 1 --out runs/inpo_lm
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
from spkit.rl.losses import inpo_loss

PAPER = {
    "title": "Iterative Nash Policy Optimization: Aligning LLMs with General Preferences via No-Regret Learning",
    "arxiv": "2410.14086",
    "citation": "Zhang, Yu, Huang, Lin, Zhao, Zhang, Zhao, Liu. INPO. ICLR 2025, arXiv:2410.14086.",
}


# ---- Config


@dataclass
class Config(ProblemConfig):
    steps: int = param(5000, "number of iterations t (linear rate ≈ (1 − ητ)^t: 5,000 at ητ = 0.002)", ge=0, identity=False)
    eta: float = param(0.2, "η: OMD step size (plain OMD needs η ≲ 2τ/L²-ish; 0.5 fails on strong cycles)", gt=0)
    tau: float = param(0.01, "τ: strength of the KL regulariser toward π_ref (uniform)", ge=0)
    K: int = param(8, "samples per iteration (sampled form)", ge=2)
    inner_steps: int = param(5, "gradient steps on the INPO loss per iteration (sampled form)", ge=1)
    lr: float = param(0.05, "learning rate of those gradient steps (sampled form)", gt=0)


# ---- Loss / update


def exact_step(theta: np.ndarray, P: np.ndarray, log_ref: np.ndarray, cfg: Config) -> np.ndarray:
    """One OMD step in the KL-regularised game."""
    win = P @ pg.softmax(theta)  # (n,) P(y ≻ π_t)
    return pg.mirror_step(pg.log_softmax(theta), win, cfg.eta, cfg.tau, log_ref)  # Eq. (1)


def sampled_step(theta, log_ref, oracle: pg.Oracle, rng: np.random.Generator, cfg: Config) -> np.ndarray:
    """Pairs from π_t ordered by the noisy oracle, then a few gradient steps of (2)."""
    ys = pg.sample(pg.softmax(theta), cfg.K, rng)  # (K,)
    yw, yl = pg.ordered_pairs(ys, oracle)  # (K(K−1)/2,) each
    loss = pg.inpo_pair_loss(theta, log_ref, yw, yl, cfg.eta, cfg.tau)  # Eq. (2)
    return pg.fit_logits(theta, loss, cfg.inner_steps, cfg.lr)


def lm_pairs_loss(game: LMPreferenceRun, t: int, eta: float, tau: float, tag: str = "sample"):
    """Pairs among K completions per prompt from the current model, ordered by the judge, and
    the INPO loss (2) on them as a function of the model (the sampling policy is π_t)."""
    b = game.rollout(t, tag)
    w, lo = game.pairs(b)
    ref = game.ref_logps(b)

    def loss() -> torch.Tensor:
        lp = game.logps(b)
        return inpo_loss(lp[w], lp[lo], ref[w], ref[lo], b.prev_logps[w], b.prev_logps[lo], eta, tau)  # Eq. (2)

    return b, loss


def lm_step(game: LMPreferenceRun, t: int, cfg: Config) -> dict[str, float]:
    """The sampled step on the language model."""
    _, loss = lm_pairs_loss(game, t, cfg.eta, cfg.tau)
    return {"losses/inpo": game.fit(loss, cfg.inner_steps)}


# ---- Train


def train(cfg: Config, callback=None) -> PreferenceHistory:
    """Run INPO from π_0 = π_ref = uniform and return the exploitability curves."""
    if cfg.mode == "lm":
        lm = LMPreferenceRun(cfg, "inpo", callback)
        return lm.run(lambda t: lm_step(lm, t, cfg))
    game = PreferenceRun(cfg, "inpo", callback)
    log_ref = np.log(game.ref)
    if cfg.mode == "exact":
        step = lambda th, t: exact_step(th, game.P, log_ref, cfg)  # noqa: E731
    else:
        step = lambda th, t: sampled_step(th, log_ref, game.oracle, game.rng, cfg)  # noqa: E731
    return game.run(step, tau=cfg.tau)


# ---- Entry: `spkit train inpo` takes its flags from Config and prints summary(history)

__all__ = ["PAPER", "Config", "train", "summary"]
