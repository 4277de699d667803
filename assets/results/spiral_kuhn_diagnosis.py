"""Why SPIRAL's Kuhn Poker average stalls near NashConv 0.10, measured with exact tools and the tabular
analogue (no language-model training), written to spiral_kuhn_diagnosis.json:

  qre        the bias of the entropy bonus: NashConv of the exact logit quantal-response equilibrium
             (`spkit.solvers.qre.logit_qre`) at several β; the main job uses β = 0.2
  proximal   magnetic mirror descent's remedy: the same β = 0.2, but the magnet moved to the last
             solution, ρ_{k+1} = QRE(β, ρ_k) from ρ_0 = uniform: NashConv after k magnet moves
  noise      at the β = 0.2 equilibrium, per infoset: games of the 256 per update that reach it, the
             expected (unregularised) policy gradient that pulls away from it towards Nash, and the
             standard error of its 256-game estimate (exact, by enumerating the 30 deals x histories)
  coupling   spkit-tiny's shared parameters: cosine similarity of the 12 infosets' gradients of
             log p(aggressive) − log p(passive) (`spkit.lm_policy.gradient_similarity`)
  tabular    a screen on the softmax table, with the LM's per-move bonus (reward shaping, 256 games per
             update, RAE): −β·log π (entropy) vs β·log(π̄/π) with π̄ the uniform or linear average

    python assets/results/spiral_kuhn_diagnosis.py            # about 2 CPU-minutes
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from spkit.games import load_game
from spkit.games.base import CHANCE, TERMINAL
from spkit.rl.advantages import RoleBaseline
from spkit.rl.preference_games import softmax
from spkit.rl.tabular_pg import average_policy, reinforce_gradient
from spkit.solvers.exploitability import game_tree, nash_conv
from spkit.solvers.qre import logit_qre

OUT = Path(__file__).with_name("spiral_kuhn_diagnosis.json")
BETA, GAMES = 0.2, 256


def qre_bias(tree) -> dict:
    out = {}
    for b in (0.4, 0.3, 0.2, 0.15, 0.1, 0.05):
        t = logit_qre(tree, b)
        out[str(b)] = {"nashconv": nash_conv(tree, t), "Q_bet": t["Q"]["bet"], "Qb_call": t["Qb"]["call"],
                       "Qpb_call": t["Qpb"]["call"], "J_bet": t["J"]["bet"]}
    return out


def proximal(tree, moves: int = 6) -> list[float]:
    ref, out = None, []
    for _ in range(moves):
        ref = logit_qre(tree, BETA, ref)
        out.append(nash_conv(tree, ref))
    return out


def noise(tree, table) -> dict:
    """Exact mean and per-update standard error of the REINFORCE gradient on the aggressive move's
    logit, (R − b)(1[a = aggressive] − π(aggressive|I)) summed over visits / GAMES, b = the role's value."""
    values = [0.0, 0.0]
    paths: list[tuple[float, list, list]] = []  # (probability, visits, returns) of every terminal history

    def walk(i: int, p: float, visits: list) -> None:
        if tree.player[i] == TERMINAL:
            paths.append((p, visits, tree.returns[i]))
            return
        probs = tree.chance_probs[i] if tree.player[i] == CHANCE else [table[tree.key[i]][a] for a in tree.actions[i]]
        for j, (w, c) in enumerate(zip(probs, tree.children[i], strict=True)):
            if w > 0:
                v = visits if tree.player[i] == CHANCE else [*visits, (tree.player[i], tree.key[i], j)]
                walk(c, p * w, v)

    walk(0, 1.0, [])
    for p, _, r in paths:
        for q in (0, 1):
            values[q] += p * r[q]
    out = {}
    for key in tree.infoset_states:
        first, second = 0.0, 0.0
        reach = 0.0
        for p, visits, r in paths:
            g = 0.0
            for player, k, j in visits:
                if k == key:
                    names = tree.actions[tree.key.index(k)]
                    agg = names.index("bet" if "bet" in names else "call")  # the aggressive move
                    g += (r[player] - values[player]) * ((j == agg) - table[k][names[agg]])
                    reach += p
            first += p * g
            second += p * g * g
        sd = np.sqrt(max(second - first ** 2, 0.0) / GAMES)
        out[key] = {"games_per_update": reach * GAMES, "mean_grad": first, "se_grad": float(sd),
                    "snr": abs(first) / sd if sd > 0 else float("nan")}
    return out


def coupling() -> dict:
    from spkit.lm_policy import gradient_similarity
    from spkit.models import load_model

    model, tok = load_model("spkit-tiny")
    tree = game_tree(load_game("kuhn_poker"))
    keys = list(tree.infoset_states)
    sim = gradient_similarity(model, tok, [tree.infoset_states[k] for k in keys]).numpy()
    off = sim[~np.eye(len(keys), dtype=bool)]
    return {"keys": keys, "cosine": sim.round(3).tolist(), "mean_offdiag": float(off.mean()),
            "share_above_0.5": float((off > 0.5).mean())}


def tabular(tree, mode: str, avg_weights: str, seed: int, updates: int = 450, lr: float = 1.0) -> list:
    """Sampled self-play REINFORCE on a softmax table with the LM's per-move bonus (see module doc)."""
    rng = np.random.default_rng(seed)
    acts = {tree.key[i]: tree.actions[i] for i in range(len(tree)) if tree.player[i] >= 0}
    theta = {k: np.zeros(len(a)) for k, a in acts.items()}
    tables, base, curve = [], RoleBaseline(0.95), []
    for t in range(updates):
        pi = {k: softmax(v) for k, v in theta.items()}
        tables.append({k: dict(zip(acts[k], map(float, pi[k]), strict=True)) for k in acts})
        w = [i + 1.0 for i in range(len(tables))] if avg_weights == "linear" else None
        avg = average_policy(tree, tables, w)
        log_ref = {k: np.log([max(avg[k][a], 1e-6) for a in acts[k]]) if mode == "average" else np.zeros(len(acts[k]))
                   for k in acts}
        bonus = {k: BETA * (log_ref[k] - np.log(pi[k])) for k in acts}  # β·(log ρ(a|I) − log π(a|I))
        grad = reinforce_gradient(tree, pi, rng, GAMES, base, lambda k, j, bonus=bonus: bonus[k][j])
        for k in acts:
            theta[k] += lr * grad[k] / GAMES
        if (t + 1) % 75 == 0:
            curve.append([t + 1, nash_conv(tree, tables[-1]), nash_conv(tree, avg)])
    return curve


def main() -> None:
    t0 = time.process_time()
    tree = game_tree(load_game("kuhn_poker"))
    q = qre_bias(tree)
    out = {"qre": q, "proximal": proximal(tree)}
    out["noise"] = noise(tree, logit_qre(tree, BETA))
    out["noise_note"] = "at the beta=0.2 QRE; mean_grad is the unregularised policy gradient (the pull towards Nash)"
    out["coupling"] = coupling()
    out["tabular"] = {f"{m}_{w}_seed{s}": tabular(tree, m, w, s) for m, w in
                      (("uniform", "uniform"), ("average", "uniform"), ("average", "linear")) for s in (0,)}
    out["tabular_note"] = ("[update, NashConv last, NashConv average]; lr 1.0 (SGD on logits), 256 games/update, "
                           "beta 0.2; uniform_* = the entropy bonus, average_* = the KL to the average (its weights)")
    out["cpu_seconds"] = time.process_time() - t0
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"qre": {b: round(v["nashconv"], 4) for b, v in q.items()},
                      "proximal": [round(x, 4) for x in out["proximal"]],
                      "coupling_mean_offdiag": round(out["coupling"]["mean_offdiag"], 3),
                      "tabular": {k: v[-1] for k, v in out["tabular"].items()}}, indent=1))


if __name__ == "__main__":
    main()
