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

Deviations from the papers:
  1. A finite response set replaces an LM; mirror ascent replaces PPO; the reward is fitted
     once, from the reference policy's samples, as in the original pipeline.

Commands:
  spkit train rlhf_bt --family three_cycle --beta 0.1
  spkit train rlhf_bt --family random --n 10 --mode sampled --seed 1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spkit.algos.preference_game import PreferenceHistory, PreferenceRun, ProblemConfig, summary
from spkit.config import param
from spkit.rl import preference_games as pg

PAPER = {
    "title": "Deep Reinforcement Learning from Human Preferences",
    "arxiv": "1706.03741",
    "citation": "Christiano et al. Deep RL from Human Preferences. NeurIPS 2017, arXiv:1706.03741.",
}


# ---- Config


@dataclass
class Config(ProblemConfig):
    mode: str = param("exact", "exact (expected comparisons) | sampled (n_pairs noisy comparisons)",
                      choices=("exact", "sampled"))
    steps: int = param(2000, "number of policy-optimisation iterations", ge=0, identity=False)
    beta: float = param(0.1, "β: KL coefficient toward π_ref", gt=0)
    eta: float = param(0.5, "η: mirror-ascent step size", gt=0)
    n_pairs: int = param(2000, "comparisons used to fit the reward (sampled form)", ge=1)


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


# ---- Train


def train(cfg: Config, callback=None) -> PreferenceHistory:
    """Fit the BT reward once, then optimise the KL-regularised objective."""
    game = PreferenceRun(cfg, "rlhf_bt", callback)
    r = pg.fit_bradley_terry(reference_wins(game.P, game.ref, cfg, np.random.default_rng(cfg.seed)))  # Eq. (1)
    log_ref = np.log(game.ref)

    def step(theta: np.ndarray, t: int) -> np.ndarray:
        return pg.mirror_step(pg.log_softmax(theta), r, cfg.eta, cfg.beta, log_ref)  # Eq. (3)

    return game.run(step, oracle_calls=cfg.n_pairs if cfg.mode != "exact" else 0)


# ---- Entry: `spkit train rlhf_bt` takes its flags from Config and prints summary(history)

__all__ = ["PAPER", "Config", "train", "summary"]
