"""The iterative-alignment comparison on spkit_ifeval_lite (lesson 06, "Iterative alignment with
a self-judge"): SPaR against its plain-pairs baseline at one sample budget, online iterative DPO
on the checkers' reward, Self-Rewarding (and the temporal variant), the self-consuming loop.

    python assets/results/alignment.py [--budget 1024] [--seeds 0] [--jobs 3] [--max-minutes 40] [--only spar spar_plain]
    python assets/results/alignment.py --dev --seeds 100 --only spar_digit     # a dev seed, dev split

Runs `spkit train ALGO --max-samples BUDGET --seed S --threads 1` for each protocol entry below
(`--jobs` at a time) into runs/alignment/NAME_seedS under /usr/bin/time, then copies each run's
metrics into assets/results/alignment_NAME_seedS.{csv,json} (`collect.py --all-rows`) and adds
the run's CPU seconds (user + sys) to the JSON. A finished run is not run again.

The x-axis is responses drawn (`train/samples`: the judge's seed responses, samples and
refinements); held-out accuracy is `spkit eval --tasks spkit_ifeval_lite`'s prompt-level strict
number on all 200 prompts (evaluated at the start and the end: `--eval-every 0`, except
Self-Rewarding, whose win rate against the previous evaluation needs several). `--max-minutes`
stops a run early on a busy machine; the JSON's `config` and the CSV's last `train/samples` say
where it stopped. Every setting tried is listed in PROTOCOL (and in alignment_tried.jsonl).
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

SMALL = ["--prompts", "8"]
JUDGE_SEED = ["--judge-seed-prompts", "48", "--judge-seed-steps", "30"]
# name -> (algorithm, extra flags, evaluate every k steps; 0 = start and end)
PROTOCOL: dict[str, tuple[str, list[str], int]] = {
    "spar": ("spar", SMALL + JUDGE_SEED, 0),
    "spar_plain": ("spar", SMALL + JUDGE_SEED + ["--pairs", "sampled"], 0),
    "online_iterative_dpo": ("online_iterative_dpo", SMALL, 0),
    "self_rewarding": ("self_rewarding", SMALL + JUDGE_SEED, 4),
    "self_rewarding_temporal": ("self_rewarding", SMALL + JUDGE_SEED + ["--temporal"], 4),
    "self_consuming": ("self_consuming", SMALL, 0),
    "self_consuming_real": ("self_consuming", SMALL + ["--real-fraction", "0.5"], 0),
    "self_consuming_short": ("self_consuming", SMALL + ["--curator", "short"], 0),  # a curator blind to the task
    # SPaR with the judge answering ' 1' / ' 0' (one token each; ' Yes' is three): spar_judge.py
    "spar_digit": ("spar", SMALL + JUDGE_SEED + ["--judge-kind", "verdict01"], 0),
    "spar_plain_digit": ("spar", SMALL + JUDGE_SEED + ["--pairs", "sampled", "--judge-kind", "verdict01"], 0),
}


def run_one(name: str, seed: int, budget: int, minutes: float, out_root: Path, dev: bool = False) -> str:
    algo, flags, every = PROTOCOL[name]
    if dev:  # settings are chosen on dev seeds, scored on the dev split, saved as alignment_dev_*
        name, flags = f"dev_{name}", [*flags, "--eval-on", "dev"]
    out = out_root / f"{name}_seed{seed}"
    if (out / "final" / "config.json").exists():
        return f"{name} seed {seed}: done before"
    timing = out_root / f"{name}_seed{seed}.time"
    cmd = ["/usr/bin/time", "-o", str(timing), "-f", "%e %U %S", sys.executable, "-m", "spkit", "train", algo,
           *flags, "--max-samples", str(budget), "--steps", "100000", "--eval-every", str(every),
           "--max-minutes", str(minutes), "--seed", str(seed), "--threads", "1", "--no-tensorboard",
           "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    log = out_root / f"{name}_seed{seed}.log"
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if rc:
        return f"{name} seed {seed}: FAILED (exit {rc}), see {log}"
    tag = f"alignment_{name}_seed{seed}"
    subprocess.check_call([sys.executable, str(HERE / "collect.py"), "--all-rows", f"{tag}={out}"], cwd=ROOT)
    wall, user, sys_ = (float(x) for x in timing.read_text().split()[-3:])
    meta = json.loads((HERE / f"{tag}.json").read_text())
    meta |= {"process_wall_seconds": wall, "cpu_seconds": user + sys_}
    (HERE / f"{tag}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return f"{name} seed {seed}: {(time.perf_counter() - t0) / 60:.1f} min wall, {(user + sys_) / 60:.1f} min CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=1024, help="responses drawn per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--max-minutes", type=float, default=40.0, help="wall-clock cap per run")
    ap.add_argument("--only", nargs="+", choices=list(PROTOCOL), default=list(PROTOCOL))
    ap.add_argument("--out", default="runs/alignment")
    ap.add_argument("--dev", action="store_true", help="score on the dev split (for dev seeds, e.g. 100)")
    args = ap.parse_args()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    jobs = [(n, s) for s in args.seeds for n in args.only]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: run_one(*job, args.budget, args.max_minutes, out_root, args.dev), jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
