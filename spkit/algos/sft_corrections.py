r"""SFT on self-generated corrections — the STaR-style baseline SCoRe shows collapsing.

Kumar, Zhuang, Agarwal, Su, Co-Reyes, Singh, Baumli, Iqbal, Bishop, Roelofs, Zhang, McKinney,
Shrivastava, Paduraru, Tucker, Precup, Behbahani, Faust (2024), "Training Language Models to
Self-Correct via Reinforcement Learning", arXiv:2409.12917, Sec. 4 (the "STaR" baseline: STaR,
Zelikman et al. 2022, arXiv:2203.14465, applied to two-attempt traces).

Idea: the model sometimes turns a wrong first answer into a right second one. Sample both
attempts, keep the episodes where that happened, and fine-tune the second attempt given the
two-attempt prompt — maximum likelihood on the model's own successful corrections. SCoRe's
finding is that this does not teach correction: the fine-tuned model's attempt 2 mostly repeats
or barely edits attempt 1 (distribution shift between the corrections trained on and the first
attempts the model then makes), so Δ(t1, t2) stays near 0 or goes negative.

Algorithm (one step t):
  1. Rollout: for each of `problems` train-split problems x, K first attempts y1 ~ π_θ(·|x), then
     one second attempt each, y2 ~ π_θ(·|x, y1, I) with I the fixed "review and correct"
     instruction (`spkit.tasks.correction.second_prompt`), both at temperature T.
  2. Filter: D_t = {(x, y1, y2) : r(y1) = 0, r(y2) = 1}  (r = strict `#### n` match)       # Eq. (1)
     (`--no-only-corrections`: every episode with r(y2) = 1, correct → correct kept too;
     `--dedup`: each distinct (y1, y2) once per problem).
  3. SFT on y2 given the whole two-attempt prompt (attempt 1 and the instruction masked out):
        L(θ) = −(1/Σ_{D_t}|y2|) Σ_{D_t} Σ_t log π_θ(y2_t | x, y1, I, y2_<t)                # Eq. (2)
     `epochs` optimizer steps (`spkit.rl.verifiable.sft_update`, micro-batched, exact token mean).
  4. Every `eval_every` steps: the held-out two-attempt metrics (`spkit.rl.correction`), the
     numbers of `spkit eval --tasks spkit_arith_correct`.

Deviations from the paper:
  1. Online: every step samples from the current model and takes `epochs` steps on that batch
     (ReST-EM iterated, as `spkit.algos.rft`), rather than one offline round from the base model,
     so the baseline runs on the same loop, budget and x-axis (samples drawn) as SCoRe.
  2. A 3.3M-parameter model (spkit-tiny) on generated arithmetic problems, one second attempt per
     first attempt, instead of Gemini models on MATH / HumanEval.
  3. Every run starts with the shared warm-up of `spkit.rl.correction` (`--warmup-steps`).

Metrics: train/accuracy_t1 … train/delta_c2i (SCoRe's metrics on this step's rollouts),
train/kept, train/samples (completions drawn so far, both attempts), train/completion_len,
train/rollout_seconds, losses/sft, losses/grad_norm; eval/accuracy_t1, eval/accuracy_t2,
eval/delta_t1_t2, eval/delta_i2c, eval/delta_c2i, eval/copied, eval/strict (= Accuracy@t1).

Commands:
  spkit train sft_corrections --max-samples 20000 --threads 1 --out runs/sft_corrections
  spkit train sft_corrections --out runs/sft_corrections --steps 400 --resume      # continue a run
  spkit eval --model runs/sft_corrections/final --tasks spkit_arith_correct        # the same numbers
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from spkit.algos.rft import keep_correct
from spkit.config import param
from spkit.rl import correction as C
from spkit.rl import verifiable as V
from spkit.run import History
from spkit.seeding import derive_seed

PAPER = {
    "title": "Training Language Models to Self-Correct via Reinforcement Learning",
    "arxiv": "2409.12917",
    "citation": "Kumar et al. SCoRe, arXiv:2409.12917, 2024 (the STaR baseline of Sec. 4; STaR: "
    "Zelikman et al., arXiv:2203.14465, 2022).",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(C.CorrectionConfig):
    """Settings (model, task, problems, k, temperature, the warm-up ... from `CorrectionConfig`); defaults sized
    for spkit-tiny on a CPU."""

    steps: int = param(200, "rounds (sample two attempts, filter, fine-tune)", ge=0, identity=False)
    k: int = param(4, "first attempts per problem (one second attempt each)", ge=1)
    only_corrections: bool = param(True, "keep wrong -> right episodes only (SCoRe's STaR baseline); "
                                   "--no-only-corrections also keeps right -> right")
    dedup: bool = param(True, "train on each distinct (attempt 1, attempt 2) of a problem once")
    lr: float = param(1e-4, "learning rate (Adam)", gt=0)
    epochs: int = param(1, "optimizer steps over each step's kept episodes", ge=1)


# ---- 1-2. Rollout and filter -----------------------------------------------------------------------
def kept_episodes(eps: C.Episodes, only_corrections: bool, dedup: bool) -> list[int]:
    """Step 2: the rows of D_t (Eq. 1), in row order."""
    keep = eps.r2 * (1.0 - eps.r1) if only_corrections else eps.r2.clone()
    pairs = [f"{a.text}\x00{b.text}" for a, b in zip(eps.first, eps.second, strict=True)]
    return keep_correct(keep, pairs, eps.k, dedup)


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/accuracy_t1", "eval/accuracy_t2", "eval/delta_i2c", "eval/delta_c2i", "train/kept"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run the baseline; return every logged row. `callback(step, metrics)` per logged step."""
    ctx = V.start(cfg, "sft_corrections", callback, PLOT_KEYS, lr=cfg.lr)
    task, model, optimizer, counter, sampler, params = (
        ctx.task, ctx.model, ctx.optimizer, ctx.counter, ctx.sampler, ctx.params)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        problems = task.train_problems(cfg.problems, derive_seed(cfg.seed, "problems", t))
        eps = C.sample_attempts(sampler, problems, cfg.k, params, derive_seed(cfg.seed, "sample", t))  # 1
        counter.samples += len(eps.first) + len(eps.second)
        t_roll = time.perf_counter() - t0
        kept = kept_episodes(eps, cfg.only_corrections, cfg.dedup)  # 2
        losses = V.sft_update(model, optimizer, [eps.second[i].prompt_ids for i in kept],
                              [eps.second[i].token_ids for i in kept], cfg.epochs, cfg.micro_batch,
                              cfg.max_grad_norm) if kept else {}  # 3
        comps = eps.first + eps.second
        return {**eps.metrics("train/"), "train/kept": float(len(kept)), "train/samples": float(counter.samples),
                "train/completion_len": sum(len(c.token_ids) for c in comps) / len(comps),
                "train/rollout_seconds": t_roll, "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    evaluate = ctx.evaluator(cfg, C.evaluate_correction)
    return ctx.run.loop(C.with_warmup(ctx, cfg, step, evaluate), evaluate, V.sample_budget(cfg))  # 4: the held-out evaluation


def summary(history: History) -> str:
    """The line `spkit train sft_corrections` prints at the end."""
    return C.summary_line(history)


__all__ = ["PAPER", "Config", "kept_episodes", "train", "summary"]
