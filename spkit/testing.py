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
