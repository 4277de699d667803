"""Copy the evaluations of finished runs into assets/results/, where lessons and the README read
them (runs longer than a reader should wait for; nothing here is typed in by hand).

    python assets/results/collect.py spiral_kuhn_seed0=runs/s0 spiral_tictactoe=runs/ttt ...
    python assets/results/collect.py --all-rows reasoning_sec_seed0=runs/reasoning/sec_seed0

For each NAME=RUN_DIR: NAME.csv holds the run's evaluation rows (every `eval/…` column, plus the
step, `train/wall_seconds`, `train/cpu_seconds`, `train/invalid_rate` and `train/samples`), NAME.json the run's config
(`run.json`), its number of updates and its wall time. With `--all-rows` NAME.csv is the whole
metrics log (every row and column but the losses), for figures of what happened between
evaluations (B-STaR's balance score, SEC's curriculum, RLSP's answer lengths).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

from spkit.run.metrics import read_metrics

HERE = Path(__file__).parent
KEEP = ("step", "train/wall_seconds", "train/cpu_seconds", "train/invalid_rate", "train/samples")


def collect(name: str, run_dir: Path, all_rows: bool = False) -> None:
    rows = read_metrics(run_dir / "metrics.csv")
    evals = [r for r in rows if any(k.startswith("eval/") and math.isfinite(v) for k, v in r.items())]
    keys = [k for k in rows[0] if k in KEEP] + sorted({k for r in evals for k in r if k.startswith("eval/")})
    if all_rows:
        evals = rows
        keys += sorted({k for r in rows for k in r if k not in keys and not k.startswith("losses/")})
    with open(HERE / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: (r[k] if k in r and math.isfinite(r[k]) else "") for k in keys} for r in evals)
    run = json.loads((run_dir / "run.json").read_text())
    wall = max((r["train/wall_seconds"] for r in rows if math.isfinite(r.get("train/wall_seconds", math.nan))),
               default=math.nan)
    info = {**run, "updates": int(rows[-1]["step"]), "wall_minutes": round(wall / 60, 2)}
    (HERE / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"{name}: {len(evals)} {'rows' if all_rows else 'evaluations'}, {info['updates']} updates, "
          f"{info['wall_minutes']} min")


if __name__ == "__main__":
    args = sys.argv[1:]
    every = "--all-rows" in args
    args = [a for a in args if a != "--all-rows"]
    if not args or not all("=" in a for a in args):
        sys.exit(__doc__)
    for arg in args:
        name, path = arg.split("=", 1)
        collect(name, Path(path), every)
