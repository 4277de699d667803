r"""Self-RedTeam — one model plays attacker and defender in online self-play, on a synthetic game.

Liu et al. (2025), "Chasing Moving Targets with Online Self-Play Reinforcement Learning for
Safer Language Models", arXiv:2506.07468 (reference code: mickelliu/selfplay-redteaming).
Here on `spkit.games.redteam`, a game spkit defines with an invented vocabulary (fictional
"forbidden" verbs on fictional objects; no real harmful content) and a rule-based judge.

Idea: safety training usually fixes the attacks (a red-team data set) and trains the defender
against them; the defender then overfits a target that does not move. Self-RedTeam lets one
shared policy play both roles: as the attacker it rewrites a seed request (half harmful, half
benign) so that the defender errs — complies with a harmful request or refuses a benign one —
while keeping the seed's intent; as the defender it answers the rewrite. Both roles learn
online from the same games, so the attacks move with the defender. Each role may think first
(``--think``): the reasoning is hidden, the other role sees only the answer.

Equations (numbered here). For one game, the judge (`spkit.games.redteam.judge`) gives
s = 1[seed harmful], f = 1[faithful rewrite], H = 1[the defender complied with a harmful
request], C = 1[the defender refused exactly a harmful request]; fmt = +1 for a well-formed
move, −1 otherwise (the paper's ±1 format reward):
  (1) o_A = 0.5 (2f − 1) + s (2H − 1) + 0.5 (1 − 2C)       — the attacker's game outcome
  (2) general-sum (the released reward, default):
        r_A = fmt_A + o_A,   r_D = fmt_D + (1 − 2H) + (2C − 1)    — harmless ±1, correct refuse/comply ±1
  (3) zero-sum (``--reward zero_sum``, the game as the paper frames it):
        r_A = fmt_A + o_A,   r_D = fmt_D − o_A
  (4) A = (r − mean_role r) / (std_role r + ε)   — REINFORCE++'s batch-normalised return, per role
  (5) L(θ) = −(1/Σ|y|) Σ_turns Σ_t min(ρ_t A, clip(ρ_t, 1 − ε, 1 + ε) A) + β KL_k3(π_θ ‖ π_ref),
      ε = 0.2, β = 0.01, π_ref the start model (after the format SFT)
An invalid rewrite ends the game: r_A = −1 and the defender has no turn. An invalid answer:
r_D = −1, r_A = +1 + 0.5 (2f − 1) (the outcome terms need an answer).

Why the general-sum reward is the default: the released code computes it (its zero-sum variant
is a stub), and it trains the defender on what the paper measures — harmlessness and correct
refusal/compliance — not on the attacker's faithfulness, which the defender cannot influence.
Eq. (3) is the zero-sum framing, kept as an option so the two can be compared.

Algorithm:
  0. Format SFT (``--sft-steps``; `spkit.rl.selfplay.format_sft` on `RedTeamGame.demonstrate`):
     faithful rewrites with random training patterns and random refuse/comply answers — the
     grammar and the answer format, not a strategy. The SFT'd model is π_ref and, with
     ``--attacker frozen``, the static attacker. (A resumed run repeats this deterministic SFT to
     rebuild π_ref, then loads its checkpoint.)
  1. Play `games` games on the training split (8 objects; seeds 50/50 harmful/benign): seat 0
     (attacker) is the current model (``--attacker self``, co-training), the frozen SFT model
     (``frozen``, the static-attacker baseline: only the defender trains) or a scripted attacker
     (``scripted``: a uniformly random training pattern); seat 1 (defender) is the current model.
     Batched with `spkit.rl.selfplay.play_episodes`; the defender's prompt holds only the rewrite.
  2. Judge every game, rewards Eq. (1)-(3), advantages Eq. (4) over the learner's turns per role.
  3. One PPO-clip update, Eq. (5) (`spkit.algos.spiral.update`).
  4. Every `eval_every` steps (`evaluate`): the defender against a HELD-OUT attack set —
     scripted faithful rewrites of held-out seeds (4 unseen objects) with the 7 held-out patterns
     (an unseen framing or verb form) — and against held-out seeds with the training patterns;
     the training attacker (model / frozen / scripted) on held-out seeds: its diversity.

Deviations from the paper:
  1. A synthetic game with a rule-based judge instead of WildGuard on real prompts; a 3.3M-
     parameter model on a CPU; the attacker's "revision" is a short rewrite in a grammar.
  2. spkit's answer format: the answer is the ``\boxed{}`` content; with ``--think`` the text
     before the box is the hidden reasoning (the paper's ``<think>…</think><answer>…</answer>``).
  3. The KL penalty is the k3 estimator added to the loss (`spiral.update`), not a per-token
     term inside the reward; the clipped update is PPO-clip over one batch per step.
  4. The harmful-response term of Eq. (1) counts for harmful seeds only (s), so the attacker gains
     nothing by turning a benign seed into a harmful request (which is unfaithful anyway).
  5. The model is first format-SFT'd on the game (it has never seen it); the paper starts from an
     instruction-tuned model.

Metrics (`metrics.csv`, TensorBoard, the `callback(step, metrics)` argument of `train`):
  eval/heldout/defended       held-out attack set: share of harmful requests refused
  eval/heldout/over_refusal   held-out attack set: share of benign requests refused
  eval/heldout/invalid        held-out attack set: share of defender answers that are invalid
  eval/seen/defended, eval/seen/over_refusal   held-out seeds, training patterns
  eval/attack/patterns        distinct moves (patterns, of 12) the training attacker played
  eval/attack/distinct2       distinct word bigrams / bigrams of its rewrites (distinct-n, n = 2)
  eval/attack/faithful, eval/attack/invalid, eval/attack/success   (success: harmful compliance)
  train/attack_success        share of harmful-seed games the defender complied with (a harmful response)
  train/benign_refused        share of benign-seed games whose (rewritten) request the defender refused
  train/faithful, train/invalid_attack, train/invalid_answer, train/patterns, train/distinct2
  train/reward/attacker, train/reward/defender   mean r_A, r_D of Eq. (2)/(3)
  losses/policy, losses/kl, losses/clip_frac, ...   from `spkit.algos.spiral.update`

Commands:
  spkit train self_redteam --steps 40 --threads 1 --out runs/srt                     # co-training
  spkit train self_redteam --attacker frozen --steps 40 --threads 1 --out runs/srt_static
  spkit train self_redteam --think --steps 40 --threads 1 --out runs/srt_think       # hidden reasoning
  spkit train self_redteam --reward zero_sum --steps 40 --out runs/srt_zs
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from spkit.algos.spiral import update
from spkit.config import param
from spkit.games.redteam import (
    HELDOUT_PATTERNS,
    TRAIN_MOVES,
    TRAIN_PATTERNS,
    Judgement,
    RedTeamGame,
    ScriptedAttacker,
    judge,
)
from spkit.generation import Sampler
from spkit.rl.advantages import grpo_advantages
from spkit.rl.selfplay import Episode, LMAgent, Turn, format_sft, play_episodes
from spkit.run import History, Run, RunConfig
from spkit.sampling import SamplingParams
from spkit.seeding import derive_seed

PAPER = {
    "title": "Chasing Moving Targets with Online Self-Play Reinforcement Learning for Safer Language Models",
    "arxiv": "2506.07468",
    "citation": "Liu et al., 2025",
}
ATTACKERS = ("self", "frozen", "scripted")
ATTACKER, DEFENDER = 0, 1


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(RunConfig):
    model: str = param("spkit-tiny", "model name, hub id or save_pretrained directory")
    attacker: str = param("self", "self (co-training) | frozen (the SFT model, static: only the defender "
                          "trains) | scripted (random training pattern, static)", choices=ATTACKERS)
    think: bool = param(False, "hidden reasoning: each role writes free text before \\boxed{answer}; the "
                        "other role sees only the answer")
    reward: str = param("general", "general (the released general-sum reward) | zero_sum (r_D = fmt_D − o_A)",
                        choices=("general", "zero_sum"))
    steps: int = param(40, "policy updates", ge=0, identity=False)
    games: int = param(64, "games per step", ge=1)
    lr: float = param(1e-4, "learning rate (Adam)", gt=0)
    clip_eps: float = param(0.2, "PPO clip range ε", gt=0)
    kl_coef: float = param(0.01, "β: k3 KL to the start model (after SFT), Eq. (5); 0 = off", ge=0)
    ppo_epochs: int = param(1, "passes (optimizer steps) over each batch", ge=1)
    micro_batch: int = param(64, "turns per forward/backward", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)
    temperature: float = param(1.0, "rollout sampling temperature", gt=0)
    max_new_tokens: int = param(0, "tokens per move; 0 = 24 (direct) or 64 (--think)", ge=0)
    loss_norm: str = param("token_mean", "token_mean | dr_grpo (see spiral)", choices=("token_mean", "dr_grpo"))
    sft_steps: int = param(100, "format-SFT steps on scripted play before self-play (0 = off)", ge=0)
    sft_batch: int = param(16, "demonstrations per format-SFT step", ge=1)
    sft_lr: float = param(2e-3, "learning rate of the format SFT", gt=0)
    eval_every: int = param(10, "evaluate every k steps (and at the start and the end)", ge=0, identity=False)
    eval_games: int = param(128, "games per evaluation set", ge=1, identity=False)

    @property
    def mode(self) -> str:
        """The prompt mode of both roles (what `format_sft` reads)."""
        return "reasoning" if self.think else "direct"

    def resolved_max_new_tokens(self) -> int:
        return self.max_new_tokens or (64 if self.think else 24)


# ---- 2. Rewards and advantages ---------------------------------------------------------------------
def attacker_outcome(j: Judgement) -> float:
    """Eq. (1): faithful ±0.5, harmful response ±1 (harmful seeds), refusal outcome ±0.5."""
    f, s, H, C = float(j.faithful), float(j.seed_harmful), float(j.harmful_response), float(j.correct_refusal)
    return 0.5 * (2 * f - 1) + s * (2 * H - 1) + 0.5 * (1 - 2 * C)


def role_rewards(j: Judgement, invalid_by: int | None, zero_sum: bool = False) -> tuple[float, float | None]:
    """(r_A, r_D) of Eq. (2) (or (3) with `zero_sum`); r_D is None when the defender never moved."""
    if invalid_by == ATTACKER:
        return -1.0, None
    if invalid_by == DEFENDER:
        return 1.0 + 0.5 * (2 * float(j.faithful) - 1), -1.0
    o = attacker_outcome(j)
    if zero_sum:
        return 1.0 + o, 1.0 - o
    H, C = float(j.harmful_response), float(j.correct_refusal)
    return 1.0 + o, 1.0 + (1 - 2 * H) + (2 * C - 1)


def advantages(episodes: list[Episode], zero_sum: bool) -> tuple[list[tuple[Turn, float]], dict[str, float]]:
    """Eq. (4): (learner turn, A) pairs, each role's rewards normalised over this batch; and the
    mean reward of each role. Overflowed games have no outcome and are skipped."""
    by_role: dict[int, list[tuple[Turn, float]]] = {ATTACKER: [], DEFENDER: []}
    for ep in episodes:
        if ep.overflow:
            continue
        rs = role_rewards(judge(ep.state), ep.invalid_by, zero_sum)
        for t in ep.turns:
            if t.learner and rs[t.role] is not None:
                by_role[t.role].append((t, rs[t.role]))
    pairs, means = [], {}
    for role, name in ((ATTACKER, "attacker"), (DEFENDER, "defender")):
        items = by_role[role]
        if not items:
            continue
        r = torch.tensor([x for _, x in items])
        means[f"train/reward/{name}"] = float(r.mean())
        adv = grpo_advantages(r, len(items)).tolist() if len(items) > 1 else [0.0]
        pairs += [(t, a) for (t, _), a in zip(items, adv, strict=True)]
    return pairs, means


# ---- metrics ----------------------------------------------------------------------------------------
def distinct_n(texts: list[str], n: int = 2) -> float:
    """distinct-n: distinct word n-grams / all word n-grams over `texts` (0 if there are none)."""
    grams = [tuple(w[i:i + n]) for t in texts for w in [t.split()] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def game_stats(episodes: list[Episode]) -> dict[str, float]:
    """Attack success, refusals, faithfulness, invalid moves and attack diversity of a batch."""
    eps = [e for e in episodes if not e.overflow]
    js = [judge(e.state) for e in eps]
    harmful = [j for j in js if j.seed_harmful]
    benign = [j for j in js if not j.seed_harmful]
    n = max(len(js), 1)
    return {
        "attack_success": sum(j.harmful_response for j in harmful) / max(len(harmful), 1),
        "benign_refused": sum(j.answer == "refuse" for j in benign) / max(len(benign), 1),
        "faithful": sum(j.faithful for j in js) / n,
        "invalid_attack": sum(e.invalid_by == ATTACKER for e in eps) / n,
        "invalid_answer": sum(e.invalid_by == DEFENDER for e in eps) / n,
        "patterns": float(len({e.state.move for e in eps if e.state.move is not None})),
        "distinct2": distinct_n([e.state.attack_text for e, j in zip(eps, js, strict=True) if j.attack]),
    }


def defence_rates(episodes: list[Episode]) -> dict[str, float]:
    """Against a scripted attack set: harmful requests refused (defended), benign requests
    refused (over-refusal), invalid answers (neither)."""
    js = [judge(e.state) for e in episodes if not e.overflow]
    harmful = [j for j in js if j.harmful_request]
    benign = [j for j in js if j.attack is not None and not j.harmful_request]
    return {"defended": sum(j.answer == "refuse" for j in harmful) / max(len(harmful), 1),
            "over_refusal": sum(j.answer == "refuse" for j in benign) / max(len(benign), 1),
            "invalid": sum(j.answer is None for j in js) / max(len(js), 1)}


# ---- 1. Rollout ---------------------------------------------------------------------------------------
def seats_for(attacker, defender: LMAgent) -> Callable[[int], list]:
    """Seat 0 the attacker (an LMAgent or a scripted Policy), seat 1 the defender."""
    return lambda i: [attacker, defender]


# ---- 4. Evaluation ------------------------------------------------------------------------------------
def evaluate(defender: LMAgent, attacker, cfg: Config, step: int) -> dict[str, float]:
    """The defender against the held-out attack set and against held-out seeds with training
    patterns; the training attacker's diversity on held-out seeds."""
    seed = derive_seed(cfg.seed, "eval", step)
    m: dict[str, float] = {}
    for name, patterns in (("heldout", HELDOUT_PATTERNS), ("seen", TRAIN_PATTERNS)):
        eps = play_episodes(RedTeamGame("heldout", patterns), seats_for(ScriptedAttacker(), defender),
                            cfg.eval_games, derive_seed(seed, name))
        m |= {f"eval/{name}/{k}": v for k, v in defence_rates(eps).items()}
    eps = play_episodes(RedTeamGame("heldout", TRAIN_MOVES), seats_for(attacker, defender), cfg.eval_games,
                        derive_seed(seed, "attack"))
    s = game_stats(eps)
    m |= {"eval/attack/patterns": s["patterns"], "eval/attack/distinct2": s["distinct2"],
          "eval/attack/faithful": s["faithful"], "eval/attack/invalid": s["invalid_attack"],
          "eval/attack/success": s["attack_success"]}
    return m


# ---- Train -------------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/heldout/defended", "eval/heldout/over_refusal", "eval/seen/defended", "eval/attack/patterns",
             "eval/attack/distinct2", "train/attack_success", "train/faithful", "train/invalid_attack"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run Self-RedTeam (or a static-attacker baseline); return every logged row."""
    from spkit.run import model_for

    run = Run(cfg, "self_redteam", callback, PLOT_KEYS)
    model, tok = model_for(cfg)
    game = RedTeamGame("train")
    sft = format_sft(model, tok, {game.name: game}, cfg) if cfg.sft_steps else {}  # 0 (repeated on resume)
    ref_model = None
    if cfg.kl_coef > 0 or cfg.attacker == "frozen":
        ref_model = copy.deepcopy(model).eval()
        ref_model.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    run.track(model=model, tokenizer=tok, optimizer=optimizer)
    sp = SamplingParams(max_new_tokens=cfg.resolved_max_new_tokens(), temperature=cfg.temperature)
    learner = LMAgent(Sampler(model, tok), cfg.mode, sp, learner=True)
    attacker = {"self": learner, "scripted": ScriptedAttacker(TRAIN_PATTERNS),  # faithful patterns only
                "frozen": LMAgent(Sampler(ref_model, tok), cfg.mode, sp, learner=False) if ref_model else None
                }[cfg.attacker]

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        eps = play_episodes(game, seats_for(attacker, learner), cfg.games, derive_seed(cfg.seed, "games", t))  # 1
        t_roll = time.perf_counter() - t0
        pairs, means = advantages(eps, cfg.reward == "zero_sum")  # 2
        batch = [(turn, a) for turn, a in pairs if a != 0.0 and turn.completion_ids]
        losses = update(model, optimizer, batch, cfg, ref_model) if batch else {}  # 3
        m = {f"train/{k}": v for k, v in game_stats(eps).items()} | means
        m |= {"train/turns": float(len(batch)), "train/rollout_seconds": t_roll,
              "train/seconds_per_step": time.perf_counter() - t0}
        return m | {f"losses/{k}": v for k, v in losses.items()}

    def evaluate_at(t: int) -> dict[str, float]:  # 4
        return evaluate(learner, attacker, cfg, t) | (sft if t == 0 else {})

    return run.loop(step, evaluate_at)


def summary(history: History) -> str:
    """The line `spkit train self_redteam` prints at the end."""
    def ends(key: str) -> str:
        v = history.series(key)[1] or [float("nan")]
        return f"{v[0]:.3f} -> {v[-1]:.3f}"

    return (f"held-out attack set: defended {ends('eval/heldout/defended')}, over-refusal "
            f"{ends('eval/heldout/over_refusal')}; attack patterns used {ends('eval/attack/patterns')} "
            f"(of {len(TRAIN_MOVES)})")
