"""The preference game every preference learner plays, and its run: written once for all seven.

A learner file (`spo.py`, `sppo.py`, `inpo.py`, `nash_md.py`, `nash_mp.py`, `online_dpo.py`,
`rlhf_bt.py`) supplies its update θ_t -> θ_{t+1} and nothing else. This module supplies:

- `ProblemConfig`: the fields every learner's `Config` shares — which preference matrix (a named
  family of `spkit.games.preference_matrices` or an explicit one) and how it is observed (exact
  expected updates, or K samples and a noisy oracle) — on top of `spkit.run.RunConfig`;
- `PreferenceRun`: the matrix, the reference policy π_ref (uniform; θ_0 = 0 means π_0 = π_ref),
  the sampling RNG and the oracle, and `run(step)`, which drives the update through the one
  training loop (`spkit.run.Run`) and evaluates the exact exploitability of the last iterate π_t
  and of the average π̄_t = (1/t) Σ_{s=1..t} π_s at log-spaced steps (even on log-log plots);
- `PreferenceHistory`: those curves, and the final policies;
- `plot_convergence`: exploitability against the step, last and average iterate, every learner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spkit.config import param
from spkit.games.preference_matrices import FAMILIES, make_preference
from spkit.rl import preference_games as pg
from spkit.run import History, Run, RunConfig
from spkit.solvers.matrix import check_preference_matrix, exploitability, regularized_exploitability

LAST, AVG, REG = "eval/exploitability_last", "eval/exploitability_avg", "eval/reg_exploitability_last"


@dataclass
class ProblemConfig(RunConfig):
    """The preference game a learner plays and how it observes it."""

    family: str = param("three_cycle", "preference family", choices=FAMILIES)
    n: int = param(8, "number of responses (transitive / random families)", ge=2)
    matrix_seed: int = param(0, "seed of the preference matrix (0 = the margins (0.3, 0.1, 0.2) 3-cycle)")
    matrix: list | None = param(None, "explicit n×n preference matrix (overrides family; Python only)")
    mode: str = param("exact", "exact (expected update) | sampled (K samples, noisy oracle)",
                      choices=("exact", "sampled"))
    eval_points: int = param(60, "evaluate at this many log-spaced steps", ge=2, identity=False)
    checkpoint_every: int = param(500, "save a resumable checkpoint every k steps (and at the end)", ge=1,
                                  identity=False)

    def problem(self) -> tuple[np.ndarray, np.ndarray]:
        """(P, π_ref): the preference matrix and the uniform reference policy."""
        P = check_preference_matrix(self.matrix) if self.matrix is not None else make_preference(
            self.family, self.n, self.matrix_seed)
        return P, np.full(P.shape[0], 1.0 / P.shape[0])


@dataclass
class PreferenceHistory(History):
    """The run's rows plus the exploitability curves and final policies of the iterates."""

    pi_last: np.ndarray | None = None
    pi_avg: np.ndarray | None = None
    oracle_calls: int = 0

    @property
    def steps(self) -> list[int]:
        return self.series(LAST)[0]

    @property
    def exploit_last(self) -> list[float]:
        return self.series(LAST)[1]

    @property
    def exploit_avg(self) -> list[float]:
        return self.series(AVG)[1]

    @property
    def reg_exploit_last(self) -> list[float]:
        return self.series(REG)[1]


class Iterates:
    """θ_t, the running sum of π_s for the average, and the sampling RNG: a checkpoint's state."""

    def __init__(self, n: int, rng: np.random.Generator, oracle: pg.Oracle) -> None:
        self.theta, self.total, self.rng, self.oracle = np.zeros(n), np.zeros(n), rng, oracle

    def state_dict(self) -> dict[str, Any]:
        return {"theta": self.theta.tolist(), "total": self.total.tolist(),
                "rng": self.rng.bit_generator.state, "oracle_calls": self.oracle.calls}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.theta, self.total = np.array(s["theta"]), np.array(s["total"])
        self.rng.bit_generator.state = s["rng"]
        self.oracle.calls = s["oracle_calls"]


class PreferenceRun:
    """One learner on one preference game: `run(step)` iterates θ_{t+1} = step(θ_t, t)."""

    def __init__(self, cfg: ProblemConfig, name: str, callback: Callable | None = None) -> None:
        points = log_points(cfg.steps, cfg.eval_points)
        self.run_ = Run(cfg, name, callback, plot_keys=[LAST, AVG], eval_at=points.__contains__)
        self.cfg = cfg
        self.P, self.ref = cfg.problem()
        self.rng = np.random.default_rng(cfg.seed)
        self.oracle = pg.Oracle(self.P, noisy=True, rng=self.rng)
        self.it = Iterates(len(self.ref), self.rng, self.oracle)

    def run(self, step: Callable[[np.ndarray, int], np.ndarray], tau: float = 0.0,
            oracle_calls: int | None = None) -> PreferenceHistory:
        """Drive `step(θ_t, t) -> θ_{t+1}` through the training loop; `tau` > 0 also logs the regularised
        exploitability (against π*_τ of the KL-regularised game)."""
        it, P = self.it, self.P

        def train_step(t: int) -> dict[str, float]:
            it.theta = step(it.theta, t)
            it.total += pg.softmax(it.theta)
            return {}

        def evaluate(t: int) -> dict[str, float]:
            pi = pg.softmax(it.theta)
            m = {LAST: exploitability(P, pi), AVG: exploitability(P, it.total / t if t else pi)}
            if tau > 0:
                m[REG] = regularized_exploitability(P, pi, self.ref, tau)
            return m

        self.run_.track(iterates=it)
        h = self.run_.loop(train_step, evaluate)
        pi_avg = it.total / max(self.cfg.steps, 1) if self.cfg.steps else pg.softmax(it.theta)
        calls = self.oracle.calls if oracle_calls is None else oracle_calls
        return PreferenceHistory(h.rows, h.out_dir, h.final_dir, pg.softmax(it.theta), pi_avg, calls)


def log_points(steps: int, n_points: int) -> set[int]:
    """Geometrically spaced steps (plus 0 and the last) so log-scale plots look even."""
    pts = np.unique(np.geomspace(1, max(steps, 1), num=n_points).astype(int))
    return {0, steps, *pts.tolist()}


def summary(h: PreferenceHistory) -> str:
    """The line `spkit train <learner>` prints at the end."""
    return f"exploitability  last iterate {h.exploit_last[-1]:.4f}  average iterate {h.exploit_avg[-1]:.4f}"


# ---- the convergence figure ---------------------------------------------------------------------


def plot_convergence(results: dict[str, dict], title: str = "", ax=None):
    """Exploitability vs step (log-log) for every learner; solid = last, dashed = average
    iterate; bands = min–max over seeds. `results[name]` holds "steps" (T,) and "last", "avg"
    (seeds × T). Draws on `ax`, or on a new `Figure` (which a notebook displays)."""
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(8, 4.5)).subplots()
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, r) in enumerate(results.items()):
        c = colors[k % len(colors)]
        x = np.maximum(r["steps"], 1)
        for key, style in (("last", "-"), ("avg", "--")):
            y = np.maximum(r[key], 1e-6)
            ax.plot(x, y.mean(0), style, color=c, label=f"{name} ({key})", lw=1.4)
            if y.shape[0] > 1:
                ax.fill_between(x, y.min(0), y.max(0), color=c, alpha=0.15, lw=0)
    ax.axhline(0.01, color="k", lw=0.8, ls=":")
    ax.set(xscale="log", yscale="log", xlabel="iteration t", ylabel="exploitability  max_y P(y≻π) − ½",
           title=title)
    ax.legend(fontsize=7, ncol=2)
    return ax

