"""Benchmark data files on local disk: the layout, and readers that fail with one clear line.

Layout of a data directory (``--data-dir DIR``; ``evals/fixtures`` ships a tiny one)::

    DIR/gsm8k/test.jsonl            {"question", "answer"}            (openai/gsm8k, main)
    DIR/gsm8k/train.jsonl           same; the few-shot pool (5-shot, like lm-eval's gsm8k) and
                                    the training problems of `spkit train ... --task gsm8k`
    DIR/math500/test.jsonl          {"problem", "solution", "answer", "subject", "level",
                                     "unique_id"}                     (HuggingFaceH4/MATH-500)
    DIR/ifeval/test.jsonl           {"key", "prompt", "instruction_id_list", "kwargs"}
                                                                      (google/IFEval)
    DIR/processbench/{gsm8k,math,olympiadbench,omnimath}.jsonl
                                    {"id", "generator", "problem", "steps", "label",
                                     "final_answer_correct"}          (Qwen/ProcessBench)

The evaluation (`spkit.evals`, lm-eval's task files) and the trainers read the same files through
these functions; `spkit data prepare` (`spkit.evals.data`) writes them from upstream copies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spkit.errors import SpkitError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "evals" / "fixtures"
PROCESSBENCH_SUBSETS = ("gsm8k", "math", "olympiadbench", "omnimath")
ENV_VAR = "SPKIT_EVAL_DATA"


def _is_str(x: Any) -> bool:
    return isinstance(x, str)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# name -> (hub id, hub config, {file stem: hub split}, required fields with type checks)
DATASETS: dict[str, dict[str, Any]] = {
    "gsm8k": {
        "hub": ("openai/gsm8k", "main"),
        "files": {"test": "test", "train": "train"},
        "fields": {"question": _is_str, "answer": lambda a: _is_str(a) and "#### " in a},
    },
    "math500": {
        "hub": ("HuggingFaceH4/MATH-500", None),
        "files": {"test": "test"},
        "fields": {"problem": _is_str, "answer": _is_str},
    },
    "ifeval": {
        "hub": ("google/IFEval", None),
        "files": {"test": "train"},  # IFEval's single split is called "train" upstream
        "fields": {"key": _is_int, "prompt": _is_str, "instruction_id_list": lambda x: (
            isinstance(x, list) and all(map(_is_str, x))), "kwargs": lambda x: (
            isinstance(x, list) and all(isinstance(k, dict) for k in x))},
    },
    "processbench": {
        "hub": ("Qwen/ProcessBench", None),
        "files": {s: s for s in PROCESSBENCH_SUBSETS},
        "fields": {"id": lambda x: _is_str(x) or _is_int(x), "problem": _is_str,
                   "steps": lambda x: isinstance(x, list) and all(map(_is_str, x)),
                   "label": lambda x: _is_int(x) and x >= -1},
    },
}
PREPARE_HINT = "run `spkit data prepare {name} --from PATH --out {dir}` (see evals/README.md)"


# ---- locating and reading files


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: the explicit argument, else ``$SPKIT_EVAL_DATA``, else an error."""
    d = explicit or os.environ.get(ENV_VAR)
    if not d:
        raise SpkitError(
            f"no benchmark data directory: pass --data-dir DIR (or set {ENV_VAR}); "
            f"the shipped fixtures are in {FIXTURES}"
        )
    path = Path(d).expanduser().resolve()
    if not path.is_dir():
        source = "--data-dir" if explicit else f"${ENV_VAR}"
        what = "is not a directory" if path.exists() else "does not exist"
        raise SpkitError(f"benchmark data directory {path} {what} (from {source}); create it "
                         f"with `spkit data prepare`, or use the fixtures in {FIXTURES}")
    return path


def data_file(name: str, stem: str, root: str | os.PathLike | None = None) -> Path:
    """Path of one expected file, e.g. ``data_file("gsm8k", "test")`` -> DIR/gsm8k/test.jsonl."""
    return data_dir(root) / name / f"{stem}.jsonl"


def validate(rec: Any, name: str) -> str | None:
    """None if ``rec`` has the upstream schema of dataset ``name``, else what is wrong."""
    if not isinstance(rec, dict):
        return f"a JSON object was expected, got {type(rec).__name__}"
    for field, ok in DATASETS[name]["fields"].items():
        if field not in rec:
            return f"missing field {field!r}"
        if not ok(rec[field]):
            return f"field {field!r} has an unexpected value {str(rec[field])[:40]!r}"
    if name == "ifeval" and len(rec["kwargs"]) != len(rec["instruction_id_list"]):
        return "kwargs and instruction_id_list differ in length"
    return None


def read_jsonl(path: Path, name: str) -> list[dict]:
    """All records of one JSONL file, validated; any problem is one line naming file and fix."""
    fix = PREPARE_HINT.format(name=name, dir=path.parent.parent)
    if not path.is_file():
        raise SpkitError(f"{name}: data file {path} not found; {fix}")
    records = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SpkitError(f"{path} line {i} is not valid UTF-8 (byte {e.start + 1}); "
                                 f"{fix}") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SpkitError(f"{path} line {i} is not valid JSON ({e.msg}); {fix}") from None
            problem = validate(rec, name)
            if problem:
                raise SpkitError(f"{path} line {i}: {problem}; {fix}")
            records.append(rec)
    if not records:
        raise SpkitError(f"{path} is empty; {fix}")
    return records


def load_split(name: str, stem: str, root: str | os.PathLike | None = None) -> list[dict]:
    return read_jsonl(data_file(name, stem, root), name)
