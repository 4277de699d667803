"""`spkit pretrain`: build the embedded model spkit-tiny from nothing, on a laptop CPU.

nanoGPT-style: the whole recipe in one file. Steps:
1. generate a synthetic corpus (`spkit.corpus`): game transcripts in the exact prompt formats
   of `spkit.games.prompts`, step-by-step arithmetic ending in `#### answer`, short
   instructions with checkable constraints;
2. train a byte-level BPE tokenizer on it (`spkit.tokenizer`);
3. pack the tokenised documents into fixed-length rows and train a small Llama
   (`transformers.LlamaForCausalLM`) with AdamW, warmup + cosine decay;
4. `save_pretrained` the model and tokenizer (safetensors) with its loss curve.
The run (seeds, checkpoints and exact `--resume`, the time budget, logs) is `spkit.run.Run`, as
for every trainer; `--export DIR` copies the final model where it is used.

The result loads with plain `AutoModelForCausalLM` / `AutoTokenizer`. The model card's ability
numbers are measured separately by `spkit card` (see `spkit/card.py`).

Run:  spkit pretrain --seed 0 --export assets/models/spkit-tiny     (15 min on 2 CPU cores)
      spkit pretrain --out runs/tiny --steps 20 --docs 2000         (a smoke run)
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from spkit import corpus
from spkit.config import as_json, param
from spkit.models import inference_model
from spkit.run import History, Run, RunConfig
from spkit.seeding import derive_seed
from spkit.tokenizer import train_bpe


@dataclass
class Config(RunConfig):
    seed: int = param(0, "one seed drives corpus, tokenizer, initialisation and batch order")
    steps: int = param(700, "optimizer steps", ge=1, identity=False)
    docs: int = param(60_000, "synthetic documents generated (~6M tokens; training sees ~4M)", ge=1)
    vocab_size: int = param(2048, "BPE vocabulary (byte-level: every string encodes)", ge=300)
    hidden: int = param(192, "model width (a multiple of 32: the head dimension)", ge=32)
    layers: int = param(6, "transformer blocks", ge=1)
    intermediate: int = param(512, "SwiGLU MLP width", ge=1)
    context: int = param(1024, "max positions (prompts + completions fit in 512)", ge=16)
    seq_len: int = param(384, "packed training row length", ge=8)
    batch: int = param(16, "rows per step", ge=1)
    lr: float = param(3e-3, "peak learning rate (small models like large ones)", gt=0)
    warmup: int = param(30, "linear warmup steps", ge=0)
    weight_decay: float = param(0.1, "AdamW decoupled weight decay", ge=0)
    eval_every: int = param(0, "every k steps (and at the start and end), the loss on held-out documents "
                            "(a fresh corpus draw); 0 = none", ge=0, identity=False)
    checkpoint_every: int = param(100, "save a resumable checkpoint every k steps (and at the end)", ge=1,
                                  identity=False)
    export: str = param("", "also copy the final model (and its loss curve) into this directory", identity=False)

    @property
    def heads(self) -> int:
        return max(1, self.hidden // 32)  # head dimension 32


def model_config(cfg: Config, tok):
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


def lr_at(step: int, cfg: Config) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


class BatchOrder:
    """The generator that draws each step's rows: saved with checkpoints, so a resumed run draws
    the same batches as a straight one."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(torch.tensor(state["gen"], dtype=torch.uint8))


def train(cfg: Config, callback=None) -> History:
    """Run the whole recipe; the final model (with `pretrain.json`, `loss.csv`, `loss.png`) is in
    `history.final_dir` (and in `cfg.export` when given)."""
    from transformers import LlamaForCausalLM

    run = Run(cfg, "pretrain", callback, plot_keys=["train/loss", "eval/loss"])
    t0 = time.time()
    docs = corpus.build(cfg.docs, seed=cfg.seed)  # 1
    tok = train_bpe(docs, vocab_size=cfg.vocab_size)  # 2
    data = pack(docs, tok, cfg.seq_len)  # 3: (rows, seq_len)
    model = LlamaForCausalLM(model_config(cfg, tok))
    model.generation_config.pad_token_id = tok.pad_token_id
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95),
    )
    order = BatchOrder(cfg.seed)
    run.track(model=model, tokenizer=tok, optimizer=opt, batches=order)

    def step(t: int) -> dict[str, float]:
        x = data[torch.randint(0, data.shape[0], (cfg.batch,), generator=order.gen)]  # (B, T)
        for g in opt.param_groups:
            g["lr"] = lr_at(t, cfg)
        model.train()
        loss = model(input_ids=x, labels=x).loss  # next-token cross-entropy
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.eval()
        return {"train/loss": loss.item(), "train/lr": lr_at(t, cfg)}

    hist = run.loop(step, held_out_loss(model, tok, cfg) if cfg.eval_every > 0 else None)
    if hist.final_dir is not None:  # 4
        _write_card_inputs(cfg, hist, len(docs), int(data.numel()), sum(p.numel() for p in model.parameters()),
                           time.time() - t0)
    return hist


def held_out_loss(model, tok, cfg: Config, rows: int = 64):
    """`evaluate` for the run loop: next-token loss on documents drawn with another seed (same
    distribution, not the training rows). It draws no random numbers, so a run's training is the
    same with or without it."""
    docs = corpus.build(max(100, cfg.docs // 50), seed=derive_seed(cfg.seed, "pretrain-held-out"))
    data = pack(docs, tok, cfg.seq_len)[:rows]

    @torch.no_grad()
    def evaluate(t: int) -> dict[str, float]:
        m = inference_model(model)  # rank 0 alone: under --fsdp, the full copy
        m.eval()
        losses = [m(input_ids=x, labels=x).loss.item() * len(x) for x in data.split(cfg.batch)]
        return {"eval/loss": sum(losses) / len(data)}

    return evaluate


def _write_card_inputs(cfg: Config, hist: History, n_docs: int, n_tokens: int, n_params: int, seconds: float) -> None:
    """pretrain.json (what `spkit card` reads), loss.csv and loss.png beside the final model."""
    from spkit.run.metrics import plot_metrics

    losses = hist.series("train/loss")
    final = hist.final_dir
    summary = {
        "config": as_json(cfg) | {"heads": cfg.heads},
        "params": n_params,
        "corpus_docs": n_docs,
        "corpus_tokens": n_tokens,
        "tokens_seen": cfg.steps * cfg.batch * cfg.seq_len,
        "final_loss": sum(losses[1][-20:]) / max(1, min(20, len(losses[1]))),
        "seconds": round(seconds, 1),
        "corpus_mix": corpus.counts(n_docs),
    }
    (final / "pretrain.json").write_text(json.dumps(summary, indent=2))
    lrs = dict(zip(*hist.series("train/lr"), strict=True))
    with open(final / "loss.csv", "w") as f:
        f.write("step,train/loss,train/lr\n")
        f.writelines(f"{s - 1},{v:.5f},{lrs[s]:.6g}\n" for s, v in zip(*losses, strict=True))
    plot_metrics(hist.rows, ["train/loss"], final / "loss.png", title="spkit-tiny pretraining")
    if cfg.export:
        shutil.copytree(final, Path(cfg.export), dirs_exist_ok=True)


def summary(hist: History) -> str:
    """The line `spkit pretrain` prints at the end."""
    s = json.loads((hist.final_dir / "pretrain.json").read_text())
    return (f"{s['params'] / 1e6:.2f}M-param model: final loss {s['final_loss']:.3f} in {s['seconds']:.0f}s "
            f"(measure it with `spkit card --model {hist.final_dir}`)")
