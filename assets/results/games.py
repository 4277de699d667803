"""The Vision-Zero ablation of lesson 10: clue-only, decision-only and alternating Iterative-SPO, 3 seeds.

    python assets/results/games.py [--seeds 0 1 2] [--jobs 3] [--only alternate clue]

Runs `spkit train vision_zero --schedule ARM --seed S --threads 1` with the protocol below
(`--jobs` at a time, one torch thread each) into runs/games/vision_zero_ARM_seedS, then copies
each run's whole metrics log into assets/results/vision_zero_ARM_seedS.{csv,json} (`collect.py
--all-rows`) and adds the run's CPU time (user + system of the training process) to the json.
Lesson 10 and the README read only these files. A finished run is not run again (delete its
directory to redo it).

Every arm plays the same games per step (`--games 8`, G = 4 votes per player) and the same
number of steps, so all arms draw the same number of samples; they differ only in which turns
are trained (clue turns, civilian votes, or the two alternating every 2 steps). The held-out
evaluation (spy-identification accuracy on 10 word pairs never dealt in training) uses seeds
derived from the run's seed alone, so the arms of one seed are scored on the same games.
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
ARMS = ("alternate", "clue", "decision")
FLAGS = ["--steps", "8", "--games", "8", "--votes", "4", "--switch-every", "2", "--eval-every", "8",
         "--eval-games", "32", "--eval-votes", "4"]


def run_one(arm: str, seed: int, out_root: Path) -> str:
    name = f"vision_zero_{arm}_seed{seed}"
    out = out_root / name
    if (out / "final" / "config.json").exists():
        return f"{name}: done before"
    cmd = [sys.executable, "-m", "spkit", "train", "vision_zero", "--schedule", arm, *FLAGS, "--seed", str(seed),
           "--threads", "1", "--no-tensorboard", "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    log = out_root / f"{name}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        return f"{name}: FAILED (exit {proc.returncode}), see {log}"
    subprocess.check_call([sys.executable, str(HERE / "collect.py"), "--all-rows", f"{name}={out}"], cwd=ROOT)
    info_path = HERE / f"{name}.json"
    info = json.loads(info_path.read_text())
    info["cpu_minutes"] = round((usage.ru_utime + usage.ru_stime) / 60, 2)
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    return f"{name}: {(time.perf_counter() - t0) / 60:.1f} min wall, {info['cpu_minutes']} min CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--only", nargs="+", choices=ARMS, default=list(ARMS))
    ap.add_argument("--out", default="runs/games")
    args = ap.parse_args()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    jobs = [(a, s) for s in args.seeds for a in args.only]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: run_one(*job, out_root), jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
