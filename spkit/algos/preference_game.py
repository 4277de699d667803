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
- `plot_convergence`: exploitability against the step, last and average iterate, every learner;
- `LMPreferenceRun` (`--mode lm`): the same game played by a language model whose completions
  fall into response classes (`spkit.rl.lm_preference`). A learner file supplies one LM step
  t -> metrics built from its loss in `spkit.rl.losses`, on sequence log-probabilities with the
  previous iterate π_t (the policy that sampled) as reference; this module samples, judges,
  and measures the exploitability of the class distribution of π_t (fresh samples) and of the
  average iterate (all training samples so far, each iterate weighted equally).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spkit.config import param
from spkit.errors import SpkitError
from spkit.games.preference_matrices import FAMILIES, make_preference
from spkit.generation import Sampler
from spkit.logprobs import pad_right, token_logprobs
from spkit.models import is_sharded
from spkit.parallel import split_rollouts
from spkit.rl import lm_preference as lmp
from spkit.rl import preference_games as pg
from spkit.run import History, Run, RunConfig, model_for
from spkit.run.distributed import gather_objects, shard, world
from spkit.sampling import SamplingParams, row_seed
from spkit.seeding import derive_seed
from spkit.solvers.matrix import check_preference_matrix, exploitability, regularized_exploitability

LAST, AVG, REG = "eval/exploitability_last", "eval/exploitability_avg", "eval/reg_exploitability_last"


@dataclass
class ProblemConfig(RunConfig):
    """The preference game a learner plays and how it observes it."""

    family: str = param("three_cycle", "preference family", choices=FAMILIES)
    n: int = param(8, "number of responses (transitive / random families)", ge=2)
    matrix_seed: int = param(0, "seed of the preference matrix (0 = the margins (0.3, 0.1, 0.2) 3-cycle)")
    matrix: list | None = param(None, "explicit n×n preference matrix (overrides family; Python only)")
    mode: str = param("exact", "exact (expected update) | sampled (K samples, noisy oracle) | lm (the "
                      "language-model game of spkit.rl.lm_preference)", choices=("exact", "sampled", "lm"))
    model: str = param("spkit-tiny", "lm mode: model name or save_pretrained directory")
    topics: int = param(4, "lm mode: prompts 'Tell me about <topic>.' (the first of lm_preference.TOPICS)",
                        ge=1, le=len(lmp.TOPICS))
    judge: str = param("oracle", "lm mode: who compares two completions: the class matrix (oracle) or a "
                       "pairwise model trained on judge_pairs oracle comparisons (learned)",
                       choices=("oracle", "learned"))
    judge_pairs: int = param(2000, "lm mode: oracle comparisons of π_0 samples the learned judge is fit on", ge=1)
    lm_lr: float = param(1e-4, "lm mode: Adam learning rate on the model's weights", gt=0)
    max_new_tokens: int = param(16, "lm mode: completion length limit (a completion ends at its first '.')", ge=1)
    eval_samples: int = param(64, "lm mode: fresh samples per prompt to estimate π_t's class distribution",
                              ge=1, identity=False)
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



# ---- the language-model game (--mode lm) --------------------------------------------------------

CLASS_KEYS = tuple(f"eval/class_{c}" for c in lmp.CLASSES)


def topic_key(topic: int, cls: int) -> str:
    """The metric holding prompt `topic`'s share of class `cls` among π_t's evaluation samples."""
    return f"eval/topic_{topic}/{lmp.CLASSES[cls]}"


@dataclass
class LMBatch:
    """K completions of each prompt from the policy that sampled them, grouped by prompt."""

    prompt_ids: list[list[int]]
    token_ids: list[list[int]]
    texts: list[str]
    classes: np.ndarray  # (B,)
    prev_logps: torch.Tensor  # (B,) log π_t(y|x) of the sampling policy, fixed
    groups: int
    K: int

    def group(self, g: int) -> slice:
        return slice(g * self.K, (g + 1) * self.K)


class LMState:
    """What an LM run's checkpoint holds besides the model: the oracle RNG, the class counts of
    all training samples (the average iterate) and the comparisons asked."""

    def __init__(self, n_prompts: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.avg_counts = np.zeros((n_prompts, len(lmp.CLASSES)))
        self.calls = 0

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "avg_counts": self.avg_counts.tolist(), "calls": self.calls}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.rng.bit_generator.state = s["rng"]
        self.avg_counts, self.calls = np.array(s["avg_counts"]), s["calls"]


class LMPreferenceRun:
    """One learner on the language-model preference game: `run(step)` calls `step(t) -> metrics`.

    Gives a learner's LM step: `rollout` (K completions per prompt from the current model, their
    classes and log π_t), `oracle(batch, g)` (comparisons within prompt g), `logps` (differentiable
    sequence log-probs), `ref_logps` (under the frozen initial model π_ref = π_0) and `fit`
    (optimiser steps on a loss).

    Under torchrun every rank samples its `shard` of each batch (with the whole batch's row
    seeds), then all ranks gather the whole batch: the oracle draws, class counts and losses are
    the single process's. Each rank differentiates only its shard's log-probs (the other rows
    enter the loss as gathered values), so the ranks' gradients sum to the whole batch's: `fit`
    scales by the world size because the run loop averages them. 2 ranks × B rows make the
    update 1 process × 2B makes (tested). Nash-MD's mixture sampling is not split.
    """

    def __init__(self, cfg: ProblemConfig, name: str, callback: Callable | None = None) -> None:
        self.cfg = cfg
        self.run_ = Run(cfg, name, callback, plot_keys=[LAST, AVG])
        self.model, self.tok = model_for(cfg)
        self.ref = copy.deepcopy(self.model).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lm_lr)
        self.sampler = Sampler(self.model, self.tok)
        self.params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=1.0, stop=(".",),
                                     include_stop=True)
        self.prompts = [lmp.prompt(t) for t in lmp.TOPICS[: cfg.topics]]
        self.P = lmp.class_matrix()
        self.state = LMState(len(self.prompts), derive_seed(cfg.seed, "oracle"))
        self.judge = self._fit_judge() if cfg.judge == "learned" else None
        self._asked: list[lmp.GroupOracle] = []
        self._stop_ids: set[int] | None = None
        self.run_.track(model=self.model, tokenizer=self.tok, optimizer=self.optimizer, lm=self.state)

    # ---- samples and judgements
    def sample(self, n: int, seed: int, split: bool = True) -> tuple[list, np.ndarray]:
        """n completions of every prompt (prompt-major) and their classes. `split`: each rank
        samples its shard, then all gather (a collective: every rank must call it; rank 0's
        evaluation passes False). Row i draws from row_seed(seed, i) whichever rank samples it."""
        prompts = [p for p in self.prompts for _ in range(n)]
        with split_rollouts(split):  # the sampler samples this rank's rows and gathers the batch
            outs = self.sampler.generate(prompts, self.params, seed=seed,
                                         row_seeds=[row_seed(seed, i) for i in range(len(prompts))])
        return outs, np.array([lmp.classify(o.text) for o in outs])

    def rollout(self, t: int, tag: str = "sample", K: int | None = None, record: bool = True) -> LMBatch:
        """K completions per prompt from the current model; `record` adds their classes to the
        average iterate's counts."""
        K = K or self.cfg.K
        outs, cls = self.sample(K, derive_seed(self.cfg.seed, tag, t))
        if record:
            np.add.at(self.state.avg_counts, (np.repeat(np.arange(len(self.prompts)), K), cls), 1.0)
        prev = torch.tensor([float(sum(o.logprobs)) for o in outs])
        return LMBatch([o.prompt_ids for o in outs], [o.token_ids for o in outs], [o.text for o in outs],
                       cls, prev, len(self.prompts), K)

    def oracle(self, batch: LMBatch, g: int) -> lmp.GroupOracle:
        sl = batch.group(g)
        return self.asked(lmp.GroupOracle(batch.classes[sl], self.state.rng, P=self.P, judge=self.judge,
                                          texts=batch.texts[sl]))

    def asked(self, o: lmp.GroupOracle) -> lmp.GroupOracle:
        """Count `o`'s comparisons in the run's total."""
        self._asked.append(o)
        return o

    def stop_ids(self) -> set[int]:
        """Token ids that end a completion: EOS and every token whose text holds a '.'."""
        if self._stop_ids is None:
            texts = self.tok.batch_decode([[i] for i in range(len(self.tok))])
            self._stop_ids = {i for i, x in enumerate(texts) if "." in x} | self.sampler.eos_ids()
        return self._stop_ids

    def win_rates(self, batch: LMBatch, include_self: bool) -> torch.Tensor:
        """(B,) each completion's win rate among its prompt's K (`pg.empirical_win_rates`)."""
        return torch.tensor(np.concatenate([pg.empirical_win_rates(np.arange(batch.K), self.oracle(batch, g),
                                                                   include_self) for g in range(batch.groups)]))

    def pairs(self, batch: LMBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """All pairs within each prompt's K completions, ordered by one comparison each (`pg.ordered_pairs`):
        batch indices (winners, losers)."""
        w, lo = zip(*(pg.ordered_pairs(np.arange(batch.K), self.oracle(batch, g)) for g in range(batch.groups)),
                    strict=True)
        off = [g * batch.K for g in range(batch.groups)]
        return (torch.as_tensor(np.concatenate([x + o for x, o in zip(w, off, strict=True)])),
                torch.as_tensor(np.concatenate([x + o for x, o in zip(lo, off, strict=True)])))

    def _fit_judge(self) -> lmp.LearnedJudge:
        """The PairRM role: fit a pairwise model on oracle comparisons of π_0's completions."""
        n = max(2, int(np.ceil(np.sqrt(2 * self.cfg.judge_pairs / len(self.prompts)))))
        outs, cls = self.sample(n, derive_seed(self.cfg.seed, "judge"))
        rng = np.random.default_rng(derive_seed(self.cfg.seed, "judge_pairs"))
        a, b = rng.integers(0, len(outs), self.cfg.judge_pairs), rng.integers(0, len(outs), self.cfg.judge_pairs)
        wins = rng.random(len(a)) < self.P[cls[a], cls[b]]
        judge = lmp.LearnedJudge(seed=derive_seed(self.cfg.seed, "judge_init"))
        judge.fit([outs[i].text for i in a], [outs[i].text for i in b], wins)
        return judge

    # ---- log-probabilities and updates
    def token_logps(self, batch: LMBatch, model=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) token log-probs of the completions and the mask; under torchrun only this rank's
        shard of rows is differentiable (the others are gathered values, see the class note)."""
        rows = shard(len(batch.token_ids))
        if rows.stop == rows.start and is_sharded(self.model):  # every FSDP forward needs every rank
            raise SpkitError(f"--fsdp: a batch of {len(batch.token_ids)} completions leaves a rank without "
                             "one; raise --topics or --K")
        mine = token_logprobs(model or self.model, batch.prompt_ids[rows], batch.token_ids[rows]
                              ) if rows.stop > rows.start else []
        lp = [torch.tensor(v) for part in gather_objects([x.detach().tolist() for x in mine]) for v in part]
        lp[rows] = mine
        return pad_right(lp), pad_right([[1.0] * len(x) for x in lp], max(len(x) for x in lp))

    def logps(self, batch: LMBatch) -> torch.Tensor:
        """(B,) log π_θ(y|x), differentiable."""
        lp, mask = self.token_logps(batch)
        return (lp * mask).sum(-1)

    def ref_logps(self, batch: LMBatch) -> torch.Tensor:
        """(B,) log π_ref(y|x) under the frozen initial model."""
        with torch.no_grad():
            lp, mask = self.token_logps(batch, self.ref)
        return (lp * mask).sum(-1)

    def fit(self, loss_fn: Callable[[], torch.Tensor], steps: int) -> float:
        """`steps` optimiser steps of loss_fn() (which recomputes log π_θ); the last loss."""
        loss = torch.tensor(0.0)
        self.model.train()
        for _ in range(steps):
            self.optimizer.zero_grad()
            loss = loss_fn()
            (loss * world()[1]).backward()  # the ranks' shards' gradients sum to the batch's; the loop averages
            self.optimizer.step()
        self.model.eval()
        return float(loss.detach())

    # ---- the loop
    def run(self, step: Callable[[int], dict[str, float]]) -> PreferenceHistory:
        cfg = self.cfg
        rng = np.random.default_rng(derive_seed(cfg.seed, "bootstrap"))

        def train_step(t: int) -> dict[str, float]:
            self._asked = []
            m = step(t)
            self.state.calls += sum(o.calls for o in self._asked)
            return {**m, "train/oracle_calls": float(self.state.calls)}

        def evaluate(t: int) -> dict[str, float]:
            _, cls = self.sample(cfg.eval_samples, derive_seed(cfg.seed, "eval", t), split=False)  # rank 0 only
            counts = np.zeros((len(self.prompts), len(lmp.CLASSES)))
            np.add.at(counts, (np.repeat(np.arange(len(self.prompts)), cfg.eval_samples), cls), 1.0)
            e, lo, hi = lmp.exploitability_interval(counts, self.P, rng)
            m = {LAST: e, LAST + "_lo": lo, LAST + "_hi": hi}
            m |= dict(zip(CLASS_KEYS, counts.sum(0) / counts.sum(), strict=True))
            m |= {topic_key(g, c): counts[g, c] / cfg.eval_samples for g in range(len(self.prompts))
                  for c in range(len(lmp.CLASSES))}  # per prompt (the LM explorer's view)
            if self.state.avg_counts.sum():
                a, alo, ahi = lmp.exploitability_interval(self.state.avg_counts, self.P, rng)
                m |= {AVG: a, AVG + "_lo": alo, AVG + "_hi": ahi}
            else:
                m |= {AVG: e, AVG + "_lo": lo, AVG + "_hi": hi}
            return m

        h = self.run_.loop(train_step, evaluate, split_rollouts=False)  # `sample` splits the rows itself
        return PreferenceHistory(h.rows, h.out_dir, h.final_dir, None, None, self.state.calls)
