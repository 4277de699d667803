# %% [markdown]
# ## Iterative alignment with a self-judge
#
# The learners above get their preferences from an oracle. The papers of this section take them
# from the model itself, or from a curator, and iterate: sample → judge → pair → DPO → repeat.
# The task is `spkit_ifeval_lite` (IFEval-format prompts with 1–2 verifiable instructions); its
# rule checkers are the exact oracle that *measures* every judge, and the reported number is
# `spkit eval --tasks spkit_ifeval_lite`'s prompt-level strict accuracy on 200 held-out prompts.
#
# | trainer | who labels the pair | pair | paper |
# |---|---|---|---|
# | `online_iterative_dpo` | the checkers' fraction of instructions followed | best vs worst of K, ties dropped | RLHF Workflow, arXiv:2405.07863 |
# | `self_rewarding` (`--temporal`) | the model's own score (one point per instruction) | max vs min of its scores | arXiv:2401.10020 (arXiv:2508.06026) |
# | `spar` (`--pairs sampled`) | the model's own Yes/No, majority of 5 | a failing response vs its accepted *refinement* (baseline: vs another sample) | SPaR, arXiv:2412.11605 |
# | `self_consuming` | a curator (checkers, or a style preference) | none: maximum likelihood on the kept sample | arXiv:2407.09499 |
#
# Three questions: how good is the self-judge (and does it drift as the policy moves)? What does
# retraining on curated own samples do to diversity? And what do SPaR's refinement pairs buy
# over plain pairs?

# %%
import difflib
import json
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from spkit.algos import self_consuming, self_rewarding, spar
from spkit.generation import Sampler
from spkit.models import load_model
from spkit.rl import instruct
from spkit.rl import verifiable as V
from spkit.run import lesson_out
from spkit.run.metrics import read_metrics
from spkit.seeding import derive_seed

SMALL = os.environ.get("SPKIT_SMALL")
torch.set_num_threads(1)
OUT_SJ = lesson_out("06_self_judge")
RESULTS = Path(instruct.__file__).resolve().parents[2] / "assets" / "results"
t_sj = time.time()

# %% [markdown]
# ### The diversity cost of self-consuming loops, exactly
#
# Curation by the Luce rule keeps sample $y_k$ of $K$ with probability
# $e^{r(y_k)}/\sum_j e^{r(y_j)}$; retraining on the kept samples gives the next model. On a finite
# set of response *classes* that update can be computed exactly by enumerating all $K$-tuples:
# $p_{t+1}(y) = \sum_{(y_1..y_K)} \prod_j p_t(y_j) \sum_{k: y_k = y} e^{r(y)}/\sum_j e^{r(y_j)}$.
# As $K\to\infty$ it tends to $p_{t+1} \propto p_t e^{r}$: the expected reward rises every
# generation and the entropy falls toward the argmax. Mixing a share $\lambda$ of real data,
# $p_{t+1} = \lambda p_{data} + (1-\lambda)\,\text{curated}(p_t)$, keeps it near the data.

# %%
import itertools  # noqa: E402


def curated(p, r, K):
    """The exact next distribution after K-sample Luce curation of p (enumerating all K-tuples)."""
    nxt = np.zeros_like(p)
    w = np.exp(r)
    for tup in itertools.product(range(len(p)), repeat=K):
        prob = np.prod(p[list(tup)])
        z = w[list(tup)].sum()
        for y in tup:
            nxt[y] += prob * w[y] / z
    return nxt


def entropy_bits(p):
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


r = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])  # the curator's reward of 6 response classes
p_data = np.full(6, 1 / 6)
curves = {}
for lam in (0.0, 0.5):
    p, rew, ent = p_data.copy(), [], []
    for _ in range(12):
        rew.append(float(p @ r))
        ent.append(entropy_bits(p))
        p = lam * p_data + (1 - lam) * curated(p, r, K=3)
    curves[lam] = (rew, ent)
fig, ax = plt.subplots(1, 2, figsize=(9, 3))
for lam, (rew, ent) in curves.items():
    ax[0].plot(rew, marker="o", label=f"real data λ = {lam}")
    ax[1].plot(ent, marker="o", label=f"real data λ = {lam}")
ax[0].set(xlabel="generation", ylabel="E[r]", title="curator's reward (exact)")
ax[1].set(xlabel="generation", ylabel="bits", title="entropy over classes (exact)")
ax[1].legend()
plt.tight_layout()
plt.show()
exact_sc = {lam: (rew[0], rew[-1], ent[0], ent[-1]) for lam, (rew, ent) in curves.items()}
print({lam: tuple(round(x, 3) for x in v) for lam, v in exact_sc.items()})

# %% [markdown]
# The same loop on spkit-tiny: each generation draws $K$ responses per prompt, the curator (the
# checkers' fraction, $\tau$ = 0.1) keeps one by the Luce rule, and the model takes a few
# maximum-likelihood steps on the kept ones. Diversity is the entropy of the response classes
# (`instruct.response_class`: case, title, quotes, commas, end phrase, keywords, length bucket).

# %%
sc_cfg = self_consuming.Config(prompts=4 if SMALL else 8, k=4 if SMALL else 8, steps=2 if SMALL else 4,
                               eval_every=0, eval_limit=16 if SMALL else 40, threads=1, out=str(OUT_SJ / "sc"),
                               overwrite=True, plot=False, tensorboard=False)
sc_hist = self_consuming.train(sc_cfg)
sc_rows = [r for r in sc_hist.rows if "train/class_entropy" in r]
fig, ax = plt.subplots(1, 2, figsize=(9, 3))
ax[0].plot([r["train/reward"] for r in sc_rows], marker="o")
ax[0].set(xlabel="generation", ylabel="mean checker fraction", title="curator's reward (live)")
ax[1].plot([r["train/class_entropy"] for r in sc_rows], marker="o")
ax[1].set(xlabel="generation", ylabel="bits", title="class entropy of samples (live)")
plt.tight_layout()
plt.show()
print(self_consuming.summary(sc_hist))

# %% [markdown]
# ### How good is the self-judge?
#
# spkit-tiny never saw a judge prompt, so both Self-Rewarding and SPaR begin with a *seed stage*:
# the model's own responses to seed prompts, labelled by the checkers (the stand-in for the
# papers' human or GPT-4o seed judgments), balanced between labels, a short fine-tune. After that
# the checkers only measure: every iteration logs the judge's accuracy on fresh samples. A judge
# that learned only the base rate scores the base rate — compare `judge/accuracy` with the share
# of responses whose label is the majority one.

# %%
sr_cfg = self_rewarding.Config(prompts=4 if SMALL else 8, steps=2 if SMALL else 3, eval_every=1,
                               eval_limit=16 if SMALL else 40, judge_seed_prompts=8 if SMALL else 32,
                               judge_seed_steps=4 if SMALL else 20, threads=1, out=str(OUT_SJ / "sr"),
                               overwrite=True, plot=False, tensorboard=False)
sr_hist = self_rewarding.train(sr_cfg)
sr_rows = [r for r in sr_hist.rows if "judge/accuracy" in r]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([r["judge/accuracy"] for r in sr_rows], marker="o", label="judge accuracy (exact score)")
s_, w_ = sr_hist.series("eval/win_vs_prev")
ax.plot([x - 1 for x in s_], w_, marker="s", label="oracle win rate vs previous")
ax.set(xlabel="iteration", ylim=(0, 1), title="Self-Rewarding, live")
ax.legend()
plt.show()
print(self_rewarding.summary(sr_hist))

# %% [markdown]
# ### SPaR's refinement pairs against plain pairs
#
# A plain pair holds two independent samples: they differ in the instruction that failed and in
# everything else. SPaR's chosen response is a *refinement* of the rejected one (here: a kept
# prefix, the rest resampled), accepted by the judge. To see the pair construction alone, the
# cell below uses the checkers as the judge and measures how alike chosen and rejected are
# (`difflib`'s similarity of the texts, 1 = identical).

# %%
model, tok = load_model("spkit-tiny", device="cpu")
sampler = Sampler(model, tok)
cfg_p = spar.Config(prompts=6 if SMALL else 16, branch=3, keep=2, depth=2)
ctx = SimpleNamespace(sampler=sampler, tokenizer=tok, params=V.rollout_params(128, cfg_p.temperature, instruct.TASK))
recs = instruct.TASK.train_problems(cfg_p.prompts, derive_seed(0, "lesson_pairs"))
outs = instruct.sample_groups(sampler, recs, cfg_p.k, ctx.params, seed=1)
frac = instruct.fractions(recs, [o.text for o in outs], cfg_p.k).tolist()
groups = [range(i * cfg_p.k, (i + 1) * cfg_p.k) for i in range(len(recs))]
worst = [min(g, key=lambda j: frac[j]) for g in groups]
fail = [i for i, w in enumerate(worst) if frac[w] < 1]


def checker_value(rs, texts, seed):
    return [float(v == 1.0) for v in instruct.fractions(rs, texts).tolist()]


found, drawn, _ = spar.tree_search(ctx, cfg_p, [recs[i] for i in fail],
                                   [spar.Node(list(outs[worst[i]].token_ids), outs[worst[i]].text, 0.0) for i in fail],
                                   seed=2, value=checker_value)
sim_refined = [difflib.SequenceMatcher(None, n.text, outs[worst[i]].text).ratio()
               for i, n in zip(fail, found, strict=True) if n is not None]
sim_plain = [difflib.SequenceMatcher(None, outs[max(groups[i], key=lambda j: frac[j])].text, outs[worst[i]].text).ratio()
             for i in fail if max(frac[j] for j in groups[i]) == 1.0]
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist([sim_plain, sim_refined], bins=10, range=(0, 1), label=["plain pairs", "refinement pairs"])
ax.set(xlabel="similarity of chosen and rejected", ylabel="pairs")
ax.legend()
plt.show()
print(f"{len(fail)} prompts with a failing sample; plain pairs {len(sim_plain)} (mean similarity "
      f"{np.mean(sim_plain) if sim_plain else float('nan'):.2f}), refinement pairs {len(sim_refined)} (mean "
      f"similarity {np.mean(sim_refined) if sim_refined else float('nan'):.2f}), {drawn} refinements drawn")

# %% [markdown]
# ### The protocol runs (from `assets/results`)
#
# `python assets/results/alignment.py` runs every trainer at one sample budget with
# `--threads 1` and copies its metrics here. The table reads whatever has been run.

# %%
lines = ["| run | held-out prompt strict: start → end | responses drawn | judge accuracy (last) | CPU min |",
         "|---|---:|---:|---:|---:|"]
found_runs = sorted(RESULTS.glob("alignment_*_seed*.csv"))
for path in found_runs:
    rows = read_metrics(path)
    ev = [r for r in rows if math.isfinite(r.get("eval/prompt_strict", math.nan))]
    js = [r["judge/accuracy"] for r in rows if math.isfinite(r.get("judge/accuracy", math.nan))]
    meta = json.loads(path.with_suffix(".json").read_text())
    n = max((r.get("train/samples", 0) for r in rows), default=0)
    judge = f"{js[-1]:.2f}" if js else "–"
    lines.append(f"| {path.stem.removeprefix('alignment_')} | {100 * ev[0]['eval/prompt_strict']:.1f} → "
                 f"{100 * ev[-1]['eval/prompt_strict']:.1f} % | {int(n)} | "
                 f"{judge} | {meta.get('cpu_seconds', float('nan')) / 60:.1f} |")
display(Markdown("\n".join(lines) if found_runs else "no protocol runs in assets/results yet"))

# %%
print(f"exact curation, λ = 0: reward {exact_sc[0.0][0]:.2f} → {exact_sc[0.0][1]:.2f}, entropy "
      f"{exact_sc[0.0][2]:.2f} → {exact_sc[0.0][3]:.2f} bits; λ = 0.5: entropy → {exact_sc[0.5][3]:.2f} bits")
print(self_consuming.summary(sc_hist))
print(self_rewarding.summary(sr_hist), "| judge accuracy per iteration:",
      [round(r["judge/accuracy"], 2) for r in sr_rows])
print(f"section time: {(time.time() - t_sj) / 60:.1f} min")
