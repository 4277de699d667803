r"""B-STaR — self-taught reasoning that re-balances exploration and exploitation every iteration.

Zeng, Huang, Zhao, Wang, Shan, He (2024), "B-STaR: Monitoring and Balancing Exploration and
Exploitation in Self-Taught Reasoners", arXiv:2412.17256 (official code: hkust-nlp/B-STaR).

Idea: a self-improvement loop (sample, keep what a reward accepts, fine-tune) depends on two
things that drift as it trains: how many distinct correct solutions the model can still produce
(exploration, set mostly by the sampling temperature) and how well the reward picks the good
ones (exploitation, set mostly by the reward threshold). B-STaR measures both on a dev subset at
every iteration and picks the (temperature, threshold) with the best *balance score*, which
rewards a query for having enough correct selected samples and for their selected share.

Algorithm (iteration t; one `step` of the run loop):
  1. Sample score of a completion y of query x with gold answer a:
        s(y) = w · min_j PRM(step_j) + 1[answer(y) = a],   w = `prm_weight` (official: 1/5)  # Eq. (1)
     The PRM here is exact, not learned: `spkit.tasks.arithmetic.check_steps` marks each line
     ``a op b = c`` right or wrong from the question alone (the arithmetic, the running value,
     the question's operation), so min_j PRM ∈ {0, 1} is 1 iff every step is right; this checker
     plays the role of the paper's process reward model.
  2. Selection for a query: its pool is the K samples plus the gold solution (score 1.0, as in
     the official code); sort by score (stable), keep the ones with s > θ, at most m of them,
     then drop repeated texts:  S_θ(x) = dedup(top_m{y ∈ pool : s(y) > θ}).            # Eq. (2)
  3. Balance score on the dev subset (`verifiable.dev_problems`, never trained on), for each
     temperature T in `temperatures` (K = `dev_k` samples per query) and each θ in `thetas`:
        bs_i = min(n′_i / n*, 1) · n′_i / n_i,   BS(T, θ) = mean_i bs_i                 # Eq. (3)
     n_i = |S_θ(x_i)|, n′_i = its correct members (outcome match; the gold counts), the mean over
     queries with n_i > 0 (as the official code's per-query table). (T*, θ*) = argmax BS.
  4. Sample K completions of `problems` fresh train-split problems at T*, select S_θ*(x) for
     each (Eq. 2), and fine-tune on the union, continuing from the previous iteration's weights
     and optimizer: `epochs` passes of prompt-masked maximum likelihood in minibatches.  # Eq. (4)
  5. Every `eval_every` iterations: greedy held-out accuracy (`spkit eval --tasks spkit_arith`).
Logged for the paper's central figure (`plot_balance` draws it from metrics.csv): dev/balance
(BS at the chosen pair), dev/exploration (mean distinct correct samples per dev query at T*),
dev/exploitation (mean n′_i / n_i at the chosen pair), train/temperature, train/theta.

Deviations from the paper:
  1. The PRM is the exact step checker above, so a step score is 0 or 1, and since every step
     right implies the right answer, a score is 0, 1 (right answer, some step wrong) or 1 + w.
     The default θ grid spans the three choices that remain: −0.5 keeps everything (wrong
     answers too), 0.5 every right answer and the gold, 1.0 only process-verified answers (the
     gold, scored 1.0, drops out). Because n′ counts right answers, the balance score can only
     prefer a lower θ for more right answers; ties go to the higher θ (then the lower T).
  2. m (at most m per query) is fixed; the official search grows m until the selected set reaches
     a target size. K on the dev subset is 16 (the paper: 64) and the dev subset is small: the
     search must fit a CPU budget. Dev samples count in train/samples (they are drawn too).
  3. A 3.3M-parameter model (spkit-tiny) on generated arithmetic in GSM8K's format instead of
     Mistral-7B / Llama-3-8B on GSM8K and MATH; online iterations of a small batch instead of a
     pass over the whole training set per iteration.

Commands:
  spkit train b_star --max-minutes 8 --threads 1 --out runs/b_star
  spkit train b_star --temperatures 0.5 0.9 1.2 --thetas 0.5 1.0 --out runs/b_star_small_grid
  spkit train b_star --out runs/b_star --steps 60 --resume                      # continue a run
  spkit eval --model runs/b_star/final --tasks spkit_arith                      # the same number
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spkit.config import param
from spkit.errors import SpkitError
from spkit.generation import Sampler
from spkit.rl import verifiable as V
from spkit.run import History
from spkit.seeding import derive_seed
from spkit.tasks import arithmetic

PAPER = {
    "title": "B-STaR: Monitoring and Balancing Exploration and Exploitation in Self-Taught Reasoners",
    "arxiv": "2412.17256",
    "citation": "Zeng, Huang, Zhao, Wang, Shan, He. B-STaR. ICLR 2025, arXiv:2412.17256.",
}

GOLD_SCORE = 1.0  # the gold solution's score in every pool (the official code's constant)


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(V.VerifiableConfig):
    """B-STaR settings (model, task, problems, k, max_new_tokens ... from `VerifiableConfig`);
    defaults sized for spkit-tiny on a CPU."""

    steps: int = param(100, "iterations (search on dev, sample, select, fine-tune)", ge=0, identity=False)
    eval_every: int = param(5, "evaluate every k iterations (and at the start and the end)", ge=0,
                            identity=False)
    problems: int = param(32, "train-split problems per iteration", ge=1)
    temperatures: tuple[float, ...] = param((0.5, 0.7, 0.9, 1.1), "temperature grid searched on dev (the paper: "
                                            "0.50-1.20)", gt=0)
    thetas: tuple[float, ...] = param((-0.5, 0.5, 1.0), "reward-threshold grid searched on dev (keep score > θ; "
                                      "the official search: -1 to 1)")
    m: int = param(8, "at most m selected completions per query", ge=1)
    n_star: int = param(8, "n* of the balance score: correct selections a query needs for full credit", ge=1)
    prm_weight: float = param(0.2, "w in score = w · min-step PRM + outcome (official: 1/5)", ge=0)
    dev_per_level: int = param(2, "dev problems per level in the search subset (4 levels)", ge=1)
    dev_k: int = param(16, "samples per dev problem and temperature (the paper: 64)", ge=1)
    lr: float = param(2e-5, "learning rate (Adam, kept across iterations); chosen on the dev split "
                      "(assets/results/dev_select.jsonl)", gt=0)
    epochs: int = param(1, "passes over each iteration's selected set", ge=1)
    batch_size: int = param(16, "selected completions per optimizer step", ge=1)
    micro_batch: int = param(64, "completions per forward/backward (gradient accumulation)", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)


# ---- 1. Sample score -----------------------------------------------------------------------------
def sample_scores(texts: Sequence[str], problems: Sequence[dict], k: int,
                  prm_weight: float) -> tuple[list[float], list[bool], list[bool]]:
    """(scores, outcome right, every step right) of K completions per problem, row i·K + j being
    sample j of problem i: score = w · min-step PRM + outcome match (Eq. 1)."""
    if len(texts) != len(problems) * k:
        raise SpkitError(f"{len(texts)} completions for {len(problems)} problems × {k} samples")
    right = [bool(r) for r in V.score(list(texts), problems, k).tolist()]
    steps_ok = ([all(arithmetic.check_steps(problems[i // k]["question"], t)) for i, t in enumerate(texts)]
                if prm_weight > 0 else [False] * len(texts))  # no PRM: outcome scores (another task)
    scores = [prm_weight * float(s) + float(r) for s, r in zip(steps_ok, right, strict=True)]  # Eq. (1)
    return scores, right, steps_ok


# ---- 2. Selection --------------------------------------------------------------------------------
def select(scores: Sequence[float], texts: Sequence[str], theta: float, m: int) -> list[int]:
    """Eq. (2) on one query's pool (the gold solution is one of its entries): the indices of the
    entries with score > θ, best score first (ties keep pool order), at most `m`, then the first of
    each repeated text."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    top = [i for i in order if scores[i] > theta][:m]
    seen: set[str] = set()
    out = []
    for i in top:
        if texts[i] not in seen:
            seen.add(texts[i])
            out.append(i)
    return out


def gold_completion(tokenizer, answer: str) -> tuple[str, list[int]]:
    """The gold solution as a completion: the text after ``Answer:`` in the pretraining format and
    its token ids ending in EOS, as a sampled completion that stopped at EOS ends."""
    text = f" {answer}"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text, list(ids) + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def pools(texts: Sequence[str], scores: Sequence[float], right: Sequence[bool], problems: Sequence[dict],
          k: int) -> list[tuple[list[str], list[float], list[bool]]]:
    """Per problem: (texts, scores, right) of its K samples followed by the gold solution."""
    out = []
    for i, p in enumerate(problems):
        sl = slice(i * k, (i + 1) * k)
        out.append(([*texts[sl], f" {p['answer']}"], [*scores[sl], GOLD_SCORE], [*right[sl], True]))
    return out


# ---- 3. Balance score and the dev search ---------------------------------------------------------
def balance_score(n_correct: Sequence[int], n_selected: Sequence[int], n_star: int) -> float:
    """Eq. (3): mean over queries with a selection of min(n′/n*, 1) · n′/n; 0 when none has one."""
    terms = [min(c / n_star, 1.0) * c / n for c, n in zip(n_correct, n_selected, strict=True) if n > 0]
    return sum(terms) / len(terms) if terms else 0.0


def grid_stats(texts: Sequence[str], scores: Sequence[float], right: Sequence[bool], problems: Sequence[dict],
               k: int, theta: float, m: int, n_star: int) -> dict[str, float]:
    """Balance score and exploitation of one (samples, θ) on a query set; exploration of the
    samples alone (mean distinct correct samples per query, the gold not counted)."""
    n_sel, n_cor, explore = [], [], []
    for txt, sc, ok in pools(texts, scores, right, problems, k):
        chosen = select(sc, txt, theta, m)
        n_sel.append(len(chosen))
        n_cor.append(sum(ok[i] for i in chosen))
        explore.append(len({t for t, r in zip(txt[:-1], ok[:-1], strict=True) if r}))
    shares = [c / n for c, n in zip(n_cor, n_sel, strict=True) if n > 0]
    return {"balance": balance_score(n_cor, n_sel, n_star), "exploration": sum(explore) / len(explore),
            "exploitation": sum(shares) / len(shares) if shares else 0.0}


def search(sampler: Sampler, dev: list[dict], cfg: Config, seed: int,
           task: V.Task = V.ARITH) -> tuple[float, float, dict[str, float], int]:
    """Step 3: (T*, θ*, their dev statistics, samples drawn). Ties go to the higher θ (the safer
    selection for the train batch), then the lower T."""
    best: tuple[float, float, dict[str, float]] | None = None
    def key(temp: float, theta: float, st: dict[str, float]) -> tuple[float, float, float]:
        return st["balance"], theta, -temp


    for j, temp in enumerate(cfg.temperatures):
        outs = V.sample_groups(sampler, dev, cfg.dev_k, V.rollout_params(cfg.new_tokens(task), temp, task),
                               derive_seed(seed, "dev", j))
        texts = [o.text for o in outs]
        scores, right, _ = sample_scores(texts, dev, cfg.dev_k, cfg.prm_weight)
        for theta in cfg.thetas:
            st = grid_stats(texts, scores, right, dev, cfg.dev_k, theta, cfg.m, cfg.n_star)
            if best is None or key(temp, theta, st) > key(*best):
                best = (temp, theta, st)
    assert best is not None  # the grids are validated non-empty
    return best[0], best[1], best[2], len(dev) * cfg.dev_k * len(cfg.temperatures)


# ---- 4. Sample, select, fine-tune ----------------------------------------------------------------
def selected_rows(outs, problems: list[dict], cfg: Config, theta: float, scores: list[float],
                  right: list[bool], sampler: Sampler) -> tuple[list[list[int]], list[list[int]], int]:
    """(prompt ids, completion ids, gold rows) of the union of S_θ(x) over the batch (Eq. 2)."""
    P: list[list[int]] = []
    C: list[list[int]] = []
    n_gold = 0
    texts = [o.text for o in outs]
    for i, (txt, sc, _) in enumerate(pools(texts, scores, right, problems, cfg.k)):
        for j in select(sc, txt, theta, cfg.m):
            if j == cfg.k:  # the gold solution
                P.append(sampler.encode(arithmetic.prompt(problems[i]["question"])))
                C.append(gold_completion(sampler.tokenizer, problems[i]["answer"])[1])
                n_gold += 1
            else:
                P.append(list(outs[i * cfg.k + j].prompt_ids))
                C.append(list(outs[i * cfg.k + j].token_ids))
    return P, C, n_gold


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/strict", "dev/balance", "dev/exploration", "dev/exploitation", "train/temperature",
             "train/theta"]


def _check(cfg: Config) -> None:
    if not cfg.temperatures or not cfg.thetas:
        raise SpkitError("--temperatures and --thetas need at least one value each")
    if cfg.task != "spkit_arith" and cfg.prm_weight > 0:
        raise SpkitError(f"--prm-weight {cfg.prm_weight}: the exact step checker (the PRM here) reads spkit_arith's "
                         f"steps only; on --task {cfg.task} pass --prm-weight 0 (outcome scores)")


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run B-STaR; return every logged row. `callback(step, metrics)` after each logged step."""
    _check(cfg)
    ctx = V.start(cfg, "b_star", callback, PLOT_KEYS, lr=cfg.lr)
    task, model, optimizer, counter, sampler = ctx.task, ctx.model, ctx.optimizer, ctx.counter, ctx.sampler
    dev = task.dev_problems(cfg.dev_per_level, derive_seed(cfg.seed, "dev"))  # fixed; never trained on
    n_new = cfg.new_tokens(task)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        temp, theta, st, n_dev = search(sampler, dev, cfg, derive_seed(cfg.seed, "search", t), task)  # 3
        problems = task.train_problems(cfg.problems, derive_seed(cfg.seed, "problems", t))
        outs = V.sample_groups(sampler, problems, cfg.k, V.rollout_params(n_new, temp, task),
                               derive_seed(cfg.seed, "sample", t))  # 4
        counter.samples += n_dev + len(outs)
        scores, right, steps_ok = sample_scores([o.text for o in outs], problems, cfg.k, cfg.prm_weight)  # 1
        P, C, n_gold = selected_rows(outs, problems, cfg, theta, scores, right, sampler)  # 2
        n_steps = cfg.epochs * math.ceil(len(P) / cfg.batch_size)
        losses = V.sft_minibatches(model, optimizer, P, C, n_steps, cfg.batch_size, derive_seed(cfg.seed, "batches", t),
                                   cfg.micro_batch, cfg.max_grad_norm)  # Eq. (4)
        return {"train/temperature": temp, "train/theta": theta, **{f"dev/{k}": v for k, v in st.items()},
                "train/reward": sum(right) / len(right), "train/process": sum(steps_ok) / len(steps_ok),
                "train/kept": float(len(P)), "train/kept_gold": float(n_gold), "train/samples": float(counter.samples),
                "train/dev_samples": float(n_dev), "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    return ctx.run.loop(step, ctx.evaluator(cfg), V.sample_budget(cfg))  # 5


def summary(history: History) -> str:
    """The line `spkit train b_star` prints at the end."""
    return V.summary_line(history)


# ---- the paper's central figure ------------------------------------------------------------------
def plot_balance(source: str | os.PathLike | Sequence[dict[str, float]] | History, title: str | None = None):
    """Balance score, exploration and exploitation at the chosen (T, θ) over iterations, and the
    chosen T and θ (the paper's Figure 1/5), from a run's metrics.csv, its rows or its History.
    Returns a matplotlib `Figure` (no global backend or pyplot state is touched)."""
    from matplotlib.figure import Figure

    from spkit.run.metrics import read_metrics

    if isinstance(source, History):
        rows = source.rows
    elif isinstance(source, (str, os.PathLike)):
        rows = read_metrics(source)
    else:
        rows = list(source)
    panels = [("dev/balance", "balance score"), ("dev/exploration", "exploration (distinct correct / query)"),
              ("dev/exploitation", "exploitation (correct share of selected)"),
              ("train/temperature", "chosen temperature T"), ("train/theta", "chosen threshold θ")]
    series = {k: [(r["step"], r[k]) for r in rows if k in r and math.isfinite(r[k])] for k, _ in panels}
    if not any(series.values()):
        raise SpkitError("nothing to plot: no dev/balance, dev/exploration or dev/exploitation was logged")
    fig = Figure(figsize=(12.6, 3.0))
    axes = fig.subplots(1, 4)
    for ax, keys in zip(axes, [[panels[0]], [panels[1]], [panels[2]], panels[3:]], strict=True):
        for key, label in keys:
            if series[key]:
                xs, ys = zip(*series[key], strict=True)
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=label)
        ax.set_title(" / ".join(label for _, label in keys), fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.grid(alpha=0.3)
    axes[3].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["PAPER", "Config", "GOLD_SCORE", "sample_scores", "select", "gold_completion", "pools", "balance_score",
           "grid_stats", "search", "selected_rows", "train", "summary", "plot_balance"]
