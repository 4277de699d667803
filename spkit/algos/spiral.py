r"""SPIRAL — Self-Play on Zero-Sum Games Incentivizes Reasoning via Multi-Agent Multi-Turn RL.

Liu, Guertler, Yu, Liu, Xie, Chen, Lee, Li, Pang, Sim, Lu et al. (2025), arXiv:2506.24119.

Idea: one shared language model plays *both* seats of two-player zero-sum text games (Kuhn
Poker, TicTacToe, Simple Negotiation) against itself, the role written into the prompt. The
opponent improves with the learner, so the games are an endless curriculum with a verifiable
reward (the game outcome). Zero-sum self-play makes one role's gain the other's loss; the
paper's Role-conditioned Advantage Estimation (RAE) subtracts a running mean return per
(game, role) so that a structurally favoured role does not push the shared policy one way.

Algorithm (one step):
  1. Rollout: play N games of each training game to the end; every LLM turn samples a
     completion from π_θ (direct mode: ``action}`` after ``\boxed{``; reasoning mode: short
     reasoning, then ``\boxed{action}``). An invalid answer ends the game: −1.5 to the
     offender, +0.5 to the other player.
  2. Reward: each turn of player p in game G gets R_p, p's final return (γ = 1).
  3. RAE, per (episode, role) in order:   A = R_p − b[G, p];   b[G, p] ← α b[G, p] + (1 − α) R_p
     with α = 0.95, b = 0 at the start — the advantage is read *before* b moves.   # Eq. (RAE)
  4. Drop turns with A = 0 (no signal), then minimise the token-level PPO-clip loss
        L(θ) = −(1/Σ|y|) Σ_turns Σ_t min(r_t A, clip(r_t, 1 − ε, 1 + ε) A),
        r_t = π_θ(y_t | x, y_<t) / π_old(y_t | x, y_<t)                              # Eq. (PPO)
     for `ppo_epochs` passes over the batch (no KL term by default, as in the paper).
  5. Every `eval_every` steps: Kuhn Poker NashConv of the last iterate and of the average
     policy, TicTacToe W/D/L vs random and vs perfect play, negotiation reward vs a heuristic,
     invalid-move rate, completion length, the RAE baselines; log, plot, checkpoint.

Deviations from the paper:
  1. A 3.3M-parameter model (spkit-tiny) and a few hundred games per step on a CPU instead of
     Qwen3-4B-Base on 8 GPUs; `Config.preset("qwen3-4b")` holds the paper-scale settings.
  2. spkit's own game implementations (standard Kuhn Poker payoffs, so NashConv is exact)
     instead of TextArena environments, and spkit's prompt formats.
  3. Direct mode (answer only) is the default at this scale; the paper's reasoning mode is
     ``--mode reasoning``.
  4. Extra, off by default: an entropy bonus (reward shaping with −β·log π(y), the sampled
     sequence entropy, on legal moves only — see `entropy_bonus`) and a k3 KL penalty to the
     initial model.
  5. With several processes each rank keeps its own RAE baselines over its own games
     (gradients are averaged, so weights stay identical).
  6. The paper's learner uses vLLM rollouts and a separate learner; here one process samples
     with `spkit.generation.Sampler` and updates the same weights (exactly on-policy).

Measured here (spkit-tiny, 3.3M params, direct mode, 2 CPU cores; Kuhn runs: 1 torch thread each,
two runs side by side; `--episodes 256`, so ~0.7 s and 256 games per update):
  * Start: Kuhn Poker NashConv 0.399 (exact). TicTacToe vs random W/D/L 0.20/0.00/0.80 (48% of
    games end in an invalid move of the model), vs perfect play draws 0.016.
  * Kuhn, best configuration found: `spkit train spiral --game kuhn_poker --entropy-coef 0.2
    --lr 1e-5 --max-minutes 10`, seeds 0/1/2, 735/721/731 updates in 10 minutes. The **average
    policy** falls 0.399 -> 0.100 / 0.104 / 0.100 (<= 0.15 first at update 150 / 100 / 100,
    and <= 0.142 at every evaluation from update 200 on, i.e. after 3 minutes); the last
    iterate ends at 0.134 / 0.140 / 0.212 and keeps moving (range over the second half
    0.07-0.25 / 0.07-0.18 / 0.10-0.22). The stretch target (0.05; tabular CFR at 100 iterations
    gives 0.0165) is not reached. Invalid moves at the end: 0-0.3% of turns.
  * Other settings, 10 minutes: entropy 0.1, lr 1e-5, seeds 0/1/2: average 0.130 / 0.119 /
    0.155, last iterate swinging 0.19-0.74; entropy 0.3 (seed 0): average 0.146, last 0.09-0.19
    (a calmer iterate, biased towards the regularised equilibrium); entropy 0.1, lr 5e-6 (seed 2):
    average 0.091.
  * The paper's defaults (no regulariser, lr 3e-5), 100 updates: the last iterate falls to 0.28 by
    update 20, then runs into the corners of the simplex (1.00 at update 90: deterministic play,
    where softmax gradients vanish); average 0.22. So without a regulariser the average is
    dragged by iterates stuck at corners — the cycling that section 3 of `lessons/02` shows on
    a table. An entropy bonus keeps the iterate inside the simplex.
  * Why spkit-tiny had to be rebuilt for this (see `kuhn_gradient_similarity`, `lessons/02`):
    the first spkit-tiny learned Kuhn Poker from a style that played J and Q almost alike. Its
    gradients for the J and Q prompts had cosine 1.00 (J vs Jp 0.97), so no update could move
    them apart; the best policy with J, Q tied and the betting history ignored has NashConv
    0.194. With the defaults NashConv *rose* (0.365 -> 0.77 in 60 updates); the best setting
    found then (entropy bonus 1.0, 10 minutes, 3 seeds) never took the average below 0.34.
    Even the exact expected gradient (no sampling noise) drove it into a corner within 20 Adam
    steps. The corpus now uses a style that differs by card and
    situation (`spkit.corpus.KUHN_AGGRESSION`): J vs Q cosine 0.61, and the runs above.
  * The README's main command (the configuration above, 300 updates, eval every 25; 4.4 min on
    1 thread beside another job): average policy 0.399 -> 0.125, last iterate -> 0.235.
  * TicTacToe self-play with the paper's defaults (`--game tictactoe --episodes 64 --steps 40`,
    3.7 min, 1 thread): vs random W/D/L 0.20/0.00/0.80 -> 0.52/0.09/0.39, mostly from fewer
    invalid moves (48% -> 11% of games); draws vs perfect play 0.016 -> 0.078 at update 10, back
    to 0.016 at 40 (64 games: within noise). Kuhn NashConv moved too (0.399 -> 0.28) without a
    single Kuhn game: the games share the answer format and the network. Longer (150 updates,
    5.5 min): invalid moves fall to 0-3% of games, losses vs random stay 0.39-0.50, and draws vs
    perfect play are 0.000 from update 50 on. At this scale TicTacToe self-play teaches the
    format and some attacking, not defence.
  * TicTacToe vs the game-theoretic opponent (`--opponent game_theoretic`: minimax, 64 games,
    100 updates, 1.5 min): draws vs perfect play 0.016 -> 0.50 by update 50 — every game as
    Player 0 drawn, every game as Player 1 lost: it memorises one drawing line against a
    deterministic opponent. Against random play it generalises worse than self-play (invalid
    moves back up to 34% of games, losses 0.61 at update 100): the paper's point about fixed
    opponents, in miniature.
  * Speed (benchmarks/spiral.py, 1 thread, beside one other run): Kuhn Poker 308 episodes/s
    batched vs 21/s with one `model.generate` per turn (14.7x), TicTacToe 73 vs 8.5 (8.6x); an
    update on 147 turns merges them into 30 rows and takes 0.45 s vs 8.8 s for a plain PPO step
    on every turn (19.8x).

Metrics (`metrics.csv`, TensorBoard, the `callback(step, metrics)` argument of `train`):
  train/episodes            episodes played so far (all games, this rank)
  train/invalid_rate        share of the learner's turns this step that were invalid moves
  train/completion_len      mean completion length of the learner's turns (tokens)
  train/kept_frac           share of learner turns with a non-zero advantage (trained on)
  train/return/G/p          mean return of role p in game G this step (learner's seats)
  train/baseline/G/p        RAE baseline b[G, p] after this step
  train/seconds_per_step, train/episodes_per_s, train/tokens_per_s, train/wall_seconds
  losses/policy, losses/kl, losses/clip_frac, losses/grad_norm, losses/ratio_max
  losses/rows               rows in the update after merging identical turns (see merge_turns)
  eval/kuhn_poker/nashconv_last   NashConv of the current model (exact in direct mode)
  eval/kuhn_poker/nashconv_lo/hi  bootstrap 90% interval (reasoning mode: sampled table)
  eval/kuhn_poker/nashconv_avg    NashConv of the reach-weighted average of the iterates
  eval/kuhn_poker/legal_mass      direct mode: mean probability of answering a legal move
  eval/tictactoe/{win,draw,loss}_vs_{random,perfect}, eval/tictactoe/invalid
  eval/negotiation/return_vs_heuristic, eval/negotiation/invalid   (when negotiation is trained on)
  eval/completion_len             mean completion length in the evaluation games

Commands:
  CPU:  spkit train spiral --game kuhn_poker --entropy-coef 0.2 --lr 1e-5 --steps 300 \
            --eval-every 25 --out runs/spiral                                # the README's main job
        spkit train spiral --game kuhn_poker --entropy-coef 0.2 --lr 1e-5 --max-minutes 10 --seed 1
        spkit train spiral --game tictactoe --episodes 64 --steps 40 --out runs/spiral_tictactoe
        spkit train spiral --opponent random --out runs/spiral_random     # an ablation
        torchrun --nproc_per_node 2 -m spkit train spiral --steps 20      # 2 processes, gloo
  GPU:  spkit train spiral --preset qwen3-4b --model Qwen/Qwen3-4B-Base --device cuda \
            --game kuhn_poker --game tictactoe --game negotiation --out runs/spiral_4b
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spkit.errors import SpkitError
from spkit.games import load_game
from spkit.games.base import Game
from spkit.games.policies import (
    HeuristicNegotiator,
    MinimaxPolicy,
    TabularPolicy,
    UniformRandomPolicy,
)
from spkit.games.prompts import MODES, format_prompt, parse_action
from spkit.generation import Sampler
from spkit.logprobs import shared_prefix_logprobs
from spkit.rl.advantages import RoleBaseline
from spkit.rl.losses import kl_k3, masked_mean, ppo_clip_loss
from spkit.rl.selfplay import Episode, LMAgent, Turn, outcome_rates, play_episodes
from spkit.rl.tabular_pg import average_policy
from spkit.sampling import SamplingParams
from spkit.solvers.exploitability import Table, game_tree, nash_conv
from spkit.train_utils import (
    Checkpointer,
    MetricLogger,
    all_reduce_grads,
    derive_seed,
    ensure_writable_dir,
    init_distributed,
    plot_metrics,
    progress,
    seed_everything,
)

PAPER = {
    "title": "SPIRAL: Self-Play on Zero-Sum Games Incentivizes Reasoning via Multi-Agent "
    "Multi-Turn Reinforcement Learning",
    "arxiv": "2506.24119",
    "citation": "Liu et al., 2025",
}
OPPONENTS = ("self", "fixed", "random", "game_theoretic")
GAMES = ("kuhn_poker", "tictactoe", "negotiation")


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config:
    """SPIRAL settings. Defaults: spkit-tiny on a CPU; `Config.preset` for the paper's scale."""

    model: str = "spkit-tiny"  # model name or save_pretrained dir (see spkit.models.load_model)
    games: tuple[str, ...] = ("kuhn_poker",)  # training games (kuhn_poker, tictactoe, negotiation)
    mode: str = "direct"  # prompt mode: "direct" (answer only) or "reasoning" (\boxed{} at the end)
    opponent: str = "self"  # self | fixed (frozen initial model) | random | game_theoretic
    steps: int = 60  # policy updates
    episodes: int = 256  # games per training game per step (per process); cheap: turns are merged
    lr: float = 3e-5  # learning rate (paper: Adam, 1e-6 for Qwen3-4B)
    optimizer: str = "adam"  # adam | sgd (plain SGD scales steps by the gradient, not per weight)
    clip_eps: float = 0.2  # PPO clip range ε
    ppo_epochs: int = 1  # passes (optimizer steps) over each rollout batch (paper: 2)
    micro_batch: int = 64  # turns per forward/backward (gradient accumulation)
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    temperature: float = 1.0  # rollout sampling temperature (paper: 1.0)
    max_new_tokens: int = 0  # per turn; 0 = 8 in direct mode, 64 in reasoning mode
    rae: bool = True  # role-conditioned EMA baseline; False = raw returns (the paper's ablation)
    rae_alpha: float = 0.95  # EMA decay α of the RAE baselines
    entropy_coef: float = 0.0  # entropy bonus β (reward − β·log π(y)); off in the paper
    kl_coef: float = 0.0  # k3 KL penalty to the initial model; off in the paper
    eval_every: int = 10  # evaluate (and plot) every k steps; 0 = only at the end
    eval_games: int = 64  # games per evaluation match (TicTacToe, negotiation; 0 = Kuhn only)
    eval_temperature: float = 1.0  # sampling temperature in evaluation games
    kuhn_samples: int = 32  # reasoning mode: completions per Kuhn infoset for the sampled table
    avg_every: int = 1  # record the Kuhn policy table for the average every k steps
    max_minutes: float = 0.0  # wall-clock budget incl. loading and evals: stop (eval, save) once over; 0 = none
    checkpoint_every: int = 50  # save a resumable checkpoint every k steps (and at the end)
    seed: int = 0  # every random choice derives from it
    out: str = "runs/spiral"  # output directory (metrics.csv, plots, checkpoints, final/)
    resume: bool = False  # continue from the newest checkpoint in `out`
    tensorboard: bool = True  # also write TensorBoard events (metrics.csv is always written)
    plot: bool = True  # write spiral.png (the main curves) into `out` at the end
    device: str | None = None  # cpu | cuda | mps (None = auto)
    dtype: str | None = None  # model dtype (None = float32 on CPU)

    @staticmethod
    def preset(name: str) -> Config:
        """Named settings. "qwen3-4b": the paper's reference run (reasoning mode, lr 1e-6,
        128 games per step, 2 PPO epochs, 4096 new tokens, no KL, temperature 1)."""
        if name == "tiny":
            return Config()
        if name == "qwen3-4b":
            return Config(model="Qwen/Qwen3-4B-Base", mode="reasoning", lr=1e-6, episodes=128,
                          ppo_epochs=2, micro_batch=1, max_new_tokens=4096, steps=400,
                          eval_every=32, eval_games=16, eval_temperature=0.6,
                          checkpoint_every=16, dtype="bfloat16")
        raise SpkitError(f"unknown preset {name!r}; known: tiny, qwen3-4b")

    def resolved_max_new_tokens(self) -> int:
        return self.max_new_tokens or (8 if self.mode == "direct" else 64)

    def check(self) -> None:
        if self.mode not in MODES:
            raise SpkitError(f"--mode must be one of {MODES}, got {self.mode!r}")
        if self.opponent not in OPPONENTS:
            raise SpkitError(f"--opponent must be one of {OPPONENTS}, got {self.opponent!r}")
        bad = [g for g in self.games if g not in GAMES]
        if bad or not self.games:
            raise SpkitError(f"--game must be among {GAMES}, got {list(self.games)}")
        if self.steps < 0 or self.episodes < 1 or self.micro_batch < 1 or self.ppo_epochs < 1:
            raise SpkitError("steps >= 0, episodes >= 1, micro_batch >= 1, ppo_epochs >= 1 needed")


@dataclass
class History:
    """What `train` returns: every logged row (as in metrics.csv) and where the run lives."""

    rows: list[dict[str, float]] = field(default_factory=list)
    out_dir: Path = Path(".")
    final_dir: Path | None = None

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric, skipping rows where it was not logged."""
        pts = [(int(r["step"]), r[key]) for r in self.rows if key in r and math.isfinite(r[key])]
        return [s for s, _ in pts], [v for _, v in pts]

    def last(self, key: str) -> float:
        vals = self.series(key)[1]
        return vals[-1] if vals else math.nan


# ---- Rollout -----------------------------------------------------------------------------------
def opponent_for(game: Game, kind: str, frozen: LMAgent | None):
    """The non-learning opponent of the ablations (None for self-play)."""
    if kind == "self":
        return None
    if kind == "fixed":
        return frozen
    if kind == "random":
        return UniformRandomPolicy()
    if game.name == "kuhn_poker":  # game_theoretic: CFR's average policy (NashConv ≈ 0.002)
        from spkit.solvers.cfr import CFRSolver

        cfr = CFRSolver(game)
        cfr.iterate(1000)
        return TabularPolicy(cfr.average_policy())
    if game.name == "tictactoe":
        return MinimaxPolicy(game)
    return HeuristicNegotiator()  # negotiation has no exact solver here; a fixed heuristic


def collect(games: dict[str, Game], learner: LMAgent, opponents: dict, cfg: Config, seed: int) -> list[Episode]:
    """Step 1: `cfg.episodes` games of each training game; vs an opponent the learner's seat
    alternates (game i: seat i % 2) so both roles are trained."""
    episodes: list[Episode] = []
    for name, game in games.items():
        opp = opponents[name]

        def seats(i: int, opp=opp):
            return [learner, learner] if opp is None else ([learner, opp] if i % 2 == 0 else [opp, learner])

        episodes += play_episodes(game, seats, cfg.episodes, derive_seed(seed, name))
    return episodes


# ---- Reward / advantage ------------------------------------------------------------------------
def rae_advantages(episodes: list[Episode], baseline: RoleBaseline | None) -> list[tuple[Turn, float]]:
    """Steps 2-3: (learner turn, advantage) pairs; RAE per (episode, role) in episode order."""
    out: list[tuple[Turn, float]] = []
    for ep in episodes:
        for role in ep.learner_seats:
            R = ep.returns[role]
            A = baseline.update((ep.game, role), R) if baseline is not None else R  # Eq. (RAE)
            out += [(t, A) for t in ep.turns if t.learner and t.role == role]
    return out


def entropy_bonus(pairs: list[tuple[Turn, float]], beta: float) -> list[tuple[Turn, float]]:
    """Optional entropy regulariser as reward shaping: A + β·(−log π(y)) on *legal* moves only.

    −log π(y) of a sampled y is an unbiased estimate of the sequence entropy. Invalid answers get
    no bonus: otherwise long, improbable garbage earns more bonus than the −1.5 penalty costs
    (measured: with β = 1 and the bonus on every turn, spkit-tiny's invalid rate went from 0.3%
    to 100% within ~50 updates)."""
    if beta <= 0:
        return pairs
    return [(t, a - beta * sum(t.old_logprobs) if t.action is not None else a) for t, a in pairs]


# ---- Loss ---------------------------------------------------------------------------------------
def _pad(rows: list[list[float]] | list[torch.Tensor], T: int) -> torch.Tensor:
    out = torch.zeros(len(rows), T)
    for i, r in enumerate(rows):
        r = torch.as_tensor(r, dtype=torch.float32)
        out[i, : len(r)] = r
    return out


def spiral_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, clip_eps: float,
    ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0,
    weights: torch.Tensor | None = None, n_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-level PPO-clip (+ optional k3 KL), summed over tokens and divided by `n_tokens`.

    logp/old_logp/mask: (B, T); adv: (B,). A row may stand for `weights[b]` identical turns
    (same prompt, completion and advantage sign) whose advantages were summed into adv[b]:
    min(r·A, clip(r)·A) is linear in A for a fixed sign, so the merged row gives exactly the
    sum of the turns' terms. `n_tokens` defaults to the number of (unmerged) completion tokens.
    """
    w = torch.ones_like(adv) if weights is None else weights  # (B,)
    n = float((mask * w[:, None]).sum()) if n_tokens is None else n_tokens
    pg = ppo_clip_loss(logp, old_logp, adv, mask, clip_eps=clip_eps) * mask.sum()  # Eq. (PPO), Σ_t
    ratio = torch.exp(logp - old_logp).detach()  # (B, T)
    stats = {"clip_frac": masked_mean(((ratio - 1).abs() > clip_eps).float(), mask, None).item(),
             "ratio_max": (ratio * mask).max().item(), "kl": 0.0}
    loss = pg / max(n, 1.0)
    if ref_logp is not None and kl_coef > 0:
        kl = (kl_k3(logp, ref_logp) * mask * w[:, None]).sum() / max(n, 1.0)  # mean KL(π‖π_ref) per token
        loss = loss + kl_coef * kl
        stats["kl"] = kl.item()
    return loss, stats


def merge_turns(batch: list[tuple[Turn, float]]) -> list[tuple[Turn, float, int]]:
    """Merge turns with identical (prompt, completion, sign of A) into one row (exact; see
    `spiral_loss`). Kuhn Poker has 12 prompts, so 64 games shrink to ~30 rows."""
    rows: dict[tuple, list] = {}
    for t, a in batch:
        key = (tuple(t.prompt_ids), tuple(t.completion_ids), a > 0)
        if key in rows:
            rows[key][1] += a
            rows[key][2] += 1
        else:
            rows[key] = [t, a, 1]
    return [(t, a, n) for t, a, n in rows.values()]


def update(model, optimizer, batch: list[tuple[Turn, float]], cfg: Config, ref_model=None) -> dict[str, float]:
    """Step 4: `ppo_epochs` optimizer steps, each over the whole batch in micro-batches."""
    stats = {"policy": 0.0, "kl": 0.0, "clip_frac": 0.0, "ratio_max": 0.0, "grad_norm": 0.0}
    n_tok = float(sum(len(t.completion_ids) for t, _ in batch))
    rows = merge_turns(batch)
    stats["rows"] = float(len(rows))
    model.train()
    for _ in range(cfg.ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        for i in range(0, len(rows), cfg.micro_batch):
            mb = rows[i: i + cfg.micro_batch]
            P, C = [t.prompt_ids for t, _, _ in mb], [t.completion_ids for t, _, _ in mb]
            T = max(len(c) for c in C)
            logp = torch.stack([F.pad(x, (0, T - len(x))) for x in shared_prefix_logprobs(model, P, C)])  # (b, T)
            dev = logp.device
            old = _pad([t.old_logprobs for t, _, _ in mb], T).to(dev)  # (b, T)
            mask = _pad([[1.0] * len(c) for c in C], T).to(dev)  # (b, T)
            adv = torch.tensor([a for _, a, _ in mb], device=dev)  # (b,) summed advantages
            w = torch.tensor([float(n) for _, _, n in mb], device=dev)  # (b,) turns merged
            ref = None
            if ref_model is not None and cfg.kl_coef > 0:
                with torch.no_grad():
                    ref = torch.stack([F.pad(x, (0, T - len(x))) for x in shared_prefix_logprobs(ref_model, P, C)])
            loss, s = spiral_loss(logp, old, adv, mask, cfg.clip_eps, ref, cfg.kl_coef, w, n_tok)
            loss.backward()
            share = float((mask * w[:, None]).sum()) / max(n_tok, 1.0)
            stats["policy"] += loss.item() / cfg.ppo_epochs
            stats["kl"] += s["kl"] / cfg.ppo_epochs
            stats["clip_frac"] += s["clip_frac"] * share / cfg.ppo_epochs
            stats["ratio_max"] = max(stats["ratio_max"], s["ratio_max"])
        all_reduce_grads(model)
        if cfg.max_grad_norm > 0:
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
        optimizer.step()
    model.eval()
    return stats


# ---- Eval ---------------------------------------------------------------------------------------
def _direct_answers(tokenizer, state) -> tuple[list[int], list[list[int]]]:
    """Token ids of `state`'s direct-mode prompt and of each legal answer ``action}``, in
    `legal_actions()` order: what the model's exact policy at `state` is read from."""
    prompt = tokenizer(format_prompt(state, state.current_player(), "direct"))["input_ids"]
    return prompt, [tokenizer(a + "}", add_special_tokens=False)["input_ids"] for a in state.legal_actions()]


def kuhn_table(model, tokenizer, game: Game, cfg: Config, seed: int) -> tuple[Table, dict[str, float]]:
    """The model's Kuhn Poker policy, one row per information set (12), renormalised over the
    legal moves (i.e. conditioned on answering legally).

    direct: exact, p(action + "}" | prompt) for each legal action, one batched forward.
    reasoning: `cfg.kuhn_samples` sampled completions per infoset, empirical frequencies of the
    legal answers (an infoset with no legal answer counts as uniform)."""
    tree = game_tree(game)
    keys = list(tree.infoset_states)
    states = [tree.infoset_states[k] for k in keys]
    if cfg.mode == "direct":
        P, C, owner = [], [], []
        for j, s in enumerate(states):
            pid, answers = _direct_answers(tokenizer, s)
            for a, c in zip(s.legal_actions(), answers, strict=True):
                P.append(pid)
                C.append(c)
                owner.append((j, a))
        with torch.no_grad():
            lps = [float(x.sum()) for x in shared_prefix_logprobs(model, P, C)]
        logp: dict[str, dict[str, float]] = {k: {} for k in keys}
        for (j, a), lp in zip(owner, lps, strict=True):
            logp[keys[j]][a] = lp
        table, mass = {}, []
        for k, v in logp.items():  # softmax over the legal answers, stable for tiny masses
            z = torch.logsumexp(torch.tensor(list(v.values()), dtype=torch.float64), 0).item()
            table[k] = {a: math.exp(lp - z) for a, lp in v.items()}
            mass.append(math.exp(z))
        return table, {"legal_mass": float(np.mean(mass)), "counts": None}
    n = cfg.kuhn_samples
    prompts = [format_prompt(s, s.current_player(), cfg.mode) for s in states]
    sampler = Sampler(model, tokenizer)
    params = SamplingParams(max_new_tokens=cfg.resolved_max_new_tokens(), temperature=cfg.eval_temperature,
                            stop=("}",), include_stop=True)
    outs = sampler.generate([p for p in prompts for _ in range(n)], params, seed=seed)
    counts: dict[str, dict[str, int]] = {}
    for j, (k, s) in enumerate(zip(keys, states, strict=True)):
        c = dict.fromkeys(s.legal_actions(), 0)
        for o in outs[j * n: (j + 1) * n]:
            a = parse_action(o.text, s.legal_actions(), s)
            if isinstance(a, str):
                c[a] += 1
        counts[k] = c
    return _counts_table(counts), {"legal_mass": float(np.mean([sum(c.values()) / n for c in counts.values()])),
                                   "counts": counts}


def kuhn_gradient_similarity(model, tokenizer, game: Game, keys: list[str] | None = None) -> tuple[list[str], torch.Tensor]:
    """Cosine similarity between the parameter gradients of each Kuhn infoset's preference
    log p(aggressive move) − log p(passive move) (direct mode), as a (n, n) matrix.

    Why: a gradient step that raises "bet" at infoset I moves infoset J by the dot product of
    their gradients. At cosine ≈ 1 the network *cannot* move I and J apart, whatever the reward
    says: an RL run can only reach policies where they are tied (`lessons/02` measures both)."""
    tree = game_tree(game)
    keys = keys or sorted(tree.infoset_states)
    grads = []
    for k in keys:
        pid, comps = _direct_answers(tokenizer, tree.infoset_states[k])  # [passive, aggressive]
        lp = shared_prefix_logprobs(model, [pid, pid], comps)
        model.zero_grad(set_to_none=True)
        (lp[1].sum() - lp[0].sum()).backward()
        grads.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                               for p in model.parameters()]))
    model.zero_grad(set_to_none=True)
    g = F.normalize(torch.stack(grads), dim=1)
    return keys, g @ g.T


def _counts_table(counts: dict[str, dict[str, int]]) -> Table:
    return {k: ({a: x / sum(c.values()) for a, x in c.items()} if sum(c.values()) else
                {a: 1 / len(c) for a in c}) for k, c in counts.items()}


def bootstrap_nashconv(game: Game, counts: dict[str, dict[str, int]], seed: int, reps: int = 50) -> tuple[float, float]:
    """90% bootstrap interval of NashConv for a table estimated from per-infoset samples."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(reps):
        resampled = {}
        for k, c in counts.items():
            acts, n = list(c), sum(c.values())
            draws = rng.multinomial(n, [x / n for x in c.values()]) if n else [0] * len(acts)
            resampled[k] = dict(zip(acts, map(int, draws), strict=True))
        vals.append(nash_conv(game, _counts_table(resampled)))
    return float(np.percentile(vals, 5)), float(np.percentile(vals, 95))


@functools.cache
def _eval_game(name: str) -> Game:
    return load_game(name)  # one object per name: its solved tree / minimax table are cached on it


@functools.cache
def _perfect(name: str) -> MinimaxPolicy:
    return MinimaxPolicy(_eval_game(name))


def evaluate(model, tokenizer, cfg: Config, step: int, tables: list[Table]) -> tuple[dict[str, float], Table | None]:
    """Step 5: fixed evaluation seeds (independent of the training seed's stream)."""
    m: dict[str, float] = {}
    seed = derive_seed(cfg.seed, "eval", step)
    kuhn = _eval_game("kuhn_poker")
    table, info = kuhn_table(model, tokenizer, kuhn, cfg, seed)
    m["eval/kuhn_poker/nashconv_last"] = nash_conv(kuhn, table)
    m["eval/kuhn_poker/legal_mass"] = info["legal_mass"]
    if info["counts"] is not None:
        lo, hi = bootstrap_nashconv(kuhn, info["counts"], seed)
        m["eval/kuhn_poker/nashconv_lo"], m["eval/kuhn_poker/nashconv_hi"] = lo, hi
    if tables:
        m["eval/kuhn_poker/nashconv_avg"] = nash_conv(kuhn, average_policy(game_tree(kuhn), tables))
    agent = LMAgent(Sampler(model, tokenizer), cfg.mode,
                    SamplingParams(max_new_tokens=cfg.resolved_max_new_tokens(), temperature=cfg.eval_temperature),
                    learner=True)
    lens: list[int] = []
    for name, opps in [] if cfg.eval_games == 0 else (("tictactoe", {"random": UniformRandomPolicy(), "perfect": None}),
                       ("negotiation", {"heuristic": HeuristicNegotiator()})):
        if name not in cfg.games and name != "tictactoe":
            continue  # negotiation is evaluated only when trained on (its prompts are long)
        game = _eval_game(name)
        for label, opp in opps.items():
            opp = opp or _perfect(name)
            eps = play_episodes(game, lambda i, o=opp: [agent, o] if i % 2 == 0 else [o, agent],
                                cfg.eval_games, derive_seed(seed, name, label))
            r = outcome_rates(eps, lambda e: e.learner_seats[0])
            lens += [len(t.completion_ids) for e in eps for t in e.turns]
            if name == "tictactoe":
                for k in ("win", "draw", "loss"):
                    m[f"eval/tictactoe/{k}_vs_{label}"] = r[k]
                m[f"eval/tictactoe/invalid_vs_{label}"] = r["invalid"]
            else:
                m["eval/negotiation/return_vs_heuristic"] = r["return"]
                m["eval/negotiation/invalid"] = r["invalid"]
    m["eval/completion_len"] = float(np.mean(lens)) if lens else 0.0
    return m, table


PLOT_KEYS = ["eval/kuhn_poker/nashconv_last", "eval/kuhn_poker/nashconv_avg", "eval/tictactoe/loss_vs_random",
             "eval/tictactoe/draw_vs_perfect", "train/invalid_rate", "train/completion_len",
             "eval/negotiation/return_vs_heuristic", "losses/policy", "train/baseline/kuhn_poker/0"]


# ---- Train --------------------------------------------------------------------------------------
def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run SPIRAL; return every logged row. `callback(step, metrics)` after each logged step."""
    from spkit.models import load_model

    cfg.check()
    rank, world = init_distributed()
    seed_everything(derive_seed(cfg.seed, "rank", rank))
    out = ensure_writable_dir(cfg.out) if rank == 0 else Path(cfg.out)
    model, tok = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    ref_model = None
    if cfg.opponent == "fixed" or cfg.kl_coef > 0:
        ref_model, _ = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
        ref_model.requires_grad_(False)
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}.get(cfg.optimizer)
    if opt_cls is None:
        raise SpkitError(f"--optimizer must be adam or sgd, got {cfg.optimizer!r}")
    optimizer = opt_cls(model.parameters(), lr=cfg.lr)
    baseline = RoleBaseline(cfg.rae_alpha) if cfg.rae else None
    ckpt = Checkpointer(out)
    t_begin = time.perf_counter()
    start, tables, wall = 0, [], 0.0
    if cfg.resume:
        state = ckpt.load_latest(model, optimizer)
        if state is None:
            raise SpkitError(f"--resume: no checkpoint under {out}/checkpoints")
        start, extra = int(state["step"]), state["extra"]
        if baseline is not None:
            baseline.load_state_dict(extra["baseline"])
        tables, wall = extra["tables"], float(extra["wall"])
    if rank == 0:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1, default=str))
    logger = MetricLogger(out, cfg.tensorboard, start if cfg.resume else None) if rank == 0 else None
    games = {g: load_game(g) for g in cfg.games}
    sp = SamplingParams(max_new_tokens=cfg.resolved_max_new_tokens(), temperature=cfg.temperature)
    learner = LMAgent(Sampler(model, tok), cfg.mode, sp, learner=True)
    frozen = LMAgent(Sampler(ref_model, tok), cfg.mode, sp, learner=False) if ref_model is not None else None
    opponents = {g: opponent_for(game, cfg.opponent, frozen) for g, game in games.items()}
    kuhn = _eval_game("kuhn_poker")
    n_eps = start * cfg.episodes * len(games)

    def log(step: int, metrics: dict[str, float]) -> None:
        if logger is not None:
            logger.log(step, **metrics)
            if callback is not None:
                callback(step, dict(metrics))

    def do_eval(step: int, extra: dict[str, float]) -> None:
        if rank == 0:
            ev, _ = evaluate(model, tok, cfg, step, tables)
            log(step, {**extra, **ev})

    if start == 0:
        if cfg.avg_every and "kuhn_poker" in cfg.games:
            tables.append(kuhn_table(model, tok, kuhn, cfg, derive_seed(cfg.seed, "table", 0))[0])
        do_eval(0, {})
    quiet = {"disable": True} if rank != 0 else {}
    bar = progress(range(start, cfg.steps), desc="spiral", initial=start, total=cfg.steps, **quiet)
    for step in bar:
        t0 = time.perf_counter()
        episodes = collect(games, learner, opponents, cfg, derive_seed(cfg.seed, "step", step, rank))
        t_roll = time.perf_counter() - t0
        pairs = rae_advantages(episodes, baseline)
        pairs = entropy_bonus(pairs, cfg.entropy_coef)
        batch = [(t, a) for t, a in pairs if a != 0.0 and t.completion_ids]
        losses = update(model, optimizer, batch, cfg, ref_model) if batch else {}
        n_eps += len(episodes)
        step_metrics = _train_metrics(episodes, pairs, batch, baseline, cfg)
        dt = time.perf_counter() - t0
        step_metrics.update({
            "train/episodes": n_eps, "train/seconds_per_step": dt, "train/rollout_seconds": t_roll,
            "train/episodes_per_s": len(episodes) / max(t_roll, 1e-9),
            "train/tokens_per_s": sum(len(t.completion_ids) for t, _ in pairs) / max(t_roll, 1e-9),
            **{f"losses/{k}": v for k, v in losses.items()},
        })
        done = step + 1
        now = wall + time.perf_counter() - t_begin  # since `train` began (plus earlier runs if resumed)
        step_metrics["train/wall_seconds"] = now
        last = done == cfg.steps or _over_budget(cfg, now, world)
        if cfg.avg_every and "kuhn_poker" in cfg.games and done % cfg.avg_every == 0 and rank == 0:
            tables.append(kuhn_table(model, tok, kuhn, cfg, derive_seed(cfg.seed, "table", done))[0])
        if (cfg.eval_every and done % cfg.eval_every == 0) or last:
            do_eval(done, step_metrics)
        else:
            log(done, step_metrics)
        if rank == 0 and (done % cfg.checkpoint_every == 0 or last):
            extra = {"baseline": baseline.state_dict() if baseline else {}, "tables": tables,
                     "wall": wall + time.perf_counter() - t_begin}
            ckpt.save(done, model, tok, optimizer, extra)
        if last:
            break
    final = None
    if rank == 0:
        final = out / "final"
        model.save_pretrained(final, safe_serialization=True)
        tok.save_pretrained(final)
        logger.close()
        if cfg.plot:
            plot_metrics(logger.history, PLOT_KEYS, out / "spiral.png", title=f"SPIRAL ({cfg.mode}, {cfg.opponent})")
    return History(logger.history if logger else [], out, final)


def _over_budget(cfg: Config, elapsed: float, world: int) -> bool:
    """True once the wall-clock budget is spent; every rank takes rank 0's decision."""
    over = torch.tensor([float(cfg.max_minutes > 0 and elapsed > 60 * cfg.max_minutes)])
    if world > 1:
        import torch.distributed as dist

        dist.broadcast(over, src=0)
    return bool(over.item())


def _train_metrics(episodes, pairs, batch, baseline, cfg: Config) -> dict[str, float]:
    turns = [t for t, _ in pairs]
    m = {
        "train/invalid_rate": float(np.mean([t.action is None for t in turns])) if turns else 0.0,
        "train/completion_len": float(np.mean([len(t.completion_ids) for t in turns])) if turns else 0.0,
        "train/kept_frac": len(batch) / max(len(pairs), 1),
    }
    for g in cfg.games:
        for role in (0, 1):
            rets = [e.returns[role] for e in episodes if e.game == g and role in e.learner_seats]
            if rets:
                m[f"train/return/{g}/{role}"] = float(np.mean(rets))
            if baseline is not None:
                m[f"train/baseline/{g}/{role}"] = baseline.value((g, role))
    return m


# ---- Entry --------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    from spkit.cli import add_common_arguments

    add_common_arguments(p, out="runs/spiral")
    d = Config()
    p.add_argument("--game", action="append", choices=GAMES, help="training game (repeatable; default kuhn_poker)")
    p.add_argument("--preset", default=None, help="named settings: tiny | qwen3-4b (flags override)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=None, help=f"optimizer (default {d.optimizer})")
    p.add_argument("--mode", choices=MODES, default=None, help=f"prompt mode (default {d.mode})")
    p.add_argument("--opponent", choices=OPPONENTS, default=None, help=f"opponent (default {d.opponent})")
    for name, typ in (("steps", int), ("episodes", int), ("lr", float), ("eval_every", int),
                      ("eval_games", int), ("ppo_epochs", int), ("micro_batch", int),
                      ("entropy_coef", float), ("kl_coef", float), ("max_new_tokens", int),
                      ("temperature", float), ("checkpoint_every", int), ("max_minutes", float),
                      ("rae_alpha", float), ("kuhn_samples", int)):
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None,
                       help=f"see Config.{name} (default {getattr(d, name)})")
    p.add_argument("--no-rae", action="store_true", help="no baseline: advantage = raw return (ablation)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--device", default=None, help="cpu | cuda | mps (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def config_from_args(args: argparse.Namespace) -> Config:
    cfg = Config.preset(args.preset) if args.preset else Config()
    for f in dataclasses.fields(Config):
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("games", "resume"):
            setattr(cfg, f.name, v)
    if args.game:
        cfg.games = tuple(dict.fromkeys(args.game))
    cfg.rae = not args.no_rae
    cfg.resume = bool(args.resume)
    return cfg


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(0)
    cfg = config_from_args(args)
    hist = train(cfg)
    if hist.final_dir is not None:
        k = "eval/kuhn_poker/nashconv_last"
        print(f"Kuhn Poker NashConv: {hist.series(k)[1][0]:.3f} -> {hist.last(k):.3f} (last iterate), "
              f"{hist.last('eval/kuhn_poker/nashconv_avg'):.3f} (average policy)")
        print(f"model: {hist.final_dir}   plot: {hist.out_dir / 'spiral.png'}   metrics: {hist.out_dir / 'metrics.csv'}")
    return 0
