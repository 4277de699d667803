"""Nash-MP — Accelerating Nash Learning from Human Feedback via Mirror Prox.

Tiapkin, Calandriello, Belomestny, Moulines, Munos, Naumov, Perrault, Valko, Ménard (2025),
arXiv:2505.19731. On a finite response set.

Idea: mirror descent in a game rotates around the equilibrium; mirror *prox* first takes a
look-ahead half-step, then updates from the original point using the preferences of the
look-ahead policy. The extrapolation cancels the rotation, so the *last* iterate converges —
linearly to the KL-regularised equilibrium π*_τ, and (with τ = 0) to the von Neumann winner
itself, without averaging.

Equations (numbered here; the paper's Sec. 3):
  Each half-step is the *proximal* step argmax_π η[P(π ≻ π') − τ KL(π‖π_ref)] − KL(π‖π_t):
  (1) π_{t+½}(y) ∝ [π_t(y) π_ref(y)^{ητ} exp(η P(y ≻ π_t))]^{1/(1+ητ)}        — look-ahead
  (2) π_{t+1}(y) ∝ [π_t(y) π_ref(y)^{ητ} exp(η P(y ≻ π_{t+½}))]^{1/(1+ητ)}    — update from π_t
  which is the linearised OMD step of INPO, π_t^{1−η'τ} π_ref^{η'τ} exp(η' P), with the step
  η' = η/(1+ητ) (`prox_eta`). So the sampled form regresses each half-step with the INPO
  pairwise loss (`spkit.rl.losses.inpo_loss`) at η', pairs drawn from the policy being played
  against (π_t for (1), π_{t+½} for (2)), always anchored at π_t. (The linearised weights
  1 − ητ at the paper's η would flip sign for ητ > 1 and diverge; the proximal ones cannot.)

Algorithm (one step t):
  1. exact form: apply (1) then (2) with P(y ≻ π) = (P π)_y.
  2. sampled form: K samples from π_t → ordered pairs → fit θ_{t+½}; K samples from π_{t+½} →
     ordered pairs → fit θ_{t+1} from θ_t. Twice the oracle calls of INPO per step.
  3. log exploitability of π_t (the iterate the theory covers) and of the average.
  4. lm form (`--mode lm`): as 2 on spkit-tiny's completions (`spkit.rl.lm_preference`): fit
     θ_{t+½} from θ_t on pairs of π_t's completions, sample from it, return to θ_t (weights
     and optimiser state) and fit θ_{t+1} on pairs of π_{t+½}'s completions, anchored at π_t.

Deviations from the paper:
  1. A finite response set with logits replaces an LM; gradient steps on the pairwise loss
     replace the paper's practical estimator.

Commands:
  spkit train nash_mp --family three_cycle --steps 2000
  spkit train nash_mp --family random --n 10 --mode sampled --K 8 --seed 1
  spkit train nash_mp --mode lm --steps 100 --eta 2 --tau 0.1 --threads 1 --out runs/nash_mp_lm
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from spkit.algos.inpo import lm_pairs_loss
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


def prox_eta(cfg: Config) -> float:
    """η' = η/(1+ητ): the proximal step written as a linearised one (1 − η'τ = 1/(1+ητ))."""
    return cfg.eta / (1.0 + cfg.eta * cfg.tau)


def exact_step(theta: np.ndarray, P: np.ndarray, log_ref: np.ndarray, cfg: Config) -> np.ndarray:
    """Look-ahead with π_t's win rates, then the real step with the look-ahead's win rates."""
    log_pi, eta = pg.log_softmax(theta), prox_eta(cfg)
    half = pg.mirror_step(log_pi, P @ np.exp(log_pi), eta, cfg.tau, log_ref)  # Eq. (1)
    return pg.mirror_step(log_pi, P @ np.exp(half), eta, cfg.tau, log_ref)  # Eq. (2)


def sampled_step(theta, log_ref, oracle: pg.Oracle, rng: np.random.Generator, cfg: Config) -> np.ndarray:
    """The two half-steps, each regressed with the INPO pairwise loss anchored at θ_t."""
    eta = prox_eta(cfg)
    ys = pg.sample(pg.softmax(theta), cfg.K, rng)
    yw, yl = pg.ordered_pairs(ys, oracle)
    loss = pg.inpo_pair_loss(theta, log_ref, yw, yl, eta, cfg.tau)  # Eq. (1), pairs ~ π_t
    half = pg.fit_logits(theta, loss, cfg.inner_steps, cfg.lr)
    ys = pg.sample(pg.softmax(half), cfg.K, rng)
    yw, yl = pg.ordered_pairs(ys, oracle)
    loss = pg.inpo_pair_loss(theta, log_ref, yw, yl, eta, cfg.tau)  # Eq. (2), pairs ~ π_{t+½}
    return pg.fit_logits(theta, loss, cfg.inner_steps, cfg.lr)


def lm_step(game: LMPreferenceRun, t: int, cfg: Config) -> dict[str, float]:
    """The two half-steps on the language model, both from θ_t."""
    eta = prox_eta(cfg)
    start = copy.deepcopy(game.model.state_dict()), copy.deepcopy(game.optimizer.state_dict())
    _, loss = lm_pairs_loss(game, t, eta, cfg.tau)  # Eq. (1): pairs ~ π_t, anchored at π_t
    half_loss = game.fit(loss, cfg.inner_steps)
    b = game.rollout(t, "half", record=False)  # completions of π_{t+½}
    w, lo = game.pairs(b)
    ref = game.ref_logps(b)
    game.model.load_state_dict(start[0])
    game.optimizer.load_state_dict(start[1])
    with torch.no_grad():
        prev = game.logps(b)  # log π_t of π_{t+½}'s completions: the anchor

    def loss2() -> torch.Tensor:
        lp = game.logps(b)
        return inpo_loss(lp[w], lp[lo], ref[w], ref[lo], prev[w], prev[lo], eta, cfg.tau)  # Eq. (2)

    return {"losses/half": half_loss, "losses/nash_mp": game.fit(loss2, cfg.inner_steps)}


# ---- Train


def train(cfg: Config, callback=None) -> PreferenceHistory:
    """Run Nash-MP from π_0 = π_ref = uniform and return the exploitability curves."""
    if cfg.mode == "lm":
        lm = LMPreferenceRun(cfg, "nash_mp", callback)
        return lm.run(lambda t: lm_step(lm, t, cfg))
    game = PreferenceRun(cfg, "nash_mp", callback)
    log_ref = np.log(game.ref)
    if cfg.mode == "exact":
        step = lambda th, t: exact_step(th, game.P, log_ref, cfg)  # noqa: E731
    else:
        step = lambda th, t: sampled_step(th, log_ref, game.oracle, game.rng, cfg)  # noqa: E731
    return game.run(step, tau=cfg.tau)


# ---- Entry: `spkit train nash_mp` takes its flags from Config and prints summary(history)

__all__ = ["PAPER", "Config", "train", "summary"]
