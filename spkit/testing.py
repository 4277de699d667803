"""Tiny random models for tests: the same code paths as spkit-tiny, built in well under a second.

Tests that check *mechanics* (sampler equals `generate`, log-probs, resume, losses) use these;
tests that need a model that plays games use the embedded spkit-tiny.
"""

from __future__ import annotations

import functools

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from spkit.tokenizer import train_bpe

_SAMPLE_TEXT = [
    "You are player 0 in Kuhn Poker. Your card: K. Legal moves: check, bet. \\boxed{bet}",
    "Question: Tom has 3 apples and buys 4 more. How many apples? Answer: 3 + 4 = 7\n#### 7",
    "TicTacToe board:\n X | O | . \n . | X | . \n . | . | O \nLegal moves: 2, 3, 5, 6, 7",
    "Write one sentence in lowercase letters only. the sun is warm today.",
    "0123456789 +-*/=(){}[]<>.,;:!?'\"#$%&@^_`|~\\",
]


@functools.lru_cache(maxsize=4)
def tiny_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a few lines (cached: tests share one)."""
    return train_bpe(_SAMPLE_TEXT * 4, vocab_size=vocab_size)


def tiny_random_model(
    seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4, vocab_size: int = 300
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A randomly initialised Llama (~100K params) and a matching tokenizer, in eval mode."""
    tok = tiny_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


# ---- trainer checks shared by the test files of every algorithm

TIMING_KEYS = ("train/wall_seconds", "train/seconds_per_step", "train/rollout_seconds")


def untimed(history) -> list[dict]:
    """A History's rows without the wall-clock columns (the only ones a seed does not fix)."""
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history.rows]


def check_seed_and_resume(train, cfg, out, steps: int = 2):
    """Assert what every trainer promises: the same seed gives the same rows, and a run stopped
    after `steps` − 1 steps and resumed ends with the straight run's last row and byte-equal
    final weights. `cfg` is the trainer's Config (its `steps`/`out` are set here); `out` a
    directory for the three runs. Returns the straight run's History for further checks."""
    import dataclasses
    from pathlib import Path

    from safetensors.torch import load_file

    out = Path(out)
    a = train(dataclasses.replace(cfg, steps=steps, out=str(out / "a")))
    b = train(dataclasses.replace(cfg, steps=steps, out=str(out / "b")))
    assert untimed(a) == untimed(b), "same seed, different numbers"
    train(dataclasses.replace(cfg, steps=steps - 1, out=str(out / "c")))
    c = train(dataclasses.replace(cfg, steps=steps, out=str(out / "c"), resume=True))
    assert untimed(c)[-1] == untimed(a)[-1], "the resumed run's last row differs from the straight run's"
    wa, wc = load_file(str(a.final_dir / "model.safetensors")), load_file(str(c.final_dir / "model.safetensors"))
    assert all(torch.equal(wa[k], wc[k]) for k in wa), "the resumed run's final weights differ"
    return a
