"""`spkit pretrain`: build the embedded model spkit-tiny from nothing, on a laptop CPU.

nanoGPT-style: the whole recipe in one file. Steps:
1. generate a synthetic corpus (`spkit.corpus`): game transcripts in the exact prompt formats
   of `spkit.games.prompts`, step-by-step arithmetic ending in `#### answer`, short
   instructions with checkable constraints;
2. train a byte-level BPE tokenizer on it (`spkit.tokenizer`);
3. pack the tokenised documents into fixed-length rows and train a small Llama
   (`transformers.LlamaForCausalLM`) with AdamW, warmup + cosine decay;
4. `save_pretrained` the model and tokenizer (safetensors) with its loss curve.

The result loads with plain `AutoModelForCausalLM` / `AutoTokenizer`. The model card's ability
numbers are measured separately by `spkit card` (see `spkit/card.py`).

Run:  spkit pretrain --out assets/models/spkit-tiny --seed 0        (15 min on 2 CPU cores)
      spkit pretrain --out /tmp/tiny --steps 20 --docs 2000         (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from spkit import corpus
from spkit.tokenizer import train_bpe
from spkit.train_utils import ensure_writable_dir, plot_metrics, progress, seed_everything


@dataclass
class PretrainConfig:
    seed: int = 0  # one seed drives corpus, tokenizer, init and batch order
    docs: int = 60_000  # synthetic documents generated (~6M tokens; training sees ~4M)
    vocab_size: int = 2048  # BPE vocabulary (byte-level: every string encodes)
    hidden: int = 192  # model width
    layers: int = 6  # transformer blocks
    heads: int = 6  # attention heads (head dim = hidden / heads = 32)
    intermediate: int = 512  # SwiGLU MLP width
    context: int = 1024  # max positions (prompts + completions fit in 512)
    seq_len: int = 384  # packed training row length
    batch: int = 16  # rows per step
    steps: int = 700  # optimizer steps
    lr: float = 3e-3  # peak learning rate (small models like large lrs)
    warmup: int = 30  # linear warmup steps
    weight_decay: float = 0.1  # AdamW decoupled weight decay
    threads: int = 0  # torch threads (0 = torch's default: all cores)


def model_config(cfg: PretrainConfig, tok):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.context,
        rope_theta=10000.0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )


def pack(docs: list[str], tok, seq_len: int) -> torch.Tensor:
    """Concatenate `doc + EOS` token streams and cut into rows of `seq_len` (nanoGPT packing)."""
    ids: list[int] = []
    for enc in tok(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(tok.eos_token_id)
    n_rows = len(ids) // seq_len
    return torch.tensor(ids[: n_rows * seq_len], dtype=torch.long).view(n_rows, seq_len)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def pretrain(cfg: PretrainConfig, out: str | Path) -> dict:
    """Run the whole recipe; returns a summary dict (also written to `out/pretrain.json`)."""
    from transformers import LlamaForCausalLM

    out = ensure_writable_dir(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    t0 = time.time()
    docs = corpus.build(cfg.docs, seed=cfg.seed)
    tok = train_bpe(docs, vocab_size=cfg.vocab_size)
    data = pack(docs, tok, cfg.seq_len)  # (rows, seq_len)
    model = LlamaForCausalLM(model_config(cfg, tok))
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    model.train()
    bar = progress(range(cfg.steps), desc="pretrain")
    for step in bar:
        rows = torch.randint(0, data.shape[0], (cfg.batch,), generator=gen)
        x = data[rows]  # (B, T)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = model(input_ids=x, labels=x).loss  # next-token cross-entropy
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append({"step": step, "train/loss": loss.item(), "train/lr": lr_at(step, cfg)})
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    summary = {
        "config": asdict(cfg),
        "params": n_params,
        "corpus_docs": len(docs),
        "corpus_tokens": int(data.numel()),
        "tokens_seen": cfg.steps * cfg.batch * cfg.seq_len,
        "final_loss": sum(h["train/loss"] for h in history[-20:]) / min(20, len(history)),
        "seconds": round(time.time() - t0, 1),
        "corpus_mix": corpus.counts(len(docs)),
    }
    (out / "pretrain.json").write_text(json.dumps(summary, indent=2))
    with open(out / "loss.csv", "w") as f:
        f.write("step,train/loss,train/lr\n")
        f.writelines(f"{h['step']},{h['train/loss']:.5f},{h['train/lr']:.6g}\n" for h in history)
    plot_metrics(history, ["train/loss"], out / "loss.png", title="spkit-tiny pretraining")
    return summary


# ---- CLI -------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    from spkit.cli import add_common_arguments

    add_common_arguments(p, model=False, out="runs/pretrain")
    defaults = PretrainConfig()
    p.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps")
    p.add_argument("--docs", type=int, default=defaults.docs, help="synthetic documents")
    p.add_argument("--batch", type=int, default=defaults.batch, help="rows per step")
    p.add_argument("--hidden", type=int, default=defaults.hidden, help="model width")
    p.add_argument("--layers", type=int, default=defaults.layers, help="transformer blocks")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")


def main(args: argparse.Namespace) -> int:
    cfg = PretrainConfig(
        seed=args.seed, steps=args.steps, docs=args.docs, batch=args.batch,
        hidden=args.hidden, layers=args.layers, threads=args.threads,
    )
    if cfg.hidden != PretrainConfig.hidden:  # keep the head dimension at 32
        cfg.heads = max(1, cfg.hidden // 32)
    s = pretrain(cfg, args.out)
    print(f"saved {s['params'] / 1e6:.2f}M-param model to {args.out}: "
          f"final loss {s['final_loss']:.3f} after {cfg.steps} steps in {s['seconds']:.0f}s "
          f"(loss curve: {Path(args.out) / 'loss.png'}; measure it with `spkit card --model {args.out}`)")
    return 0
