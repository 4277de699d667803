"""A live training dashboard: the curves of a run, redrawn as `train()` logs them.

    dash = TrainingDashboard()
    display(dash)
    spiral.train(cfg, callback=dash)          # or callback=dash.update
    TrainingDashboard.from_run_dir("runs/spiral")   # the same plot after the fact (metrics.csv)

Each panel is one metric against the step, drawn by `spkit.run.metrics.plot_metrics` (the
function every lesson uses for its static plots, so live and after-the-fact plots look the
same) into a PNG shown by an `ipywidgets.Image`; below it, the latest value of every metric.
"""

from __future__ import annotations

import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import ipywidgets as W

from spkit.errors import SpkitError

#: Shown when `keys` is None and they were logged: loss, reward, exploitability, win/loss
#: rates, completion length, invalid-move rate (the metric names of `spkit.algos.spiral` and
#: the generic `train/loss`, `train/reward` of the other trainers).
DEFAULT_KEYS = (
    "train/loss",
    "losses/policy",
    "train/reward",
    "eval/kuhn_poker/nashconv_last",
    "eval/kuhn_poker/nashconv_avg",
    "eval/tictactoe/win_vs_random",
    "eval/tictactoe/loss_vs_random",
    "eval/negotiation/return_vs_heuristic",
    "train/completion_len",
    "train/invalid_rate",
)
MAX_PANELS = 9


class TrainingDashboard(W.VBox):
    """Metric curves that update live; usable directly as ``train(cfg, callback=dashboard)``."""

    def __init__(self, keys: Sequence[str] | None = None, title: str | None = None) -> None:
        super().__init__()
        self.metric_keys = list(keys) if keys is not None else None
        self.run_name = title
        self.history: list[dict[str, float]] = []
        self.header = W.HTML()
        self.plot = W.Image(format="png")
        self.latest = W.HTML()
        self.children = [self.header, self.plot, self.latest]
        self.refresh()

    # ---- feeding -----------------------------------------------------------------------
    def update(self, step: int, metrics: Mapping[str, object]) -> None:
        """Add one logged step (non-numeric values are ignored) and redraw."""
        row: dict[str, float] = {"step": float(step)}
        for k, v in metrics.items():
            try:
                row[str(k)] = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
        self.history.append(row)
        self.refresh()

    __call__ = update

    @classmethod
    def from_run_dir(
        cls, path: str | os.PathLike, keys: Sequence[str] | None = None
    ) -> TrainingDashboard:
        """A dashboard of a finished (or running) run: reads ``path/metrics.csv``."""
        from spkit.run.metrics import read_metrics

        p = Path(path)
        csv_path = p if p.is_file() else p / "metrics.csv"
        if not csv_path.exists():
            raise SpkitError(f"no metrics.csv in {p}; pass the run's output directory")
        try:
            rows = read_metrics(csv_path)
        except (ValueError, KeyError) as e:
            raise SpkitError(f"{csv_path} is not a metrics log: {e}") from None
        if rows and "step" not in rows[0]:
            raise SpkitError(f"{csv_path} has no 'step' column")
        dash = cls(keys, title=str(p))
        dash.history = rows
        dash.refresh()
        return dash

    # ---- drawing -----------------------------------------------------------------------
    def plotted_keys(self) -> list[str]:
        """Keys with at least one finite value: the requested ones, else the defaults,
        else every logged key (at most MAX_PANELS)."""
        seen: list[str] = []
        for row in self.history:
            seen += [k for k, v in row.items() if k != "step" and k not in seen and math.isfinite(v)]
        if self.metric_keys is not None:
            return [k for k in self.metric_keys if k in seen]
        defaults = [k for k in DEFAULT_KEYS if k in seen]
        return (defaults or seen)[:MAX_PANELS]

    def refresh(self) -> None:
        """Redraw the plot and the table of latest values from `history`."""
        keys = self.plotted_keys()
        n = len(self.history)
        last = self.history[-1] if self.history else {}
        step = f"step {int(last['step'])}" if "step" in last and math.isfinite(last["step"]) else "no steps yet"
        name = f"{html.escape(self.run_name)}: " if self.run_name else ""
        self.header.value = f"<b>{name}{step}</b> ({n} logged rows)"
        self.plot.value = self._png(keys) if keys else b""
        self.plot.layout.display = None if keys else "none"
        latest = {}
        for row in self.history:
            latest.update({k: v for k, v in row.items() if k != "step" and math.isfinite(v)})
        cells = "".join(
            f"<tr><td style='padding-right:10px'>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
            for k, v in latest.items()
        )
        self.latest.value = f"<table>{cells}</table>" if cells else "<i>waiting for metrics…</i>"

    def _png(self, keys: list[str]) -> bytes:
        from spkit.run.metrics import plot_metrics

        buf = io.BytesIO()
        plot_metrics(self.history, keys).savefig(buf, format="png", dpi=80)
        return buf.getvalue()
