"""Draw the README's overview figure from measured runs (nothing here is typed in by hand).

    python assets/figures/make_overview.py --spiral runs/spiral --tictactoe runs/spiral_tictactoe

Panels: tabular CFR on Kuhn Poker (exact NashConv of the average policy); preference-game
learners on the non-uniform 3-cycle (exploitability, last vs average iterate); SPIRAL self-play
runs of spkit-tiny (their `metrics.csv`): the exact Kuhn Poker NashConv of the model (the
README's main command) and TicTacToe results against a random player and perfect play.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spkit.games import load_game  # noqa: E402
from spkit.games.preference_matrices import three_cycle  # noqa: E402
from spkit.run.metrics import read_metrics  # noqa: E402
from spkit.solvers.cfr import cfr_curve  # noqa: E402
from spkit.widgets.preference import compare_learners, plot_convergence  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spiral", default="runs/spiral", help="a `spkit train spiral` output dir (Kuhn Poker panel)")
    ap.add_argument("--tictactoe", default=None, help="a TicTacToe `spkit train spiral` output dir (default: --spiral)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("overview.png")))
    args = ap.parse_args()

    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    iters = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    curve = cfr_curve(load_game("kuhn_poker"), iters)
    axes[0].loglog(*zip(*curve, strict=True), marker="o", ms=3, label="CFR average policy")
    axes[0].axhline(11 / 12, ls="--", c="gray", lw=1, label="uniform random (11/12)")
    axes[0].set(xlabel="CFR iterations", ylabel="NashConv", title="Kuhn Poker: exact NashConv")
    axes[0].legend(fontsize=8)

    res = compare_learners(three_cycle(0.3, 0.1, 0.2), learners=("SPPO", "Nash-MP", "RLHF (BT)"))
    plot_convergence(res, title="Preference 3-cycle: exploitability", ax=axes[1])

    rows = read_metrics(Path(args.spiral) / "metrics.csv")
    for key, label in (("eval/kuhn_poker/nashconv_last", "last iterate"),
                       ("eval/kuhn_poker/nashconv_avg", "average policy")):
        pts = [(r["step"], r[key]) for r in rows if np.isfinite(r.get(key, np.nan))]
        axes[2].plot(*zip(*pts, strict=True), marker="o", ms=3, label=label)
    axes[2].axhline(11 / 12, ls="--", c="gray", lw=1, label="uniform random")
    axes[2].axhline(0.0, c="k", lw=0.8)
    axes[2].set(xlabel="self-play update", ylabel="NashConv (exact)",
                title="SPIRAL self-play of spkit-tiny: Kuhn Poker")
    axes[2].legend(fontsize=8)
    if args.tictactoe:  # otherwise the TicTacToe curves come from the same run
        rows = read_metrics(Path(args.tictactoe) / "metrics.csv")
    for key, label in (("eval/tictactoe/win_vs_random", "win"), ("eval/tictactoe/loss_vs_random", "loss"),
                       ("eval/tictactoe/draw_vs_perfect", "draw vs perfect play")):
        pts = [(r["step"], r[key]) for r in rows if np.isfinite(r.get(key, np.nan))]
        if pts:
            axes[3].plot(*zip(*pts, strict=True), marker="o", ms=3, label=label)
    axes[3].set(xlabel="self-play update", ylabel="rate", ylim=(0, 1),
                title="SPIRAL self-play of spkit-tiny: TicTacToe")
    axes[3].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
