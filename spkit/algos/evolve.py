r"""EVOLVE — iterative preference training on the model's own self-refinement chains.

Zeng, Cui, Jin, Liu, Zhang, Tang, Zhou, Zhang, Tan, Ding (2025), "Evolving LLMs' Self-Refinement
Capability via Iterative Preference Optimization", arXiv:2502.05605.

Idea: self-refinement gives preference pairs for free. A model answers, is asked to refine, and
the refinement is sometimes better than the answer and sometimes better than another
refinement of the same answer. Preference-train on both kinds of pair — (better refinement ≻
worse refinement) given the refine prompt, and (refined answer ≻ first answer) given the bare
problem — then collect new chains with the improved model and repeat, each iteration's DPO
anchored to the previous iterate. The refine pairs teach revising; the direct pairs move the
improved answers into the first attempt.

Algorithm (one step t = one iteration; the reference π_ref is the model at its start, π_t):
  1. Rollout: K first attempts y1 ~ π_θ(·|x) for each of `problems` train-split problems x; for
     each y1, N = `refinements` attempts 2 y2^1..y2^N ~ π_θ(·|x, y1, I), I the task's fixed
     "review and correct" instruction (`spkit.rl.correction.second_attempts`).
  2. Refine pairs, per state s = (x, y1, I): chosen = the first right y2^j, rejected = the first
     wrong one; states whose refinements are all right or all wrong give no pair        # Eq. (1)
  3. Direct pairs, per problem x: chosen = the first right refinement of a wrong y1 of x,
     rejected = that y1 (the chain's improvement, both as answers to x)                  # Eq. (2)
  4. DPO on both sets (`spkit.rl.losses.dpo_loss`), h = log π_θ(y_w|s)/π_ref(y_w|s) −
     log π_θ(y_l|s)/π_ref(y_l|s):
        L(θ) = E_refine[−log σ(β h)] + E_direct[−log σ(β h)]                               # Eq. (3)
     (+ `sft_coef` · the chosen answers' token NLL, off by default); `epochs` optimizer steps
     on the iteration's pairs, then π_{t+1} = π_θ is the next iteration's sampler and reference.
  5. Every `eval_every` steps: the held-out two-attempt metrics (`spkit.rl.correction`).

Deviations from the paper:
  1. Preferences come from the verifier (strict `#### n` check), not from a reward model or a
     judge; a pair needs one right and one wrong answer.
  2. Many short iterations (one sampling round and `epochs` optimizer steps each) instead of a
     few offline rounds over a large collected set; the first iteration starts from the base
     model, without the paper's SFT warm-up on refinement demonstrations.
  3. Which member of a longer refinement chain is chosen is [unverified] in the paper; here the
     chains have one refinement step (the task's two attempts).
  4. A 3.3M-parameter model (spkit-tiny) on generated arithmetic problems.
  5. Every run starts with the shared warm-up of `spkit.rl.correction` (`--warmup-steps`).

Metrics: train/accuracy_t1 … train/delta_c2i (y1 and its first refinement), train/refine_pairs,
train/direct_pairs, train/samples (completions drawn so far, all attempts), train/rollout_seconds;
losses/dpo, losses/margin (weighted mean β·h) at the first of the `epochs` steps, losses/dpo_last,
losses/margin_last at the last, losses/grad_norm; eval/accuracy_t1 … eval/delta_c2i,
eval/copied, eval/strict.

Commands:
  spkit train evolve --max-samples 20000 --threads 1 --out runs/evolve
  spkit train evolve --beta 0.1 --epochs 4 --seed 1 --out runs/evolve_s1
  spkit train evolve --out runs/evolve --steps 400 --resume                      # continue a run
  spkit eval --model runs/evolve/final --tasks spkit_arith_correct              # the same numbers
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from spkit.config import param
from spkit.models import inference_model
from spkit.rl import correction as C
from spkit.rl import verifiable as V
from spkit.rl.losses import dpo_loss, sequence_logps, sft_loss
from spkit.run import History
from spkit.run.distributed import clip_grad_norm
from spkit.sampling import Completion
from spkit.seeding import derive_seed

PAPER = {
    "title": "Evolving LLMs' Self-Refinement Capability via Iterative Preference Optimization",
    "arxiv": "2502.05605",
    "citation": "Zeng et al. EVOLVE. arXiv:2502.05605, 2025.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(C.CorrectionConfig):
    """EVOLVE settings (model, task, problems, k, temperature, the warm-up ... from `CorrectionConfig`); defaults
    sized for spkit-tiny on a CPU."""

    steps: int = param(200, "rounds (sample chains, pair, one DPO step)", ge=0, identity=False)
    k: int = param(4, "first attempts per problem", ge=1)
    refinements: int = param(2, "N: attempts 2 sampled per first attempt (refine pairs need 2)", ge=2)
    beta: float = param(0.1, "β of the DPO loss", gt=0)
    epochs: int = param(2, "optimizer steps per iteration on its pairs (the reference: the iteration's start)", ge=1)
    sft_coef: float = param(0.0, "weight of the chosen answers' NLL added to the DPO loss", ge=0)
    lr: float = param(2e-5, "learning rate (Adam)", gt=0)


# ---- 1. Refinement chains ------------------------------------------------------------------------
@dataclass
class Chains:
    """K first attempts per problem and N refinements of each (row (i·K + j)·N + n)."""

    episodes: C.Episodes  # y1 and its first refinement y2^1
    second: list[Completion]  # all refinements
    r2: torch.Tensor  # (P·K·N,)


def sample_chains(sampler, problems: Sequence[dict], cfg: Config, params, seed: int) -> Chains:
    """Step 1: y1 ~ π(·|x), K per problem; N refinements of each y1."""
    k, n = cfg.k, cfg.refinements
    first = V.sample_groups(sampler, problems, k, params, derive_seed(seed, "attempt1"))
    rep = [p for p in problems for _ in range(k)]
    second = C.second_attempts(sampler, rep, [y for y in first for _ in range(n)], n, params,
                               derive_seed(seed, "attempt2"))
    r1, r2 = V.score(first, problems, k), V.score(second, rep, n)
    eps = C.Episodes(list(problems), first, second[::n], r1, r2[::n])
    return Chains(eps, second, r2)


# ---- 2-3. Pairs ----------------------------------------------------------------------------------
def refine_pairs(r2: torch.Tensor, n: int) -> list[tuple[int, int]]:
    """Eq. (1): per state (N consecutive refinements), (first right, first wrong) refinement rows."""
    out = []
    for s, group in enumerate(r2.reshape(-1, n).tolist()):
        if 1.0 in group and 0.0 in group:
            out.append((s * n + group.index(1.0), s * n + group.index(0.0)))
    return out


def direct_pairs(r1: torch.Tensor, r2: torch.Tensor, k: int, n: int) -> list[tuple[int, int]]:
    """Eq. (2): per problem, (refinement row, its first-attempt row) for the first wrong y1 with a
    right refinement."""
    out = []
    for g in range(len(r1) // k):
        for i in range(g * k, g * k + k):
            right = [i * n + j for j in range(n) if r2[i * n + j] == 1]
            if r1[i] == 0 and right:
                out.append((right[0], i))
                break
    return out


def as_answer(c: Completion, other: Completion) -> Completion:
    """`c`'s tokens as an answer to `other`'s prompt (a refinement as a direct answer to x)."""
    return Completion(other.prompt, c.text, list(other.prompt_ids), list(c.token_ids), [], c.finish_reason, [])


# ---- 4. DPO update -------------------------------------------------------------------------------
def _logps(model, comps: Sequence[Completion]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B,) sequence log-probs log π(y|s), and the (B, T) token log-probs and mask."""
    logp, mask = V.padded_logprobs(model, [c.prompt_ids for c in comps], [c.token_ids for c in comps])
    return sequence_logps(logp, mask), logp, mask


def update(model, optimizer, ref_model, chosen: Sequence[Completion], rejected: Sequence[Completion],
           weights: torch.Tensor, cfg: Config) -> dict[str, float]:
    """Step 4: `epochs` optimizer steps of Eq. (3); `weights` (B,) scales each pair (1/|set| per
    set). Returns the first step's loss and margin (at θ = π_ref: log 2 and 0 when the reference
    is the iteration's start) and the last step's, and the last pre-clip gradient norm."""
    if not chosen:
        return {}
    with torch.no_grad():
        ref = [(_logps(ref_model, chosen[sl])[0], _logps(ref_model, rejected[sl])[0])
               for sl in V.microbatches(len(chosen), cfg.micro_batch)]
    n_tok = float(sum(len(c.token_ids) for c in chosen))
    stats: dict[str, float] = {}
    model.train()
    for epoch in range(cfg.epochs):
        dpo = margin = 0.0
        optimizer.zero_grad(set_to_none=True)
        for sl, (ref_c, ref_r) in zip(V.microbatches(len(chosen), cfg.micro_batch), ref, strict=True):
            pc, lpc, mc = _logps(model, chosen[sl])
            pr = _logps(model, rejected[sl])[0]
            w = weights[sl].to(pc.device)
            loss = (dpo_loss(pc, pr, ref_c, ref_r, cfg.beta, reduction="none") * w).sum()
            dpo += loss.item()
            if cfg.sft_coef > 0:
                loss = loss + cfg.sft_coef * sft_loss(lpc, mc) * float(mc.sum()) / max(n_tok, 1.0)
            loss.backward()
            with torch.no_grad():
                margin += (w * cfg.beta * ((pc - ref_c) - (pr - ref_r))).sum().item()
        if epoch == 0:
            stats |= {"dpo": dpo, "margin": margin}
        stats |= {"dpo_last": dpo, "margin_last": margin}
        if cfg.max_grad_norm > 0:
            stats["grad_norm"] = clip_grad_norm(model, cfg.max_grad_norm)
        optimizer.step()
    model.eval()
    return stats


def pair_weights(n_refine: int, n_direct: int) -> torch.Tensor:
    """(n_refine + n_direct,) each set's mean in Eq. (3): 1/|set| for each of its pairs."""
    return torch.tensor([1.0 / max(n_refine, 1)] * n_refine + [1.0 / max(n_direct, 1)] * n_direct,
                        dtype=torch.float32)


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/accuracy_t1", "eval/accuracy_t2", "eval/delta_i2c", "eval/delta_c2i", "losses/dpo"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run EVOLVE; return every logged row. `callback(step, metrics)` per logged step."""
    ctx = V.start(cfg, "evolve", callback, PLOT_KEYS, lr=cfg.lr)
    task, model, optimizer, counter, sampler, params = (
        ctx.task, ctx.model, ctx.optimizer, ctx.counter, ctx.sampler, ctx.params)
    ref_model = copy.deepcopy(inference_model(model)).requires_grad_(False)  # π_ref: the iteration's start

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        ref_model.load_state_dict(inference_model(model).state_dict())  # this iteration's reference: π_t
        problems = task.train_problems(cfg.problems, derive_seed(cfg.seed, "problems", t))
        ch = sample_chains(sampler, problems, cfg, params, derive_seed(cfg.seed, "sample", t))  # 1
        eps = ch.episodes
        counter.samples += len(eps.first) + len(ch.second)
        t_roll = time.perf_counter() - t0
        rp = refine_pairs(ch.r2, cfg.refinements)  # 2
        dp = direct_pairs(eps.r1, ch.r2, cfg.k, cfg.refinements)  # 3
        chosen = [ch.second[w] for w, _ in rp] + [as_answer(ch.second[w], eps.first[i]) for w, i in dp]
        rejected = [ch.second[lo] for _, lo in rp] + [eps.first[i] for _, i in dp]
        losses = update(model, optimizer, ref_model, chosen, rejected, pair_weights(len(rp), len(dp)), cfg)  # 4: Eq. (3)
        return {**eps.metrics("train/"), "train/refine_pairs": float(len(rp)), "train/direct_pairs": float(len(dp)),
                "train/samples": float(counter.samples), "train/rollout_seconds": t_roll,
                "train/seconds_per_step": time.perf_counter() - t0, **{f"losses/{k}": v for k, v in losses.items()}}

    evaluate = ctx.evaluator(cfg, C.evaluate_correction)
    return ctx.run.loop(C.with_warmup(ctx, cfg, step, evaluate), evaluate, V.sample_budget(cfg))


def summary(history: History) -> str:
    """The line `spkit train evolve` prints at the end."""
    return C.summary_line(history)


__all__ = ["PAPER", "Config", "Chains", "sample_chains", "refine_pairs", "direct_pairs", "as_answer", "update", "pair_weights",
           "train", "summary"]
