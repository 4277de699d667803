"""The LM preference game of lesson 06: every preference learner on spkit-tiny, one CPU budget.

    python assets/results/preference_lm.py [--seeds 0 1] [--jobs 2] [--only sppo inpo] [--tune]

Runs `spkit train LEARNER --mode lm ... --seed S --threads 1` for each protocol entry below
(`--jobs` at a time, one torch thread each) into runs/preference_lm/NAME_seedS, then copies each
run's evaluations into assets/results/preference_lm_NAME_seedS.csv (`collect.py`) and its
settings, CPU seconds (user + sys of the process) and wall seconds into
preference_lm_NAME_seedS.json; lesson 06 and the README read those. A finished run is not run
again (delete its directory to redo it).

The game: 4 prompts, K completions each per step, classes and the intransitive class matrix of
`spkit.rl.lm_preference`; exploitability of the last iterate from `--eval-samples` fresh
completions per prompt (90% bootstrap interval), of the average iterate from all training
completions. `--tune` runs the TUNING entries on seed 100 (never reported); preference_lm_tune.jsonl lists
every tuning run started (finished or stopped early), its settings and its evaluations.
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
COMMON = ["--mode", "lm", "--eval-every", "10", "--eval-samples", "64", "--threads", "1", "--no-tensorboard",
          "--no-plot"]

# name -> (learner, flags). Chosen on seed 100 (preference_lm_tune.jsonl): with Adam at 1e-3, SPO
# collapsed onto "describe" within 10 steps and SPPO and INPO drifted onto "other" (format noise)
# within 10-20, Nash-MD did not; so the REINFORCE learners (SPO, BT-RLHF) get 1e-4, the regression
# losses 3e-4, Nash-MD keeps 1e-3. Nash-MP runs half the iterations (each is two INPO fits).
PROTOCOL: dict[str, tuple[str, list[str]]] = {
    "spo": ("spo", ["--steps", "40", "--lm-lr", "1e-4"]),
    "sppo": ("sppo", ["--steps", "40", "--lm-lr", "3e-4", "--inner-steps", "2"]),
    "inpo": ("inpo", ["--steps", "40", "--lm-lr", "3e-4", "--inner-steps", "2", "--eta", "2", "--tau", "0.1"]),
    "nash_md": ("nash_md", ["--steps", "40", "--lm-lr", "1e-3", "--tau", "0.1", "--eta", "1"]),
    "nash_mp": ("nash_mp", ["--steps", "20", "--lm-lr", "3e-4", "--inner-steps", "2", "--eta", "2", "--tau", "0.1"]),
    "online_dpo": ("online_dpo", ["--steps", "40", "--lm-lr", "3e-4", "--inner-steps", "2", "--beta", "0.5"]),
    "rlhf_bt": ("rlhf_bt", ["--steps", "40", "--lm-lr", "1e-4", "--beta", "0.1"]),
    # the budget (15 CPU-minutes each) for the best learner and the baseline: the same
    # settings run 15x longer (600 iterations, ~6 CPU-min), evaluated every 40
    "spo_long": ("spo", ["--steps", "600", "--lm-lr", "1e-4", "--eval-every", "40"]),
    "rlhf_bt_long": ("rlhf_bt", ["--steps", "600", "--lm-lr", "1e-4", "--beta", "0.1", "--eval-every", "40"]),
}
# the first tuning round (tags _a, _b): every entry at 1e-3 (_b); _a was 200 steps at 3e-4, stopped
# after 11-22 steps as too slow for the machine
TUNING: dict[str, tuple[str, list[str]]] = {n: (a, [f if f != "1e-4" and f != "3e-4" else "1e-3" for f in fl])
                                              for n, (a, fl) in PROTOCOL.items()}


def run_one(name: str, learner: str, flags: list[str], seed: int, out_root: Path, prefix: str) -> dict:
    out = out_root / f"{name}_seed{seed}"
    result = HERE / f"{prefix}_{name}_seed{seed}.json"
    if (out / "final").exists() and result.exists():
        return json.loads(result.read_text())
    cmd = [sys.executable, "-m", "spkit", "train", learner, *COMMON, *flags, "--seed", str(seed),
           "--out", str(out.relative_to(ROOT)), "--overwrite"]
    t0 = time.perf_counter()
    log = out_root / f"{name}_seed{seed}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        return {"name": name, "seed": seed, "failed": str(log)}
    subprocess.check_call([sys.executable, str(HERE / "collect.py"), f"{prefix}_{name}_seed{seed}={out}"], cwd=ROOT)
    info = {"name": name, "learner": learner, "flags": COMMON + flags, "seed": seed,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "wall_seconds": time.perf_counter() - t0}
    saved = json.loads(result.read_text()) if result.exists() else {}
    if "config" in saved:  # the run directory, relative to the repository
        saved["config"]["out"] = str(out.relative_to(ROOT))
    result.write_text(json.dumps({**saved, **info}, indent=1) + "\n")
    return {**saved, **info}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="+", default=None)
    ap.add_argument("--tune", action="store_true", help="run TUNING on seed 100 into preference_lm_tune.jsonl")
    ap.add_argument("--record-tuning", action="store_true", help="only rewrite preference_lm_tune.jsonl from the runs")
    ap.add_argument("--tag", default="", help="tuning: appended to each run's name")
    ap.add_argument("--extra", default="", help="tuning: flags appended to each entry's (they override)")
    args = ap.parse_args()
    if args.record_tuning:
        record_tuning(ROOT / "runs" / "preference_lm_tune")
        return
    table = TUNING if args.tune else PROTOCOL
    seeds = [100] if args.tune else args.seeds
    prefix = "preference_lm_tune" if args.tune else "preference_lm"
    out_root = ROOT / "runs" / prefix
    out_root.mkdir(parents=True, exist_ok=True)
    todo = [(n + args.tag, table[n][0], table[n][1] + args.extra.split(), s, out_root, prefix)
            for n in (args.only or table) for s in seeds]
    with ThreadPoolExecutor(args.jobs) as ex:
        for r in ex.map(lambda a: run_one(*a), todo):
            print(json.dumps({k: r.get(k) for k in ("name", "seed", "cpu_seconds", "wall_seconds", "failed")}),
                  flush=True)
    if args.tune:
        record_tuning(out_root)


def record_tuning(out_root: Path) -> None:
    """preference_lm_tune.jsonl: one line per tuning run ever started (finished or stopped early),
    with its settings and every evaluation it reached."""
    lines = []
    for run in sorted(p for p in out_root.iterdir() if (p / "run.json").exists()):
        cfg = json.loads((run / "run.json").read_text())
        cfg["config"]["out"] = str(run.relative_to(ROOT))
        rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines())) if (run / "metrics.csv").exists() else []
        evals = [{k: round(float(r[k]), 4) for k in ("step", "eval/exploitability_last", "eval/exploitability_avg",
                                                    *(f"eval/class_{c}" for c in ("describe", "feeling", "routine", "other")))}
                 for r in rows if r.get("eval/exploitability_last")]
        steps = max((int(float(r["step"])) for r in rows), default=0)
        lines.append(json.dumps({"run": run.name, "algorithm": cfg["algorithm"], "config": cfg["config"],
                                 "finished": (run / "final").exists(), "steps_done": steps, "evals": evals}))
    (HERE / "preference_lm_tune.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
