r"""NFT — Negative-aware Fine-Tuning: supervised learning that also learns from wrong answers.

Chen et al. (2025), "Bridging Supervised Learning and
Reinforcement Learning in Math Reasoning", arXiv:2505.18116 (code: NVlabs/NFT).

Idea: rejection-sampling fine-tuning (RFT) throws the wrong answers away. NFT keeps them through
an *implicit negative policy*: if π_old answers a question correctly with rate r, it splits as
π_old = r·π⁺ + (1 − r)·π⁻, so the distribution of its wrong answers is π⁻ = (π_old − r·π⁺)/(1 − r).
Fitting the *positive* policy π_θ ≈ π⁺ by maximum likelihood on the right answers and, at the
same time, the implied π⁻ by maximum likelihood on the wrong answers is a supervised objective
that uses every sample. Token by token, π⁻/π_old = (1 − r·R)/(1 − r) with R = π_θ/π_old. On
policy (R = 1) its gradient is Dr. GRPO's with advantage 1[correct] − r; with the negative
weight at 0 it is (weighted) RFT.

Algorithm (one step t):
  1. Rollout: K completions of each of `problems` train-split problems (GRPO's rollout,
     `spkit.algos.grpo.rollout`); `--dynamic-sampling` refills the batch with groups that have
     both right and wrong answers, as the official runs do.
  2. Reward: c_i = 1[strict answer right]; r_q = mean_{i∈q} c_i, clamped to [0.02, 0.98].  # Eq. (r)
     Groups with all answers alike are dropped (r_q ∈ {0, 1}: no implicit negative policy).
  3. Per token, R_{i,t} = exp(min(log π_θ − log π_old, 10)) and                            # Eq. (R)
        ℓ⁺_{i,t} = −log R_{i,t}                                          (c_i = 1)         # Eq. (+)
        ℓ⁻_{i,t} = −log max_sg((1 − r_q·R_{i,t}) / (1 − r_q), ε)         (c_i = 0)         # Eq. (−)
     max_sg clamps the value at ε = `eps_neg` (1.0) and passes the gradient
     (`spkit.rl.losses.clamp_pass_grad`).
  4. L(θ) = agg_{i,t} w_q·(c_i·ℓ⁺ + λ·(1 − c_i)·ℓ⁻),  w_q = 1 − r_q,  λ = `neg_weight`     # Eq. (L)
     (`spkit.rl.losses.nft_loss`), `ppo_epochs` optimizer steps over the batch, no KL, no entropy.
  5. Every `eval_every` steps: greedy held-out accuracy (`spkit eval --tasks spkit_arith`).
The run itself (seeds, budget, checkpoints, resume, logs, plots, final/) is `spkit.run.Run`.

Special cases (tested): with `--neg-weight 0 --no-weight-by-wrong-rate --aggregation
token_mean`, an update on a batch of mixed groups equals RFT's SFT step
(`spkit.rl.verifiable.sft_update`, RFT's `--no-dedup`) on that batch's correct completions,
gradient for gradient and weight for weight: the negatives are then not part of the batch, −log R has the gradient of −log π, and
both average over the positives' tokens. The official "RFT" baseline (neg_weight 0 with
normalize 1) is the same with w_q = 1 − r_q.

Deviations from the paper:
  1. A 3.3M-parameter model (spkit-tiny) on generated arithmetic problems, K = 8 and 16
     problems per step on a CPU, instead of Qwen2.5-Math-7B/32B with K = 16 and 512 prompts.
  2. Aggregation: the official loss sums over tokens and divides by a constant (1000) per
     mini-batch; the default `dr_grpo` here divides the sum by the constant G·K·max_new_tokens
     (the same "every token counts the same" weighting on this batch size).
  3. One optimizer step per rollout batch (the official splits a batch into 16 mini-batches);
     π_old is the sampling policy, so ratios start at 1 (`--ppo-epochs` > 1 reuses the batch).
  4. Dynamic sampling gives up after `max_rounds` rounds (official: 10) and trains on the
     mixed groups it has.

Metrics: train/reward, train/solved_all, train/solved_none, train/groups, train/samples,
train/completion_len, train/correct_rate (mean r_q of the trained groups), train/positives,
train/negatives (rows trained on); losses/policy, losses/grad_norm; eval/strict (the headline), eval/flexible,
eval/strict/level_<s>.

Commands:
  spkit train nft --max-minutes 8 --threads 1 --out runs/nft
  spkit train nft --neg-weight 0 --max-minutes 8 --out runs/nft_rft               # the RFT ablation
  spkit train nft --out runs/nft --steps 400 --resume                              # continue a run
  spkit eval --model runs/nft/final --tasks spkit_arith                            # the same number
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spkit.algos import grpo
from spkit.config import param
from spkit.logprobs import pad_right
from spkit.rl import verifiable as V
from spkit.rl.advantages import _grouped
from spkit.rl.losses import nft_loss
from spkit.run import History, fsdp
from spkit.run.distributed import clip_grad_norm, global_sum
from spkit.sampling import behaviour_logprobs
from spkit.seeding import derive_seed

PAPER = {
    "title": "Bridging Supervised Learning and Reinforcement Learning in Math Reasoning",
    "arxiv": "2505.18116",
    "citation": "Chen et al. NFT (Negative-aware Fine-Tuning). arXiv:2505.18116, 2025.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(V.VerifiableConfig):
    """NFT settings (model, task, problems, temperature ... from `VerifiableConfig`; official values
    where they carry over); sized for spkit-tiny on a CPU."""

    steps: int = param(200, "updates (rollout batches)", ge=0, identity=False)
    k: int = param(8, "completions per problem (official: 16)", ge=2)
    neg_weight: float = param(1.0, "λ, weight of the wrong answers' loss (0 = RFT on the right ones)", ge=0)
    eps_neg: float = param(1.0, "ε: the negative ratio's value is clamped at ≥ ε, gradient passed", gt=0)
    weight_by_wrong_rate: bool = param(True, "weight each question's tokens by 1 − r_q (official normalize=1)")
    aggregation: str = param("dr_grpo", "token aggregation: dr_grpo (Σ/(G·K·max_new_tokens), official-like) | "
                             "token_mean | seq_mean", choices=grpo.AGGREGATIONS)
    dynamic_sampling: bool = param(True, "refill the batch with groups holding both right and wrong answers")
    max_rounds: int = param(4, "dynamic sampling: at most this many rollout rounds per step", ge=1)
    lr: float = param(2e-5, "learning rate (Adam)", gt=0)
    ppo_epochs: int = param(1, "optimizer steps over each rollout batch", ge=1)
    micro_batch: int = param(64, "completions per forward/backward (gradient accumulation)", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)


# ---- 2. Correct rates and the rows trained on -----------------------------------------------------
def correct_rates(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """(G·K,) r_q of each row's question: the share of its group answered right (Eq. r, unclamped)."""
    return _grouped(rewards, k).mean(1).repeat_interleave(k)


def trained_rows(rewards: torch.Tensor, k: int, neg_weight: float) -> list[int]:
    """Rows of the groups with both right and wrong answers; the wrong rows only when λ > 0
    (with λ = 0 they carry no loss, and leaving them out makes token_mean average over the
    right answers' tokens, as RFT does)."""
    mixed = V.mixed_groups(rewards, k).repeat_interleave(k)
    return [i for i, (m, c) in enumerate(zip(mixed.tolist(), rewards.tolist(), strict=True))
            if m and (c > 0 or neg_weight > 0)]


# ---- 3-4. The NFT update ----------------------------------------------------------------------------
def update(model, optimizer, batch: grpo.Batch, cfg: Config, max_len: int = V.EVAL_MAX_NEW_TOKENS) -> dict[str, float]:
    """Steps 2-4: `ppo_epochs` optimizer steps of Eq. (L) over the batch's mixed groups
    (`max_len`: the dr_grpo constant, the completion budget `cfg.new_tokens(task)`)."""
    rows = trained_rows(batch.rewards, cfg.k, cfg.neg_weight)
    rates = correct_rates(batch.rewards, cfg.k)
    comps = [batch.completions[i] for i in rows]
    correct, rate = batch.rewards[rows], rates[rows]
    P, C = [c.prompt_ids for c in comps], [c.token_ids for c in comps]
    n_rows, n_tok = V.global_batch(len(comps), float(sum(len(c) for c in C)))  # all ranks' counts / world
    stats = {"policy": 0.0, "grad_norm": 0.0}
    if not n_rows:  # no rank has a row to train on: nobody steps
        return stats
    model.train()
    for _ in range(cfg.ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        for sl in fsdp.lockstep(model, V.microbatches(len(comps), cfg.micro_batch)):
            logp, mask = V.padded_logprobs(model, P[sl], C[sl], cfg.temperature)  # (b, T)
            old = pad_right([behaviour_logprobs(c, cfg.temperature) for c in comps[sl]],
                            logp.shape[1]).to(logp.device)  # (b, T): π_old at the rollout's T
            share = V.microbatch_share(cfg.aggregation, mask, n_rows, n_tok)
            loss = nft_loss(logp, old, correct[sl], rate[sl], mask, cfg.neg_weight, cfg.eps_neg,
                            cfg.weight_by_wrong_rate, cfg.aggregation, max_len) * share  # Eq. (L)
            loss.backward()
            stats["policy"] += loss.item() / cfg.ppo_epochs
        if cfg.max_grad_norm > 0:
            stats["grad_norm"] = clip_grad_norm(model, cfg.max_grad_norm)
        optimizer.step()
    model.eval()
    return stats


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/strict", "eval/flexible", "train/reward", "train/correct_rate", "losses/policy"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run NFT; return every logged row. `callback(step, metrics)` after each logged step."""
    ctx = V.start(cfg, "nft", callback, PLOT_KEYS, lr=cfg.lr)
    task, model, optimizer, counter, sampler, params = (
        ctx.task, ctx.model, ctx.optimizer, ctx.counter, ctx.sampler, ctx.params)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        batch = grpo.rollout(sampler, cfg, params, derive_seed(cfg.seed, "step", t), task.train_problems)  # 1
        counter.samples += int(global_sum(batch.drawn))  # every rank's samples
        t_roll = time.perf_counter() - t0
        losses = update(model, optimizer, batch, cfg, cfg.new_tokens(task))  # 2-4
        rows = trained_rows(batch.rewards, cfg.k, cfg.neg_weight)
        correct = batch.rewards[rows]
        mixed = V.mixed_groups(batch.rewards, cfg.k)
        rate = _grouped(batch.rewards, cfg.k).mean(1)[mixed]
        return {**grpo.rollout_metrics(batch, cfg.k, counter.samples),
                "train/correct_rate": rate.mean().item() if len(rate) else 0.0,
                "train/positives": float((correct > 0).sum()), "train/negatives": float((correct == 0).sum()),
                "train/rollout_seconds": t_roll, "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    return ctx.run.loop(step, ctx.evaluator(cfg), V.sample_budget(cfg), split_rollouts=False)  # 5: the held-out evaluation


def summary(history: History) -> str:
    """The line `spkit train nft` prints at the end."""
    return V.summary_line(history)


__all__ = ["PAPER", "Config", "correct_rates", "trained_rows", "update", "train", "summary"]
