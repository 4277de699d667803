"""Eval speed: the same task and model through lm-eval's stock `hf` backend and spkit's backend.

    python benchmarks/evals.py                       # spkit-tiny (or a random tiny Llama)
    python benchmarks/evals.py --model runs/x/checkpoints/step_0000100 --limit 100

Both runs use lm-eval's `simple_evaluate` on the same task (default: ``spkit_arith``, GSM8K
format, greedy), the same batch size, float32 on the CPU and one torch thread (so the ratio
is not an artefact of thread oversubscription on a shared machine). Prints samples/s of each
backend, the ratio (target >= 2x) and whether the greedy responses and metrics agree.
Model loading is excluded from the timing: each backend's model object is built first.
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


def _evaluate(lm, task: str, limit: int, batch_size: int, max_gen_toks: int) -> tuple[dict, float]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(ROOT / "evals"), include_defaults=False)
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
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-gen-toks", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import torch
    from lm_eval.models.huggingface import HFLM

    from spkit.evals.lm import SpkitLM
    from spkit.evals.nltk_data import ensure_punkt_tab
    from spkit.evals.report import headline

    ensure_punkt_tab()
    torch.set_num_threads(args.threads)
    path, desc = _model_dir(args.model)
    backends = {
        "hf (lm-eval stock)": HFLM(pretrained=path, device="cpu", dtype="float32",
                                   batch_size=args.batch_size),
        "spkit": SpkitLM(pretrained=path, device="cpu", dtype="float32",
                         batch_size=args.batch_size),
    }
    print(f"model: {desc}; task {args.task}, limit {args.limit}/subtask, batch "
          f"{args.batch_size}, max_gen_toks {args.max_gen_toks}, {args.threads} thread(s)")
    results = {}
    for name, lm in backends.items():
        res, secs = _evaluate(lm, args.task, args.limit, args.batch_size, args.max_gen_toks)
        n = sum(v["effective"] for v in res["n-samples"].values())
        results[name] = (res, secs, n)
        print(f"{name:20s} {n} samples in {secs:6.1f} s = {n / secs:7.1f} samples/s")
    (hf, t_hf, n_hf), (sp, t_sp, n_sp) = results.values()
    ratio = (n_sp / t_sp) / (n_hf / t_hf)
    resp = {k: [[s["resps"][0][0] for s in rows] for _, rows in sorted(r["samples"].items())]
            for k, (r, _, _) in results.items()}
    same_text = resp["spkit"] == resp["hf (lm-eval stock)"]
    same_metrics = headline(hf) == headline(sp)
    print(f"speed ratio spkit / hf: {ratio:.2f}x (target >= 2x)")
    print(f"greedy responses identical: {same_text}; headline metrics identical: {same_metrics}")
    for k, v in headline(sp).items():
        print(f"  {k}: spkit {100 * v:.1f}%  hf {100 * headline(hf).get(k, float('nan')):.1f}%")


if __name__ == "__main__":
    main()
