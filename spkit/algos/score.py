r"""SCoRe — self-correction via multi-turn reinforcement learning, in two stages.

Kumar, Zhuang, Agarwal, Su, Co-Reyes, Singh, Baumli, Iqbal, Bishop, Roelofs, Zhang, McKinney,
Shrivastava, Paduraru, Tucker, Precup, Behbahani, Faust (2024), "Training Language Models to
Self-Correct via Reinforcement Learning", arXiv:2409.12917.

Idea: training on corrections the model happened to make collapses (`spkit.algos.sft_corrections`):
the cheapest way to fit them is to make attempt 2 repeat attempt 1, or to leave attempt 1 where
it was and learn nothing about revising it. SCoRe trains on its own two-attempt episodes with RL
instead, in two stages. Stage I pins attempt 1 to the base model (a strong KL) while it
maximises the reward of attempt 2, so the model learns to improve on first attempts it will
actually make, without the two attempts coupling. Stage II then optimises both attempts, with a
reward bonus on attempt 2 for *progress* (right after wrong) and a penalty for regress (wrong
after right), so the policy cannot score by merely answering well twice.

Algorithm (one step t; `stage1_steps` steps of stage I, then stage II):
  1. Rollout: for each of `problems` train-split problems x, K first attempts y1 ~ π_θ(·|x), then
     one second attempt each, y2 ~ π_θ(·|x, y1, I), I the fixed "review and correct" instruction
     (`spkit.rl.correction.sample_attempts`); r1 = r(y1), r2 = r(y2) ∈ {0, 1} (strict `#### n`).
  2. Stage I:  max_θ E[r(y2)] − β2·KL(π_θ(·|x) ‖ π_ref(·|x))                           # Eq. (3)
     Stage II: max_θ E[r̂(y1) + r̂(y2)] − β1·Σ_i KL(π_θ(·|x_i) ‖ π_ref(·|x_i)),
               r̂(y1) = r1,  r̂(y2) = r2 + α·(r2 − r1)                                # Eq. (4)
  3. REINFORCE with a group baseline, each attempt credited with its own (shaped) reward:
        A_i = R_i − mean_{K samples of x} R        (R = r2 in stage I; r̂(y1), r̂(y2) in stage II)
     and, per attempt a ∈ {1, 2}, the token-level loss of `spkit.rl.losses.grpo_loss`
        L_a = (1/N) Σ_i (1/|y_a,i|) Σ_t [−ρ_{i,t} A_{a,i} + β_a·k3_{i,t}],  ρ = π_θ/π_old = 1 (one step),
        k3 = π_ref/π_θ − log(π_ref/π_θ) − 1 on the sampled tokens (the KL of Eq. 3-4)
     with A_1 = 0, β_1 = β2, β_2 = 0 in stage I and β_1 = β_2 = β1 in stage II;
     one optimizer step on L_1 + L_2.
  4. Every `eval_every` steps: the held-out two-attempt metrics (`spkit.rl.correction`), the
     numbers of `spkit eval --tasks spkit_arith_correct`.

Deviations from the paper:
  1. The coefficients α = 10, β1 = 0.01, β2 = 0.1 are the ones reported for MATH [unverified:
     no official code]; stage lengths are a step count here (`stage1_steps`).
  2. REINFORCE with a per-problem group mean as baseline (unbiased, lower variance) and the KL as
     GRPO's per-token k3 penalty on the sampled attempts; the paper writes the KL on the policy.
  3. Each attempt is credited with its own reward only (attempt 1 is not credited with attempt
     2's): with α = 10 the return r̂(y1) + r̂(y2) would pay attempt 1 (1 − α)·r1, i.e. reward a
     wrong first answer, which the paper's stage II is built to prevent.
  4. A 3.3M-parameter model (spkit-tiny) on generated arithmetic problems instead of Gemini on
     MATH / HumanEval.
  5. Every run starts with the shared warm-up of `spkit.rl.correction` (`--warmup-steps`); π_ref is
     the warmed-up model.

Metrics: train/stage, train/accuracy_t1 … train/delta_c2i (on this step's rollouts),
train/samples (completions drawn so far, both attempts), train/completion_len,
train/rollout_seconds; losses/policy, losses/kl1, losses/kl2 (mean k3 per token of each
attempt), losses/grad_norm; eval/accuracy_t1, eval/accuracy_t2, eval/delta_t1_t2,
eval/delta_i2c, eval/delta_c2i, eval/copied, eval/strict (= Accuracy@t1).

Commands:
  spkit train score --max-samples 20000 --threads 1 --out runs/score
  spkit train score --stage1-steps 20 --alpha 10 --seed 1 --out runs/score_s1
  spkit train score --out runs/score --steps 400 --resume                        # continue a run
  spkit eval --model runs/score/final --tasks spkit_arith_correct               # the same numbers
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from spkit.config import param
from spkit.logprobs import pad_right
from spkit.rl import correction as C
from spkit.rl import verifiable as V
from spkit.rl.advantages import grpo_advantages
from spkit.rl.losses import grpo_loss, kl_k3, masked_mean
from spkit.run import History
from spkit.run.distributed import clip_grad_norm
from spkit.sampling import Completion
from spkit.seeding import derive_seed

PAPER = {
    "title": "Training Language Models to Self-Correct via Reinforcement Learning",
    "arxiv": "2409.12917",
    "citation": "Kumar et al. SCoRe. arXiv:2409.12917, 2024.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(C.CorrectionConfig):
    """SCoRe settings (model, task, problems, k, temperature, the warm-up ... from `CorrectionConfig`); defaults
    sized for spkit-tiny on a CPU."""

    steps: int = param(200, "policy updates (two-attempt rollout batches)", ge=0, identity=False)
    k: int = param(4, "first attempts per problem (one second attempt each); the baseline's group", ge=2)
    stage1_steps: int = param(40, "steps of stage I (attempt 1 pinned, reward on attempt 2); stage II after",
                              ge=0)
    alpha: float = param(10.0, "α: stage II's bonus α·(r2 − r1) on attempt 2", ge=0)
    beta1: float = param(0.01, "β1: stage II's KL to the reference on both attempts", ge=0)
    beta2: float = param(0.1, "β2: stage I's KL pin of attempt 1 to the reference", ge=0)
    lr: float = param(2e-5, "learning rate (Adam)", gt=0)


def stage_of(t: int, cfg: Config) -> int:
    """The schedule: stage I for steps 0 .. stage1_steps − 1, stage II afterwards."""
    return 1 if t < cfg.stage1_steps else 2


# ---- 2-3. Rewards, advantages and KL weights per stage ------------------------------------------
@dataclass
class Targets:
    """What each attempt's loss uses: (N,) advantages and the KL coefficient."""

    adv1: torch.Tensor
    adv2: torch.Tensor
    kl1: float
    kl2: float


def stage_targets(r1: torch.Tensor, r2: torch.Tensor, k: int, stage: int, cfg: Config) -> Targets:
    """Eq. (3) for stage I, Eq. (4) for stage II, each reward minus its group's mean."""
    if stage == 1:
        return Targets(torch.zeros_like(r1), grpo_advantages(r2, k, scale=False), cfg.beta2, 0.0)
    shaped = r2 + cfg.alpha * (r2 - r1)  # r̂(y2), Eq. (4)
    return Targets(grpo_advantages(r1, k, scale=False), grpo_advantages(shaped, k, scale=False),
                   cfg.beta1, cfg.beta1)


# ---- 3. The update -----------------------------------------------------------------------------
def _ref_logprobs(ref_model, comps: Sequence[Completion], micro_batch: int) -> dict[int, torch.Tensor]:
    with torch.no_grad():
        return {sl.start: V.padded_logprobs(ref_model, [c.prompt_ids for c in comps[sl]],
                                            [c.token_ids for c in comps[sl]])[0]
                for sl in V.microbatches(len(comps), micro_batch)}


def _attempt_loss(model, comps: Sequence[Completion], adv: torch.Tensor, kl_coef: float, ref_model,
                  micro_batch: int, stats: dict[str, float], kl_key: str) -> None:
    """Accumulate the gradient of one attempt's L_a (seq_mean over its rows) into `model`."""
    ref = _ref_logprobs(ref_model, comps, micro_batch) if kl_coef > 0 else {}
    n_rows, n_tok = len(comps), float(sum(len(c.token_ids) for c in comps))
    for sl in V.microbatches(n_rows, micro_batch):
        logp, mask = V.padded_logprobs(model, [c.prompt_ids for c in comps[sl]], [c.token_ids for c in comps[sl]])
        old = pad_right([c.logprobs for c in comps[sl]], logp.shape[1]).to(logp.device)
        loss = grpo_loss(logp, old, adv[sl].to(logp.device), mask, aggregation="seq_mean",
                         ref_logp=ref.get(sl.start), kl_coef=kl_coef) * (len(comps[sl]) / n_rows)
        loss.backward()
        stats["policy"] += loss.item()
        if sl.start in ref:
            with torch.no_grad():
                stats[kl_key] += masked_mean(kl_k3(logp, ref[sl.start]), mask, None).item() * float(mask.sum()) / n_tok


def update(model, optimizer, eps: C.Episodes, targets: Targets, cfg: Config, ref_model) -> dict[str, float]:
    """Step 3: one optimizer step on L_1 + L_2 (micro-batched: the sum of the whole batch's losses)."""
    stats = {"policy": 0.0, "kl1": 0.0, "kl2": 0.0, "grad_norm": 0.0}
    model.train()
    optimizer.zero_grad(set_to_none=True)
    _attempt_loss(model, eps.first, targets.adv1, targets.kl1, ref_model, cfg.micro_batch, stats, "kl1")
    _attempt_loss(model, eps.second, targets.adv2, targets.kl2, ref_model, cfg.micro_batch, stats, "kl2")
    if cfg.max_grad_norm > 0:
        stats["grad_norm"] = clip_grad_norm(model, cfg.max_grad_norm)
    optimizer.step()
    model.eval()
    return stats


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/accuracy_t1", "eval/accuracy_t2", "eval/delta_i2c", "eval/delta_c2i", "losses/kl1"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run SCoRe; return every logged row. `callback(step, metrics)` per logged step."""
    ref = C.FrozenReference(cfg)  # π_ref of the KL terms: the initial, then the warmed-up model
    ctx = V.start(cfg, "score", callback, PLOT_KEYS, lr=cfg.lr, reference=ref)
    task, model, optimizer, counter, sampler, params = (
        ctx.task, ctx.model, ctx.optimizer, ctx.counter, ctx.sampler, ctx.params)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        problems = task.train_problems(cfg.problems, derive_seed(cfg.seed, "problems", t))
        eps = C.sample_attempts(sampler, problems, cfg.k, params, derive_seed(cfg.seed, "sample", t))  # 1
        counter.samples += len(eps.first) + len(eps.second)
        t_roll = time.perf_counter() - t0
        stage = stage_of(t, cfg)
        losses = update(model, optimizer, eps, stage_targets(eps.r1, eps.r2, cfg.k, stage, cfg), cfg, ref.model)
        comps = eps.first + eps.second
        return {"train/stage": float(stage), **eps.metrics("train/"),
                "train/samples": float(counter.samples),
                "train/completion_len": sum(len(c.token_ids) for c in comps) / len(comps),
                "train/rollout_seconds": t_roll, "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    evaluate = ctx.evaluator(cfg, C.evaluate_correction)
    return ctx.run.loop(C.with_warmup(ctx, cfg, step, evaluate, [ref]), evaluate, V.sample_budget(cfg))  # 4


def summary(history: History) -> str:
    """The line `spkit train score` prints at the end."""
    return C.summary_line(history)


__all__ = ["PAPER", "Config", "stage_of", "Targets", "stage_targets", "update", "train", "summary"]
