"""Choose a reasoning trainer's settings on the dev split, on a seed that is not reported.

    python assets/results/dev_select.py grpo --seed 100 --steps 30 --grid temperature=0.7,1.0
    python assets/results/dev_select.py rft --seed 100 --steps 30 --grid lr=1e-4,2e-5 --set k=8

Each setting of the grid (one field, comma-separated values; `--set` fixes others) trains from
the same seed for the same number of steps, then its final model is scored greedily on the dev
split (`spkit.rl.verifiable.dev_problems`: train-split problems no trainer draws), never on the
held-out set the results report. Prints one line per setting and the winner, and appends them
to assets/results/dev_select.jsonl, so every setting tried is on record.
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
from spkit.rl import verifiable as V

HERE = Path(__file__).parent


def _typed(cfg, field: str, text: str):
    kind = type(getattr(cfg, field))
    return text.lower() in ("1", "true", "yes") if kind is bool else kind(text)


def dev_accuracy(model, tok, per_level: int) -> float:
    """Greedy strict accuracy on `per_level` dev problems of each level (the held-out protocol)."""
    dev = dataclasses.replace(V.ARITH, heldout=lambda limit=None: V.dev_problems(per_level))
    return V.evaluate_heldout(model, tok, task=dev)["eval/strict"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("algo")
    ap.add_argument("--grid", required=True, help="FIELD=V1,V2,...")
    ap.add_argument("--set", action="append", default=[], help="FIELD=VALUE, fixed for every setting")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--dev-per-level", type=int, default=50)
    ap.add_argument("--out", default="runs/dev_select", help="where each setting's run directory goes")
    args = ap.parse_args()
    mod = importlib.import_module(f"spkit.algos.{args.algo}")
    base = mod.Config(seed=args.seed, steps=args.steps, eval_every=0, eval_limit=1, threads=1, overwrite=True,
                      tensorboard=False, plot=False)
    for kv in args.set:
        k, v = kv.split("=", 1)
        base = dataclasses.replace(base, **{k: _typed(base, k, v)})
    field, values = args.grid.split("=", 1)
    results = []
    for v in values.split(","):
        out = Path(args.out) / f"{args.algo}_{field}={v}_seed{args.seed}"
        cfg = dataclasses.replace(base, out=str(out), **{field: _typed(base, field, v)})
        validate(cfg)
        t0 = time.perf_counter()
        hist = mod.train(cfg)
        acc = dev_accuracy(*load_model(str(hist.final_dir)), args.dev_per_level)
        row = {"algo": args.algo, field: getattr(cfg, field), "seed": args.seed, "steps": args.steps,
               "samples": hist.last("train/samples"), "dev_strict": round(acc, 4),
               "wall_minutes": round((time.perf_counter() - t0) / 60, 2),
               "fixed": dict(kv.split("=", 1) for kv in args.set)}
        results.append(row)
        print(json.dumps(row))
        with open(HERE / "dev_select.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    best = max(results, key=lambda r: r["dev_strict"])
    print(f"best on dev: {field}={best[field]} ({100 * best['dev_strict']:.1f}% strict)")


if __name__ == "__main__":
    main()
