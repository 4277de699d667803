# %% [markdown]
# ## 11. EPO: a strategy model that guides a frozen actor
#
# **EPO** (Liu et al. 2025, "Explicit Policy Optimization for Strategic Reasoning in LLMs via
# Reinforcement Learning", arXiv:2502.12486) splits a strategic agent in two. A *strategy model*
# reads the situation and writes a short strategy (at most 10 words) every turn; a frozen *actor*
# — the agent that acts in the environment — makes its move conditioned on that strategy. Only
# the strategy model is trained, by multi-turn RL with a **process reward**: key turns earn a
# reward, not only the final outcome. Collection is iterative self-play (the strategy model guides
# both parties), then relabel, then retrain. Because the actor stays frozen, the strategy model
# can guide it against opponents it never trained against.
#
# Here: spkit's Simple Negotiation (split books, hats and balls under private values; zero-sum
# score $u_\text{me} - u_\text{other}$). For one player's turns $t = 1..T$ of an episode:
#
# $$r_t = \mathbb{1}[\text{turn } t \text{ is key}]\ (t < T), \qquad r_T = \text{final score} \tag{1}$$
# $$G_t = r_t + \gamma\, G_{t+1}, \quad \gamma = 0.99 \tag{2}$$
# $$\hat G_t = G_t \,/\, \max_{\text{episode}} |G| \tag{3}$$
# $$\mathcal{L}(\theta) = -\frac{1}{N}\sum_i \hat G_i \cdot \frac{1}{|s_i|}\sum_k \log \pi_\theta(s_{i,k} \mid x_i, s_{i,<k}) \tag{4}$$
#
# Eq. (4) is offline REINFORCE on each strategy segment $s_i$, length-normalised, with no KL
# (`spkit.rl.losses.reward_weighted_nll`). What is honest at this scale: spkit-tiny never read a
# strategy, so the actor is first fine-tuned to follow a 7-strategy grammar (`keep books`,
# `keep books and hats`, …) from a *scripted* follower, then frozen; the *unconditioned actor* is
# the same actor told `Strategy: none` (trained on the pretraining corpus's own moves). The key
# turns come from a rule (a deal-closing accept in our favour, a denial of a losing offer while
# rounds remain, an offer in our favour that leaves the other at least half its value) instead of
# the paper's LLM judge.

# %%
import html
import time

from spkit.algos import epo
from spkit.games.negotiation import NegotiationGame
from spkit.rl.losses import reward_weighted_nll
from spkit.rl.selfplay import Episode, Turn
from spkit.run import lesson_out

EPO_OUT = lesson_out("10_games_beyond_zero_sum") / "epo"
EPO_RESULTS = Path(epo.__file__).resolve().parents[2] / "assets" / "results"

# A hand-built game: 2 books, 1 hat, 3 balls; Player 0 values (2, 0, 2), Player 1 (0, 4, 2).
state = NegotiationGame().new_initial_state()
moves = ["2 0 2", "deny", "0 1 1", "accept"]
for a in ("items 2 1 3", "values 2 0 2", "values 0 4 2", *moves):
    state.apply_action(a)
roles = [0, 1, 1, 0]
turns = [Turn("negotiation", p, [1], [2], [0.0], m, m, True) for p, m in zip(roles, moves)]
ep = Episode("negotiation", 0, state.returns(), turns, None, [0, 1], state)
weights, keys = epo.episode_weights(ep, gamma=0.99, key_reward=1.0, seats=[0, 1])
print("returns (P0, P1):", [round(r, 2) for r in state.returns()])
for p, m, k, w in zip(roles, moves, keys, weights):
    print(f"  Player {p}: {m:7s} key={k!s:5s}  scaled return Ĝ = {w:+.3f}")
toy_logp = torch.tensor([[-1.0, -3.0], [-2.0, 0.0]])
toy_mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
print("Eq. (4) on two segments (mean log-prob −2 each) weighted +0.5 and −1:",
      reward_weighted_nll(toy_logp, toy_mask, torch.tensor([0.5, -1.0])).item())

# %% [markdown]
# ### A live run
#
# Step 0 builds the strategy-following actor (a short SFT here; the runs in the table below used
# a longer one) and teaches the strategy model the grammar's *format* on uniformly random
# strategies. Then each iteration collects games (half self-play, half against the training
# opponent, spkit's `HeuristicNegotiator`), relabels them with Eq. (1)–(3) and takes 3 steps of
# Eq. (4). Every evaluation plays the same seeded games with the strategy-guided actor and with
# the unconditioned one (`Strategy: none`) against the training opponent and a held-out opponent
# never trained against (here the untrained spkit-tiny itself).

# %%
t_epo = time.time()
epo_cfg = epo.Config(seed=SEED, steps=1 if SMALL else 2, games=4 if SMALL else 8,
                     actor_sft_steps=6 if SMALL else 24, strategy_sft_steps=3 if SMALL else 10,
                     sft_batch=8 if SMALL else 16, eval_games=6 if SMALL else 16, eval_every=1,
                     threads=1, tensorboard=False, plot=False, device="cpu", out=str(EPO_OUT), overwrite=True)
epo_hist = epo.train(epo_cfg)
print(epo.summary(epo_hist))
print(f"live run: {time.time() - t_epo:.0f} s wall")

fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
for i, opp in enumerate(("train", "heldout")):
    for arm, style in (("guided", "-o"), ("neutral", "--s")):
        steps_, vals = epo_hist.series(f"eval/{opp}/{arm}/return")
        _, ci = epo_hist.series(f"eval/{opp}/{arm}/return_ci")
        ax[i].errorbar(steps_, vals, yerr=ci, fmt=style, capsize=3,
                       label="strategy-guided" if arm == "guided" else "unconditioned (none)")
    ax[i].set_title(f"vs the {'training' if opp == 'train' else 'held-out'} opponent ({epo_cfg.eval_games} games)")
    ax[i].set_xlabel("iteration")
    ax[i].set_ylabel("mean return")
    ax[i].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# What the strategy model writes after the live run, in 8 games against the training opponent:
# the share inside the grammar and the most frequent strategies (the actor is shown each one as
# written). The live run's format SFT is short, so much of it can fall outside the grammar; the
# runs in the table below gave it 20 steps of 16 rows.

# %%
from collections import Counter

from spkit.games.policies import HeuristicNegotiator
from spkit.rl.selfplay import LMAgent
from spkit.sampling import SamplingParams

strat_model, strat_tok = load_model(str(epo_hist.final_dir), device="cpu")
actor_model, _ = load_model(str(EPO_OUT / "actor"), device="cpu")
gs = epo.GuidedSampler(Sampler(actor_model, strat_tok), Sampler(strat_model, strat_tok),
                       SamplingParams(max_new_tokens=16, temperature=0.7, stop=("\n",)))
demo = epo.versus(LMAgent(gs, "direct", SamplingParams(max_new_tokens=8, temperature=0.0)), HeuristicNegotiator(),
                  8, seed=SEED)
written = [s.text for segs in gs.log.values() for s in segs]
counts = Counter(written).most_common(5)
display(Markdown(f"{len(written)} strategies written, {sum(epo.parse_strategy(s) is not None for s in written)} "
                 "inside the grammar.\n\n| strategy | times |\n|---|---:|\n"
                 + "\n".join(f"| <code>{html.escape(s).replace('|', '&#124;') or '(empty)'}</code> | {n} |"
                             for s, n in counts)))

# %% [markdown]
# ### Three seeds (assets/results)
#
# The runs of `python assets/results/epo_runs.py --seeds 0 1 2`: one actor (built once, seed 0)
# reused by every run, then the strategy model trained per seed; settings chosen on a dev seed
# that is not reported (`assets/results/epo_tried.jsonl`). Each number is the last evaluation's
# mean return with its 95% interval over games.

# %%
import csv
import json

epo_rows = []
for path in sorted(EPO_RESULTS.glob("epo_seed*.csv")):
    rows = [r for r in csv.DictReader(open(path)) if r.get("eval/train/guided/return")]
    info = json.loads(path.with_suffix(".json").read_text())
    epo_rows.append((path.stem, rows[0], rows[-1], info))


def _cell(r, key):
    return f"{float(r[key + '/return']):+.3f} ± {float(r[key + '/return_ci']):.3f}"


if epo_rows:
    lines = ["| run | CPU-min | vs training opp.: guided (start → end) | unconditioned | vs held-out opp.: guided "
             "(start → end) | unconditioned | in grammar | follow |", "|---|---:|---|---|---|---|---:|---:|"]
    for name, first, last, info in epo_rows:
        lines.append(f"| {name} | {info['cpu_minutes']:.1f} | {_cell(first, 'eval/train/guided')} → "
                     f"{_cell(last, 'eval/train/guided')} | {_cell(last, 'eval/train/neutral')} | "
                     f"{_cell(first, 'eval/heldout/guided')} → {_cell(last, 'eval/heldout/guided')} | "
                     f"{_cell(last, 'eval/heldout/neutral')} | {float(last['eval/valid']):.2f} | "
                     f"{float(last['eval/follow']):.2f} |")
    display(Markdown("\n".join(lines)))
else:
    print("no EPO results in assets/results yet: run python assets/results/epo_runs.py")

# %% [markdown]
# ### What this shows at this scale

# %%
if epo_rows:
    def _mean(key):
        return float(np.mean([float(last[key]) for _, _, last, _ in epo_rows]))

    def _above(opp):  # the guided interval entirely above the unconditioned one
        return sum(float(last[f"eval/{opp}/guided/return"]) - float(last[f"eval/{opp}/guided/return_ci"])
                   > float(last[f"eval/{opp}/neutral/return"]) + float(last[f"eval/{opp}/neutral/return_ci"])
                   for _, _, last, _ in epo_rows)

    n = len(epo_rows)
    g_tr, n_tr = _mean("eval/train/guided/return"), _mean("eval/train/neutral/return")
    g_ho, n_ho = _mean("eval/heldout/guided/return"), _mean("eval/heldout/neutral/return")
    steps_run = int(float(epo_rows[0][2]["step"]))
    cpu = sum(info["cpu_minutes"] for *_, info in epo_rows)
    display(Markdown(
        f"Over {n} seeds ({steps_run} iterations each, {cpu:.1f} CPU-minutes in all, plus the actor's SFT), the "
        f"strategy-guided actor's mean return is {g_tr:+.3f} against the training opponent vs {n_tr:+.3f} for the "
        f"same actor unconditioned, and {g_ho:+.3f} vs {n_ho:+.3f} against the held-out opponent. In "
        f"{_above('train')} of {n} seeds against the training opponent and {_above('heldout')} of {n} against the "
        "held-out one the guided return's 95% interval lies entirely above the unconditioned one's. "
        f"The actor follows a grammar strategy in {_mean('eval/follow'):.0%} of its moves and "
        f"{_mean('eval/valid'):.0%} of the strategies are inside the grammar, so what the strategy model "
        "learns reaches the game only through an imperfect, supervised follower — the RL part is the choice of "
        "strategy per position, not the negotiation moves themselves. These are short runs with tens of "
        "games per evaluation: read them as a first measurement, not as a verdict on the paper."))
print(f"EPO section: {time.time() - t_epo:.0f} s wall")
