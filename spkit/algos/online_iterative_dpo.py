r"""Online iterative DPO on a language model — RLHF Workflow, on `spkit_ifeval_lite`.

Dong, Xiong, Pang, Wang, Zhao, Zhou, Jiang, Sahoo, Xiong, Zhang (2024), "RLHF Workflow: From
Reward Modeling to Online RLHF", arXiv:2405.07863 (RLHFlow). The finite-response-set form of the
same loop is `spkit.algos.online_dpo`.

Idea: offline DPO learns from pairs another policy wrote; online iterative DPO samples its pairs
from the current policy each iteration, so the preference data follows the policy it trains.

Algorithm (one iteration t):
  1. Sample K responses y_1..y_K ~ π_t(·|x) at temperature T for each of `prompts` prompts x.
  2. Reward: r(x, y) = the share of x's instructions the rule checkers accept (the oracle; the
     paper's Bradley–Terry reward model is replaced by it, see deviation 1), optionally minus
     λ·|y| (the paper's length penalty, `--length-penalty`).
  3. Pairs: y_w = argmax_j r(x, y_j), y_l = argmin_j r(x, y_j); prompts whose best and worst
     tie are dropped.
  4. DPO with the current iterate as the reference:
        L(θ) = −log σ(β[log π_θ(y_w|x)/π_t(y_w|x) − log π_θ(y_l|x)/π_t(y_l|x)])     # Eq. (1)
     (`spkit.rl.pairs.dpo_update`).

Deviations from the paper:
  1. The reward is the rule checkers' fraction (exact, no reward model): the loop is measured
     without a reward model's errors. SPaR and Self-Rewarding (`spkit.algos.spar`,
     `spkit.algos.self_rewarding`) replace it by the model's own judge.
  2. Many small iterations (16 prompts each) instead of 3 of 20k prompts; the reference is the
     previous iterate (as the released scripts; the paper also describes a fixed SFT reference).
  3. A 3.3M-parameter model on generated IFEval-format prompts.

Metrics: train/reward (mean r), train/oracle_pass, train/pairs, train/ties, train/samples,
losses/dpo, losses/pair_acc, losses/margin; eval/prompt_strict (the `spkit eval --tasks
spkit_ifeval_lite` number), eval/inst_strict.

Commands:
  spkit train online_iterative_dpo --max-samples 2048 --threads 1 --out runs/oidpo
  spkit eval --model runs/oidpo/final --tasks spkit_ifeval_lite
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from spkit.config import param
from spkit.rl import instruct
from spkit.rl.pairs import Pair, best_worst, dpo_update
from spkit.run import History
from spkit.seeding import derive_seed

PAPER = {
    "title": "RLHF Workflow: From Reward Modeling to Online RLHF",
    "arxiv": "2405.07863",
    "citation": "Dong et al. RLHF Workflow: From Reward Modeling to Online RLHF. TMLR 2024, arXiv:2405.07863.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(instruct.InstructConfig):
    steps: int = param(20, "iterations (sample, reward, pair, DPO)", ge=0, identity=False)
    k: int = param(8, "responses per prompt (the paper: 4-8)", ge=2)
    beta: float = param(0.1, "β of the DPO loss", gt=0)
    length_penalty: float = param(0.0, "λ: reward minus λ·(response tokens)", ge=0)
    lr: float = param(2e-5, "learning rate (Adam)", gt=0)
    epochs: int = param(2, "optimizer steps over each iteration's pairs", ge=1)
    micro_batch: int = param(32, "pairs per forward/backward", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)


# ---- 2-3. Reward and pairs ---------------------------------------------------------------------
def rewards(records: list[dict], outs, k: int, length_penalty: float = 0.0) -> list[float]:
    """Step 2: the checkers' fraction, minus λ·length."""
    frac = instruct.fractions(records, [o.text for o in outs], k).tolist()
    return [f - length_penalty * len(o.token_ids) for f, o in zip(frac, outs, strict=True)]


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/prompt_strict", "train/reward", "train/pairs", "losses/dpo"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run online iterative DPO; return every logged row."""
    ctx = instruct.start(cfg, "online_iterative_dpo", callback, PLOT_KEYS, lr=cfg.lr)
    eval_recs = instruct.eval_records(cfg)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        recs = instruct.TASK.train_problems(cfg.prompts, derive_seed(cfg.seed, "prompts", t))
        outs = instruct.sample_groups(ctx.sampler, recs, cfg.k, ctx.params, derive_seed(cfg.seed, "sample", t))  # 1
        ctx.counter.samples += len(outs)
        r = rewards(recs, outs, cfg.k, cfg.length_penalty)  # 2
        bw = best_worst(r, cfg.k)  # 3
        pairs = [Pair(outs[w].prompt_ids, list(outs[w].token_ids), list(outs[lo].token_ids))
                 for w, lo in (x for x in bw if x is not None)]
        losses = dpo_update(ctx.model, ctx.optimizer, pairs, cfg.beta, 0.0, cfg.epochs, cfg.micro_batch,
                            cfg.max_grad_norm)  # 4: Eq. (1)
        return {"train/reward": sum(r) / len(r),
                "train/oracle_pass": instruct.fractions(recs, [o.text for o in outs], cfg.k).eq(1.0).float().mean().item(),
                "train/pairs": float(len(pairs)), "train/ties": float(sum(x is None for x in bw)),
                "train/samples": float(ctx.counter.samples), "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    def evaluate(t: int) -> dict[str, float]:
        m, _, _ = instruct.evaluate(ctx.model, ctx.tokenizer, sampler=ctx.sampler, records=eval_recs)
        return {**m, "train/samples": float(ctx.counter.samples)}

    return ctx.run.loop(step, evaluate, instruct.budget(cfg))


def summary(history: History) -> str:
    """The line `spkit train online_iterative_dpo` prints at the end."""
    return instruct.summary_line(history)


__all__ = ["PAPER", "Config", "rewards", "train", "summary"]
