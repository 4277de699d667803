r"""The model as its own judge (LLM-as-a-judge) on instruction following, and the seed data that
teaches it to judge.

Two judge formats, both answered by sampling a few tokens after the judge prompt:

- "verdict" (SPaR): ``<prompt>\nResponse: <response>\nDoes the response follow every
  instruction? Verdict:`` → `` Yes`` | `` No``; a response's value is the share of Yes among
  `votes` sampled judgments, accepted by majority (value > ½).
- "verdict01": the same question answered `` 1`` (yes) | `` 0`` (no). In spkit-tiny's 1,698-token
  vocabulary `` No`` is one token but `` Yes`` is three (`` ``, ``Y``, ``es``), so under "verdict"
  the two answers are not equally easy to learn or to sample; `` 1`` and `` 0`` are one token each,
  as `` Yes`` and `` No`` are in the papers' LLaMA-3 vocabulary.
- "score" (Self-Rewarding's additive rubric, one point per criterion, the criteria being the
  prompt's instructions): ``... Points, one per instruction followed, out of n: Score:`` → `` s``,
  s ∈ {0..n}; a response's score is the mean over `votes` judgments, divided by n.

A judgment that does not parse counts as No (verdict) or is left out of the mean (score; all
unparsed → 0). The judge is the policy itself, never the checkers; the checkers only measure
its accuracy (`accuracy`) and, in both papers' seed stage, label the judge's seed training data
(`seed_examples`: the model's own responses to seed prompts with the checkers' verdicts, the
stand-in for SPaR's GPT-4o judgments and Self-Rewarding's evaluation-fine-tuning data).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from spkit.config import param
from spkit.errors import SpkitError
from spkit.generation import Sampler
from spkit.rl import instruct
from spkit.sampling import SamplingParams
from spkit.seeding import derive_seed

__all__ = ["KINDS", "VERDICTS", "BALANCES", "judge_prompt", "target", "parse", "judge", "values", "oracle_labels", "accuracy",
           "seed_examples", "seed_finetune", "JudgedConfig", "seed_stage"]

KINDS = ("verdict", "verdict01", "score")
VERDICTS = {"verdict": ("Yes", "No"), "verdict01": ("1", "0")}  # binary judges: (accept, reject)
BALANCES = ("exact", "none")
JUDGE_PARAMS = dict(max_new_tokens=4, stop=("\n",))


def judge_prompt(kind: str, record: dict, response: str) -> str:
    """The judge prompt for one response."""
    head = f"{record['prompt']}\nResponse: {response.strip()}\n"
    if kind == "verdict":
        return head + "Does the response follow every instruction? Verdict:"
    if kind == "verdict01":
        return head + "Does the response follow every instruction? Verdict (1 = yes, 0 = no):"
    if kind == "score":
        return head + f"Points, one per instruction followed, out of {len(record['instruction_id_list'])}: Score:"
    raise SpkitError(f"unknown judge kind {kind!r}; use {' or '.join(KINDS)}")


def target(kind: str, label: int) -> str:
    """The judgment text for a label (verdict: 1 = Yes, 0 = No; verdict01: 1 = 1, 0 = 0; score:
    the points)."""
    if kind in VERDICTS:
        return " " + VERDICTS[kind][0 if label else 1]
    return f" {int(label)}"


def parse(kind: str, text: str) -> float:
    """verdict → 1.0 (Yes) / 0.0 (No or unparsable); verdict01 → 1.0 (1) / 0.0 (0 or
    unparsable); score → the first integer, NaN if none."""
    if kind in VERDICTS:
        words = text.strip().split()
        return 1.0 if words and words[0].strip(".,").lower() == VERDICTS[kind][0].lower() else 0.0
    m = re.search(r"\d+", text)
    return float(m.group()) if m else float("nan")


def judge(sampler: Sampler, kind: str, records: Sequence[dict], texts: Sequence[str], votes: int,
          temperature: float, seed: int, k: int = 1) -> Tensor:
    """(len(texts), votes) parsed judgments; text i answers records[i // k]. Each vote is an
    independent sample (row seeds from `seed`); identical judge prompts share one prefill."""
    prompts = [judge_prompt(kind, records[i // k], t) for i, t in enumerate(texts)]
    params = SamplingParams(temperature=temperature, **JUDGE_PARAMS)
    outs = sampler.generate([p for p in prompts for _ in range(votes)], params, seed=seed)
    return torch.tensor([parse(kind, o.text) for o in outs]).view(len(texts), votes)


def values(kind: str, judgments: Tensor, records: Sequence[dict], k: int = 1) -> Tensor:
    """(B,) a response's value in [0, 1]: the share of Yes votes (verdict, verdict01), the mean
    parsed score over n (score; clipped to [0, 1], 0 with no parsed vote)."""
    if kind in VERDICTS:
        return judgments.mean(dim=1)
    n = torch.tensor([len(records[i // k]["instruction_id_list"]) for i in range(judgments.shape[0])],
                     dtype=torch.float32)
    ok = ~torch.isnan(judgments)
    mean = torch.where(ok, judgments, torch.zeros_like(judgments)).sum(1) / ok.sum(1).clamp(min=1)
    return (mean / n).clamp(0.0, 1.0)


def oracle_labels(kind: str, records: Sequence[dict], texts: Sequence[str], k: int = 1) -> list[int]:
    """The checkers' answer to the judge's question: verdict 1 iff every instruction is followed;
    score = the number followed."""
    out = []
    for i, t in enumerate(texts):
        v = instruct.checks(records[i // k], t)
        out.append(int(all(v)) if kind in VERDICTS else sum(v))
    return out


def accuracy(kind: str, judge_values: Tensor, records: Sequence[dict], texts: Sequence[str], k: int = 1
             ) -> dict[str, float]:
    """The judge against the checkers: "judge/accuracy" (verdict: majority = all followed;
    score: round(value·n) = the number followed), and for verdicts the rates of accepting a
    failing response ("judge/false_accept") and rejecting a passing one ("judge/false_reject")."""
    labels = oracle_labels(kind, records, texts, k)
    if kind in VERDICTS:
        pred = (judge_values > 0.5).long().tolist()
    else:
        pred = [round(float(v) * len(records[i // k]["instruction_id_list"])) for i, v in enumerate(judge_values)]
    m = {"judge/accuracy": sum(p == y for p, y in zip(pred, labels, strict=True)) / max(len(labels), 1)}
    if kind in VERDICTS:
        neg = [p for p, y in zip(pred, labels, strict=True) if y == 0]
        pos = [p for p, y in zip(pred, labels, strict=True) if y == 1]
        if neg:  # (undefined rates are left out, never NaN)
            m["judge/false_accept"] = sum(neg) / len(neg)
        if pos:
            m["judge/false_reject"] = 1.0 - sum(pos) / len(pos)
        m["judge/oracle_pass"] = len(pos) / max(len(labels), 1)
    return m


def seed_examples(kind: str, records: Sequence[dict], texts: Sequence[str], k: int = 1,
                  balance: str = "exact") -> list[tuple[str, str]]:
    """(judge prompt, checker-labelled judgment) pairs for the judge's seed fine-tune; with
    `balance` "exact" every label keeps only as many examples as the rarest label has (the first
    ones), so the judge cannot score well by learning the base rate; "none" keeps them all."""
    if balance not in BALANCES:
        raise SpkitError(f"unknown balance {balance!r}; use {' or '.join(BALANCES)}")
    labels = oracle_labels(kind, records, texts, k)
    ex = [(judge_prompt(kind, records[i // k], t), target(kind, y), y) for i, (t, y) in enumerate(zip(texts, labels,
                                                                                                        strict=True))]
    if balance == "exact":
        counts = Counter(e[2] for e in ex)
        cap = min(counts.values()) if len(counts) > 1 else len(ex)
        taken: Counter = Counter()
        kept = []
        for e in ex:
            if taken[e[2]] < cap:
                kept.append(e)
                taken[e[2]] += 1
        ex = kept
    return [(p, y) for p, y, _ in ex]


def seed_finetune(model, optimizer, sampler: Sampler, kind: str, records: Sequence[dict], k: int,
                  params: SamplingParams, seed: int, steps: int, batch_size: int, balance: str = "exact"
                  ) -> tuple[dict[str, float], int]:
    """The seed stage: K responses of the model to each seed record, labelled by the checkers
    (`seed_examples`), then `steps` SFT steps on the judgments (`verifiable.sft_minibatches`).
    Returns the SFT stats with the number of examples, and the number of responses drawn."""
    from spkit.rl.verifiable import sft_minibatches

    outs = instruct.sample_groups(sampler, records, k, params, seed)
    ex = seed_examples(kind, records, [o.text for o in outs], k, balance)
    tok = sampler.tokenizer
    prompt_ids = [sampler.encode(p) for p, _ in ex]
    target_ids = [tok(y, add_special_tokens=False)["input_ids"] for _, y in ex]
    stats = sft_minibatches(model, optimizer, prompt_ids, target_ids, steps, batch_size, seed)
    return {**stats, "examples": float(len(ex))}, len(outs)


@dataclass
class JudgedConfig(instruct.InstructConfig):
    """A trainer with a self-judge (SPaR, Self-Rewarding): the judge, its seed stage, the DPO step."""

    votes: int = param(5, "sampled judgments per response (SPaR: 5, majority vote)", ge=1)
    judge_temperature: float = param(1.0, "temperature of the sampled judgments", gt=0)
    judge_seed_prompts: int = param(128, "seed stage: prompts whose responses the checkers label for the "
                                    "judge's fine-tune (0 = no seed stage)", ge=0)
    judge_seed_k: int = param(4, "seed stage: responses per seed prompt", ge=1)
    judge_seed_steps: int = param(60, "seed stage: SFT steps on the labelled judgments", ge=0)
    judge_seed_lr: float = param(3e-4, "seed stage: learning rate", gt=0)
    beta: float = param(0.1, "β of the DPO loss (reference = the current iterate)", gt=0)
    epochs: int = param(2, "optimizer steps over each iteration's pairs", ge=1)
    micro_batch: int = param(32, "pairs per forward/backward", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)


def seed_stage(ctx, cfg: JudgedConfig, kind: str) -> dict[str, float]:
    """Fine-tune the judge once on checker-labelled judgments of its own responses (its own Adam);
    the responses count as drawn samples."""
    if not (cfg.judge_seed_prompts and cfg.judge_seed_steps):
        return {}
    records = instruct.TASK.train_problems(cfg.judge_seed_prompts, derive_seed(cfg.seed, "judge_seed"))
    opt = torch.optim.Adam(ctx.model.parameters(), lr=cfg.judge_seed_lr)
    stats, n = seed_finetune(ctx.model, opt, ctx.sampler, kind, records, cfg.judge_seed_k, ctx.params,
                               derive_seed(cfg.seed, "judge_seed_sample"), cfg.judge_seed_steps, 32)
    ctx.counter.samples += n
    return {**({"judge_seed/sft": stats["sft"]} if "sft" in stats else {}), "judge_seed/examples": stats["examples"]}
