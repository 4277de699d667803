"""Train spkit's own small byte-level BPE tokenizer (the `tokenizers` library).

Byte-level means every string is encodable (no <unk>), which matters for a model that must read
arbitrary game text and for parsers fuzzed with unicode. The result is a plain
`PreTrainedTokenizerFast` that `AutoTokenizer.from_pretrained` loads without spkit.

Special tokens: `<|endoftext|>` (BOS = EOS = PAD). One token for all three keeps the
vocabulary small; padding is always masked by attention so the overlap is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def train_bpe(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it for transformers."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=EOS,
        padding_side="left",  # batched generation appends on the right
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
