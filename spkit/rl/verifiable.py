r"""Learning from a verifiable reward: sample K answers per problem, score them with the task's
own checker, and measure held-out accuracy exactly as `spkit eval --tasks spkit_arith` does.

Every trainer on the arithmetic task (RFT, GRPO and the methods compared against them) uses
these functions, so the problems, the reward and the evaluation are the same for all:

    problems = train_problems(8, seed=derive_seed(cfg.seed, "problems", t))   # train split only
    outs = sample_groups(sampler, problems, k=8, params=rollout_params(96), seed=s)  # (8·8) grouped
    rewards = score(outs, problems, k=8)              # 1.0 where the strict answer is right
    keep = mixed_groups(rewards, k=8)                 # DAPO's dynamic-sampling filter
    metrics = evaluate_heldout(model, tok)            # the spkit_arith number, greedy

The reward is `spkit.tasks.arithmetic.is_correct(text, gold, "strict")`: the first
``#### <number>`` of the completion, normalised as lm-eval's gsm8k ``exact_match`` does. The
evaluation reproduces the lm-eval task ``spkit_arith`` (``evals/_spkit_arith_template``): the
same held-out problems (levels 1-4, 100 each, generated with seed 0 from the test split), the
zero-shot prompt ``Question: ...\nAnswer:``, the stop strings, 96 new tokens, greedy decoding,
the strict and flexible filters, and the group mean over all problems. The generation is batched
like spkit's lm-eval backend (`spkit.evals.lm.SpkitLM`: longest prompts first, batches of 64),
so both give the same completions (tested against `spkit eval` in tests/test_reasoning.py).

The held-out problems never enter training: `train_problems` draws only from the train split
(`arithmetic.split_of`), and the held-out set is drawn only from the test split. Settings are
chosen on `dev_problems`, a hash bucket of the train split that `train_problems` never draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from spkit.errors import SpkitError
from spkit.generation import Sampler
from spkit.logprobs import pad_right, token_logprobs
from spkit.rl.advantages import _grouped
from spkit.sampling import Completion, SamplingParams
from spkit.tasks import arithmetic

__all__ = [
    "EVAL_LEVELS", "EVAL_PER_LEVEL", "EVAL_SEED", "EVAL_STOP", "EVAL_MAX_NEW_TOKENS", "EVAL_BATCH",
    "train_problems", "dev_problems", "heldout_problems", "rollout_params", "sample_groups", "score", "mixed_groups",
    "heldout_completions", "evaluate_heldout", "SampleCounter", "microbatches", "microbatch_share", "padded_logprobs", "summary_line",
]

# ---- the lm-eval task spkit_arith, as numbers (checked against evals/*.yaml in the tests)
EVAL_LEVELS = (1, 2, 3, 4)  # spkit_arith_1 .. spkit_arith_4
EVAL_PER_LEVEL = 100  # evals/utils.py load_spkit_arith(n=100)
EVAL_SEED = 0  # spkit.evals.data.EVAL_SEED
EVAL_STOP = ("Question:", "\n\n", "</s>", "<|im_end|>")  # generation_kwargs.until
EVAL_MAX_NEW_TOKENS = 96  # generation_kwargs.max_gen_toks
EVAL_BATCH = 64  # `spkit eval --batch-size` default


# ---- problems


def train_problems(n: int, seed: int, steps: int | Sequence[int] = EVAL_LEVELS) -> list[dict]:
    """`n` distinct training problems, levels cycled through `steps`; never a held-out or a dev one."""
    return arithmetic.generate(n, seed, steps=tuple(steps) if not isinstance(steps, int) else steps,
                               split="train", exclude_dev=True)


def dev_problems(per_level: int, seed: int = 0, steps: Sequence[int] = EVAL_LEVELS) -> list[dict]:
    """`per_level` problems of each level from the dev split (part of train, never trained on by
    the RL trainers): where settings are chosen, so the held-out number stays unbiased."""
    out: list[dict] = []
    for level in steps:
        out += arithmetic.generate(per_level, seed, steps=level, split="dev")
    return out


def heldout_problems(limit: int | None = None) -> list[dict]:
    """The problems `spkit_arith` scores, level by level (the first `limit` of each level, as
    lm-eval's ``--limit`` takes them); each record carries its ``steps`` level."""
    out: list[dict] = []
    for level in EVAL_LEVELS:
        recs = arithmetic.generate(EVAL_PER_LEVEL, EVAL_SEED, steps=level, split="test")
        out += recs[:limit] if limit else recs
    return out


# ---- sampling and scoring


def rollout_params(max_new_tokens: int = EVAL_MAX_NEW_TOKENS, temperature: float = 1.0) -> SamplingParams:
    """Training rollouts stop where the evaluation stops (same stop strings)."""
    return SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, stop=EVAL_STOP)


def sample_groups(sampler: Sampler, problems: Sequence[dict], k: int, params: SamplingParams,
                  seed: int) -> list[Completion]:
    """K completions of each problem's prompt, laid out as consecutive groups: row i·K + j is
    sample j of problem i. Row r draws its randomness from (seed, r) (see `spkit.sampling`)."""
    if k < 1:
        raise SpkitError(f"k must be >= 1, got {k}")
    prompts = [arithmetic.prompt(p["question"]) for p in problems for _ in range(k)]
    return sampler.generate(prompts, params, seed=seed)


def score(completions: Sequence[Completion] | Sequence[str], problems: Sequence[dict], k: int,
          mode: str = "strict") -> Tensor:
    """(len(problems)·K,) rewards: 1.0 where `arithmetic.is_correct` accepts the completion."""
    if len(completions) != len(problems) * k:
        raise SpkitError(f"{len(completions)} completions for {len(problems)} problems × {k} samples")
    texts = [c if isinstance(c, str) else c.text for c in completions]
    golds = [p["answer"] for p in problems for _ in range(k)]
    return torch.tensor([float(arithmetic.is_correct(t, g, mode)) for t, g in zip(texts, golds, strict=True)])


def mixed_groups(rewards: Tensor, k: int) -> Tensor:
    """(G,) bool: groups whose rewards are not all equal — DAPO's dynamic-sampling filter drops
    the all-correct and all-wrong groups, whose group-relative advantages are all zero."""
    r = _grouped(rewards, k)  # (G, K)
    return (r != r[:, :1]).any(dim=1)


class SampleCounter:
    """Completions drawn so far (the x-axis every method is compared on); resumable state."""

    def __init__(self) -> None:
        self.samples = 0

    def state_dict(self) -> dict:
        return {"samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self.samples = int(state["samples"])


# ---- batches for the update


def microbatches(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` rows covering 0..n-1."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def microbatch_share(aggregation: str, mask: Tensor, n_rows: int, n_tok: float) -> float:
    """The weight of one micro-batch's aggregated loss so the accumulated gradient is the whole
    batch's: its share of the tokens for "token_mean", of the rows for "seq_mean"/"dr_grpo"."""
    if aggregation == "token_mean":
        return float(mask.sum()) / max(n_tok, 1.0)
    return mask.shape[0] / max(n_rows, 1)


def padded_logprobs(model, prompt_ids: Sequence[Sequence[int]],
                    completion_ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Differentiable log π(y_t | x, y_<t) of each completion, right-padded: ((B, T), (B, T) mask).
    Only completion tokens are scored, so a loss on these never sees the prompt."""
    lps = token_logprobs(model, [list(p) for p in prompt_ids], [list(c) for c in completion_ids])
    logp = pad_right(lps)
    mask = pad_right([[1.0] * len(x) for x in lps], logp.shape[1]).to(logp.device)
    return logp, mask


# ---- held-out evaluation


def heldout_completions(model, tokenizer, limit: int | None = None, batch_size: int = EVAL_BATCH,
                        sampler: Sampler | None = None) -> tuple[list[dict], list[Completion]]:
    """(problems, greedy completions) of the held-out set, generated as `spkit eval` does."""
    problems = heldout_problems(limit)
    sampler = sampler or Sampler(model, tokenizer)
    params = SamplingParams(max_new_tokens=EVAL_MAX_NEW_TOKENS, temperature=0.0, stop=EVAL_STOP)
    prompts = [arithmetic.prompt(p["question"]) for p in problems]
    lens = [len(sampler.encode(p)) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lens[i])  # as SpkitLM: longest first
    outs: list[Completion | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    for b in range(0, len(order), batch_size):
        chunk = order[b: b + batch_size]
        for i, c in zip(chunk, sampler.generate([prompts[i] for i in chunk], params, seed=b), strict=True):
            outs[i] = c
    model.train(was_training)
    return problems, outs  # type: ignore[return-value]


def evaluate_heldout(model, tokenizer, limit: int | None = None, batch_size: int = EVAL_BATCH,
                     sampler: Sampler | None = None) -> dict[str, float]:
    """Greedy held-out accuracy on `spkit_arith` (the first `limit` problems of each level; all
    400 by default), the number `spkit eval --tasks spkit_arith` reports.

    Returns "eval/strict" and "eval/flexible" (means over all problems, lm-eval's
    ``weight_by_size`` group score), "eval/strict/level_<s>" per level, and
    "eval/completion_len" (mean generated tokens)."""
    problems, outs = heldout_completions(model, tokenizer, limit, batch_size, sampler)
    strict = score(outs, problems, 1, "strict")
    flexible = score(outs, problems, 1, "flexible")
    levels = torch.tensor([p["steps"] for p in problems])
    m = {"eval/strict": strict.mean().item(), "eval/flexible": flexible.mean().item(),
         "eval/completion_len": sum(len(c.token_ids) for c in outs) / max(len(outs), 1)}
    for level in EVAL_LEVELS:
        m[f"eval/strict/level_{level}"] = strict[levels == level].mean().item()
    return m


def summary_line(history) -> str:
    """'held-out strict accuracy: 27.0% -> 31.5% after 12 800 samples' from a run's History."""
    _, acc = history.series("eval/strict")
    _, n = history.series("train/samples")
    if not acc:
        return "no evaluation was logged"
    return (f"held-out strict accuracy (spkit_arith): {100 * acc[0]:.1f}% -> {100 * acc[-1]:.1f}% "
            f"after {int(n[-1]) if n else 0} samples")
