r"""Multi-turn self-play rollouts, batched through the spkit `Sampler` across many games at once.

One call plays `n` games to the end. At every "round" all unfinished games whose player to move
is a language model are collected, their prompts go to the sampler in **one** batch per model,
the answers are parsed, and legal moves are applied; non-LLM players (random, CFR, minimax,
heuristic) move immediately. A game therefore costs about as many sampler calls as its longest
game has turns, not as many as all its turns together.

    agents = [LMAgent(sampler, "direct", params, learner=True)] * 2      # self-play
    episodes = play_episodes(game, lambda i: agents, n=64, seed=s)
    turns = [t for e in episodes for t in e.turns if t.learner]           # training data

Rules that match SPIRAL (and `spkit.games.policies.play_match`):
* An answer that is not exactly a legal action (`parse_action` returns `InvalidMove`), or a
  free-text move the game itself rejects (``state.invalid_by``, a TextArena env), ends the
  game: the offender gets −1.5, every other player +0.5.
* Context overflow: a prompt that leaves fewer than ``max_new_tokens`` positions in the model
  (``Sampler.context_limit``) is not sampled; its game ends there as an *overflow*
  (``Episode.overflow``, returns all 0, no invalid move), counted rather than crashing the
  batch. Trainers skip overflowed games (they have no outcome).
* Every turn a player took is credited with that player's final return (episodic reward, no
  discounting); advantages are computed later from (game, role, return).

Direct mode: the prompt ends with ``\boxed{`` and the model writes ``action}``; generation stops
at ``}``. Reasoning mode: the model writes free text ending with ``\boxed{action}``; generation
stops at the ``}`` that closes the box, braces counted by depth (``SamplingParams.stop_after_box``:
a "}" of ``\frac{1}{3}`` or of ``\boxed{\text{bet}}``'s inner group does not stop it), or at EOS /
the token limit.

Determinism: chance in game i uses ``derive_seed(seed, "game", i)``; the sampler call of round r
for model m uses ``derive_seed(seed, "round", r, m)``; a non-LLM player draws from a
``random.Random`` seeded by (seed, game, seat). Same seed -> same episodes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spkit.errors import SpkitError
from spkit.games.base import Game, InvalidMove, State
from spkit.games.policies import INVALID_BONUS, INVALID_PENALTY
from spkit.games.prompts import ANSWER_PREFIX, format_prompt, parse_action
from spkit.generation import Sampler
from spkit.logprobs import pad_right, shared_prefix_logprobs
from spkit.models import inference_model
from spkit.run.checkpoint import save_tensors
from spkit.run.distributed import clip_grad_norm
from spkit.sampling import SamplingParams, behaviour_logprobs
from spkit.seeding import derive_seed

__all__ = ["LMAgent", "Turn", "Episode", "play_episodes", "outcome_rates", "format_sft", "PastSelves"]


@dataclass
class LMAgent:
    """A language-model player: which sampler, which prompt mode, how to sample.

    `learner=True` marks turns that become training data (the current policy); a frozen
    opponent (SPIRAL's "fixed" ablation) is an `LMAgent` with its own sampler and
    `learner=False`.
    """

    sampler: Sampler
    mode: str = "direct"  # "direct" | "reasoning"
    params: SamplingParams = field(default_factory=SamplingParams)
    learner: bool = True


@dataclass
class Turn:
    """One LLM decision: everything the policy-gradient loss needs."""

    game: str
    role: int  # the seat (player index) that moved
    prompt_ids: list[int]
    completion_ids: list[int]
    old_logprobs: list[float]  # log p(token) under the sampling policy, at the rollout temperature
    text: str
    action: str | None  # the legal action played, None for an invalid move
    learner: bool
    ret: float = 0.0  # filled in when the game ends: this role's final return


@dataclass
class Episode:
    """One finished game."""

    game: str
    seed: int
    returns: list[float]
    turns: list[Turn]
    invalid_by: int | None  # seat that made an invalid move (the game ended there), or None
    learner_seats: list[int]  # seats played by the learner
    state: State
    overflow: bool = False  # ended because a prompt did not fit the model's context


def _prompt_params(agent: LMAgent) -> SamplingParams:
    """Where a turn's generation stops: at the brace that closes the answer box.

    Direct mode: the prompt opened the box and legal moves hold no braces, so the first "}"
    closes it. Reasoning mode: the "}" that closes the model's own ``\boxed{`` with braces
    counted by depth (``stop_after_box``), so ``\frac{1}{3} … \boxed{\text{bet}}`` is whole."""
    p = agent.params
    direct = agent.mode == "direct"
    stop = tuple(dict.fromkeys((*p.stop, "}"))) if direct else p.stop
    return SamplingParams(max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p,
                          top_k=p.top_k, stop=stop, include_stop=True, stop_after_box=not direct)


def _parse(agent: LMAgent, text: str, state: State) -> str | InvalidMove:
    answer = ANSWER_PREFIX + text if agent.mode == "direct" else text
    return parse_action(answer, state.legal_actions(), state)


def play_episodes(
    game: Game,
    seats: Callable[[int], Sequence[Any]],
    n: int,
    seed: int,
    initial: Callable[[int], State] | None = None,
) -> list[Episode]:
    """Play `n` games of `game`; ``seats(i)`` gives game i's players (LMAgent or Policy).

    A Policy is anything with ``sample_action(state, rng)`` (see `spkit.games.policies`).
    LMAgents that are the same object share one sampler batch per round. ``initial(i)``, if
    given, is game i's starting state (e.g. one that carries in-context feedback from an earlier
    round); by default ``game.new_initial_state(seed=derive_seed(seed, "game", i))``.
    """
    states = [initial(i) if initial is not None else game.new_initial_state(seed=derive_seed(seed, "game", i))
              for i in range(n)]
    players = [list(seats(i)) for i in range(n)]
    rngs = [[random.Random(derive_seed(seed, "policy", i, s)) for s in range(len(players[i]))]
            for i in range(n)]
    turns: list[list[Turn]] = [[] for _ in range(n)]
    invalid: list[int | None] = [None] * n
    overflow: set[int] = set()
    done = [False] * n
    rnd = 0
    while not all(done):
        _policy_moves(states, players, rngs, invalid, done)
        waiting: dict[int, list[int]] = {}  # id(agent) -> games waiting for it
        agents: dict[int, LMAgent] = {}
        for i, st in enumerate(states):
            if not done[i]:
                agent = players[i][st.current_player()]
                waiting.setdefault(id(agent), []).append(i)
                agents[id(agent)] = agent
        for m, (key, idx) in enumerate(waiting.items()):
            idx, prompts = _fit_context(agents[key], idx, states, overflow, done)
            if idx:
                _lm_moves(agents[key], idx, prompts, states, turns, invalid, done,
                          derive_seed(seed, "round", rnd, m))
        rnd += 1
    return [_finish(game, i, derive_seed(seed, "game", i), states[i], players[i], turns[i], invalid[i],
                    i in overflow) for i in range(n)]


def _fit_context(agent: LMAgent, idx: list[int], states, overflow: set[int], done
                 ) -> tuple[list[int], list[str]]:
    """The games in `idx` whose prompt leaves room for `max_new_tokens`, with their prompts; the
    others end as overflows (see the module docstring)."""
    prompts = [format_prompt(states[i], states[i].current_player(), agent.mode) for i in idx]
    limit = getattr(agent.sampler, "context_limit", lambda: None)()
    if limit is None:
        return idx, prompts
    room = limit - agent.params.max_new_tokens
    # A token covers at least one byte, so a prompt of few enough bytes (+ special tokens) fits
    # without being tokenized twice (the sampler tokenizes it again).
    keep = [len(p.encode()) + 16 <= room or len(agent.sampler.encode(p)) <= room for p in prompts]
    for i, k in zip(idx, keep, strict=True):
        if not k:
            overflow.add(i)
            done[i] = True
    return [i for i, k in zip(idx, keep, strict=True) if k], [p for p, k in zip(prompts, keep, strict=True) if k]


def _policy_moves(states, players, rngs, invalid, done) -> None:
    """Let every non-LLM player move until an LLM is to move or the game ends."""
    for i, st in enumerate(states):
        while not done[i]:
            if st.is_terminal():
                done[i] = True
                break
            seat = st.current_player()
            player = players[i][seat]
            if isinstance(player, LMAgent):
                break
            action = player.sample_action(st, rngs[i][seat])
            if isinstance(action, InvalidMove):
                invalid[i], done[i] = seat, True
                break
            st.apply_action(action)


def _lm_moves(agent: LMAgent, idx: list[int], prompts: list[str], states, turns, invalid, done, seed: int) -> None:
    """One batched sampler call for every game in `idx` waiting on `agent` (`prompts` in order)."""
    seats = [states[i].current_player() for i in idx]
    outs = agent.sampler.generate(prompts, _prompt_params(agent), seed=seed)
    for i, seat, out in zip(idx, seats, outs, strict=True):
        st = states[i]
        text = out.text
        action = _parse(agent, text, st)
        ok = not isinstance(action, InvalidMove)
        turns[i].append(Turn(st.game.name, seat, list(out.prompt_ids), list(out.token_ids),
                             behaviour_logprobs(out, agent.params.temperature), text, action if ok else None,
                             agent.learner))
        if ok:
            st.apply_action(action)
            done[i] = st.is_terminal()
            if st.invalid_by == seat:  # the game rejected the parsed move: an invalid move
                turns[i][-1].action = None
                invalid[i] = seat
        else:
            invalid[i], done[i] = seat, True


def _finish(game, i, seed, state, players, turns, bad, overflow: bool = False) -> Episode:
    n_players = game.num_players
    bad = bad if bad is not None else state.invalid_by  # a non-LLM move the game rejected
    if overflow:
        returns = [0.0] * n_players
    elif bad is None:
        returns = list(state.returns())
    else:
        returns = [INVALID_PENALTY if p == bad else INVALID_BONUS for p in range(n_players)]
    for t in turns:
        t.ret = returns[t.role]
    learner = [s for s, p in enumerate(players) if isinstance(p, LMAgent) and p.learner]
    return Episode(game.name, seed, returns, turns, bad, learner, state, overflow)


def outcome_rates(episodes: Sequence[Episode], seat_of: Callable[[Episode], int]) -> dict[str, float]:
    """Win / draw / loss rates, mean return and invalid rate of the seat ``seat_of(ep)``, and the
    share of games that ended as a context overflow (counted as draws: returns 0)."""
    n = max(len(episodes), 1)
    rets = [e.returns[seat_of(e)] for e in episodes]
    return {
        "win": sum(r > 0 for r in rets) / n,
        "draw": sum(r == 0 for r in rets) / n,
        "loss": sum(r < 0 for r in rets) / n,
        "return": sum(rets) / n,
        "invalid": sum(e.invalid_by == seat_of(e) for e in episodes) / n,
        "overflow": sum(e.overflow for e in episodes) / n,
    }


# ---- format SFT before self-play (a game the model has never seen) ------------------------------
def format_sft(model, tokenizer, games: dict[str, Game], cfg) -> dict[str, float]:
    """SPIRAL's step 0 (`spkit.algos.spiral`, ``--sft-steps``): `cfg.sft_steps` steps of
    supervised fine-tuning on random legal moves in each training game's own prompts
    (`spkit.corpus.format_demonstrations`), with its own Adam: the model learns the prompt
    layout and the legal moves, not a strategy, so self-play starts from a policy that plays
    the game (e.g. a TextArena env) legally at about random strength. Same data and steps on
    every process, so the weights stay identical. `cfg` needs sft_steps, sft_batch, sft_lr,
    mode, seed and max_grad_norm. Returns the first and last SFT losses."""
    from spkit.corpus import format_demonstrations
    from spkit.rl.losses import sft_loss
    from spkit.run.metrics import progress

    n = cfg.sft_steps * cfg.sft_batch
    per = [format_demonstrations(g, -(-n // len(games)), cfg.mode, derive_seed(cfg.seed, "sft", name))
           for name, g in games.items()]
    pairs = [p for group in zip(*per, strict=True) for p in group][:n]  # games interleaved
    limit = getattr(model.config, "max_position_embeddings", None) or 1 << 62
    pairs = [(p, c) for p, c in pairs if len(tokenizer(p + c)["input_ids"]) <= limit]  # within the context
    if not pairs:
        raise SpkitError(f"--sft-steps: every demonstration prompt exceeds the model's {limit} positions")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.sft_lr)
    losses = []
    model.train()
    for i in progress(range(cfg.sft_steps), desc="format SFT", leave=False):
        chunk = [pairs[j % len(pairs)] for j in range(i * cfg.sft_batch, (i + 1) * cfg.sft_batch)]
        P = [tokenizer(p)["input_ids"] for p, _ in chunk]
        C = [tokenizer(c, add_special_tokens=False)["input_ids"] for _, c in chunk]
        T = max(len(c) for c in C)
        logp = pad_right(shared_prefix_logprobs(model, P, C), T, torch.float32)
        mask = pad_right([[1.0] * len(c) for c in C], T).to(logp.device)
        loss = sft_loss(logp, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            clip_grad_norm(model, cfg.max_grad_norm)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return {"sft/loss_first": losses[0], "sft/loss_last": losses[-1]} if losses else {}


class PastSelves:
    """A pool of the learner's own past weights, to play some of each step's games against.

    Pure self-play against the current policy can cycle: in TicTacToe the shared policy learns
    one attacking line, its other seat learns the answer, the line changes, and the answer is
    forgotten. Playing part of the games against snapshots drawn uniformly from the last `size`
    (one every `every` steps) is the classic remedy (fictitious self-play; the 80/20 split of
    current and past selves in large self-play systems): a policy must hold up against its
    recent history, not only against its present. The opponent is still the model itself — no
    outside player and no solver.

    The snapshots live on the CPU (`size` copies of the weights); `opponent(seed)` loads one
    into the frozen `model` given here. Checkpoints save them as safetensors
    (`save_files` / `load_files`), so a resumed run draws the same opponents."""

    def __init__(self, model: torch.nn.Module, size: int, every: int) -> None:
        if size < 1 or every < 1:
            raise SpkitError(f"PastSelves: size and every must be >= 1 (got {size}, {every})")
        self.model, self.size, self.every = model, size, every
        self.steps: list[int] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def maybe_add(self, model: torch.nn.Module, step: int) -> None:
        """After update `step` (counted from 1): snapshot `model` every `every` steps."""
        if step % self.every == 0:
            self.steps.append(step)
            self.weights.append({k: v.detach().to("cpu", copy=True)  # FSDP: the full copy
                                 for k, v in inference_model(model).state_dict().items()})
            del self.steps[:-self.size], self.weights[:-self.size]

    def opponent(self, seed: int) -> int | None:
        """Load a snapshot drawn uniformly (by `seed`) into the pool's model; its step, or None
        while the pool is empty."""
        if not self.weights:
            return None
        i = random.Random(seed).randrange(len(self.weights))
        self.model.load_state_dict(self.weights[i])
        return self.steps[i]

    def state_dict(self) -> dict:
        return {"steps": list(self.steps)}

    def load_state_dict(self, state: dict) -> None:
        self.steps = list(state["steps"])

    def save_files(self, path: Path) -> None:
        for step, w in zip(self.steps, self.weights, strict=True):
            save_tensors(w, path / f"step_{step:07d}.safetensors")

    def load_files(self, path: Path) -> None:
        from safetensors.torch import load_file

        missing = [s for s in self.steps if not (path / f"step_{s:07d}.safetensors").exists()]
        if missing:
            raise SpkitError(f"checkpoint {path.parent}: the past-selves pool lacks snapshot(s) {missing}")
        self.weights = [load_file(str(path / f"step_{s:07d}.safetensors")) for s in self.steps]
