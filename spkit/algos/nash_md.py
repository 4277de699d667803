"""Nash-MD — Nash Learning from Human Feedback (Nash Mirror Descent).

Munos, Valko, Calandriello, Azar, Rowland, Guo, Tang, Geist, Mesnard, Michi, Selvi, Girgin,
Momchev, Bachem, Mankowitz, Precup, Piot (2023), arXiv:2312.00886. On a finite response set.

Idea: learn a preference model, then find the Nash equilibrium of the KL-regularised
preference game by mirror descent against a *geometric mixture* of the current policy and the
reference. Playing against the mixture (not against π_t itself) is what gives last-iterate
convergence to the regularised equilibrium π*_τ without averaging — important for LMs, where
averaging policies is impractical.

Equations (numbered here; the paper's Sec. 6–7):
  (1) π^μ_t(y) ∝ π_t(y)^{1−ητ} μ(y)^{ητ}                                 — geometric mixture
  (2) π_{t+1} = argmax_π η P(π ≻ π^μ_t) − KL(π‖π^μ_t),
      i.e. π_{t+1}(y) ∝ π^μ_t(y) exp(η P(y ≻ π^μ_t))                    — Nash-MD step
  (3) L(θ) = β Σ_t sg(log π_θ − log π_ref) log π_θ − (P̂(y ≻ y') − ½) Σ_t log π_θ,
      y ~ π_θ, y' ~ π^μ — the policy-gradient form TRL implements (`spkit.rl.losses.nash_md_loss`)

Algorithm (one step t):
  1. exact form: apply (1)–(2) with P(y ≻ π^μ_t) = (P π^μ_t)_y and η_t = 2/(τ(t+2)) (the
     paper's schedule; a constant η converges to a point O(η) away from π*_τ).
  2. sampled form: draw K responses y ~ π_t and K opponents y' ~ π^μ_t (mixture coefficient
     `mixture`, default ητ as in (1); TRL's Nash-MD trainer uses 0.5, a much stronger pull
     toward π_ref), one noisy comparison each, one gradient step of (3) with β = τ.
  3. log exploitability of π_t (the iterate the theory covers) and of the average.
  4. lm form (`--mode lm`): as 2 on spkit-tiny's completions (`spkit.rl.lm_preference`):
     K completions per prompt from π_t, K opponents sampled token by token from the geometric
     mixture log_softmax((1 − c)·logits_π + c·logits_ref) (the initial model is π_ref), one Adam
     step of (3) on the token log-probs.

Deviations from the paper:
  1. A finite response set with logits replaces an LM; the preference model is the oracle.
  2. The sampled form is the one-step policy-gradient variant (Nash-MD-PG / TRL), not the
     exact argmax of (2).

Commands:
  spkit train nash_md --family three_cycle --steps 2000
  spkit train nash_md --family random --n 10 --mode sampled --K 8 --seed 1
  spkit train nash_md --mode lm --steps 200 --tau 0.1 --mixture 0.1 --threads 1 --out runs/nash_md_lm
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
from spkit.rl import lm_preference as lmp
from spkit.rl import preference_games as pg
from spkit.rl.losses import nash_md_loss
from spkit.seeding import derive_seed

PAPER = {
    "title": "Nash Learning from Human Feedback",
    "arxiv": "2312.00886",
    "citation": "Munos et al. Nash Learning from Human Feedback. ICML 2024, arXiv:2312.00886.",
}


# ---- Config


@dataclass
class Config(ProblemConfig):
    steps: int = param(10000, "number of iterations t (KL(π*_τ‖π_t) = O(1/t) with the paper's schedule)", ge=0, identity=False)
    eta: float = param(0.5, "η: mirror-descent step size (schedule 'constant')", gt=0)
    schedule: str = param("paper", "'paper': η_t = 2/(τ(t+2)) (the rate of the last-iterate theorem) | 'constant'",
                          choices=("paper", "constant"))
    tau: float = param(0.01, "τ: KL regularisation toward π_ref (uniform); the mixture weight is ητ", ge=0)
    mixture: float | None = param(None, "mixture coefficient c of the opponent π^{1−c} π_ref^c (sampled and lm "
                                  "forms); None = ητ, the paper's (1) (TRL uses 0.5)", ge=0, le=1)
    K: int = param(8, "samples per iteration (sampled form)", ge=2)
    lr: float = param(0.1, "learning rate of the policy-gradient step (sampled form)", gt=0)


# ---- Loss / update


def mixture(theta: np.ndarray, log_ref: np.ndarray, coef: float) -> np.ndarray:
    """Geometric mixture π^μ ∝ π^{1−c} μ^c (normalised)."""
    return pg.softmax((1.0 - coef) * pg.log_softmax(theta) + coef * log_ref)  # Eq. (1)


def step_size(t: int, cfg: Config) -> float:
    """η_t. With a constant η the fixed point of (1)–(2) is π ∝ μ exp(P π^μ / τ), off π*_τ by
    O(η); the decreasing η_t = 2/(τ(t+2)) removes that bias (KL(π*_τ‖π_t) = O(1/t))."""
    return 2.0 / (cfg.tau * (t + 2)) if cfg.schedule == "paper" else cfg.eta


def mixture_coef(cfg: Config) -> float:
    """c of the sampled opponent: `--mixture`, else ητ as in Eq. (1)."""
    return cfg.mixture if cfg.mixture is not None else min(cfg.eta * cfg.tau, 1.0)


def exact_step(theta: np.ndarray, P: np.ndarray, log_ref: np.ndarray, t: int, cfg: Config) -> np.ndarray:
    """One Nash-MD step: mirror descent from the mixture against the mixture."""
    eta = step_size(t, cfg)
    mix = mixture(theta, log_ref, eta * cfg.tau)  # (n,)
    # log π_{t+1} = log π^μ_t + η P(y ≻ π^μ_t) = (1−ητ) log π_t + ητ log μ + η P π^μ_t
    return pg.mirror_step(pg.log_softmax(theta), P @ mix, eta, cfg.tau, log_ref)  # Eq. (2)


def sampled_step(theta, log_ref, oracle: pg.Oracle, rng: np.random.Generator, cfg: Config) -> np.ndarray:
    """y ~ π_t against y' ~ mixture, one noisy comparison each, one step of the TRL loss."""
    ys = pg.sample(pg.softmax(theta), cfg.K, rng)  # (K,)
    opp = pg.sample(mixture(theta, log_ref, mixture_coef(cfg)), cfg.K, rng)  # (K,)
    p = torch.tensor(oracle(ys, opp))  # (K,) P̂(y ≻ y')
    ref = torch.tensor(log_ref)
    idx = torch.as_tensor(ys)

    def loss(logp: torch.Tensor) -> torch.Tensor:
        lp = logp[idx].unsqueeze(1)  # (K, 1): one "token" per response
        return nash_md_loss(lp, ref[idx].unsqueeze(1), torch.ones_like(lp), p, beta=cfg.tau)  # Eq. (3)

    return pg.fit_logits(theta, loss, steps=1, lr=cfg.lr)


def lm_step(game: LMPreferenceRun, t: int, cfg: Config) -> dict[str, float]:
    """y ~ π_t against y' ~ the token-level geometric mixture, one step of the TRL loss (3)."""
    b = game.rollout(t)  # (B,) y ~ π_t
    c = mixture_coef(cfg)
    opp_ids = lmp.mixture_generate(game.model, game.ref, b.prompt_ids, c, cfg.max_new_tokens, game.stop_ids(),
                                   seed=derive_seed(cfg.seed, "opponent", t))
    opp = [game.tok.decode(x, skip_special_tokens=True) for x in opp_ids]
    p = []
    for g in range(b.groups):  # compare y_k with y'_k within each prompt
        sl = b.group(g)
        o = lmp.GroupOracle(np.concatenate([b.classes[sl], [lmp.classify(x) for x in opp[sl]]]), game.state.rng,
                            P=game.P, judge=game.judge, texts=b.texts[sl] + opp[sl])
        game.asked(o)
        p.append(o(np.arange(b.K), b.K + np.arange(b.K)))
    prob = torch.tensor(np.concatenate(p), dtype=torch.float32)  # (B,) P̂(y ≻ y')
    with torch.no_grad():
        ref, _ = game.token_logps(b, game.ref)

    def loss() -> torch.Tensor:
        lp, mask = game.token_logps(b)
        return nash_md_loss(lp, ref, mask, prob, beta=cfg.tau)  # Eq. (3)

    return {"losses/nash_md": game.fit(loss, 1), "train/win_vs_mixture": float(prob.mean())}


# ---- Train


def train(cfg: Config, callback=None) -> PreferenceHistory:
    """Run Nash-MD from π_0 = π_ref = uniform and return the exploitability curves."""
    if cfg.mode == "lm":
        lm = LMPreferenceRun(cfg, "nash_md", callback)
        return lm.run(lambda t: lm_step(lm, t, cfg))
    game = PreferenceRun(cfg, "nash_md", callback)
    log_ref = np.log(game.ref)
    if cfg.mode == "exact":
        step = lambda th, t: exact_step(th, game.P, log_ref, t, cfg)  # noqa: E731
    else:
        step = lambda th, t: sampled_step(th, log_ref, game.oracle, game.rng, cfg)  # noqa: E731
    return game.run(step, tau=cfg.tau)


# ---- Entry: `spkit train nash_md` takes its flags from Config and prints summary(history)

__all__ = ["PAPER", "Config", "train", "summary"]
