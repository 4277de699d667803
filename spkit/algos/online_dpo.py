"""Online iterative DPO — RLHF Workflow: From Reward Modeling to Online RLHF.

Dong, Xiong, Pang, Wang, Zhao, Zhou, Jiang, Sahoo, Xiong, Zhang (2024), arXiv:2405.07863
(RLHFlow), with the DPO loss of Rafailov et al. (2023), arXiv:2305.18290. On a finite response set.

Idea: alternate between sampling from the current policy, labelling a (best, worst) pair, and
one round of DPO with the current policy as the reference. DPO's population minimiser is the
KL-regularised optimum of the *Bradley–Terry* reward that best explains the pairs, so each
round is "fit a BT reward on-policy, then tilt π_t by exp(r/β)". Being online fixes the
distribution shift of offline DPO but not the reward model class: BT cannot represent a cycle.

Equations (numbered here):
  (1) L(θ) = −E log σ(β[log π_θ(y_w)/π_t(y_w) − log π_θ(y_l)/π_t(y_l)])  — `spkit.rl.losses.dpo_loss`
  (2) its minimiser: π_{t+1}(y) ∝ π_t(y) exp(r_t(y)/β), r_t the BT fit on pairs from π_t ⊗ π_t
      (tests/test_preference_learners.py checks (1) ⇒ (2) by minimising (1) directly)

Algorithm (one step t):
  1. exact form: apply (2) with r_t fitted to the expected comparisons W = π_t ⊗ π_t · P.
  2. sampled form: draw K responses, compare all pairs once (noisy oracle), take the best and
     worst by empirical win rate (ties skipped), `inner_steps` gradient steps of (1).
  3. log exploitability of π_t and of the average. The last iterate hops between corners
     (each round tilts toward the BT winner of the moment), so report it as a range over the
     last rounds, or report the average, never one end value.
  4. lm form (`--mode lm`): as 2 on spkit-tiny's completions (`spkit.rl.lm_preference`): best
     and worst of each prompt's K completions by win rate, `inner_steps` Adam steps of (1) on
     sequence log-probs with the sampling policy π_t as reference.

Deviations from the paper:
  1. A finite response set and a preference oracle replace an LM and a reward model, so best /
     worst are ranked by win rate instead of reward-model score.
  2. Many short rounds instead of 3 long ones, to show the dynamics.

Commands:
  spkit train online_dpo --family three_cycle --steps 2000
  spkit train online_dpo --family random --n 10 --mode sampled --K 8 --seed 1
  spkit train online_dpo --mode lm --steps 200 --beta 0.5 --threads 1 --out runs/online_dpo_lm
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
from spkit.rl.losses import dpo_loss

PAPER = {
    "title": "RLHF Workflow: From Reward Modeling to Online RLHF",
    "arxiv": "2405.07863",
    "citation": "Dong et al. RLHF Workflow: From Reward Modeling to Online RLHF. TMLR 2024, arXiv:2405.07863.",
}


# ---- Config


@dataclass
class Config(ProblemConfig):
    mode: str = param("exact", "exact (population minimiser) | sampled (K samples, noisy oracle) | lm (language model)",
                      choices=("exact", "sampled", "lm"))
    steps: int = param(2000, "number of online rounds t", ge=0, identity=False)
    beta: float = param(1.0, "β of the DPO loss (the reference is the current policy π_t)", gt=0)
    ridge: float = param(1e-2, "L2 on the implicit BT reward (keeps unsampled responses finite)")
    K: int = param(8, "samples per round (sampled form)", ge=2)
    inner_steps: int = param(5, "gradient steps on the DPO loss per round (sampled form)", ge=1)
    lr: float = param(0.5, "learning rate of those gradient steps (sampled form)", gt=0)


# ---- Loss / update


def exact_step(theta: np.ndarray, P: np.ndarray, cfg: Config) -> np.ndarray:
    """Population DPO round: BT reward fitted on-policy, then tilt the current policy."""
    pi = pg.softmax(theta)
    r = pg.fit_bradley_terry(pi[:, None] * pi[None, :] * P, ridge=cfg.ridge)  # (n,)
    return pg.log_softmax(pg.log_softmax(theta) + r / cfg.beta)  # Eq. (2)


def sampled_step(theta: np.ndarray, oracle: pg.Oracle, rng: np.random.Generator, cfg: Config) -> np.ndarray:
    """RLHFlow round: best-vs-worst pair of K samples, a few DPO gradient steps."""
    ys = pg.sample(pg.softmax(theta), cfg.K, rng)
    win = pg.empirical_win_rates(ys, oracle)
    if win.max() == win.min():
        return theta  # tie: the pair carries no preference
    yw, yl = torch.tensor([ys[win.argmax()]]), torch.tensor([ys[win.argmin()]])
    prev = torch.tensor(pg.log_softmax(theta))  # reference = current policy

    def loss(logp: torch.Tensor) -> torch.Tensor:
        return dpo_loss(logp[yw], logp[yl], prev[yw], prev[yl], beta=cfg.beta)  # Eq. (1)

    return pg.fit_logits(theta, loss, cfg.inner_steps, cfg.lr)


def lm_step(game: LMPreferenceRun, t: int, cfg: Config) -> dict[str, float]:
    """RLHFlow round on the language model: best vs worst of each prompt's K completions."""
    b = game.rollout(t)
    win = game.win_rates(b, include_self=True).numpy()  # (B,)
    w, lo = [], []
    for g in range(b.groups):
        sl = win[b.group(g)]
        if sl.max() > sl.min():  # a tie carries no preference
            w.append(g * b.K + int(sl.argmax()))
            lo.append(g * b.K + int(sl.argmin()))
    if not w:
        return {"losses/dpo": 0.0}
    yw, yl = torch.tensor(w), torch.tensor(lo)

    def loss() -> torch.Tensor:
        lp = game.logps(b)
        return dpo_loss(lp[yw], lp[yl], b.prev_logps[yw], b.prev_logps[yl], beta=cfg.beta)  # Eq. (1)

    return {"losses/dpo": game.fit(loss, cfg.inner_steps)}


# ---- Train


def train(cfg: Config, callback=None) -> PreferenceHistory:
    """Run online DPO from π_0 = uniform and return the exploitability curves."""
    if cfg.mode == "lm":
        lm = LMPreferenceRun(cfg, "online_dpo", callback)
        return lm.run(lambda t: lm_step(lm, t, cfg))
    game = PreferenceRun(cfg, "online_dpo", callback)
    if cfg.mode == "exact":
        step = lambda th, t: exact_step(th, game.P, cfg)  # noqa: E731
    else:
        step = lambda th, t: sampled_step(th, game.oracle, game.rng, cfg)  # noqa: E731
    return game.run(step)


# ---- Entry: `spkit train online_dpo` takes its flags from Config and prints summary(history)

__all__ = ["PAPER", "Config", "train", "summary"]
