"""SPO — A Minimaximalist Approach to Reinforcement Learning from Human Feedback.

Swamy, Dann, Kidambi, Wu, Agarwal (2024), arXiv:2401.04056. Self-Play Preference Optimization,
here on a finite response set with an exactly known von Neumann (minimax) winner.

Idea: no reward model and no adversarial training. Sample several responses from the current
policy, reward each by its win rate against the others under the preference function, and run
ordinary RL on that reward. Because the opponent is the policy itself, this is self-play in the
symmetric preference game; with a no-regret RL learner the *average* policy converges to the
minimax winner, even for intransitive, stochastic preferences.

Equations (numbered here; the paper's Sec. 3):
  (1) r_t(y) = P(y ≻ π_t)                                   — win rate against the policy itself
  (2) ∇J(θ) = E_{y~π_θ}[(r_t(y) − b) ∇log π_θ(y)]            — policy gradient, baseline b
  (2') θ_{t+1} = θ_t + α (r_t − E_{π_t} r_t)                  — its natural-gradient form (Hedge)
  (3) r̂(y_k) = 1/(K−1) Σ_{j≠k} P̂(y_k ≻ y_j)                 — win rate among the K samples

Algorithm (one step t):
  1. exact form: natural policy gradient (2') with r_t = P π_t exactly — for a softmax policy
     the Fisher-preconditioned gradient is the advantage itself, i.e. Hedge, a no-regret
     learner, which is what SPO's guarantee needs (vanilla softmax PG is not: its average
     iterate stalls at exploitability 0.01–0.07 on the 3-cycle and random matrices).
  2. sampled form: draw K responses, one noisy comparison per pair, rewards (3), leave-one-out
     advantages (`spkit.rl.advantages.rloo_advantages`), one on-policy step of
     `spkit.rl.losses.ppo_clip_loss` (ratio 1 → REINFORCE).
  3. log exploitability of π_t and of the average π̄_t (the iterate the theory covers).
  4. lm form (`--mode lm`): as 2 on spkit-tiny's completions (`spkit.rl.lm_preference`): K
     completions per prompt, rewards (3) among them, leave-one-out advantages, one REINFORCE
     step (Adam) on the summed token log-probs of each completion.

Deviations from the paper:
  1. A finite response set with logits replaces an LM; plain gradient steps replace PPO epochs.
  2. Rewards are win rates against the other K−1 samples of the same step; the paper also uses
     a queue of past samples.

Commands:
  spkit train spo --family three_cycle --steps 2000
  spkit train spo --family random --n 10 --mode sampled --K 8 --seed 1
  spkit train spo --mode lm --steps 200 --threads 1 --out runs/spo_lm
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
from spkit.rl.advantages import rloo_advantages
from spkit.rl.losses import ppo_clip_loss

PAPER = {
    "title": "A Minimaximalist Approach to Reinforcement Learning from Human Feedback",
    "arxiv": "2401.04056",
    "citation": "Swamy, Dann, Kidambi, Wu, Agarwal. SPO. ICML 2024, arXiv:2401.04056.",
}


# ---- Config


@dataclass
class Config(ProblemConfig):
    mode: str = param("exact", "exact (expected gradient) | sampled (K samples, noisy oracle) | lm (language model)",
                      choices=("exact", "sampled", "lm"))
    steps: int = param(2000, "number of self-play iterations t", ge=0, identity=False)
    lr: float = param(1.0, "α: natural-policy-gradient step size (exact form)", gt=0)
    pg_lr: float = param(0.3, "REINFORCE step size on the logits (sampled form)")
    K: int = param(8, "samples per iteration (sampled form)", ge=2)


# ---- Reward / update


def exact_step(theta: np.ndarray, P: np.ndarray, cfg: Config) -> np.ndarray:
    """Natural policy gradient with the exact win-rate reward and baseline b = E_π[r]."""
    pi = pg.softmax(theta)  # (n,)
    r = P @ pi  # (n,) Eq. (1)
    return theta + cfg.lr * (r - pi @ r)  # Eq. (2'): F⁻¹∇J = advantage for softmax logits


def sampled_step(theta: np.ndarray, oracle: pg.Oracle, rng: np.random.Generator, cfg: Config) -> np.ndarray:
    """REINFORCE on K samples rewarded by their win rate against each other."""
    ys = pg.sample(pg.softmax(theta), cfg.K, rng)  # (K,)
    r = torch.tensor(pg.empirical_win_rates(ys, oracle, include_self=False))  # (K,) Eq. (3)
    adv = rloo_advantages(r, group_size=cfg.K).double()  # (K,)
    idx = torch.as_tensor(ys)

    def loss(logp: torch.Tensor) -> torch.Tensor:
        lp = logp[idx].unsqueeze(1)  # (K, 1): one "token" per response
        return ppo_clip_loss(lp, lp.detach(), adv, torch.ones_like(lp))  # Eq. (2)

    return pg.fit_logits(theta, loss, steps=1, lr=cfg.pg_lr)


def lm_step(game: LMPreferenceRun, t: int, cfg: Config) -> dict[str, float]:
    """REINFORCE on the language model's K completions per prompt, rewarded by Eq. (3)."""
    b = game.rollout(t)
    adv = rloo_advantages(game.win_rates(b, include_self=False), group_size=b.K).float()  # (B,)

    def loss() -> torch.Tensor:
        lp, mask = game.token_logps(b)  # (B, T)
        # Eq. (2) on sequences: Σ_t over each completion's tokens, mean over completions
        return ppo_clip_loss(lp, lp.detach(), adv, mask, aggregation="dr_grpo", max_len=1)

    return {"losses/policy": game.fit(loss, 1)}


# ---- Train


def train(cfg: Config, callback=None) -> PreferenceHistory:
    """Run SPO from π_0 = uniform and return the exploitability curves."""
    if cfg.mode == "lm":
        lm = LMPreferenceRun(cfg, "spo", callback)
        return lm.run(lambda t: lm_step(lm, t, cfg))
    game = PreferenceRun(cfg, "spo", callback)
    if cfg.mode == "exact":
        step = lambda th, t: exact_step(th, game.P, cfg)  # noqa: E731
    else:
        step = lambda th, t: sampled_step(th, game.oracle, game.rng, cfg)  # noqa: E731
    return game.run(step)


# ---- Entry: `spkit train spo` takes its flags from Config and prints summary(history)

__all__ = ["PAPER", "Config", "train", "summary"]
