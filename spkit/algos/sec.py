r"""SEC — Self-Evolving Curriculum: a bandit picks the difficulty of each training prompt for GRPO.

Chen et al. (2025), "Self-Evolving Curriculum for LLM Reasoning",
arXiv:2505.14970.

Idea: which problems teach the policy most changes as it learns. Treat each difficulty
category as an arm of a non-stationary multi-armed bandit whose reward is the learning signal
the category just gave — the mean absolute advantage of its samples. Groups that are always or
never solved have zero advantage; categories solved about half the time have the largest.
Sampling categories by a Boltzmann distribution over the arms' running values keeps the
curriculum at the frontier of what the model can learn, without a hand-made schedule.

Algorithm (one step t; arms c = the arithmetic step counts 1-4, `spkit.rl.curriculum`):
  1. Each of the `problems` prompts draws its own category
        p(c) = exp(Q(c)/τ) / Σ_c' exp(Q(c')/τ)                                             # Eq. (p)
     and a train-split problem of that level (`V.train_problems(n, seed, steps=c)`).
  2. GRPO rollout and reward (`spkit.algos.grpo.rollout`): K completions per prompt, r = 1[right].
  3. Advantages Â_i as GRPO's (`--scale-rewards`: divided by the group std).
  4. Arm reward r(c) = mean_{i: c_i = c} |Â_i| over this step's samples of category c;     # Eq. (r)
     TD(0) update of every arm, r(c) = 0 for categories not drawn this step:
        Q(c) ← (1 − α)·Q(c) + α·r(c)                                                       # Eq. (Q)
  5. GRPO's update on the batch (`spkit.algos.grpo.update`, every GRPO option applies).
  6. Every `eval_every` steps: greedy held-out accuracy (`spkit eval --tasks spkit_arith`).
`--curriculum random` draws categories uniformly and `--curriculum easy_to_hard` gives all
prompts of step t level ⌊t / stage_steps⌋ + 1: the paper's two baselines, on the same loop (Q is
tracked and logged for all three; only SEC samples from it). α = 0.5 and τ = 0.4 are the
paper's values for math.

Deviations from the paper:
  1. A 3.3M-parameter model (spkit-tiny) on generated arithmetic whose categories are the exact
     step counts, instead of billion-parameter models on planning, inductive-reasoning and
     math tasks (MATH's difficulty levels as categories).
  2. With `--dynamic-sampling` the arm rewards come from the kept (mixed) groups only.
  3. Q starts at 0 for every arm (uniform first step).

Metrics (besides GRPO's): curriculum/q_level_<s> (Q after the step's update),
curriculum/p_level_<s> (next step's sampling probability), curriculum/share_level_<s> (share of
this step's prompts at level s), curriculum/arm_reward_level_<s>, train/reward/level_<s>;
eval/strict (the headline), eval/strict/level_<s>.

Commands:
  spkit train sec --max-minutes 8 --threads 1 --out runs/sec
  spkit train sec --curriculum random --max-minutes 8 --out runs/sec_random
  spkit train sec --curriculum easy_to_hard --stage-steps 20 --max-minutes 8 --out runs/sec_e2h
  spkit train sec --out runs/sec --steps 400 --resume                       # continue a run
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from spkit.algos import grpo
from spkit.config import param
from spkit.errors import SpkitError
from spkit.rl import verifiable as V
from spkit.rl.advantages import grpo_advantages
from spkit.rl.curriculum import CURRICULA, Curriculum, arm_rewards
from spkit.run import History
from spkit.run.distributed import global_sum
from spkit.seeding import derive_seed

PAPER = {
    "title": "Self-Evolving Curriculum for LLM Reasoning",
    "arxiv": "2505.14970",
    "citation": "Chen et al. SEC (Self-Evolving Curriculum). arXiv:2505.14970, 2025.",
}
LEVELS = V.EVAL_LEVELS  # the arms: arithmetic step counts 1-4


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(grpo.Config):
    """GRPO's settings plus the curriculum's."""

    curriculum: str = param("sec", "how prompts' levels are chosen: sec (bandit) | random | easy_to_hard",
                            choices=CURRICULA)
    sec_alpha: float = param(0.5, "α, the TD(0) step size of the arm values", gt=0, le=1)
    sec_tau: float = param(0.4, "τ, the Boltzmann temperature over arm values", gt=0)
    stage_steps: int = param(0, "easy_to_hard: steps per level (0 = --steps / number of levels)", ge=0)

    PRESETS = {}  # GRPO's presets build GRPO configs; SEC has none of its own


# ---- 1. Drawing prompts from the curriculum --------------------------------------------------------
def draw_problems(cur: Curriculum, n: int, seed: int) -> list[dict]:
    """Step 1: one level per prompt from the curriculum (Eq. p), then a train problem of that
    level; prompt i keeps its own draw (the order of the levels is the order of the draws)."""
    levels = cur.sample(n, derive_seed(seed, "arms"))
    pools = {lv: V.train_problems(levels.count(lv), derive_seed(seed, "level", lv), steps=lv)
             for lv in set(levels)}
    return [pools[lv].pop(0) for lv in levels]


# ---- 3-4. Arm rewards and the bandit update ---------------------------------------------------------
def bandit_step(cur: Curriculum, batch: grpo.Batch, cfg: Config) -> dict[str, float]:
    """Steps 3-4: Eq. (r) from GRPO's advantages of the batch (all ranks' rows under torchrun),
    then Eq. (Q) for every arm."""
    adv = grpo_advantages(batch.rewards, cfg.k, scale=cfg.scale_rewards) if batch.problems else batch.rewards
    rows = [p["steps"] for p in batch.problems for _ in range(cfg.k)]
    rewards = arm_rewards(adv, rows, cur.arms, global_sum)  # Eq. (r)
    cur.update(rewards)  # Eq. (Q)
    m = {f"curriculum/arm_reward_level_{lv}": rewards.get(lv, 0.0) for lv in cur.arms}
    for lv in cur.arms:
        sel = [i for i, r in enumerate(rows) if r == lv]
        if sel:
            m[f"train/reward/level_{lv}"] = batch.rewards[sel].mean().item()
    return m


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/strict", "train/reward", *[f"curriculum/q_level_{lv}" for lv in LEVELS],
             *[f"curriculum/share_level_{lv}" for lv in LEVELS]]


def make_curriculum(cfg: Config) -> Curriculum:
    """The curriculum `--curriculum` names, with the paper's α and τ by default."""
    stage = cfg.stage_steps or max(cfg.steps // len(LEVELS), 1)
    return Curriculum(LEVELS, cfg.curriculum, cfg.sec_alpha, cfg.sec_tau, stage)


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run GRPO with the chosen curriculum; return every logged row."""
    if cfg.task != "spkit_arith":
        raise SpkitError(f"SEC's arms are spkit_arith's difficulty levels (step counts); --task {cfg.task} has none")
    cur = make_curriculum(cfg)
    drawn: list[int] = []  # levels drawn this step (all dynamic-sampling rounds)

    def problems_fn(n: int, seed: int) -> list[dict]:
        probs = draw_problems(cur, n, seed)
        drawn.extend(p["steps"] for p in probs)
        return probs

    def after_rollout(t: int, batch: grpo.Batch) -> dict[str, float]:
        m = bandit_step(cur, batch, cfg)
        m.update({f"curriculum/share_level_{lv}": drawn.count(lv) / max(len(drawn), 1) for lv in cur.arms})
        m.update({f"curriculum/q_level_{lv}": q for lv, q in zip(cur.arms, cur.q, strict=True)})
        m.update({f"curriculum/p_level_{lv}": p for lv, p in zip(cur.arms, cur.probs(), strict=True)})
        drawn.clear()
        return m

    hooks = grpo.Hooks(problems_fn=problems_fn, after_rollout=after_rollout, state={"curriculum": cur})
    return grpo.train(cfg, callback, name="sec", hooks=hooks, plot_keys=PLOT_KEYS)


def summary(history: History) -> str:
    """The line `spkit train sec` prints at the end."""
    return V.summary_line(history)


__all__ = ["PAPER", "Config", "LEVELS", "draw_problems", "bandit_step", "make_curriculum", "train", "summary"]
