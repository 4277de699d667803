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
  subsets. Scores are fractions in [0, 1] (the reports print percentages). The benchmark's
  8-sample mode predicts by majority vote over sampled critiques (``majority_vote``,
  ``voted_index``; the tasks ``processbench_local_maj8`` and ``spkit_steps_maj8``).
* IFEval: lm-eval's own instruction checks and four metrics (``evals/utils.py`` delegates).
"""

from __future__ import annotations

import threading

from spkit.tasks.steps import (  # noqa: F401 - ProcessBench's scores and vote, re-exported
    extract_index,
    harmonic_mean,
    last_boxed,
    majority_vote,
    processbench_scores,
    voted_index,
)

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


def critic_prediction(text: str) -> int | None:
    """The critic's index: int of the last ``\\boxed{}``; None if missing or not an integer."""
    return extract_index(text)
