"""Benchmark data on local disk: `spkit data prepare`, which converts upstream copies into the
layout lm-eval's spkit tasks read, `spkit data check`, and the generated spkit_* records.

The layout (``DIR/gsm8k/test.jsonl`` ...) and its readers (`data_dir`, `load_split`, ...) are
defined in `spkit.tasks.datafiles`, where the trainers read the same files; they are re-exported
here, the evaluation's public home for them.

How lm-eval finds DIR: the task YAMLs in ``evals/`` load data through ``custom_dataset``
functions (``evals/utils.py``) that read the ``data_dir`` metadata key, falling back to the
``SPKIT_EVAL_DATA`` environment variable. ``spkit eval --data-dir DIR`` passes it as metadata
(an absolute path, so the working directory never matters); plain lm-eval users pass
``--metadata '{"data_dir": "/abs/DIR"}'`` or set ``SPKIT_EVAL_DATA``. The procedurally generated
``spkit_*`` tasks need no files at all.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from spkit.errors import SpkitError
from spkit.tasks.datafiles import (  # noqa: F401 - re-exported: the evaluation's public home for them
    DATASETS,
    ENV_VAR,
    FIXTURES,
    PROCESSBENCH_SUBSETS,
    ROOT,
    data_dir,
    data_file,
    load_split,
    read_jsonl,
    validate,
)


def check_dir(names: Iterable[str], root: str | os.PathLike | None = None) -> list[Path]:
    """Validate every file the named datasets need (fails fast, before any model loads)."""
    checked = []
    for name in names:
        for stem in DATASETS[name]["files"]:
            if name == "gsm8k" and stem == "train" and not data_file(name, stem, root).exists():
                continue  # only needed for few-shot; lm-eval reports it if asked for
            path = data_file(name, stem, root)
            read_jsonl(path, name)
            checked.append(path)
    return checked


# ---- converting upstream copies (spkit data prepare)


def _read_any(path: Path) -> list[dict]:
    """Records from a .jsonl, .json (array or {"data": [...]}) or .parquet file."""
    try:
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            data = data["data"] if isinstance(data, dict) and "data" in data else data
            if not isinstance(data, list):
                raise SpkitError(f"{path}: expected a JSON array of records (or "
                                 f'{{"data": [...]}}), got {type(data).__name__}')
            return data
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
    except (OSError, ValueError) as e:
        raise SpkitError(f"could not read {path}: {e}") from None
    raise SpkitError(f"{path}: unsupported file type (use .jsonl, .json or .parquet)")


def _find_split_file(src: Path, split: str, single_split: bool) -> Path | None:
    """In a directory, the data file whose name mentions ``split`` (e.g. test-00000.parquet);
    for a one-split dataset also the directory's only data file (e.g. input_data.jsonl)."""
    exts = (".jsonl", ".json", ".parquet")
    files = sorted(p for p in src.rglob("*") if p.suffix in exts and p.is_file())
    if single_split and len(files) == 1:
        return files[0]
    exact = [p for p in files if p.stem == split]
    if exact:
        return exact[0]
    named = [p for p in files if p.name.startswith(f"{split}-") or p.name.startswith(f"{split}.")
             or f"_{split}" in p.stem or f"{split}_" in p.stem]
    return named[0] if named else None


def _from_hub(name: str, split: str) -> list[dict]:
    """Load a split with `datasets` (local HF cache; downloads only where a hub is reachable)."""
    try:
        import datasets
    except ImportError:
        raise SpkitError("reading the HF cache needs `datasets`: pip install 'spkit[eval]'") from None
    hub, config = DATASETS[name]["hub"]
    try:
        return list(datasets.load_dataset(hub, config, split=split))
    except Exception as e:  # noqa: BLE001 - datasets raises many types; one line is the contract
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpkitError(
            f"{name}: {hub} split {split!r} is not in the local HF datasets cache and the hub "
            f"is unreachable ({first[:120]}); pass --from PATH to a local copy instead"
        ) from None


def _normalise(name: str, rec: dict) -> dict:
    """Small upstream variations -> the exact schema (e.g. IFEval kwargs with null padding)."""
    if not isinstance(rec, dict):
        return rec  # validate() names the problem
    if name == "ifeval" and isinstance(rec.get("kwargs"), list) and all(
            isinstance(kw, dict) for kw in rec["kwargs"]):
        rec = dict(rec)
        rec["kwargs"] = [{k: v for k, v in kw.items() if v is not None} for kw in rec["kwargs"]]
    if name == "processbench" and "final_answer_correct" not in rec:
        rec = {**rec, "final_answer_correct": None}
    return rec


def prepare(name: str, out: str | os.PathLike, src: str | os.PathLike | None = None) -> list[Path]:
    """Write ``out/<name>/<stem>.jsonl`` from ``src`` (a file, a directory, or the HF cache)."""
    if name not in DATASETS:
        raise SpkitError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    from spkit.run import ensure_writable_dir

    ensure_writable_dir(out)  # before reading anything
    written = []
    files: dict[str, str] = DATASETS[name]["files"]
    for stem, hub_split in files.items():
        if src is None:
            recs = _from_hub(name, hub_split)
        else:
            path = Path(src).expanduser()
            if path.is_dir():
                found = _find_split_file(path, hub_split, len(files) == 1)
                if found is None:
                    if name == "gsm8k" and stem == "train":
                        continue  # the few-shot pool is optional
                    raise SpkitError(f"{name}: no {hub_split!r} file (.jsonl/.json/.parquet) "
                                     f"under {path}")
                path = found
            elif not path.exists():
                raise SpkitError(f"{name}: source {path} does not exist")
            elif len(files) > 1 and stem not in path.name and hub_split not in path.name:
                continue  # a single file only fills the split it names (or the only split)
            recs = _read_any(path)
        recs = [_normalise(name, r) for r in recs]
        for i, r in enumerate(recs):
            problem = validate(r, name)
            if problem:
                raise SpkitError(f"{name} record {i} ({stem}): {problem}; is this the right file?")
        target = Path(out) / name / f"{stem}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        written.append(target)
    if not written:
        raise SpkitError(f"{name}: nothing written from {src}; name the file after its split")
    return written


# ---- procedurally generated spkit tasks (no files)

EVAL_SEED = 0  # fixed evaluation seed of the spkit_* tasks (documented in evals/README.md)


def spkit_records(task: str, n: int, **kw: Any) -> list[dict]:
    """The held-out records of one generated task, same every call (cached: a fresh copy)."""
    return json.loads(_spkit_records_json(task, n, tuple(sorted(kw.items()))))


@functools.lru_cache(maxsize=32)
def _spkit_records_json(task: str, n: int, kw_items: tuple) -> str:
    from spkit.tasks import arithmetic, instructions, steps

    kw = dict(kw_items)
    makers: dict[str, Callable[..., list[dict]]] = {
        "spkit_arith": lambda: arithmetic.generate(n, EVAL_SEED, steps=int(kw["steps"]),
                                                   split="test"),
        "spkit_steps": lambda: steps.generate(n, EVAL_SEED, subset=kw["subset"], split="test"),
        "spkit_ifeval_lite": lambda: instructions.generate(n, EVAL_SEED, split="test"),
    }
    return json.dumps(makers[task]())


# ---- CLI: spkit data prepare | check


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    pr = sub.add_parser("prepare", help="convert upstream copies into the eval layout")
    pr.add_argument("datasets", help=f"comma-separated: {','.join(DATASETS)} (or 'all')")
    pr.add_argument("--from", dest="src", default=None,
                    help="a local file or directory (.jsonl/.json/.parquet) with the upstream "
                         "data; omitted: the local HF datasets cache (hub where reachable)")
    pr.add_argument("--out", required=True, help="data directory to write (then --data-dir)")
    ck = sub.add_parser("check", help="validate a data directory")
    ck.add_argument("--data-dir", required=True)
    ck.add_argument("datasets", nargs="?", default="all")


def _names(spec: str) -> list[str]:
    names = list(DATASETS) if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in DATASETS]
    if bad:
        raise SpkitError(f"unknown dataset(s) {bad}; choose from {', '.join(DATASETS)}")
    return names


def main(args: argparse.Namespace) -> int:
    if args.data_command == "prepare":
        for name in _names(args.datasets):
            for path in prepare(name, args.out, args.src):
                n = len(path.read_text(encoding="utf-8").splitlines())
                print(f"wrote {path} ({n} records)")
        return 0
    for path in check_dir(_names(args.datasets), args.data_dir):
        print(f"ok {path}")
    return 0
