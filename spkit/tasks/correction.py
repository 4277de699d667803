r"""Two-attempt arithmetic: the self-correction prompt and SCoRe's metrics, defined once.

A problem is answered twice. Attempt 1 is the ordinary zero-shot ``spkit_arith`` completion of
``Question: …\nAnswer:``; attempt 2 continues the conversation — the problem, the model's own
attempt 1, a fixed instruction to review and correct it, and a new ``Answer:``::

    Question: Mia has 3 apples. She buys 4 more apples. How many apples does Mia have now?
    Answer: 3 + 4 = 6
    #### 6

    There might be an error in the solution above. Please correct the error, if any, and rewrite the solution.
    Answer:

The instruction is SCoRe's (Kumar et al. 2024, arXiv:2409.12917) for MATH, shortened by its
second clause; it is the same for every problem, right or wrong, so attempt 2 must itself
decide whether to change anything. The blank line separates the turns: completions never
contain one (``\n\n`` is a stop string of the task), so attempt 1 ends exactly where it stopped.

Metrics (SCoRe's Table 1; r1, r2 ∈ {0, 1} the strict ``#### n`` checks of the two attempts,
`arithmetic.is_correct`, the reward every trainer uses), means over problems:

    Accuracy@t1 = E[r1],  Accuracy@t2 = E[r2],  Δ(t1, t2) = E[r2 − r1],
    Δ^{i→c}(t1, t2) = E[(1 − r1)·r2]  (wrong, then right),
    Δ^{c→i}(t1, t2) = E[r1·(1 − r2)]  (right, then "corrected" into wrong),

so Δ(t1, t2) = Δ^{i→c} − Δ^{c→i}. Every user — the lm-eval task ``spkit_arith_correct``
(``evals/utils.py``), `spkit eval`, the trainers' evaluation (`spkit.rl.correction`) — calls
these functions, so the prompt and the numbers cannot drift apart.

The lm-eval task reads attempt 1 from the samples of an ``spkit_arith`` run
(`read_attempts`): one ``generate_until`` request cannot depend on an earlier answer of the
same model, so the evaluation is two passes (evals/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from spkit.errors import SpkitError
from spkit.tasks import arithmetic

INSTRUCTION = ("There might be an error in the solution above. "
               "Please correct the error, if any, and rewrite the solution.")
TURN_SEPARATOR = "\n\n"
METRICS = ("accuracy_t1", "accuracy_t2", "delta_t1_t2", "delta_i2c", "delta_c2i")
METRIC_NAMES = {"accuracy_t1": "Accuracy@t1", "accuracy_t2": "Accuracy@t2", "delta_t1_t2": "Δ(t1,t2)",
                "delta_i2c": "Δ(i→c)", "delta_c2i": "Δ(c→i)"}

__all__ = ["INSTRUCTION", "TURN_SEPARATOR", "METRICS", "METRIC_NAMES", "second_prompt", "outcomes",
           "pair_metrics", "correction_metrics", "read_attempts", "attempt_records"]


# ---- the prompt


def second_prompt(question: str, attempt1: str) -> str:
    """The attempt-2 prompt: the attempt-1 prompt, attempt 1 as generated, the instruction, ``Answer:``."""
    return f"{arithmetic.prompt(question)}{attempt1}{TURN_SEPARATOR}{INSTRUCTION}\nAnswer:"


# ---- the metrics


def outcomes(attempt1: str, attempt2: str, gold: str) -> tuple[float, float]:
    """(r1, r2): 1.0 where the strict answer of each attempt equals the gold one."""
    return (float(arithmetic.is_correct(attempt1, gold, "strict")),
            float(arithmetic.is_correct(attempt2, gold, "strict")))


def pair_metrics(r1: float, r2: float) -> dict[str, float]:
    """One problem's contribution to each metric; their means over problems are the metrics."""
    if r1 not in (0.0, 1.0) or r2 not in (0.0, 1.0):
        raise SpkitError(f"attempt rewards must be 0 or 1, got r1={r1}, r2={r2}")
    return {"accuracy_t1": r1, "accuracy_t2": r2, "delta_t1_t2": r2 - r1,
            "delta_i2c": (1.0 - r1) * r2, "delta_c2i": r1 * (1.0 - r2)}


def correction_metrics(r1: Sequence[float], r2: Sequence[float]) -> dict[str, float]:
    """The five metrics (fractions) over aligned per-problem rewards of attempts 1 and 2."""
    if len(r1) != len(r2) or not r1:
        raise SpkitError(f"need aligned, non-empty attempt rewards, got {len(r1)} and {len(r2)}")
    rows = [pair_metrics(float(a), float(b)) for a, b in zip(r1, r2, strict=True)]
    return {m: sum(row[m] for row in rows) / len(rows) for m in METRICS}


# ---- attempt 1 from an lm-eval run (the first of the two passes)


def _sample_files(path: Path) -> list[Path]:
    """The spkit_arith sample files under `path`: ``samples/spkit_arith_<s>.jsonl`` (`spkit eval`)
    or ``samples_spkit_arith_<s>_<date>.jsonl`` (``lm_eval --log_samples``)."""
    files = [p for p in sorted(path.rglob("*.jsonl"))
             if p.name.removeprefix("samples_").startswith("spkit_arith_") and "correct" not in p.name]
    if not files:
        raise SpkitError(f"no spkit_arith sample files under {path}; run `spkit eval --tasks spkit_arith "
                         f"--out DIR` (or lm_eval --log_samples) first (see evals/README.md)")
    return files


def read_attempts(path: str | Path) -> dict[str, str]:
    """question -> attempt-1 text (``resps[0][0]``, the unfiltered completion) from every
    spkit_arith sample file under `path`; two files that disagree on a question are an error."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise SpkitError(f"attempt-1 samples {root} not found")
    out: dict[str, str] = {}
    for f in _sample_files(root) if root.is_dir() else [root]:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                q, text = row["doc"]["question"], row["resps"][0][0]
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise SpkitError(f"{f} line {n} is not an lm-eval sample row ({e})") from None
            if out.get(q, text) != text:
                raise SpkitError(f"{root} holds two different attempts at one question; point it at one run")
            out[q] = text
    return out


def attempt_records(problems: Sequence[dict], attempts: dict[str, str]) -> list[dict]:
    """The problems with their attempt 1 (field ``attempt1``): the first problems of the list, as
    many as have one (the prefix an attempt-1 run with ``--limit`` covered, in the same order)."""
    out = []
    for p in problems:
        if p["question"] not in attempts:
            break
        out.append({**p, "attempt1": attempts[p["question"]]})
    if any(p["question"] in attempts for p in problems[len(out):]):
        raise SpkitError("the attempt-1 samples cover problems out of order (not a --limit prefix); "
                         "rerun spkit_arith")
    if not out:
        raise SpkitError("the attempt-1 samples hold none of these problems; run spkit_arith first "
                         "with the same --limit (or none)")
    return out
