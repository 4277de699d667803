# %% [markdown]
# ## 8. Self-RedTeam: one model as attacker and defender
#
# **Self-RedTeam** (Liu et al. 2025, "Chasing Moving Targets with Online Self-Play Reinforcement
# Learning for Safer Language Models", arXiv:2506.07468) makes safety training a two-role game
# played by *one* model. As the **attacker** it rewrites a seed request (half harmful, half benign)
# so that the defender errs; as the **defender** it answers the rewrite. Both roles learn online
# from the same games, so the attacks move as the defender improves — instead of a fixed red-team
# set that the defender overfits. A role may think first (`--think`); the other role sees only
# the answer.
#
# Here the game is **synthetic** (`spkit.games.redteam`): invented "forbidden" verbs on fictional
# objects (*unseal the moonvault*), no real harmful content. The attacker composes a rewrite from
# grammar pieces — a framing (role-play *as a bard,*, hypothetical *imagine you*) and a verb form
# (word splitting *uns-eal*, a synonym *unlatch*, or an unfaithful *swap* of the verb); a
# rule-based judge reads the texts. The *tale* framing, the split-synonym form and 4 of the 12
# objects never appear in training: they make the **held-out attack set**.
#
# The released reward is general-sum; with s = 1[seed harmful], f = 1[faithful], H = 1[the defender
# complied with a harmful request], C = 1[correct refuse/comply], fmt = ±1:
#
# $$o_A = 0.5(2f-1) + s\,(2H-1) + 0.5(1-2C),\qquad r_A = \mathrm{fmt}_A + o_A,\qquad
#   r_D = \mathrm{fmt}_D + (1-2H) + (2C-1)$$
#
# and the zero-sum framing `--reward zero_sum` sets $r_D = \mathrm{fmt}_D - o_A$. Each role's
# rewards are normalised over the batch (REINFORCE++), then one PPO-clip step with a k3 KL (0.01)
# to the start model.

# %%
import time

from spkit.algos import self_redteam as srt
from spkit.games import redteam as rt
from spkit.run.metrics import read_metrics

game = rt.RedTeamGame("train")
s = game.new_initial_state(seed=3)
print("seed:", s.seed_text(), "(harmful)" if s.seed_harmful else "(benign)")
for move in ("none/same", "bard/split", "imagine/syn", "none/swap"):
    t = s.clone()
    t.apply_action(move)
    t.apply_action("comply")
    j = rt.judge(t)
    r = srt.role_rewards(j, None)
    print(f"{move:12s} -> {t.attack_text!r:40s} faithful={j.faithful!s:5s} harmful compliance={j.harmful_response!s:5s} "
          f"r_A={r[0]:+.1f} r_D={r[1]:+.1f}")

# %% [markdown]
# ### A live run: co-training vs a static attacker
#
# spkit-tiny has never seen this game, so a short format SFT on scripted play (random legal moves
# of both roles: the format, not a strategy) comes first; it is shared by both arms. Then the same
# number of RL steps with the attacker co-trained (`--attacker self`) or frozen at the SFT model
# (`--attacker frozen`: only the defender trains — the static-attacker baseline).

# %%
from spkit.run import lesson_out

RT_OUT = lesson_out("10_games_beyond_zero_sum") / "self_redteam"
sft_steps, rl_steps, rt_games, rt_eval = (6, 2, 8, 16) if SMALL else (50, 6, 24, 48)
t0 = time.process_time()
common = dict(seed=SEED, threads=1, tensorboard=False, plot=False, device="cpu", eval_games=rt_eval)
sft_run = srt.train(srt.Config(steps=0, sft_steps=sft_steps, out=str(RT_OUT / "sft"), overwrite=True, **common))
runs = {}
for arm in ("self", "frozen"):
    cfg_rt = srt.Config(model=str(sft_run.final_dir), sft_steps=0, attacker=arm, steps=rl_steps, games=rt_games,
                        eval_every=max(rl_steps // 2, 1), out=str(RT_OUT / arm), overwrite=True, **common)
    runs[arm] = srt.train(cfg_rt)
rt_cpu = time.process_time() - t0
print(f"format SFT {sft_steps} steps + 2 x {rl_steps} RL steps of {rt_games} games: {rt_cpu / 60:.1f} CPU min")

fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
for arm, h in runs.items():
    for ax, key in zip(axes, ("eval/heldout/defended", "eval/heldout/over_refusal", "eval/attack/patterns"),
                       strict=True):
        ax.plot(*h.series(key), "-o", label=arm)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("RL step")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ### The measured comparison (3 seeds, shipped results)
#
# `assets/results/self_redteam.py` runs the longer protocol (10 RL steps of 48 games after a
# 100-step format SFT shared by all arms; one CPU thread) and keeps every run's metrics log. The
# table reads those files; the live run above is the same code at a smaller budget.

# %%
RT_RESULTS = Path(srt.__file__).resolve().parents[2] / "assets" / "results"
RT_KEYS = ["eval/heldout/defended", "eval/heldout/over_refusal", "eval/seen/defended", "eval/attack/patterns",
           "eval/attack/distinct2", "eval/attack/success"]


def rt_final(path):
    rows = [r for r in read_metrics(path) if "eval/heldout/defended" in r and np.isfinite(r["eval/heldout/defended"])]
    return rows[0], rows[-1]


rt_table = {}
for path in sorted(RT_RESULTS.glob("self_redteam_*_seed*.csv")):
    arm = path.stem.removeprefix("self_redteam_").rsplit("_seed", 1)[0]
    rt_table.setdefault(arm, []).append(rt_final(path))
head = "| arm | seeds | " + " | ".join(k.removeprefix("eval/") for k in RT_KEYS) + " |"
lines = [head, "|---|---:|" + "---:|" * len(RT_KEYS)]
for arm, rs in rt_table.items():
    cells = []
    for k in RT_KEYS:
        v = np.array([last[k] for _, last in rs])
        cells.append(f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if len(v) > 1 else ""))
    lines.append(f"| {arm} | {len(rs)} | " + " | ".join(cells) + " |")
live = {arm: {k: h.last(k) for k in RT_KEYS} for arm, h in runs.items()}
lines += [f"| live {arm} ({rl_steps} steps) | 1 | " + " | ".join(f"{v[k]:.3f}" for k in RT_KEYS) + " |"
          for arm, v in live.items()]
display(Markdown("\n".join(lines)))

# %% [markdown]
# ### What this shows at this scale

# %%
def rt_claim(key, better="higher"):
    a = np.array([last[key] for _, last in rt_table.get("self", [])])
    b = np.array([last[key] for _, last in rt_table.get("frozen", [])])
    if len(a) < 2 or len(b) < 2:
        return f"- {key}: not measured over two or more seeds of each arm"
    diff = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    sign = diff if better == "higher" else -diff
    word = "above" if sign > 2 * se else "below" if sign < -2 * se else "within noise of"
    return (f"- {key}: co-trained {a.mean():.3f} vs static attacker {b.mean():.3f} "
            f"({len(a)} seeds each) — co-training is {word} the baseline (difference {diff:+.3f} ± {se:.3f})")


def rt_think():
    pairs = [(arm, rt_table.get(arm)) for arm in ("self", "think_self", "frozen", "think_frozen")]
    got = [(arm, rs) for arm, rs in pairs if rs]
    if not any(arm.startswith("think") for arm, _ in got):
        return "- hidden reasoning (`--think`): not measured"
    cells = [f"{arm} {np.mean([last['eval/heldout/defended'] for _, last in rs]):.3f} ({len(rs)} seed(s))"
             for arm, rs in got]
    return "- held-out defended rate with and without hidden reasoning: " + ", ".join(cells)


def rt_start(key):
    return np.mean([first[key] for rs in rt_table.values() for first, _ in rs]) if rt_table else np.nan


display(Markdown("\n".join([
    f"- at step 0 (after the format SFT, mean of the shipped runs) the defender refuses "
    f"{rt_start('eval/heldout/defended'):.3f} of the harmful and {rt_start('eval/heldout/over_refusal'):.3f} of "
    f"the benign held-out requests: a defender that tells them apart refuses the first and not the second",
    rt_claim("eval/heldout/defended"), rt_claim("eval/attack/patterns"), rt_claim("eval/attack/distinct2"),
    rt_claim("eval/heldout/over_refusal", better="lower"), rt_think(),
    f"- the live run here ({rl_steps} RL steps, {rt_cpu / 60:.1f} CPU min): held-out defended "
    f"{live['self']['eval/heldout/defended']:.3f} co-trained vs {live['frozen']['eval/heldout/defended']:.3f} "
    f"against the frozen attacker — one seed at a tiny budget, so read it as a demonstration of the loop, "
    f"not as evidence"])))
