r"""RISE — recursive introspection: teach a model to improve its own previous answer.

Qu, Zhang, Setlur, Kumar (2024), "Recursive Introspection: Teaching Language Model Agents How
to Self-Improve", arXiv:2407.18219 (code: cmu-mind/RISE).

Idea: treat answering as a multi-turn MDP whose state is the conversation so far (the problem,
earlier attempts, the feedback after each) and whose action is the next attempt. For each state
the model reaches, draw N candidate next attempts from the model itself and keep the best one
(best-of-N, "self-distillation"): an action at least as good as what the model usually does
from that state, so imitating it is policy improvement. Fine-tune on (history → best action)
with the loss on the final action only, weighted by exp(r/τ) (reward-weighted regression), so
right answers count far more than wrong ones and unparsable ones hardly at all.

Algorithm (one step t; two turns, the task of `spkit.tasks.correction`):
  1. Turn 1: N candidates y1^1..y1^N ~ π_θ(·|x) for each of `problems` train-split problems x;
     the rollout continues from y1 = y1^1 (a plain sample of π_θ).
  2. Turn 2: the state s2 = (x, y1, I), I the fixed "review and correct" instruction (the
     feedback message); N candidates y2^1..y2^N ~ π_θ(·|s2).
  3. Reward r(y) = 1 (right), 0 (wrong), −1 (no `#### n` answer); in each state the
     improvement target is ỹ = argmax_j r(y^j) (the first best)                          # Eq. (1)
  4. Reward-weighted loss on the final action of each (state, ỹ) pair, s ∈ {x, s2}:
        L(θ) = −(1/Σ|ỹ|) Σ_{(s, ỹ)} exp(r(ỹ)/τ) Σ_t log π_θ(ỹ_t | s, ỹ_<t)                # Eq. (2)
     (the history — problem, attempt 1, instruction — is never a target); `epochs` optimizer steps.
  5. Every `eval_every` steps: the held-out two-attempt metrics (`spkit.rl.correction`), the
     numbers of `spkit eval --tasks spkit_arith_correct`.

Deviations from the paper:
  1. The feedback message is the task's fixed instruction, shown after every first attempt, right
     or wrong: the evaluation (SCoRe's intrinsic self-correction) gives no oracle. RISE's oracle
     feedback ("The answer is incorrect. Please try again.", only after wrong answers) is the
     `--only-wrong` variant: turn-2 states only after wrong first attempts.
  2. Two turns (the task's), N = `k` candidates per state (the paper: up to 5 turns, N = 16), the
     states collected online from the current model every step rather than in a few offline
     iterations.
  3. A 3.3M-parameter model (spkit-tiny) on generated arithmetic problems instead of Llama-2 /
     Mistral 7B on GSM8K and MATH.
  4. Every run starts with the shared warm-up of `spkit.rl.correction` (`--warmup-steps`).

Metrics: train/accuracy_t1 … train/delta_c2i (the rollout's episodes that reached turn 2: y1 and
y2 = y2^1, the first candidate), train/best_t1, train/best_t2 (share of states whose best-of-N
is right), train/pairs, train/completion_len (of the targets), train/samples (completions drawn
so far), train/rollout_seconds;
losses/rwr, losses/grad_norm; eval/accuracy_t1 … eval/delta_c2i, eval/copied, eval/strict.

Commands:
  spkit train rise --max-samples 20000 --threads 1 --out runs/rise
  spkit train rise --only-wrong --tau 0.4 --k 8 --seed 1 --out runs/rise_oracle
  spkit train rise --out runs/rise --steps 400 --resume                           # continue a run
  spkit eval --model runs/rise/final --tasks spkit_arith_correct                 # the same numbers
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from spkit.config import param
from spkit.generation import Sampler
from spkit.rl import correction as C
from spkit.rl import verifiable as V
from spkit.rl.losses import sft_loss
from spkit.run import History
from spkit.run.distributed import clip_grad_norm
from spkit.sampling import Completion
from spkit.seeding import derive_seed
from spkit.tasks import arithmetic

PAPER = {
    "title": "Recursive Introspection: Teaching Language Model Agents How to Self-Improve",
    "arxiv": "2407.18219",
    "citation": "Qu, Zhang, Setlur, Kumar. RISE. arXiv:2407.18219, 2024.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(C.CorrectionConfig):
    """RISE settings (model, task, problems, k, temperature, the warm-up ... from `CorrectionConfig`); defaults
    sized for spkit-tiny on a CPU."""

    steps: int = param(200, "rounds (roll out two turns, best-of-N per state, weighted fine-tune)", ge=0,
                       identity=False)
    k: int = param(4, "N: candidate actions drawn per state (best-of-N)", ge=1)
    tau: float = param(0.4, "τ of the weight exp(r/τ)", gt=0)
    only_wrong: bool = param(False, "turn-2 states only after a wrong first attempt (RISE's oracle feedback)")
    lr: float = param(1e-4, "learning rate (Adam)", gt=0)
    epochs: int = param(1, "optimizer steps over each step's (state, best action) pairs", ge=1)


# ---- 3. Rewards and best-of-N --------------------------------------------------------------------
def rise_reward(text: str, gold: str) -> float:
    """Eq. (1)'s r: 1 right, 0 wrong, −1 when there is no strict ``#### n`` answer at all."""
    if arithmetic.extract_answer(text, "strict") is None:
        return -1.0
    return float(arithmetic.is_correct(text, gold, "strict"))


def best_of_n(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """(G,) row index of each group's first best candidate (rows grouped by n)."""
    return rewards.reshape(-1, n).argmax(dim=1) + torch.arange(0, len(rewards), n)


def rewards_of(comps: Sequence[Completion], problems: Sequence[dict]) -> torch.Tensor:
    """(len(comps),) Eq. (1) rewards of completions aligned with their problems."""
    return torch.tensor([rise_reward(c.text, p["answer"]) for c, p in zip(comps, problems, strict=True)],
                        dtype=torch.float32)


# ---- 1-3. Multi-turn rollout with best-of-N targets ----------------------------------------------
@dataclass
class Pairs:
    """The (state, best action) pairs of one step, their rewards, and the rollout's episodes."""

    targets: list[Completion]
    rewards: torch.Tensor  # (len(targets),) r of each target
    episodes: C.Episodes  # y1 = candidate 1 of turn 1, y2 = candidate 1 of turn 2
    best1: torch.Tensor  # (P,) 1.0 where turn 1's best-of-N is right
    best2: torch.Tensor  # (states at turn 2,)
    drawn: int


def collect(sampler: Sampler, problems: Sequence[dict], cfg: Config, params, seed: int) -> Pairs:
    """Steps 1-3: N candidates in each turn-1 and turn-2 state, the best of each as a target."""
    n = cfg.k
    first = V.sample_groups(sampler, problems, n, params, derive_seed(seed, "turn1"))  # 1
    r_first = rewards_of(first, [p for p in problems for _ in range(n)])
    rollout = [first[i * n] for i in range(len(problems))]  # y1: each problem's first candidate
    states = [i for i in range(len(problems)) if not (cfg.only_wrong and r_first[i * n] == 1)]
    s_probs = [problems[i] for i in states for _ in range(n)]  # 2: N candidates per turn-2 state
    second = C.second_attempts(sampler, s_probs, [rollout[i] for i in states for _ in range(n)], 1, params,
                               derive_seed(seed, "turn2")) if states else []
    r_second = rewards_of(second, s_probs)
    b1 = best_of_n(r_first, n)  # 3
    b2 = best_of_n(r_second, n) if states else torch.zeros(0, dtype=torch.long)
    targets = [first[i] for i in b1.tolist()] + [second[i] for i in b2.tolist()]
    rewards = torch.cat([r_first[b1], r_second[b2]])
    eps = _episodes(problems, rollout, states, second, n)
    return Pairs(targets, rewards, eps, (r_first[b1] == 1).float(), (r_second[b2] == 1).float(),
                 len(first) + len(second))


def _episodes(problems: Sequence[dict], rollout: list[Completion], states: list[int],
              second: list[Completion], n: int) -> C.Episodes:
    """The rollout as two-attempt episodes (problems with a turn-2 state; y2 = its first candidate)."""
    probs = [problems[i] for i in states]
    y1 = [rollout[i] for i in states]
    y2 = [second[j * n] for j in range(len(states))]
    if not probs:
        return C.Episodes([], [], [], torch.zeros(0), torch.zeros(0))
    return C.Episodes(probs, y1, y2, V.score(y1, probs, 1), V.score(y2, probs, 1))


# ---- 4. Reward-weighted update -------------------------------------------------------------------
def weighted_update(model, optimizer, targets: Sequence[Completion], rewards: torch.Tensor,
                    cfg: Config) -> dict[str, float]:
    """Step 4: `epochs` optimizer steps of Eq. (2) (exact token mean over micro-batches)."""
    w = torch.exp(rewards / cfg.tau)  # (B,)
    n_tok = float(sum(len(c.token_ids) for c in targets))
    stats = {"rwr": 0.0, "grad_norm": 0.0}
    model.train()
    for _ in range(cfg.epochs):
        optimizer.zero_grad(set_to_none=True)
        for sl in V.microbatches(len(targets), cfg.micro_batch):
            logp, mask = V.padded_logprobs(model, [c.prompt_ids for c in targets[sl]],
                                           [c.token_ids for c in targets[sl]])
            share = float(mask.sum()) / max(n_tok, 1.0)
            loss = sft_loss(logp * w[sl].unsqueeze(1).to(logp.device), mask) * share  # Eq. (2)
            loss.backward()
            stats["rwr"] += loss.item() / cfg.epochs
        if cfg.max_grad_norm > 0:
            stats["grad_norm"] = clip_grad_norm(model, cfg.max_grad_norm)
        optimizer.step()
    model.eval()
    return stats


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/accuracy_t1", "eval/accuracy_t2", "eval/delta_i2c", "eval/delta_c2i", "train/best_t2"]


def _mean(x: torch.Tensor) -> float:
    return x.mean().item() if len(x) else math.nan


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run RISE; return every logged row. `callback(step, metrics)` per logged step."""
    ctx = V.start(cfg, "rise", callback, PLOT_KEYS, lr=cfg.lr)
    task, model, optimizer, counter, sampler, params = (
        ctx.task, ctx.model, ctx.optimizer, ctx.counter, ctx.sampler, ctx.params)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        problems = task.train_problems(cfg.problems, derive_seed(cfg.seed, "problems", t))
        pairs = collect(sampler, problems, cfg, params, derive_seed(cfg.seed, "sample", t))  # 1-3
        counter.samples += pairs.drawn
        t_roll = time.perf_counter() - t0
        losses = weighted_update(model, optimizer, pairs.targets, pairs.rewards, cfg)  # 4
        eps = pairs.episodes
        return {**(eps.metrics("train/") if eps.problems else {}),
                "train/best_t1": _mean(pairs.best1), "train/best_t2": _mean(pairs.best2),
                "train/pairs": float(len(pairs.targets)), "train/samples": float(counter.samples),
                "train/completion_len": sum(len(c.token_ids) for c in pairs.targets) / len(pairs.targets),
                "train/rollout_seconds": t_roll, "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    evaluate = ctx.evaluator(cfg, C.evaluate_correction)
    return ctx.run.loop(C.with_warmup(ctx, cfg, step, evaluate), evaluate, V.sample_budget(cfg))  # 5: the held-out evaluation


def summary(history: History) -> str:
    """The line `spkit train rise` prints at the end."""
    return C.summary_line(history)


__all__ = ["PAPER", "Config", "rise_reward", "best_of_n", "Pairs", "collect", "weighted_update", "train",
           "summary"]
