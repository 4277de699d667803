"""Exact play of SPIRAL TicTacToe models against perfect play (`spkit.solvers.minimax.mass_on_optimal`):
per seat, P(not losing) and the probability mass on value-keeping moves at the model's k-th move.

    python assets/results/spiral_tictactoe_analysis.py spkit-tiny runs/spiral_tictactoe/final

writes spiral_tictactoe_analysis.json here: one entry per model (the name or directory as
given), with the CPU seconds the analysis took. `runs/spiral_tictactoe` is the run behind
spiral_tictactoe.csv (the command in its .json: `spkit train spiral --games tictactoe
--episodes 64 --steps 40`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from spkit.algos import spiral
from spkit.models import load_model


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    out = {}
    for name in sys.argv[1:]:
        model, tok = load_model(name, device="cpu")
        t0 = time.process_time()
        out[name] = spiral.tictactoe_optimal_mass(model, tok) | {"cpu_seconds": time.process_time() - t0}
        print(name, {k.split("tictactoe/")[1]: round(v, 3) for k, v in out[name].items() if "tictactoe" in k})
    path = Path(__file__).with_name("spiral_tictactoe_analysis.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
