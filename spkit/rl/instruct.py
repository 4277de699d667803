r"""Learning to follow instructions from the model's own samples, on `spkit_ifeval_lite`.

The plumbing the trainers of iterative alignment share (SPaR, online iterative DPO,
Self-Rewarding, self-consuming loops): where prompts come from, how responses are drawn, the
rule checkers as the oracle, and the held-out number `spkit eval --tasks spkit_ifeval_lite`
reports::

    recs = TASK.train_problems(16, seed)                  # train split, never dev or held-out
    outs = sample_groups(sampler, recs, k=4, params=ctx.params, seed=s)   # row i·K + j
    frac = fractions(recs, [o.text for o in outs], k=4)   # share of instructions followed (oracle)
    metrics = evaluate_heldout(model, tok)                # the spkit_ifeval_lite numbers, greedy

Prompts are IFEval records (`spkit.tasks.instructions`). The held-out set is the 200 records
`spkit_ifeval_lite` scores (test split, seed 0); training draws the train split minus its dev
bucket, and settings are chosen on the dev bucket (``--eval-on dev``), so neither the held-out
prompts nor the dev prompts are trained on. The prompt is the bare record prompt, as lm-eval
feeds it; responses stop at a blank line, 128 new tokens, greedy for the evaluation, batched
like spkit's lm-eval backend so the texts equal `spkit eval`'s (tests/test_self_judge.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from spkit.config import param
from spkit.errors import SpkitError
from spkit.generation import Sampler
from spkit.rl import verifiable as V
from spkit.run import Run, RunConfig
from spkit.sampling import Completion
from spkit.tasks import instructions

__all__ = ["EVAL_N", "EVAL_SEED", "TASK", "InstructConfig", "start", "sample_groups", "checks", "fractions",
           "evaluate_heldout", "evaluate", "eval_records", "budget", "response_class", "class_entropy", "diversity",
           "summary_line"]

EVAL_N = 200  # evals/utils.py load_spkit_ifeval_lite(n=200)
EVAL_SEED = 0  # spkit.evals.data.EVAL_SEED
DEV_SEED = 1


def _train(n: int, seed: int, levels=None) -> list[dict]:
    return instructions.generate(n, seed, split="train", exclude_dev=True)


def _dev(n: int, seed: int = DEV_SEED) -> list[dict]:
    return instructions.generate(n, seed, split="dev")


def _heldout(limit: int | None = None) -> list[dict]:
    recs = instructions.generate(EVAL_N, EVAL_SEED, split="test")
    return recs[:limit] if limit else recs


TASK = V.Task("spkit_ifeval_lite", train=_train, dev=_dev, heldout=_heldout, stop=("\n\n",),
              max_new_tokens=128, eval_command="spkit eval --tasks spkit_ifeval_lite")


@dataclass
class InstructConfig(RunConfig):
    """The fields every trainer on `spkit_ifeval_lite` shares."""

    model: str = param("spkit-tiny", "model name, hub id or save_pretrained directory")
    prompts: int = param(16, "train-split prompts per iteration", ge=1)
    k: int = param(4, "responses sampled per prompt", ge=1)
    temperature: float = param(1.0, "response sampling temperature", gt=0)
    max_new_tokens: int = param(128, "tokens per response (spkit_ifeval_lite's max_gen_toks: 128)", ge=1)
    eval_on: str = param("heldout", "heldout = the 200 spkit_ifeval_lite prompts (the reported number); dev = "
                         "200 dev-split prompts, where settings are chosen", choices=("heldout", "dev"))
    eval_limit: int = param(0, "prompts per evaluation; 0 = all 200", ge=0, identity=False)
    max_samples: int = param(0, "stop once this many responses were drawn (refinements included); 0 = none",
                             ge=0, identity=False)


def start(cfg: InstructConfig, name: str, callback: Callable | None, plot_keys: list[str], lr: float | None,
          **state) -> V.Start:
    """As `verifiable.start` (run, model, Adam, sample counter, tracked state, sampler, rollout
    parameters), with the instruction task."""
    from spkit.run import model_for

    run = Run(cfg, name, callback, plot_keys)
    model, tok = model_for(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr) if lr is not None else None
    counter = V.SampleCounter()
    run.track(model=model, tokenizer=tok, **({"optimizer": optimizer} if optimizer else {}), counter=counter,
              **state)
    return V.Start(TASK, run, model, tok, optimizer, counter, Sampler(model, tok),
                   V.rollout_params(cfg.max_new_tokens, cfg.temperature, TASK))


def sample_groups(sampler: Sampler, records: Sequence[dict], k: int, params, seed: int) -> list[Completion]:
    """K responses to each record's prompt; row i·K + j is sample j of record i."""
    if k < 1:
        raise SpkitError(f"k must be >= 1, got {k}")
    return sampler.generate([r["prompt"] for r in records for _ in range(k)], params, seed=seed)


def checks(record: dict, text: str) -> list[bool]:
    """The rule checkers' strict verdict per instruction (lm-eval's IFEval checks)."""
    return instructions.check(record, text)


def fractions(records: Sequence[dict], texts: Sequence[str], k: int = 1) -> Tensor:
    """(len(records)·K,) share of each response's instructions the checkers accept (the oracle)."""
    if len(texts) != len(records) * k:
        raise SpkitError(f"{len(texts)} responses for {len(records)} prompts × {k}")
    out = []
    for i, t in enumerate(texts):
        v = checks(records[i // k], t)
        out.append(sum(v) / len(v))
    return torch.tensor(out)


def evaluate_heldout(model, tokenizer, limit: int | None = None, sampler: Sampler | None = None,
                     records: Sequence[dict] | None = None) -> dict[str, float]:
    """Greedy responses to the held-out prompts (the first `limit`; or `records`), scored by the
    checkers: "eval/prompt_strict" (the headline, `spkit eval`'s prompt_level_strict_acc),
    "eval/inst_strict" (inst_level_strict_acc) and "eval/response_len" (tokens)."""
    return evaluate(model, tokenizer, limit, sampler, records)[0]


def evaluate(model, tokenizer, limit: int | None = None, sampler: Sampler | None = None,
             records: Sequence[dict] | None = None) -> tuple[dict[str, float], list[float], list[str]]:
    """`evaluate_heldout`'s metrics, each prompt's fraction of instructions followed, the texts."""
    recs = list(records) if records is not None else TASK.heldout_problems(limit)
    sampler = sampler or Sampler(model, tokenizer)
    outs = V.greedy_as_eval(model, sampler, [r["prompt"] for r in recs], TASK)
    verdicts = [checks(r, o.text) for r, o in zip(recs, outs, strict=True)]
    flat = [v for vs in verdicts for v in vs]
    fr = [sum(vs) / len(vs) for vs in verdicts]
    return ({"eval/prompt_strict": sum(all(vs) for vs in verdicts) / len(recs),
             "eval/inst_strict": sum(flat) / len(flat),
             "eval/response_len": sum(len(o.token_ids) for o in outs) / len(outs)}, fr, [o.text for o in outs])


# ---- diversity: classes of responses


LENGTH_BUCKETS = (10, 25, 45)  # words: < 10, 10-24, 25-44, >= 45 (the tasks' word-count bounds)


def response_class(text: str) -> tuple:
    """A response's class from its surface features, whatever the prompt: case (lower / upper /
    mixed), a <<title>>, wrapped in quotes, any comma, ends with one of the task's end phrases,
    holds one of its keywords, and the length bucket (`LENGTH_BUCKETS`)."""
    v = text.strip()
    case = "lower" if v.islower() else "upper" if v.isupper() else "mixed"
    words = len(v.split())
    low = v.strip('"').lower()
    return (case, "<<" in v and ">>" in v, len(v) > 1 and v[0] == v[-1] == '"', "," in v,
            any(low.endswith(e.lower()) for e in instructions.END_PHRASES),
            any(k in low.split() for k in instructions.KEYWORDS), sum(words >= b for b in LENGTH_BUCKETS))


def class_entropy(texts: Sequence[str]) -> tuple[float, int]:
    """(entropy in bits of the empirical distribution of `response_class`, distinct classes)."""
    counts = Counter(response_class(t) for t in texts)
    n = sum(counts.values())
    return -sum(c / n * math.log2(c / n) for c in counts.values()), len(counts)


def diversity(texts: Sequence[str], prefix: str) -> dict[str, float]:
    """{prefix/class_entropy, prefix/classes} of a set of responses."""
    h, n = class_entropy(texts)
    return {f"{prefix}/class_entropy": h, f"{prefix}/classes": float(n)}


def eval_records(cfg: InstructConfig) -> list[dict]:
    """The prompts `--eval-on` names (all 200, or the first `--eval-limit`)."""
    recs = TASK.heldout_problems() if cfg.eval_on == "heldout" else TASK.dev_problems(EVAL_N)
    return recs[: cfg.eval_limit] if cfg.eval_limit else recs


def budget(cfg: InstructConfig) -> Callable[[dict], bool] | None:
    """`Run.loop`'s `stop` for --max-samples."""
    if not cfg.max_samples:
        return None
    return lambda metrics: metrics.get("train/samples", 0.0) >= cfg.max_samples


def summary_line(history) -> str:
    """'spkit_ifeval_lite prompt-level strict: 35.0% -> 41.0% after 1 024 samples'."""
    _, acc = history.series("eval/prompt_strict")
    _, n = history.series("train/samples")
    if not acc:
        return "no evaluation was logged"
    return (f"spkit_ifeval_lite prompt-level strict: {100 * acc[0]:.1f}% -> {100 * acc[-1]:.1f}% "
            f"after {int(n[-1]) if n else 0} samples")
