"""The learning-to-self-correct comparison of lesson 09: each method at one sample budget, seeds 0-2.

    python assets/results/correction.py [--budget 1024] [--seeds 0 1 2] [--jobs 1] [--only sft_corrections score]
    python assets/results/correction.py --table         # the README's table from the result files

Every method starts from the shared warm-up of `spkit.rl.correction` (`--warmup-steps`). The
warm-up is a function of the seed alone — the same problems, samples and updates whichever
trainer runs it (tested: identical weights) — so it runs once per seed, as a run of warm-up steps
only (runs/correction/warmup_seedS, results correction_warmup_seedS.*), and each method then
continues from its final model with `--warmup-steps 0` and the rest of the budget: the same as
running the warm-up inside every method's run (the method's first step resets Adam and takes
π_ref from the warmed-up model either way), at a third of the CPU. The budget counts the
warm-up's completions: a method draws BUDGET − (warm-up completions).

Runs `spkit train METHOD --max-samples B --seed S --threads 1` for each protocol entry below
(`--jobs` at a time, one torch thread each), into runs/correction/NAME_seedS, then copies each
run's metrics into assets/results/correction_NAME_seedS.{csv,json} (`collect.py --all-rows`) and
adds the run's CPU time (user + sys of the training process, `os.wait4`) to the JSON, with the
warm-up's completions and CPU time: the machine is shared, so wall time alone says little. A
finished run is not run again (delete its directory to redo it).

The x-axis every method shares is completions drawn (`train/samples` plus the warm-up's: both
attempts, every candidate and refinement). The held-out numbers are `spkit eval --tasks
spkit_arith_correct` on all 400 problems, at the start (the warmed-up model) and at the end of
each run. Settings: each method's defaults except the flags below; the warm-up's length and the
settings tried on the dev split (seed 100, `correction_dev.py`) are in correction_tried.jsonl.
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

from spkit.rl import correction as C

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

# name -> (algorithm, extra flags)
PROTOCOL: dict[str, tuple[str, list[str]]] = {
    "sft_corrections": ("sft_corrections", []),
    "score": ("score", []),
    "rise": ("rise", ["--lr", "2e-5"]),  # chosen on dev (correction_tried.jsonl); the default 1e-4 ran too
    "self_refine": ("self_refine", ["--meta-steps", "2"]),  # a split of its few steps, not a search result
    "evolve": ("evolve", []),
}


def _spkit_train(algo: str, flags: list[str], out: Path, log: Path) -> tuple[int, float]:
    """(exit code, CPU seconds) of one `spkit train` process."""
    cmd = [sys.executable, "-m", "spkit", "train", algo, *flags, "--eval-every", "0", "--threads", "1",
           "--no-tensorboard", "--out", str(out), "--overwrite"]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


def _collect(key: str, out: Path, **extra) -> dict:
    subprocess.check_call([sys.executable, str(HERE / "collect.py"), "--all-rows", f"{key}={out}"], cwd=ROOT)
    meta = json.loads((HERE / f"{key}.json").read_text()) | extra
    (HERE / f"{key}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def warmup_samples(steps: int) -> int:
    """Completions the shared warm-up draws: `problems` × `warmup_k` per step (the defaults)."""
    cfg = C.CorrectionConfig()
    return steps * cfg.problems * cfg.warmup_k


def run_warmup(seed: int, steps: int, out_root: Path) -> tuple[Path, dict]:
    """The seed's warm-up (a run whose steps are all warm-up steps); (its final model, its JSON)."""
    out, key = out_root / f"warmup_seed{seed}", f"correction_warmup_seed{seed}"
    if not (out / "final" / "config.json").exists():
        rc, cpu = _spkit_train("sft_corrections", ["--warmup-steps", str(steps), "--steps", str(steps),
                                                   "--seed", str(seed)], out, out_root / f"warmup_seed{seed}.log")
        if rc:
            raise SystemExit(f"warm-up seed {seed}: FAILED (exit {rc})")
        _collect(key, out, cpu_seconds=cpu, warmup_steps=steps)
    return out / "final", json.loads((HERE / f"{key}.json").read_text())


def run_one(name: str, seed: int, budget: int, warmup: int, out_root: Path) -> str:
    algo, flags = PROTOCOL[name]
    out = out_root / f"{name}_seed{seed}"
    if (out / "final" / "config.json").exists():
        return f"{name} seed {seed}: done before"
    start, w = run_warmup(seed, warmup, out_root) if warmup else (None, {"cpu_seconds": 0.0})
    drawn = warmup_samples(warmup)
    t0 = time.perf_counter()
    rc, cpu = _spkit_train(algo, [*flags, *(["--model", str(start)] if start else []), "--warmup-steps", "0",
                                  "--max-samples", str(budget - drawn), "--steps", "100000", "--seed", str(seed)],
                           out, out_root / f"{name}_seed{seed}.log")
    if rc:
        return f"{name} seed {seed}: FAILED (exit {rc}), see {out_root / f'{name}_seed{seed}.log'}"
    meta = _collect(f"correction_{name}_seed{seed}", out, cpu_seconds=cpu, budget=budget, warmup_steps=warmup,
                    warmup_samples=drawn, warmup_cpu_seconds=w["cpu_seconds"])
    return (f"{name} seed {seed}: {(time.perf_counter() - t0) / 60:.1f} min wall, {meta['cpu_seconds'] / 60:.1f} "
            f"CPU-min (+ warm-up {w['cpu_seconds'] / 60:.1f})")


def table() -> str:
    """The README's table from the result files present: spkit-tiny, the warm-up, each method (final
    held-out metrics, mean ± sd over seeds, in points), completions and CPU-min per run."""
    import math

    import numpy as np

    from spkit.run.metrics import read_metrics
    from spkit.tasks import correction as T

    def rows(csv):
        return [r for r in read_metrics(csv) if math.isfinite(r.get("eval/accuracy_t2", math.nan))]

    keys = [*T.METRICS, "copied"]
    head = ["| model | seeds | completions | " + " | ".join(T.METRIC_NAMES.get(k, k) for k in keys)
            + " | CPU-min / run |", "|---|---|---:|" + "---:|" * (len(keys) + 1)]
    out = []
    for name in ["warmup", *PROTOCOL]:
        csvs = sorted(HERE.glob(f"correction_{name}_seed*.csv"))
        if not csvs:
            continue
        runs = [(rows(c), json.loads(c.with_suffix(".json").read_text())) for c in csvs]
        seeds = "/".join(c.stem.rsplit("seed", 1)[1] for c in csvs)
        if name == "warmup":
            first = runs[0][0][0]
            out.append("| spkit-tiny | – | 0 | " + " | ".join(f"{100 * first['eval/' + k]:.1f}" for k in keys) + " | – |")
        drawn = int(runs[0][0][-1]["train/samples"] + runs[0][1].get("warmup_samples", 0))
        cpu = [(i["cpu_seconds"] + i.get("warmup_cpu_seconds", 0.0)) / 60 for _, i in runs]
        cell = [f"{100 * np.mean([r[-1]['eval/' + k] for r, _ in runs]):.1f} ± "
                f"{100 * np.std([r[-1]['eval/' + k] for r, _ in runs]):.1f}" for k in keys]
        label = "warm-up" if name == "warmup" else f"warm-up → {name}"
        out.append(f"| {label} | {seeds} | {drawn} | " + " | ".join(cell) + f" | {min(cpu):.1f}–{max(cpu):.1f} |")
        if name != "warmup":
            per_seed = ", ".join(f"Δ {100 * r[-1]['eval/delta_t1_t2']:+.1f} (i→c {100 * r[-1]['eval/delta_i2c']:.1f}, "
                                 f"c→i {100 * r[-1]['eval/delta_c2i']:.1f})" for r, _ in runs)
            out.append(f"|  ↳ per seed | {per_seed} |" + " |" * (len(keys) + 2))
    return "\n".join(head + out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=1024, help="completions drawn per run, the warm-up's included")
    ap.add_argument("--warmup", type=int, default=C.CorrectionConfig().warmup_steps, help="warm-up steps")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--only", nargs="+", choices=list(PROTOCOL), default=list(PROTOCOL))
    ap.add_argument("--out", default="runs/correction")
    ap.add_argument("--table", action="store_true", help="print the table of the result files present, run nothing")
    args = ap.parse_args()
    if args.table:
        print(table())
        return
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    jobs = [(n, s) for s in args.seeds for n in args.only]  # every method at a seed before the next seed
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda job: run_one(*job, args.budget, args.warmup, out_root), jobs):
            print(line, flush=True)


if __name__ == "__main__":
    main()
