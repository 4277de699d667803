"""The self-taught-reasoners comparison of lesson 07: every method at one sample budget, 3 seeds.

    python assets/results/reasoning.py [--budget 4096] [--seeds 0 1 2] [--jobs 2] [--only rft grpo]

Runs `spkit train METHOD --max-samples BUDGET --seed S --threads 1` for each protocol entry below
(`--jobs` at a time, one torch thread each), into runs/reasoning/NAME_seedS, then copies each
run's evaluations into assets/results/reasoning_NAME_seedS.{csv,json} (`collect.py`), which
lesson 07 and the README read. A finished run is not run again (delete its directory to redo it).

The x-axis every method shares is completions drawn (`train/samples`, dev-search and
rationalisation samples included); held-out accuracy is the `spkit eval --tasks spkit_arith`
number on all 400 problems. Settings: each method's defaults, except where `dev_select.py`
chose on the dev split with seed 100 (all settings tried are in dev_select.jsonl).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

# name -> (algorithm, extra flags, evaluate every k steps: ~4-6 evaluations within the budget)
PROTOCOL: dict[str, tuple[str, list[str], int]] = {
    "rft": ("rft", [], 8),
    "grpo": ("grpo", [], 8),  # T = 1.0 (the default) beat 0.7 on dev (dev_select.jsonl)
    "star": ("star", [], 1),
    "b_star": ("b_star", [], 2),
    "nft": ("nft", [], 8),
    "sec": ("sec", [], 8),  # on GRPO: the same rollout settings
    "sec_random": ("sec", ["--curriculum", "random"], 8),
    "sec_easy_to_hard": ("sec", ["--curriculum", "easy_to_hard", "--stage-steps", "8"], 8),  # 4 stages in 32 steps
    "rlsp": ("rlsp", [], 8),
    # RLSP's bound matters only where exploration can out-pay correctness: α = 0.55 and a cap of 2
    # lines, so without the bound a wrong answer 3 lines longer out-scores a right one
    "rlsp_tight": ("rlsp", ["--alpha", "0.55", "--explore-cap", "2"], 8),
    "rlsp_tight_no_bound": ("rlsp", ["--alpha", "0.55", "--explore-cap", "2", "--no-bound"], 8),
}


def run_one(name: str, seed: int, budget: int, out_root: Path) -> str:
    algo, flags, every = PROTOCOL[name]
    out = out_root / f"{name}_seed{seed}"
    if (out / "final" / "config.json").exists():
        return f"{name} seed {seed}: done before"
    cmd = [sys.executable, "-m", "spkit", "train", algo, *flags, "--max-samples", str(budget), "--steps", "100000",
           "--eval-every", str(every), "--seed", str(seed), "--threads", "1", "--no-tensorboard",
           "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    log = out_root / f"{name}_seed{seed}.log"
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if rc:
        return f"{name} seed {seed}: FAILED (exit {rc}), see {log}"
    subprocess.check_call([sys.executable, str(HERE / "collect.py"), "--all-rows", f"reasoning_{name}_seed{seed}={out}"],
                          cwd=ROOT)
    return f"{name} seed {seed}: {(time.perf_counter() - t0) / 60:.1f} min"


def measure_start() -> None:
    """reasoning_start.json: spkit-tiny on all 400 held-out problems, the line every curve starts from."""
    path = HERE / "reasoning_start.json"
    if path.exists():
        return
    import torch

    from spkit.models import load_model
    from spkit.rl import verifiable as V

    torch.set_num_threads(1)
    path.write_text(json.dumps(V.evaluate_heldout(*load_model("spkit-tiny")), indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=4096, help="completions drawn per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="+", choices=list(PROTOCOL), default=list(PROTOCOL))
    ap.add_argument("--out", default="runs/reasoning")
    args = ap.parse_args()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    measure_start()
    jobs = [(n, s) for s in args.seeds for n in args.only]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: run_one(*job, args.budget, out_root), jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
