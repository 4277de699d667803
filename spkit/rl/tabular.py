"""Tabular preference-game machinery shared by every preference learner in `spkit.algos`.

A "policy" over n responses is a logit vector θ (π = softmax θ) — the finite-response stand-in
for a language model, where log π(y) is what the model would return for a completion y. Each
learner supplies one *step* θ_t -> θ_{t+1}; this module supplies the rest, written once:

- the preference oracle: exact (returns P(y ≻ y')) or noisy (returns a Bernoulli draw of it);
- sampling K responses, win-rate estimates, Bradley–Terry fitting;
- `fit_logits`: a few optimiser steps of a `spkit.rl.losses` loss on the logits (sampled form);
- `run`: the loop, the uniform average iterate π̄_T = (1/T) Σ_t π_t, exploitability logging.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from spkit.errors import SpkitError
from spkit.rl.losses import inpo_loss
from spkit.solvers.matrix import (
    check_preference_matrix,
    exploitability,
    regularized_exploitability,
)

__all__ = [
    "softmax",
    "log_softmax",
    "mirror_step",
    "Oracle",
    "sample",
    "empirical_win_rates",
    "ordered_pairs",
    "fit_bradley_terry",
    "fit_logits",
    "inpo_pair_loss",
    "History",
    "run",
]

Step = Callable[[np.ndarray, int], np.ndarray]  # (logits θ_t, step t) -> θ_{t+1}


def softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return e / e.sum()


def log_softmax(theta: np.ndarray) -> np.ndarray:
    z = theta - theta.max()
    return z - np.log(np.exp(z).sum())


def mirror_step(
    log_pi: np.ndarray, payoff: np.ndarray, eta: float, tau: float = 0.0, log_ref: np.ndarray | None = None
) -> np.ndarray:
    """KL-regularised mirror-descent step in log space, returned normalised:
    log π_{t+1} = (1 − ητ) log π_t + ητ log π_ref + η·payoff  (− log Z).

    With τ = 0 it is Hedge / multiplicative weights. Every "exact" preference learner is this
    step with a different payoff or anchor, which is what makes them comparable.
    """
    z = (1.0 - eta * tau) * log_pi + eta * payoff
    if tau:
        if log_ref is None:
            raise SpkitError("mirror_step with tau > 0 needs log_ref")
        z = z + eta * tau * log_ref
    return log_softmax(z)


# ---- Oracle and sampling


@dataclass
class Oracle:
    """Preference oracle over responses 0..n−1. `noisy=True` answers with one Bernoulli(P[i, j])
    comparison (a human or a judge model); otherwise with the probability itself."""

    P: np.ndarray
    noisy: bool = True
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    calls: int = 0

    def __post_init__(self) -> None:
        self.P = check_preference_matrix(self.P)

    def __call__(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """P̂(i ≻ j) for index arrays of equal shape (1.0 = i preferred)."""
        p = self.P[i, j]
        self.calls += int(np.size(p))
        if not self.noisy:
            return p
        return (self.rng.random(np.shape(p)) < p).astype(float)


def sample(pi: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """K i.i.d. responses from π (indices)."""
    return rng.choice(len(pi), size=k, p=pi)


def empirical_win_rates(ys: np.ndarray, oracle: Oracle, include_self: bool = True) -> np.ndarray:
    """p̂_i = mean_j P̂(y_i ≻ y_j) over the K samples: an estimate of P(y_i ≻ π_t).

    SPPO includes the sample itself (scored ½); SPO's win rate against the *others* excludes it.
    """
    k = len(ys)
    i, j = np.triu_indices(k, 1)  # query each unordered pair once
    wins = np.full((k, k), 0.5)  # (K, K); the diagonal is a tie with oneself
    wins[i, j] = oracle(ys[i], ys[j])
    wins[j, i] = 1.0 - wins[i, j]
    if include_self:
        return wins.mean(1)
    if k < 2:
        raise SpkitError("win rates against the other samples need K >= 2")
    return (wins.sum(1) - 0.5) / (k - 1)


def ordered_pairs(ys: np.ndarray, oracle: Oracle) -> tuple[np.ndarray, np.ndarray]:
    """All K(K−1)/2 pairs of the samples, each ordered by one preference draw -> (y_w, y_l).

    A noisy oracle already answers 0/1; an exact oracle's probability is turned into one draw,
    because a pairwise loss needs an ordered pair either way.
    """
    i, j = np.triu_indices(len(ys), 1)
    a, b = ys[i], ys[j]
    p = oracle(a, b)
    a_wins = p > 0.5 if oracle.noisy else oracle.rng.random(len(a)) < p
    return np.where(a_wins, a, b), np.where(a_wins, b, a)


# ---- Reward models


def fit_bradley_terry(wins: np.ndarray, ridge: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Maximum-likelihood BT rewards r from a (weighted) win-count matrix wins[i, j] = #(i ≻ j).

    Newton's method on Σ_ij wins_ij log σ(r_i − r_j) − ridge/2 ‖r‖²; rewards are centred.
    The ridge keeps responses that were never compared at r = 0 instead of ±∞.
    """
    W = np.asarray(wins, dtype=float)
    n = W.shape[0]
    N = W + W.T  # comparisons per pair
    r = np.zeros(n)
    for _ in range(iters):
        S = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
        grad = (W - N * S).sum(1) - ridge * r
        C = N * S * (1 - S)
        H = -np.diag(C.sum(1)) + C - ridge * np.eye(n)  # (n, n) Hessian, negative semi-definite
        # r and r + c·1 fit equally well: −11ᵀ removes that flat direction (grad ⟂ 1 at ridge 0)
        delta = np.linalg.solve(H - np.ones((n, n)), -grad)
        r = r + delta
        if np.abs(delta).max() < 1e-12:
            break
    return r - r.mean()


# ---- Sampled-form optimisation on logits


def fit_logits(
    theta: np.ndarray, loss_fn: Callable[[torch.Tensor], torch.Tensor], steps: int, lr: float
) -> np.ndarray:
    """`steps` plain gradient steps of loss_fn(log π_θ) on the logits, starting from θ.

    `loss_fn` receives the (n,) tensor log_softmax(θ) and returns a scalar — exactly what a
    language model's summed token log-probs would feed the same loss.
    """
    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    for _ in range(steps):
        loss = loss_fn(torch.log_softmax(t, dim=0))
        (grad,) = torch.autograd.grad(loss, t)
        with torch.no_grad():
            t -= lr * grad
    return t.detach().numpy()


def inpo_pair_loss(
    theta_t: np.ndarray, log_ref: np.ndarray, yw: np.ndarray, yl: np.ndarray, eta: float, tau: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The INPO pairwise loss on ordered pairs, as a function of log π_θ, anchored at θ_t.

    Its minimiser is the OMD step from π_t against the distribution the pairs were drawn from,
    so INPO (pairs from π_t) and Nash-MP's two half-steps (pairs from π_t, then π_{t+½}) share it.
    """
    prev = torch.tensor(log_softmax(theta_t))  # (n,) log π_t, fixed
    ref = torch.tensor(log_ref)  # (n,)
    w, lo = torch.as_tensor(yw), torch.as_tensor(yl)

    def loss(logp: torch.Tensor) -> torch.Tensor:
        return inpo_loss(logp[w], logp[lo], ref[w], ref[lo], prev[w], prev[lo], eta, tau)

    return loss


# ---- Run loop


@dataclass
class History:
    """Logged curves of one run: exploitability of the last and the average iterate."""

    steps: list[int] = field(default_factory=list)
    exploit_last: list[float] = field(default_factory=list)
    exploit_avg: list[float] = field(default_factory=list)
    reg_exploit_last: list[float] = field(default_factory=list)
    pi_last: np.ndarray | None = None
    pi_avg: np.ndarray | None = None
    oracle_calls: int = 0

    def as_dict(self) -> dict:
        return {
            "steps": self.steps,
            "exploit_last": self.exploit_last,
            "exploit_avg": self.exploit_avg,
            "reg_exploit_last": self.reg_exploit_last,
            "pi_last": None if self.pi_last is None else self.pi_last.tolist(),
            "pi_avg": None if self.pi_avg is None else self.pi_avg.tolist(),
            "oracle_calls": self.oracle_calls,
        }


def _log_points(steps: int, n_points: int) -> set[int]:
    """Geometrically spaced steps (plus 0 and the last) so log-scale plots look even."""
    pts = np.unique(np.geomspace(1, max(steps, 1), num=n_points).astype(int))
    return {0, steps, *pts.tolist()}


def run(
    step: Step,
    P: np.ndarray,
    theta0: np.ndarray,
    steps: int,
    ref: np.ndarray | None = None,
    tau: float = 0.0,
    n_points: int = 60,
    callback: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
) -> History:
    """Iterate θ_{t+1} = step(θ_t, t) for `steps` steps; log exploitability of π_t and of the
    average π̄_t = (1/t) Σ_{s=1..t} π_s, plus the regularised exploitability when τ > 0."""
    P = check_preference_matrix(P)
    theta = np.asarray(theta0, dtype=float).copy()
    pi = softmax(theta)
    total = np.zeros_like(pi)
    hist = History()
    points = _log_points(steps, n_points)
    for t in range(steps + 1):
        if t > 0:
            theta = step(theta, t - 1)
            pi = softmax(theta)
            total += pi
        if t in points:
            avg = total / t if t else pi
            hist.steps.append(t)
            hist.exploit_last.append(exploitability(P, pi))
            hist.exploit_avg.append(exploitability(P, avg))
            if ref is not None and tau > 0:
                hist.reg_exploit_last.append(regularized_exploitability(P, pi, ref, tau))
            if callback is not None:
                callback(t, pi, avg)
    hist.pi_last = pi
    hist.pi_avg = total / max(steps, 1) if steps else pi
    return hist


# ---- Problem set-up and command line (shared by the learner files)


def param(default, doc: str):
    """A dataclass field with its one-line doc, which also becomes the `--flag` help text."""
    return field(default=default, metadata={"help": doc})


@dataclass
class ProblemConfig:
    """The preference game a learner plays and how it observes it: the fields every learner's
    `Config` shares (each learner subclasses it and adds its own step sizes)."""

    family: str = param("three_cycle", "preference family: transitive | condorcet | three_cycle | random")
    n: int = param(8, "number of responses (transitive / random families)")
    matrix_seed: int = param(0, "seed of the preference matrix (0 = the margins (0.3, 0.1, 0.2) 3-cycle)")
    matrix: list | None = param(None, "explicit n×n preference matrix (overrides family)")
    mode: str = param("exact", "exact (expected update) | sampled (K samples, noisy oracle)")
    seed: int = param(0, "seed of sampling and oracle noise")

    def problem(self) -> tuple[np.ndarray, np.ndarray]:
        """(P, π_ref) for this config; see `problem`."""
        return problem(self.family, self.n, self.matrix_seed, self.matrix)


def problem(family: str, n: int, matrix_seed: int, matrix: list | None = None):
    """(P, π_ref): the preference matrix of a family (or an explicit `matrix`) and a uniform
    reference policy — the starting point of every learner (θ_0 = 0 means π_0 = π_ref)."""
    from spkit.tasks.preference import make_preference

    P = check_preference_matrix(matrix) if matrix is not None else make_preference(family, n, matrix_seed)
    return P, np.full(P.shape[0], 1.0 / P.shape[0])


def add_config_arguments(parser, config_cls) -> None:
    """One `--field` flag per dataclass field (scalars only), help = the field's doc."""
    import dataclasses

    for f in dataclasses.fields(config_cls):
        if f.default is None or isinstance(f.default, (list, dict)):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=f.default,
                                help=f.metadata.get("help", ""))
        else:
            parser.add_argument(flag, type=kind, default=f.default, help=f.metadata.get("help", ""))


def config_from_args(config_cls, args):
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in vars(args).items() if k in names})


def cli(config_cls, train_fn, name: str):
    """`add_arguments` and `main` of a learner's `spkit train NAME` subcommand."""

    def add_arguments(parser) -> None:
        add_config_arguments(parser, config_cls)
        parser.add_argument("--out", default=f"runs/{name}", help="output directory")

    def main(args) -> int:
        return cli_main(train_fn, config_from_args(config_cls, args), args.out)

    return add_arguments, main


def cli_main(train_fn, cfg, out: str | None) -> int:
    """Run `train_fn(cfg)`, print the final exploitabilities and save config + curves as JSON."""
    import dataclasses
    import json
    from pathlib import Path

    hist = train_fn(cfg)
    print(f"exploitability  last iterate {hist.exploit_last[-1]:.4f}  average iterate {hist.exploit_avg[-1]:.4f}")
    if out:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        (d / "history.json").write_text(json.dumps(hist.as_dict()))
        _save_curve(hist, train_fn.__module__.rsplit(".", 1)[-1], d / "exploitability.png")
        print(f"wrote {d / 'history.json'} and {d / 'exploitability.png'}")
    return 0


def _save_curve(hist: History, name: str, path) -> None:
    """Exploitability of the last and average iterate vs step, as a PNG beside the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    from spkit.widgets.preference import plot_convergence

    curves = {"steps": np.array(hist.steps), "last": np.array([hist.exploit_last]),
              "avg": np.array([hist.exploit_avg])}
    ax = plot_convergence({name: curves}, title=f"{name}: exploitability of the iterates")
    ax.figure.savefig(path, dpi=110, bbox_inches="tight")
    matplotlib.pyplot.close(ax.figure)
