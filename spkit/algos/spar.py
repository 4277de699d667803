r"""SPaR — self-play with tree-search refinement, on `spkit_ifeval_lite`.

Cheng, Lu, Ke, Zhao, Xu, Wang, Dong, Huang (2024), "SPaR: Self-Play with Tree-Search Refinement
to Improve Instruction-Following in Large Language Models", arXiv:2412.11605.

Idea: pairs of two independent samples differ in many ways besides the one that matters (here:
whether every instruction is followed), so DPO on them also learns the irrelevant differences.
SPaR makes the rejected response a failing sample of the actor and the chosen one a *refinement*
of that same response that the model's own judge accepts: the pair differs mostly where the
failure is. A tree search over refinements, guided by the self-judge's majority vote, finds one.

Equations and steps (one iteration t; the paper's Sec. 3):
  1. Sample K responses y_1..y_K ~ π_t(·|x) at temperature T for each of `prompts` prompts x.
  2. Self-judge: V judgments j_1..j_V ~ π_t(·|judge(x, y)) ∈ {Yes, No}; the value of y is
        v(y) = (1/V) Σ_v 1[j_v = Yes],  accepted iff v(y) > ½ (majority vote)         # Eq. (1)
     measured against the rule checkers every iteration (judge/accuracy).
  3. Tree search (BFS) from a failing response y_l (the lowest-valued one of x, if v ≤ ½): expand
     each node into `branch` refinements, value them by Eq. (1), stop at the first child with
     v > ½ (the best of that level); else keep the `keep` best children and go one level
     deeper, up to `depth` levels. The accepted refinement is y_w.
  4. DPO on the pairs (x, y_w, y_l) with the current iterate as the reference, plus SPaR's SFT
     term on y_w:
        L(θ) = −log σ(β[log π_θ(y_w|x)/π_t(y_w|x) − log π_θ(y_l|x)/π_t(y_l|x)])
               − λ · (1/|y_w|) log π_θ(y_w|x)                                             # Eq. (2)
     (`spkit.rl.pairs.dpo_update`, `spkit.rl.losses.dpo_loss`).
  Baseline (`--pairs sampled`): the same K samples, judge and loss; y_w is the highest-valued
  sample the judge accepts and y_l the same failing sample, no refinement (the paper's
  self-rewarding-style pairs). Both draw from one `--max-samples` budget (refinements count).
  Seed stage (before iteration 0): the judge is fine-tuned on its own responses to
  `judge_seed_prompts` seed prompts, labelled by the rule checkers (`spkit.rl.self_judge`).

Deviations from the paper:
  1. Seed stage: SPaR fine-tunes the actor and the refiner on judgments and refinements written
     by GPT-4o-mini; here the checkers label the judge's seed data (the stand-in for the strong
     model) and there is no refinement seed data. After the seed stage the checkers only measure.
  2. Refinement: spkit-tiny was never taught to rewrite a response, so a refinement keeps a
     uniformly random prefix (in tokens) of its parent and resamples the rest from π_t — an edit
     of the parent, as a refiner's output is; the paper's refiner rewrites with a prompt that
     shows the judgment.
  3. The refiner is not trained (the paper trains it with DPO on its tree-search judgments and
     RFT on its refinements); the judge keeps its seed-stage training.
  4. A 3.3M-parameter model on generated IFEval-format prompts instead of LLaMA3-8B on IFEval.
  5. `--judge-kind verdict01` (off by default) asks for ` 1` / ` 0` instead of ` Yes` / ` No`: in
     spkit-tiny's vocabulary ` No` is one token and ` Yes` three (` `, `Y`, `es`), so a short seed
     stage leaves P(` Yes`) near zero on every response and the majority vote rejects everything
     (`assets/results/spar_judge.py` measures it); in LLaMA-3's vocabulary, where SPaR ran, both
     words are one token, which ` 1` / ` 0` restore here.

Metrics: train/oracle_pass (share of samples the checkers accept), train/failing_prompts
(prompts with a rejected sample), train/pairs (those with an accepted chosen response: a
refinement or, for the baseline, a sample), train/chosen_oracle (share of chosen responses
the checkers accept), judge/accuracy, judge/false_accept, judge/false_reject, train/samples
(responses drawn, refinements included), train/judge_calls, losses/dpo, losses/sft,
losses/pair_acc; eval/prompt_strict (the headline: `spkit eval --tasks spkit_ifeval_lite`'s
prompt-level strict accuracy), eval/inst_strict.

Commands:
  spkit train spar --max-samples 2048 --threads 1 --out runs/spar
  spkit train spar --pairs sampled --max-samples 2048 --threads 1 --out runs/spar_plain   # baseline
  spkit eval --model runs/spar/final --tasks spkit_ifeval_lite                            # the same number
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spkit.config import param
from spkit.rl import instruct
from spkit.rl import self_judge as J
from spkit.rl.pairs import Pair, dpo_update
from spkit.run import History
from spkit.sampling import Completion
from spkit.seeding import derive_seed

PAPER = {
    "title": "SPaR: Self-Play with Tree-Search Refinement to Improve Instruction-Following in Large Language Models",
    "arxiv": "2412.11605",
    "citation": "Cheng, Lu, Ke, Zhao, Xu, Wang, Dong, Huang. SPaR. ICLR 2025, arXiv:2412.11605.",
}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(J.JudgedConfig):
    steps: int = param(20, "iterations (sample, judge, refine, DPO)", ge=0, identity=False)
    k: int = param(5, "responses sampled per prompt (SPaR: 5)", ge=1)
    temperature: float = param(0.9, "response sampling temperature (SPaR: 0.9)", gt=0)
    pairs: str = param("refined", "refined = SPaR's (refinement, failing response) pairs; sampled = the baseline "
                       "(best accepted sample, failing sample)", choices=("refined", "sampled"))
    branch: int = param(3, "tree search: refinements per expanded node", ge=1)
    keep: int = param(2, "tree search: nodes kept per level (BFS beam)", ge=1)
    depth: int = param(3, "tree search: levels", ge=1)
    sft_coef: float = param(0.1, "λ: weight of the SFT term on the chosen response (SPaR: 0.1)", ge=0)
    lr: float = param(2e-5, "learning rate (Adam)", gt=0)
    judge_kind: str = param("verdict", "the judge's answers: verdict = ' Yes' / ' No' (SPaR's words; three tokens vs one in "
                            "spkit-tiny's vocabulary), verdict01 = ' 1' / ' 0' (one token each, as SPaR's Yes / No "
                            "are in LLaMA-3's)", choices=("verdict", "verdict01"))


# ---- 3. Tree-search refinement -----------------------------------------------------------------
@dataclass
class Node:
    """A response as (completion tokens, text) and its judge value."""

    tokens: list[int]
    text: str
    value: float


def as_node(c: Completion, value: float) -> Node:
    return Node(list(c.token_ids), c.text, value)


def refine(sampler, tokenizer, record: dict, parents: list[Node], branch: int, params, seed: int
           ) -> list[Node]:
    """`branch` refinements of each parent (deviation 2): keep a uniformly random prefix of the
    parent's tokens, resample the rest; values are filled in by the caller (NaN here)."""
    g = torch.Generator().manual_seed(seed)
    prompts, prefixes = [], []
    for p in parents:
        n = len(p.tokens) - (1 if len(p.tokens) and p.text != tokenizer.decode(p.tokens) else 0)
        for _ in range(branch):
            c = int(torch.randint(0, max(n, 1), (1,), generator=g))
            prefixes.append(p.tokens[:c])
            prompts.append(record["prompt"] + tokenizer.decode(p.tokens[:c]))
    outs = sampler.generate(prompts, params, seed=seed)
    kids = []
    for pre, o in zip(prefixes, outs, strict=True):
        toks = (pre + list(o.token_ids))[: params.max_new_tokens]
        text = tokenizer.decode(pre, skip_special_tokens=True) + o.text
        if len(pre) + len(o.token_ids) > params.max_new_tokens:  # over the response budget: cut
            text = tokenizer.decode(toks, skip_special_tokens=True).split("\n\n")[0]
        kids.append(Node(toks, text, float("nan")))
    return kids


def tree_search(ctx, cfg: Config, records: list[dict], roots: list[Node], seed: int,
                value: Callable[[list[dict], list[str], int], list[float]] | None = None
                ) -> tuple[list[Node | None], int, int]:
    """BFS from each root (one per record), all records level by level in one batch: the accepted
    refinement of each root (None if none within `depth`), responses drawn, judge calls.
    `value(records, texts, seed)` values the children (default: the self-judge's Eq. 1)."""
    value = value or (lambda recs, texts, s: self_judge_values(ctx, cfg, recs, texts, s))
    found: list[Node | None] = [None] * len(roots)
    frontier = [[r] for r in roots]
    drawn = calls = 0
    for d in range(cfg.depth):
        live = [i for i in range(len(roots)) if found[i] is None and frontier[i]]
        if not live:
            break
        kids = {i: refine(ctx.sampler, ctx.tokenizer, records[i], frontier[i], cfg.branch, ctx.params,
                          derive_seed(seed, "refine", d, i)) for i in live}
        flat = [(i, n) for i in live for n in kids[i]]
        drawn += len(flat)
        calls += len(flat) * cfg.votes
        vals = value([records[i] for i, _ in flat], [n.text for _, n in flat], derive_seed(seed, "judge", d))
        for (_, n), v in zip(flat, vals, strict=True):
            n.value = v
        for i in live:
            ranked = sorted(kids[i], key=lambda n: -n.value)  # stable: the first of equals
            if ranked[0].value > 0.5:
                found[i] = ranked[0]
            frontier[i] = ranked[: cfg.keep]
    return found, drawn, calls


def self_judge_values(ctx, cfg: Config, records: list[dict], texts: list[str], seed: int, k: int = 1
                      ) -> list[float]:
    """Eq. (1): the share of Yes among `votes` sampled verdicts of the current model."""
    js = J.judge(ctx.sampler, cfg.judge_kind, records, texts, cfg.votes, cfg.judge_temperature, seed, k)
    return J.values(cfg.judge_kind, js, records, k).tolist()


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/prompt_strict", "judge/accuracy", "train/oracle_pass", "train/pairs", "losses/dpo"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run SPaR (or its plain-pairs baseline); return every logged row."""
    ctx = instruct.start(cfg, "spar", callback, PLOT_KEYS, lr=cfg.lr)
    eval_recs = instruct.eval_records(cfg)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        m = J.seed_stage(ctx, cfg, cfg.judge_kind) if t == 0 else {}  # 0
        recs = instruct.TASK.train_problems(cfg.prompts, derive_seed(cfg.seed, "prompts", t))
        outs = instruct.sample_groups(ctx.sampler, recs, cfg.k, ctx.params, derive_seed(cfg.seed, "sample", t))  # 1
        texts = [o.text for o in outs]
        val = self_judge_values(ctx, cfg, recs, texts, derive_seed(cfg.seed, "judge", t), cfg.k)  # 2: Eq. (1)
        drawn, calls = len(outs), len(outs) * cfg.votes
        m |= J.accuracy(cfg.judge_kind, torch.tensor(val), recs, texts, cfg.k)
        groups = [range(i * cfg.k, (i + 1) * cfg.k) for i in range(len(recs))]
        worst = [min(g, key=lambda r: val[r]) for g in groups]
        failing = [i for i, w in enumerate(worst) if val[w] <= 0.5]  # prompts with a rejected sample
        if cfg.pairs == "refined":  # 3
            found, d2, c2 = tree_search(ctx, cfg, [recs[i] for i in failing],
                                        [as_node(outs[worst[i]], val[worst[i]]) for i in failing],
                                        derive_seed(cfg.seed, "search", t))
            drawn, calls = drawn + d2, calls + c2
            chosen = dict(zip(failing, found, strict=True))
        else:  # baseline: the best accepted sample of the same group
            best = {i: max(groups[i], key=lambda r: val[r]) for i in failing}
            chosen = {i: as_node(outs[b], val[b]) if val[b] > 0.5 else None for i, b in best.items()}
        pairs = [Pair(outs[worst[i]].prompt_ids, chosen[i].tokens, list(outs[worst[i]].token_ids))
                 for i in failing if chosen[i] is not None]
        oracle_w = [float(all(instruct.checks(recs[i], chosen[i].text))) for i in failing if chosen[i] is not None]
        ctx.counter.samples += drawn
        losses = dpo_update(ctx.model, ctx.optimizer, pairs, cfg.beta, cfg.sft_coef, cfg.epochs, cfg.micro_batch,
                            cfg.max_grad_norm)  # 4: Eq. (2)
        return {**m, "train/oracle_pass": instruct.fractions(recs, texts, cfg.k).eq(1.0).float().mean().item(),
                "train/pairs": float(len(pairs)), "train/failing_prompts": float(len(failing)),
                **({"train/chosen_oracle": sum(oracle_w) / len(oracle_w)} if oracle_w else {}),
                "train/samples": float(ctx.counter.samples), "train/judge_calls": float(calls),
                "train/seconds_per_step": time.perf_counter() - t0,
                **{f"losses/{k}": v for k, v in losses.items()}}

    def evaluate(t: int) -> dict[str, float]:
        m, _, _ = instruct.evaluate(ctx.model, ctx.tokenizer, sampler=ctx.sampler, records=eval_recs)
        return {**m, "train/samples": float(ctx.counter.samples)}

    return ctx.run.loop(step, evaluate, instruct.budget(cfg))


def summary(history: History) -> str:
    """The line `spkit train spar` prints at the end."""
    return instruct.summary_line(history)


__all__ = ["PAPER", "Config", "Node", "refine", "tree_search", "self_judge_values", "train", "summary"]
