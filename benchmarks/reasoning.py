"""GRPO on spkit-tiny: rollout samples/s and seconds per update, against `model.generate`.

    python benchmarks/reasoning.py [--problems 16] [--k 8] [--repeats 2] [--threads 1] [--model M]

One GRPO step on the arithmetic task, split in its two phases:
  rollout  `--problems` train problems × `--k` samples at temperature 1, up to 96 new tokens,
           stopping at spkit_arith's stop strings — by spkit's Sampler (what `spkit train grpo`
           runs: `spkit.algos.grpo.rollout`), and by the anchor, one `model.generate` call per
           prompt group (`num_return_sequences=k`, the same stop strings via `stop_strings`),
           on the same problems and weights;
  update   `grpo.update` on the sampled batch (log-probs, PPO-clip loss, backward, Adam step).
Each side runs `--repeats` times (alternating) after a warm-up; the best time counts. Samples/s
counts completions; tokens/s counts generated tokens (up to and including a stop). Both run on
`--threads` threads (default 1: on a shared machine a contended second thread measures the
neighbours). The last line is `ratio_rollout=X` (our samples/s over generate's) and
`seconds_per_update=Y`.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from spkit.algos import grpo
from spkit.generation import Sampler
from spkit.models import load_model
from spkit.rl import verifiable as V
from spkit.tasks import arithmetic


def generate_groups(model, tok, problems: list[dict], k: int, n_new: int, seed: int) -> tuple[float, int, int]:
    """The anchor: one `model.generate` call per problem, K samples each. (seconds, samples, tokens)"""
    torch.manual_seed(seed)
    n_tok = 0
    t = time.perf_counter()
    with torch.inference_mode():
        for p in problems:
            enc = tok(arithmetic.prompt(p["question"]), return_tensors="pt")
            out = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=n_new,
                                 num_return_sequences=k, stop_strings=list(V.EVAL_STOP), tokenizer=tok,
                                 pad_token_id=tok.pad_token_id)
            gen = out[:, enc.input_ids.shape[1]:]
            n_tok += int((gen != tok.pad_token_id).sum())
    return time.perf_counter() - t, len(problems) * k, n_tok


def sample_groups(sampler: Sampler, cfg: grpo.Config, seed: int) -> tuple[float, int, int, grpo.Batch]:
    """spkit: the trainer's own rollout (`grpo.rollout`). (seconds, samples, tokens, batch)"""
    params = V.rollout_params(cfg.new_tokens(V.ARITH), cfg.temperature)
    t = time.perf_counter()
    batch = grpo.rollout(sampler, cfg, params, seed)
    dt = time.perf_counter() - t
    return dt, batch.drawn, sum(len(c.token_ids) for c in batch.completions), batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both sides (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="spkit-tiny", help="model name or save_pretrained directory")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    model.eval()
    cfg = grpo.Config(model=args.model, problems=args.problems, k=args.k, seed=args.seed)
    sampler = Sampler(model, tok)
    problems = V.train_problems(args.problems, args.seed)
    n_new = cfg.new_tokens(V.ARITH)
    print(f"model: {args.model}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params; "
          f"torch threads {torch.get_num_threads()}; {args.problems} problems × {args.k} samples, "
          f"up to {n_new} new tokens, T = 1")

    generate_groups(model, tok, problems[:2], 2, 8, 0)  # warm-up both paths
    sample_groups(sampler, grpo.Config(problems=2, k=2, max_new_tokens=8), 0)
    best_g, best_s, batch = (float("inf"), 0, 0), (float("inf"), 0, 0), None
    for r in range(args.repeats):
        best_g = min(best_g, generate_groups(model, tok, problems, args.k, n_new, r))
        *timing, b = sample_groups(sampler, cfg, r)
        if tuple(timing) < best_s:
            best_s, batch = tuple(timing), b
    sps_g, sps_s = best_g[1] / best_g[0], best_s[1] / best_s[0]
    print(f"  rollout, model.generate per group : {best_g[1]:4d} samples, {best_g[2]:6d} tokens in "
          f"{best_g[0]:6.2f}s = {sps_g:6.1f} samples/s, {best_g[2] / best_g[0]:7.0f} tok/s")
    print(f"  rollout, spkit Sampler (grpo)     : {best_s[1]:4d} samples, {best_s[2]:6d} tokens in "
          f"{best_s[0]:6.2f}s = {sps_s:6.1f} samples/s, {best_s[2] / best_s[0]:7.0f} tok/s")

    learner = copy.deepcopy(model)  # the update changes weights: keep the rollout model as it was
    optimizer = torch.optim.Adam(learner.parameters(), lr=cfg.lr)
    grpo.update(learner, optimizer, batch, cfg)  # warm-up (Adam state, autograd buffers)
    best_u = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        grpo.update(learner, optimizer, batch, cfg)
        best_u = min(best_u, time.perf_counter() - t)
    n_tok = sum(len(c.token_ids) for c in batch.completions)
    print(f"  update (grpo.update, {len(batch.completions)} completions, {n_tok} tokens): {best_u:.2f}s; "
          f"one step = {best_s[0] + best_u:.2f}s, rollout share {best_s[0] / (best_s[0] + best_u):.0%}")
    print(f"ratio_rollout={sps_s / sps_g:.2f} seconds_per_update={best_u:.2f}")


if __name__ == "__main__":
    main()
