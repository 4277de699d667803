"""Metrics and answer extractors of the spkit eval suite, each a small pure function.

* GSM8K (and ``spkit_arith``): lm-eval's strict (``#### n``) and flexible (last number)
  extraction and its exact-match normalisation live in ``spkit.tasks.arithmetic``; the YAMLs
  use lm-eval's own regex filters, and tests check both agree.
* MATH-500: the answer is the last ``\\boxed{...}`` of the generation. ``math_verify_equal``
  asks the ``math-verify`` package whether it equals the gold answer (symbolic/numeric,
  gold first as its API expects); ``math_exact_match`` compares the two after the
  Minerva normalisation (Lewkowycz et al. 2022, appendix D, as lm-eval implements it).
* ProcessBench (and ``spkit_steps``): the prediction is the int in the critic's last
  ``\\boxed{}``; an unparsable answer counts as wrong on erroneous *and* on correct items.
  Accuracy on erroneous items (exact earliest-error index), accuracy on correct items
  (prediction -1), and F1 = their harmonic mean; the benchmark score is the mean F1 over
  subsets. Scores are fractions in [0, 1] (the reports print percentages).
* IFEval: lm-eval's own instruction checks and four metrics (``evals/utils.py`` delegates).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

from spkit.tasks.steps import extract_index, last_boxed

# ---- MATH


def math_answer(text: str) -> str | None:
    """The content of the last ``\\boxed{}`` in ``text`` (stripped), or None."""
    inner = last_boxed(text)
    return inner.strip() if inner is not None else None


def math_normalize(answer: str) -> str:
    """Minerva's final-answer normalisation (lm-eval's implementation)."""
    from lm_eval.tasks.minerva_math.utils import normalize_final_answer

    return normalize_final_answer(answer)


def math_exact_match(pred: str | None, gold: str) -> bool:
    """Normalised exact match; a missing prediction is wrong."""
    return pred is not None and math_normalize(pred) == math_normalize(gold)


def math_verify_equal(pred: str | None, gold: str) -> bool:
    """Mathematical equivalence by ``math-verify`` (both sides read as a boxed answer).

    math-verify's timeouts use SIGALRM, which only works in the main thread; elsewhere they
    are switched off (as its documentation requires).
    """
    if pred is None:
        return False
    from math_verify import parse, verify

    main = threading.current_thread() is threading.main_thread()
    t = {} if main else {"parsing_timeout": None}
    try:
        g = parse(f"\\boxed{{{gold}}}", **t)
        p = parse(f"\\boxed{{{pred}}}", **t)
        return bool(verify(g, p, **({} if main else {"timeout_seconds": None})))
    except Exception:  # noqa: BLE001 - a crash inside the checker means "not verified"
        return False


# ---- ProcessBench


def processbench_scores(labels: Sequence[int], preds: Sequence[int | None]) -> dict[str, float]:
    """ProcessBench's three numbers for one subset.

    ``labels[i]`` is the earliest wrong step (-1: all correct), ``preds[i]`` the critic's
    index or None when unparsable (wrong either way). An empty class gives NaN for its
    accuracy (and F1), as the benchmark's own script would.
    """
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    err = [p == y for y, p in zip(labels, preds, strict=True) if y != -1]
    cor = [p == -1 for y, p in zip(labels, preds, strict=True) if y == -1]
    acc_error = sum(err) / len(err) if err else math.nan
    acc_correct = sum(cor) / len(cor) if cor else math.nan
    return {"acc_error": acc_error, "acc_correct": acc_correct,
            "f1": harmonic_mean(acc_error, acc_correct)}


def harmonic_mean(a: float, b: float) -> float:
    """2ab/(a+b); 0 when both are 0; NaN if either is NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def critic_prediction(text: str) -> int | None:
    """The critic's index: int of the last ``\\boxed{}``; None if missing or not an integer."""
    return extract_index(text)
