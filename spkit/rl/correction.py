r"""Two-attempt episodes for the self-correction trainers (SFT on corrections, SCoRe, RISE, SELF,
EVOLVE), the warm-up they all start with, and their held-out evaluation — the numbers
`spkit eval --tasks spkit_arith_correct` reports.

    eps = sample_attempts(sampler, problems, k=4, params=params, seed=s)  # (P·K) episodes, grouped
    eps.r1, eps.r2                                   # (P·K,) strict rewards of attempts 1 and 2
    metrics = evaluate_correction(model, tok)        # eval/accuracy_t1 ... eval/delta_c2i, greedy

An episode is y1 ~ π(·|x), then y2 ~ π(·|x, y1, instruction) with the prompt of
`spkit.tasks.correction.second_prompt` built from y1's *text*: each attempt is a completion of
its own string prompt, re-tokenised, as a chat model sees an earlier turn. Attempt 1 is
`verifiable.sample_groups` (K per problem, rows i·K + j); attempt 2 is one sample per attempt 1.

The evaluation is the two passes of `spkit eval`: attempt 1 exactly as
`verifiable.heldout_completions` (the `spkit_arith` completions), attempt 2 greedy on the
second prompts, batched as spkit's lm-eval backend batches them (`verifiable.greedy_as_eval`),
scored by `spkit.tasks.correction` (tested equal to `spkit eval`).

The shared warm-up (`CorrectionConfig.warmup_steps`, the first steps of every correction run).
The papers start from a model that can already follow a two-turn transcript; spkit-tiny never
saw one in pretraining, and its attempt 2 ignores the problem (Accuracy@t2 far below @t1). Each
warm-up step samples K attempts 1 per train problem, y^1..y^K ~ π_θ(·|x), and fine-tunes
attempt 2 on

    (x, y^j, I) → y^{(j+1) mod K}          j = 1..K          (`warmup_pairs`, `warmup_corpus`)

— another independent sample of the model's *own* attempt-1 distribution for the same problem.
Attempt 2 learns to re-solve the problem after the instruction, nothing about revising: the
target does not depend on whether y^j was right (no checker is consulted, so the warm-up is not
itself a correction method), so at its end Δ(t1, t2) ≈ 0 by construction while both flip rates
are visible. The warm-up is method-neutral: the same problems, samples, learning rate
(`warmup_lr`, `warmup_temperature`) and steps whatever trainer runs it (its model at the end is identical across the
five trainers for one seed), its completions count in `train/samples` (the budget), and it is
ordinary run-loop steps (resumable like any step). At its end the held-out metrics of the
warmed-up model are logged as "warmup/<metric>", the method's optimizer state is reset, a frozen
reference (`FrozenReference`: SCoRe's π_ref) becomes the warmed-up model, and the method's own
step 0 follows (`with_warmup`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from spkit.config import param
from spkit.generation import Sampler
from spkit.models import inference_model
from spkit.rl import verifiable as V
from spkit.run.checkpoint import load_weights, save_tensors
from spkit.sampling import Completion, SamplingParams
from spkit.seeding import derive_seed
from spkit.tasks import correction

__all__ = ["CorrectionConfig", "Episodes", "sample_attempts", "second_attempts", "warmup_pairs", "warmup_corpus",
           "warmup_step", "FrozenReference", "with_warmup", "heldout_attempts", "evaluate_correction", "summary_line"]


@dataclass
class CorrectionConfig(V.VerifiableConfig):
    """The fields every self-correction trainer shares (its `Config` subclasses this): the shared
    warm-up and the update's batching."""

    warmup_steps: int = param(8, "steps of the shared warm-up before the method (attempt 2 fitted to another of "
                              "the model's own attempts 1 to the problem; spkit.rl.correction); 0 = none", ge=0)
    warmup_k: int = param(4, "warm-up: attempts 1 sampled per problem (each one's attempt-2 target is the next)",
                          ge=2)
    warmup_lr: float = param(1e-4, "warm-up: learning rate (Adam; the method's own --lr afterwards)", gt=0)
    warmup_temperature: float = param(0.5, "warm-up: sampling temperature of its attempts 1 (contexts and targets)",
                                      gt=0)
    micro_batch: int = param(64, "rows per forward/backward (gradient accumulation)", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)


@dataclass
class Episodes:
    """P·K two-attempt episodes, grouped by problem (row i·K + j is sample j of problem i)."""

    problems: list[dict]
    first: list[Completion]
    second: list[Completion]
    r1: Tensor  # (P·K,) 1.0 where attempt 1 is right
    r2: Tensor  # (P·K,) 1.0 where attempt 2 is right

    @property
    def k(self) -> int:
        return len(self.first) // max(len(self.problems), 1)

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """SCoRe's five metrics over these episodes (fractions), keys prefixed (e.g. "train/")."""
        return {prefix + k: v for k, v in correction.correction_metrics(self.r1.tolist(), self.r2.tolist()).items()}


def _repeat(problems: Sequence[dict], k: int) -> list[dict]:
    """Each problem k times in a row: the problem of each row of a grouped batch."""
    return [p for p in problems for _ in range(k)]


def second_attempts(sampler: Sampler, problems: Sequence[dict], first: Sequence[Completion], k: int,
                    params: SamplingParams, seed: int) -> list[Completion]:
    """One attempt 2 per attempt 1 (rows aligned with `first`), sampled with `params`."""
    prompts = [correction.second_prompt(p["question"], c.text) for p, c in zip(_repeat(problems, k), first, strict=True)]
    return sampler.generate(prompts, params, seed=seed)


def sample_attempts(sampler: Sampler, problems: Sequence[dict], k: int, params: SamplingParams,
                    seed: int) -> Episodes:
    """K episodes per problem: K attempts 1, then one attempt 2 each, scored."""
    first = V.sample_groups(sampler, problems, k, params, derive_seed(seed, "attempt1"))
    second = second_attempts(sampler, problems, first, k, params, derive_seed(seed, "attempt2"))
    return Episodes(list(problems), first, second, V.score(first, problems, k), V.score(second, problems, k))


# ---- the shared warm-up


def warmup_pairs(n_rows: int, k: int) -> list[tuple[int, int]]:
    """(attempt-1 row, target row) of each warm-up row: in each group of K samples of one problem,
    row j's attempt 2 is fitted to row (j + 1) mod K — every sample is a target exactly once."""
    return [(g * k + j, g * k + (j + 1) % k) for g in range(n_rows // k) for j in range(k)]


def warmup_corpus(problems: Sequence[dict], first: Sequence[Completion], k: int
                  ) -> tuple[list[str], list[list[int]]]:
    """The warm-up's SFT rows: (attempt-2 prompt after y^j, the token ids of y^{j+1}). A sampled
    attempt 1 is a continuation of ``Answer:``, as attempt 2 is, so its tokens (the stop token
    included) are the target unchanged."""
    rows = _repeat(problems, k)
    pairs = warmup_pairs(len(first), k)
    return ([correction.second_prompt(rows[i]["question"], first[i].text) for i, _ in pairs],
            [list(first[j].token_ids) for _, j in pairs])


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def warmup_step(ctx: V.Start, cfg: CorrectionConfig, t: int) -> dict[str, float]:
    """Warm-up step t: K attempts 1 (at `warmup_temperature`) for each of `problems` train
    problems, then one SFT step (`verifiable.sft_update`, at `warmup_lr`) on `warmup_corpus`."""
    problems = ctx.task.train_problems(cfg.problems, derive_seed(cfg.seed, "warmup-problems", t))
    params = dataclasses.replace(ctx.params, temperature=cfg.warmup_temperature)
    first = V.sample_groups(ctx.sampler, problems, cfg.warmup_k, params, derive_seed(cfg.seed, "warmup", t))
    ctx.counter.samples += len(first)
    prompts, targets = warmup_corpus(problems, first, cfg.warmup_k)
    _set_lr(ctx.optimizer, cfg.warmup_lr)
    losses = V.sft_update(ctx.model, ctx.optimizer, [ctx.sampler.encode(p) for p in prompts], targets, 1,
                          cfg.micro_batch, cfg.max_grad_norm)
    r1 = V.score(first, problems, cfg.warmup_k)
    return {"train/warmup": 1.0, "train/samples": float(ctx.counter.samples),
            "train/accuracy_t1": r1.mean().item(),
            "train/copied_targets": sum(first[i].text.strip() == first[j].text.strip()
                                        for i, j in warmup_pairs(len(first), cfg.warmup_k)) / len(first),
            **{f"losses/warmup_{k}": v for k, v in losses.items()}}


class FrozenReference:
    """A frozen copy of the policy (SCoRe's π_ref): the loaded model at first, the warmed-up model
    once the warm-up ends. Tracked by `Run`, so a checkpoint holds its weights (`save_files`,
    safetensors) and `--resume` restores them."""

    def __init__(self, cfg: CorrectionConfig) -> None:
        self.cfg, self._model = cfg, None

    @property
    def model(self):
        """The frozen model, loaded from the config's `model` on first use (after the run's data
        checks), on the run's device and in its dtype."""
        if self._model is None:
            from spkit.run import model_for

            self._model = model_for(self.cfg)[0].eval().requires_grad_(False)
        return self._model

    def reset_to(self, model) -> None:
        self.model.load_state_dict(inference_model(model).state_dict())  # --fsdp: the full copy

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def save_files(self, path: Path) -> None:
        save_tensors(self.model.state_dict(), path / "model.safetensors")

    def load_files(self, path: Path) -> None:
        load_weights(self.model, path)


def with_warmup(ctx: V.Start, cfg: CorrectionConfig, method_step: Callable[[int], dict[str, float]],
                evaluate: Callable[[int], dict[str, float]] | None = None,
                refs: Sequence[FrozenReference] = ()) -> Callable[[int], dict[str, float]]:
    """`Run.loop`'s step: warm-up steps 0 .. warmup_steps − 1, then `method_step(s)` for the
    method's own step s = t − warmup_steps (its schedules and seeds count from its first step).
    The last warm-up step also logs `evaluate`'s held-out metrics as "warmup/<metric>"; the first
    method step resets the optimizer (Adam's moments; the method's --lr) and every reference in
    `refs` to the warmed-up model."""
    w = cfg.warmup_steps
    method_lr = [g["lr"] for g in ctx.optimizer.param_groups]  # the method's --lr, as V.start built Adam

    def step(t: int) -> dict[str, float]:
        if t < w:
            m = warmup_step(ctx, cfg, t)
            if t == w - 1 and evaluate is not None and w < cfg.steps:  # (a run of warm-up only ends evaluated)
                m |= {"warmup/" + k.split("/", 1)[1]: v for k, v in evaluate(t + 1).items()
                      if k.startswith("eval/")}
            return m
        if t == w and w > 0:
            ctx.optimizer.state.clear()
            for ref in refs:
                ref.reset_to(ctx.model)
        for group, lr in zip(ctx.optimizer.param_groups, method_lr, strict=True):
            group["lr"] = lr
        return method_step(t - w)

    return step


def heldout_attempts(model, tokenizer, limit: int | None = None, batch_size: int = V.EVAL_BATCH,
                     sampler: Sampler | None = None, task: V.Task | None = None
                     ) -> tuple[list[dict], list[Completion], list[Completion]]:
    """(problems, attempts 1, attempts 2) of the held-out set, greedy, as `spkit eval` makes them."""
    sampler = sampler or Sampler(model, tokenizer)
    problems, first = V.heldout_completions(model, tokenizer, limit, batch_size, sampler, task)
    prompts = [correction.second_prompt(p["question"], c.text) for p, c in zip(problems, first, strict=True)]
    return problems, first, V.greedy_as_eval(model, sampler, prompts, task, batch_size)


def evaluate_correction(model, tokenizer, limit: int | None = None, batch_size: int = V.EVAL_BATCH,
                        sampler: Sampler | None = None, task: V.Task | None = None) -> dict[str, float]:
    """Held-out two-attempt metrics (`spkit eval --tasks spkit_arith_correct`, the first `limit`
    problems per level): "eval/<metric>" for each of `correction.METRICS`, "eval/strict"
    (= Accuracy@t1, the spkit_arith number), "eval/copied" (share of attempts 2 whose text
    equals attempt 1's: the collapse the papers describe) and "eval/accuracy_t2/level_<s>"."""
    problems, first, second = heldout_attempts(model, tokenizer, limit, batch_size, sampler, task)
    r1, r2 = V.score(first, problems, 1), V.score(second, problems, 1)
    m = {f"eval/{k}": v for k, v in correction.correction_metrics(r1.tolist(), r2.tolist()).items()}
    m["eval/strict"] = m["eval/accuracy_t1"]
    m["eval/copied"] = sum(a.text.strip() == b.text.strip() for a, b in zip(first, second, strict=True)) / len(first)
    levels = torch.tensor([p.get("steps", 0) for p in problems])
    for level in (task or V.ARITH).levels:
        m[f"eval/accuracy_t2/level_{level}"] = r2[levels == level].mean().item()
    return m


def summary_line(history) -> str:
    """'held-out Accuracy@t1 27.0% -> 30.0%, Accuracy@t2 …, Δ(t1,t2) … after N samples'."""
    _, n = history.series("train/samples")
    parts = []
    for key in correction.METRICS:
        _, v = history.series(f"eval/{key}")
        if v:
            parts.append(f"{correction.METRIC_NAMES[key]} {100 * v[0]:.1f}% -> {100 * v[-1]:.1f}%")
    if not parts:
        return "no evaluation was logged"
    return f"held-out (spkit_arith_correct): {', '.join(parts)} after {int(n[-1]) if n else 0} samples"
