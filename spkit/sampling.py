"""What sampling means in spkit, independent of any model: the types every sampler backend
shares (`SamplingParams`, `Completion`), the per-row random numbers, the token draw, and the
layout of a batch of prompts (shared prefix + deduplicated suffixes).

No model code lives here: `spkit.generation` (the torch `Sampler`), `spkit.engines` and
`spkit.vllm_backend` all import from this module, never the other way round.

Determinism: each row draws its randomness from its own generator, seeded from
`(seed, row index)` by `row_seed` (vLLM gets the same per-request seeds), or from a seed the
caller gives that row (`row_seeds`: a sample that must not depend on which batch, or which
data-parallel rank, it lands in, e.g. lm-eval's repeated samples), one uniform number
per generated token (inverse-CDF sampling in `sample_tokens`). So row i's sample does not depend
on the other rows of the batch except through floating-point differences in the logits (other
batch shapes may round differently; that can flip a sample only where a uniform falls within
~1e-6 of a boundary of the cumulative distribution).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from spkit.errors import SpkitError

FINISH_REASONS = ("stop", "length", "eos")


# ---- Public types --------------------------------------------------------------------------
@dataclass
class SamplingParams:
    """How to sample. The defaults are plain sampling at temperature 1."""

    max_new_tokens: int = 64  # at most this many generated tokens per completion
    temperature: float = 1.0  # 0 means greedy (argmax)
    top_p: float = 1.0  # nucleus: keep the smallest set of tokens with mass >= top_p
    top_k: int = 0  # keep the k most likely tokens (0 = all)
    stop: tuple[str, ...] = ()  # stop strings; the text is cut before the first one
    include_stop: bool = False  # keep the matched stop string at the end of `text`
    stop_after_box: bool = False  # stop at the "}" that closes a \boxed{ (depth counted; kept)
    ignore_eos: bool = False  # keep sampling after EOS (benchmarks want fixed lengths)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        self.stop = tuple(s for s in self.stop if s)
        if self.max_new_tokens < 0:
            raise SpkitError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise SpkitError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise SpkitError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise SpkitError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Completion:
    """One sampled continuation of one prompt. The conventions follow vLLM where vLLM has one:

    * `token_ids` are the sampled tokens. An EOS token that ended the completion is included
      (the policy chose to stop; RL losses must see that choice), but not in `text`.
    * `logprobs[i]` is log p(token_ids[i] | prefix) under the model's *untempered*
      distribution (softmax of the raw logits: temperature 1, no top-k/top-p truncation).
      That is the quantity PPO ratios and KL terms need, whatever temperature the rollout
      used. `sampling_logprobs[i]` is the log-probability under the distribution actually
      sampled from (after temperature, top-k, top-p); it is 0.0 for greedy decoding.
    * Stop strings: `text` is cut right before the first occurrence of a stop string (the
      stop string is excluded, as in vLLM, unless `include_stop=True`). Generation stops at
      the token whose decoding completes the stop string, and that token is the last of
      `token_ids` — so a stop string that ends in the middle of a token keeps the whole
      token: `text + stop` is a prefix of `decode(token_ids)`. Only generated text is
      searched, never the prompt. `stop_after_box` is a stop rule of its own: generation
      stops at the token that closes a ``\boxed{`` (`box_end`; a "}" inside the box, as in
      ``\boxed{\text{bet}}``, does not stop it) and `text` ends with that brace. (The vLLM
      backend has no such rule: it samples to EOS / the limit and the parser finds the box.)
    * `finish_reason` is "eos" (the model emitted EOS), "stop" (a stop string) or "length"
      (`max_new_tokens`, or the model's last position, as in vLLM).
    """

    prompt: str
    text: str
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]  # untempered log p(token | prefix), one per token_id
    finish_reason: str  # "eos" | "stop" | "length"
    sampling_logprobs: list[float] = field(default_factory=list)  # under the sampled dist.


BOX_OPEN = "\\boxed{"


def box_end(text: str) -> int | None:
    r"""Index just past the brace that closes the last ``\boxed{`` of `text`, braces counted by
    depth (``\boxed{\frac{1}{3}}`` closes at the final brace), or None if `text` has no box
    or its last box is still open. `SamplingParams.stop_after_box` stops generation there."""
    start = text.rfind(BOX_OPEN)
    if start < 0:
        return None
    depth = 1
    for j in range(start + len(BOX_OPEN), len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return None


# ---- Sampling math -------------------------------------------------------------------------
def row_seed(seed: int, row: int | str) -> int:
    """The seed of one row: a 63-bit hash of (seed, row), the same for every backend. ``row`` may
    also be a string naming the sample (e.g. task, document and repeat), for seeds that do not
    depend on a row's position in a batch."""
    digest = hashlib.blake2b(f"spkit:{seed}:{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def row_uniforms(seed: int, n_rows: int, n_steps: int, device: torch.device,
                 row_seeds: Sequence[int] | None = None) -> torch.Tensor:
    """(n_rows, n_steps) uniforms in [0, 1); row i depends only on (seed, i), or only on
    ``row_seeds[i]`` when given."""
    if row_seeds is not None and len(row_seeds) != n_rows:
        raise SpkitError(f"{len(row_seeds)} row seeds for {n_rows} rows")
    out = torch.empty(n_rows, max(n_steps, 1))
    g = torch.Generator()
    for i in range(n_rows):
        g.manual_seed(row_seed(seed, i) if row_seeds is None else int(row_seeds[i]))
        out[i] = torch.rand(out.shape[1], generator=g)
    return out.to(device)


def sample_tokens(
    logits: torch.Tensor, params: SamplingParams, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row by inverse-CDF with the given uniforms.

    logits: (b, V) raw; u: (b,) in [0, 1). Returns (tokens (b,), log-prob of each token under
    the distribution sampled from (b,)). Order of transforms: temperature, top-k, top-p (as in
    transformers and vLLM); at least one token always survives, so top_k=1 or a tiny top_p is
    greedy.
    """
    logits = logits.float()
    if params.greedy:
        tok = logits.argmax(-1)
        return tok, torch.zeros_like(tok, dtype=torch.float32)
    scaled = logits / params.temperature
    V = scaled.shape[-1]
    if params.top_k > 0 or params.top_p < 1.0:
        if 0 < params.top_k < V:
            vals, idx = torch.topk(scaled, params.top_k, dim=-1)  # sorted descending
        else:
            vals, idx = torch.sort(scaled, dim=-1, descending=True, stable=True)
        probs = torch.softmax(vals, dim=-1)  # (b, k)
        if params.top_p < 1.0:
            before = probs.cumsum(-1) - probs  # mass strictly above each token
            keep = before < params.top_p
            keep[:, 0] = True
            probs = probs * keep
    else:
        idx = None
        probs = torch.softmax(scaled, dim=-1)  # (b, V) in vocabulary order
    cum = probs.double().cumsum(-1)  # (b, k)
    total = cum[:, -1:]
    j = torch.searchsorted(cum, u.double().unsqueeze(1) * total, right=True)  # (b, 1)
    j = j.clamp_(max=cum.shape[1] - 1)
    p = probs.gather(1, j).double() / total
    tok = j if idx is None else idx.gather(1, j)
    return tok.squeeze(1), p.log().float().squeeze(1)


# ---- Prompt layout -------------------------------------------------------------------------
@dataclass
class Layout:
    """How a batch of prompts is laid out: one shared prefix, unique suffixes, rows.

    Engines write B for the number of rows and U for the number of unique suffixes
    (U < B when the batch repeats a prompt, e.g. n samples of one prompt).
    """

    prefix: list[int]  # token ids common to every prompt (run once)
    suffixes: list[list[int]]  # distinct remainders (each non-empty)
    row_to_suffix: list[int]  # row -> index into suffixes


def behaviour_logprobs(out: Completion, temperature: float) -> list[float]:
    """Log-probs of a completion's tokens under the distribution they were drawn from: the
    untempered `logprobs` at T = 1, `sampling_logprobs` (softmax(logits / T)) otherwise. PPO-style
    ratios use these as π_old, and the learner divides its logits by the same T, so an update at
    T ≠ 1 stays on-policy (as oat and TRL do)."""
    if temperature == 1.0 or not out.sampling_logprobs:
        return list(out.logprobs)
    return list(out.sampling_logprobs)


def plan_layout(prompt_ids: list[list[int]], share_prefix: bool = True) -> Layout:
    """Longest common token prefix (leaving >= 1 token per prompt) + deduplicated suffixes."""
    P = 0
    if share_prefix and len(prompt_ids) > 1:
        first, P = prompt_ids[0], min(len(p) for p in prompt_ids) - 1
        for p in prompt_ids[1:]:
            k = 0
            while k < P and p[k] == first[k]:
                k += 1
            P = k
    uniq: dict[tuple[int, ...], int] = {}
    rows = []
    for p in prompt_ids:
        rows.append(uniq.setdefault(tuple(p[P:]), len(uniq)))
    return Layout(list(prompt_ids[0][:P]) if P else [], [list(s) for s in uniq], rows)
