"""Metric logs, progress bars and plots of a run.

`metrics.csv` is append-only: each logged step adds one line, so a crash can cost at most the
line being written (which `read_metrics` skips). The file is rewritten only when a new metric
appears (a new column; rare, and done atomically: a temporary file renamed over the old one) and
on resume (rows after the resumed step are dropped, so the log equals a straight run's).
Keys use CleanRL's namespaces: `train/…`, `eval/…`, `losses/…`.

Plots are drawn on a `matplotlib.figure.Figure` of their own and saved through it: library code
never switches matplotlib's global backend (that would silence every later `plt.show()` in a
notebook).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from spkit.errors import SpkitError


class MetricLogger:
    """Rows of `{"step": int, key: float, ...}` to `out_dir/metrics.csv` (+ TensorBoard)."""

    def __init__(self, out_dir: str | os.PathLike, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.path = Path(out_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = read_metrics(self.path) if (resume_step is not None and self.path.exists()) else []
        self.history: list[dict[str, float]] = [r for r in old if r["step"] <= resume_step] if old else []
        self.keys: list[str] = []
        self._rewrite()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=resume_step)
            except ImportError:
                pass

    def log(self, step: int, **metrics: float) -> dict[str, float]:
        row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
        self.history.append(row)
        if any(k not in self.keys for k in row):
            self._rewrite()
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.keys).writerow(row)
        if self._tb is not None:
            for k, v in metrics.items():
                if math.isfinite(float(v)):
                    self._tb.add_scalar(k, float(v), step)
        return row

    def _rewrite(self) -> None:
        for row in self.history:
            self.keys += [k for k in row if k not in self.keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.keys or ["step"])
        w.writeheader()
        w.writerows(self.history)
        atomic_write_text(self.path, buf.getvalue())

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, float]]:
    """A metrics.csv as a list of rows (missing values are NaN; a cut-off last line is skipped)."""
    text = Path(path).read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the line a crash cut off
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        try:
            rows.append({k: float(v) if v not in ("", None) else math.nan for k, v in r.items()})
        except (TypeError, ValueError):
            continue
    return rows


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename: readers see the old or the new file, whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def progress(iterable: Iterable | None = None, **kw: Any):
    """tqdm: a widget in notebooks, text in terminals; SPKIT_NO_PROGRESS=1 silences it."""
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
    """One small panel per metric key vs step; `refs` ("key:label" -> y) draws reference lines.
    Returns the `Figure` (a notebook displays it); saves it to `out_png` when given."""
    from matplotlib.figure import Figure

    rows = read_metrics(source) if isinstance(source, (str, os.PathLike)) else list(source)
    keys = [k for k in keys if any(k in r and math.isfinite(r[k]) for r in rows)]
    if not keys:
        raise SpkitError("nothing to plot: none of the requested metrics were logged")
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
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
    return fig
