r"""RLSP — reinforcement learning with an exploration reward that can never beat correctness.

Ye et al. (2025), "On the Emergence of Thinking in LLMs I: Searching for the
Right Intuition", arXiv:2502.06773.

Idea: a verifier's reward alone says nothing about *how* an answer was reached, and a policy
that always answers in one line never practises search. RLSP decouples the two signals: an
outcome reward for being right plus an exploration reward for the behaviour that search needs
(here: writing more distinct intermediate steps), mixed so that exploration only breaks ties
between answers of equal correctness — a wrong answer can never out-score a right one. Without
that bound the policy can collect the exploration reward instead of solving the problem
(reward hacking); `--no-bound` is that ablation.

Algorithm (one step t; the GRPO loop of `spkit.algos.grpo`, only the reward changes):
  1. Rollout: K completions of each of `problems` train-split problems.
  2. Reward, for completion y with n(y) distinct non-empty lines before its `####` answer line:
        R_explore(y) = min(n(y), n_max) / n_max ∈ [0, 1]        (bounded, the default)    # Eq. (E)
        R_explore(y) = n(y) / n_max                             (--no-bound ablation)
        r(y) = α·1[y right] + (1 − α)·R_explore(y)                                         # Eq. (r)
     The bound: with R_explore ∈ [0, 1] and α > 1/2, every right answer scores ≥ α and every
     wrong one ≤ 1 − α < α, so the gap is at least 2α − 1 > 0 (tested; α ≤ 1/2 is refused
     unless --no-bound).
  3-4. GRPO's advantages and clipped update on r (`spkit.algos.grpo.update`).
  5. Every `eval_every` steps: greedy held-out accuracy (`spkit eval --tasks spkit_arith`).

Deviations from the paper:
  1. No SFT stage: spkit-tiny was pretrained on the solution format already; the paper's SFT
     on reasoning traces precedes RL on 7B-32B models.
  2. GRPO instead of PPO with a value network (the paper's RL step is PPO).
  3. The exploration reward is the count of distinct intermediate lines, the simplest
     "more intermediate steps" signal of the paper's family; the paper's exact R_explore and α
     were not checked against code (none was found).

Metrics (besides GRPO's): train/reward (share of right answers, as for every trainer),
train/shaped_reward (mean r), train/explore (mean R_explore), train/distinct_steps (mean n(y)),
train/wrong_beats_right (share of groups where some wrong answer out-scores some right one:
0 with the bound), train/completion_len; eval/strict (the headline), eval/completion_len.
The metrics of the reward are computed on the groups trained on (all drawn groups unless
--dynamic-sampling).

Commands:
  spkit train rlsp --max-minutes 8 --threads 1 --out runs/rlsp
  spkit train rlsp --alpha 0.55 --explore-cap 2 --max-minutes 8 --out runs/rlsp_b           # bound on ...
  spkit train rlsp --alpha 0.55 --explore-cap 2 --no-bound --max-minutes 8 --out runs/rlsp_nb  # ... and off
  spkit train rlsp --out runs/rlsp --steps 400 --resume                               # continue a run
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from spkit.algos import grpo
from spkit.config import param
from spkit.errors import SpkitError
from spkit.rl import verifiable as V
from spkit.run import History
from spkit.sampling import Completion

PAPER = {
    "title": "On the Emergence of Thinking in LLMs I: Searching for the Right Intuition",
    "arxiv": "2502.06773",
    "citation": "Ye et al. RLSP (reinforcement learning via self-play). arXiv:2502.06773, 2025.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(grpo.Config):
    """GRPO's settings plus the shaped reward's."""

    alpha: float = param(0.8, "α, weight of correctness; 1 − α weighs exploration (> 0.5 with the bound)",
                         ge=0, le=1)
    explore_cap: int = param(8, "n_max: distinct intermediate lines for the full exploration reward", ge=1)
    bound: bool = param(True, "cap R_explore at 1 so a wrong answer never out-scores a right one "
                        "(--no-bound: the reward-hacking ablation)")

    PRESETS = {}  # GRPO's presets build GRPO configs; RLSP has none of its own


# ---- 2. The shaped reward ----------------------------------------------------------------------
def distinct_steps(text: str) -> int:
    """n(y): distinct non-empty lines (stripped) before the first `####` answer line."""
    lines = []
    for line in text.splitlines():
        if line.strip().startswith("####"):
            break
        if line.strip():
            lines.append(line.strip())
    return len(set(lines))


def explore_reward(n: int | Sequence[int] | torch.Tensor, cap: int, bound: bool = True) -> torch.Tensor:
    """Eq. (E): n/n_max, capped at 1 with `bound`."""
    x = torch.as_tensor(n, dtype=torch.float32) / cap
    return x.clamp(max=1.0) if bound else x


def shaped_reward(correct: torch.Tensor, explore: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. (r): α·1[right] + (1 − α)·R_explore."""
    return alpha * correct + (1.0 - alpha) * explore


def check_bound(cfg: Config) -> None:
    """Refuse a bounded run whose α lets exploration outweigh correctness (one line)."""
    if cfg.bound and not cfg.alpha > 0.5:
        raise SpkitError(f"--alpha {cfg.alpha}: with the bound α must be > 0.5 so a wrong answer (≤ 1 − α) "
                         "can never out-score a right one (≥ α); use --no-bound for the ablation")


def wrong_beats_right(rewards: torch.Tensor, correct: torch.Tensor, k: int) -> float:
    """Share of groups where some wrong completion scores above some right one."""
    r, c = rewards.reshape(-1, k), correct.reshape(-1, k).bool()
    bad = [bool(c[g].any() and (~c[g]).any() and r[g][~c[g]].max() > r[g][c[g]].min()) for g in range(len(r))]
    return sum(bad) / max(len(bad), 1)


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/strict", "train/reward", "train/explore", "train/distinct_steps", "train/completion_len",
             "eval/completion_len"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run GRPO on the RLSP reward; return every logged row."""
    check_bound(cfg)

    def score(outs: list[Completion], problems: list[dict], k: int) -> torch.Tensor:  # 2
        correct = V.score(outs, problems, k)
        explore = explore_reward([distinct_steps(o.text) for o in outs], cfg.explore_cap, cfg.bound)
        return shaped_reward(correct, explore, cfg.alpha)

    def after_rollout(t: int, batch: grpo.Batch) -> dict[str, float]:
        if not batch.completions:
            return {}
        correct = V.score(batch.completions, batch.problems, cfg.k)
        n = [distinct_steps(c.text) for c in batch.completions]
        return {"train/reward": correct.mean().item(), "train/shaped_reward": batch.rewards.mean().item(),
                "train/explore": explore_reward(n, cfg.explore_cap, cfg.bound).mean().item(),
                "train/distinct_steps": sum(n) / len(n),
                "train/wrong_beats_right": wrong_beats_right(batch.rewards, correct, cfg.k)}

    hooks = grpo.Hooks(score_fn=score, after_rollout=after_rollout)
    return grpo.train(cfg, callback, name="rlsp", hooks=hooks, plot_keys=PLOT_KEYS)


def summary(history: History) -> str:
    """The line `spkit train rlsp` prints at the end."""
    return V.summary_line(history)


__all__ = ["PAPER", "Config", "distinct_steps", "explore_reward", "shaped_reward", "check_bound",
           "wrong_beats_right", "train", "summary"]
