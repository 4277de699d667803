r"""RFT — rejection-sampling fine-tuning on a verifiable task (the baseline of issue 13).

Yuan, Yuan, Li, Dong, Lu, Tan, Zhou, Zhou (2023), "Scaling Relationship on Learning
Mathematical Reasoning with Large Language Models", arXiv:2308.01825. The online form run here
is RAFT (Dong et al. 2023, arXiv:2304.06767) / ReST-EM (Singh et al. 2023, arXiv:2312.06585)
with one improve step per batch.

Idea: the model already solves some problems some of the time. Sample K solutions per problem,
keep only those the checker accepts, and fine-tune on them: maximum likelihood on the model's
own correct reasoning paths. Failed samples contribute nothing (NFT, later in issue 13, gives
them a weight; RFT is its special case with weight 0).

Algorithm (one step t):
  1. Rollout: K completions y_1..y_K ~ π_θ(·|x) at temperature T for each of `problems`
     train-split problems x (`spkit.rl.verifiable`; held-out problems never appear).
  2. Reject: D_t = {(x, y_j) : r(x, y_j) = 1}, r = strict `#### n` answer match       # Eq. (1)
     (`--dedup`: each distinct completion once per problem, the paper's distinct paths).
  3. SFT on D_t with the prompt masked out:
        L(θ) = −(1/Σ_{D_t}|y|) Σ_{(x,y)∈D_t} Σ_t log π_θ(y_t | x, y_<t)                  # Eq. (2)
     `epochs` optimizer steps over D_t (micro-batched, exact token mean; `verifiable.sft_update`).
  4. Every `eval_every` steps: greedy held-out accuracy, the `spkit eval --tasks spkit_arith`
     number (`spkit.rl.verifiable.evaluate_heldout`), against the completions drawn so far.
The run itself (seeds, budget, checkpoints, resume, logs, plots, final/) is `spkit.run.Run`.
Under torchrun `problems` is per rank: the ranks draw one batch of `problems × world`, each
samples its share with the whole batch's row seeds, and Eq. (2)'s token mean runs over all
ranks' D_t, so 2 ranks × B make one process's update on 2B (tested).

Deviations from the paper:
  1. Online: the paper samples once (K = 100) from the SFT model and fine-tunes the base model
     on the pooled correct paths; here every step samples from the current model and takes
     `epochs` gradient steps on that batch (RAFT / ReST-EM iterated), so RFT runs on the same
     loop, budget and x-axis (samples drawn) as GRPO.
  2. Distinct paths are distinct completion texts; the paper compares the lists of equations,
     which on this task are the whole solution, so the two nearly coincide.
  3. A 3.3M-parameter model (spkit-tiny) on generated arithmetic problems in GSM8K's format
     instead of LLaMA 7B-70B on GSM8K.

Metrics: train/reward (share of correct samples), train/kept (rows trained on), train/samples
(completions drawn so far), train/completion_len, train/rollout_seconds, losses/sft,
losses/grad_norm; eval/strict (the headline), eval/flexible, eval/strict/level_<s>,
eval/completion_len.

Commands:
  spkit train rft --max-minutes 8 --threads 1 --out runs/rft
  spkit train rft --problems 16 --k 8 --lr 5e-5 --steps 200 --eval-every 20 --seed 1 --out runs/rft_s1
  spkit train rft --out runs/rft --steps 400 --resume                       # continue a run
  spkit eval --model runs/rft/final --tasks spkit_arith                     # the same number
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spkit.config import param
from spkit.rl import verifiable as V
from spkit.run import History
from spkit.run.distributed import global_sum, shard, world
from spkit.seeding import derive_seed

PAPER = {
    "title": "Scaling Relationship on Learning Mathematical Reasoning with Large Language Models",
    "arxiv": "2308.01825",
    "citation": "Yuan, Yuan, Li, Dong, Lu, Tan, Zhou, Zhou. RFT. arXiv:2308.01825, 2023.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(V.VerifiableConfig):
    """RFT settings (model, task, problems, k, temperature ... from `VerifiableConfig`); defaults
    sized for spkit-tiny on a CPU."""

    steps: int = param(200, "rejection-sampling rounds (sample, filter, fine-tune)", ge=0, identity=False)
    dedup: bool = param(True, "train on each distinct correct completion of a problem once (the paper)")
    lr: float = param(2e-5, "learning rate (Adam); chosen on the dev split (assets/results/dev_select.jsonl)", gt=0)
    epochs: int = param(1, "optimizer steps over each step's kept completions", ge=1)
    micro_batch: int = param(64, "completions per forward/backward (gradient accumulation)", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)

    PRESETS = {  # a class constant (no annotation), not a field
        "gsm8k": lambda: Config(task="gsm8k", problems=32, k=8, lr=1e-5, micro_batch=8, eval_every=25),
    }


# ---- 1-2. Rollout and rejection ------------------------------------------------------------------
def keep_correct(rewards: torch.Tensor, texts: list[str], k: int, dedup: bool) -> list[int]:
    """Step 2: the rows of D_t (Eq. 1), in row order; with `dedup` the first of each distinct
    text within a problem's group."""
    kept, seen = [], set()
    for i, r in enumerate(rewards.tolist()):
        key = (i // k, texts[i])
        if r > 0 and not (dedup and key in seen):
            kept.append(i)
            seen.add(key)
    return kept


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/strict", "eval/flexible", "train/reward", "train/kept", "losses/sft"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run RFT; return every logged row. `callback(step, metrics)` after each logged step."""
    ctx = V.start(cfg, "rft", callback, PLOT_KEYS, lr=cfg.lr)
    task, model, optimizer, counter, sampler, params = (
        ctx.task, ctx.model, ctx.optimizer, ctx.counter, ctx.sampler, ctx.params)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        every = task.train_problems(cfg.problems * world()[1], derive_seed(cfg.seed, "problems", t))
        mine = shard(len(every))  # torchrun: this rank's problems, with the whole batch's row seeds
        problems = every[mine]
        outs = V.sample_groups(sampler, problems, cfg.k, params, derive_seed(cfg.seed, "sample", t),
                               mine.start * cfg.k)  # 1
        counter.samples += int(global_sum(len(outs)))
        t_roll = time.perf_counter() - t0
        rewards = V.score(outs, problems, cfg.k)
        kept = keep_correct(rewards, [o.text for o in outs], cfg.k, cfg.dedup)  # 2
        losses = V.sft_update(model, optimizer, [outs[i].prompt_ids for i in kept],
                              [outs[i].token_ids for i in kept], cfg.epochs, cfg.micro_batch,
                              cfg.max_grad_norm) if global_sum(len(kept)) else {}  # 3: Eq. (2); all ranks or none
        return {"train/reward": rewards.mean().item(), "train/kept": float(len(kept)),
                "train/samples": float(counter.samples),
                "train/completion_len": sum(len(o.token_ids) for o in outs) / len(outs),
                "train/rollout_seconds": t_roll, "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    return ctx.run.loop(step, ctx.evaluator(cfg), V.sample_budget(cfg), split_rollouts=False)  # 4: the held-out evaluation


def summary(history: History) -> str:
    """The line `spkit train rft` prints at the end."""
    return V.summary_line(history)


__all__ = ["PAPER", "Config", "keep_correct", "train", "summary"]
