r"""SPIRAL — Self-Play on Zero-Sum Games Incentivizes Reasoning via Multi-Agent Multi-Turn RL.

Liu, Guertler, Yu, Liu, Xie, Chen, Lee, Li, Pang, Sim, Lu et al. (2025), arXiv:2506.24119.

Idea: one shared language model plays *both* seats of two-player zero-sum text games (Kuhn
Poker, TicTacToe, Simple Negotiation) against itself, the role written into the prompt. The
opponent improves with the learner, so the games are an endless curriculum with a verifiable
reward (the game outcome). Zero-sum self-play makes one role's gain the other's loss; the
paper's Role-conditioned Advantage Estimation (RAE) subtracts a running mean return per
(game, role) so that a structurally favoured role does not push the shared policy one way.

Algorithm (one step; step 0 once, before the first):
  0. Optional, for a game the model has never seen (``--sft-steps``): supervised fine-tuning on
     uniformly random legal moves in the game's own prompts — its format, not a strategy.
  1. Rollout: play N games of each training game to the end; every LLM turn samples a
     completion from π_θ at temperature T (direct mode: ``action}`` after ``\boxed{``;
     reasoning mode: short reasoning, then ``\boxed{action}``, stopped at the brace that closes
     the box, braces counted by depth). An invalid answer ends the game: −1.5 to the offender,
     +0.5 to the other player. The paper's batch (``--min-turns 128``): repeat such rounds
     until the learner has taken at least 128 turns, and keep 128 of them at random (after
     step 3, so RAE sees every game). Optional (``--pool-size N``): a share ``--pool-frac`` of
     the games is played against one of the learner's last N snapshots (``PastSelves``, one
     every ``--pool-every`` steps) instead of its current self — against self-play's cycles.
  2. Reward: each turn of player p in game G gets R_p, p's final return (γ = 1).
  3. RAE, per (episode, role) in order:   A = R_p − b[G, p];   b[G, p] ← α b[G, p] + (1 − α) R_p
     with α = 0.95, b = 0 at the start — the advantage is read *before* b moves.   # Eq. (RAE)
  4. Drop turns with A = 0 (no signal), then minimise the token-level PPO-clip loss
        L(θ) = −(1/Z) Σ_turns Σ_t min(r_t A, clip(r_t, 1 − ε, 1 + ε) A),
        r_t = π_θ,T(y_t | x, y_<t) / π_old,T(y_t | x, y_<t),  π_T = softmax(logits / T)  # Eq. (PPO)
     with Z = Σ|y| (``--loss-norm token_mean``, spkit's default) or Z = turns · max_new_tokens
     (``dr_grpo``, oat's default critic in the paper's code), for `ppo_epochs` passes over the
     batch (no KL term by default, as in the paper). Optional, Kuhn Poker (``--magnet-coef η``):
        + η · (1/12) Σ_I KL(π_θ(·|I) ‖ π̄(·|I))                                         # Eq. (MMD)
     over the 12 infosets' legal moves, π̄ the current average policy (step 5): magnetic mirror
     descent's regulariser with the average of the iterates as a moving magnet.
  5. Every `eval_every` steps: Kuhn Poker NashConv of the last iterate and of the average
     policy, TicTacToe W/D/L vs random and vs perfect play, negotiation reward vs a heuristic,
     invalid-move rate, completion length, the RAE baselines.
The run itself (seeds, budget, checkpoints, resume, processes, logs, plots) is `spkit.run.Run`.

Deviations from the paper:
  1. A 3.3M-parameter model (spkit-tiny) and a few hundred games per step on a CPU instead of
     Qwen3-4B-Base on 8 GPUs; `--preset qwen3-4b` holds the paper-scale settings.
  2. spkit's own game implementations (standard Kuhn Poker payoffs, so NashConv is exact)
     instead of TextArena environments, and spkit's prompt formats. TextArena envs train through
     `spkit.games.textarena` (``--games textarena:TicTacToe-v0``; evaluated against random play),
     with SPIRAL's invalid-move rule and spkit's context policy.
  3. Direct mode (answer only) is the default at this scale; the paper's reasoning mode is
     ``--mode reasoning``.
  4. Extra, off by default: an entropy bonus (reward shaping with −β·log π(y), the sampled
     sequence entropy, on legal moves only — which also widens the legal-vs-invalid gap, see
     `entropy_bonus`), optionally halved every `entropy_half_life` steps (a constant β pulls the
     policy to a regularised equilibrium, not a Nash one: the logit quantal-response equilibrium
     of `spkit.solvers.qre`); a k3 KL penalty to the initial model; the magnet term of step 4;
     linearly weighted averaging of the Kuhn iterates (`avg_weights`); and (``--entropy-ref
     average``, Kuhn Poker) the bonus measured against the average policy instead of uniform,
     β·(log π̄(a|I) − log π(y)): a KL to a moving magnet in the same per-move units as the
     entropy, whose fixed points with π = π̄ are Nash equilibria (see `entropy_bonus`); and
     (``--pool-size``) games against past snapshots of the learner, not only its current self.
  5. With several processes each rank plays its own games (rank-derived seeds); the RAE
     baselines and the loss normaliser are computed over the global batch and gradients are
     averaged, so an update on 2 ranks × B games equals one process's on those 2B games (tested).
  6. The paper's learner uses vLLM rollouts and a separate learner; here one process samples
     with `spkit.generation.Sampler` and updates the same weights (exactly on-policy).
  7. Batch and normaliser at spkit-tiny's scale: `episodes` games per step (not `min_turns`
     learner turns) and the token-mean loss (not ``dr_grpo``); `--preset qwen3-4b` uses the
     paper's (``min_turns=128``, ``loss_norm=dr_grpo``).
What this reproduces at spkit-tiny's scale, measured, is in `lessons/02_spiral_self_play.ipynb`
and the README.

Metrics (`metrics.csv`, TensorBoard, the `callback(step, metrics)` argument of `train`):
  train/episodes            episodes played so far (all games, this rank)
  train/invalid_rate        share of the learner's turns this step that were invalid moves
  train/completion_len      mean completion length of the learner's turns (tokens)
  train/kept_frac           share of learner turns with a non-zero advantage (trained on)
  train/overflow_rate       share of games ended because a prompt did not fit the context
  train/return/G/p          mean return of role p in game G this step (learner's seats)
  train/baseline/G/p        RAE baseline b[G, p] after this step
  train/entropy_coef        the entropy bonus β_t of this step
  train/pool_opponent       the update whose snapshot played the past-self games (with --pool-size)
  train/cpu_seconds         CPU time of the run so far (user + sys; what --max-cpu-minutes bounds)
  train/seconds_per_step, train/rollout_seconds, train/episodes_per_s, train/tokens_per_s
  losses/policy, losses/kl, losses/clip_frac, losses/grad_norm, losses/ratio_max
  losses/rows               rows in the update after merging identical turns (see merge_turns)
  losses/magnet             the Eq. (MMD) KL to the average policy (with --magnet-coef)
  eval/kuhn_poker/nashconv_last   NashConv of the current model (exact in direct mode)
  eval/kuhn_poker/nashconv_lo/hi  bootstrap 90% interval (reasoning mode: sampled table)
  eval/kuhn_poker/nashconv_avg    NashConv of the reach-weighted average of the iterates
  eval/kuhn_poker/legal_mass      mean probability (direct) or share of samples answering legally
  eval/tictactoe/{win,draw,loss,invalid}_vs_{random,perfect}
  eval/tictactoe/exact_not_lose_vs_perfect/p   P(draw or win) in seat p vs perfect play, exact
  eval/tictactoe/greedy_not_lose_vs_perfect/p  the same for the model's most probable legal move (0 or 1)
  eval/tictactoe/optimal_mass/p/move{k}         mass on value-keeping moves at the k-th move, exact
                                                (all three when trained on TicTacToe, direct mode)
  eval/negotiation/return_vs_heuristic, eval/negotiation/invalid   (when negotiation is trained on)
  eval/completion_len             mean completion length in the evaluation games

Commands:
  CPU:  spkit train spiral --games kuhn_poker --entropy-coef 0.3 --entropy-ref average --avg-weights uniform \
            --lr 1e-5 --steps 600 --eval-every 25 --threads 1 --out runs/spiral   # the README's main job
        spkit train spiral --entropy-coef 0.2 --lr 1e-5 --max-minutes 10 --seed 1 --out runs/s1
        spkit train spiral --entropy-coef 0.2 --entropy-half-life 50 --magnet-coef 2 --avg-weights linear \
            --lr 1e-5 --max-cpu-minutes 10 --eval-games 0 --threads 1 --out runs/spiral_mmd  # Kuhn options
        spkit train spiral --entropy-coef 0.2 --entropy-ref average --avg-weights linear --lr 1e-5 \
            --steps 100000 --max-cpu-minutes 10 --eval-every 25 --eval-games 0 --threads 1 \
            --out runs/spiral_ref        # the bonus's magnet is the (linear) average policy
        spkit train spiral --games tictactoe --episodes 64 --steps 40 --out runs/spiral_tictactoe
        spkit train spiral --games tictactoe --sft-steps 30 --sft-lr 1e-3 --episodes 128 --lr 1e-4 \
            --entropy-coef 0.05 --pool-size 10 --pool-every 10 --out runs/spiral_pool  # half the games vs past selves
        spkit train spiral --opponent random --out runs/spiral_random        # an ablation
        spkit train spiral --out runs/spiral --steps 900 --resume            # continue a run
        torchrun --nproc_per_node 2 -m spkit train spiral --steps 20         # 2 processes, gloo
        spkit train spiral --games textarena:TicTacToe-v0 --sft-steps 30 --sft-batch 16 --sft-lr 1e-3 \
            --steps 8 --episodes 32 --eval-every 0 --eval-games 64 --threads 1 \
            --out runs/spiral_textarena     # a TextArena env end to end: format SFT, then self-play
  GPU:  spkit train spiral --preset qwen3-4b --device cuda \
            --games kuhn_poker tictactoe negotiation --out runs/spiral_4b
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from spkit.config import param
from spkit.errors import SpkitError
from spkit.games import load_game
from spkit.games.base import Game
from spkit.games.policies import HeuristicNegotiator, TabularPolicy, UniformRandomPolicy
from spkit.games.prompts import MODES
from spkit.generation import Sampler
from spkit.lm_policy import LLMPolicy, direct_answers
from spkit.logprobs import pad_right, shared_prefix_logprobs
from spkit.rl.advantages import RoleBaseline
from spkit.rl.losses import kl_k3, masked_mean, ppo_clip_loss
from spkit.rl.selfplay import (
    Episode,
    LMAgent,
    PastSelves,
    Turn,
    format_sft,
    outcome_rates,
    play_episodes,
)
from spkit.rl.tabular_pg import average_policy
from spkit.run import History, Run, RunConfig, fsdp
from spkit.run.distributed import clip_grad_norm, gather_objects, global_sum, world
from spkit.sampling import SamplingParams
from spkit.seeding import derive_seed
from spkit.solvers.exploitability import Table, game_tree, nash_conv, nash_conv_interval
from spkit.solvers.minimax import MinimaxPolicy, mass_on_optimal

PAPER = {
    "title": "SPIRAL: Self-Play on Zero-Sum Games Incentivizes Reasoning via Multi-Agent "
    "Multi-Turn Reinforcement Learning",
    "arxiv": "2506.24119",
    "citation": "Liu et al., 2025",
}
OPPONENTS = ("self", "fixed", "random", "game_theoretic")
GAMES = ("kuhn_poker", "tictactoe", "negotiation")
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(RunConfig):
    """SPIRAL settings. Defaults: spkit-tiny on a CPU; `--preset qwen3-4b` for the paper's scale."""

    model: str = param("spkit-tiny", "model name, hub id or save_pretrained directory")
    games: tuple[str, ...] = param(("kuhn_poker",), "training games; textarena:<EnvId> is a TextArena two-player "
                                   "env that lists its moves", choices=(*GAMES, "textarena:*"))
    mode: str = param("direct", "prompt mode: direct (answer only) | reasoning (\\boxed{} at the end)",
                      choices=MODES)
    opponent: str = param("self", "self | fixed (frozen initial model) | random | game_theoretic",
                          choices=OPPONENTS)
    steps: int = param(60, "policy updates", ge=0, identity=False)
    episodes: int = param(256, "games per training game per step (per process); turns are merged", ge=1)
    min_turns: int = param(0, "the paper's batch: play rounds of `episodes` games until >= N learner turns, "
                              "then subsample to N (0 = off: `episodes` games per step)", ge=0)
    lr: float = param(3e-5, "learning rate (paper: Adam, 1e-6 for Qwen3-4B)", gt=0)
    optimizer: str = param("adam", "adam | sgd", choices=tuple(OPTIMIZERS))
    clip_eps: float = param(0.2, "PPO clip range ε", gt=0)
    ppo_epochs: int = param(1, "passes (optimizer steps) over each rollout batch (paper: 2)", ge=1)
    micro_batch: int = param(64, "turns per forward/backward (gradient accumulation)", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)
    temperature: float = param(1.0, "rollout sampling temperature (paper: 1.0); ratios use logits / T", gt=0)
    max_new_tokens: int = param(0, "tokens per turn; 0 = 8 in direct mode, 64 in reasoning mode", ge=0)
    rae: bool = param(True, "role-conditioned EMA baseline; --no-rae = raw returns (the paper's ablation)")
    rae_alpha: float = param(0.95, "EMA decay α of the RAE baselines", ge=0, le=1)
    loss_norm: str = param("token_mean", "token_mean: Σ loss / Σ tokens of the batch | dr_grpo: Σ loss / "
                           "(turns · max_new_tokens), oat's default critic (the paper's)",
                           choices=("token_mean", "dr_grpo"))
    entropy_coef: float = param(0.0, "entropy bonus β (reward − β·log π(y)); off in the paper", ge=0)
    entropy_half_life: float = param(0.0, "halve the entropy bonus every h steps: β_t = β·2^(−t/h) "
                                          "(0 = constant β)", ge=0)
    magnet_coef: float = param(0.0, "Kuhn Poker: + η·mean_I KL(π_θ(·|I) ‖ π̄(·|I)) over the 12 infosets' legal "
                                    "moves, π̄ the average policy (a moving magnet, as in magnetic mirror "
                                    "descent; 0 = off)", ge=0)
    entropy_ref: str = param("uniform", "what the entropy bonus is measured against: uniform (−β·log π(y), the "
                             "entropy) | average (β·log(π̄(a|I)/π(y)), a KL to the Kuhn average policy π̄: magnetic "
                             "mirror descent's moving magnet in the bonus's own units; Kuhn Poker only)",
                             choices=("uniform", "average"))
    avg_weights: str = param("uniform", "weights of the iterates in the Kuhn average policy: uniform | linear "
                             "(table t weighs t + 1, as in linear CFR: early iterates fade)",
                             choices=("uniform", "linear"))
    max_cpu_minutes: float = param(0.0, "CPU-time budget of this process (user + sys, loading and evaluations "
                                        "included); 0 = none", ge=0, identity=False)
    sft_steps: int = param(0, "before self-play: SFT steps on random legal moves in the training games' prompts "
                              "(teaches a new game's format; 0 = off)", ge=0)
    sft_lr: float = param(3e-4, "learning rate of the format SFT", gt=0)
    sft_batch: int = param(32, "demonstrations per format-SFT step", ge=1)
    kl_coef: float = param(0.0, "k3 KL penalty to the initial model; off in the paper", ge=0)
    eval_every: int = param(10, "evaluate every k steps (and at the start and the end); 0 = start and end only",
                            ge=0, identity=False)
    eval_games: int = param(64, "games per evaluation match (TicTacToe, negotiation; 0 = Kuhn only)", ge=0,
                            identity=False)
    eval_temperature: float = param(1.0, "sampling temperature in evaluation games", gt=0, identity=False)
    kuhn_samples: int = param(32, "reasoning mode: completions per Kuhn infoset for the sampled table", ge=1)
    avg_every: int = param(1, "record the Kuhn policy table for the average every k steps (0 = never)", ge=0)
    pool_size: int = param(0, "past selves: keep the last N snapshots of the policy and play --pool-frac of each "
                              "step's games against one drawn uniformly (0 = off: pure self-play)", ge=0)
    pool_every: int = param(10, "snapshot the policy into the past-selves pool every k steps", ge=1)
    pool_frac: float = param(0.5, "share of each step's games played against a past self (learner's seat "
                                  "alternates)", ge=0, le=1)

    PRESETS = {  # a class constant (no annotation), not a field
        "tiny": lambda: Config(),
        "qwen3-0.6b": lambda: Config.paper_scale("Qwen/Qwen3-0.6B-Base"),
        "qwen3-1.7b": lambda: Config.paper_scale("Qwen/Qwen3-1.7B-Base"),
        "qwen3-4b": lambda: Config.paper_scale("Qwen/Qwen3-4B-Base"),  # the paper's reference run
    }

    @staticmethod
    def paper_scale(model: str) -> Config:
        """The paper's settings (lr 1e-6, 128 learner turns per step, dr_grpo, 4,096 tokens) on `model`."""
        return Config(model=model, mode="reasoning", lr=1e-6, episodes=32, min_turns=128, ppo_epochs=2,
                      micro_batch=1, max_new_tokens=4096, loss_norm="dr_grpo", steps=400, eval_every=32,
                      eval_games=16, eval_temperature=0.6, checkpoint_every=16, dtype="bfloat16")

    def resolved_max_new_tokens(self) -> int:
        return self.max_new_tokens or (8 if self.mode == "direct" else 64)


# ---- 1. Rollout ----------------------------------------------------------------------------------
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
    if game.name.startswith("textarena:"):
        raise SpkitError(f"--opponent game_theoretic: no solver for {game.name}; use self, fixed or random")
    return HeuristicNegotiator()  # negotiation has no exact solver here; a fixed heuristic


def collect(games: dict[str, Game], learner: LMAgent, opponents: dict, cfg: Config, seed: int,
            past: LMAgent | None = None) -> list[Episode]:
    """Step 1: `cfg.episodes` games of each training game; vs an opponent the learner's seat
    alternates (game i: seat i % 2) so both roles are trained. In self-play with a `past` self
    (``--pool-size``), the last `pool_frac` of the games are played against it, the learner's
    seat alternating. With `cfg.min_turns` > 0, such rounds repeat until the learner has taken at
    least `min_turns` turns (`subsample_turns` then keeps exactly that many, after RAE has seen
    every game)."""
    episodes: list[Episode] = []
    rnd = 0
    while rnd == 0 or learner_turns(episodes) < cfg.min_turns:
        for name, game in games.items():
            opp = opponents[name]
            n_self = cfg.episodes - (round(cfg.pool_frac * cfg.episodes) if past is not None and opp is None else 0)

            def seats(i: int, opp=opp, n_self=n_self):
                if opp is None and i >= n_self:  # against a past self
                    return [learner, past] if (i - n_self) % 2 == 0 else [past, learner]
                return [learner, learner] if opp is None else ([learner, opp] if i % 2 == 0 else [opp, learner])

            round_seed = derive_seed(seed, name) if rnd == 0 else derive_seed(seed, name, "round", rnd)
            episodes += play_episodes(game, seats, cfg.episodes, round_seed)
        rnd += 1
        if rnd >= 1000 and not learner_turns(episodes):
            raise SpkitError("min_turns: 1000 rounds of games gave the learner no turn")
    return episodes


def learner_turns(episodes: list[Episode]) -> int:
    """Turns the learner took in these games (what `min_turns` counts)."""
    return sum(t.learner for e in episodes for t in e.turns)


def subsample_turns(pairs: list[tuple[Turn, float]], n: int, seed: int) -> list[tuple[Turn, float]]:
    """`n` of the (turn, advantage) pairs, uniformly without replacement, in their original
    order (all of them if there are no more than `n`; `n` = 0 keeps all)."""
    if n <= 0 or len(pairs) <= n:
        return pairs
    keep = sorted(np.random.default_rng(seed).choice(len(pairs), size=n, replace=False).tolist())
    return [pairs[i] for i in keep]


# ---- 2-3. Reward and advantage ------------------------------------------------------------------
def rae_advantages(episodes: list[Episode], baseline: RoleBaseline | None) -> list[tuple[Turn, float]]:
    """Steps 2-3: (learner turn, advantage) pairs; RAE per (episode, role) in episode order.
    A game that ended as a context overflow has no outcome: it neither trains nor moves b.

    Under torchrun the baselines move over the *global* batch: every rank sees every rank's
    returns (rank 0's games first) and makes the same sequential updates, so the baselines stay
    equal on all ranks and equal to one process's on the concatenated games."""
    seats = [(ep, role) for ep in episodes if not ep.overflow for role in ep.learner_seats]
    local = [(ep.game, role, ep.returns[role]) for ep, role in seats]
    everyone = gather_objects(local)
    offset = sum(len(x) for x in everyone[: world()[0]])
    every = [x for part in everyone for x in part]
    adv = (baseline.advantages([(g, r) for g, r, _ in every], [R for _, _, R in every])  # Eq. (RAE)
           if baseline is not None else [R for _, _, R in every])[offset: offset + len(local)]
    return [(t, A) for (ep, role), A in zip(seats, adv, strict=True)
            for t in ep.turns if t.learner and t.role == role]


def entropy_bonus(pairs: list[tuple[Turn, float]], beta: float,
                  ref_logprob: Callable[[Turn], float] | None = None) -> list[tuple[Turn, float]]:
    """Optional entropy regulariser as reward shaping: A + β·(−log π(y)) on *legal* moves only.

    With `ref_logprob` (``--entropy-ref average``) the bonus is β·(log ρ(a|I) − log π(y)) with
    log ρ(a|I) = ref_logprob(turn): in expectation −β·KL(π(·|I) ‖ ρ(·|I)), the same curvature
    as the entropy (so the same damping of self-play's cycles) but pulling towards ρ instead of
    uniform. Its fixed point is π ∝ ρ·exp(q/β), not the entropy's π ∝ exp(q/β): with ρ the
    average of the iterates, a point where π = ρ has q constant over the moves played — a Nash
    equilibrium, where the entropy's fixed point is a quantal-response equilibrium biased by β.

    −log π(y) of a sampled y (at the rollout temperature) is an unbiased estimate of the sequence
    entropy. Invalid answers get no bonus: otherwise long, improbable garbage earns more bonus
    than the −1.5 penalty costs (with the bonus on every turn, spkit-tiny learned to answer
    nothing but invalid moves).

    A side effect to know: −log π(y) > 0, so every legal move earns a positive bonus that an
    invalid one does not — an implicit extra invalid-move penalty of β·H(π(·|s)) on average at
    state s (β·log n for a uniform choice among n legal answers; the legal-vs-invalid gap is
    −1.5 − 0.5·(…) plus this). The shaping therefore also teaches the format, more strongly
    where the policy is more uncertain; it is not a pure entropy term over legal moves."""
    if beta <= 0:
        return pairs
    ref = ref_logprob or (lambda t: 0.0)
    return [(t, a - beta * (sum(t.old_logprobs) - ref(t)) if t.action is not None else a) for t, a in pairs]


def kuhn_prompt_keys(tokenizer) -> dict[tuple[int, ...], str]:
    """Direct-mode prompt token ids -> Kuhn Poker information set (12 prompts, one per infoset)."""
    infosets = game_tree(_eval_game("kuhn_poker")).infoset_states
    return {tuple(direct_answers(tokenizer, s)[0]): k for k, s in infosets.items()}


def kuhn_ref_logprob(prompt_keys: dict[tuple[int, ...], str], table: Table) -> Callable[[Turn], float]:
    """log ρ(a|I) of a Kuhn turn's move under the policy `table` (legal moves, renormalised),
    its infoset I found from the turn's prompt tokens (`prompt_keys`: prompt ids -> infoset)."""

    def ref(t: Turn) -> float:
        key = prompt_keys.get(tuple(t.prompt_ids))
        if key is None:
            raise SpkitError("--entropy-ref average: a turn's prompt is not one of Kuhn Poker's 12 infosets")
        return float(np.log(max(table[key][t.action], 1e-6)))

    return ref


# ---- 4. Loss and update ---------------------------------------------------------------------------
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


def loss_normaliser(batch: list[tuple[Turn, float]], cfg: Config) -> float:
    """What the summed token loss is divided by: the batch's completion tokens ("token_mean",
    spkit's default) or turns × the generation budget ("dr_grpo": oat's default critic, which
    divides each sequence's summed loss by the constant `generate_max_length`, then averages).
    Under torchrun: the global batch's count over the world size, so that the ranks' averaged
    gradient is the gradient of one process's loss on the whole batch."""
    if cfg.loss_norm == "dr_grpo":
        local = float(len(batch) * cfg.resolved_max_new_tokens())
    else:
        local = float(sum(len(t.completion_ids) for t, _ in batch))
    return global_sum(local) / world()[1]  # ranks' gradients are averaged: the global mean


def update(model, optimizer, batch: list[tuple[Turn, float]], cfg: Config, ref_model=None,
           magnet: Callable[[], torch.Tensor] | None = None) -> dict[str, float]:
    """Step 4: `ppo_epochs` optimizer steps, each over the whole batch in micro-batches; `magnet()`
    (optional) is a further loss term, scaled by `cfg.magnet_coef`, added to each step's gradient."""
    stats = {"policy": 0.0, "kl": 0.0, "clip_frac": 0.0, "ratio_max": 0.0, "grad_norm": 0.0}
    n_tok = loss_normaliser(batch, cfg)
    rows = merge_turns(batch)
    stats["rows"] = float(len(rows))
    model.train()
    for _ in range(cfg.ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        for i in fsdp.lockstep(model, range(0, len(rows), cfg.micro_batch)):
            mb = rows[i: i + cfg.micro_batch]
            P, C = [t.prompt_ids for t, _, _ in mb], [t.completion_ids for t, _, _ in mb]
            T = max(len(c) for c in C)
            logp = pad_right(shared_prefix_logprobs(model, P, C, temperature=cfg.temperature), T, torch.float32)
            dev = logp.device
            old = pad_right([t.old_logprobs for t, _, _ in mb], T).to(dev)  # (b, T)
            mask = pad_right([[1.0] * len(c) for c in C], T).to(dev)  # (b, T)
            adv = torch.tensor([a for _, a, _ in mb], device=dev)  # (b,) summed advantages
            w = torch.tensor([float(n) for _, _, n in mb], device=dev)  # (b,) turns merged
            ref = None
            if ref_model is not None and cfg.kl_coef > 0:
                with torch.no_grad():
                    ref = pad_right(shared_prefix_logprobs(ref_model, P, C, temperature=cfg.temperature), T,
                                    torch.float32)
            loss, s = spiral_loss(logp, old, adv, mask, cfg.clip_eps, ref, cfg.kl_coef, w, n_tok)
            loss.backward()
            share = float((mask * w[:, None]).sum()) / max(float(sum(len(t.completion_ids) for t, _ in batch)), 1.0)
            stats["policy"] += loss.item() / cfg.ppo_epochs
            stats["kl"] += s["kl"] / cfg.ppo_epochs
            stats["clip_frac"] += s["clip_frac"] * share / cfg.ppo_epochs
            stats["ratio_max"] = max(stats["ratio_max"], s["ratio_max"])
        if magnet is not None:
            m = magnet()
            (cfg.magnet_coef * m).backward()
            stats["magnet"] = m.item()
        if cfg.max_grad_norm > 0:  # averaged across ranks first (else the run loop's pre-step hook does)
            stats["grad_norm"] = clip_grad_norm(model, cfg.max_grad_norm)
        optimizer.step()
    model.eval()
    return stats


def magnet_kl(model, tokenizer, states: list, keys: list[str], magnet: Table) -> torch.Tensor:
    """mean_I KL(π_θ(·|I) ‖ π̄(·|I)) over information sets I (with grad): π_θ the exact direct-mode
    policy renormalised over the legal moves (as `kuhn_table` reads it), π̄ the magnet table.
    The gradient pulls the iterate towards the magnet; with π̄ the average of the iterates this is
    magnetic mirror descent's regulariser with a moving magnet (Sokota et al., 2023)."""
    P, C, rows = [], [], []
    for s in states:
        pid, answers = direct_answers(tokenizer, s)
        rows.append(range(len(C), len(C) + len(answers)))
        P += [pid] * len(answers)
        C += answers
    lps = torch.stack([x.sum() for x in shared_prefix_logprobs(model, P, C)])  # (answers,)
    kl = lps.new_zeros(())
    for s, key, r in zip(states, keys, rows, strict=True):
        logq = torch.log_softmax(lps[list(r)], 0)
        logm = torch.tensor([magnet[key][a] for a in s.legal_actions()], device=lps.device).clamp_min(1e-6).log()
        kl = kl + (logq.exp() * (logq - logm)).sum()
    return kl / len(states)


# ---- 5. Evaluation ---------------------------------------------------------------------------------
def kuhn_table(model, tokenizer, game: Game, cfg: Config, seed: int) -> tuple[Table, dict]:
    """The model's Kuhn Poker policy, one row per information set (12), renormalised over the
    legal moves: exact in direct mode, `cfg.kuhn_samples` samples per infoset in reasoning mode."""
    tree = game_tree(game)
    keys = list(tree.infoset_states)
    policy = LLMPolicy(model, tokenizer, cfg.mode, n_samples=cfg.kuhn_samples, temperature=cfg.eval_temperature,
                       max_new_tokens=cfg.resolved_max_new_tokens(), seed=seed)
    t = policy.table([tree.infoset_states[k] for k in keys])
    counts = dict(zip(keys, t.counts, strict=True)) if t.counts is not None else None
    return dict(zip(keys, t.probs, strict=True)), {"legal_mass": float(np.mean(t.legal_mass)), "counts": counts}


@functools.cache
def _eval_game(name: str) -> Game:
    return load_game(name)  # one object per name: its solved tree / minimax table are cached on it


def kuhn_average(cfg: Config, tables: list[Table]) -> Table:
    """The average policy of the recorded Kuhn tables, weighted as `cfg.avg_weights` says."""
    w = [i + 1.0 for i in range(len(tables))] if cfg.avg_weights == "linear" else None
    return average_policy(game_tree(_eval_game("kuhn_poker")), tables, w)


def tictactoe_optimal_mass(model, tokenizer) -> dict[str, float]:
    """Exact (direct mode) play of the model against perfect play, per seat (`mass_on_optimal`):
    P(draw or win), and the reach-weighted probability mass on value-keeping moves at its k-th
    move — where a model that loses to perfect play gives the game away. Also the same for the
    model's greedy play (its most probable legal move, as a player picking its best move would):
    against deterministic perfect play that is one game per seat, so 0 or 1."""
    policy = LLMPolicy(model, tokenizer, "direct")

    def table(states):
        t = policy.table(states)
        return t.probs, t.legal_mass

    def greedy(states):
        probs = policy.table(states).probs
        return [{a: float(a == max(p, key=p.get)) for a in p} for p in probs], [1.0] * len(states)

    m = {}
    for seat in (0, 1):
        r = mass_on_optimal(_eval_game("tictactoe"), table, seat)
        m[f"eval/tictactoe/exact_not_lose_vs_perfect/{seat}"] = r["not_lose"]
        m |= {f"eval/tictactoe/optimal_mass/{seat}/move{k + 1}": x for k, x in enumerate(r["by_move"])}
        m[f"eval/tictactoe/greedy_not_lose_vs_perfect/{seat}"] = mass_on_optimal(
            _eval_game("tictactoe"), greedy, seat)["not_lose"]
    return m


def evaluate(model, tokenizer, cfg: Config, step: int, tables: list[Table]) -> dict[str, float]:
    """Step 5, on evaluation seeds derived from (seed, step) alone."""
    m: dict[str, float] = {}
    seed = derive_seed(cfg.seed, "eval", step)
    kuhn = _eval_game("kuhn_poker")
    table, info = kuhn_table(model, tokenizer, kuhn, cfg, seed)
    m["eval/kuhn_poker/nashconv_last"] = nash_conv(kuhn, table)
    m["eval/kuhn_poker/legal_mass"] = info["legal_mass"]
    if info["counts"] is not None:
        m["eval/kuhn_poker/nashconv_lo"], m["eval/kuhn_poker/nashconv_hi"] = nash_conv_interval(kuhn, info["counts"], seed)
    if tables:
        m["eval/kuhn_poker/nashconv_avg"] = nash_conv(kuhn, kuhn_average(cfg, tables))
    agent = LMAgent(Sampler(model, tokenizer), cfg.mode, learner=True, params=SamplingParams(
        max_new_tokens=cfg.resolved_max_new_tokens(), temperature=cfg.eval_temperature))
    if "tictactoe" in cfg.games and cfg.mode == "direct":
        m |= tictactoe_optimal_mass(model, tokenizer)
    matches = {}
    if not all(g.startswith("textarena:") for g in cfg.games):  # a TextArena-only run skips spkit's games
        matches["tictactoe"] = {"random": UniformRandomPolicy(), "perfect": MinimaxPolicy(_eval_game("tictactoe"))}
    if "negotiation" in cfg.games:  # evaluated only when trained on: its prompts are long
        matches["negotiation"] = {"heuristic": HeuristicNegotiator()}
    for name in cfg.games:  # a TextArena game is evaluated against random play
        if name.startswith("textarena:"):
            matches[name] = {"random": UniformRandomPolicy()}
    lens: list[int] = []
    for name, opponents in (matches.items() if cfg.eval_games else ()):
        for label, opp in opponents.items():
            eps = play_episodes(_eval_game(name), lambda i, o=opp: [agent, o] if i % 2 == 0 else [o, agent],
                                cfg.eval_games, derive_seed(seed, name, label))
            r = outcome_rates(eps, lambda e: e.learner_seats[0])
            lens += [len(t.completion_ids) for e in eps for t in e.turns]
            if name == "tictactoe" or name.startswith("textarena:"):
                m |= {f"eval/{name}/{k}_vs_{label}": r[k] for k in ("win", "draw", "loss", "invalid", "overflow")
                      if k != "overflow" or name != "tictactoe"}
            else:
                m |= {"eval/negotiation/return_vs_heuristic": r["return"], "eval/negotiation/invalid": r["invalid"]}
    m["eval/completion_len"] = float(np.mean(lens)) if lens else 0.0
    return m


# ---- Train ------------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/kuhn_poker/nashconv_last", "eval/kuhn_poker/nashconv_avg", "eval/tictactoe/loss_vs_random",
             "eval/tictactoe/draw_vs_perfect", "train/invalid_rate", "train/completion_len",
             "eval/negotiation/return_vs_heuristic", "losses/policy", "train/baseline/kuhn_poker/0"]


@dataclass
class PolicyTables:
    """The Kuhn policy table after every `avg_every` steps (what the average policy averages),
    and the games played so far (with `min_turns` a step plays a varying number)."""

    tables: list[Table] = field(default_factory=list)
    played: int = 0
    cpu_seconds: float = 0.0  # CPU time of earlier sessions of this run

    def state_dict(self) -> dict:
        return {"tables": self.tables, "played": self.played, "cpu_seconds": self.cpu_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.tables, self.played = state["tables"], state.get("played", 0)
        self.cpu_seconds = state.get("cpu_seconds", 0.0)


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run SPIRAL; return every logged row. `callback(step, metrics)` after each logged step."""
    from spkit.run import model_for

    clock = [time.process_time()]  # loading counts towards the CPU budget
    run = Run(cfg, "spiral", callback, PLOT_KEYS)
    model, tok = model_for(cfg)
    ref_model = None
    if cfg.opponent == "fixed" or cfg.kl_coef > 0:
        ref_model, _ = model_for(cfg)
        ref_model.requires_grad_(False)
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr)
    baseline = RoleBaseline(cfg.rae_alpha) if cfg.rae else None
    avg = PolicyTables()
    sp = SamplingParams(max_new_tokens=cfg.resolved_max_new_tokens(), temperature=cfg.temperature)
    pool, past = past_selves(cfg, sp)
    run.track(model=model, tokenizer=tok, optimizer=optimizer, tables=avg, **({"baseline": baseline} if baseline else {}),
              **({"pool": pool} if pool else {}))

    games = {g: load_game(g) for g in cfg.games}
    learner = LMAgent(Sampler(model, tok), cfg.mode, sp, learner=True)
    frozen = LMAgent(Sampler(ref_model, tok), cfg.mode, sp, learner=False) if ref_model is not None else None
    opponents = {g: opponent_for(game, cfg.opponent, frozen) for g, game in games.items()}
    averaging = cfg.avg_every > 0 and "kuhn_poker" in cfg.games  # every rank: the magnet needs it
    sft = format_sft(model, tok, games, cfg) if cfg.sft_steps and not cfg.resume else {}
    kuhn_states = None
    if cfg.entropy_ref == "average" and not (averaging and set(cfg.games) == {"kuhn_poker"} and cfg.mode == "direct"):
        raise SpkitError("--entropy-ref average needs --games kuhn_poker alone, direct mode and --avg-every > 0")
    prompt_keys = kuhn_prompt_keys(tok) if cfg.entropy_ref == "average" else {}
    if cfg.magnet_coef > 0 and averaging:
        tree = game_tree(_eval_game("kuhn_poker"))
        kuhn_keys = list(tree.infoset_states)
        kuhn_states = [tree.infoset_states[k] for k in kuhn_keys]

    def record_table(t: int) -> None:
        avg.tables.append(kuhn_table(model, tok, _eval_game("kuhn_poker"), cfg, derive_seed(cfg.seed, "table", t))[0])

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        if averaging and not avg.tables:  # rank 0 recorded it in its first evaluation; the others here
            record_table(0)
        against = pool.opponent(derive_seed(cfg.seed, "pool", t)) if pool else None  # the same on every rank
        episodes = collect(games, learner, opponents, cfg, derive_seed(cfg.seed, "step", t, run.rank),
                           past if against is not None else None)  # 1
        t_roll = time.perf_counter() - t0
        pairs = rae_advantages(episodes, baseline)  # 2-3
        beta = cfg.entropy_coef * (2 ** (-t / cfg.entropy_half_life) if cfg.entropy_half_life else 1.0)
        average = (kuhn_average(cfg, avg.tables) if (prompt_keys or kuhn_states is not None) and avg.tables
                   else None)  # π̄, the reference of the bonus (--entropy-ref average) and of the magnet
        ref = kuhn_ref_logprob(prompt_keys, average) if prompt_keys and average is not None else None
        pairs = entropy_bonus(subsample_turns(pairs, cfg.min_turns, derive_seed(cfg.seed, "subsample", t, run.rank)),
                              beta, ref)
        batch = [(turn, a) for turn, a in pairs if a != 0.0 and turn.completion_ids]
        magnet = None
        if kuhn_states is not None:
            magnet = functools.partial(magnet_kl, model, tok, kuhn_states, kuhn_keys, average)
        losses = update(model, optimizer, batch, cfg, ref_model, magnet) if global_sum(len(batch)) else {}  # 4: all ranks or none
        if averaging and (t + 1) % cfg.avg_every == 0:
            record_table(t + 1)
        if pool:
            pool.maybe_add(model, t + 1)
        return {**_train_metrics(episodes, pairs, batch, baseline, cfg),
                "train/episodes": _count(avg, len(episodes)),
                "train/seconds_per_step": time.perf_counter() - t0, "train/rollout_seconds": t_roll,
                "train/episodes_per_s": len(episodes) / max(t_roll, 1e-9),
                "train/tokens_per_s": sum(len(turn.completion_ids) for turn, _ in pairs) / max(t_roll, 1e-9),
                "train/entropy_coef": beta, "train/cpu_seconds": _cpu(avg, clock),
                **({"train/pool_opponent": float("nan") if against is None else against} if pool else {}),
                **{f"losses/{k}": v for k, v in losses.items()}}

    def evaluate_at(t: int) -> dict[str, float]:  # 5
        if t == 0 and averaging:
            record_table(0)
        return evaluate(model, tok, cfg, t, avg.tables) | (sft if t == 0 else {})

    def out_of_cpu(metrics: dict[str, float]) -> bool:
        return cfg.max_cpu_minutes > 0 and metrics["train/cpu_seconds"] > 60 * cfg.max_cpu_minutes

    return run.loop(step, evaluate_at, out_of_cpu, split_rollouts=False)  # each rank plays its own games


def past_selves(cfg: Config, sp: SamplingParams) -> tuple[PastSelves | None, LMAgent | None]:
    """``--pool-size``: the pool of past snapshots and the frozen agent that plays them (sampling
    as the learner does, `sp`)."""
    if not cfg.pool_size:
        return None, None
    if cfg.opponent != "self":
        raise SpkitError("--pool-size: past selves are self-play's opponents; use it with --opponent self")
    if cfg.lora:
        raise SpkitError("--pool-size with --lora: the pool snapshots full weights; train without --lora")
    from spkit.run import model_for

    frozen, tok = model_for(cfg)
    frozen.requires_grad_(False)
    return PastSelves(frozen, cfg.pool_size, cfg.pool_every), LMAgent(Sampler(frozen, tok), cfg.mode, sp, learner=False)


def _cpu(avg: PolicyTables, clock: list[float]) -> float:
    """This run's CPU seconds so far (user + sys of the process), earlier sessions included."""
    now = time.process_time()
    avg.cpu_seconds += now - clock[0]
    clock[0] = now
    return avg.cpu_seconds


def _count(avg: PolicyTables, n: int) -> int:
    avg.played += n
    return avg.played


def _train_metrics(episodes, pairs, batch, baseline, cfg: Config) -> dict[str, float]:
    turns = [t for t, _ in pairs]
    m = {
        "train/invalid_rate": float(np.mean([t.action is None for t in turns])) if turns else 0.0,
        "train/completion_len": float(np.mean([len(t.completion_ids) for t in turns])) if turns else 0.0,
        "train/kept_frac": len(batch) / max(len(pairs), 1),
        "train/overflow_rate": float(np.mean([e.overflow for e in episodes])) if episodes else 0.0,
    }
    for g in cfg.games:
        for role in (0, 1):
            rets = [e.returns[role] for e in episodes if e.game == g and role in e.learner_seats]
            if rets:
                m[f"train/return/{g}/{role}"] = float(np.mean(rets))
            if baseline is not None:
                m[f"train/baseline/{g}/{role}"] = baseline.value((g, role))
    return m


def summary(history: History) -> str:
    """The line `spkit train spiral` prints at the end."""
    k = "eval/kuhn_poker/nashconv_last"
    first = history.series(k)[1][:1] or [float("nan")]
    line = f"Kuhn Poker NashConv: {first[0]:.3f} -> {history.last(k):.3f} (last iterate)"
    avg = history.last("eval/kuhn_poker/nashconv_avg")
    line += f", {avg:.3f} (average policy)" if avg == avg else ""  # no average unless trained on Kuhn
    keys = dict.fromkeys(k for row in history.rows for k in row if k.startswith("eval/textarena:") and
                         k.endswith("/win_vs_random"))
    for k in keys:  # a TextArena game: its win rate against random play, before -> after
        wins = history.series(k)[1]
        line += f"\n{k.split('/')[1]} win rate vs random: {wins[0]:.3f} -> {wins[-1]:.3f}"
    return line
