"""`spkit` command line: one entry point, one module per subcommand.

Trainers (`spkit pretrain`, `spkit train ALGO`) have no hand-written flags: their `--flags` are
generated from the trainer's `Config` dataclass (`spkit.config`), help text from the field docs,
and the run is the module's `train(cfg)`. Other subcommands live next to the code they run and
expose `add_arguments(parser)` and `main(args) -> int | None`.

`main(argv)` parses the list it is given (the console script passes `sys.argv[1:]`) and imports
only the module of the command being run, so `spkit --help` is instant and a missing optional
extra affects only the command that needs it. Expected user errors (`SpkitError`: a bad path, a
corrupt checkpoint, a bad flag value) are printed as one line with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from spkit.errors import SpkitError

# name -> (module, one-line help). `train` has one sub-subcommand per algorithm (spkit.algos.ALGOS).
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
TRAINERS = ("pretrain",)  # top-level commands that are trainers (Config + train)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; the flags of the command named in `argv` (and only those) are filled in."""
    from spkit.algos import ALGOS

    parser = argparse.ArgumentParser(
        prog="spkit", description="Self-play and self-improvement for language models, on a laptop CPU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module, _trainer=name if name in TRAINERS else None)
        if name != wanted:
            continue
        if name == "train":
            algos = p.add_subparsers(dest="algo", metavar="ALGO", required=True)
            for algo, (algo_module, algo_help) in ALGOS.items():
                q = algos.add_parser(algo, help=algo_help, description=algo_help)
                q.set_defaults(_module=algo_module, _trainer=algo)
                if list(argv[1:2]) == [algo]:
                    _add_trainer_arguments(q, algo_module, algo)
        elif name in TRAINERS:
            _add_trainer_arguments(p, module, name)
        else:
            importlib.import_module(module).add_arguments(p)
    return parser


def _add_trainer_arguments(p: argparse.ArgumentParser, module: str, name: str) -> None:
    from spkit.config import add_config_arguments

    add_config_arguments(p, importlib.import_module(module).Config, defaults={"out": f"runs/{name}"})


def _run_trainer(module: str, name: str, args: argparse.Namespace) -> int:
    """`cfg` from the flags, `train(cfg)`, then the run's headline and where its files are."""
    from spkit.config import config_from_args

    mod = importlib.import_module(module)
    cfg = config_from_args(mod.Config, args, defaults={"out": f"runs/{name}"})
    hist = mod.train(cfg)
    from spkit.parallel import world

    if world()[0] != 0:  # torchrun: rank 0 reports (the others log nothing)
        return 0
    if hasattr(mod, "summary"):
        print(mod.summary(hist))
    if hist.out_dir is not None:
        made = [hist.out_dir / f for f in ("metrics.csv", f"{name}.png") if (hist.out_dir / f).exists()]
        print("wrote " + ", ".join(map(str, made + ([hist.final_dir] if hist.final_dir else []))))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        if args._trainer:
            rc = _run_trainer(args._module, args._trainer, args)
        else:
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
