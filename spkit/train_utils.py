"""What every training loop in spkit needs, written once: seeds, checkpoints that resume exactly,
metric logs (CSV + TensorBoard), progress bars, plots, and the torch.distributed setup.

Exact resume means: a run of N steps equals N/2 steps, stop, resume, N/2 more — same numbers.
For that a checkpoint holds the model (`save_pretrained`, safetensors: loads in plain
transformers / lm-eval / vLLM), the optimizer state, every RNG state (python, numpy, torch) and
the loop's own running statistics (`extra_state`, e.g. SPIRAL's role baselines). Nothing is
pickled: tensors go to safetensors, everything else to JSON, and loading uses
`torch.load(weights_only=True)` only for the optimizer state we wrote ourselves.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spkit.errors import SpkitError

# ---- seeding ---------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch. Same seed + same machine -> same numbers."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def derive_seed(*parts: int | str) -> int:
    """A stable seed for one (step, example, sample, ...) — independent of batch order."""
    h = 1469598103934665603
    for part in parts:
        for byte in str(part).encode():
            h = ((h ^ byte) * 1099511628211) % 2**64
        h = ((h ^ 0xFF) * 1099511628211) % 2**64
    return h % 2**31


def rng_state() -> dict[str, Any]:
    """All RNG states as JSON-able data (numpy's array state as a list)."""
    np_state = np.random.get_state()
    return {
        "python": _jsonable(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tupled(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _jsonable(x: Any) -> Any:
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tupled(x: Any) -> Any:
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


# ---- checkpoints -----------------------------------------------------------------------------


class Checkpointer:
    """Checkpoints under `out_dir/checkpoints/step_XXXXXXX/`; `latest` is the newest complete one.

    A checkpoint is written to a temporary directory and renamed into place, so a crash
    mid-write never leaves a half checkpoint that `load_latest` would pick up.
    """

    def __init__(self, out_dir: str | os.PathLike, keep: int = 3) -> None:
        self.root = Path(out_dir) / "checkpoints"
        self.keep = keep

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        tokenizer: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        extra_state: dict[str, Any] | None = None,
    ) -> Path:
        final = self.root / f"step_{step:07d}"
        tmp = self.root / f".tmp_step_{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        state = {"step": step, "rng": rng_state(), "extra": extra_state or {}}
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self._prune()
        return final

    def latest(self) -> Path | None:
        steps = sorted(p for p in self.root.glob("step_*") if (p / "trainer_state.json").exists())
        return steps[-1] if steps else None

    def load_latest(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
    ) -> dict[str, Any] | None:
        """Restore model, optimizer and RNG from the newest checkpoint; return its state dict
        (`{"step": int, "extra": {...}}`), or None if there is none."""
        path = self.latest()
        if path is None:
            return None
        return load_checkpoint(path, model, optimizer)

    def _prune(self) -> None:
        steps = sorted(self.root.glob("step_*"))
        for old in steps[: max(0, len(steps) - self.keep)]:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Load weights (safetensors), optimizer state and RNG states written by `Checkpointer`."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = json.loads((path / "trainer_state.json").read_text())
        weights = sorted(path.glob("*.safetensors"))
        if not weights:
            raise FileNotFoundError("no *.safetensors file")
        tensors: dict[str, torch.Tensor] = {}
        for w in weights:
            tensors.update(load_file(w))
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        if [k for k in missing if "lm_head" not in k] or unexpected:  # lm_head may be tied
            raise ValueError(f"weights do not match the model: missing={missing[:3]}")
        if getattr(model.config, "tie_word_embeddings", False):
            model.tie_weights()
        if optimizer is not None:
            optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    except Exception as e:  # safetensors/json/torch errors all mean "this checkpoint is bad"
        raise SpkitError(f"cannot resume from {path}: {str(e).splitlines()[0]}") from None
    set_rng_state(state["rng"])
    return state


# ---- logging -----------------------------------------------------------------------------------


class MetricLogger:
    """Append metrics to `out_dir/metrics.csv` (and TensorBoard when installed).

    Keys use a fixed namespace (CleanRL style): `train/…`, `eval/…`, `losses/…`, `charts/…`.
    The CSV grows new columns as new keys appear (rewritten then, which is cheap at our sizes).
    On resume, rows after the resumed step are dropped so the log equals a straight run's.
    """

    def __init__(self, out_dir: str | os.PathLike, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.path = Path(out_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.history: list[dict[str, float]] = read_metrics(self.path) if self.path.exists() else []
        if resume_step is not None:
            self.history = [r for r in self.history if r["step"] <= resume_step]
        elif self.history:
            self.history = []  # fresh run in an old dir: start a clean log
        self._write_all()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(out_dir) / "tb"))
            except ImportError:
                pass

    def log(self, step: int, **metrics: float) -> dict[str, float]:
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self.history.append(row)
        self._write_all()
        if self._tb is not None:
            for k, v in metrics.items():
                if math.isfinite(float(v)):
                    self._tb.add_scalar(k, float(v), step)
        return row

    def _write_all(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys or ["step"])
            w.writeheader()
            w.writerows(self.history)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """Read a metrics.csv back as a list of rows (missing values are NaN)."""
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in r.items()} for r in csv.DictReader(f)]


# ---- progress + plots ----------------------------------------------------------------------------


def progress(iterable: Iterable | None = None, **kw: Any):
    """tqdm that renders as a widget in notebooks and as text in terminals."""
    from tqdm.auto import tqdm

    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("disable", os.environ.get("SPKIT_NO_PROGRESS") == "1")
    return tqdm(iterable, **kw)


def plot_metrics(
    source: str | os.PathLike | Sequence[dict[str, float]],
    keys: Sequence[str],
    out_png: str | os.PathLike | None = None,
    title: str | None = None,
    refs: dict[str, float] | None = None,
):
    """One small panel per metric key vs step; `refs` draws horizontal reference lines."""
    import matplotlib

    if out_png is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = read_metrics(source) if isinstance(source, (str, os.PathLike)) else list(source)
    keys = [k for k in keys if any(k in r and math.isfinite(r[k]) for r in rows)]
    if not keys:
        raise SpkitError("nothing to plot: none of the requested metrics were logged")
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        pts = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(r[key])]
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3)
        for name, val in (refs or {}).items():
            if name.split(":")[0] == key:
                ax.axhline(val, ls="--", c="gray", lw=1, label=name.split(":", 1)[-1])
                ax.legend(fontsize=7)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if out_png is not None:
        fig.savefig(out_png, dpi=110)
        plt.close(fig)
    return fig


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` or fail with one line (an unwritable --out is a user error)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".spkit_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise SpkitError(f"output directory {p} is not writable: {e.strerror or e}") from None
    return p


# ---- distributed -------------------------------------------------------------------------------


def init_distributed() -> tuple[int, int]:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPU); (rank, world)."""
    import torch.distributed as dist

    if "RANK" not in os.environ or dist.is_initialized():
        return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


def all_reduce_grads(model: torch.nn.Module) -> None:
    """Average gradients across ranks (plain data parallelism, no wrapper needed).

    Rollouts differ per rank (each rank samples its own games from a rank-derived seed);
    averaging gradients keeps the replicas identical, which the 2-process gloo test checks.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world
