r"""Scoring a step critic in training exactly as `spkit eval --tasks spkit_steps` scores it.

A critic reads a ProcessBench record (problem, steps tagged from 0) and answers the index of the
earliest wrong step, or -1, in ``\boxed{}`` (`spkit.tasks.steps`). The held-out items are the
lm-eval task ``spkit_steps``: subsets arith_2, arith_3, arith_4 with 100 records each, generated
with seed 0 from the arithmetic test split, greedy, 24 new tokens, stop at a blank line. Per
subset: accuracy on erroneous items, on correct items, F1 = their harmonic mean, and the share
of unparsable answers; the headline is the unweighted mean over subsets (``evals/spkit_steps.yaml``).

    recs = heldout_records()                      # the 300 spkit_steps items
    m = evaluate_critic(model, tok, recs)         # {"eval/f1": ..., "eval/acc_error/arith_2": ...}
    m = evaluate_critic(model, tok, dev_records(50), prefix="dev")  # where settings are chosen

``samples > 1`` is ProcessBench's majority-vote option: that many sampled critiques per item,
the most frequent parsed index wins (ties: the index seen first; all unparsable: unparsable).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from spkit.generation import Sampler
from spkit.rl.verifiable import EVAL_BATCH, EVAL_SEED, Task, greedy_as_eval
from spkit.sampling import SamplingParams
from spkit.tasks import steps

__all__ = ["SUBSETS", "PER_SUBSET", "STOP", "MAX_NEW_TOKENS", "STEPS_TASK", "heldout_records", "dev_records",
           "majority", "critic_predictions", "scores_by_subset", "evaluate_critic"]

SUBSETS = tuple(steps.SUBSETS)  # spkit_steps_arith_2 .. _4
PER_SUBSET = 100  # evals/utils.py load_spkit_steps(n=100)
STOP = ("\n\n",)  # evals/spkit_steps_arith_*.yaml generation_kwargs.until
MAX_NEW_TOKENS = 24  # generation_kwargs.max_gen_toks


def heldout_records(limit: int | None = None) -> list[dict]:
    """The records `spkit_steps` scores, subset by subset (the first `limit` of each, as lm-eval's
    ``--limit`` takes them); each carries its ``subset``."""
    out: list[dict] = []
    for sub in SUBSETS:
        recs = steps.generate(PER_SUBSET, EVAL_SEED, subset=sub, split="test")
        out += [{**r, "subset": sub} for r in (recs[:limit] if limit else recs)]
    return out


def dev_records(per_subset: int, seed: int = 0) -> list[dict]:
    """`per_subset` records of each subset from the arithmetic dev split (never trained on): the
    items settings are chosen on, so the held-out F1 stays unbiased."""
    out: list[dict] = []
    for sub in SUBSETS:
        out += [{**r, "subset": sub} for r in steps.generate(per_subset, seed, subset=sub, split="dev")]
    return out


STEPS_TASK = Task("spkit_steps", train=lambda n, seed, levels=None: [], dev=lambda per, seed=0: dev_records(per, seed),
                  heldout=lambda limit=None: heldout_records(limit), stop=STOP, max_new_tokens=MAX_NEW_TOKENS,
                  eval_command="spkit eval --tasks spkit_steps")


def majority(preds: Sequence[int | None]) -> int | None:
    """The most frequent parsed index (ties: the first seen); None if nothing parsed."""
    votes = Counter(p for p in preds if p is not None)
    if not votes:
        return None
    top = max(votes.values())
    return next(p for p in preds if p is not None and votes[p] == top)


def critic_predictions(model, tokenizer, records: Sequence[dict], samples: int = 1, temperature: float = 1.0,
                       seed: int = 0, sampler: Sampler | None = None, batch_size: int = EVAL_BATCH
                       ) -> tuple[list[int | None], list[str]]:
    """(predicted index per record, one critique text per record): greedy as `spkit eval` generates
    (`greedy_as_eval`), or with `samples` > 1 the majority of that many critiques at `temperature`."""
    sampler = sampler or Sampler(model, tokenizer)
    prompts = [steps.critic_prompt(r) for r in records]
    if samples == 1:
        outs = greedy_as_eval(model, sampler, prompts, STEPS_TASK, batch_size)
        texts = [o.text for o in outs]
        return [steps.extract_index(t) for t in texts], texts
    params = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=temperature, stop=STOP)
    was_training = model.training
    model.eval()
    outs = sampler.generate([p for p in prompts for _ in range(samples)], params, seed=seed)
    model.train(was_training)
    texts = [o.text for o in outs]
    preds = [majority([steps.extract_index(t) for t in texts[i * samples:(i + 1) * samples]])
             for i in range(len(records))]
    return preds, texts[::samples]


def scores_by_subset(records: Sequence[dict], preds: Sequence[int | None], prefix: str = "eval"
                     ) -> dict[str, float]:
    """ProcessBench's numbers per subset (``{prefix}/f1/arith_2`` ...) and their unweighted means
    (``{prefix}/f1``, ``{prefix}/acc_error``, ``{prefix}/acc_correct``, ``{prefix}/unparsable``)."""
    m: dict[str, float] = {}
    subsets = list(dict.fromkeys(r.get("subset", "all") for r in records))
    for sub in subsets:
        idx = [i for i, r in enumerate(records) if r.get("subset", "all") == sub]
        s = steps.processbench_scores([records[i]["label"] for i in idx], [preds[i] for i in idx])
        s["unparsable"] = sum(preds[i] is None for i in idx) / len(idx)
        for k, v in s.items():
            m[f"{prefix}/{k}/{sub}"] = v
    for k in ("f1", "acc_error", "acc_correct", "unparsable"):
        m[f"{prefix}/{k}"] = sum(m[f"{prefix}/{k}/{sub}"] for sub in subsets) / len(subsets)
    m[f"{prefix}/says_minus1"] = sum(p == -1 for p in preds) / max(len(preds), 1)
    return m


def evaluate_critic(model, tokenizer, records: Sequence[dict] | None = None, samples: int = 1,
                    sampler: Sampler | None = None, prefix: str = "eval", limit: int | None = None
                    ) -> dict[str, float]:
    """The `spkit eval --tasks spkit_steps` numbers of a critic (default: the held-out records, the
    first `limit` per subset), plus ``{prefix}/says_minus1`` (share of "-1" answers)."""
    records = list(records) if records is not None else heldout_records(limit)
    preds, _ = critic_predictions(model, tokenizer, records, samples, sampler=sampler)
    return scores_by_subset(records, preds, prefix)
