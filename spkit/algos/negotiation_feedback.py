r"""Negotiation with AI feedback — in-context improvement of a bargainer over repeated rounds.

Fu, Peng, Khot, Lapata (2023), "Improving Language Model Negotiation with Self-Play and In-Context
Learning from AI Feedback", arXiv:2305.10142 (code: FranxYao/GPT-Bargaining).

Idea: a seller and a buyer (two language models) haggle over a balloon; after a round a *critic*
model writes suggestions to one player (here: the seller); in the next round that player sees
its earlier rounds and the suggestions in its context and plays again against a rival whose
context was reset. No weight changes: the player improves, if at all, *in context*. The paper
measures the criticised player's mean deal price and the deal rate per round, and finds that
stronger players gain from feedback, and that harder bargaining breaks more deals.

The game is `spkit.games.bargaining` (cost $8, openings $20 / $10, at most 10 messages; a deal
counts only between $11 and $19; the game itself is the moderator). Equations, numbered here:
  (1) p = the accepted offer; a deal iff some player accepts, 11 ≤ p ≤ 19          (the moderator)
  (2) r_seller = p − 8, r_buyer = 20 − p; no deal (or an invalid move): r = 0
  (3) x_{r+1} = x_r ⊕ (p_r, F_r),  F_r = critic(transcript_r)   — the seller's context grows,
      a_t ~ π_θ(· | x_r, game_t) with θ fixed across rounds       (in-context learning, no update)
  (4) price_r = mean{p_{g,r} : game g dealt in round r};  deal_r = (1/G) Σ_g 1[g dealt in round r];
      an unrolling stops at its first no deal (the paper's 5-round rule), so deal_r never rises
  (5) gain = mean over chains g that dealt in round 1 of (p_{g, last deal} − p_{g,1})
  (6) meta-SFT: L(θ) = −(1/Σ|y|) Σ_(x,y) Σ_t log π_θ(y_t | x, y_<t) on scripted games in which
      the seller's context x holds feedback F and y is the move of a scripted seller whose style
      F set ("do not accept below $15" → floor 15; "concede in smaller steps" → step − 1; ...),
      plus a `critic_share` of critic prompts whose y is a uniformly drawn suggestion (format only)

Algorithm:
  Weight updates (`--steps` counts them, and only them): step t draws `sft_batch` demonstrations
  from fresh scripted games (seeded by t): moves of both seats, and a `critic_share` of them
  critic prompts with a uniformly drawn suggestion; one Eq. (6) step.
  Evaluation (at step 0 = the untrained model, every `eval_every` steps, and at the end): for each
  critic in `--critics`, G = `games` chains of R = `rounds` rounds:
    1. round r: all active chains play one game at once (`spkit.rl.selfplay.play_episodes`, one
       sampler batch per message); both seats are the current model; the seller's state carries
       its earlier prices and the feedback so far, the buyer's nothing;
    2. Eq. (1)-(2) per game; with `stop_at_no_deal` a chain without a deal stops;
    3. the critic writes up to three suggestions from the feedback pool `FEEDBACK`:
         none      no critic (the control: does replaying alone move the price?)
         scripted  a rule critic that knows the reservation prices ($8 cost, $20 value): ask
                   `push` dollars above the last deal, and concede in smaller steps if the seller
                   conceded more than $1 at once
         model     the current model chooses `critic_samples` lines from the pool (direct mode,
                   the pool as its legal moves): the weak critic
         random    `critic_samples` uniform draws from the pool (a control for "model")
    4. Eq. (3): the suggestions join the seller's context (the last `max_feedback` lines).
  Then Eq. (4)-(5) and the seller's mean return per round (no deal counts 0).

Deviations from the paper:
  1. Moves are listed legal actions with integer prices (``offer 14``, ``accept``), not free
     text; the game is the moderator, and the deal price is exact.
  2. The critic chooses among a fixed pool of generic suggestions (`FEEDBACK`) instead of writing
     free text: a 3.3M-parameter model cannot follow free-text advice. The paper's own control is
     a pool of human-written feedback; the pool here plays that role for both critics.
  3. The meta-SFT stage (Eq. 6) is new: spkit-tiny never saw bargaining nor feedback, so it first
     learns, on scripted games, what a suggestion means for a move, and the critic's answer
     format (a pool line, drawn uniformly: no critic skill is taught). The in-context rounds then
     test (with weights fixed) whether the model follows feedback, and whether the model itself
     gives useful feedback. `final/` holds this meta-SFT'd model (with ``--steps 0``, the
     unchanged model).
  4. The seller's context holds its earlier rounds as their prices ("Earlier rounds: $13, $15")
     and the suggestions so far, not the full earlier dialogues (the tiny model's context).
  5. Only the seller is criticised (the paper criticises either player, one at a time).
  6. An invalid move (an answer that is not a listed action) ends the game without a deal, and
     with `stop_at_no_deal` the chain too: format failures count as broken deals (GPT-class models
     in the paper had none); `eval/<c>/invalid` says how many.

Metrics (per critic c ∈ `--critics`, rounds r = 1..R, in `metrics.csv` at each evaluation):
  eval/<c>/price_r<r>, eval/<c>/price_ci_r<r>   mean deal price (Eq. 4) and its 95% half-width (absent
                                              when the round had fewer than one / two deals)
  eval/<c>/deal_r<r>                          deal rate (Eq. 4)
  eval/<c>/return_r<r>                        the seller's mean return, Eq. (2), no deal = 0
  eval/<c>/invalid                            share of games ended by an invalid move
  eval/<c>/gain                               Eq. (5)
  eval/<c>/critic_invalid                     (model critic) share of its lines that are not in the pool
  train/sft_loss, train/grad_norm             the meta-SFT step
At the end, ``OUT/negotiation_feedback_rounds.png``: price and deal rate vs round, one line per critic.

Commands:
  spkit train negotiation_feedback --steps 200 --threads 1 --out runs/negotiation_feedback
  spkit train negotiation_feedback --steps 0 --out runs/negfb_untrained      # the untrained baseline
  spkit train negotiation_feedback --critics none,scripted,model,random --push 3 --out runs/negfb_push3
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from spkit.config import param
from spkit.errors import SpkitError
from spkit.games.bargaining import (
    MAX_DEAL,
    MIN_DEAL,
    SELLER,
    BargainingGame,
    BargainingState,
    Trader,
    price_of,
)
from spkit.games.base import InvalidMove
from spkit.games.policies import wilson_interval
from spkit.games.prompts import ANSWER_PREFIX, format_prompt, parse_action
from spkit.generation import Sampler
from spkit.rl.selfplay import LMAgent, play_episodes
from spkit.rl.verifiable import sft_update
from spkit.run import History, Run, RunConfig
from spkit.sampling import SamplingParams
from spkit.seeding import derive_seed

PAPER = {
    "title": "Improving Language Model Negotiation with Self-Play and In-Context Learning from AI Feedback",
    "arxiv": "2305.10142",
    "citation": "Fu, Peng, Khot and Lapata, 2023",
}
CRITICS = ("none", "scripted", "model", "random")


# ---- 1. The feedback pool and what each suggestion means ------------------------------------------
def floor_line(price: int) -> str:
    return f"do not accept below ${price}"


SMALLER, BIGGER, SOONER = "concede in smaller steps", "concede in bigger steps", "accept sooner"
#: Every suggestion a critic may give (the pool is the critics' "legal moves").
FEEDBACK: tuple[str, ...] = (*(floor_line(p) for p in range(MIN_DEAL + 1, MAX_DEAL + 1)), SMALLER, BIGGER, SOONER)


def follow(seller: Trader, feedback: Sequence[str]) -> Trader:
    """The scripted seller that follows `feedback`, oldest first (a later floor replaces an
    earlier one): a floor line sets the limit, smaller/bigger steps move the step by 1 (at
    least 1), "accept sooner" adds $2 of slack. Unknown lines change nothing."""
    for line in feedback:
        if line.startswith("do not accept below $"):
            seller = replace(seller, limit=int(line.rsplit("$", 1)[1]))
        elif line == SMALLER:
            seller = replace(seller, step=max(1, seller.step - 1))
        elif line == BIGGER:
            seller = replace(seller, step=seller.step + 1)
        elif line == SOONER:
            seller = replace(seller, slack=seller.slack + 2)
    return seller


# ---- 2. Meta-SFT data: scripted games in which feedback precedes consistent play (Eq. 6) ---------
def default_seller(rng: random.Random) -> Trader:
    """A seller without feedback: floor $11–14, concessions of $2–4."""
    return Trader(SELLER, rng.randint(11, 14), rng.randint(2, 4))


def default_buyer(rng: random.Random) -> Trader:
    """A buyer (never criticised): ceiling $14–18, concessions of $1–3 — unknown to the seller,
    so a firm seller sometimes finds no buyer (deals break)."""
    return Trader(1 - SELLER, rng.randint(14, 18), rng.randint(1, 3))


def demo_game(rng: random.Random, feedback_prob: float, max_feedback: int) -> BargainingState:
    """One scripted game: random styles, and with probability `feedback_prob` 1–3 suggestions
    (and their effect) in the seller's context; 0–4 earlier rounds' prices shown either way."""
    lines = rng.sample(FEEDBACK, rng.randint(1, 3)) if rng.random() < feedback_prob else []
    seller, buyer = follow(default_seller(rng), lines), default_buyer(rng)
    state = BargainingGame().new_initial_state()
    state.feedback = lines[-max_feedback:]
    state.past = [rng.choice([None, *range(MIN_DEAL, MAX_DEAL + 1)]) for _ in range(rng.randint(0, 4))]
    while not state.is_terminal():
        state.apply_action((seller if state.current_player() == SELLER else buyer).act(state))
    return state


def demonstrations(n: int, seed: int, feedback_prob: float = 0.7, max_feedback: int = 6) -> list[tuple[str, str]]:
    """`n` (direct-mode prompt, move + "}") pairs, both seats' moves after the openings, from
    seeded scripted games played in order until `n` are collected."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while len(pairs) < n:
        final = demo_game(random.Random(derive_seed(seed, "demo", i)), feedback_prob, max_feedback)
        replay = BargainingGame().new_initial_state()
        replay.feedback, replay.past = final.feedback, final.past
        for player, action in final.moves[2:]:
            pairs.append((format_prompt(replay, player, "direct"), action + "}"))
            replay.apply_action(action)
        i += 1
    return pairs[:n]


def critic_format_demos(n: int, seed: int, max_feedback: int = 6) -> list[tuple[str, str]]:
    """`n` (critic prompt, suggestion + "}") pairs on finished scripted games, the suggestion drawn
    uniformly from the pool: they teach the model critic's format (a pool line in the box), not
    which suggestion is good, so what the model critic says stays its own prior."""
    pairs = []
    for i in range(n):
        rng = random.Random(derive_seed(seed, "critic_demo", i))
        pairs.append((critic_prompt(demo_game(rng, 0.7, max_feedback)), rng.choice(FEEDBACK) + "}"))
    return pairs


# ---- 3. Critics ---------------------------------------------------------------------------------
def seller_concessions(state: BargainingState) -> list[int]:
    """How much the seller lowered its price at each of its offers (openings included)."""
    offers = [price_of(a) for p, a in state.moves if p == SELLER and a != "accept"]
    return [a - b for a, b in zip(offers, offers[1:], strict=False)]


def scripted_critic(state: BargainingState, push: int = 2) -> list[str]:
    """The strong critic: it knows the reservation prices (cost $8, the buyer's value $20), so
    any deal below $19 left money on the table: ask `push` dollars above it, and concede in
    smaller steps if the seller ever conceded more than $1. After a no deal: accept sooner."""
    if state.price is None:
        return [SOONER]
    lines = [floor_line(min(state.price + push, MAX_DEAL))]
    if any(c > 1 for c in seller_concessions(state)):
        lines.append(SMALLER)
    return lines


def critic_prompt(state: BargainingState) -> str:
    """The model critic's direct-mode prompt: the round as the seller saw it, the pool as moves."""
    return "\n".join([state.game.rules, "You are the critic. Give the seller one suggestion for the next round.",
                      state.observation_text(SELLER), "Legal moves: " + ", ".join(FEEDBACK), "Move: " + ANSWER_PREFIX])


def model_critic(sampler: Sampler, states: Sequence[BargainingState], k: int, temperature: float, seed: int
                 ) -> tuple[list[list[str]], int]:
    """The weak critic: `k` sampled suggestions per state from the model (one batch), duplicates
    and lines outside the pool dropped. Returns the lines per state and the number dropped as
    invalid."""
    if not states:
        return [], 0
    params = SamplingParams(max_new_tokens=16, temperature=temperature, stop=("}",), include_stop=True)
    limit = sampler.context_limit()
    prompts = [critic_prompt(s) for s in states]
    fits = [limit is None or len(sampler.encode(p)) + params.max_new_tokens <= limit for p in prompts]
    outs = iter(sampler.generate([p for p, ok in zip(prompts, fits, strict=True) if ok for _ in range(k)], params,
                                 seed=seed) if any(fits) else [])
    lines, bad = [], 0
    for ok in fits:  # a prompt past the model's positions is not sampled: k invalid lines
        got = [parse_action(ANSWER_PREFIX + next(outs).text, list(FEEDBACK)) if ok else InvalidMove("context")
               for _ in range(k)]
        bad += sum(isinstance(g, InvalidMove) for g in got)
        lines.append(list(dict.fromkeys(g for g in got if not isinstance(g, InvalidMove))))
    return lines, bad


def random_critic(rng: random.Random, k: int) -> list[str]:
    return list(dict.fromkeys(rng.choice(FEEDBACK) for _ in range(k)))


# ---- 4. Rounds with feedback in context (Eq. 1-3) ---------------------------------------------------
@dataclass
class RoundRecord:
    """One round of one chain: the finished game, its price (None: no deal), and the critic's lines."""

    state: BargainingState
    price: int | None
    invalid: bool
    feedback: list[str] = field(default_factory=list)


@dataclass
class Chain:
    """One unrolling: the rounds played so far and the seller's accumulated feedback."""

    rounds: list[RoundRecord] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    active: bool = True


def unroll(agent: LMAgent, critic: str, games: int, rounds: int, seed: int, push: int = 2, critic_samples: int = 3,
           max_feedback: int = 6, stop_at_no_deal: bool = True, critic_sampler: Sampler | None = None
           ) -> tuple[list[Chain], int]:
    """Steps 1-4 for one critic: `games` chains of up to `rounds` rounds, the model in both seats.
    Returns the chains and the model critic's invalid lines (0 for the other critics)."""
    if critic not in CRITICS:
        raise SpkitError(f"unknown critic {critic!r}; known: {', '.join(CRITICS)}")
    game, chains, bad = BargainingGame(), [Chain() for _ in range(games)], 0
    rng = random.Random(derive_seed(seed, "random_critic"))
    for r in range(rounds):
        active = [c for c in chains if c.active]
        if not active:
            break

        def initial(j: int, active=active) -> BargainingState:
            st = game.new_initial_state()
            st.feedback = active[j].feedback[-max_feedback:]
            st.past = [rec.price for rec in active[j].rounds]
            return st

        eps = play_episodes(game, lambda j: [agent, agent], len(active), derive_seed(seed, "round", r), initial)
        for c, ep in zip(active, eps, strict=True):
            invalid = ep.invalid_by is not None or ep.overflow
            price = None if invalid else ep.state.price
            c.rounds.append(RoundRecord(ep.state, price, invalid))
            c.active = price is not None or not stop_at_no_deal
        if r == rounds - 1 or critic == "none":
            continue
        todo = [c for c in chains if c.active]
        if critic == "model":
            lines, b = model_critic(critic_sampler or agent.sampler, [c.rounds[-1].state for c in todo],
                                    critic_samples, agent.params.temperature, derive_seed(seed, "critic", r))
            bad += b
        elif critic == "scripted":
            lines = [scripted_critic(c.rounds[-1].state, push) for c in todo]
        else:
            lines = [random_critic(rng, critic_samples) for _ in todo]
        for c, fb in zip(todo, lines, strict=True):
            c.rounds[-1].feedback = fb
            c.feedback += fb
    return chains, bad


# ---- 5. Metrics per round (Eq. 4-5) -----------------------------------------------------------------
def round_stats(chains: Sequence[Chain], rounds: int) -> list[dict[str, float]]:
    """Per round r: mean deal price and its 95% half-width (over deals), deal rate and its Wilson
    interval (over all chains), the seller's mean return (no deal or a stopped chain: 0), and the
    share of that round's games ended by an invalid move."""
    n, out = len(chains), []
    for r in range(rounds):
        played = [c.rounds[r] for c in chains if len(c.rounds) > r]
        prices = [rec.price for rec in played if rec.price is not None]
        lo, hi = wilson_interval(len(prices), n)
        sd = float(np.std(prices, ddof=1)) if len(prices) > 1 else float("nan")
        out.append({"price": float(np.mean(prices)) if prices else float("nan"),
                    "price_ci": 1.96 * sd / math.sqrt(len(prices)) if len(prices) > 1 else float("nan"),
                    "deal": len(prices) / n, "deal_lo": lo, "deal_hi": hi,
                    "return": sum(p - 8 for p in prices) / n,
                    "invalid": sum(rec.invalid for rec in played) / max(len(played), 1)})
    return out


def price_gain(chains: Sequence[Chain]) -> float:
    """Eq. (5): over chains that dealt in round 1, the mean of (last deal price − first)."""
    diffs = []
    for c in chains:
        prices = [rec.price for rec in c.rounds if rec.price is not None]
        if c.rounds and c.rounds[0].price is not None:
            diffs.append(prices[-1] - prices[0])
    return float(np.mean(diffs)) if diffs else float("nan")


# ---- Config ---------------------------------------------------------------------------------------
@dataclass
class Config(RunConfig):
    model: str = param("spkit-tiny", "model name, hub id or save_pretrained directory")
    steps: int = param(200, "meta-SFT steps (the only weight updates; the feedback rounds run in "
                       "each evaluation)", ge=0, identity=False)
    sft_batch: int = param(16, "demonstration moves per meta-SFT step", ge=1)
    lr: float = param(5e-4, "meta-SFT learning rate", gt=0)
    feedback_prob: float = param(0.7, "share of demonstration games whose seller got feedback", ge=0, le=1)
    critic_share: float = param(0.125, "share of each meta-SFT batch that teaches the model critic's format "
                                "(a uniformly drawn suggestion: the format, not the skill)", ge=0, le=1)
    max_feedback: int = param(6, "suggestions kept in the seller's context (the newest)", ge=1)
    micro_batch: int = param(64, "rows per forward/backward", ge=1)
    max_grad_norm: float = param(1.0, "gradient clipping (0 = off)", ge=0)
    critics: str = param("none,scripted,model", "critics to evaluate, comma-separated: none | scripted | "
                         "model | random", identity=False)
    games: int = param(32, "G: chains (unrollings) per critic in each evaluation", ge=1, identity=False)
    rounds: int = param(5, "R: rounds per chain (the paper: 5)", ge=1, identity=False)
    push: int = param(2, "scripted critic: dollars asked above the last deal (larger = stronger feedback)",
                      ge=1, identity=False)
    critic_samples: int = param(3, "suggestions a model / random critic draws per round (the paper: 3)", ge=1,
                                identity=False)
    stop_at_no_deal: bool = param(True, "a chain stops at its first no deal (the paper)", identity=False)
    temperature: float = param(0.7, "sampling temperature of the players and the model critic", gt=0,
                               identity=False)
    eval_every: int = param(50, "evaluate every k steps (and at the start and the end)", ge=0, identity=False)

    def critic_list(self) -> list[str]:
        names = [c.strip() for c in self.critics.split(",") if c.strip()]
        bad = [c for c in names if c not in CRITICS]
        if bad or not names:
            raise SpkitError(f"--critics: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(CRITICS)}")
        return names


# ---- Evaluation -------------------------------------------------------------------------------------
def evaluate(agent: LMAgent, cfg: Config, step: int) -> dict[str, float]:
    """Every critic's rounds (steps 1-4 of the docstring) and Eq. (4)-(5), flattened for the log."""
    m: dict[str, float] = {}
    for critic in cfg.critic_list():
        chains, bad = unroll(agent, critic, cfg.games, cfg.rounds, derive_seed(cfg.seed, "eval", step, critic),
                             cfg.push, cfg.critic_samples, cfg.max_feedback, cfg.stop_at_no_deal)
        for r, s in enumerate(round_stats(chains, cfg.rounds), start=1):
            m |= {f"eval/{critic}/{k}_r{r}": s[k] for k in ("price", "price_ci", "deal", "return")}
        played = [rec for c in chains for rec in c.rounds]
        m[f"eval/{critic}/invalid"] = sum(rec.invalid for rec in played) / max(len(played), 1)
        m[f"eval/{critic}/gain"] = price_gain(chains)
        if critic == "model":
            drawn = sum(1 for c in chains for rec in c.rounds[:-1] if rec.price is not None or not cfg.stop_at_no_deal)
            m[f"eval/{critic}/critic_invalid"] = bad / max(drawn * cfg.critic_samples, 1)
    return {k: v for k, v in m.items() if math.isfinite(v)}  # no deal in a round: no price logged


def plot_rounds(history: History, critics: Sequence[str], rounds: int, path: Path) -> None:
    """Mean deal price and deal rate vs round at the last evaluation, one line per critic (a bare
    `Figure`: the caller's pyplot backend, e.g. a notebook's, is left alone)."""
    from matplotlib.figure import Figure

    row = next((r for r in reversed(history.rows) if any(k.startswith("eval/") for k in r)), None)
    if row is None:
        return
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 2)
    xs = list(range(1, rounds + 1))
    for critic in critics:
        axes[0].errorbar(xs, [row.get(f"eval/{critic}/price_r{r}", math.nan) for r in xs],
                         yerr=[row.get(f"eval/{critic}/price_ci_r{r}", math.nan) for r in xs], marker="o",
                         capsize=3, label=critic)
        axes[1].plot(xs, [row.get(f"eval/{critic}/deal_r{r}", math.nan) for r in xs], marker="o", label=critic)
    axes[0].set(xlabel="round", ylabel="mean deal price ($)", title="seller's deal price")
    axes[1].set(xlabel="round", ylabel="deal rate", ylim=(0, 1.02), title="deal rate (stops at no deal)")
    axes[0].legend(title="critic")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ---- Train --------------------------------------------------------------------------------------------
PLOT_KEYS = ["train/sft_loss", "eval/none/price_r1", "eval/scripted/gain", "eval/model/gain", "eval/scripted/deal_r5"]


def train(cfg: Config, callback: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Meta-SFT for `cfg.steps` steps, with the in-context feedback rounds as the evaluation."""
    from spkit.run import model_for

    critics = cfg.critic_list()  # a bad --critics fails before any work
    run = Run(cfg, "negotiation_feedback", callback, PLOT_KEYS)
    model, tok = model_for(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    run.track(model=model, tokenizer=tok, optimizer=optimizer)
    agent = LMAgent(Sampler(model, tok), "direct", SamplingParams(max_new_tokens=6, temperature=cfg.temperature),
                    learner=False)

    def step(t: int) -> dict[str, float]:
        t0 = time.perf_counter()
        n_critic = round(cfg.sft_batch * cfg.critic_share)
        pairs = demonstrations(cfg.sft_batch - n_critic, derive_seed(cfg.seed, "sft", t), cfg.feedback_prob,
                               cfg.max_feedback) + critic_format_demos(n_critic, derive_seed(cfg.seed, "critic", t))
        P = [tok(p)["input_ids"] for p, _ in pairs]
        C = [tok(c, add_special_tokens=False)["input_ids"] for _, c in pairs]
        stats = sft_update(model, optimizer, P, C, 1, cfg.micro_batch, cfg.max_grad_norm)  # Eq. (6)
        return {"train/sft_loss": stats["sft"], "train/grad_norm": stats["grad_norm"],
                "train/seconds_per_step": time.perf_counter() - t0}

    history = run.loop(step, lambda t: evaluate(agent, cfg, t))
    if run.writes and cfg.plot:
        plot_rounds(history, critics, cfg.rounds, history.out_dir / "negotiation_feedback_rounds.png")
    return history


def summary(history: History) -> str:
    """The line `spkit train negotiation_feedback` prints at the end."""
    row = next((r for r in reversed(history.rows) if any(k.startswith("eval/") for k in r)), {})
    parts = [f"{c}: gain {row.get(f'eval/{c}/gain', math.nan):+.2f}" for c in CRITICS
             if f"eval/{c}/deal_r1" in row]
    return "seller's deal price, last deal - round 1 (Eq. 5): " + ", ".join(parts)
