"""`spkit eval`: run lm-eval on local data with spkit's tasks, write results, tables and plots.

    spkit eval --model spkit-tiny --tasks spkit_arith,spkit_steps,spkit_ifeval_lite --out runs/eval
    spkit eval --model runs/spiral/checkpoints/step_0000200 --tasks spkit --out runs/eval/step200
    spkit eval --model Qwen/Qwen3-0.6B --backend vllm --data-dir data/ \\
        --tasks gsm8k,math500,ifeval,processbench --out runs/eval/qwen3-0.6b
    spkit eval --model spkit-tiny --tasks spkit_steps --samples 8 --out runs/eval/steps_maj8

ProcessBench's 8-sample mode: ``--samples 8`` swaps ``processbench`` and ``spkit_steps`` (and
their subsets) for their majority-vote variants (``processbench_local_maj8``,
``spkit_steps_maj8``: 8 sampled critiques per item, the most common boxed index scored; see
``spkit.tasks.steps.majority_vote``); ``--tasks processbench,processbench_maj8`` runs both modes.

Task names: ``gsm8k``, ``math500``, ``ifeval``, ``processbench`` are the real benchmarks read
from ``--data-dir`` (lm-eval tasks ``gsm8k_local`` ... in ``evals/``); ``spkit_arith``,
``spkit_steps``, ``spkit_ifeval_lite`` are generated (``spkit`` = all three); any other name
is passed to lm-eval unchanged. Backends: ``spkit`` (default; spkit's Sampler, fastest on
CPU), ``hf`` (lm-eval's stock transformers backend), ``vllm`` (lm-eval's vLLM backend, GPU).

Writes to ``--out``: ``results.json`` (lm-eval's results + the run's settings and speed),
``samples/<task>.jsonl`` (every prompt, response, extracted answer and score), ``table.md``
(headline table, ProcessBench-style tables, lm-eval's full table) and ``scores.png``.

Two-attempt self-correction (``spkit_arith_correct``, `spkit.tasks.correction`): attempt 2's
prompt holds the model's own attempt 1, which one lm-eval request cannot express, so the run is
two passes: ``spkit_arith`` with its samples logged (``--out/attempt1/``, or a temporary
directory), then ``spkit_arith_correct`` reading them (lm-eval metadata ``attempts``).
``--attempts DIR`` skips the first pass and reads an earlier spkit_arith run's samples.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spkit.errors import SpkitError

EVALS_DIR = Path(__file__).resolve().parents[2] / "evals"
ALIASES = {
    "gsm8k": "gsm8k_local",
    "math500": "math500_local",
    "ifeval": "ifeval_local",
    "processbench": "processbench_local",
    "processbench_maj8": "processbench_local_maj8",
}
# ProcessBench's two modes: greedy (these names) and the 8-sample majority vote (`--samples 8`)
PB_SUBSETS = ("gsm8k", "math", "olympiadbench", "omnimath")
VOTED = {"processbench_local": "processbench_local_maj8", "spkit_steps": "spkit_steps_maj8",
         **{f"processbench_local_{s}": f"processbench_local_maj8_{s}" for s in PB_SUBSETS},
         **{f"spkit_steps_arith_{k}": f"spkit_steps_maj8_arith_{k}" for k in (2, 3, 4)}}
SAMPLES = (1, 8)  # ProcessBench: greedy, or the majority of 8 sampled critiques
SPKIT_TASKS = ["spkit_arith", "spkit_steps", "spkit_ifeval_lite"]
# a two-attempt task -> the single-attempt task whose samples are its attempt 1
CORRECTION_TASKS = {f"spkit_arith_correct{s}": f"spkit_arith{s}" for s in ("", "_1", "_2", "_3", "_4")}
NEEDS_DATA = {"gsm8k_local": "gsm8k", "math500_local": "math500", "ifeval_local": "ifeval",
              "processbench_local": "processbench", "processbench_local_maj8": "processbench"}
DEFAULT_TASKS = ",".join(SPKIT_TASKS)


def resolve_tasks(spec: str | list[str]) -> list[str]:
    """User task names -> lm-eval task/group names (aliases expanded, order kept, no dups)."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for n in (x.strip() for x in names if x.strip()):
        for t in SPKIT_TASKS if n == "spkit" else [ALIASES.get(n, n)]:
            if t not in out:
                out.append(t)
    if not out:
        raise SpkitError("no tasks given; e.g. --tasks spkit_arith,gsm8k")
    return out


def with_samples(names: list[str], samples: int) -> list[str]:
    """Task names with ProcessBench-style tasks in the mode of ``--samples`` (1: greedy, as
    named; 8: their majority-vote variants, ``*_maj8``); other tasks are left as they are."""
    if samples not in SAMPLES:
        raise SpkitError(f"--samples is 1 (greedy) or 8 (ProcessBench's majority vote of 8 "
                         f"sampled critiques), got {samples}")
    if samples == 1:
        return names
    if not any(t in VOTED or t in VOTED.values() for t in names):
        raise SpkitError("--samples 8 applies to processbench and spkit_steps (ProcessBench's "
                         f"majority-vote mode); --tasks has neither: {','.join(names)}")
    return list(dict.fromkeys(VOTED.get(t, t) for t in names))


def step_of(model: str) -> int | None:
    """Training step of a checkpoint directory (trainer_state.json, else 'step_N' in the path)."""
    p = Path(model)
    state = p / "trainer_state.json"
    if state.is_file():
        try:
            return int(json.loads(state.read_text())["step"])
        except (ValueError, KeyError, TypeError):
            pass
    m = re.search(r"(?:step|checkpoint)[_-]?(\d+)", str(model))
    return int(m.group(1)) if m else None


def _dtype_name(dtype: str | None) -> str | None:
    """spkit's dtype spellings (bf16, fp16, ...) as the torch names lm-eval's backends take."""
    if dtype in (None, "auto"):
        return dtype
    import torch

    from spkit.models import pick_dtype

    return str(pick_dtype(dtype, torch.device("cpu"))).removeprefix("torch.")


def build_lm(model: str, backend: str, batch_size: int, device: str | None, dtype: str | None,
             seed: int, max_length: int | None = None) -> tuple[Any, dict | None]:
    """(model object or lm-eval model name, model_args) for simple_evaluate."""
    from spkit.models import check_weights, load_tokenizer, pick_device, resolve_model_path

    path = resolve_model_path(model)
    if backend == "spkit":
        from spkit.evals.lm import SpkitLM

        return SpkitLM(pretrained=model, batch_size=batch_size, device=device, dtype=dtype,
                       seed=seed, max_length=max_length), None
    if backend in ("hf", "vllm"):  # lm-eval loads these itself: check the files first
        check_weights(path)
        load_tokenizer(path)  # cheap; a hub id missing from the cache while offline: one line
    if backend == "hf":
        dev = str(pick_device(device))  # lm-eval's hf asserts on CUDA unless told the device
        # use_safetensors: a pickle (.bin) checkpoint never reaches torch.load
        args = {"pretrained": path, "device": dev, "dtype": _dtype_name(dtype) or "float32",
                "use_safetensors": True}
        if max_length:
            args["max_length"] = max_length
        return "hf", args
    if backend == "vllm":
        from spkit.vllm_backend import require_vllm

        require_vllm()
        args = {"pretrained": path, "dtype": _dtype_name(dtype) or "auto", "seed": seed,
                "gpu_memory_utilization": 0.85, "load_format": "safetensors"}
        if pick_device(device).type == "cpu":  # vLLM's CPU build: the fraction is of RAM, no CUDA graphs
            args |= {"dtype": _dtype_name(dtype) or "float32", "enforce_eager": True,
                     "gpu_memory_utilization": float(os.environ.get("SPKIT_VLLM_MEMORY", 0.1))}
        if max_length:
            args["max_model_len"] = max_length
        return "vllm", args
    raise SpkitError(f"unknown backend {backend!r}; use spkit, hf or vllm")


def check_settings(*, limit: float | None = None, backend: str = "spkit",
                   batch_size: int = 64, max_gen_toks: int | None = None,
                   num_fewshot: int | None = None, device: str | None = None,
                   dtype: str | None = None, max_length: int | None = None) -> None:
    """Refuse impossible settings in one line, before any data or model is touched."""
    import math

    if limit is not None and not (limit > 0 and math.isfinite(limit)):
        raise SpkitError(f"--limit must be > 0 (a count, or a fraction if < 1), got {limit}")
    if limit is not None and limit > 1 and limit != int(limit):
        raise SpkitError(f"--limit is a whole count of items, or a fraction below 1; got {limit}")
    for flag, value, low in (("--batch-size", batch_size, 1), ("--max-gen-toks", max_gen_toks, 1),
                             ("--num-fewshot", num_fewshot, 0), ("--max-length", max_length, 1)):
        if value is not None and value < low:
            raise SpkitError(f"{flag} must be >= {low}, got {value}")
    if backend not in ("spkit", "hf", "vllm"):
        raise SpkitError(f"unknown backend {backend!r}; use spkit, hf or vllm")
    from spkit.models import pick_device, pick_dtype

    if device:
        pick_device(device)
    if dtype not in (None, "auto"):
        import torch

        pick_dtype(dtype, torch.device("cpu"))


def run(
    model: str = "spkit-tiny",
    tasks: str | list[str] = DEFAULT_TASKS,
    data_dir: str | None = None,
    out: str | os.PathLike | None = None,
    limit: float | None = None,
    backend: str = "spkit",
    batch_size: int = 64,
    max_gen_toks: int | None = None,
    num_fewshot: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    seed: int = 0,
    step: int | None = None,
    label: str | None = None,
    max_length: int | None = None,
    attempts: str | None = None,
    samples: int = 1,
) -> dict:
    """Evaluate ``model`` on ``tasks``; return lm-eval's results dict (+ ``"spkit"`` run info).

    Checks every needed data file before loading the model, so a missing or malformed file
    costs a second, not a model load. Two-attempt tasks first run their attempt-1 task (or read
    ``attempts``, an earlier spkit_arith run's output directory). ``samples=8`` runs the
    ProcessBench-style tasks in the benchmark's majority-vote mode (`with_samples`).
    """
    check_settings(limit=limit, backend=backend, batch_size=batch_size, max_gen_toks=max_gen_toks,
                   num_fewshot=num_fewshot, device=device, dtype=dtype, max_length=max_length)
    if out is not None:  # an unwritable --out must not cost a whole evaluation
        from spkit.run import ensure_writable_dir

        ensure_writable_dir(out)
    from spkit.tasks.nltk_data import ensure_punkt_tab

    ensure_punkt_tab()  # before lm-eval imports its IFEval code
    names = with_samples(resolve_tasks(tasks), samples)
    from spkit.evals import data

    root = None
    needed = [NEEDS_DATA[t] for t in names if t in NEEDS_DATA]
    if needed:
        root = data.data_dir(data_dir)
        data.check_dir(needed, root)
    local = {*NEEDS_DATA, *SPKIT_TASKS, *CORRECTION_TASKS, *VOTED, *VOTED.values()}
    if all(t in local for t in names):
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # nothing here needs the hub

    import lm_eval
    from lm_eval.tasks import TaskManager

    meta: dict[str, str] = {"data_dir": str(root)} if root else {}
    first = list(dict.fromkeys(CORRECTION_TASKS[t] for t in names if t in CORRECTION_TASKS))
    if first and attempts:
        from spkit.tasks.correction import read_attempts

        meta["attempts"] = str(Path(attempts).expanduser().resolve())
        read_attempts(meta["attempts"])  # a missing or malformed file: one line, before the model
    # Indexing lm-eval's thousands of built-in YAMLs takes many seconds; only do it when a
    # task outside evals/ is asked for.
    tm = TaskManager(include_path=str(EVALS_DIR), include_defaults=False, metadata=meta)
    if any(t not in tm.all_tasks for t in names):
        tm = TaskManager(include_path=str(EVALS_DIR), metadata=meta)
    unknown = [t for t in names if t not in tm.all_tasks]
    if unknown:
        raise SpkitError(f"unknown task(s) {unknown}; spkit tasks: "
                         f"{', '.join([*ALIASES, *SPKIT_TASKS, 'spkit_arith_correct'])}, or any lm-eval task name")
    _quiet_lm_eval()
    lm, model_args = build_lm(model, backend, batch_size, device, dtype, seed, max_length)

    def evaluate(task_names: list[str], manager: TaskManager) -> dict | None:
        with _quiet_request_bars():
            return lm_eval.simple_evaluate(
                model=lm, model_args=model_args, tasks=task_names, task_manager=manager, limit=limit,
                num_fewshot=num_fewshot, batch_size=batch_size if backend != "vllm" else "auto",
                gen_kwargs={"max_gen_toks": max_gen_toks} if max_gen_toks else None,
                log_samples=True, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                fewshot_random_seed=seed, bootstrap_iters=1000,
            )

    t0 = time.perf_counter()
    scratch = None
    if first and getattr(lm, "world_size", 1) > 1:
        raise SpkitError("the two-attempt tasks run in one process: start spkit eval without torchrun")
    if first and "attempts" not in meta:  # pass 1 of the two-attempt tasks: attempt 1, samples logged
        import tempfile

        where = Path(out) / "attempt1" if out is not None else Path(scratch := tempfile.mkdtemp())
        first_res = evaluate(first, tm)
        if first_res is not None:
            write_run(first_res, where)
        meta["attempts"] = str(where.resolve())
        tm = TaskManager(include_path=str(EVALS_DIR), include_defaults=False, metadata=meta)
        if any(t not in tm.all_tasks for t in names):
            tm = TaskManager(include_path=str(EVALS_DIR), metadata=meta)
    try:
        res = evaluate(names, tm)
    finally:
        if scratch:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - t0
    if res is None:  # non-zero ranks in distributed runs
        return {}
    n = sum(v.get("effective", 0) for v in res.get("n-samples", {}).values())
    gens = sum(v.get("effective", 0) * int(res.get("configs", {}).get(t, {}).get("repeats", 1) or 1)
               for t, v in res.get("n-samples", {}).items())  # `--samples 8`: 8 critiques per item
    res["spkit"] = {
        "model": str(model), "backend": backend, "tasks": names, "limit": limit,
        "data_dir": str(root) if root else None, "seed": seed,
        "step": step if step is not None else step_of(str(model)),
        "label": label or Path(str(model)).name, "seconds": round(seconds, 2),
        "samples": n, "samples_per_s": round(n / seconds, 3) if seconds else None,
        "generations": gens, "generations_per_s": round(gens / seconds, 3) if seconds else None,
        "attempts": meta.get("attempts") if first and not scratch else None,
        "processbench_samples": samples,  # critiques per ProcessBench item (8: majority vote)
    }
    if out is not None:
        write_run(res, Path(out))
    return res


class _DropCustomKwargsHint(logging.Filter):
    """lm-eval prints a --metadata hint for every task with a custom_dataset; spkit passes
    its metadata itself, so the hint is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


def _quiet_lm_eval() -> None:
    log = logging.getLogger("lm_eval.api.task")
    if not any(isinstance(f, _DropCustomKwargsHint) for f in log.filters):
        log.addFilter(_DropCustomKwargsHint())


@contextmanager
def _quiet_request_bars() -> Iterator[None]:
    """Silence lm-eval's per-task "building requests" bars (one per task and subtask, each done in
    milliseconds: lesson 04 printed 91 of them) for the duration; lm-eval offers no switch, so its
    module's ``tqdm`` is swapped for a disabled one and restored. Generation progress is the
    backend's own bar (``SpkitLM`` follows ``SPKIT_NO_PROGRESS``)."""
    import lm_eval.api.task as task_module

    original = getattr(task_module, "tqdm", None)
    if original is None:  # a future lm-eval without it: nothing to silence
        yield
        return
    task_module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        task_module.tqdm = original


# ---- outputs


def write_run(res: dict, out: Path) -> None:
    """results.json, samples/<task>.jsonl, table.md and scores.png in ``out``."""
    from spkit.evals import report

    out.mkdir(parents=True, exist_ok=True)
    samples = res.pop("samples", {}) or {}
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    (out / "samples").mkdir(exist_ok=True)
    for task, rows in samples.items():
        with open(out / "samples" / f"{task}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
    res["samples"] = samples
    (out / "table.md").write_text(report.run_markdown(res))
    report.plot_run(res, out / "scores.png")


# ---- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    from spkit.config import add_common_arguments

    add_common_arguments(p, out="runs/eval")
    p.add_argument("--tasks", default=DEFAULT_TASKS,
                   help="comma-separated: gsm8k, math500, ifeval, processbench (need "
                        "--data-dir), spkit_arith, spkit_steps, spkit_ifeval_lite, spkit (all "
                        "three), spkit_arith_correct (two attempts: runs spkit_arith first), or any "
                        f"lm-eval task (default: {DEFAULT_TASKS})")
    p.add_argument("--data-dir", default=None,
                   help="benchmark data directory (see `spkit data prepare`; default: "
                        "$SPKIT_EVAL_DATA; evals/fixtures is a tiny test set)")
    p.add_argument("--limit", type=float, default=None,
                   help="at most N examples per task (or a fraction if < 1)")
    p.add_argument("--backend", choices=["spkit", "hf", "vllm"], default="spkit")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-gen-toks", type=int, default=None,
                   help="override every task's generation length (tiny models: e.g. 128)")
    p.add_argument("--num-fewshot", type=int, default=None, help="override few-shot count")
    p.add_argument("--max-length", type=int, default=None,
                   help="context length (default: the model's max_position_embeddings)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: auto)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16, float16")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; use 1 on a busy machine)")
    p.add_argument("--step", type=int, default=None,
                   help="training step for `spkit report` (default: read from the checkpoint)")
    p.add_argument("--label", default=None, help="name of this run in reports")
    p.add_argument("--samples", type=int, default=1, choices=SAMPLES,
                   help="ProcessBench and spkit_steps: 1 = greedy critique (default), 8 = the "
                        "benchmark's majority vote of 8 sampled critiques (T=1.0, top-p 0.9); "
                        "other tasks are unchanged")
    p.add_argument("--attempts", default=None,
                   help="spkit_arith_correct: read attempt 1 from this earlier `spkit eval --tasks "
                        "spkit_arith --out DIR` run instead of running that pass first")


def main(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise SpkitError(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    limit = args.limit
    if limit is not None and limit >= 1 and limit == int(limit):
        limit = int(limit)  # a count; 2.5 stays a float and check_settings refuses it
    res = run(model=args.model, tasks=args.tasks, data_dir=args.data_dir, out=args.out,
              limit=limit, backend=args.backend, batch_size=args.batch_size,
              max_gen_toks=args.max_gen_toks, num_fewshot=args.num_fewshot, device=args.device,
              dtype=args.dtype, seed=args.seed, step=args.step, label=args.label,
              max_length=args.max_length, attempts=args.attempts, samples=args.samples)
    if res:
        from spkit.evals import report
        from spkit.text import terminal_safe

        print(terminal_safe(report.headline_markdown([res])))
        info = res["spkit"]
        print(f"\n{report.throughput(info)}; wrote {args.out}/")
    return 0
