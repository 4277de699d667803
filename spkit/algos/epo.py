r"""EPO — a strategy model that guides a frozen actor, trained by multi-turn RL with process rewards.

Liu et al. (2025), "EPO: Explicit Policy Optimization for Strategic Reasoning in LLMs via
Reinforcement Learning", arXiv:2502.12486 (reference code: AlibabaResearch/DAMO-ConvAI, EPO/).

Idea: split a strategic agent in two. A *strategy model* reads the situation and writes a short
strategy (at most 10 words) every turn; a frozen *actor* — the LLM agent that acts in the
environment — makes its move conditioned on that strategy. Only the strategy model is trained,
by multi-turn RL with a *process* reward (key turns are rewarded, not just the outcome), in
iterative self-play: the strategy model guides both parties, the episodes are relabelled with
rewards, the strategy model is retrained, and so on. Because the actor is untouched, the same
strategy model can guide it against opponents it never met.

Here the environment is spkit's Simple Negotiation (`spkit.games.negotiation`, zero-sum returns
u_me − u_other ∈ [−1, 1]; an invalid move −1.5 as in SPIRAL).

Equations (numbered here), for one player's turns t = 1..T of an episode:
  (1) r_t = 1[turn t is a key turn] for t < T;   r_T = the final score (the player's return)
  (2) G_t = r_t + γ G_{t+1},  G_{T+1} = 0                                       (γ = 0.99)
  (3) Ĝ_t = G_t / max |G|, the max over every turn of both players in the episode
  (4) L(θ) = −(1/N) Σ_i Ĝ_i · (1/|s_i|) Σ_k log π_θ(s_i,k | x_i, s_i,<k)
      — offline REINFORCE on each strategy segment s_i (length-normalised), no KL, no baseline
      (`spkit.rl.losses.reward_weighted_nll`)

Algorithm:
  0. Setup (once; a resume restores it from the checkpoint):
     a. The actor (or `--actor DIR`, one built before, e.g. OUT/actor of another run): a copy of the base model fine-tuned (`actor_sft_steps`) to follow strategies
        of a small grammar, ``keep <items>`` (``keep books``, ``keep books and hats``, …, 7 in
        all): as proposer it offers to take every kept item and leave the rest; as responder it
        accepts iff it receives every kept item. With the neutral strategy ``none`` it is shown
        the pretraining corpus's own negotiation moves (`spkit.corpus.negotiation_demo`), so the
        *unconditioned actor* — the same actor with ``Strategy: none`` — plays as spkit-tiny
        learned to. The demonstrations come from the scripted follower (`follow_strategy`) on
        positions of games it plays; then the actor is frozen.
     b. The strategy model: the base model, fine-tuned for `strategy_sft_steps` on *uniformly
        random* grammar strategies after each position's prompt — it learns the format, not
        which strategy to pick (like SPIRAL's format SFT).
  1. Collect (iteration t): `games` negotiation games; a share `selfplay_share` in self-play
     (the strategy model guides both seats), the rest against the training opponent (the
     learner's seat alternating). At every actor turn the strategy model samples a strategy at
     temperature 0.7 (`GuidedSampler`), the actor moves on the prompt with ``Strategy: …``.
  2. Relabel: replay each game, mark key turns (`key_turn`: a rule stand-in for the paper's
     LLM judge), Eq. (1)–(3) per episode.
  3. Retrain: `epochs` passes of Eq. (4) over every strategy segment of the iteration.
  4. Evaluate: strategy-guided vs unconditioned actor (``none``) against the training opponent
     and a held-out opponent never trained against, on the same seeded games.

Deviations from the paper:
  1. Scale: a 3.3M-parameter model for both roles on a CPU; the paper uses Llama-3-8B-class
     strategy models and GPT-4-class actors/judges, on SOTOPIA, WebShop, ALFWorld.
  2. The actor was never an agent that reads strategies, so step 0a teaches it a small strategy
     grammar with a *scripted* follower; what it learned there is supervised, not RL. A strategy
     outside the grammar is passed to the actor as written (the actor makes of it what it
     does); `train/valid` counts the share inside the grammar.
  3. The process reward is a rule (`key_turn`), with both players' values in view like a judge
     reading the whole dialogue: a deal-closing accept with a positive margin, a denial of an
     offer that would lose while rounds remain, and an offer in our favour that leaves the other
     at least half its value ("the turn moved the deal our way") — not an LLM judge.
  4. lr: the paper's 1e-6 moves an 8B model; spkit-tiny needs a larger step (`--lr`).
  5. Collection mixes self-play with games against the training opponent (`selfplay_share`), so
     that "the training opponent" of the evaluation is one the strategy model trained against.

Metrics (`metrics.csv`, TensorBoard, the `callback(step, metrics)` argument of `train`):
  eval/<opp>/guided/return, eval/<opp>/neutral/return    mean return of the strategy-guided and
        the unconditioned actor against opponent <opp> ∈ {train, heldout} (± `…/return_ci`, the
        95% normal interval half-width over games), `…/deal` deal rate, `…/invalid` invalid-move
        rate; the neutral rows repeat (frozen actor, same games), logged for the plots
  eval/<opp>/gain               guided − neutral return
  eval/diversity, eval/valid    distinct strategies / strategies, and share inside the grammar
  eval/follow                   share of guided actor moves equal to the scripted follower's
  train/return, train/deal, train/valid, train/diversity, train/key_rate, train/segments
  losses/epo, losses/grad_norm

Commands:
  spkit train epo --steps 10 --threads 1 --out runs/epo
  spkit train epo --train-opponent heuristic --heldout-opponent base --out runs/epo   # the defaults
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from spkit.config import param
from spkit.errors import SpkitError
from spkit.games.negotiation import ITEMS, NegotiationGame, NegotiationState
from spkit.games.policies import HeuristicNegotiator, UniformRandomPolicy
from spkit.games.prompts import format_prompt
from spkit.generation import Sampler
from spkit.logprobs import pad_right, shared_prefix_logprobs
from spkit.rl import verifiable as V
from spkit.rl.losses import reward_weighted_nll
from spkit.rl.selfplay import Episode, LMAgent, play_episodes
from spkit.run import History, Run, RunConfig
from spkit.run.checkpoint import load_weights, replace_dir
from spkit.sampling import Completion, SamplingParams
from spkit.seeding import derive_seed

PAPER = {
    "title": "EPO: Explicit Policy Optimization for Strategic Reasoning in LLMs via Reinforcement Learning",
    "arxiv": "2502.12486",
    "citation": "Liu et al., 2025",
}
OPPONENTS = ("heuristic", "random", "base")
NEUTRAL = "none"
MAX_STRATEGY_WORDS = 10


# ---- Config ------------------------------------------------------------------------------------
@dataclass
class Config(RunConfig):
    model: str = param("spkit-tiny", "base model of the strategy model and the actor (name, hub id or directory)")
    steps: int = param(10, "iterations (collect → relabel → retrain)", ge=0, identity=False)
    games: int = param(32, "games collected per iteration", ge=1)
    selfplay_share: float = param(0.5, "share of collected games in self-play (the rest vs the training opponent)",
                                  ge=0, le=1)
    train_opponent: str = param("heuristic", "opponent trained against", choices=OPPONENTS)
    heldout_opponent: str = param("base", "opponent never trained against, for evaluation only (base = the "
                                  "untrained base model)", choices=OPPONENTS)
    gamma: float = param(0.99, "γ of the discounted returns, Eq. (2)", ge=0, le=1)
    key_reward: float = param(1.0, "reward of a key turn, Eq. (1) (paper: 1)", ge=0)
    lr: float = param(1e-5, "learning rate of the strategy model (paper: 1e-6 for an 8B model)", gt=0)
    epochs: int = param(3, "passes (optimizer steps) of Eq. (4) over each iteration's segments", ge=1)
    micro_batch: int = param(64, "segments per forward/backward", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)
    strategy_temperature: float = param(0.7, "sampling temperature of strategies (paper 0.7)", gt=0)
    strategy_tokens: int = param(16, "token limit of a strategy", ge=1)
    actor_temperature: float = param(0.0, "actor sampling temperature (0 = greedy)", ge=0)
    actor: str = param("", "a strategy-following actor to reuse (OUT/actor of an earlier run); '' = build it "
                       "(step 0a)")
    actor_sft_steps: int = param(300, "step 0a: SFT steps of the actor on the strategy grammar", ge=0)
    strategy_sft_steps: int = param(60, "step 0b: format SFT steps of the strategy model", ge=0)
    sft_batch: int = param(32, "rows per SFT step", ge=1)
    sft_lr: float = param(1e-3, "learning rate of both SFT stages", gt=0)
    neutral_share: float = param(0.25, "share of actor SFT rows with the neutral strategy", ge=0, le=1)
    eval_every: int = param(5, "evaluate every k iterations (and at the start and the end)", ge=0, identity=False)
    eval_games: int = param(64, "games per opponent and actor in each evaluation", ge=1, identity=False)


# ---- The strategy grammar and its scripted follower ----------------------------------------------
def grammar() -> list[str]:
    """The 7 strategies of the grammar: ``keep`` and a non-empty set of items, in ITEMS order."""
    out = []
    for mask in range(1, 2 ** len(ITEMS)):
        names = [n for i, n in enumerate(ITEMS) if mask >> i & 1]
        out.append("keep " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]))
    return out


def clean_strategy(text: str) -> str:
    """What the actor is shown: the first line, whitespace collapsed, at most 10 words."""
    line = text.split("\n", 1)[0]
    return " ".join(line.split()[:MAX_STRATEGY_WORDS])


def parse_strategy(text: str) -> frozenset[int] | None:
    """The item indices a grammar strategy keeps, or None for text outside the grammar (the
    neutral strategy included). Never raises."""
    words = text.replace(",", " ").lower().split()
    if len(words) < 2 or words[0] != "keep":
        return None
    items, expect_item = [], True
    for w in words[1:]:
        if expect_item and w in ITEMS and ITEMS.index(w) not in items:
            items.append(ITEMS.index(w))
            expect_item = False
        elif not expect_item and w == "and":
            expect_item = True
        elif not expect_item and w in ITEMS and ITEMS.index(w) not in items:  # "books, hats"
            items.append(ITEMS.index(w))
        else:
            return None
    return frozenset(items) if items and not expect_item else None


def follow_strategy(state: NegotiationState, keep: frozenset[int]) -> str:
    """The scripted follower: propose to take every kept item (all of it) and none of the rest;
    accept an offer iff it leaves us every kept item."""
    pool = state.pool
    if state.legal_actions() == ["accept", "deny"]:
        take = state.offers[-1][1]
        got = [n - t for n, t in zip(pool, take, strict=True)]
        return "accept" if all(got[i] == pool[i] for i in keep) else "deny"
    return " ".join(str(pool[i] if i in keep else 0) for i in range(len(pool)))


# ---- Prompts of the two models -------------------------------------------------------------------
def strategy_prompt(game_prompt: str) -> str:
    """The strategy model sees what the actor sees (the direct-mode game prompt without its last
    line) and writes ``Strategy: <≤ 10 words>``."""
    head = game_prompt.rsplit("\n", 1)[0]
    return head + "\nStrategy:"


def actor_prompt(game_prompt: str, strategy: str) -> str:
    """The direct-mode game prompt with ``Strategy: …`` before its ``Move: \\boxed{`` line."""
    head, tail = game_prompt.rsplit("\n", 1)
    return f"{head}\nStrategy: {strategy}\n{tail}"


@dataclass
class Segment:
    """One strategy the strategy model wrote: what Eq. (4) trains on."""

    prompt_ids: list[int]
    token_ids: list[int]
    text: str  # as shown to the actor (`clean_strategy`)


@dataclass
class GuidedSampler:
    """The actor as a `Sampler` for `spkit.rl.selfplay.play_episodes`: every batch of game
    prompts first goes to the strategy model (one batched call), then the actor answers the
    prompts with the strategies inserted. With `strategist=None` every prompt gets the fixed
    strategy `fixed` (the unconditioned actor: ``none``). `log` maps each actor prompt's ids to
    the segments written for it, in order (collisions are identical prompts, popped in order)."""

    actor: Sampler
    strategist: Sampler | None = None
    strategy_params: SamplingParams = field(default_factory=SamplingParams)
    fixed: str = NEUTRAL
    log: dict[tuple[int, ...], list[Segment]] = field(default_factory=dict)

    def encode(self, prompt: str) -> list[int]:
        return self.actor.encode(actor_prompt(prompt, " ".join(["x"] * MAX_STRATEGY_WORDS)))

    def context_limit(self) -> int | None:
        limit = self.actor.context_limit()
        return None if limit is None else limit - self.strategy_params.max_new_tokens - 2 * MAX_STRATEGY_WORDS

    def generate(self, prompts: list[str], params: SamplingParams, seed: int) -> list[Completion]:
        if self.strategist is None:
            strategies, segs = [self.fixed] * len(prompts), [None] * len(prompts)
        else:
            outs = self.strategist.generate([strategy_prompt(p) for p in prompts], self.strategy_params,
                                            seed=derive_seed(seed, "strategy"))
            strategies = [clean_strategy(o.text) for o in outs]
            segs = [Segment(list(o.prompt_ids), list(o.token_ids), s) for o, s in zip(outs, strategies, strict=True)]
        acts = self.actor.generate([actor_prompt(p, s) for p, s in zip(prompts, strategies, strict=True)], params,
                                   seed=derive_seed(seed, "act"))
        for a, seg in zip(acts, segs, strict=True):
            if seg is not None:
                self.log.setdefault(tuple(a.prompt_ids), []).append(seg)
        return acts

    def segment(self, prompt_ids: Sequence[int]) -> Segment | None:
        """The segment written for the turn whose actor prompt is `prompt_ids` (consumed)."""
        queue = self.log.get(tuple(prompt_ids))
        return queue.pop(0) if queue else None


def strategy_of(prompt_text: str) -> str:
    """The strategy line of an actor prompt (for the metrics)."""
    line = [x for x in prompt_text.split("\n") if x.startswith("Strategy: ")]
    return line[-1][len("Strategy: "):] if line else ""


# ---- 0. Setup: the strategy-following actor and the strategy model's format ---------------------
def sft_positions(n: int, seed: int) -> list[tuple[NegotiationState, int]]:
    """`n` (position, player to move) pairs from games where both players follow random grammar
    strategies (or, one move in four, a uniformly random legal move)."""
    game, rng, out, strategies = NegotiationGame(), random.Random(seed), [], grammar()
    g = 0
    while len(out) < n:
        state = game.new_initial_state(seed=derive_seed(seed, "position", g))
        g += 1
        while not state.is_terminal() and len(out) < n:
            out.append((state.clone(), state.current_player()))
            if rng.random() < 0.25:
                move = rng.choice(state.legal_actions())
            else:
                move = follow_strategy(state, parse_strategy(rng.choice(strategies)))
            state.apply_action(move)
    return out


def actor_demonstrations(n: int, neutral_share: float, seed: int) -> list[tuple[str, str]]:
    """Step 0a's rows (actor prompt, move + "}"): a random grammar strategy and the follower's
    move, or (share `neutral_share`) ``none`` and the pretraining corpus's move."""
    from spkit.corpus import negotiation_demo

    rng, strategies = random.Random(derive_seed(seed, "actor-rows")), grammar()
    rows = []
    for state, p in sft_positions(n, derive_seed(seed, "actor-positions")):
        prompt = format_prompt(state, p, "direct")
        if rng.random() < neutral_share:
            rows.append((actor_prompt(prompt, NEUTRAL), negotiation_demo(state, p, rng)[0] + "}"))
        else:
            s = rng.choice(strategies)
            rows.append((actor_prompt(prompt, s), follow_strategy(state, parse_strategy(s)) + "}"))
    return rows


def strategy_demonstrations(n: int, seed: int) -> list[tuple[str, str]]:
    """Step 0b's rows (strategy prompt, " <uniformly random grammar strategy>\\n")."""
    rng, strategies = random.Random(derive_seed(seed, "strategy-rows")), grammar()
    return [(strategy_prompt(format_prompt(s, p, "direct")), " " + rng.choice(strategies) + "\n")
            for s, p in sft_positions(n, derive_seed(seed, "strategy-positions"))]


def sft(model, tok, rows: list[tuple[str, str]], cfg: Config, steps: int, seed: int) -> dict[str, float]:
    """`steps` SFT steps of `cfg.sft_batch` rows with a fresh Adam (`V.sft_minibatches`)."""
    if steps == 0 or not rows:
        return {}
    opt = torch.optim.Adam(model.parameters(), lr=cfg.sft_lr)
    prompts = [tok(p)["input_ids"] for p, _ in rows]
    completions = [tok(c, add_special_tokens=False)["input_ids"] for _, c in rows]
    return V.sft_minibatches(model, opt, prompts, completions, steps, cfg.sft_batch, seed, cfg.micro_batch,
                             cfg.max_grad_norm)


def build_actor(model, tok, cfg: Config) -> dict[str, float]:
    """Step 0a in place on `model`: `actor_sft_steps` SFT steps on `actor_demonstrations`."""
    rows = actor_demonstrations(cfg.actor_sft_steps * cfg.sft_batch, cfg.neutral_share, cfg.seed)
    return sft(model, tok, rows, cfg, cfg.actor_sft_steps, derive_seed(cfg.seed, "actor-sft"))


class FrozenActor:
    """The actor after step 0a, tracked by `Run` so a checkpoint holds its weights
    (`save_files`, safetensors) and `--resume` restores them; `OUT/actor/` at the end."""

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model.eval().requires_grad_(False), tokenizer

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def save_files(self, path: Path) -> None:
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)

    def load_files(self, path: Path) -> None:
        load_weights(self.model, path)


# ---- 2. Relabel: key turns, process rewards, scaled discounted returns ---------------------------
def _margin(state: NegotiationState, player: int, take: Sequence[int], proposer: int) -> float:
    """(player's value − the other's value) / 10 of the split where `proposer` takes `take`."""
    rest = [n - t for n, t in zip(state.pool, take, strict=True)]
    alloc = [list(take), rest] if proposer == 0 else [rest, list(take)]
    val = [sum(v * n for v, n in zip(state.values[p], alloc[p], strict=True)) / 10 for p in range(2)]
    return val[player] - val[1 - player]


def key_turn(state: NegotiationState, move: str) -> bool:
    """Deviation 3's rule judge: did `move` (by the player to move at `state`) move the deal our
    way? An accept of a deal with a positive margin for us; a deny of an offer with a negative
    margin while rounds remain; an offer with a positive margin for us that leaves the other at
    least half its value."""
    me = state.current_player()
    if move in ("accept", "deny"):
        proposer, take = state.offers[-1]
        m = _margin(state, me, take, proposer)
        last = len(state.answers) + 1 >= state.game.max_rounds
        return m > 0 if move == "accept" else (m < 0 and not last)
    take = [int(x) for x in move.split()]
    rest = [n - t for n, t in zip(state.pool, take, strict=True)]
    other = sum(v * n for v, n in zip(state.values[1 - me], rest, strict=True)) / 10
    return _margin(state, me, take, me) > 0 and other >= 0.5


def process_rewards(keys: Sequence[bool], final: float, key_reward: float = 1.0) -> list[float]:
    """Eq. (1) for one player's T turns: key_reward at key turns before the last, the final
    score at the last."""
    return [final if t == len(keys) - 1 else key_reward * float(k) for t, k in enumerate(keys)]


def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """Eq. (2): G_t = r_t + γ G_{t+1}."""
    out, g = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def scale_returns(returns: Sequence[Sequence[float]]) -> list[list[float]]:
    """Eq. (3): every return of an episode (one list per player) divided by the episode's
    largest |G|; an episode whose returns are all 0 stays 0."""
    top = max((abs(g) for r in returns for g in r), default=0.0)
    return [[g / top if top > 0 else 0.0 for g in r] for r in returns]


def _moves(state: NegotiationState) -> list[str]:
    """The moves of a finished game, in order: offer, answer, offer, …"""
    out = []
    for i, (_, take) in enumerate(state.offers):
        out.append(" ".join(str(x) for x in take))
        if i < len(state.answers):
            out.append(state.answers[i])
    return out


def replay(ep: Episode) -> list[tuple[NegotiationState, int | None, str]]:
    """(position before the move, index into `ep.turns` or None for a scripted player's move,
    move) for every legal move of the episode, replayed from its deal. A language-model seat
    records a turn for each of its moves, in order, so the next turn is this move iff its seat
    is to move; an invalid last turn has no move."""
    end = ep.state
    state = NegotiationGame(end.game.max_rounds).new_initial_state()
    state.apply_action("items " + " ".join(map(str, end.pool)))
    for v in end.values:
        state.apply_action("values " + " ".join(map(str, v)))
    out, ti = [], 0
    for move in _moves(ep.state):
        here = ti if ti < len(ep.turns) and ep.turns[ti].role == state.current_player() else None
        out.append((state.clone(), here, move))
        ti += here is not None
        state.apply_action(move)
    return out


def replay_keys(ep: Episode) -> list[bool]:
    """Key-turn flags of the episode's turns, in order (an invalid turn is no key turn)."""
    flags = [False] * len(ep.turns)
    for state, ti, move in replay(ep):
        if ti is not None:
            flags[ti] = key_turn(state, move)
    return flags


def episode_weights(ep: Episode, gamma: float, key_reward: float, seats: Sequence[int]
                    ) -> tuple[list[float], list[bool]]:
    """Eq. (1)–(3) for one episode: the scaled return Ĝ of every turn (in `ep.turns` order; 0 for
    seats not in `seats`, e.g. a scripted opponent's) and the key-turn flags."""
    keys = replay_keys(ep)
    per_seat = {}
    for p in seats:
        idx = [i for i, t in enumerate(ep.turns) if t.role == p]
        if idx:
            per_seat[p] = (idx, discounted_returns(process_rewards([keys[i] for i in idx], ep.returns[p],
                                                                   key_reward), gamma))
    scaled = scale_returns([g for _, g in per_seat.values()])
    w = [0.0] * len(ep.turns)
    for (idx, _), g in zip(per_seat.values(), scaled, strict=True):
        for i, x in zip(idx, g, strict=True):
            w[i] = x
    return w, keys


# ---- 3. Retrain: offline REINFORCE on the strategy segments --------------------------------------
def update(model, optimizer, segments: Sequence[Segment], weights: torch.Tensor, cfg: Config) -> dict[str, float]:
    """`epochs` optimizer steps of Eq. (4) over all segments (exact mean over micro-batches)."""
    stats = {"epo": 0.0, "grad_norm": 0.0}
    n = len(segments)
    model.train()
    for _ in range(cfg.epochs):
        optimizer.zero_grad(set_to_none=True)
        for sl in V.microbatches(n, cfg.micro_batch):
            lps = shared_prefix_logprobs(model, [s.prompt_ids for s in segments[sl]],
                                         [s.token_ids for s in segments[sl]])  # the rules paragraph once
            logp = pad_right(lps)
            mask = pad_right([[1.0] * len(x) for x in lps], logp.shape[1]).to(logp.device)
            loss = reward_weighted_nll(logp, mask, weights[sl].to(logp.device)) * (mask.shape[0] / n)  # Eq. (4)
            loss.backward()
            stats["epo"] += loss.item() / cfg.epochs
        if cfg.max_grad_norm > 0:
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
        optimizer.step()
    model.eval()
    return stats


# ---- Opponents and evaluation --------------------------------------------------------------------
def make_opponent(name: str, base_sampler: Callable[[], Sampler]):
    """A scripted policy or the frozen base model (direct mode, temperature 1)."""
    if name == "heuristic":
        return HeuristicNegotiator()
    if name == "random":
        return UniformRandomPolicy()
    if name == "base":
        return LMAgent(base_sampler(), "direct", SamplingParams(max_new_tokens=8, temperature=1.0), learner=False)
    raise SpkitError(f"unknown opponent {name!r}; use one of {', '.join(OPPONENTS)}")


def versus(agent: LMAgent, opponent, n: int, seed: int) -> list[Episode]:
    """`n` games of `agent` against `opponent`, the agent in seat i % 2 of game i."""
    return play_episodes(NegotiationGame(), lambda i: [agent, opponent] if i % 2 == 0 else [opponent, agent], n, seed)


def match_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """Mean return (± 95% normal half-width over games), deal rate and invalid-move rate of the
    agent's seat (seat i % 2 of game i)."""
    rets = [e.returns[i % 2] for i, e in enumerate(episodes)]
    n = max(len(rets), 1)
    mean = sum(rets) / n
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / max(n - 1, 1))
    return {"return": mean, "return_ci": 1.96 * sd / math.sqrt(n),
            "deal": sum(e.state.allocation is not None for e in episodes) / n,
            "invalid": sum(e.invalid_by == i % 2 for i, e in enumerate(episodes)) / n}


def strategy_stats(texts: Sequence[str]) -> dict[str, float]:
    """Strategy diversity (distinct / all) and the share inside the grammar."""
    n = max(len(texts), 1)
    return {"diversity": len(set(texts)) / n, "valid": sum(parse_strategy(s) is not None for s in texts) / n}


def follow_rate(episodes: Sequence[Episode], tok) -> float:
    """Share of the learner's actor turns under a grammar strategy whose move equals the scripted
    follower's (an invalid move counts as not followed)."""
    hits = total = 0
    for ep in episodes:
        keep = [parse_strategy(strategy_of(tok.decode(t.prompt_ids))) if t.learner else None for t in ep.turns]
        total += sum(k is not None and t.action is None for k, t in zip(keep, ep.turns, strict=True))
        for state, ti, move in replay(ep):
            if ti is not None and keep[ti] is not None:
                total += 1
                hits += move == follow_strategy(state, keep[ti])
    return hits / max(total, 1)


# ---- Train ---------------------------------------------------------------------------------------
PLOT_KEYS = ["eval/train/guided/return", "eval/train/neutral/return", "eval/heldout/guided/return",
             "eval/heldout/neutral/return", "train/return", "eval/valid", "eval/diversity"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Run EPO on Simple Negotiation; return every logged row. `OUT/final/` is the strategy
    model, `OUT/actor/` the frozen actor it guides."""
    from spkit.run import model_for

    if cfg.train_opponent == cfg.heldout_opponent:
        raise SpkitError(f"--heldout-opponent must differ from --train-opponent (both {cfg.train_opponent!r})")
    run = Run(cfg, "epo", callback, PLOT_KEYS)
    model, tok = model_for(cfg)
    actor_model, _ = model_for(cfg, cfg.actor or cfg.model)
    setup = {}
    if not cfg.resume and not cfg.actor:  # step 0a (a resume restores the actor from the checkpoint)
        setup |= {f"setup/actor_{k}": v for k, v in build_actor(actor_model, tok, cfg).items()}
    if not cfg.resume:  # step 0b
        setup |= {f"setup/strategy_{k}": v for k, v in sft(model, tok, strategy_demonstrations(
            cfg.strategy_sft_steps * cfg.sft_batch, cfg.seed), cfg, cfg.strategy_sft_steps,
            derive_seed(cfg.seed, "strategy-sft")).items()}
    actor = FrozenActor(actor_model, tok)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    run.track(model=model, tokenizer=tok, optimizer=optimizer, actor=actor)
    act_params = SamplingParams(max_new_tokens=8, temperature=cfg.actor_temperature)
    strat_params = SamplingParams(max_new_tokens=cfg.strategy_tokens, temperature=cfg.strategy_temperature,
                                  stop=("\n",))
    actor_sampler = Sampler(actor_model, tok)
    guided_sampler = GuidedSampler(actor_sampler, Sampler(model, tok), strat_params)
    guided = LMAgent(guided_sampler, "direct", act_params, learner=True)  # type: ignore[arg-type]
    neutral = LMAgent(GuidedSampler(actor_sampler), "direct", act_params, learner=False)  # type: ignore[arg-type]
    base: list[Sampler] = []

    def base_sampler() -> Sampler:  # the untrained base model, loaded only if an opponent needs it
        if not base:
            m, t = model_for(cfg)
            base.append(Sampler(m.requires_grad_(False), t))
        return base[0]

    opponents = {"train": make_opponent(cfg.train_opponent, base_sampler),
                 "heldout": make_opponent(cfg.heldout_opponent, base_sampler)}
    n_self = round(cfg.games * cfg.selfplay_share)

    def seats(i: int):
        if i < n_self:
            return [guided, guided]  # the strategy model guides both parties
        return [guided, opponents["train"]] if i % 2 == 0 else [opponents["train"], guided]

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        guided_sampler.log.clear()
        eps = [e for e in play_episodes(NegotiationGame(), seats, cfg.games, derive_seed(cfg.seed, "collect", t))
               if not e.overflow]  # 1
        t_roll = time.perf_counter() - t0
        segs, ws, keys, texts = [], [], [], []
        for ep in eps:  # 2
            w, k = episode_weights(ep, cfg.gamma, cfg.key_reward, ep.learner_seats)
            for turn, wi, ki in zip(ep.turns, w, k, strict=True):
                seg = guided_sampler.segment(turn.prompt_ids) if turn.learner else None
                if seg is not None and seg.token_ids:
                    segs.append(seg)
                    ws.append(wi)
                    keys.append(ki)
                    texts.append(seg.text)
        losses = update(model, optimizer, segs, torch.tensor(ws), cfg) if segs else {}  # 3
        rets = [e.returns[s] for e in eps for s in e.learner_seats]
        m = {"train/return": sum(rets) / max(len(rets), 1),
             "train/deal": sum(e.state.allocation is not None for e in eps) / max(len(eps), 1),
             "train/key_rate": sum(keys) / max(len(keys), 1), "train/segments": float(len(segs)),
             **{f"train/{k}": v for k, v in strategy_stats(texts).items()},
             "train/rollout_seconds": t_roll, "train/seconds_per_step": time.perf_counter() - t0}
        return m | {f"losses/{k}": v for k, v in losses.items()} | (setup if t == 0 else {})

    neutral_cache: dict[str, dict[str, float]] = {}

    def evaluate(t: int) -> dict[str, float]:  # 4: the same seeded games at every evaluation
        seed = derive_seed(cfg.seed, "eval")
        m: dict[str, float] = {}
        texts, guided_eps = [], []
        for name, opp in opponents.items():
            guided_sampler.log.clear()
            eps = versus(guided, opp, cfg.eval_games, derive_seed(seed, name))
            texts += [strategy_of(tok.decode(tr.prompt_ids)) for e in eps for tr in e.turns if tr.learner]
            guided_eps += eps
            if name not in neutral_cache:  # the frozen actor on the same games: the same numbers
                neutral_cache[name] = match_metrics(versus(neutral, opp, cfg.eval_games, derive_seed(seed, name)))
            g = match_metrics(eps)
            m |= {f"eval/{name}/guided/{k}": v for k, v in g.items()}
            m |= {f"eval/{name}/neutral/{k}": v for k, v in neutral_cache[name].items()}
            m[f"eval/{name}/gain"] = g["return"] - neutral_cache[name]["return"]
        guided_sampler.log.clear()
        m |= {f"eval/{k}": v for k, v in strategy_stats(texts).items()}
        m["eval/follow"] = follow_rate(guided_eps, tok)
        return m

    history = run.loop(step, evaluate)
    if history.out_dir is not None and run.writes:  # the frozen actor beside final/
        replace_dir(history.out_dir / "actor", actor.save_files)
    return history


def summary(history: History) -> str:
    """The line `spkit train epo` prints at the end."""
    parts = []
    for name in ("train", "heldout"):
        g, n = history.last(f"eval/{name}/guided/return"), history.last(f"eval/{name}/neutral/return")
        parts.append(f"vs {name} opponent: guided {g:+.3f}, unconditioned {n:+.3f}")
    return "mean negotiation return " + "; ".join(parts)


__all__ = ["PAPER", "Config", "grammar", "clean_strategy", "parse_strategy", "follow_strategy", "strategy_prompt",
           "actor_prompt", "GuidedSampler", "Segment", "actor_demonstrations", "build_actor", "strategy_demonstrations",
           "key_turn", "process_rewards", "discounted_returns", "scale_returns", "replay_keys", "episode_weights",
           "update", "make_opponent", "versus", "match_metrics", "strategy_stats", "follow_rate", "train",
           "summary", "replay"]
