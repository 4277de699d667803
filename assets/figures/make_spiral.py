"""Draw the README's SPIRAL figure from the logs in assets/results (nothing here is typed in by hand).

    python assets/figures/make_spiral.py

Left: Kuhn Poker, exact NashConv of the average policy against updates — before (the old main
job, entropy bonus, `spiral_kuhn_seed*`) and after: entropy half-life + magnet + linear averaging
(`spiral_kuhn_mmd_seed*`, stopped early), the entropy bonus measured against the linear average
policy (`spiral_kuhn_ref_seed*`) and against the uniform average (`spiral_kuhn_ref_uniform_seed*`;
at coefficient 0.3 `spiral_kuhn_ref_uniform_b03_seed*`, the README's main command since), 10
CPU-minutes per run, with tabular CFR after 100 iterations
and the bias of the entropy bonus (the logit QRE at β = 0.2, `spkit.solvers.qre`). Middle:
TicTacToe self-play settings tried for defence on dev seed 100 (`spiral_ttt_*_seed100`), the
exact P(not losing) against perfect play as X and as O over updates. Right: why, from
`spiral_tictactoe_defence.json` — the share of the 82 opening positions whose most probable move
is the model's favourite cell, and the gradient coupling of O's positions, before and after.
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
             **{("ref", s): r for s, r in kuhn_runs("spiral_kuhn_ref").items()},
             **{("uni", s): r for s, r in kuhn_runs("spiral_kuhn_ref_uniform").items()},
             **{("b03", s): r for s, r in kuhn_runs("spiral_kuhn_ref_uniform_b03").items()}}
    horizon = max((series(r, AVG)[0][-1] for r in after.values()), default=730)
    for stem, label, color in (("spiral_kuhn", "before: entropy 0.2", "tab:gray"),
                               ("spiral_kuhn_mmd", "+ half-life, magnet, linear avg (stopped early)", "tab:red"),
                               ("spiral_kuhn_ref", "bonus against the linear average (--entropy-ref average)",
                                "tab:blue"),
                               ("spiral_kuhn_ref_uniform", "bonus against the uniform average", "tab:green"),
                               ("spiral_kuhn_ref_uniform_b03", "the same at coefficient 0.3 (main command)",
                                "tab:purple")):
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

    ax = axes[1]
    settings = sorted(RESULTS.glob("spiral_ttt_*_seed100.csv"))
    for path, color in zip(settings, plt.cm.tab10.colors, strict=False):
        rows = read_metrics(path)
        info = json.loads(path.with_suffix(".json").read_text())
        cpu = max((r.get("train/cpu_seconds", math.nan) for r in rows if math.isfinite(r.get("train/cpu_seconds", math.nan))),
                  default=math.nan) / 60
        name = path.stem.removeprefix("spiral_ttt_").removesuffix("_seed100")
        for seat, style in ((0, "-"), (1, "--")):
            ax.plot(*series(rows, f"eval/tictactoe/exact_not_lose_vs_perfect/{seat}"), style, color=color, lw=1.3,
                    label=f"{name} ({info['updates']} updates, {cpu:.0f} CPU-min)" if seat == 0 else None)
    ax.plot([], [], "k-", label="as X"), ax.plot([], [], "k--", label="as O")
    ax.axhline(0.5, ls=":", c="tab:red", lw=1, label="target: draws vs perfect 0.5")
    ax.set(xlabel="update (128 games each)", ylabel="P(not losing) vs perfect play (exact)", ylim=(-0.02, 1.02),
           title="TicTacToe self-play settings, spkit-tiny, dev seed 100")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[2]
    defence = json.loads((RESULTS / "spiral_tictactoe_defence.json").read_text())
    names = [n for n in defence if n != "format_sft"]  # models; format_sft: spkit-tiny after format SFT
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [defence[n]["favourite_share"] for n in names], 0.4,
           label="share of opening positions whose top move is the favourite cell")
    ax.bar([i + 0.2 for i in x], [defence[n]["grad_cosine"] for n in names], 0.4,
           label="gradient coupling of O's positions (mean cosine)")
    ax.set_xticks(list(x), names, fontsize=8)
    ax.set(ylim=(0, 1.15), title="Why: one answer for every board (exact, 82 positions)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
