"""The SPIRAL runs behind assets/results/spiral_* : each name's exact `spkit train spiral` flags,
run (one process per seed, one thread each) and copied here with `collect.py`.

    python assets/results/spiral_runs.py kuhn_mmd --out runs/results
    python assets/results/spiral_runs.py kuhn_mmd --collect-only --out runs/results   # stopped early

The names (NAME_seedS.csv / .json):
  spiral_kuhn_seed{0,1,2}       the README's main job, 730 updates (written before this script;
                                its flags are `kuhn` below, with --steps 730 --eval-games 64)
  spiral_kuhn_mmd_seed{0,1,2}   + entropy half-life, magnet to the average policy, linear
                                averaging; a 10 CPU-minute budget per run
  spiral_kuhn_ref_seed{0,1,2}   the entropy bonus measured against the linear average policy
                                (--entropy-ref average: MMD's moving magnet); 10 CPU-minutes per run
  spiral_kuhn_ref_uniform_seed{0,1,2}  the same against the uniform average (a slower magnet);
                                10 CPU-minutes per run
  spiral_kuhn_ref_uniform_b03_seed{0,1,2}  the same at entropy coefficient 0.3 (chosen on dev seed
                                100 over 0.2 and 0.4: spiral_kuhn_tried.jsonl); 10 CPU-minutes per run
                                (the README's main command since)
  spiral_ttt_*_seed100          TicTacToe self-play settings tried for defence, on dev seed 100
                                (format SFT first; 20 CPU-minutes each unless stopped: their CSVs
                                say how far they got); spiral_tictactoe_defence.py analyses them
`--collect-only` copies what the run directories hold (a run stopped before its budget, e.g. by a
deadline, is collected as far as it got: its CSV says how many updates and CPU seconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from collect import collect  # noqa: E402

RUNS = {
    "kuhn": ("--games kuhn_poker --entropy-coef 0.2 --lr 1e-5 --eval-every 25 --threads 1", (0, 1, 2)),
    "kuhn_mmd": ("--games kuhn_poker --entropy-coef 0.2 --entropy-half-life 50 --magnet-coef 2 --avg-weights linear "
                 "--lr 1e-5 --steps 100000 --max-cpu-minutes 10 --eval-every 25 --eval-games 0 --threads 1 "
                 "--checkpoint-every 25", (0, 1, 2)),
    "kuhn_ref": ("--games kuhn_poker --entropy-coef 0.2 --entropy-ref average --avg-weights linear --lr 1e-5 "
                 "--steps 100000 --max-cpu-minutes 10 --eval-every 25 --eval-games 0 --threads 1 "
                 "--checkpoint-every 25", (0, 1, 2)),
    "kuhn_ref_uniform": ("--games kuhn_poker --entropy-coef 0.2 --entropy-ref average --avg-weights uniform "
                         "--lr 1e-5 --steps 100000 --max-cpu-minutes 10 --eval-every 25 --eval-games 0 "
                         "--threads 1 --checkpoint-every 25", (0, 1, 2)),
    "kuhn_ref_uniform_b03": ("--games kuhn_poker --entropy-coef 0.3 --entropy-ref average --avg-weights uniform "
                             "--lr 1e-5 --steps 100000 --max-cpu-minutes 10 --eval-every 25 --eval-games 0 "
                             "--threads 1 --checkpoint-every 25", (0, 1, 2)),
    **{f"ttt_{name}": ("--games tictactoe --sft-steps 30 --sft-lr 1e-3 --episodes 128 --steps 100000 "
                       f"--max-cpu-minutes 20 --eval-games 64 --threads 1 {flags}", (100,))
       for name, flags in {
           "lr3e-4": "--lr 3e-4 --entropy-coef 0.05 --eval-every 10 --checkpoint-every 10",
           "lr1e-4": "--lr 1e-4 --entropy-coef 0.05 --eval-every 10 --checkpoint-every 10",
           "ent0.2": "--lr 1e-4 --entropy-coef 0.2 --eval-every 20 --checkpoint-every 20",
           "pool": "--lr 1e-4 --entropy-coef 0.05 --pool-size 10 --pool-every 10 --pool-frac 0.5 "
                   "--eval-every 20 --checkpoint-every 20",
       }.items()},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="+", choices=sorted(RUNS))
    ap.add_argument("--out", default="runs/results")
    ap.add_argument("--collect-only", action="store_true")
    args = ap.parse_args()
    jobs = []
    for name in args.names:
        flags, seeds = RUNS[name]
        for seed in seeds:
            out = Path(args.out) / f"{name}_seed{seed}"
            cmd = [sys.executable, "-m", "spkit", "train", "spiral", *flags.split(), "--seed", str(seed),
                   "--out", str(out), "--overwrite"]
            jobs.append((f"spiral_{name}_seed{seed}", out, None if args.collect_only else subprocess.Popen(cmd)))
    for tag, out, proc in jobs:
        if proc is not None and proc.wait() != 0:
            sys.exit(f"{tag}: the run failed")
        collect(tag, out, all_rows=False)
        info_path = Path(__file__).parent / f"{tag}.json"  # the run dir as named here, not where it was linked from
        info = json.loads(info_path.read_text())
        info["config"]["out"] = str(out)
        info_path.write_text(json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
