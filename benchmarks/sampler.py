"""Sampler speed against `model.generate`, measured in one run on the same model and prompts.

    python benchmarks/sampler.py [--batch 64] [--new 64] [--repeats 2] [--threads 1] [--model M]

Two workloads, both sampling at temperature 1 with `max_new_tokens` new tokens per row:
  (i)  `--batch` unrelated prompts of different lengths;
  (ii) `--batch` game prompts that share a long rules prefix (Kuhn Poker states through
       `spkit.games.prompts.format_prompt`, as SPIRAL rollouts see them).
Model: the embedded spkit-tiny if present, else a random-init Llama of spkit-tiny's shape
(vocab 2048, hidden 256, 6 layers, 8 heads, MLP 688; 5.9M parameters) with a 2048-token BPE
trained on game text. Each side runs `--repeats` times (alternating) after a warm-up; the best
time counts. tokens/s counts generated tokens up to and including EOS (both sides stop a row
at EOS). The machine's matmul FLOP/s (512x512 fp32, same thread count) is measured too; MFU
is the FLOPs each side actually computes (weight matmuls of the tokens it runs, with
generate's padding and finished rows, plus attention) per second over that peak. The sampler
wins by computing less, not by computing faster: compare its tokens/s, not its MFU.
Both sides run on `--threads` threads (default 1: on a shared machine a contended second
OpenMP thread can slow every op many times over, which would measure the neighbours).
The last line is `ratio_unrelated=X ratio_shared_prefix=Y` (our tokens/s over generate's).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from spkit.generation import Sampler
from spkit.sampling import SamplingParams

ROOT = Path(__file__).resolve().parents[1]
_WORDS = ("the a game player card bet check fold call pot chip board move win lose draw think "
          "answer question apples three seven sum total first then because so we have each more "
          "number count step result left right cell mark row column value equals plus minus")
WORDS = _WORDS.split()


def load(seed: int, which: str = "auto"):
    """spkit-tiny if shipped (or asked for), else a random Llama of spkit-tiny's design shape."""
    tiny = (ROOT / "assets/models/spkit-tiny/config.json").exists()
    if which == "spkit-tiny" or (which == "auto" and tiny):
        from spkit.models import load_model

        return (*load_model("spkit-tiny"), "spkit-tiny")
    from transformers import LlamaConfig, LlamaForCausalLM

    from spkit.tokenizer import train_bpe

    rng = random.Random(seed)
    texts = game_prompts(200, seed) + [unrelated_prompt(rng) for _ in range(400)]
    tok = train_bpe(texts, vocab_size=2048)
    cfg = LlamaConfig(vocab_size=2048, hidden_size=256, intermediate_size=688,
                      num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=8,
                      max_position_embeddings=1024, tie_word_embeddings=False,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok, "random-init Llama (spkit-tiny shape)"


def unrelated_prompt(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40))) + "."


def game_prompts(n: int, seed: int) -> list[str]:
    """Kuhn Poker prompts from random play (both seats, all cards, all betting histories)."""
    try:
        from spkit.games import load_game
        from spkit.games.prompts import format_prompt
    except ImportError:  # games not available: a synthetic shared rules prefix
        rng = random.Random(seed)
        rules = "Rules: " + " ".join(rng.choice(WORDS) for _ in range(120)) + "\n"
        return [rules + unrelated_prompt(rng) for _ in range(n)]
    rng, game, out = random.Random(seed), load_game("kuhn_poker"), []
    while len(out) < n:
        s = game.new_initial_state(rng.randrange(10**6))
        while not s.is_terminal() and len(out) < n:
            if s.is_chance_node():
                s.sample_chance(rng)
                continue
            out.append(format_prompt(s, s.current_player()))
            s.apply_action(rng.choice(s.legal_actions()))
    return out


def matmul_flops(n: int = 512, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best


def body_and_head_flops(model) -> tuple[int, int]:
    """FLOPs per token of the decoder body's matmuls and of the LM head (2 per weight)."""
    head = model.get_output_embeddings().weight.numel()
    body = sum(p.numel() for n, p in model.named_parameters()
               if p.dim() == 2 and "embed_tokens" not in n) - head
    return 2 * body, 2 * head


def attn_flops(model, pairs: int) -> int:
    """QK and PV matmuls: 4 * hidden FLOPs per (query, key) pair per layer."""
    return 4 * model.config.num_hidden_layers * model.config.hidden_size * pairs


def generate_flops(model, plens: list[int], glens: list[int]) -> float:
    """What `model.generate` computes: every row padded to the longest prompt, every step."""
    body, head = body_and_head_flops(model)
    B, S, T = len(plens), max(plens), max(glens)
    pairs = B * (S * (S + 1) // 2 + sum(S + t for t in range(1, T)))
    return body * B * (S + T - 1) + head * B * T + attn_flops(model, pairs)


def sampler_flops(model, tok, prompts: list[str], glens: list[int]) -> float:
    """What spkit's sampler computes: prefix once, unique suffixes packed, live rows only."""
    from spkit.sampling import plan_layout

    body, head = body_and_head_flops(model)
    lay = plan_layout([tok(p)["input_ids"] for p in prompts])
    P, S0 = len(lay.prefix), max(len(s) for s in lay.suffixes)
    n_suffix = sum(len(s) for s in lay.suffixes)
    pairs = P * (P + 1) // 2 + sum(len(s) * P + len(s) * (len(s) + 1) // 2 for s in lay.suffixes)
    pairs += sum(P + S0 + t for g in glens for t in range(1, g))
    fed = P + n_suffix + sum(g - 1 for g in glens)
    return body * fed + head * (len(lay.suffixes) + sum(g - 1 for g in glens)) + attn_flops(
        model, pairs)


def run_generate(model, tok, prompts, n_new, seed) -> tuple[float, int, list[int]]:
    enc = tok(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(seed)
    t = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             max_new_tokens=n_new)
    dt = time.perf_counter() - t
    gen = out[:, enc.input_ids.shape[1]:]
    eos = tok.eos_token_id
    lens = [row.index(eos) + 1 if eos in row else len(row) for row in gen.tolist()]
    return dt, sum(lens), lens


def run_sampler(sampler, prompts, n_new, seed) -> tuple[float, int, list[int]]:
    t = time.perf_counter()
    outs = sampler.generate(prompts, SamplingParams(max_new_tokens=n_new), seed=seed)
    dt = time.perf_counter() - t
    lens = [len(o.token_ids) for o in outs]
    return dt, sum(lens), lens


def bench(name, model, tok, sampler, prompts, n_new, repeats, peak) -> float:
    run_sampler(sampler, prompts[:8], 4, 0)  # warm-up both paths
    run_generate(model, tok, prompts[:8], 4, 0)
    best_g, best_s = (float("inf"), 0, []), (float("inf"), 0, [])
    for r in range(repeats):
        best_g = min(best_g, run_generate(model, tok, prompts, n_new, r))
        best_s = min(best_s, run_sampler(sampler, prompts, n_new, r))
    plens = [len(tok(p)["input_ids"]) for p in prompts]
    tps_g, tps_s = best_g[1] / best_g[0], best_s[1] / best_s[0]
    fg = generate_flops(model, plens, best_g[2]) / best_g[0]
    fs = sampler_flops(model, tok, prompts, best_s[2]) / best_s[0]
    print(f"[{name}] {len(prompts)} prompts, prompt tokens {min(plens)}-{max(plens)} "
          f"(total {sum(plens)}), up to {n_new} new tokens")
    print(f"  model.generate : {best_g[1]:5d} tokens in {best_g[0]:.2f}s = {tps_g:7.0f} tok/s"
          f"  ({fg / 1e9:5.1f} GFLOP/s computed, MFU {fg / peak:.0%})")
    print(f"  spkit Sampler  : {best_s[1]:5d} tokens in {best_s[0]:.2f}s = {tps_s:7.0f} tok/s"
          f"  ({fs / 1e9:5.1f} GFLOP/s computed, MFU {fs / peak:.0%})")
    return tps_s / tps_g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both sides (0 = torch's default); 1 is steadiest "
                         "on a shared machine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", choices=["auto", "spkit-tiny", "random"], default="auto",
                    help="auto: spkit-tiny if shipped, else the random 5.9M Llama")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok, label = load(args.seed, args.model)
    sampler = Sampler(model, tok)
    peak = matmul_flops()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {label}, {n_params / 1e6:.2f}M params; torch threads {torch.get_num_threads()}; "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s (512x512 fp32)")
    rng = random.Random(args.seed)
    unrelated = [unrelated_prompt(rng) for _ in range(args.batch)]
    shared = game_prompts(args.batch, args.seed + 1)
    r1 = bench("unrelated", model, tok, sampler, unrelated, args.new, args.repeats, peak)
    r2 = bench("shared prefix", model, tok, sampler, shared, args.new, args.repeats, peak)
    print(f"ratio_unrelated={r1:.2f} ratio_shared_prefix={r2:.2f}")


if __name__ == "__main__":
    main()
