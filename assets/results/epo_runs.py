"""EPO on Simple Negotiation (lesson 10, README): one frozen strategy-following actor, then the
strategy model trained over several seeds, and the settings tried on a dev seed.

    python assets/results/epo_runs.py --seeds 0 1 2                # the reported runs
    python assets/results/epo_runs.py --dev --lr 1e-4 3e-4          # dev seed 100, one run per lr

1. The actor (step 0a of `spkit.algos.epo`, built once with seed 0 and reused by every run via
   `--actor`, like the paper's fixed off-the-shelf actor): `ACTOR_STEPS` SFT steps of `ACTOR_BATCH`
   rows on the scripted strategy follower into runs/epo/actor; its CPU time goes to
   assets/results/epo_actor.json.
2. Each seed: `spkit train epo --actor runs/epo/actor --seed S FLAGS --threads 1` into
   runs/epo/epo_seedS, copied to assets/results/epo_seedS.{csv,json} (`collect.py --all-rows`) with
   the run's CPU time (user + system of the training process). Runs go one at a time.
3. `--dev`: the same protocol on seed 100 with each `--lr`; one line per run in
   assets/results/epo_tried.jsonl (the setting and the dev seed's final gains). The reported
   seeds use the setting chosen there (`FLAGS`). Nothing reported comes from seed 100.
A finished run is not run again (delete its directory to redo it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
ACTOR_STEPS, ACTOR_BATCH, ACTOR_LR = 120, 16, 1e-3
FLAGS = ["--steps", "3", "--games", "12", "--eval-every", "0", "--eval-games", "24", "--strategy-sft-steps", "20",
         "--sft-batch", "16", "--lr", "1e-5"]
DEV_SEED = 100


def build_actor(out: Path) -> None:
    """Step 0a once, in this process (its CPU time measured with getrusage)."""
    if (out / "config.json").exists():
        return
    import torch

    from spkit.algos import epo
    from spkit.models import load_model

    torch.set_num_threads(1)
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    cfg = epo.Config(seed=0, actor_sft_steps=ACTOR_STEPS, sft_batch=ACTOR_BATCH, sft_lr=ACTOR_LR, device="cpu")
    model, tok = load_model(cfg.model, device="cpu")
    stats = epo.build_actor(model, tok, cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    after = resource.getrusage(resource.RUSAGE_SELF)
    info = {"actor_sft_steps": ACTOR_STEPS, "sft_batch": ACTOR_BATCH, "sft_lr": ACTOR_LR, "seed": 0,
            "neutral_share": cfg.neutral_share, "sft_loss_mean": stats.get("sft"),
            "cpu_minutes": round((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / 60, 2),
            "wall_minutes": round((time.perf_counter() - t0) / 60, 2)}
    (HERE / "epo_actor.json").write_text(json.dumps(info, indent=1) + "\n")


def run_one(name: str, seed: int, extra: list[str], out_root: Path, actor: Path) -> tuple[str, dict]:
    out = out_root / name
    if not (out / "final" / "config.json").exists():
        cmd = [sys.executable, "-m", "spkit", "train", "epo", *FLAGS, *extra, "--actor", str(actor), "--seed", str(seed),
               "--threads", "1", "--no-tensorboard", "--out", str(out), "--overwrite"]
        log = out_root / f"{name}.log"
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"{name}: FAILED, see {log}")
        cpu = round((usage.ru_utime + usage.ru_stime) / 60, 2)
        (out / "cpu_minutes.txt").write_text(f"{cpu}\n")
    cpu = float((out / "cpu_minutes.txt").read_text())
    subprocess.check_call([sys.executable, str(HERE / "collect.py"), "--all-rows", f"{name}={out}"], cwd=ROOT)
    info_path = HERE / f"{name}.json"
    info = json.loads(info_path.read_text())
    info["cpu_minutes"] = cpu
    info["actor"] = "epo_actor.json"
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    return name, info


def final_gains(name: str) -> dict[str, float]:
    from spkit.run.metrics import read_metrics

    rows = [r for r in read_metrics(ROOT / "runs" / "epo" / name / "metrics.csv") if "eval/train/gain" in r]
    return {k: rows[-1][k] for k in ("eval/train/gain", "eval/heldout/gain", "eval/train/guided/return",
                                     "eval/heldout/guided/return")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--dev", action="store_true", help=f"tune on seed {DEV_SEED} (not reported)")
    ap.add_argument("--lr", nargs="+", default=["1e-4"], help="--dev: the learning rates to try")
    args = ap.parse_args()
    out_root = ROOT / "runs" / "epo"
    out_root.mkdir(parents=True, exist_ok=True)
    actor = out_root / "actor"
    build_actor(actor)
    if args.dev:
        for lr in args.lr:
            name = f"epo_dev_lr{lr}"
            _, info = run_one(name, DEV_SEED, ["--lr", lr], out_root, actor)
            line = {"seed": DEV_SEED, "lr": float(lr), "flags": FLAGS, "cpu_minutes": info["cpu_minutes"],
                    **final_gains(name)}
            with open(HERE / "epo_tried.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
            for p in (HERE / f"{name}.csv", HERE / f"{name}.json"):  # dev runs are not results
                p.unlink(missing_ok=True)
            print(line, flush=True)
        return
    for seed in args.seeds:
        name, info = run_one(f"epo_seed{seed}", seed, [], out_root, actor)
        print(f"{name}: {info['cpu_minutes']} CPU-min", flush=True)


if __name__ == "__main__":
    main()
