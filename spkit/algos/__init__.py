"""One file per paper. `spkit train ALGO ...` dispatches here.

Each algorithm module that can be run from the command line exposes
`add_arguments(parser)` and `main(args)`, next to its `Config` dataclass and `train(cfg,
callback=None)` function. `ALGOS` maps the CLI name to the module; modules are imported only
when their subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

ALGOS: dict[str, tuple[str, str]] = {
    "spiral": ("spkit.algos.spiral", "SPIRAL: multi-turn zero-sum self-play with role-conditioned advantages"),
    # preference games over a finite response set (exact and sampled forms, no language model)
    "spo": ("spkit.algos.spo", "SPO: self-play preference optimisation (win-rate reward)"),
    "sppo": ("spkit.algos.sppo", "SPPO: self-play preference optimisation (squared loss)"),
    "inpo": ("spkit.algos.inpo", "INPO: iterative Nash policy optimisation (pairwise loss)"),
    "nash_md": ("spkit.algos.nash_md", "Nash-MD: mirror descent toward a geometric mixture"),
    "nash_mp": ("spkit.algos.nash_mp", "Nash-MP: mirror prox (extrapolated) preference learning"),
    "online_dpo": ("spkit.algos.online_dpo", "online iterative DPO (best vs worst of K samples)"),
    "rlhf_bt": ("spkit.algos.rlhf_bt", "classic RLHF with a Bradley-Terry reward (baseline)"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="algo", metavar="ALGO", required=True)
    wanted = sys.argv[2:3]  # only the chosen algorithm's module is imported
    for name, (module, help_text) in ALGOS.items():
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.set_defaults(_algo_module=module)
        if name in wanted:
            importlib.import_module(module).add_arguments(q)


def main(args: argparse.Namespace) -> int:
    return importlib.import_module(args._algo_module).main(args)
