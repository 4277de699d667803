"""Configs as dataclasses, and everything derived from them: validation, `--flags`, run identity.

Every trainer's `Config` is a dataclass whose fields are declared with `param`::

    lr: float = param(3e-5, "learning rate (paper: 1e-6 for Qwen3-4B)", gt=0)

The one-line doc becomes the `--lr` help text, the bounds become the check `validate` runs, so the
command line, the Python API and the error messages cannot drift apart. Floats must be finite
unless a field says otherwise (`--lr nan` is a user error, not 600 steps of NaN weights).
`identity=False` marks fields a resumed run may change (step budget, logging), as opposed to the
ones that define what is being trained (a resume with a different `lr` is refused).
A choice ending in ``*`` is a prefix (``"textarena:*"`` admits ``"textarena:TicTacToe-v0"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from typing import Any

from spkit.errors import SpkitError

_MISSING = dataclasses.MISSING


def param(
    default: Any,
    doc: str,
    *,
    choices: tuple | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    finite: bool = True,
    identity: bool = True,
) -> Any:
    """A dataclass field with its one-line doc and its constraints (see the module docstring)."""
    meta = {"help": doc, "choices": choices, "ge": ge, "gt": gt, "le": le, "finite": finite,
            "identity": identity}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# ---- validation ------------------------------------------------------------------------------


def validate(cfg: Any) -> None:
    """Check every field of a config dataclass against its type and `param` constraints; raise
    one `SpkitError` naming the flag, the rule and the value."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        _check_type(f.name, value, hints.get(f.name, Any))
        _check_bounds(f, value)


def _check_type(name: str, value: Any, hint: Any) -> None:
    base, optional, item = _unpack(hint)
    if value is None:
        if not optional and base is not Any:
            raise SpkitError(f"{flag(name)} needs a value")
        return
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if base is tuple:
        if not isinstance(value, (tuple, list)) or (item and not all(isinstance(v, item) for v in value)):
            raise SpkitError(f"{flag(name)} must be a list of {getattr(item, '__name__', 'values')}, got {value!r}")
        return
    if base in (int, float, str, bool) and (not isinstance(value, base) or (base is int and isinstance(value, bool))):
        raise SpkitError(f"{flag(name)} must be {base.__name__}, got {value!r}")


def _chosen(value: Any, choices: tuple) -> bool:
    """`value` is one of `choices`, or starts with a choice's prefix ``"prefix*"``."""
    return value in choices or any(isinstance(c, str) and c.endswith("*") and isinstance(value, str)
                                   and value.startswith(c[:-1]) and len(value) > len(c) - 1 for c in choices)


def _argparse_choices(choices: tuple | None) -> tuple | None:
    """argparse checks exact choices only; prefix choices are left to `validate`."""
    if choices and any(isinstance(c, str) and c.endswith("*") for c in choices):
        return None
    return choices


def _check_bounds(f: dataclasses.Field, value: Any) -> None:
    m = f.metadata
    if not m or value is None:
        return
    values = value if isinstance(value, (tuple, list)) else (value,)
    if not values and m.get("choices"):
        raise SpkitError(f"{flag(f.name)} needs at least one of {', '.join(map(str, m['choices']))}")
    for v in values:
        if m.get("choices") and not _chosen(v, m["choices"]):
            raise SpkitError(f"{flag(f.name)} must be one of {', '.join(map(str, m['choices']))}; got {v!r}")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if m.get("finite", True) and not math.isfinite(v):
            raise SpkitError(f"{flag(f.name)} must be a finite number, got {v}")
        for key, ok, word in (("ge", lambda a, b: a >= b, ">="), ("gt", lambda a, b: a > b, ">"),
                              ("le", lambda a, b: a <= b, "<=")):
            if m.get(key) is not None and not ok(v, m[key]):  # NaN fails every bound
                raise SpkitError(f"{flag(f.name)} must be {word} {m[key]}, got {v}")


def _unpack(hint: Any) -> tuple[Any, bool, Any]:
    """(base type, optional?, tuple item type) of a field annotation."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else Any
        origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        return tuple, optional, args[0] if args else None
    if origin is not None:
        return origin, optional, None
    return hint, optional, None


# ---- the command line ----------------------------------------------------------------------------


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, defaults: dict[str, Any] | None = None) -> None:
    """One `--flag` per field of `cls` (bools as `--x/--no-x`, tuples as `--x A B`), help text
    from the field's doc, shown default from the dataclass (or `defaults`, the command's own).

    Every flag's argparse default is None, so `config_from_args` can tell "given" from "not
    given" and a `--preset` keeps its values unless a flag overrides them."""
    hints = typing.get_type_hints(cls)
    shown = {**_defaults(cls), **(defaults or {})}
    presets = getattr(cls, "PRESETS", None)
    if presets:
        parser.add_argument("--preset", choices=tuple(presets), default=None,
                            help="named settings (flags given beside it override them)")
    for f in dataclasses.fields(cls):
        base, _, item = _unpack(hints.get(f.name, Any))
        doc = f.metadata.get("help", "")
        kw: dict[str, Any] = {"dest": f.name, "default": None,
                              "help": f"{doc} (default: {_show(shown.get(f.name))})".replace("%", "%%")}
        if base is bool:
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, **kw)
        elif base is tuple and item in (str, int, float):
            parser.add_argument(flag(f.name), nargs="+", action="extend", type=item, metavar=f.name.upper(),
                                choices=_argparse_choices(f.metadata.get("choices")), **kw)
        elif base in (str, int, float):
            parser.add_argument(flag(f.name), type=base, choices=_argparse_choices(f.metadata.get("choices")), **kw)
        # other types (an explicit matrix, ...) are Python-only


def config_from_args(cls: type, args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> Any:
    """The validated config: the preset (or the dataclass defaults, then the command's
    `defaults`), overridden by every flag given."""
    preset = getattr(args, "preset", None)
    base = cls.PRESETS[preset]() if preset else cls()
    plain = cls()  # the command's defaults apply where the preset kept the dataclass default
    kept = {k: v for k, v in (defaults or {}).items() if getattr(base, k) == getattr(plain, k)}
    base = dataclasses.replace(base, **kept)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
             if getattr(args, f.name, None) is not None}
    for name, value in given.items():
        if isinstance(value, list):
            given[name] = tuple(dict.fromkeys(value))  # a repeated entry counts once
    cfg = dataclasses.replace(base, **given)
    validate(cfg)
    return cfg


def add_common_arguments(p: argparse.ArgumentParser, *, model: bool = True, out: str | None = None) -> None:
    """`--model/--seed/--out` for the commands that have no Config of their own (eval, play, ...)."""
    if model:
        p.add_argument("--model", default="spkit-tiny",
                       help='"spkit-tiny" (embedded), a local save_pretrained directory, or a hub id')
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> same numbers)")
    if out is not None:
        p.add_argument("--out", default=out, help=f"output directory (default: {out})")


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not _MISSING:
            out[f.name] = f.default
        elif f.default_factory is not _MISSING:
            out[f.name] = f.default_factory()
    return out


def _show(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return " ".join(map(str, v)) or "none"
    return "''" if v == "" else str(v)


# ---- run identity -----------------------------------------------------------------------------------


def as_json(cfg: Any) -> dict[str, Any]:
    """The config as plain JSON data (tuples become lists), as saved with every run."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def identity_diff(cfg: Any, saved: dict[str, Any]) -> list[str]:
    """Fields that define the run (not marked identity=False) and differ from a saved config:
    ["lr: 1e-05 (checkpoint) vs 3e-05 (now)", ...]."""
    now = as_json(cfg)
    diffs = []
    for f in dataclasses.fields(cfg):
        if not f.metadata.get("identity", True):
            continue
        if f.name in saved and saved[f.name] != now[f.name]:
            diffs.append(f"{f.name}: {saved[f.name]!r} (checkpoint) vs {now[f.name]!r} (now)")
        elif f.name not in saved:
            diffs.append(f"{f.name}: not in the checkpoint's config")
    return diffs
