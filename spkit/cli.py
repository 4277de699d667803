"""`spkit` command line: one entry point, one module per subcommand.

Each subcommand lives next to the code it runs and exposes two functions::

    add_arguments(parser: argparse.ArgumentParser) -> None
    main(args: argparse.Namespace) -> int | None

Modules are imported only when their subcommand runs, so `spkit --help` is instant and a
missing optional extra only affects the subcommand that needs it. Shared flags follow one
convention: `--model NAME_OR_PATH` (default "spkit-tiny"), `--seed INT`, `--out DIR`.

Expected user errors (bad paths, corrupt checkpoints, missing data) are raised as
`SpkitError` and printed as one line with exit code 2, never as a traceback wall.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from spkit.errors import SpkitError

# name -> (module, one-line help). `train` has one sub-subcommand per algorithm.
COMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("spkit.pretrain", "train the embedded spkit-tiny model from a synthetic corpus"),
    "sample": ("spkit.generation", "sample completions from a model (quick look)"),
    "train": ("spkit.algos", "train with a paper's algorithm: `spkit train ALGO --help`"),
    "play": ("spkit.play", "play a game against a model in the terminal"),
    "eval": ("spkit.evals.run", "evaluate a model with lm-eval (GSM8K, MATH, IFEval, ...)"),
    "report": ("spkit.evals.report", "compare eval runs in one table and plot"),
    "data": ("spkit.evals.data", "prepare benchmark data files from local copies"),
    "card": ("spkit.card", "measure a model's abilities and write its model card"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spkit",
        description="Self-play and self-improvement for language models, on a laptop CPU.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name in _requested_commands():
            importlib.import_module(module).add_arguments(p)
    return parser


def _requested_commands() -> set[str]:
    """Only the subcommand being run needs its arguments (and its imports)."""
    return {a for a in sys.argv[1:2] if a in COMMANDS}


def add_common_arguments(
    p: argparse.ArgumentParser, *, model: bool = True, out: str | None = None
) -> None:
    """The shared `--model/--seed/--out` convention of every subcommand."""
    if model:
        p.add_argument(
            "--model",
            default="spkit-tiny",
            help='"spkit-tiny" (embedded), a local save_pretrained directory, or a hub id',
        )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> same numbers)")
    if out is not None:
        p.add_argument("--out", default=out, help=f"output directory (default: {out})")


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args()
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        rc = importlib.import_module(args._module).main(args)
    except SpkitError as e:
        print(f"spkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spkit {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
