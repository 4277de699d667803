"""Why SPIRAL self-play of spkit-tiny does not learn TicTacToe defence: exact measurements of
models before and after self-play (the dev runs of `spiral_runs.py ttt_*`, dev seed 100).

    python assets/results/spiral_tictactoe_defence.py spkit-tiny lr3e-4=runs/results/ttt_lr3e-4_seed100 \
        lr1e-4=runs/results/ttt_lr1e-4_seed100 ent0.2=runs/results/ttt_ent0.2_seed100 \
        pool=runs/results/ttt_pool_seed100 --sft-steps 30,90,180

For each model (a name, or LABEL=RUN_DIR whose `final/` or newest checkpoint is read):
  * exact play against perfect play per seat (`spiral.tictactoe_optimal_mass`): P(not losing) of
    the sampled policy and of its greedy play, the mass on value-keeping moves at each move;
  * state dependence: over the 82 positions of the first two plies (X to move on the empty board,
    O to move after each opening, X to move after each reply), the cell the model most often
    ranks first (``favourite``), and the share of the positions where that cell is legal whose
    most probable move it is (``favourite_share``; 1.0 = the same answer whatever the board);
    ``mean_top_prob`` is the average probability of the top move;
  * coupling (``grad_cosine``): the mean pairwise cosine of the gradients of log p(9) − log p(1)
    at the 7 positions where O answers an opening on cells 2-8 (`lm_policy.gradient_similarity`).
    Near 1, a step that makes O prefer 9 over 1 in one position does it in all of them.
With ``--sft-steps 30,90,180`` it also measures whether SPIRAL's format SFT (random legal moves,
lr 1e-3, as in the dev runs) separates the positions: spkit-tiny after each cumulative number of
SFT steps (key ``format_sft``).

Writes spiral_tictactoe_defence.json here (with the CPU seconds each model took).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from spkit.algos import spiral
from spkit.games import load_game
from spkit.lm_policy import LLMPolicy, gradient_similarity
from spkit.models import load_model
from spkit.rl.selfplay import format_sft


def model_dir(arg: str) -> tuple[str, str]:
    """LABEL=RUN_DIR -> (label, the run's final/ or newest checkpoint); a bare name -> itself."""
    if "=" not in arg:
        return arg, arg
    label, run = arg.split("=", 1)
    final = Path(run) / "final"
    if final.exists():
        return label, str(final)
    ckpts = sorted((Path(run) / "checkpoints").glob("step_*"))
    if not ckpts:
        sys.exit(f"{run}: no final/ and no checkpoint")
    return label, str(ckpts[-1])


def opening_positions(game) -> list:
    """The empty board, the 9 openings (O to move) and the 72 replies (X to move)."""
    root = game.new_initial_state()
    out, frontier = [root], [root]
    for _ in range(2):
        nxt = []
        for s in frontier:
            for a in s.legal_actions():
                c = s.clone()
                c.apply_action(a)
                nxt.append(c)
        out += nxt
        frontier = nxt
    return out


def state_dependence(model, tok, game) -> dict[str, float]:
    states = opening_positions(game)
    probs = LLMPolicy(model, tok, "direct").table(states).probs
    tops = [max(p, key=p.get) for p in probs]
    fav = Counter(tops).most_common(1)[0][0]
    legal = [t for t, s in zip(tops, states, strict=True) if fav in s.legal_actions()]
    return {"favourite": fav, "favourite_share": sum(t == fav for t in legal) / len(legal),
            "mean_top_prob": sum(max(p.values()) for p in probs) / len(probs), "positions": len(states)}


def coupling(model, tok, game) -> float:
    states = []
    for a in "2345678":
        s = game.new_initial_state()
        s.apply_action(a)
        states.append(s)  # O to move; first legal move "1", last "9"
    sim = gradient_similarity(model, tok, states)
    n = len(states)
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def sft_coupling(game, checkpoints: list[int]) -> dict[str, dict]:
    """spkit-tiny after each cumulative count of format-SFT steps: coupling, state dependence."""
    model, tok = load_model("spkit-tiny", device="cpu")
    out, done = {}, 0
    for target in checkpoints:
        cfg = spiral.Config(sft_steps=target - done, sft_lr=1e-3, seed=100 + target)
        t0 = time.process_time()
        format_sft(model, tok, {"tictactoe": game}, cfg)
        done = target
        out[str(target)] = {"grad_cosine": coupling(model, tok, game), **state_dependence(model, tok, game),
                            "cpu_seconds": time.process_time() - t0}
        print("format SFT", target, {k: round(v, 3) if isinstance(v, float) else v for k, v in out[str(target)].items()})
    return out


def main() -> None:
    args = sys.argv[1:]
    sft = []
    if "--sft-steps" in args:
        i = args.index("--sft-steps")
        sft = sorted(int(x) for x in args[i + 1].split(","))
        del args[i: i + 2]
    if not args:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    game = load_game("tictactoe")
    out = {}
    for arg in args:
        label, path = model_dir(arg)
        model, tok = load_model(path, device="cpu")
        t0 = time.process_time()
        res = spiral.tictactoe_optimal_mass(model, tok) | state_dependence(model, tok, game)
        res["grad_cosine"] = coupling(model, tok, game)
        out[label] = res | {"model": path, "cpu_seconds": time.process_time() - t0}
        print(label, {k.split("tictactoe/")[-1]: (round(v, 3) if isinstance(v, float) else v)
                      for k, v in res.items() if "optimal_mass" not in k})
    if sft:
        out["format_sft"] = sft_coupling(game, sft)
    dest = Path(__file__).with_name("spiral_tictactoe_defence.json")
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", dest)


if __name__ == "__main__":
    main()
