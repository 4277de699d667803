"""Eval speed: the same task and model through lm-eval's stock `hf` backend and spkit's backend.

    python benchmarks/evals.py                       # spkit-tiny (or a random tiny Llama)
    python benchmarks/evals.py --model runs/x/checkpoints/step_0000100 --limit 100
    python benchmarks/evals.py --task gsm8k_local       # 5-shot, GSM8K-format files it writes

Every run uses lm-eval's `simple_evaluate` on the same task (default: ``spkit_arith``, GSM8K
format, greedy), float32 on the CPU and one torch thread (so the ratio is not an artefact of
thread oversubscription on a shared machine), at several batch sizes per backend: equal batch
sizes measure the engines; each backend's default (lm-eval's ``--model hf``: batch 1;
``spkit eval``: 64) measures what a user gets. Prints samples/s for the whole lm-eval run and
for the time inside ``generate_until``, the ratios (target >= 2x), and whether the greedy
responses and metrics agree. Model loading is excluded from the timing.

``--task gsm8k_local`` is lm-eval's GSM8K recipe (5-shot from train, ~500 prompt tokens per
request on spkit-tiny's tokenizer) on GSM8K-format files the benchmark writes from spkit's
arithmetic generator (train split as the few-shot pool, test split as the questions), unless
``--data-dir`` points at real ones.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


def _model_dir(name: str | None) -> tuple[str, str]:
    """(directory, description): the given model, spkit-tiny, or a saved random tiny Llama."""
    from spkit.models import resolve_model_path

    if name:
        return resolve_model_path(name), name
    tiny = ROOT / "assets" / "models" / "spkit-tiny"
    if (tiny / "config.json").exists():
        return str(tiny), "spkit-tiny"
    from spkit.testing import tiny_random_model

    d = Path(tempfile.mkdtemp(prefix="spkit-bench-")) / "tiny-random"
    model, tok = tiny_random_model(hidden=256, layers=4, heads=4)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return str(d), "random tiny Llama (spkit-tiny not built yet)"


def _timed(lm) -> dict:
    """Wrap ``lm.generate_until`` to record the seconds spent inside it."""
    clock = {"generate": 0.0}
    inner = lm.generate_until

    def generate_until(requests, *a, **kw):
        t0 = time.perf_counter()
        try:
            return inner(requests, *a, **kw)
        finally:
            clock["generate"] += time.perf_counter() - t0

    lm.generate_until = generate_until
    return clock


def _gsm8k_format_dir(n_test: int) -> str:
    """GSM8K-format train/test files from spkit's arithmetic problems (the `#### n` answers)."""
    import json

    from spkit.tasks import arithmetic

    root = Path(tempfile.mkdtemp(prefix="spkit-bench-gsm8k-"))
    (root / "gsm8k").mkdir()
    for split, n in (("train", 200), ("test", n_test)):
        rows = arithmetic.generate(n, seed=0, split=split)
        (root / "gsm8k" / f"{split}.jsonl").write_text(
            "".join(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n" for r in rows))
    return str(root)


def _fixed_shots_variant() -> str:
    """A directory holding `gsm8k_local_fixed_shots`: gsm8k_local with the same 5 shots for every
    question (lm-eval's `first_n` sampler, as its chain-of-thought GSM8K variants use), so every
    request shares the ~500-token few-shot prefix. `gsm8k_local` itself draws different shots for
    each question, so its requests share almost no prefix."""
    root = Path(tempfile.mkdtemp(prefix="spkit-bench-tasks-"))
    (root / "gsm8k_local_fixed_shots.yaml").write_text(
        f"include: {ROOT / 'evals' / 'gsm8k_local.yaml'}\n"
        "task: gsm8k_local_fixed_shots\n"
        "fewshot_config:\n  sampler: first_n\n")
    return str(root)


def _evaluate(lm, task: str, limit: int, batch_size: int, max_gen_toks: int,
              data_dir: str | None) -> tuple[dict, float]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    meta = {"data_dir": data_dir} if data_dir else None
    tm = TaskManager(include_path=[str(ROOT / "evals"), _fixed_shots_variant()], include_defaults=False,
                     metadata=meta)
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=tm, limit=limit,
                                  batch_size=batch_size, log_samples=True, bootstrap_iters=0,
                                  gen_kwargs={"max_gen_toks": max_gen_toks})
    return res, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="default: spkit-tiny (random tiny if absent)")
    p.add_argument("--task", default="spkit_arith")
    p.add_argument("--limit", type=int, default=64, help="examples per (sub)task")
    p.add_argument("--hf-batch-sizes", default="1,8,32",
                   help="lm-eval hf backend batch sizes (its CLI default is 1)")
    p.add_argument("--spkit-batch-sizes", default="32,64", help="spkit (its default is 64)")
    p.add_argument("--max-gen-toks", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None, help="GSM8K-format files for gsm8k_local (default: generated)")
    args = p.parse_args()

    import torch
    from lm_eval.models.huggingface import HFLM

    from spkit.evals.lm import SpkitLM
    from spkit.evals.report import headline
    from spkit.tasks.nltk_data import ensure_punkt_tab

    ensure_punkt_tab()
    torch.set_num_threads(args.threads)
    path, desc = _model_dir(args.model)
    gsm8k = args.task.startswith("gsm8k_local")
    data_dir = args.data_dir or (_gsm8k_format_dir(args.limit) if gsm8k else None)
    runs = [("hf", int(b)) for b in args.hf_batch_sizes.split(",")]
    runs += [("spkit", int(b)) for b in args.spkit_batch_sizes.split(",")]
    print(f"model: {desc}; task {args.task}, limit {args.limit}/subtask, max_gen_toks "
          f"{args.max_gen_toks}, {args.threads} thread(s), float32 CPU")
    rows = {}
    for backend, bs in runs:
        if backend == "hf":
            lm = HFLM(pretrained=path, device="cpu", dtype="float32", batch_size=bs)
        else:
            lm = SpkitLM(pretrained=path, device="cpu", dtype="float32", batch_size=bs)
        clock = _timed(lm)
        res, secs = _evaluate(lm, args.task, args.limit, bs, args.max_gen_toks, data_dir)
        n = sum(v["effective"] for v in res["n-samples"].values())
        rows[(backend, bs)] = {"res": res, "n": n, "whole": n / secs,
                               "gen": n / clock["generate"]}
        print(f"{backend:5s} batch {bs:3d}: {n} samples, whole run {n / secs:6.1f} samples/s, "
              f"inside generate_until {n / clock['generate']:6.1f} samples/s", flush=True)

    first = rows[runs[0]]
    texts = {k: [[s["resps"][0][0] for s in r] for _, r in sorted(v["res"]["samples"].items())]
             for k, v in rows.items()}
    same_text = all(t == texts[runs[0]] for t in texts.values())
    same_metrics = all(headline(v["res"]) == headline(first["res"]) for v in rows.values())
    print("\nratios, spkit / hf (whole lm-eval run; generation only):")
    for sb in [k for k in rows if k[0] == "spkit"]:
        for hb in [k for k in rows if k[0] == "hf"]:
            print(f"  spkit batch {sb[1]:3d} vs hf batch {hb[1]:3d}: "
                  f"{rows[sb]['whole'] / rows[hb]['whole']:5.2f}x; "
                  f"{rows[sb]['gen'] / rows[hb]['gen']:5.2f}x")
    default = rows.get(("spkit", 64)), rows.get(("hf", 1))
    if all(default):
        print(f"defaults (spkit eval batch 64 vs lm_eval --model hf batch 1): "
              f"{default[0]['whole'] / default[1]['whole']:.2f}x (target >= 2x)")
    print(f"greedy responses identical across all runs: {same_text}; "
          f"headline metrics identical: {same_metrics}")
    for k, v in headline(first["res"]).items():
        print(f"  {k}: {100 * v:.1f}%")


if __name__ == "__main__":
    main()
