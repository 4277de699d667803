"""Negotiation with AI feedback (lesson 10, README): meta-SFT, then five feedback rounds per critic, 3 seeds.

    python assets/results/negotiation_feedback.py [--seeds 0 1 2] [--out runs/negotiation_feedback]
    python assets/results/negotiation_feedback.py --dev     # the dev seed (100): every setting tried

Runs `spkit train negotiation_feedback --seed S --threads 1` with the default settings and `FLAGS`
(the play temperature, 0.7, chosen on seed 100, which is not reported: `DEV`; the meta-SFT budget,
200 steps of 16 = the dev runs' 3,200 demonstrations, after 60 steps of 16 left 63-74% of seed 0's
games invalid), one run at a time, into OUT/seedS, then copies each
run's metrics into assets/results/negotiation_feedback_seedS.{csv,json} (`collect.py`) and adds the
run's CPU time (user + system of the training process) to the json. A finished run is not run
again (delete its directory to redo it). `--dev` reruns the settings tried on seed 100 and appends
each one's last evaluation to negotiation_feedback_tried.jsonl (which lists the dev runs made).

The evaluation at step 0 is the untrained spkit-tiny; the one at the end is the meta-SFT'd model.
Each plays G = 32 chains of up to 5 rounds per critic (none, scripted, model, random), both seats
the model, the seller criticised; the chains of one seed and one evaluation are seeded by the
critic's name, so the critics of a run see different samples of the same model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
FLAGS = ["--eval-every", "0", "--games", "32", "--rounds", "5", "--critics", "none,scripted,model,random"]
#: Settings tried on the dev seed (100): temperature 1.0 left 38-47% of games ended by an invalid move.
DEV = {
    "steps100_batch32_lr3e-4_T1.0": ["--steps", "100", "--sft-batch", "32", "--lr", "3e-4", "--temperature", "1.0"],
    "steps100_batch32_lr3e-4_T0.7": ["--steps", "100", "--sft-batch", "32", "--lr", "3e-4", "--temperature", "0.7"],
}


def run_one(name: str, seed: int, extra: list[str], out: Path) -> dict:
    if not (out / "final" / "config.json").exists():
        cmd = [sys.executable, "-m", "spkit", "train", "negotiation_feedback", *FLAGS, *extra, "--seed", str(seed),
               "--threads", "1", "--no-tensorboard", "--out", str(out), "--overwrite"]
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f"{out.name}.log", "w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"{name}: failed, see {out.parent / (out.name + '.log')}")
        (out / "cpu_minutes.txt").write_text(f"{(usage.ru_utime + usage.ru_stime) / 60:.2f}\n")
    return {"cpu_minutes": float((out / "cpu_minutes.txt").read_text())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/negotiation_feedback")
    ap.add_argument("--dev", action="store_true", help="run the settings tried on seed 100 instead")
    args = ap.parse_args()
    out_root = Path(args.out)
    if args.dev:
        from spkit.run.metrics import read_metrics

        lines = []
        for label, extra in DEV.items():
            t0 = time.perf_counter()
            info = run_one(label, 100, extra, out_root / f"dev_{label}")
            last = read_metrics(out_root / f"dev_{label}" / "metrics.csv")[-1]
            lines.append(json.dumps({"seed": 100, "setting": label, "flags": FLAGS + extra, **info,
                                     **{k: v for k, v in last.items() if k.startswith("eval/")}}))
            print(f"dev {label}: {(time.perf_counter() - t0) / 60:.1f} min wall", flush=True)
        with open(HERE / "negotiation_feedback_tried.jsonl", "a") as f:  # after the runs already listed
            f.write("\n".join(lines) + "\n")
        return
    for seed in args.seeds:
        name = f"negotiation_feedback_seed{seed}"
        t0 = time.perf_counter()
        info = run_one(name, seed, [], out_root / f"seed{seed}")
        subprocess.check_call([sys.executable, str(HERE / "collect.py"), f"{name}={out_root / f'seed{seed}'}"],
                              cwd=ROOT)
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | info, indent=1) + "\n")
        print(f"{name}: {(time.perf_counter() - t0) / 60:.1f} min wall, {info['cpu_minutes']} min CPU", flush=True)


if __name__ == "__main__":
    main()
