"""Classic RLHF with a Bradley–Terry reward — the baseline the preference-game methods improve on.

Christiano, Leike, Brown, Martic, Legg, Amodei (2017), arXiv:1706.03741; Ouyang et al. (2022),
arXiv:2203.02155. On a finite response set, where we can show exactly what it gets wrong.

Idea: fit a scalar reward r(y) to pairwise preferences with the Bradley–Terry model
P(y ≻ y') = σ(r(y) − r(y')), then maximise E_π[r] − β KL(π‖π_ref), whose optimum is
π_β ∝ π_ref exp(r/β). A scalar reward orders responses, so it cannot represent a preference
cycle: on intransitive preferences the BT fit compresses the cycle into a ranking and the
policy piles onto its top — exploitable, however long it trains. (On the *symmetric*
Condorcet cycle the fit is flat and π_β = π_ref is the winner by accident.)

Equations (numbered here):
  (1) r = argmax_r Σ_{y,y'} w(y, y') log σ(r(y) − r(y')), w = comparison counts  — BT fit
  (2) π_β(y) ∝ π_ref(y) exp(r(y)/β)                                           — KL-regularised optimum
  (3) log π_{t+1} = (1 − ηβ) log π_t + ηβ log π_ref + η r (− log Z)            — mirror ascent to (2)

Algorithm:
  1. exact form: fit (1) to the expected comparisons of pairs from π_ref (w = π_ref ⊗ π_ref · P).
     sampled form: fit (1) to `n_pairs` noisy comparisons of pairs sampled from π_ref.
  2. iterate (3) (policy optimisation of the fixed reward), logging exploitability.
  3. lm form (`--mode lm`, `spkit.rl.lm_preference`): fit (1) over response classes to
     `n_pairs` comparisons (class oracle or learned judge) of the initial model's completions,
     then REINFORCE (leave-one-out baseline, one Adam step per batch) on the KL-shaped reward
     r(y) − β(log π_t(y|x) − log π_ref(y|x)) of K completions per prompt, as PPO-RLHF does.

Deviations from the papers:
  1. A finite response set replaces an LM; mirror ascent replaces PPO; the reward is fitted
     once, from the reference policy's samples, as in the original pipeline.

Commands:
  spkit train rlhf_bt --family three_cycle --beta 0.1
  spkit train rlhf_bt --family random --n 10 --mode sampled --seed 1
  spkit train rlhf_bt --mode lm --steps 200 --threads 1 --out runs/rlhf_bt_lm
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
from spkit.rl.advantages import rloo_advantages
from spkit.rl.losses import ppo_clip_loss
from spkit.seeding import derive_seed

PAPER = {
    "title": "Deep Reinforcement Learning from Human Preferences",
    "arxiv": "1706.03741",
    "citation": "Christiano et al. Deep RL from Human Preferences. NeurIPS 2017, arXiv:1706.03741.",
}


# ---- Config


@dataclass
class Config(ProblemConfig):
    mode: str = param("exact", "exact (expected comparisons) | sampled (n_pairs noisy comparisons) | lm "
                      "(language model)", choices=("exact", "sampled", "lm"))
    steps: int = param(2000, "number of policy-optimisation iterations", ge=0, identity=False)
    beta: float = param(0.1, "β: KL coefficient toward π_ref", gt=0)
    eta: float = param(0.5, "η: mirror-ascent step size", gt=0)
    n_pairs: int = param(2000, "comparisons used to fit the reward (sampled and lm forms)", ge=1)
    K: int = param(8, "completions per prompt and step (lm form)", ge=2)


# ---- Reward


def reference_wins(P: np.ndarray, ref: np.ndarray, cfg: Config, rng: np.random.Generator) -> np.ndarray:
    """Win counts W[i, j] = #(i ≻ j) among comparisons of pairs drawn from π_ref."""
    if cfg.mode == "exact":
        return ref[:, None] * ref[None, :] * P  # expected counts (per comparison)
    oracle = pg.Oracle(P, noisy=True, rng=rng)
    a, b = pg.sample(ref, cfg.n_pairs, rng), pg.sample(ref, cfg.n_pairs, rng)
    a_wins = oracle(a, b) > 0.5
    W = np.zeros_like(P)
    np.add.at(W, (np.where(a_wins, a, b), np.where(a_wins, b, a)), 1.0)
    return W


def optimal_policy(r: np.ndarray, ref: np.ndarray, beta: float) -> np.ndarray:
    """The closed-form optimum of E_π[r] − β KL(π‖π_ref)."""
    return pg.softmax(np.log(ref) + r / beta)  # Eq. (2)


def lm_reward(game: LMPreferenceRun, cfg: Config) -> np.ndarray:
    """Eq. (1) over classes, from `n_pairs` comparisons of pairs of the initial model's completions."""
    n = max(2, int(np.ceil(np.sqrt(2 * cfg.n_pairs / len(game.prompts)))))  # ≈ n_pairs pairs in all
    outs, cls = game.sample(n, derive_seed(cfg.seed, "reward"))
    W = np.zeros((len(lmp.CLASSES),) * 2)
    calls = 0
    for g in range(len(game.prompts)):
        sl = slice(g * n, (g + 1) * n)
        o = lmp.GroupOracle(cls[sl], np.random.default_rng(derive_seed(cfg.seed, "reward_pairs", g)), P=game.P,
                            judge=game.judge, texts=[x.text for x in outs[sl]])
        a, b = pg.ordered_pairs(np.arange(n), o)
        np.add.at(W, (cls[sl][a], cls[sl][b]), 1.0)
        calls += o.calls
    game.state.calls += calls
    return pg.fit_bradley_terry(W)


def lm_step(game: LMPreferenceRun, t: int, r: np.ndarray, cfg: Config) -> dict[str, float]:
    """REINFORCE on the KL-shaped BT reward of K completions per prompt."""
    b = game.rollout(t)
    ref = game.ref_logps(b)
    reward = torch.tensor(r[b.classes], dtype=torch.float32) - cfg.beta * (b.prev_logps - ref)  # (B,)
    adv = rloo_advantages(reward, group_size=b.K)

    def loss() -> torch.Tensor:
        lp, mask = game.token_logps(b)
        return ppo_clip_loss(lp, lp.detach(), adv, mask, aggregation="dr_grpo", max_len=1)  # Σ_t, mean over y

    return {"losses/policy": game.fit(loss, 1), "train/reward": float(r[b.classes].mean())}


# ---- Train


def train(cfg: Config, callback=None) -> PreferenceHistory:
    """Fit the BT reward once, then optimise the KL-regularised objective."""
    if cfg.mode == "lm":
        lm = LMPreferenceRun(cfg, "rlhf_bt", callback)
        r_lm = lm_reward(lm, cfg)  # Eq. (1)
        return lm.run(lambda t: lm_step(lm, t, r_lm, cfg))
    game = PreferenceRun(cfg, "rlhf_bt", callback)
    r = pg.fit_bradley_terry(reference_wins(game.P, game.ref, cfg, np.random.default_rng(cfg.seed)))  # Eq. (1)
    log_ref = np.log(game.ref)

    def step(theta: np.ndarray, t: int) -> np.ndarray:
        return pg.mirror_step(pg.log_softmax(theta), r, cfg.eta, cfg.beta, log_ref)  # Eq. (3)

    return game.run(step, oracle_calls=cfg.n_pairs if cfg.mode != "exact" else 0)


# ---- Entry: `spkit train rlhf_bt` takes its flags from Config and prints summary(history)

__all__ = ["PAPER", "Config", "train", "summary"]
