"""The learning-to-self-correct comparison of lesson 09: each method at one sample budget, seeds 0-2.

    python assets/results/correction.py [--budget 2048] [--seeds 0 1 2] [--jobs 3] [--only self_refine evolve]

Runs `spkit train METHOD --max-samples BUDGET --seed S --threads 1` for each protocol entry below
(`--jobs` at a time, one torch thread each), into runs/correction/NAME_seedS, then copies each
run's metrics into assets/results/correction_NAME_seedS.{csv,json} (`collect.py --all-rows`) and
adds the run's CPU time (user + sys of the training process, `os.wait4`) to the JSON: the
machine is shared, so wall time alone says little. A finished run is not run again (delete its
directory to redo it).

The x-axis every method shares is completions drawn (`train/samples`: both attempts, every
candidate and refinement). The held-out numbers are `spkit eval --tasks spkit_arith_correct` on
all 400 problems, at the start and at the end of each run. Settings: each method's defaults
except the flags below; none was tuned on held-out problems, and none was searched on the dev
split either (self_refine's --meta-steps 10 is a split of its 16 steps, not a search result).
Settings tried besides: self_refine --epochs 4 --meta-steps 100 --steps 12 --seed 100 (whether
more optimizer steps per batch teach the feedback line; read off train/feedback_written, no
held-out evaluation).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

# name -> (algorithm, extra flags)
PROTOCOL: dict[str, tuple[str, list[str]]] = {
    # 16 steps of 128 completions at the budget: 10 meta-skill steps, then self-evolution
    "self_refine": ("self_refine", ["--meta-steps", "10"]),
    "evolve": ("evolve", []),
    "sft_corrections": ("sft_corrections", []),
    "score": ("score", []),
    "rise": ("rise", []),
}


def run_one(name: str, seed: int, budget: int, out_root: Path) -> str:
    algo, flags = PROTOCOL[name]
    out = out_root / f"{name}_seed{seed}"
    if (out / "final" / "config.json").exists():
        return f"{name} seed {seed}: done before"
    cmd = [sys.executable, "-m", "spkit", "train", algo, *flags, "--max-samples", str(budget), "--steps", "100000",
           "--eval-every", "0", "--seed", str(seed), "--threads", "1", "--no-tensorboard",
           "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    log = out_root / f"{name}_seed{seed}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc:
        return f"{name} seed {seed}: FAILED (exit {rc}), see {log}"
    key = f"correction_{name}_seed{seed}"
    subprocess.check_call([sys.executable, str(HERE / "collect.py"), "--all-rows", f"{key}={out}"], cwd=ROOT)
    meta = json.loads((HERE / f"{key}.json").read_text())
    meta["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    (HERE / f"{key}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return f"{name} seed {seed}: {(time.perf_counter() - t0) / 60:.1f} min wall, {meta['cpu_seconds'] / 60:.1f} CPU-min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=2048, help="completions drawn per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--only", nargs="+", choices=list(PROTOCOL), default=list(PROTOCOL))
    ap.add_argument("--out", default="runs/correction")
    args = ap.parse_args()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    jobs = [(n, s) for n in args.only for s in args.seeds]  # a method's seeds first: 3 seeds before more methods
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: run_one(*job, args.budget, out_root), jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
