r"""Two-attempt episodes for the self-correction trainers (SCoRe, RISE, the SFT baseline), and
their held-out evaluation — the numbers `spkit eval --tasks spkit_arith_correct` reports.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from spkit.generation import Sampler
from spkit.rl import verifiable as V
from spkit.sampling import Completion, SamplingParams
from spkit.seeding import derive_seed
from spkit.tasks import correction

__all__ = ["Episodes", "sample_attempts", "second_attempts", "heldout_attempts", "evaluate_correction",
           "summary_line"]


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
