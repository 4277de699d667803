"""Self-RedTeam's comparison (lesson 10, README): co-training vs a static attacker, with and without --think.

    python assets/results/self_redteam.py [--seeds 0 1 2] [--arms self frozen] [--think-seeds 0]

Protocol. One format SFT per prompt mode (`spkit train self_redteam --steps 0 --seed 0`, the
trainer's default SFT; `--think` for reasoning mode) gives the start model every arm of that
mode shares, so the arms differ only in who attacks during RL. Then, per arm and seed,
`spkit train self_redteam --model SFT/final --sft-steps 0 --attacker ARM --seed S` with FLAGS
(one torch thread): ``self`` co-trains attacker and defender, ``frozen`` trains the defender
against the frozen SFT model as attacker (the static-attacker baseline). Each run's whole
metrics log is copied to assets/results/self_redteam_[think_]ARM_seedS.csv with a json of its
CPU time (user + system of the training process) and settings. The SFT runs' CPU time is
recorded in self_redteam_[think_]sft.json. A finished run is not run again (delete its
directory under runs/self_redteam to redo it).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
FLAGS = ["--steps", "10", "--games", "48", "--eval-every", "5", "--eval-games", "96", "--threads", "1",
         "--no-tensorboard", "--no-plot"]


def _spkit(args: list[str], log: Path) -> tuple[float, float]:
    """Run `spkit ARGS` (niced), return (CPU seconds of the child, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(["nice", "-n", "10", sys.executable, "-m", "spkit", *args], stdout=f, stderr=f, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"spkit {' '.join(args)} failed (exit {rc}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, time.time() - t0


def sft_model(out_root: Path, think: bool) -> Path:
    tag = "think_" if think else ""
    out = out_root / f"{tag}sft"
    if not (ROOT / out / "final" / "config.json").exists():
        args = ["train", "self_redteam", "--steps", "0", "--seed", "0", "--eval-games", "96", "--threads", "1",
                "--no-tensorboard", "--no-plot", "--out", str(out), "--overwrite", *(["--think"] if think else [])]
        cpu, wall = _spkit(args, ROOT / out_root / f"{tag}sft.log")
        (HERE / f"self_redteam_{tag}sft.json").write_text(json.dumps(
            {"cpu_minutes": cpu / 60, "wall_minutes": wall / 60, "args": args[2:]}, indent=1))
    return out / "final"


def run_one(out_root: Path, arm: str, seed: int, think: bool) -> None:
    tag = "think_" if think else ""
    name = f"self_redteam_{tag}{arm}_seed{seed}"
    out = out_root / name
    if (ROOT / out / "final" / "config.json").exists():
        return
    start = sft_model(out_root, think)
    args = ["train", "self_redteam", "--model", str(start), "--sft-steps", "0", "--attacker", arm, "--seed",
            str(seed), *FLAGS, *(["--think"] if think else []), "--out", str(out), "--overwrite"]
    cpu, wall = _spkit(args, ROOT / out_root / f"{name}.log")
    shutil.copy(ROOT / out / "metrics.csv", HERE / f"{name}.csv")
    (HERE / f"{name}.json").write_text(json.dumps(
        {"cpu_minutes": cpu / 60, "wall_minutes": wall / 60, "args": args[2:]}, indent=1))
    print(f"{name}: {cpu / 60:.1f} CPU min", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=["self", "frozen"], choices=["self", "frozen", "scripted"])
    p.add_argument("--think-seeds", type=int, nargs="*", default=[0], help="seeds of the --think arms")
    p.add_argument("--out", default="runs/self_redteam", help="run directory, relative to the repository")
    a = p.parse_args()
    out_root = Path(a.out)  # relative to ROOT (the children's cwd), so the logged args name no outside path
    (ROOT / out_root).mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        for arm in a.arms:
            run_one(out_root, arm, seed, think=False)
    for seed in a.think_seeds:
        for arm in a.arms:
            run_one(out_root, arm, seed, think=True)


if __name__ == "__main__":
    main()
