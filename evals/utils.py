"""lm-eval glue for the spkit task YAMLs in this directory (``--include_path evals/``).

Data loading: every YAML names a ``custom_dataset`` function below. lm-eval calls it with the
task's metadata plus its ``dataset_kwargs``; the data directory comes from the ``data_dir``
metadata key (``spkit eval --data-dir`` sets it; plain lm-eval: ``--metadata
'{"data_dir": "/abs/path"}'``) or the ``SPKIT_EVAL_DATA`` environment variable. Paths are
resolved to absolute ones, so the working directory never matters. The ``spkit_*`` tasks are
generated in memory from a fixed seed and need no files. The logic lives in ``spkit.evals``;
this file only adapts it to lm-eval's calling conventions.
"""

from __future__ import annotations

from typing import Any

from spkit.tasks.nltk_data import ensure_punkt_tab

ensure_punkt_tab()  # before anything imports lm-eval's IFEval code (which would download)

from spkit.evals import data, metrics  # noqa: E402
from spkit.tasks import correction as _correction  # noqa: E402
from spkit.tasks import steps as _steps  # noqa: E402


def _dataset(splits: dict[str, list[dict]]):
    import datasets

    return {name: datasets.Dataset.from_list(recs) for name, recs in splits.items()}


# ---- custom_dataset loaders (lm-eval passes metadata + dataset_kwargs as keywords)


def load_gsm8k(data_dir: str | None = None, **_: Any):
    splits = {"test": data.load_split("gsm8k", "test", data_dir)}
    if data.data_file("gsm8k", "train", data_dir).exists():
        splits["train"] = data.load_split("gsm8k", "train", data_dir)
    else:  # the few-shot pool is optional: zero-shot runs need only the test file
        splits["train"] = []
    return _dataset(splits)


def load_math500(data_dir: str | None = None, **_: Any):
    return _dataset({"test": data.load_split("math500", "test", data_dir)})


def load_ifeval(data_dir: str | None = None, **_: Any):
    return _dataset({"test": data.load_split("ifeval", "test", data_dir)})


def load_processbench(data_dir: str | None = None, subset: str = "gsm8k", **_: Any):
    return _dataset({"test": data.load_split("processbench", subset, data_dir)})


def load_spkit_arith(steps: int = 1, n: int = 100, **_: Any):
    return _dataset({"test": data.spkit_records("spkit_arith", int(n), steps=steps)})


def load_spkit_arith_correct(steps: int = 1, n: int = 100, attempts: str | None = None, **_: Any):
    """spkit_arith's problems with the model's attempt 1, read from the samples of an earlier
    spkit_arith run: ``attempts`` (metadata) is that run's output directory or samples file."""
    if not attempts:
        from spkit.errors import SpkitError

        raise SpkitError("spkit_arith_correct needs attempt 1: --metadata '{\"attempts\": \"/abs/DIR\"}', "
                         "DIR holding the samples of an spkit_arith run (see evals/README.md)")
    problems = data.spkit_records("spkit_arith", int(n), steps=steps)
    return _dataset({"test": _correction.attempt_records(problems, _correction.read_attempts(attempts))})


def load_spkit_steps(subset: str = "arith_2", n: int = 100, **_: Any):
    return _dataset({"test": data.spkit_records("spkit_steps", int(n), subset=subset)})


def load_spkit_ifeval_lite(n: int = 200, **_: Any):
    return _dataset({"test": data.spkit_records("spkit_ifeval_lite", int(n))})


# ---- spkit_arith_correct (two attempts; prompt and metrics from spkit.tasks.correction)


def correct_doc_to_text(doc: dict) -> str:
    return _correction.second_prompt(doc["question"], doc["attempt1"])


def correct_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return _correction.pair_metrics(*_correction.outcomes(doc["attempt1"], results[0], doc["answer"]))


# ---- MATH-500


def math_doc_to_text(doc: dict) -> str:
    return f"Problem:\n{doc['problem']}\nPut your final answer within \\boxed{{}}.\n\nSolution:"


def math_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    pred = metrics.math_answer(results[0])
    return {"math_verify": int(metrics.math_verify_equal(pred, doc["answer"])),
            "exact_match": int(metrics.math_exact_match(pred, doc["answer"]))}


# ---- ProcessBench (per-doc (label, prediction) pairs, aggregated per subset)


def processbench_doc_to_text(doc: dict) -> str:
    return _steps.critic_prompt(doc)


def processbench_process_results(doc: dict, results: list[str]) -> dict[str, Any]:
    pair = (int(doc["label"]), metrics.critic_prediction(results[0]))
    return {"acc_error": pair, "acc_correct": pair, "f1": pair,
            "unparsable": int(pair[1] is None)}


def processbench_majority(resps, docs) -> list[str]:
    """lm-eval custom filter of the 8-sample mode (``_processbench_maj8_template``): per item, the
    first sampled critique whose boxed answer is the majority one (``spkit.tasks.steps.
    majority_vote``, ProcessBench's rule), or "" when no critique has a boxed answer, so
    ``processbench_process_results`` reads the voted index from it as from a greedy critique."""
    out = []
    for critiques in resps:
        critiques = list(critiques)
        pos = _steps.majority_vote(critiques)
        out.append(critiques[pos] if pos is not None else "")
    return out


def _scores(items: list[tuple[int, int | None]]) -> dict[str, float]:
    labels, preds = zip(*items, strict=True) if items else ((), ())
    return metrics.processbench_scores(labels, preds)


def agg_acc_error(items: list[tuple[int, int | None]]) -> float:
    return _scores(items)["acc_error"]


def agg_acc_correct(items: list[tuple[int, int | None]]) -> float:
    return _scores(items)["acc_correct"]


def agg_f1(items: list[tuple[int, int | None]]) -> float:
    return _scores(items)["f1"]


# ---- IFEval (lm-eval's own checks and aggregation)


def ifeval_process_results(doc: dict, results: list[str]) -> dict[str, Any]:
    import langdetect
    from lm_eval.tasks.ifeval import utils as ifeval_utils

    langdetect.DetectorFactory.seed = 0  # deterministic language checks
    return ifeval_utils.process_results(doc, results)


def agg_inst_level_acc(items: list[list[bool]]) -> float:
    flat = [x for sub in items for x in sub]
    return sum(flat) / len(flat) if flat else float("nan")
