"""Seconds per training step on N torchrun ranks vs one process, the same trainer and flags.

The anchor is the one-process run of the same command, measured in the same invocation, so the
ratio means something on a shared, noisy machine. Each run's steps come from its own
`metrics.csv` (`train/wall_seconds`, logged after every step); the first step is left out (it
pays for loading, the untrained evaluation and, for some trainers, a one-off search), so the
number is the median of steps 2..S. With `--fsdp` the N-rank run shards the model (FSDP2)
instead of replicating it.

    python benchmarks/data_parallel.py                                  # B-STaR, 4 steps, 2 ranks
    python benchmarks/data_parallel.py --algo self_consuming --steps 5
    python benchmarks/data_parallel.py --algo grpo --ranks 2 --fsdp -- --problems 8 --k 8

On a machine with fewer cores than ranks × threads the ranks compete for cores; the ratio then
measures that machine, not the method (this project's CI machine has 2 cores: run 2 ranks with
`--threads 1`, the default).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def step_seconds(metrics: Path) -> list[float]:
    """Wall seconds of each step after the first, from a run's metrics.csv."""
    with metrics.open() as f:
        wall = [float(r["train/wall_seconds"]) for r in csv.DictReader(f) if r.get("train/wall_seconds")]
    return [b - a for a, b in zip(wall, wall[1:], strict=False)]


def run(cmd: list[str], out: Path) -> list[float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPKIT_NO_PROGRESS": "1"}
    r = subprocess.run([*cmd, "--out", str(out), "--overwrite"], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-1500:]}")
    return step_seconds(out / "metrics.csv")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algo", default="b_star")
    ap.add_argument("--steps", type=int, default=4, help="training steps per run (the first is not timed)")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--fsdp", action="store_true", help="shard the model in the N-rank run (FSDP2)")
    ap.add_argument("rest", nargs="*", help="more flags for `spkit train ALGO` (after --)")
    a = ap.parse_args(argv)
    if a.steps < 2:
        ap.error("--steps must be >= 2: the first step is not timed")
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    common = ["train", a.algo, "--steps", str(a.steps), "--eval-every", "0", "--threads", str(a.threads),
              "--no-plot", "--no-tensorboard", *a.rest]
    if a.algo not in ("spiral",):
        common += ["--eval-limit", "1"]  # the reasoning and instruction trainers' held-out set
    with tempfile.TemporaryDirectory() as tmp:
        one = run([sys.executable, "-m", "spkit", *common], Path(tmp, "one"))
        many = run([torchrun, "--standalone", "--nproc_per_node", str(a.ranks), "-m", "spkit", *common,
                    *(["--fsdp"] if a.fsdp else [])], Path(tmp, "many"))
    t1, tn = statistics.median(one), statistics.median(many)
    mode = "FSDP2" if a.fsdp else "DDP"
    print(f"{a.algo}: seconds per step (median of steps 2..{a.steps}), {a.threads} thread(s) per process")
    for label, t, steps in (("1 process", t1, one), (f"{a.ranks} ranks ({mode})", tn, many)):
        print(f"  {label:<16}{t:7.2f} s   (steps: {', '.join(f'{x:.2f}' for x in steps)})")
    print(f"  speed-up {t1 / tn:.2f}x")


if __name__ == "__main__":
    main()
