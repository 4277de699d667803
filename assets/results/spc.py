"""SPC on spkit_steps for lesson 08 and the README: settings chosen on dev, then 3 seeds held out.

    python assets/results/spc.py dev [--budget 1024] [--jobs 2] [--settings NAME ...]  # SETTINGS entries, seed 100
    python assets/results/spc.py heldout [--budget 1024] [--seeds 0 1 2] [--jobs 3]
    python assets/results/spc.py probe [--settings NAME ...]   # what the seeded dev critics learned

`dev` trains each entry of SETTINGS with seed 100 and scores it on the dev split (100 records
per subset from the arithmetic dev bucket, never trained on and never held out), appending one
line per setting to spc_dev.jsonl (every setting tried is kept there). `heldout` trains the
setting with the best dev F1 (ties: the first listed, the paper's) with each seed and scores it
on the 300 held-out spkit_steps items — the `spkit eval --tasks spkit_steps` number — into
spc_seedS.{csv,json} (`collect.py --all-rows`); spc_paper_seedS.{csv,json} are the same
protocol's runs of the paper's settings from before the seed stage existed (then the dev choice),
kept. spc_start.json is spkit-tiny's own score (the
F1 every run starts from). Each run's CPU time (user + sys of its process) is recorded, since
the machine is shared: wall time says little. A finished run is not run again. `probe` looks
inside the dev runs with a seed stage (spc_probe.json): how their greedy critiques judge steps,
and for verdict critiques whether P(" no") separates wrong steps from right ones.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
DEV_SEED = 100

# name -> extra flags of `spkit train spc` (the paper's settings first)
SETTINGS: dict[str, list[str]] = {
    "paper": [],  # A = ±1, λ_SFT = 0.15 on round 0's records
    # GRPO's group baseline for the critic (no push on records whose K critiques all agree) and
    # the SFT term on every round's records
    "group_sft_all": ["--advantage", "group", "--sft-rounds", "1000000"],
    # the paper's seed stage: the critic SFT'd on 960 verified critiques of train-split records
    # (a checker redoes each step's arithmetic) before the games; D_0 is then those critiques
    "seed60": ["--seed-steps", "60", "--seed-batch", "16"],
    # the seed60 critic wrote frequent numbers and "ok" everywhere: verdict-only critiques (one
    # token per step, so the loss is on the judgements) and a longer seed stage (1,600 critiques)
    "seed100_verdict": ["--seed-steps", "100", "--seed-batch", "16", "--seed-critique", "verdict"],
    # seed100_verdict's critic said "good" to every step (probe: P(no) the same on wrong and right
    # steps): twice the seed stage (3,200 critiques), to see whether more data separates them
    "seed200_verdict": ["--seed-steps", "200", "--seed-batch", "16", "--seed-critique", "verdict"],
}


def cpu_run(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """(exit code, CPU seconds (user + sys), wall seconds) of one child process."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, time.perf_counter() - t0


def train_cmd(flags: list[str], seed: int, budget: int, out: Path, split: str) -> list[str]:
    return [sys.executable, "-m", "spkit", "train", "spc", *flags, "--max-samples", str(budget), "--steps", "100000",
            "--eval-every", "0", "--eval-split", split, "--seed", str(seed), "--threads", "1", "--no-tensorboard",
            "--no-plot", "--out", str(out), "--overwrite"]


def last_eval(run_dir: Path) -> dict[str, float]:
    from spkit.run.metrics import read_metrics

    rows = [r for r in read_metrics(run_dir / "metrics.csv") if math.isfinite(r.get("eval/f1", math.nan))]
    seed = [r for r in read_metrics(run_dir / "metrics.csv") if math.isfinite(r.get("seed/f1", math.nan))]
    return {**({"seed_stage": {k: v for k, v in seed[-1].items() if k.startswith("seed/")}} if seed else {}),
            "before": {k: v for k, v in rows[0].items() if k.startswith("eval/")},
            "after": {k: v for k, v in rows[-1].items() if k.startswith("eval/")}, "step": rows[-1]["step"],
            "samples": rows[-1].get("train/samples")}


def dev_one(name: str, budget: int, out_root: Path) -> str:
    out = out_root / f"dev_{name}"
    rc, cpu, wall = cpu_run(train_cmd(SETTINGS[name], DEV_SEED, budget, out, "dev"), out_root / f"dev_{name}.log")
    if rc:
        return f"dev {name}: FAILED (exit {rc})"
    ev = last_eval(out)
    line = {"setting": name, "flags": SETTINGS[name], "seed": DEV_SEED, "budget": budget, "cpu_seconds": round(cpu, 1),
            "wall_seconds": round(wall, 1), **{f"dev_{k}": v for k, v in ev.items()}}
    with open(HERE / "spc_dev.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
    return f"dev {name}: F1 {ev['after']['eval/f1']:.3f} ({cpu / 60:.1f} CPU-min)"


def chosen(budget: int) -> str:
    """The setting with the best dev F1 at this budget (ties: the first in SETTINGS)."""
    lines = [json.loads(x) for x in (HERE / "spc_dev.jsonl").read_text().splitlines() if x.strip()]
    f1 = {x["setting"]: x["dev_after"]["eval/f1"] for x in lines if x["budget"] == budget}
    if not f1:
        raise SystemExit(f"no dev run at budget {budget}: run `spc.py dev --budget {budget}` first")
    return max((n for n in SETTINGS if n in f1), key=lambda n: (f1[n], -list(SETTINGS).index(n)))


def heldout_one(name: str, seed: int, budget: int, out_root: Path) -> str:
    out = out_root / f"{name}_seed{seed}"
    if (out / "final" / "config.json").exists():
        return f"{name} seed {seed}: done before"
    rc, cpu, wall = cpu_run(train_cmd(SETTINGS[name], seed, budget, out, "heldout"), out_root / f"{name}_seed{seed}.log")
    if rc:
        return f"{name} seed {seed}: FAILED (exit {rc})"
    subprocess.check_call([sys.executable, str(HERE / "collect.py"), "--all-rows", f"spc_seed{seed}={out}"], cwd=ROOT)
    meta = json.loads((HERE / f"spc_seed{seed}.json").read_text())
    meta.update({"setting": name, "flags": SETTINGS[name], "budget": budget, "cpu_seconds": round(cpu, 1),
                 "wall_seconds_measured": round(wall, 1)})
    (HERE / f"spc_seed{seed}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return f"{name} seed {seed}: F1 {last_eval(out)['after']['eval/f1']:.3f} ({cpu / 60:.1f} CPU-min)"


def measure_start() -> None:
    """spc_start.json: spkit-tiny's greedy scores on the held-out and the dev records."""
    path = HERE / "spc_start.json"
    if path.exists():
        return
    import torch

    from spkit.models import load_model
    from spkit.rl import critic as C

    torch.set_num_threads(1)
    model, tok = load_model("spkit-tiny")
    t0 = time.process_time()
    res = {**C.evaluate_critic(model, tok), **C.evaluate_critic(model, tok, C.dev_records(C.PER_SUBSET), prefix="dev")}
    res["cpu_seconds"] = round(time.process_time() - t0, 1)
    path.write_text(json.dumps(res, indent=1) + "\n")


def verdict_probe(model, tok, records: list[dict]) -> dict[str, float]:
    """Teacher-forced, at each step's verdict position of a verdict-format critique (the steps
    before it judged " good"): P(" no") / (P(" no") + P(" good")), on wrong and on right steps
    (up to a record's first wrong one), and the AUC of that score (0.5: no separation)."""
    import torch

    from spkit.tasks import steps

    no, good = (tok(w, add_special_tokens=False)["input_ids"][0] for w in (" no", " good"))
    wrong, right = [], []
    for r in records:
        ids = tok(steps.critic_prompt(r), add_special_tokens=False)["input_ids"]
        for i, para in enumerate(r["steps"]):
            with torch.no_grad():
                p = torch.softmax(model(torch.tensor([ids])).logits[0, -1], -1)
            bad = steps.recheck_critique({"steps": [para]})[1] == 0
            (wrong if bad else right).append((p[no] / (p[no] + p[good])).item())
            if bad:
                break
            ids = ids + tok(" good" if i == 0 else ", good", add_special_tokens=False)["input_ids"]
    auc = sum((w > x) + 0.5 * (w == x) for w in wrong for x in right) / (len(wrong) * len(right))
    return {"wrong_steps": len(wrong), "right_steps": len(right), "p_no_wrong": sum(wrong) / len(wrong),
            "p_no_right": sum(right) / len(right), "auc": auc}


def greedy_stats(texts: list[str], records: list[dict]) -> dict[str, float]:
    """How greedy critiques judge steps: the share with any "no", and (recheck format) the share of
    redone numbers equal to the step's true result and to the result it writes."""
    import re

    from spkit.tasks import steps

    nums = [(m, r["steps"][i]) for t, r in zip(texts, records, strict=True)
            for i, m in enumerate(re.findall(r"(-?\d+|\?) (?:ok|no)", t.split("\\boxed")[0])[:len(r["steps"])])]
    true = [steps.recheck_critique({"steps": [p]})[0].split()[0] for _, p in nums]
    written = [p.split("\n")[0].split(" = ")[1] for _, p in nums]
    return {"says_no": sum(" no" in t for t in texts) / len(texts),
            **({"numbers_true": sum(n == x for (n, _), x in zip(nums, true, strict=True)) / len(nums),
                "numbers_written": sum(n == x for (n, _), x in zip(nums, written, strict=True)) / len(nums)}
               if nums else {})}


def probe(names: list[str], out_root: Path) -> None:
    """spc_probe.json: what each dev run's critic learned (40 dev records per subset; its final
    model, and the end of its seed stage where a checkpoint was kept there), with CPU time."""
    import torch

    from spkit.models import load_model
    from spkit.rl import critic as C

    torch.set_num_threads(1)
    path = HERE / "spc_probe.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    records = C.dev_records(40)
    for name in names:
        run = out_root / f"dev_{name}"
        cfg = json.loads((run / "run.json").read_text())["config"]
        res[name] = {}
        for where, d in [("seed_stage", run / "checkpoints" / f"step_{cfg['seed_steps']:07d}"), ("final", run / "final")]:
            if not (d / "config.json").exists():
                continue
            c0 = time.process_time()
            model, tok = load_model(str(d))
            _, texts = C.critic_predictions(model, tok, records)
            r = {**greedy_stats(texts, records), "examples": texts[:3]}
            if cfg.get("seed_critique", "recheck") == "verdict":  # runs from before the flag: recheck
                r |= verdict_probe(model, tok, records)
            res[name][where] = {**r, "cpu_seconds": round(time.process_time() - c0, 1)}
            print(name, where, {k: v for k, v in r.items() if k != "examples"}, flush=True)
    path.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["dev", "heldout", "start", "probe"])
    ap.add_argument("--budget", type=int, default=1024, help="completions drawn per run (rewrites, rollouts, critiques)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--out", default="runs/spc")
    ap.add_argument("--setting", choices=list(SETTINGS), default=None,
                    help="heldout: train this setting instead of the dev choice (recorded in spc_seedS.json)")
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=None,
                    help="dev: only these entries of SETTINGS (default: all)")
    args = ap.parse_args()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    if args.phase == "start":
        measure_start()
        return
    if args.phase == "probe":
        probe(args.settings or [n for n in SETTINGS if "--seed-steps" in SETTINGS[n]], out_root)
        return
    if args.phase == "dev":
        jobs = [lambda n=n: dev_one(n, args.budget, out_root) for n in args.settings or SETTINGS]
    else:
        name = args.setting or chosen(args.budget)
        jobs = [lambda s=s: heldout_one(name, s, args.budget, out_root) for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: job(), jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
