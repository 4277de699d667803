"""Checkpoints that survive `kill -9` and resume exactly.

A checkpoint is a directory `checkpoints/step_XXXXXXX/` holding the model (`save_pretrained`,
safetensors: it loads in plain transformers, lm-eval and vLLM), the optimizer state, every global
RNG state, the run's config and the algorithm's own state (JSON). It is written into a hidden
temporary directory and renamed into place, so a process killed at any moment leaves either the
previous complete checkpoint or the new one, never a half one that resume would pick up.
Nothing is unpickled: tensors travel as safetensors, the optimizer's state dict through
`torch.load(weights_only=True)`, everything else as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spkit.errors import SpkitError
from spkit.models import quiet_transformers_bars
from spkit.seeding import rng_state, set_rng_state

STATE_FILE = "trainer_state.json"


class Checkpointer:
    """Atomic checkpoints under `out_dir/checkpoints/`, keeping the newest `keep`."""

    def __init__(self, out_dir: str | os.PathLike, keep: int = 2) -> None:
        self.root = Path(out_dir) / "checkpoints"
        self.keep = max(1, keep)

    def save(
        self,
        step: int,
        model: torch.nn.Module | None = None,
        tokenizer: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        extra_state: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        optimizer_state: dict[str, Any] | None = None,
    ) -> Path:
        """`files`: objects with `save_files(dir)` whose state is not JSON (a second model and its
        optimizer); each writes into `<checkpoint>/<key>/` before the checkpoint is complete.
        `optimizer_state` replaces `optimizer.state_dict()` (a sharded optimizer's gathered state)."""
        final = self.root / f"step_{step:07d}"
        tmp = self.root / f".tmp_step_{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if model is not None:
            with quiet_transformers_bars():
                model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if optimizer is not None:
            torch.save(optimizer.state_dict() if optimizer_state is None else optimizer_state, tmp / "optimizer.pt")
        for key, obj in (files or {}).items():
            obj.save_files(tmp / key)
        state = {"step": step, "rng": rng_state(), "extra": extra_state or {}, "config": config or {}}
        (tmp / STATE_FILE).write_text(json.dumps(state))  # written last: its presence marks "complete"
        if final.exists():  # the same step saved twice (a resumed run's last step)
            shutil.rmtree(final)
        tmp.rename(final)
        self._prune()
        return final

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        return sorted(p for p in self.root.glob("step_*") if (p / STATE_FILE).exists())

    def latest(self) -> Path | None:
        done = self.complete()
        return done[-1] if done else None

    def load_latest(
        self, model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None
    ) -> dict[str, Any] | None:
        """Restore the newest checkpoint that loads; return its state (`step`, `extra`, `config`),
        or None when there is none. A checkpoint that fails to load (a disk error, a hand-edited
        file) is moved aside to `checkpoints/corrupt_step_*` with a one-line warning, and the
        previous complete one is used instead."""
        errors = []
        for path in reversed(self.complete()):
            try:
                return load_checkpoint(path, model, optimizer)
            except SpkitError as e:
                errors.append(str(e))
                aside = path.with_name("corrupt_" + path.name)
                shutil.rmtree(aside, ignore_errors=True)
                path.rename(aside)
                print(f"spkit: warning: {e}; moved it to {aside.name}, trying the previous one", file=sys.stderr)
        if errors:
            raise SpkitError(f"no checkpoint under {self.root} loads ({errors[-1]})")
        return None

    def _prune(self) -> None:
        done = self.complete()
        for old in done[: max(0, len(done) - self.keep)]:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Load the weights (safetensors), optimizer state and RNG states of one checkpoint."""
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text())
        if model is not None:
            _load_weights(model, path)
        if optimizer is not None:
            optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        set_rng_state(state["rng"])
        state["path"] = str(path)  # where `files` saved by `save` are read back from
    except Exception as e:  # safetensors / json / torch errors all mean "this checkpoint is bad"
        raise unreadable(path, e) from None
    return state


def _load_weights(model: torch.nn.Module, directory: Path) -> None:
    from safetensors.torch import load_file

    weights = sorted(directory.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError("no *.safetensors file")
    tensors: dict[str, torch.Tensor] = {}
    for w in weights:
        tensors.update(load_file(w))
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # shapes: the first line names no tensor, the next one does
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        raise ValueError(f"weights do not match the model: {lines[1] if len(lines) > 1 else lines[0]}") from None
    if [k for k in missing if "lm_head" not in k] or unexpected:  # lm_head may be tied
        raise ValueError(f"weights do not match the model: missing={missing[:3]}")
    if getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        model.tie_weights()


def load_weights(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Load a directory's safetensors weights into `model`: a second model a trainer keeps in
    its checkpoints (`save_files` / `load_files`: a frozen reference, a value model, an actor).
    One line if they are missing or do not fit the model."""
    try:
        _load_weights(model, Path(directory))
    except Exception as e:
        raise unreadable(directory, e) from None


def save_tensors(tensors: dict[str, torch.Tensor], file: str | os.PathLike) -> None:
    """`tensors` as one safetensors file (contiguous copies; its directory made)."""
    from safetensors.torch import save_file

    Path(file).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(file))


def load_optimizer_state(path: str | os.PathLike) -> dict:
    """The optimizer state a checkpoint holds (tensors only: `weights_only`); one line if bad."""
    try:
        return torch.load(Path(path) / "optimizer.pt", weights_only=True)
    except Exception as e:
        raise unreadable(path, e) from None


def unreadable(path: str | os.PathLike, e: Exception) -> SpkitError:
    """The one-line error for a checkpoint that does not load: its path and the cause's first line."""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return SpkitError(f"checkpoint {path} is unreadable: {msg}")


def replace_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a directory with `write(tmp)` beside `target`, then swap it in: a crash leaves the
    old directory or none, never a half-written one (a second model saved beside `final/`)."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def finite_weights(model: torch.nn.Module) -> bool:
    """True when no parameter holds a NaN or an infinity (checked before anything is saved)."""
    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in model.parameters())
