r"""Self-Rewarding language models (and Temporal Self-Rewarding), on `spkit_ifeval_lite`.

Yuan, Pang, Cho, Li, Sukhbaatar, Xu, Weston (2024), "Self-Rewarding Language Models",
arXiv:2401.10020; `--temporal`: Temporal Self-Rewarding (Wang et al. 2025, arXiv:2508.06026).

Idea: the model is both the policy and its reward model. It scores its own samples with an
LLM-as-a-judge prompt, pairs its best against its worst, and trains on them with DPO; the next
iteration judges with the improved model. Whether that helps depends on the judge: its accuracy
against the oracle is logged every iteration. Temporal Self-Rewarding observes that the chosen
and rejected responses grow alike over iterations (the signal vanishes) and anchors the
rejected response to the *initial* model's samples and the chosen one to a *future* model's.

Algorithm (one iteration t):
  1. Sample K responses y_1..y_K ~ π_t(·|x) at temperature T (the paper: 4 at 0.7).
  2. Self-judge with the additive rubric, one point per instruction followed
     (`spkit.rl.self_judge`, "score"): s(y) = mean of V sampled scores / n.               # Eq. (1)
  3. Pairs: y_w = argmax_j s(y_j), y_l = argmin_j s(y_j); ties dropped.
  4. DPO with π_t as the reference (`spkit.rl.pairs.dpo_update`):
        L(θ) = −log σ(β[log π_θ(y_w|x)/π_t(y_w|x) − log π_θ(y_l|x)/π_t(y_l|x)])            # Eq. (2)
  5. Evaluate: held-out prompt-level strict accuracy, and the oracle win rate of this
     evaluation's greedy responses against the previous evaluation's (per prompt: 1 if the
     checkers' fraction went up, ½ if equal, 0 if down).
  `--temporal` replaces 3 by:
  3a. anchored rejection: also sample K from π_0 (the model the run started from), judged by π_t;
      y_l = π_0's lowest-scored sample if its score is below π_t's lowest, else π_t's lowest.
  3b. future-guided chosen: copy π_t, take the DPO step (2) on (π_t's best, y_l) to get a
      temporary π_future, sample K from it, judge with π_t; if its best outscores π_t's best it
      becomes y_w. Pairs with s(y_w) > s(y_l) are kept; then (2) on π_t.
  Seed stage (before iteration 0): the judge's fine-tune on checker-labelled scores of its own
  responses (`spkit.rl.self_judge.seed_stage`), the stand-in for the paper's EFT data.

Deviations from the papers:
  1. The rubric's points are the prompt's instructions (the papers' five points judge a
     free-form answer); scores are divided by the number of instructions.
  2. Seed data: the checkers label the judge's seed examples (the paper uses human-ranked
     OpenAssistant data); the instruction-following seed data (IFT) is the pretraining corpus.
  3. Many small iterations of 16 prompts instead of 3 of thousands; π_0 is the model before the
     judge's seed stage (which trains only judgments), so a resumed run rebuilds it by loading.
  4. A 3.3M-parameter model on generated IFEval-format prompts instead of Llama 2 70B.

Metrics: judge/accuracy (round(s·n) = the checkers' count), train/score (mean self-score),
train/oracle (mean checkers' fraction), train/gap (mean s(y_w) − s(y_l) of kept pairs),
train/pairs, train/anchored (temporal: pairs whose y_l came from π_0), train/future (temporal:
pairs whose y_w came from π_future), train/samples, losses/dpo; eval/prompt_strict,
eval/inst_strict, eval/win_vs_prev.

Commands:
  spkit train self_rewarding --max-samples 2048 --threads 1 --out runs/self_rewarding
  spkit train self_rewarding --temporal --max-samples 2048 --threads 1 --out runs/tsr
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spkit.config import param
from spkit.generation import Sampler
from spkit.models import inference_model
from spkit.rl import instruct
from spkit.rl import self_judge as J
from spkit.rl.pairs import Pair, best_worst, dpo_update
from spkit.run import History
from spkit.seeding import derive_seed

PAPER = {
    "title": "Self-Rewarding Language Models",
    "arxiv": "2401.10020",
    "citation": "Yuan, Pang, Cho, Li, Sukhbaatar, Xu, Weston. Self-Rewarding Language Models. ICML 2024, "
                "arXiv:2401.10020.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(J.JudgedConfig):
    steps: int = param(20, "iterations (sample, self-judge, pair, DPO)", ge=0, identity=False)
    k: int = param(4, "responses per prompt (the paper: 4)", ge=2)
    temperature: float = param(0.7, "response sampling temperature (the paper: 0.7)", gt=0)
    votes: int = param(3, "sampled scores per response, averaged (the paper: 3)", ge=1)
    temporal: bool = param(False, "Temporal Self-Rewarding: rejected anchored to π_0, chosen guided by a future model")
    lr: float = param(2e-5, "learning rate (Adam)", gt=0)


class PrevEval:
    """The last evaluation's per-prompt checker fractions (for the win rate against it)."""

    def __init__(self) -> None:
        self.fractions: list[float] = []

    def state_dict(self) -> dict:
        return {"fractions": self.fractions}

    def load_state_dict(self, state: dict) -> None:
        self.fractions = [float(x) for x in state["fractions"]]


def win_rate(now: list[float], before: list[float]) -> float:
    """Step 5: mean over prompts of 1[now > before] + ½·1[now = before]."""
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(now, before, strict=True)) / len(now)


# ---- 1-2. Sample and self-judge ------------------------------------------------------------------
def judged(ctx, sampler: Sampler, cfg: Config, recs: list[dict], seed: int):
    """K responses of `sampler`'s model to each record, scored by the current model (Eq. 1)."""
    outs = instruct.sample_groups(sampler, recs, cfg.k, ctx.params, derive_seed(seed, "sample"))
    js = J.judge(ctx.sampler, "score", recs, [o.text for o in outs], cfg.votes, cfg.judge_temperature,
                 derive_seed(seed, "judge"), cfg.k)
    return outs, J.values("score", js, recs, cfg.k).tolist()


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/prompt_strict", "judge/accuracy", "eval/win_vs_prev", "train/gap"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run Self-Rewarding (or Temporal Self-Rewarding); return every logged row."""
    prev = PrevEval()
    ctx = instruct.start(cfg, "self_rewarding", callback, PLOT_KEYS, lr=cfg.lr, prev_eval=prev)
    eval_recs = instruct.eval_records(cfg)
    base = None
    if cfg.temporal:
        from spkit.run import model_for

        m0, _ = model_for(cfg)
        base = Sampler(m0, ctx.tokenizer)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        m = J.seed_stage(ctx, cfg, "score") if t == 0 else {}
        recs = instruct.TASK.train_problems(cfg.prompts, derive_seed(cfg.seed, "prompts", t))
        outs, s = judged(ctx, ctx.sampler, cfg, recs, derive_seed(cfg.seed, "now", t))  # 1-2
        ctx.counter.samples += len(outs)
        m |= J.accuracy("score", torch.tensor(s), recs, [o.text for o in outs], cfg.k)
        oracle = instruct.fractions(recs, [o.text for o in outs], cfg.k).tolist()
        bw = best_worst(s, cfg.k)  # 3
        # per prompt: (score, completion) of the chosen and of the rejected response
        chosen = {i: (s[w], outs[w]) for i, x in enumerate(bw) if x is not None for w in [x[0]]}
        rejected = {i: (s[lo], outs[lo]) for i, x in enumerate(bw) if x is not None for lo in [x[1]]}
        anchored = future = 0
        if cfg.temporal:
            groups = _groups(len(recs), cfg.k)  # every prompt takes part; ties are dropped at the end
            chosen = {i: (s[hi], outs[hi]) for i, g in enumerate(groups) for hi in [max(g, key=lambda r: s[r])]}
            rejected = {i: (s[lo], outs[lo]) for i, g in enumerate(groups) for lo in [min(g, key=lambda r: s[r])]}
            o0, s0 = judged(ctx, base, cfg, recs, derive_seed(cfg.seed, "base", t))  # 3a
            ctx.counter.samples += len(o0)
            for i, g in enumerate(_groups(len(recs), cfg.k)):
                lo = min(g, key=lambda r: s0[r])
                if s0[lo] < rejected[i][0]:
                    rejected[i] = (s0[lo], o0[lo])
                    anchored += 1
            fut = copy.deepcopy(inference_model(ctx.model)).requires_grad_(True)  # 3b (--fsdp: the full copy)
            fopt = torch.optim.Adam(fut.parameters(), lr=cfg.lr)
            dpo_update(fut, fopt, _pairs(chosen, rejected), cfg.beta, 0.0, cfg.epochs, cfg.micro_batch,
                       cfg.max_grad_norm)
            of, sf = judged(ctx, Sampler(fut, ctx.tokenizer), cfg, recs, derive_seed(cfg.seed, "future", t))
            ctx.counter.samples += len(of)
            for i, g in enumerate(_groups(len(recs), cfg.k)):
                hi = max(g, key=lambda r: sf[r])
                if sf[hi] > chosen[i][0]:
                    chosen[i] = (sf[hi], of[hi])
                    future += 1
        keep = [i for i in chosen if chosen[i][0] > rejected[i][0]]
        pairs = _pairs({i: chosen[i] for i in keep}, {i: rejected[i] for i in keep})
        losses = dpo_update(ctx.model, ctx.optimizer, pairs, cfg.beta, 0.0, cfg.epochs, cfg.micro_batch,
                            cfg.max_grad_norm)  # 4: Eq. (2)
        gap = [chosen[i][0] - rejected[i][0] for i in keep]
        return {**m, "train/score": sum(s) / len(s), "train/oracle": sum(oracle) / len(oracle),
                "train/pairs": float(len(pairs)), **({"train/gap": sum(gap) / len(gap)} if gap else {}),
                **({"train/anchored": float(anchored), "train/future": float(future)} if cfg.temporal else {}),
                "train/samples": float(ctx.counter.samples), "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    def evaluate(t: int) -> dict[str, float]:  # 5
        m, fr, _ = instruct.evaluate(ctx.model, ctx.tokenizer, sampler=ctx.sampler, records=eval_recs)
        if prev.fractions:
            m["eval/win_vs_prev"] = win_rate(fr, prev.fractions)
        prev.fractions = fr
        return {**m, "train/samples": float(ctx.counter.samples)}

    return ctx.run.loop(step, evaluate, instruct.budget(cfg))


def _groups(n: int, k: int) -> list[range]:
    return [range(i * k, (i + 1) * k) for i in range(n)]


def _pairs(chosen: dict, rejected: dict) -> list[Pair]:
    return [Pair(chosen[i][1].prompt_ids, list(chosen[i][1].token_ids), list(rejected[i][1].token_ids))
            for i in sorted(chosen)]


def summary(history: History) -> str:
    """The line `spkit train self_rewarding` prints at the end."""
    return instruct.summary_line(history)


__all__ = ["PAPER", "Config", "PrevEval", "win_rate", "judged", "train", "summary"]
