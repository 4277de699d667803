"""Choose the self-correction settings on the dev split, on a seed that is not reported.

    python assets/results/correction_dev.py sft_corrections --steps 8,16,32 --set warmup_steps=32
    python assets/results/correction_dev.py score --budget 2048 --grid alpha=1,10

Each setting trains from seed 100 (not one of the reported seeds 0-2) and its final model is
scored greedily on both attempts on the dev split (`spkit.rl.verifiable.dev_problems`:
train-split problems no trainer draws), never on the held-out problems the results report.
`--grid FIELD=V1,V2` tries each value from the start; `--steps 8,16,32` continues one run
(`--resume`, equal to a straight run) and scores it after each step count — the warm-up's length
is chosen that way, with a run whose steps are all warm-up steps. Every setting tried is appended
to assets/results/correction_tried.jsonl with its dev numbers, the completions drawn and the CPU
time of the training and dev evaluation (this process's user + sys time, one thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import time
from pathlib import Path

from spkit.config import validate
from spkit.models import load_model
from spkit.rl import correction as C
from spkit.rl import verifiable as V

HERE = Path(__file__).parent


def _typed(cfg, field: str, text: str):
    kind = type(getattr(cfg, field))
    return text.lower() in ("1", "true", "yes") if kind is bool else kind(text)


def dev_metrics(final_dir: Path, per_level: int) -> dict[str, float]:
    """Both attempts, greedy, on `per_level` dev problems of each level (the held-out protocol)."""
    dev = dataclasses.replace(V.ARITH, heldout=lambda limit=None: V.dev_problems(per_level))
    m = C.evaluate_correction(*load_model(str(final_dir)), task=dev)
    return {k.split("/", 1)[1]: round(v, 4) for k, v in m.items() if "level" not in k and k != "eval/strict"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("algo")
    ap.add_argument("--grid", default="", help="FIELD=V1,V2,... (each from the start)")
    ap.add_argument("--set", action="append", default=[], help="FIELD=VALUE, fixed for every setting")
    ap.add_argument("--steps", default="100000", help="step count, or counts to score one resumed run at")
    ap.add_argument("--budget", type=int, default=0, help="--max-samples (completions drawn, warm-up included)")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--dev-per-level", type=int, default=50)
    ap.add_argument("--out", default="runs/correction_dev")
    args = ap.parse_args()
    mod = importlib.import_module(f"spkit.algos.{args.algo}")
    base = mod.Config(seed=args.seed, eval_every=0, eval_limit=1, threads=1, tensorboard=False, plot=False,
                      max_samples=args.budget)
    for kv in args.set:
        k, v = kv.split("=", 1)
        base = dataclasses.replace(base, **{k: _typed(base, k, v)})
    field, values = args.grid.split("=", 1) if args.grid else ("", "-")
    for v in values.split(","):
        cfg = base if not field else dataclasses.replace(base, **{field: _typed(base, field, v)})
        name = "_".join([args.algo, *args.set, *([f"{field}={v}"] if field else [])]).replace("=", "")
        cpu0 = time.process_time()
        for i, steps in enumerate(int(s) for s in args.steps.split(",")):
            run = dataclasses.replace(cfg, steps=steps, out=str(Path(args.out) / f"{name}_seed{args.seed}"),
                                      overwrite=i == 0, resume=i > 0)
            validate(run)
            hist = mod.train(run)
            row = {"algo": args.algo, "seed": args.seed, "steps": steps,
                   "fixed": dict(kv.split("=", 1) for kv in args.set), **({field: v} if field else {}),
                   "warmup": {"steps": cfg.warmup_steps, "k": cfg.warmup_k, "lr": cfg.warmup_lr,
                              "problems": cfg.problems}, "lr": cfg.lr,
                   "samples": int(hist.last("train/samples")), "split": f"dev ({4 * args.dev_per_level} problems)",
                   **dev_metrics(hist.final_dir, args.dev_per_level),
                   "cpu_minutes": round((time.process_time() - cpu0) / 60, 2)}
            print(json.dumps(row), flush=True)
            with open(HERE / "correction_tried.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
