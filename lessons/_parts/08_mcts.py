# %% [markdown]
# ## ReST-MCTS*: tree search over reasoning steps, with a value model it trains itself
#
# Zhang et al. (2024), arXiv:2406.03816. Sampling whole solutions and keeping the right ones (RFT)
# learns from the final answer only. ReST-MCTS* searches over **steps** — here one line
# `a op b = c` of an arithmetic solution — guided by a value model $V_\phi(\text{prefix}) \in [0, 1]$.
# After the search the checker labels the complete solutions in the tree, and every node gets a
# value *inferred* from how close it is to a correct answer — per-step labels with no annotator.
# Those labels train the value model; the correct solutions train the policy; both search better
# in the next round.
#
# | phase | equation | code (`spkit.algos.rest_mcts`) |
# |---|---|---|
# | select | $\mathrm{UCT}(s') = V(s') + c\sqrt{2\ln N(s)/N(s')}$, $c = 0.4$; unvisited: $V(s') + 1$ | `uct`, `best_child`, `select` |
# | expand | $k = 3$ sampled next lines, each valued by $V_\phi$ | `search` |
# | look ahead | $V(s') \leftarrow (1-\alpha)V_\phi(s') + \alpha\max_{j \le 2} V_\phi(s'_{+j})$, $\alpha = 0.5$ | `search` |
# | back up | $V(s) = \sum_{s'} N(s')V(s') / \sum_{s'} N(s')$ | `backup` |
# | infer values | $v_k = \max(0,\ v_{k-1} + (1 - v_{k-1})\,r_k/m_k)$, $v_0 = 0$ | `infer_values` |
# | train | MSE$(V_\phi, v_k)$; SFT on the verified solutions | `ValueModel.fit`, `verifiable.sft_update` |
#
# $r_k = +1$ if node $k$ has a correct answer below it, else $-1$; $m_k$ is the number of steps to
# the nearest correct leaf. The code of the three tree rules:

# %%
import csv
import inspect
import json
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from spkit.algos import rest_mcts as R
from spkit.generation import Sampler
from spkit.models import load_model
from spkit.rl import verifiable as V
from spkit.run import lesson_out

SMALL = os.environ.get("SPKIT_SMALL")
torch.set_num_threads(1)
OUT = lesson_out("08_mcts")
for fn in (R.uct, R.backup):
    print(inspect.getsource(fn))

# %% [markdown]
# Inferred values on a tree we build by hand: `a` leads to one right and one wrong answer, `d` is a
# wrong answer straight away. The right leaf gets 1, its parent ½ (two steps from a right answer),
# the wrong sibling ¼, the dead end 0.

# %%
problem = {"question": "Mia has 3 apples. She buys 4 more apples. Then she gives away 2 apples. "
                       "How many apples does Mia have now?", "answer": "3 + 4 = 7\n7 - 2 = 5\n#### 5", "steps": 2}
toy = R.Tree(problem)


def child(parent, step, complete=False):
    n = R.Node(step, parent, parent.depth + 1, complete=complete)
    parent.children.append(n)
    return n


a = child(toy.root, " 3 + 4 = 7")
child(a, "7 - 2 = 5\n#### 5", complete=True)
child(a, "7 - 2 = 4\n#### 4", complete=True)
child(toy.root, "#### 9", complete=True)
for text, v in R.infer_values(toy):
    print(f"v = {v:.2f}   {text.split('Answer:')[1]!r}")

# %% [markdown]
# ### A live tree
# spkit-tiny searches one level-3 problem (dev split). The value model is the one this lesson trains
# below if it exists already, else a fresh one (V = ½ everywhere, so the first search is plain UCT).
# Colour = the search's value V, size = visits, squares = complete solutions, ✓/✗ = the checker.

# %%
policy, tok = load_model(str(OUT / "final")) if (OUT / "value" / "config.json").exists() else load_model("spkit-tiny")
value = R.ValueModel.load(OUT / "value") if (OUT / "value" / "config.json").exists() else R.ValueModel.from_policy(policy, tok)
sampler = Sampler(policy, tok)
one = [p for p in V.dev_problems(5, seed=3) if p["steps"] == 3][:1]
cfg = R.Config(iterations=4 if SMALL else 10)
tree = R.search(sampler, value, one, cfg, seed=0)[0]
R.infer_values(tree)
print(one[0]["question"], "| gold:", one[0]["answer"].replace("\n", "; "))
print(f"{len(tree.root.nodes())} nodes, {tree.tokens} sampled tokens")
fig, ax = plt.subplots(figsize=(11, 5))
R.plot_tree(tree, ax)
ax.set_title("MCTS* on one problem")
plt.show()

# %% [markdown]
# ### Accuracy against compute
# The fair comparison counts **sampled policy tokens** (value-model calls are not counted): greedy
# decoding; best-of-N with a majority vote over the answers; best-of-N ranked by the value model;
# MCTS* with the value model (it stops once a complete solution reaches V ≥ 0.9). The stored results
# (`python assets/results/rest_mcts.py`) come from one self-training round per seed, evaluated on the
# held-out problems of levels 3–4.

# %%
RESULTS = Path(R.__file__).resolve().parents[2] / "assets" / "results"
runs = sorted(RESULTS.glob("rest_mcts_seed*.csv"))
stored = {p.stem: list(csv.DictReader(p.read_text().splitlines())) for p in runs}
meta = {p.stem: json.loads(p.with_suffix(".json").read_text()) for p in runs}
STYLE = {"greedy": "k*", "best_of_n_majority": "o-", "best_of_n_value": "s--", "mcts_value": "^-"}


def draw(rows_by_run, ax, title):
    for method, style in STYLE.items():
        pts = {}
        for rows in rows_by_run:
            for r in rows:
                if r["method"] == method:
                    pts.setdefault(int(r["setting"]), []).append((float(r["tokens"]), float(r["accuracy"])))
        xs = [sum(t for t, _ in v) / len(v) for _, v in sorted(pts.items())]
        ys = [100 * sum(a for _, a in v) / len(v) for _, v in sorted(pts.items())]
        ax.plot(xs, ys, style, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("sampled tokens per problem")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)


fig, ax = plt.subplots(figsize=(6, 4))
if stored:
    draw(list(stored.values()), ax, f"held-out levels 3-4, mean of {len(stored)} seed(s)")
    plt.show()
else:
    print("no stored results yet: run python assets/results/rest_mcts.py")

# %% [markdown]
# A live mini-run on the same code path: a short self-training round (search, value training,
# policy SFT), then the four methods on dev problems of levels 3–4 with its policy and value model.

# %%
t0, c0 = time.perf_counter(), time.process_time()
run_cfg = R.Config(steps=1 if SMALL else 2, problems=2 if SMALL else 8, iterations=3 if SMALL else 6,
                   eval_every=0, eval_limit=2 if SMALL else 25, threads=1, out=str(OUT), overwrite=True,
                   tensorboard=False)
hist = R.train(run_cfg)
policy, tok = load_model(str(OUT / "final"))
value = R.ValueModel.load(OUT / "value")
dev = [p for p in V.dev_problems(3 if SMALL else 20, seed=1) if p["steps"] in (3, 4)]
live = R.accuracy_vs_compute(policy, tok, value, dev, ns=(1, 2) if SMALL else (1, 2, 4, 8),
                             iterations=(1, 2) if SMALL else (2, 4, 8), seed=0)
live_wall, live_cpu = time.perf_counter() - t0, time.process_time() - c0
fig, ax = plt.subplots(figsize=(6, 4))
draw([live], ax, f"live: {len(dev)} dev problems (levels 3-4)")
plt.show()

# %% [markdown]
# ### What was measured

# %%
print(f"live mini-run: {live_wall / 60:.1f} min wall, {live_cpu / 60:.1f} min CPU; greedy held-out "
      f"(first {run_cfg.eval_limit} per level) {100 * hist.series('eval/strict')[1][0]:.1f}% -> "
      f"{100 * hist.last('eval/strict'):.1f}%")
for r in live:
    print(f"  {r['method']:<20} setting {r['setting']:>2}: {r['tokens']:6.1f} tokens/problem, "
          f"accuracy {100 * r['accuracy']:.1f}% of {r['n']}")
for name, rows in stored.items():  # each MCTS* budget against the majority vote of nearest tokens
    maj_rows = [r for r in rows if r["method"] == "best_of_n_majority"]
    for r in (r for r in rows if r["method"] == "mcts_value"):
        near = min(maj_rows, key=lambda q: abs(float(q["tokens"]) - float(r["tokens"])))
        print(f"{name}: MCTS* {r['setting']} iterations {100 * float(r['accuracy']):5.1f}% at {float(r['tokens']):5.0f} "
              f"tokens | majority of {near['setting']} {100 * float(near['accuracy']):5.1f}% at {float(near['tokens']):5.0f}")
for name, m in meta.items():
    rows = stored[name]
    maj = max((r for r in rows if r["method"] == "best_of_n_majority"), key=lambda r: float(r["tokens"]))
    mcts = max((r for r in rows if r["method"] == "mcts_value"), key=lambda r: float(r["tokens"]))
    print(f"{name}: greedy held-out {100 * m['greedy_heldout_before']:.1f}% -> {100 * m['greedy_heldout_after']:.1f}% "
          f"after one round ({int(m['train_tokens'])} sampled tokens); levels 3-4: best-of-{maj['setting']} majority "
          f"{100 * float(maj['accuracy']):.1f}% at {float(maj['tokens']):.0f} tokens, MCTS* ({mcts['setting']} iterations) "
          f"{100 * float(mcts['accuracy']):.1f}% at {float(mcts['tokens']):.0f} tokens")

# %% [markdown]
# Read the lines above against each other: at equal tokens, does the search with its own value
# model beat a majority vote over independent samples, and do either beat greedy decoding? At
# spkit-tiny's scale the value model sees a few hundred inferred targets per round, and every
# sampling method draws at the rollout temperature (1.0); the paper's gains come from 6-8B models
# whose value models were trained on far more searched steps.
