"""SPIRAL throughput on this machine: episodes/s, rollout tokens/s, seconds per update.

Each number comes with an anchor measured in the same run, so the ratio means something on a
shared, noisy CPU:

* rollouts: `spkit.rl.selfplay.play_episodes` (all games batched through the Sampler, one call
  per round) vs the plain loop — one `model.generate` call per turn, game after game;
* update: SPIRAL's update (identical turns merged, shared prompt prefix run once) vs the plain
  PPO step on every turn with `spkit.logprobs.token_logprobs`.

    python benchmarks/spiral.py                    # spkit-tiny, Kuhn Poker + TicTacToe
    python benchmarks/spiral.py --games 32 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from spkit.algos import spiral
from spkit.games import load_game
from spkit.games.prompts import format_prompt
from spkit.generation import Sampler
from spkit.logprobs import pad_right, token_logprobs
from spkit.models import load_model
from spkit.rl.losses import ppo_clip_loss
from spkit.rl.selfplay import LMAgent, _parse, play_episodes
from spkit.sampling import SamplingParams


def anchor_rollouts(model, tok, game, n: int, params: SamplingParams, agent: LMAgent) -> tuple[int, int]:
    """One `model.generate` per turn, games one after another; returns (episodes, tokens)."""
    tokens = 0
    for i in range(n):
        state = game.new_initial_state(seed=i)
        while not state.is_terminal():
            prompt = format_prompt(state, state.current_player(), "direct")
            ids = tok(prompt, return_tensors="pt")
            out = model.generate(**ids, max_new_tokens=params.max_new_tokens, do_sample=True,
                                 stop_strings=["}"], tokenizer=tok, pad_token_id=tok.pad_token_id)
            new = out[0, ids["input_ids"].shape[1]:]
            tokens += len(new)
            action = _parse(agent, tok.decode(new, skip_special_tokens=True), state)
            if not isinstance(action, str):
                break
            state.apply_action(action)
    return n, tokens


def time_rollouts(model, tok, games: int) -> None:
    params = SamplingParams(max_new_tokens=8)
    agent = LMAgent(Sampler(model, tok), "direct", params)
    for name in ("kuhn_poker", "tictactoe"):
        game = load_game(name)
        t0 = time.perf_counter()
        eps = play_episodes(game, lambda i: [agent, agent], games, seed=0)
        dt = time.perf_counter() - t0
        toks = sum(len(t.completion_ids) for e in eps for t in e.turns)
        n_anchor = max(4, games // 8)
        t0 = time.perf_counter()
        _, a_toks = anchor_rollouts(model, tok, game, n_anchor, params, agent)
        adt = time.perf_counter() - t0
        print(f"{name:11s} batched: {games / dt:7.1f} episodes/s {toks / dt:8.1f} tok/s | "
              f"generate per turn: {n_anchor / adt:6.2f} episodes/s {a_toks / adt:6.1f} tok/s | "
              f"ratio {games / dt / (n_anchor / adt):5.1f}x")


def time_update(model, tok, games: int) -> None:
    cfg = spiral.Config(episodes=games)
    agent = LMAgent(Sampler(model, tok), "direct", SamplingParams(max_new_tokens=8))
    eps = play_episodes(load_game("kuhn_poker"), lambda i: [agent, agent], games, seed=1)
    from spkit.rl.advantages import RoleBaseline

    pairs = [(t, a) for t, a in spiral.rae_advantages(eps, RoleBaseline(0.95)) if a != 0]
    m1 = copy.deepcopy(model)
    opt = torch.optim.Adam(m1.parameters(), lr=1e-5)
    t0 = time.perf_counter()
    stats = spiral.update(m1, opt, pairs, cfg)
    dt = time.perf_counter() - t0

    m2 = copy.deepcopy(model)
    opt2 = torch.optim.Adam(m2.parameters(), lr=1e-5)
    t0 = time.perf_counter()
    m2.train()
    opt2.zero_grad()
    P, C = [t.prompt_ids for t, _ in pairs], [t.completion_ids for t, _ in pairs]
    T = max(len(c) for c in C)
    lps = token_logprobs(m2, P, C)
    logp = torch.stack([torch.nn.functional.pad(x, (0, T - len(x))) for x in lps])
    old = pad_right([t.old_logprobs for t, _ in pairs], T)
    mask = pad_right([[1.0] * len(c) for c in C], T)
    ppo_clip_loss(logp, old, torch.tensor([a for _, a in pairs]), mask).backward()
    opt2.step()
    adt = time.perf_counter() - t0
    print(f"update ({len(pairs)} turns -> {int(stats['rows'])} merged rows): {dt:.2f} s | "
          f"plain PPO step on every turn: {adt:.2f} s | ratio {adt / dt:.1f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="spkit-tiny")
    p.add_argument("--games", type=int, default=64, help="games per batched rollout / update")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, device="cpu")
    print(f"model {args.model}: {sum(x.numel() for x in model.parameters()) / 1e6:.2f}M params, "
          f"torch threads {torch.get_num_threads()}")
    time_rollouts(model, tok, args.games)
    time_update(model, tok, args.games)


if __name__ == "__main__":
    main()
