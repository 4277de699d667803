"""ReST-MCTS* at this scale: one policy/value self-training round per seed, then accuracy against
compute (sampled policy tokens) of greedy, best-of-N (majority vote, ranked by the value model) and
MCTS* with the self-trained value model, on held-out `spkit_arith` problems of levels 3-4 (the
first PER_LEVEL of each level).

    python assets/results/rest_mcts.py [--seeds 0 1 2] [--jobs 2] [--steps 8]

For each seed: `spkit train rest_mcts --steps STEPS --seed S --threads 1` into runs/rest_mcts/seedS
(a finished run is not run again), whose first and last evaluations are the greedy `spkit eval
--tasks spkit_arith` number before and after the round; then `rest_mcts.accuracy_vs_compute` with
the trained policy (final/) and value model (value/) writes assets/results/rest_mcts_seedS.csv (one
row per method and setting: mean tokens per problem, accuracy overall and per level) and
rest_mcts_seedS.json (the run's config, greedy before/after, wall and CPU seconds of each part).
Settings are the paper's constants and RFT's dev-chosen learning rate; `SETTINGS_TRIED` lists
every setting run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
NS = (1, 2, 4, 8)  # best-of-N sample counts
ITERATIONS = (2, 4, 8)  # MCTS* iterations per problem (test time, stops early once solved)
LEVELS = (3, 4)
PER_LEVEL = 30  # the first 30 held-out problems of each level (lm-eval's --limit 30): CPU on a shared machine
SETTINGS_TRIED = [  # every training setting run for these results (defaults: paper constants)
    {"steps": 8, "problems": 16, "k": 3, "iterations": 12, "c": 0.4, "alpha": 0.5, "lookahead": 2,
     "lr": 2e-5, "value_lr": 1e-4, "value_epochs": 4, "temperature": 1.0},
]


def train_one(seed: int, steps: int, out_root: Path) -> tuple[Path, float]:
    """Train seed `seed` (unless done); its wall time, and its CPU time (user + sys of the
    process, the budget on a shared machine) in OUT/cpu_seconds.txt for `compare`."""
    out = out_root / f"seed{seed}"
    if (out / "value" / "config.json").exists():
        return out, 0.0
    cmd = [sys.executable, "-m", "spkit", "train", "rest_mcts", "--steps", str(steps), "--seed", str(seed),
           "--threads", "1", "--eval-every", "0", "--no-tensorboard", "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    with open(out_root / f"seed{seed}.log", "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"seed {seed}: spkit train rest_mcts failed (see {out_root / f'seed{seed}.log'})")
    (out / "cpu_seconds.txt").write_text(f"{usage.ru_utime + usage.ru_stime:.1f}\n")
    return out, time.perf_counter() - t0


def compare(seed: int, run: Path) -> dict:
    """accuracy_vs_compute of the run's policy and value model (in this process, one thread)."""
    import torch

    from spkit.algos import rest_mcts as R
    from spkit.models import load_model
    from spkit.rl import verifiable as V
    from spkit.run.metrics import read_metrics

    torch.set_num_threads(1)
    model, tok = load_model(str(run / "final"))
    value = R.ValueModel.load(run / "value")
    problems = [p for p in V.heldout_problems(PER_LEVEL) if p["steps"] in LEVELS]
    t0, c0 = time.perf_counter(), time.process_time()
    rows = R.accuracy_vs_compute(model, tok, value, problems, NS, ITERATIONS, seed=seed)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    with open(HERE / f"rest_mcts_seed{seed}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    metrics = read_metrics(run / "metrics.csv")
    evals = [r for r in metrics if "eval/strict" in r]
    info = {"seed": seed, "config": json.loads((run / "run.json").read_text())["config"],
            "greedy_heldout_before": evals[0]["eval/strict"], "greedy_heldout_after": evals[-1]["eval/strict"],
            "levels_before": {k: v for k, v in evals[0].items() if k.startswith("eval/strict/level_")},
            "levels_after": {k: v for k, v in evals[-1].items() if k.startswith("eval/strict/level_")},
            "train_samples": metrics[-1].get("train/samples"), "train_tokens": metrics[-1].get("train/tokens"),
            "train_wall_seconds": metrics[-1].get("train/wall_seconds"),
            "train_cpu_seconds": float(c.read_text()) if (c := run / "cpu_seconds.txt").exists() else None,
            "compare_problems": len(problems), "compare_levels": list(LEVELS),
            "compare_wall_seconds": wall, "compare_cpu_seconds": cpu, "settings_tried": SETTINGS_TRIED}
    (HERE / f"rest_mcts_seed{seed}.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=SETTINGS_TRIED[-1]["steps"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/rest_mcts")
    args = ap.parse_args()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)

    def one(seed: int) -> str:
        run, wall = train_one(seed, args.steps, out_root)
        info = subprocess.run([sys.executable, __file__, "--compare-only", str(seed), str(run)], cwd=ROOT,
                              check=True, capture_output=True, text=True).stdout.strip()
        return f"seed {seed}: trained in {wall / 60:.1f} min; {info}"

    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(one, args.seeds):
            print(line, flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--compare-only":
        res = compare(int(sys.argv[2]), Path(sys.argv[3]))
        print(f"greedy {res['greedy_heldout_before']:.3f} -> {res['greedy_heldout_after']:.3f}, "
              f"comparison {res['compare_wall_seconds'] / 60:.1f} min wall, {res['compare_cpu_seconds'] / 60:.1f} min CPU")
    else:
        main()
