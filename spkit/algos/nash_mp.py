"""Nash-MP — Accelerating Nash Learning from Human Feedback via Mirror Prox.

Tiapkin, Calandriello, Belomestny, Moulines, Munos, Naumov, Perrault, Valko, Ménard (2025),
arXiv:2505.19731. On a finite response set.

Idea: mirror descent in a game rotates around the equilibrium; mirror *prox* first takes a
look-ahead half-step, then updates from the original point using the preferences of the
look-ahead policy. The extrapolation cancels the rotation, so the *last* iterate converges —
linearly to the KL-regularised equilibrium π*_τ, and (with τ = 0) to the von Neumann winner
itself, without averaging.

Equations (numbered here; the paper's Sec. 3):
  (1) π_{t+½}(y) ∝ π_t(y)^{1−ητ} π_ref(y)^{ητ} exp(η P(y ≻ π_t))        — look-ahead
  (2) π_{t+1}(y) ∝ π_t(y)^{1−ητ} π_ref(y)^{ητ} exp(η P(y ≻ π_{t+½}))    — update from π_t
  Each step is an INPO-type OMD step, so the sampled form regresses each with the INPO
  pairwise loss (`spkit.rl.losses.inpo_loss`), pairs drawn from the policy being played
  against (π_t for (1), π_{t+½} for (2)), always anchored at π_t.

Algorithm (one step t):
  1. exact form: apply (1) then (2) with P(y ≻ π) = (P π)_y.
  2. sampled form: K samples from π_t → ordered pairs → fit θ_{t+½}; K samples from π_{t+½} →
     ordered pairs → fit θ_{t+1} from θ_t. Twice the oracle calls of INPO per step.
  3. log exploitability of π_t (the iterate the theory covers) and of the average.

Deviations from the paper:
  1. A finite response set with logits replaces an LM; gradient steps on the pairwise loss
     replace the paper's practical estimator.

Commands:
  spkit train nash_mp --family three_cycle --steps 2000
  spkit train nash_mp --family random --n 10 --mode sampled --K 8 --seed 1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spkit.algos.preference_game import PreferenceHistory, PreferenceRun, ProblemConfig, summary
from spkit.config import param
from spkit.rl import preference_games as pg

PAPER = {
    "title": "Accelerating Nash Learning from Human Feedback via Mirror Prox",
    "arxiv": "2505.19731",
    "citation": "Tiapkin et al. Accelerating Nash Learning from Human Feedback via Mirror Prox. arXiv:2505.19731, 2025.",
}


# ---- Config


@dataclass
class Config(ProblemConfig):
    steps: int = param(2000, "number of iterations t", ge=0, identity=False)
    eta: float = param(1.0, "η: mirror-prox step size", gt=0)
    tau: float = param(0.01, "τ: KL regularisation toward π_ref (uniform); 0 targets the von Neumann winner itself", ge=0)
    K: int = param(8, "samples per half-step (sampled form)", ge=2)
    inner_steps: int = param(5, "gradient steps on the pairwise loss per half-step (sampled form)", ge=1)
    lr: float = param(0.05, "learning rate of those gradient steps (sampled form)", gt=0)


# ---- Update


def exact_step(theta: np.ndarray, P: np.ndarray, log_ref: np.ndarray, cfg: Config) -> np.ndarray:
    """Look-ahead with π_t's win rates, then the real step with the look-ahead's win rates."""
    log_pi = pg.log_softmax(theta)
    half = pg.mirror_step(log_pi, P @ np.exp(log_pi), cfg.eta, cfg.tau, log_ref)  # Eq. (1)
    return pg.mirror_step(log_pi, P @ np.exp(half), cfg.eta, cfg.tau, log_ref)  # Eq. (2)


def sampled_step(theta, log_ref, oracle: pg.Oracle, rng: np.random.Generator, cfg: Config) -> np.ndarray:
    """The two half-steps, each regressed with the INPO pairwise loss anchored at θ_t."""
    ys = pg.sample(pg.softmax(theta), cfg.K, rng)
    yw, yl = pg.ordered_pairs(ys, oracle)
    loss = pg.inpo_pair_loss(theta, log_ref, yw, yl, cfg.eta, cfg.tau)  # Eq. (1), pairs ~ π_t
    half = pg.fit_logits(theta, loss, cfg.inner_steps, cfg.lr)
    ys = pg.sample(pg.softmax(half), cfg.K, rng)
    yw, yl = pg.ordered_pairs(ys, oracle)
    loss = pg.inpo_pair_loss(theta, log_ref, yw, yl, cfg.eta, cfg.tau)  # Eq. (2), pairs ~ π_{t+½}
    return pg.fit_logits(theta, loss, cfg.inner_steps, cfg.lr)


# ---- Train


def train(cfg: Config, callback=None) -> PreferenceHistory:
    """Run Nash-MP from π_0 = π_ref = uniform and return the exploitability curves."""
    game = PreferenceRun(cfg, "nash_mp", callback)
    log_ref = np.log(game.ref)
    if cfg.mode == "exact":
        step = lambda th, t: exact_step(th, game.P, log_ref, cfg)  # noqa: E731
    else:
        step = lambda th, t: sampled_step(th, log_ref, game.oracle, game.rng, cfg)  # noqa: E731
    return game.run(step, tau=cfg.tau)


# ---- Entry: `spkit train nash_mp` takes its flags from Config and prints summary(history)

__all__ = ["PAPER", "Config", "train", "summary"]
