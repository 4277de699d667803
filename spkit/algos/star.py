r"""STaR — the Self-Taught Reasoner: bootstrap reasoning from a few worked examples.

Zelikman, Wu, Mu, Goodman (2022), "STaR: Bootstrapping Reasoning With Reasoning",
arXiv:2203.14465 (official code: ezelikman/STaR).

Idea: prompt the model with a few solved problems and let it write a rationale (here, the
``a op b = c`` lines) for every training problem; keep the rationales that reach the right answer
and fine-tune on them, so the next round's model writes better rationales. Problems the model
fails are not wasted: rationalisation shows it the right answer as a hint, asks for a rationale
again, and keeps one that now reaches that answer — trained on *without* the hint, as if the
model had found it alone. Each round fine-tunes the base model afresh on the round's data, so
bad early data does not compound.

Algorithm (outer iteration n = 1, 2, ...; one `step` of the run loop):
  1. Rationales: for each x_i of a fixed train-split pool D = {(x_i, y_i)}, sample
     r̂_i, ŷ_i ~ M_{n−1}(· | P, x_i) with a few-shot prompt P of `shots` solved train problems,
     near-greedy (temperature `temperature`; 0 = greedy).                          # Eq. (1)
  2. Rationalisation (skipped with `--no-rationalize`): for each i with ŷ_i ≠ y_i, sample
     r̂ʳ_i, ŷʳ_i ~ M_{n−1}(· | P⁺, x_i, hint(y_i)), P⁺ = the shots with their hints.   # Eq. (2)
  3. Filter: D_n = {(x_i, r̂_i) : ŷ_i = y_i} ∪ {(x_i, r̂ʳ_i) : ŷ_i ≠ y_i, ŷʳ_i = y_i}; both kinds are
     stored with the plain zero-shot prompt `Question: x\nAnswer:` (the one the evaluation uses),
     never with the shots or the hint.                                            # Eq. (3)
  4. M_n = SFT(M, D_n): from the BASE weights M, S_n = ⌈S_1 · 1.2^{n−1}⌉ optimizer steps of
     prompt-masked maximum likelihood on minibatches of D_n (a fresh Adam each round):
        L(θ) = −(1/Σ|r|) Σ_{(x,r)∈batch} Σ_t log π_θ(r_t | x, r_<t)                  # Eq. (4)
  5. Every `eval_every` rounds: greedy held-out accuracy (`spkit eval --tasks spkit_arith`'s
     number, `verifiable.evaluate_heldout`) against the completions drawn so far, rationalisation
     samples included.
Resumable state: M_n (the tracked model, which generates the next round), D_n, the sample count.

Deviations from the paper:
  1. Scale: a 3.3M-parameter model (spkit-tiny, 1024-token context, so 2-3 shots instead of 10)
     on generated arithmetic in GSM8K's format, instead of GPT-J on CommonsenseQA / GSM8K; the
     paper's own arithmetic task (n-digit addition with a scratchpad) is the closest of its tasks.
  2. The pool D is `problems` train-split problems drawn once (the paper: the whole train set);
     the shots are further train problems, never in the pool; dev and held-out problems never
     appear.
  3. The hint is the answer appended to the question, ``(The answer is n.)``, in the shots and in
     the query; the paper writes "(CORRECT)" beside the right answer choice, which this task lacks.
  4. The learning rate and the minibatch size are sized for this model on a CPU; the step schedule
     is the paper's (40 steps in the first outer loop, 20 % more in each next one).

Metrics: train/samples (completions drawn so far, both kinds), train/reward (few-shot accuracy on
the pool), train/kept (|D_n|), train/rationalized (rationalised rows of D_n),
train/rationalization_share (their share of D_n), train/sft_steps (S_n), losses/sft,
losses/grad_norm; eval/strict (the headline), eval/flexible, eval/strict/level_<s>.

Commands:
  spkit train star --max-minutes 8 --threads 1 --out runs/star
  spkit train star --no-rationalize --out runs/star_norat                  # the ablation
  spkit train star --out runs/star --steps 20 --resume                     # continue a run
  spkit eval --model runs/star/final --tasks spkit_arith                   # the same number
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spkit.config import param
from spkit.generation import Sampler
from spkit.rl import verifiable as V
from spkit.run import History
from spkit.seeding import derive_seed
from spkit.tasks import arithmetic

PAPER = {
    "title": "STaR: Bootstrapping Reasoning With Reasoning",
    "arxiv": "2203.14465",
    "citation": "Zelikman, Wu, Mu, Goodman. STaR. NeurIPS 2022, arXiv:2203.14465.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(V.VerifiableConfig):
    """STaR settings (model, task, data_dir, eval_limit, max_samples ... from `VerifiableConfig`);
    defaults sized for spkit-tiny on a CPU."""

    steps: int = param(10, "outer iterations (generate, rationalise, fine-tune the base model)", ge=0,
                       identity=False)
    eval_every: int = param(1, "evaluate every k outer iterations (and at the start and the end)", ge=0,
                            identity=False)
    checkpoint_every: int = param(1, "save a resumable checkpoint every k outer iterations", ge=1, identity=False)
    problems: int = param(256, "train-split problems in the pool D (the same every iteration)", ge=1)
    shots: int = param(2, "solved train problems in the few-shot prompt (spkit-tiny: 1024 tokens)", ge=0)
    temperature: float = param(0.0, "rationale sampling temperature (0 = greedy; the paper: near-greedy)", ge=0)
    rationalize: bool = param(True, "for failures, retry with the gold answer as a hint (--no-rationalize: "
                              "the ablation)")
    k: int = param(1, "rationales per problem (the paper: 1, near-greedy)", ge=1)
    sft_steps: int = param(40, "optimizer steps of the first iteration's fine-tune (S_1, the paper: 40)", ge=1)
    step_growth: float = param(1.2, "S_n = ceil(S_1 · growth^(n-1)) (the paper: 1.2)", ge=1)
    batch_size: int = param(8, "rationales per optimizer step", ge=1)
    lr: float = param(1e-5, "learning rate (a fresh Adam every iteration)", gt=0)
    micro_batch: int = param(64, "rationales per forward/backward (gradient accumulation)", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)


# ---- 1-3. Prompts: few-shot, with a hint, and the training prompt ----------------------------------
def hint(question: str, answer: str) -> str:
    """The question with its gold answer given away (rationalisation, Eq. 2)."""
    return f"{question} (The answer is {arithmetic.target({'answer': answer})}.)"


def fewshot_prompt(shots: list[dict], question: str, gold: str | None = None) -> str:
    """The shots (question, worked answer) then the query, in the eval's own format; with `gold`,
    every question (the shots' too) carries its answer as a hint."""
    def q(p: dict) -> str:
        return hint(p["question"], p["answer"]) if gold is not None else p["question"]

    demos = [f"{arithmetic.prompt(q(s))} {s['answer']}" for s in shots]
    last = hint(question, gold) if gold is not None else question
    return "\n\n".join([*demos, arithmetic.prompt(last)])


def pool_and_shots(cfg: Config, task: V.Task = V.ARITH) -> tuple[list[dict], list[dict]]:
    """(pool D, shots): train-split problems only, the shots never in the pool. On spkit_arith the
    shots are multi-step problems (levels 2 and 3), so they show the one-line-per-step format."""
    levels = (2, 3) if task.levels else None
    shots = task.train_problems(cfg.shots, derive_seed(cfg.seed, "shots"), levels) if cfg.shots else []
    taken = {s["question"] for s in shots}
    pool = task.train_problems(cfg.problems + cfg.shots, derive_seed(cfg.seed, "problems"))
    return [p for p in pool if p["question"] not in taken][: cfg.problems], shots


class Dataset:
    """D_n as token ids (zero-shot prompt, rationale) with a flag for rationalised rows; resumable."""

    def __init__(self) -> None:
        self.prompt_ids: list[list[int]] = []
        self.completion_ids: list[list[int]] = []
        self.rationalized: list[bool] = []

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def state_dict(self) -> dict:
        return {"prompt_ids": self.prompt_ids, "completion_ids": self.completion_ids,
                "rationalized": self.rationalized}

    def load_state_dict(self, state: dict) -> None:
        self.prompt_ids = [list(x) for x in state["prompt_ids"]]
        self.completion_ids = [list(x) for x in state["completion_ids"]]
        self.rationalized = [bool(x) for x in state["rationalized"]]


def collect(sampler: Sampler, pool: list[dict], shots: list[dict], cfg: Config, seed: int,
            task: V.Task = V.ARITH) -> tuple[Dataset, dict]:
    """Steps 1-3: D_n from the current model, and what it cost ({"samples", "reward"}). With
    `k` > 1 each problem gets k rationales and keeps each distinct right one; a problem is
    rationalised when none is right."""
    params = V.rollout_params(cfg.new_tokens(task), cfg.temperature, task)
    outs = sampler.generate([fewshot_prompt(shots, p["question"]) for p in pool for _ in range(cfg.k)], params,
                            seed=derive_seed(seed, "rationales"))  # Eq. (1)
    right = V.score(outs, pool, cfg.k)
    data, drawn = Dataset(), len(outs)
    seen: set[tuple[int, str]] = set()
    for i, (o, r) in enumerate(zip(outs, right.tolist(), strict=True)):
        if r > 0 and (i // cfg.k, o.text) not in seen:  # Eq. (3), first part
            seen.add((i // cfg.k, o.text))
            data.prompt_ids.append(sampler.encode(arithmetic.prompt(pool[i // cfg.k]["question"])))
            data.completion_ids.append(list(o.token_ids))
            data.rationalized.append(False)
    solved = right.reshape(len(pool), cfg.k).amax(1).tolist()
    failed = [p for p, r in zip(pool, solved, strict=True) if r == 0]
    if cfg.rationalize and failed:
        hinted = sampler.generate([fewshot_prompt(shots, p["question"], p["answer"]) for p in failed], params,
                                  seed=derive_seed(seed, "rationalize"))  # Eq. (2)
        drawn += len(hinted)
        for p, o, r in zip(failed, hinted, V.score(hinted, failed, 1).tolist(), strict=True):
            if r > 0:  # Eq. (3), second part: stored under the plain prompt, without the hint
                data.prompt_ids.append(sampler.encode(arithmetic.prompt(p["question"])))
                data.completion_ids.append(list(o.token_ids))
                data.rationalized.append(True)
    return data, {"samples": drawn, "reward": right.mean().item()}


# ---- 4. Fine-tune from the base model ------------------------------------------------------------
def step_budget(cfg: Config, iteration: int) -> int:
    """S_n = ⌈S_1 · growth^(n−1)⌉ for iteration n = `iteration` + 1 (0-based `iteration`)."""
    return math.ceil(cfg.sft_steps * cfg.step_growth ** iteration - 1e-9)


def finetune_from_base(model, base: dict[str, torch.Tensor], data: Dataset, n_steps: int, cfg: Config,
                       seed: int) -> dict[str, float]:
    """Step 4: load the base weights, then `n_steps` Adam steps of Eq. (4) on minibatches of D_n
    (a seeded permutation, cycled). With an empty D_n the model is the base model."""
    model.load_state_dict(base)
    if not len(data):
        return {}
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return V.sft_minibatches(model, optimizer, data.prompt_ids, data.completion_ids, n_steps, cfg.batch_size,
                             seed, cfg.micro_batch, cfg.max_grad_norm)  # Eq. (4)


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/strict", "train/reward", "train/kept", "train/rationalization_share", "losses/sft"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run STaR; return every logged row. `callback(step, metrics)` after each logged step."""
    data = Dataset()
    ctx = V.start(cfg, "star", callback, PLOT_KEYS, lr=None, data=data)  # a fresh Adam every round (Eq. 4)
    task, model, counter, sampler = ctx.task, ctx.model, ctx.counter, ctx.sampler  # model = M_n, the next generator
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}  # M: every round starts here
    pool, shots = pool_and_shots(cfg, task)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        new, info = collect(sampler, pool, shots, cfg, derive_seed(cfg.seed, "collect", t), task)  # 1-3
        data.load_state_dict(new.state_dict())
        counter.samples += info["samples"]
        n_steps = step_budget(cfg, t)
        losses = finetune_from_base(model, base, data, n_steps, cfg, derive_seed(cfg.seed, "batches", t))  # 4
        n_rat = sum(data.rationalized)
        return {"train/reward": info["reward"], "train/kept": float(len(data)), "train/rationalized": float(n_rat),
                "train/rationalization_share": n_rat / max(len(data), 1), "train/sft_steps": float(n_steps),
                "train/samples": float(counter.samples), "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    return ctx.run.loop(step, ctx.evaluator(cfg), V.sample_budget(cfg))  # 5


def summary(history: History) -> str:
    """The line `spkit train star` prints at the end."""
    return V.summary_line(history)


__all__ = ["PAPER", "Config", "hint", "fewshot_prompt", "pool_and_shots", "Dataset", "collect", "step_budget",
           "finetune_from_base", "train", "summary"]
