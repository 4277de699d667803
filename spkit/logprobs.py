"""Log-probabilities of given completions under a model: the quantity every loss is built on.

    lp = token_logprobs(model, prompt_ids, completion_ids)   # list of (len_i,) tensors
    scores = score_continuations(model, tok, prompt, ["bet}", "check}"])  # (2,) summed

`token_logprobs` is differentiable when grad is enabled (PPO/GRPO/DPO losses call it inside
the training step) and returns exactly what `Sampler` reports as `Completion.logprobs` (the
untempered log-softmax), so importance ratios start at 1 for on-policy data.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch

from spkit.errors import SpkitError
from spkit.models import is_sharded

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def token_logprobs(
    model: PreTrainedModel,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    batch_size: int | None = None,
    temperature: float = 1.0,
) -> list[torch.Tensor]:
    """log p(completion_ids[i][t] | prompt_ids[i] + completion_ids[i][:t]) for every i, t.

    `temperature` ≠ 1 scores under softmax(logits / T), the distribution a rollout at T samples
    from (what PPO ratios need; oat and TRL divide the logits the same way).

    One forward per batch of right-padded sequences [prompt][completion][pad] with an
    attention mask (positions count from 0 in every row, so no position ids are needed).
    Returns one float32 tensor of shape (len(completion_ids[i]),) per row, on the model's
    device. `batch_size` bounds memory (default: all rows at once).
    """
    if len(prompt_ids) != len(completion_ids):
        raise SpkitError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    if any(len(p) == 0 for p in prompt_ids):
        raise SpkitError("every prompt needs at least one token (e.g. BOS) to score from")
    vocab = model.get_input_embeddings().num_embeddings
    top = max((max(x) for x in [*prompt_ids, *completion_ids] if len(x)), default=0)
    if top >= vocab:
        raise SpkitError(f"token id {top} is outside the model's vocabulary of {vocab}")
    n = len(prompt_ids)
    bs = batch_size or max(n, 1)
    out: list[torch.Tensor] = []
    for i in range(0, n, bs):
        out.extend(_batch_logprobs(model, prompt_ids[i:i + bs], completion_ids[i:i + bs], temperature))
    return out


def _tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 logits divided by T (unchanged, not even copied, at T = 1)."""
    return logits.float() if temperature == 1.0 else logits.float() / temperature


def _batch_logprobs(model, prompt_ids, completion_ids, temperature: float = 1.0) -> list[torch.Tensor]:
    dev = next(model.parameters()).device
    lens = [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    if max(len(c) for c in completion_ids) == 0:
        return [torch.zeros(0, device=dev) for _ in completion_ids]
    L = max(lens)
    ids = torch.zeros(len(lens), L, dtype=torch.long)
    mask = torch.zeros(len(lens), L, dtype=torch.long)
    rows, cols, targets = [], [], []
    for r, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        ids[r, : lens[r]] = torch.tensor(list(p) + list(c))
        mask[r, : lens[r]] = 1
        rows += [r] * len(c)
        cols += range(len(p) - 1, len(p) + len(c) - 1)  # position t predicts token t + 1
        targets += list(c)
    logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False).logits
    picked = logits[torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)]  # (N, V)
    lp = torch.log_softmax(_tempered(picked, temperature), dim=-1)
    lp = lp.gather(1, torch.tensor(targets, device=dev)[:, None]).squeeze(1)  # (N,)
    return list(lp.split([len(c) for c in completion_ids]))


def score_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    continuations: list[str],
) -> torch.Tensor:
    """Summed log p(continuation | prompt) for each continuation: a (len(continuations),) tensor.

    Used by direct-mode game policies, p(action + "}" | prompt ending in "\\boxed{"). The prompt
    is tokenized on its own (with the tokenizer's usual special tokens, as `Sampler` does) and
    each continuation on its own without special tokens; the ids are concatenated. This makes
    the prompt's tokens identical for every continuation, so scores compare fairly; it differs
    from lm-eval only where a BPE merge would cross the prompt/continuation boundary.
    """
    p = tokenizer(prompt)["input_ids"]
    if not p:
        start = tokenizer.bos_token_id
        p = [start if start is not None else tokenizer.eos_token_id]
    conts = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    if not continuations:
        return torch.zeros(0)
    lps = token_logprobs(model, [p] * len(conts), conts)
    return torch.stack([x.sum() for x in lps])


def shared_prefix_logprobs(
    model, prompt_ids: list[list[int]], completion_ids: list[list[int]], min_prefix: int = 16,
    temperature: float = 1.0,
) -> list[torch.Tensor]:
    """Differentiable per-token log-probs of completions, like `token_logprobs`,
    but the longest token prefix shared by all prompts (a game's rules paragraph: ~70% of a
    Kuhn Poker prompt) is run once, with gradient, and its keys/values are broadcast to every
    row. Same numbers and gradients as the plain forward (tested), ~3x less compute on turns.

    Falls back to `token_logprobs` for models without a `DynamicCache` forward, short prefixes
    and FSDP2-sharded models (`--fsdp`: FSDP frees a block's gathered weights after each forward,
    and the gradient flowing back through the cached keys/values would reach a forward whose
    weights it no longer holds). `temperature` as in `token_logprobs`.
    """
    from spkit.sampling import plan_layout

    P = len(plan_layout(prompt_ids).prefix)
    if len(prompt_ids) < 2 or P < min_prefix or is_sharded(model):  # noqa: SIM300 (reads as "prefix too short")
        return token_logprobs(model, prompt_ids, completion_ids, temperature=temperature)
    dev = next(model.parameters()).device
    cache, kw = _new_cache(model)
    prefix = torch.tensor([prompt_ids[0][:P]], device=dev)  # (1, P)
    model(input_ids=prefix, use_cache=True, **{kw: cache})
    B = len(prompt_ids)
    cache.batch_repeat_interleave(B)  # (B, heads, P, d) views of one computation
    rows = [list(p[P:]) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    S = max(len(r) for r in rows)
    ids = torch.zeros(B, S, dtype=torch.long)
    mask = torch.zeros(B, P + S, dtype=torch.long)
    mask[:, :P] = 1
    for b, r in enumerate(rows):  # right padding: [prefix][suffix + completion][pad]
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, P: P + len(r)] = 1
    pos = (P + torch.arange(S))[None].expand(B, S)
    logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                   use_cache=True, **{kw: cache}).logits  # (B, S, V)
    out = []
    for b, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        start = len(p) - P - 1  # the position that predicts the first completion token
        lp = torch.log_softmax(_tempered(logits[b, start: start + len(c)], temperature), -1)  # (len_c, V)
        out.append(lp.gather(1, torch.tensor(c, device=dev)[:, None]).squeeze(1))
    return out


def _new_cache(model):
    """An empty `DynamicCache` and the forward's keyword for it (`cache` or `past_key_values`)."""
    from transformers import DynamicCache

    try:
        cache = DynamicCache(config=model.config)
    except TypeError:
        cache = DynamicCache()
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return cache, kw


def repeated_prompt_logprobs(
    model, prompt_ids: list[list[int]], completion_ids: list[list[int]], temperature: float = 1.0
) -> list[torch.Tensor]:
    """Differentiable per-token log-probs of completions, like `token_logprobs`, but each distinct
    prompt is run once: K samples of one problem (GRPO's group, RFT's kept answers) share a single
    pass over the prompt, with gradient, whose keys/values are selected for each of its rows.
    Same numbers and gradients as the plain forward (tested); the prompt costs 1/K of the compute.

    Each distinct prompt but its last token is one right-padded row of the first pass; the
    second pass runs [last prompt token][completion][pad] for every row, attending to its own
    prompt's keys (the padding of the first pass is masked), positions continuing its prompt.
    Falls back to `token_logprobs` where no prompt repeats, a prompt has a single token, or the
    model is FSDP2-sharded (see `shared_prefix_logprobs`). `temperature` as in `token_logprobs`.
    """
    uniq: dict[tuple[int, ...], int] = {}
    which = [uniq.setdefault(tuple(p), len(uniq)) for p in prompt_ids]
    if (len(uniq) == len(prompt_ids) or min(len(p) for p in prompt_ids) < 2 or not any(completion_ids)
            or is_sharded(model)):
        return token_logprobs(model, prompt_ids, completion_ids, temperature=temperature)
    dev = next(model.parameters()).device
    heads = [list(p[:-1]) for p in uniq]
    Pm = max(len(h) for h in heads)
    ids = torch.zeros(len(heads), Pm, dtype=torch.long)
    head_mask = torch.zeros(len(heads), Pm, dtype=torch.long)
    for g, h in enumerate(heads):
        ids[g, : len(h)] = torch.tensor(h)
        head_mask[g, : len(h)] = 1
    cache, kw = _new_cache(model)
    model(input_ids=ids.to(dev), attention_mask=head_mask.to(dev), use_cache=True, **{kw: cache})
    index = torch.tensor(which, device=dev)
    cache.batch_select_indices(index)  # (B, heads, Pm, d): each row its own prompt's keys/values
    rows = [[p[-1], *c] for p, c in zip(prompt_ids, completion_ids, strict=True)]
    B, S = len(rows), max(len(r) for r in rows)
    ids = torch.zeros(B, S, dtype=torch.long)
    mask = torch.cat([head_mask[index.cpu()], torch.zeros(B, S, dtype=torch.long)], 1)  # (B, Pm + S)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, Pm: Pm + len(r)] = 1
    pos = torch.tensor([len(p) - 1 for p in prompt_ids])[:, None] + torch.arange(S)[None]  # (B, S)
    logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                   use_cache=True, **{kw: cache}).logits  # (B, S, V)
    out = []
    for b, c in enumerate(completion_ids):  # position t (0 = the last prompt token) predicts c[t]
        lp = torch.log_softmax(_tempered(logits[b, : len(c)], temperature), -1)
        out.append(lp.gather(1, torch.tensor(list(c), device=dev)[:, None]).squeeze(1))
    return out


def pad_right(rows, T: int | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Variable-length rows (per-token log-probs, a turn's sampled log-probs, ...) as one (B, T)
    tensor, zero-padded on the right; `T` defaults to the longest row. Every loss takes its
    inputs in this layout, with `pad_right([[1.0] * len(r) for r in rows], T)` as the mask."""
    rows = [torch.as_tensor(r, dtype=dtype) for r in rows]
    T = max((len(r) for r in rows), default=0) if T is None else T
    if not rows:
        return torch.zeros(0, T)
    return torch.stack([torch.nn.functional.pad(r, (0, T - len(r))) for r in rows])
