"""Draw the README's SPIRAL figure from the logs in assets/results (nothing here is typed in by hand).

    python assets/figures/make_spiral.py

Left: Kuhn Poker, exact NashConv of the average policy against updates — before (the README's
main job, `spiral_kuhn_seed*`) and after: entropy half-life + magnet to the average + linear
averaging (`spiral_kuhn_mmd_seed*`, stopped early), and the entropy bonus measured against the
linear average policy (`spiral_kuhn_ref_seed*`, 10 CPU-minutes), with tabular CFR after 100
iterations and the bias of the entropy bonus (the logit QRE at β = 0.2, `spkit.solvers.qre`). Middle: TicTacToe
self-play (`spiral_tictactoe`), sampled draws vs perfect play and losses vs random, with the
exact P(not losing) vs perfect play per seat of spkit-tiny and of the trained model
(`spiral_tictactoe_analysis.json`). Right: the exact probability mass on value-keeping moves at
the model's k-th move against perfect play, before and after.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from spkit.games import load_game  # noqa: E402
from spkit.models import ASSETS  # noqa: E402
from spkit.run.metrics import read_metrics  # noqa: E402
from spkit.solvers.cfr import CFRSolver  # noqa: E402
from spkit.solvers.exploitability import nash_conv  # noqa: E402
from spkit.solvers.qre import logit_qre  # noqa: E402

RESULTS = ASSETS / "results"
AVG = "eval/kuhn_poker/nashconv_avg"


def series(rows, key):
    pts = [(r["step"], r[key]) for r in rows if math.isfinite(r.get(key, math.nan))]
    return [p[0] for p in pts], [p[1] for p in pts]


def kuhn_runs(stem: str) -> dict[int, list[dict]]:
    return {s: read_metrics(p) for s in range(3) if (p := RESULTS / f"{stem}_seed{s}.csv").exists()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("spiral.png")))
    args = ap.parse_args()
    kuhn = load_game("kuhn_poker")
    cfr = CFRSolver(kuhn)
    cfr.iterate(100)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4))
    ax = axes[0]
    after = {**{("mmd", s): r for s, r in kuhn_runs("spiral_kuhn_mmd").items()},
             **{("ref", s): r for s, r in kuhn_runs("spiral_kuhn_ref").items()}}
    horizon = max((series(r, AVG)[0][-1] for r in after.values()), default=730)
    for stem, label, color in (("spiral_kuhn", "before: entropy 0.2", "tab:gray"),
                               ("spiral_kuhn_mmd", "+ half-life, magnet, linear avg (stopped early)", "tab:red"),
                               ("spiral_kuhn_ref", "bonus against the linear average (--entropy-ref average)",
                                "tab:blue")):
        for seed, rows in kuhn_runs(stem).items():
            x, y = series(rows, AVG)
            keep = [i for i, s in enumerate(x) if s <= horizon]
            ax.plot([x[i] for i in keep], [y[i] for i in keep], color=color, lw=1.5, alpha=0.8,
                    label=label if seed == 0 else None)
    ax.axhline(nash_conv(kuhn, cfr.average_policy()), ls="--", c="k", lw=1, label="tabular CFR, 100 iterations")
    ax.axhline(nash_conv(kuhn, logit_qre(kuhn, 0.2)), ls="-.", c="tab:gray", lw=1,
               label="bias of the entropy bonus 0.2 (logit QRE)")
    ax.axhline(0.05, ls=":", c="tab:red", lw=1, label="target 0.05")
    ax.set(xlabel="update (256 games each)", ylabel="NashConv of the average policy (exact)",
           title="SPIRAL on Kuhn Poker, spkit-tiny, seeds 0-2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)

    rows = read_metrics(RESULTS / "spiral_tictactoe.csv")
    info = json.loads((RESULTS / "spiral_tictactoe.json").read_text())
    exact = json.loads((RESULTS / "spiral_tictactoe_analysis.json").read_text())
    start, trained = exact["spkit-tiny"], exact[next(k for k in exact if k != "spkit-tiny")]
    ax = axes[1]
    for key, label in (("eval/tictactoe/draw_vs_perfect", "draws vs perfect"),
                       ("eval/tictactoe/loss_vs_random", "losses vs random"),
                       ("eval/tictactoe/invalid_vs_random", "games lost by an invalid move vs random")):
        ax.plot(*series(rows, key), marker="o", ms=3, label=f"{label} ({info['config']['eval_games']} games)")
    for seat, marker in ((0, "s"), (1, "^")):
        key = f"eval/tictactoe/exact_not_lose_vs_perfect/{seat}"
        ax.plot([0, info["updates"]], [start[key], trained[key]], marker, ls=":", c="k",
                label=f"P(not lose) vs perfect as {'XO'[seat]}, exact")
    ax.axhline(0.5, ls=":", c="tab:blue", lw=1, label="target: draws vs perfect 0.5")
    ax.axhline(0.2, ls=":", c="tab:orange", lw=1, label="target: losses vs random 0.2")
    ax.set(xlabel="update (64 games each)", ylim=(-0.02, 1.02), title="SPIRAL self-play on TicTacToe, spkit-tiny")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[2]
    for res, style, label in ((start, "--", "spkit-tiny"), (trained, "-", f"after {info['updates']} updates")):
        for seat, color in ((0, "tab:green"), (1, "tab:purple")):
            ks = sorted(int(k.rsplit("move", 1)[1]) for k in res if k.startswith(f"eval/tictactoe/optimal_mass/{seat}/"))
            ax.plot(ks, [res[f"eval/tictactoe/optimal_mass/{seat}/move{k}"] for k in ks], style, marker="o",
                    color=color, label=f"as {'XO'[seat]}, {label}")
    ax.set(xlabel="the model's k-th move", ylabel="mass on value-keeping moves", ylim=(-0.02, 1.02),
           title="TicTacToe vs perfect play: where the game is given away (exact)")
    ax.set_xticks(range(1, 6))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
