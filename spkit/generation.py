"""Batched sampling with a KV cache: the rollout engine of every self-play algorithm in spkit.

    sampler = Sampler(model, tokenizer)
    outs = sampler.generate(prompts, SamplingParams(max_new_tokens=64, stop=("}",)), seed=0)
    outs[0].text, outs[0].token_ids, outs[0].logprobs, outs[0].finish_reason

What a `Completion` holds (the conventions follow vLLM where vLLM has one):

* `token_ids` are the sampled tokens. An EOS token that ended the completion is included
  (the policy chose to stop; RL losses must see that choice), but not in `text`.
* `logprobs[i]` is log p(token_ids[i] | prefix) under the model's *untempered* distribution
  (softmax of the raw logits: temperature 1, no top-k/top-p truncation). That is the quantity
  PPO ratios and KL terms need, whatever temperature the rollout used.
  `sampling_logprobs[i]` is the log-probability under the distribution actually sampled from
  (after temperature, top-k, top-p); it is 0.0 for greedy decoding.
* Stop strings: `text` is cut right before the first occurrence of a stop string (the stop
  string is excluded, as in vLLM, unless `include_stop=True`). Generation stops at the token
  whose decoding completes the stop string, and that token is the last of `token_ids` — so a
  stop string that ends in the middle of a token keeps the whole token: `text + stop` is a
  prefix of `decode(token_ids)`. Only generated text is searched, never the prompt.
* `finish_reason` is "eos" (the model emitted EOS), "stop" (a stop string) or "length"
  (`max_new_tokens`, or the model's last position, as in vLLM).

Determinism: a call with the same model, prompts, params and `seed` returns the same
completions (same machine, same torch thread count). Each row draws its randomness from its
own generator, seeded from `(seed, row index)`, one uniform number per generated token
(inverse-CDF sampling), so row i's sample does not depend on the other rows of the batch
except through floating-point differences in the logits (other batch shapes may round
differently; that can flip a sample only where a uniform falls within ~1e-6 of a boundary of
the cumulative distribution). The fused and the generic engine agree in the same way.
`seed=None` draws the seed from torch's global RNG, so `seed_everything` makes such calls
reproducible.

Speed (CPU, tiny models): at rollout batch sizes a decode step costs the weight matmuls plus
reading every row's keys/values (memory-bound attention); `model.generate` adds prefill of
padding, a copy of the whole cache per step (`DynamicCache` grows by concatenation) and
per-op overhead. The gains come from work not done:

1. Prompt deduplication and prefix sharing: the longest token prefix common to all prompts is
   run once (batch 1) and its keys/values are stored once and read once per step for all
   rows; identical prompts (n samples of one prompt) are prefilled once.
2. No compute on padding: prefill packs the real tokens of all prompts into one matrix for the
   linear layers; only attention sees the padded layout.
3. Finished rows leave the batch: the cache is compacted once a quarter of the rows are done.
4. A fused forward for Llama/Qwen/Mistral-style models (one QKV matmul, one gate-up matmul,
   a cache written in place and grown by doubling, attention over its whole contiguous
   buffer with unwritten columns masked, which CPU matmuls run faster than a strided
   slice). Other architectures (and peft-wrapped models) use the model's own forward with a
   `DynamicCache` (same layout tricks, prefix copied per row), exact for any causal LM. `Sampler(fast=False)` forces that path.
   `torch.compile` was measured on the fused step and does not pay on CPU (a minute of
   compilation, then slower steps), so it is not used.

Run `python benchmarks/sampler.py` for the speed against `model.generate`.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from spkit.errors import SpkitError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

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
    """One sampled continuation of one prompt (see the module docstring for conventions)."""

    prompt: str
    text: str
    prompt_ids: list[int]
    token_ids: list[int]
    logprobs: list[float]  # untempered log p(token | prefix), one per token_id
    finish_reason: str  # "eos" | "stop" | "length"
    sampling_logprobs: list[float] = field(default_factory=list)  # under the sampled dist.


# ---- Sampling math -------------------------------------------------------------------------
def row_seed(seed: int, row: int) -> int:
    """The seed of one row: a 63-bit hash of (seed, row), the same for every backend."""
    digest = hashlib.blake2b(f"spkit:{seed}:{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def row_uniforms(seed: int, n_rows: int, n_steps: int, device: torch.device) -> torch.Tensor:
    """(n_rows, n_steps) uniforms in [0, 1); row i depends only on (seed, i)."""
    out = torch.empty(n_rows, max(n_steps, 1))
    g = torch.Generator()
    for i in range(n_rows):
        g.manual_seed(row_seed(seed, i))
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
    """How a batch of prompts is laid out: one shared prefix, unique suffixes, rows."""

    prefix: list[int]  # token ids common to every prompt (run once)
    suffixes: list[list[int]]  # distinct remainders (each non-empty)
    row_to_suffix: list[int]  # row -> index into suffixes


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


# ---- Engine: the model's own forward (any causal LM) -----------------------------------------
class HFEngine:
    """Prefix-shared, deduplicated prefill and cached decode through `model.forward`.

    Rows are left-padded after the prefix: [prefix][pad..][suffix][generated...], with
    explicit position ids (the pad gap is skipped) and a 2D attention mask, so rotary
    positions are those of the unpadded prompt.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
        params = inspect.signature(inner.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = "logits_to_keep" if "logits_to_keep" in params else None
        self.device = next(model.parameters()).device

    def _new_cache(self):
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.model.config)
        except TypeError:
            return DynamicCache()

    def _forward(self, ids, mask, pos) -> torch.Tensor:
        kw = {self._cache_kw: self.cache, "use_cache": True}
        if self._keep_kw:
            kw[self._keep_kw] = 1
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **kw)
        return out.logits[:, -1, :]

    def prefill(self, layout: Layout, max_new_tokens: int = 0) -> torch.Tensor:
        """Run the prompts; return last-position logits per row (B, V)."""
        dev, P = self.device, len(layout.prefix)
        self.cache = self._new_cache()
        U = len(layout.suffixes)
        if P:
            ids = torch.tensor([layout.prefix], device=dev)
            self._forward(ids, torch.ones_like(ids), torch.arange(P, device=dev)[None])
            self.cache.batch_repeat_interleave(U)
        S = max(len(s) for s in layout.suffixes)
        ids = torch.zeros(U, S, dtype=torch.long, device=dev)
        mask = torch.zeros(U, P + S, dtype=torch.long, device=dev)
        mask[:, :P] = 1
        pos = torch.zeros(U, S, dtype=torch.long, device=dev)
        for u, s in enumerate(layout.suffixes):
            ids[u, S - len(s):] = torch.tensor(s)
            mask[u, P + S - len(s):] = 1
            pos[u, S - len(s):] = torch.arange(P, P + len(s))
        logits = self._forward(ids, mask, pos)  # (U, V)
        rows = torch.tensor(layout.row_to_suffix, device=dev)
        if len(rows) != U or not torch.equal(rows, torch.arange(U, device=dev)):
            self.cache.batch_select_indices(rows)
        self.mask = mask[rows]  # (B, P+S)
        self.next_pos = pos[rows, -1] + 1  # (B,)
        return logits[rows]

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row; return the next logits (B, V)."""
        self.mask = F.pad(self.mask, (0, 1), value=1)
        logits = self._forward(tokens[:, None], self.mask, self.next_pos[:, None])
        self.next_pos = self.next_pos + 1
        return logits

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these rows (finished rows leave the batch)."""
        self.cache.batch_select_indices(rows)
        self.mask, self.next_pos = self.mask[rows], self.next_pos[rows]


# ---- Sampler -------------------------------------------------------------------------------
class Sampler:
    """Batched sampling from a causal LM; see the module docstring for the guarantees.

    backend: "hf" (pure torch, default) or "vllm" (needs the `[vllm]` extra; `model` may
    then be a model name/path or a `vllm.LLM`). fast: use the fused Llama-family forward when
    the architecture allows (None = auto). share_prefix: run a common prompt prefix once.
    """

    def __init__(
        self,
        model,
        tokenizer: PreTrainedTokenizerBase,
        backend: str = "hf",
        fast: bool | None = None,
        share_prefix: bool = True,
    ) -> None:
        if backend not in ("hf", "vllm"):
            raise SpkitError(f"unknown sampler backend {backend!r}; use 'hf' or 'vllm'")
        self.model, self.tokenizer, self.backend = model, tokenizer, backend
        self.share_prefix = share_prefix
        self.fast = fast
        self._vllm = None
        self._token_texts: list[str] | None = None  # decode([id]) for every id (lazy)
        self._cand_cache: dict[tuple, torch.Tensor] = {}
        if backend == "vllm":
            from spkit.vllm_backend import VLLMBackend

            self._vllm = VLLMBackend(model, tokenizer)

    # -- helpers --
    def encode(self, prompt: str) -> list[int]:
        """Prompt ids as the tokenizer makes them; an empty prompt becomes [BOS] (or [EOS])."""
        ids = self.tokenizer(prompt)["input_ids"]
        if not ids:
            tok = self.tokenizer
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            ids = [start]
        return list(ids)

    def eos_ids(self) -> set[int]:
        ids = set()
        gen = getattr(self.model, "generation_config", None)
        e = getattr(gen, "eos_token_id", None) if gen is not None else None
        for x in (e if isinstance(e, (list, tuple)) else [e]):
            if x is not None:
                ids.add(int(x))
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return ids

    def _stop_candidates(self, stop: tuple[str, ...], vocab: int, device) -> torch.Tensor:
        """(V,) bool: tokens whose text could complete a stop string (a cheap pre-filter).

        A token can complete a stop string only if its text contains the stop string's last
        character, or is a partial UTF-8 character. Tokenizers that drop a leading space when
        decoding a token alone (SentencePiece) would hide a trailing-space stop string, so
        such stop strings make every token a candidate.
        """
        key = (stop, vocab)
        if key not in self._cand_cache:
            if self._token_texts is None:
                n = len(self.tokenizer)
                self._token_texts = self.tokenizer.batch_decode([[i] for i in range(n)])
            last = {s[-1] for s in stop}
            cand = torch.ones(vocab, dtype=torch.bool)
            if not any(c.isspace() for c in last):
                for i, t in enumerate(self._token_texts[:vocab]):
                    cand[i] = "\ufffd" in t or any(c in t for c in last)
            self._cand_cache[key] = cand
        return self._cand_cache[key].to(device)

    def _engine(self):
        if self.fast is not False:
            eng = FastLlamaEngine.maybe(self.model)
            if eng is not None:
                return eng
            if self.fast:
                raise SpkitError(
                    f"fast=True but {type(self.model).__name__} is not a plain Llama/Qwen/"
                    "Mistral-style model; use fast=None (auto) or fast=False"
                )
        return HFEngine(self.model)

    # -- main entry --
    def generate(
        self,
        prompts: list[str],
        params: SamplingParams | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> list[Completion]:
        """Sample one completion per prompt (repeat a prompt to get several samples)."""
        params = params or SamplingParams()
        prompts = list(prompts)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        bad = [type(p).__name__ for p in prompts if not isinstance(p, str)]
        if bad:
            raise SpkitError(f"prompts must be strings, got {bad[0]}")
        if self._vllm is not None:
            return self._vllm.generate(prompts, params, seed)
        prompt_ids = [self.encode(p) for p in prompts]
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        longest = max((len(ids) for ids in prompt_ids), default=0)
        if limit and longest >= limit:
            raise SpkitError(f"a prompt of {longest} tokens leaves no room in the model's "
                             f"{limit} positions; shorten it")
        if not prompts or params.max_new_tokens == 0:
            return [Completion(p, "", ids, [], [], "length", []) for p, ids in
                    zip(prompts, prompt_ids, strict=True)]
        with torch.inference_mode():
            toks, lps, slps, reasons = self._run(prompt_ids, params, seed, progress)
        return [self._finish(p, ids, t, lp, slp, r, params) for p, ids, t, lp, slp, r in
                zip(prompts, prompt_ids, toks, lps, slps, reasons, strict=True)]

    def _run(self, prompt_ids, params: SamplingParams, seed: int, progress: bool):
        """The decode loop. Rows live at 'slots' of the engine; finished rows are dropped."""
        B, T = len(prompt_ids), params.max_new_tokens
        limit = getattr(self.model.config, "max_position_embeddings", None) or 1 << 62
        cap = [min(T, limit - len(p)) for p in prompt_ids]  # a row ends at the last position
        T = max(cap)
        engine = self._engine()
        layout = plan_layout(prompt_ids, self.share_prefix)
        logits = engine.prefill(layout, T)  # (B, V)
        dev = logits.device
        U = row_uniforms(seed, B, T, dev)  # (B, T)
        eos = torch.tensor(sorted(self.eos_ids()) or [-1], device=dev)
        cand = self._stop_candidates(params.stop, logits.shape[-1], dev) if params.stop else None
        toks: list[list[int]] = [[] for _ in range(B)]
        lps: list[list[float]] = [[] for _ in range(B)]
        slps: list[list[float]] = [[] for _ in range(B)]
        reasons = ["length"] * B
        slot_rows = torch.arange(B, device=dev)  # slot -> row
        alive = torch.ones(B, dtype=torch.bool, device=dev)  # per slot
        steps = range(T)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="sampling", leave=False)
        for t in steps:
            tok, slp = sample_tokens(logits, params, U[slot_rows, t])  # (S,)
            lp = torch.log_softmax(logits.float(), -1).gather(1, tok[:, None]).squeeze(1)
            done = torch.zeros_like(alive)
            if not params.ignore_eos:
                done |= torch.isin(tok, eos)
            check = cand[tok] & alive & ~done if cand is not None else None
            tok_l, lp_l, slp_l = tok.tolist(), lp.tolist(), slp.tolist()
            rows_l, alive_l, done_l = slot_rows.tolist(), alive.tolist(), done.tolist()
            check_l = check.tolist() if check is not None else None
            for s, r in enumerate(rows_l):
                if not alive_l[s]:
                    continue
                toks[r].append(tok_l[s])
                lps[r].append(lp_l[s])
                slps[r].append(slp_l[s])
                if done_l[s]:
                    reasons[r] = "eos"
                elif check_l is not None and check_l[s] and self._has_stop(toks[r], params.stop):
                    reasons[r] = "stop"
                    done[s] = True
                elif len(toks[r]) >= cap[r]:
                    done[s] = True  # reason stays "length"
            alive &= ~done
            n_alive = int(alive.sum())
            if n_alive == 0 or t == T - 1:
                break
            if n_alive <= 0.75 * len(alive):  # compact: finished rows stop costing compute
                keep = alive.nonzero().squeeze(1)
                engine.select(keep)
                slot_rows, alive, tok = slot_rows[keep], alive[keep], tok[keep]
            logits = engine.decode(tok)
        return toks, lps, slps, reasons

    def _has_stop(self, ids: list[int], stop: tuple[str, ...]) -> bool:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return any(s in text for s in stop)

    def _finish(self, prompt, prompt_ids, toks, lps, slps, reason, params) -> Completion:
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        if reason == "stop":
            cut = min((text.find(s), -len(s)) for s in params.stop if s in text)
            text = text[: cut[0] - cut[1]] if params.include_stop else text[: cut[0]]
        return Completion(prompt, text, list(prompt_ids), toks, lps, reason, slps)


# ---- Engine: fused forward for Llama-family models -------------------------------------------
_FAST_TYPES = ("llama", "qwen2", "qwen3", "mistral")


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as Llama computes it (in float32, weight applied in the input dtype)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, rotate-half convention. x: (N, heads, D); cos/sin: (N, 1, D)."""
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


@dataclass
class _Layer:
    """One decoder layer's weights, fused where that saves matmul calls."""

    ln1: torch.Tensor
    ln2: torch.Tensor
    w_qkv: torch.Tensor  # (Hq*D + 2*Hkv*D, H)
    b_qkv: torch.Tensor | None
    w_o: torch.Tensor  # (H, Hq*D)
    w_gu: torch.Tensor  # (2*I, H)
    w_down: torch.Tensor  # (H, I)
    q_norm: torch.Tensor | None  # (D,) Qwen3 per-head norms
    k_norm: torch.Tensor | None


class FastLlamaEngine:
    """A fused forward pass for Llama/Qwen2/Qwen3/Mistral-style models (same weights, same math).

    Cache layout: the shared prefix's keys/values once per layer, (Hkv, P, D), and a per-row
    buffer (B, Hkv, C, D) for suffix + generated tokens, written in place and grown by
    doubling C (no per-step concatenation). A decode step attends to the prefix with one matmul
    for all rows and to each row's own tokens with a batched matmul; the two score blocks
    share one softmax. Prefill runs the linear layers on packed real tokens only.
    Weights are read from the model at every `generate` call, so training updates are seen.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        cfg, base = model.config, model.model
        self.model = model
        self.Hq, self.Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
        attn0 = base.layers[0].self_attn
        self.D = getattr(attn0, "head_dim", cfg.hidden_size // self.Hq)
        self.scale = getattr(attn0, "scaling", self.D**-0.5)
        self.eps = getattr(base.norm, "variance_epsilon", getattr(base.norm, "eps", 1e-6))
        self.act = base.layers[0].mlp.act_fn
        self.rotary = base.rotary_emb
        self.embed = base.embed_tokens.weight
        self.norm = base.norm.weight
        self.lm_head = model.lm_head.weight
        self.layers = [self._fuse(layer) for layer in base.layers]
        self.dtype, self.device = self.embed.dtype, self.embed.device

    @classmethod
    def maybe(cls, model) -> FastLlamaEngine | None:
        """The engine if `model` is a plain (unwrapped) Llama-family model, else None."""
        cfg = getattr(model, "config", None)
        if getattr(cfg, "model_type", None) not in _FAST_TYPES:
            return None
        if cfg.model_type == "mistral" and getattr(cfg, "sliding_window", None):
            return None
        if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
            return None
        base = getattr(model, "model", None)
        linear = torch.nn.Linear
        try:
            ok = type(model.lm_head) is linear and hasattr(base, "rotary_emb")
            for layer in base.layers:
                a, m = layer.self_attn, layer.mlp
                mods = [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]
                ok &= all(type(x) is linear for x in mods)
                ok &= a.o_proj.bias is None and m.gate_proj.bias is None and m.down_proj.bias is None
        except AttributeError:
            return None
        return cls(model) if ok else None

    def _fuse(self, layer) -> _Layer:
        a, m = layer.self_attn, layer.mlp
        biases = [a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]
        b_qkv = None
        if any(b is not None for b in biases):
            ws = [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]
            b_qkv = torch.cat([b if b is not None else w.new_zeros(w.shape[0])
                               for b, w in zip(biases, ws, strict=True)])
        qn, kn = getattr(a, "q_norm", None), getattr(a, "k_norm", None)
        return _Layer(
            ln1=layer.input_layernorm.weight, ln2=layer.post_attention_layernorm.weight,
            w_qkv=torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), b_qkv=b_qkv,
            w_o=a.o_proj.weight, w_gu=torch.cat([m.gate_proj.weight, m.up_proj.weight]),
            w_down=m.down_proj.weight,
            q_norm=qn.weight if qn is not None else None,
            k_norm=kn.weight if kn is not None else None,
        )

    # -- shared pieces --
    def _qkv(self, L: _Layer, x: torch.Tensor):
        """x: (N, H) packed tokens -> q (N, Hq, D), k, v (N, Hkv, D), rotated for the
        positions last given to `_set_positions`."""
        Hq, Hkv, D = self.Hq, self.Hkv, self.D
        qkv = F.linear(_rms(x, L.ln1, self.eps), L.w_qkv, L.b_qkv).view(-1, Hq + 2 * Hkv, D)
        qk, v = qkv[:, : Hq + Hkv], qkv[:, Hq + Hkv:]
        if L.q_norm is not None:
            qk = torch.cat([_rms(qk[:, :Hq], L.q_norm, self.eps),
                            _rms(qk[:, Hq:], L.k_norm, self.eps)], dim=1)
        cos, sin = self._cos_sin
        qk = _rope(qk, cos, sin)
        return qk[:, :Hq], qk[:, Hq:], v

    def _set_positions(self, pos: torch.Tensor) -> None:
        """cos/sin for positions pos (N,), from the model's own rotary module (any scaling)."""
        cos, sin = self.rotary(self.embed[:1][None], pos[None])  # (1, N, D) each
        self._cos_sin = (cos[0, :, None, :].to(self.dtype), sin[0, :, None, :].to(self.dtype))

    def _mlp(self, L: _Layer, x: torch.Tensor) -> torch.Tensor:
        g, u = F.linear(_rms(x, L.ln2, self.eps), L.w_gu).chunk(2, dim=-1)
        return F.linear(self.act(g) * u, L.w_down)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(_rms(x, self.norm, self.eps), self.lm_head)

    # -- prefill --
    def prefill(self, layout: Layout, max_new_tokens: int) -> torch.Tensor:
        dev, Hkv, D = self.device, self.Hkv, self.D
        P = len(layout.prefix)
        self.P = P
        self.k_pre: list[torch.Tensor] = []
        self.v_pre: list[torch.Tensor] = []
        if P:
            self._prefill_prefix(torch.tensor(layout.prefix, device=dev))
        U, S0 = len(layout.suffixes), max(len(s) for s in layout.suffixes)
        lens = torch.tensor([len(s) for s in layout.suffixes], device=dev)
        valid = torch.arange(S0, device=dev)[None] >= (S0 - lens)[:, None]  # (U, S0) left pad
        flat = valid.flatten().nonzero().squeeze(1)  # packed token -> padded slot
        ids = torch.tensor([t for s in layout.suffixes for t in s], device=dev)
        pos = P + (valid.long().cumsum(1) - 1).flatten()[flat]
        cap = S0 + max_new_tokens
        self.max_cap = cap
        cap0 = min(cap, S0 + 16)  # the cache grows by doubling (see `_grow`)
        self.k = [torch.zeros(U, Hkv, cap0, D, dtype=self.dtype, device=dev) for _ in self.layers]
        self.v = [torch.zeros_like(k) for k in self.k]
        # keys/values of the prefix (all True) then the suffix: causal and not padding
        causal = torch.ones(S0, S0, dtype=torch.bool, device=dev).tril()
        mask = causal[None] & valid[:, None, :]  # (U, S0, S0)
        mask |= torch.eye(S0, dtype=torch.bool, device=dev)[None]  # pad queries: no empty row
        mask = torch.cat([mask.new_ones(U, S0, P), mask], dim=2)[:, None]  # (U, 1, S0, P+S0)
        x = self.embed[ids]  # (N, H)
        self._set_positions(pos)
        for i, L in enumerate(self.layers):
            q, k, v = self._qkv(L, x)
            qp, kp, vp = (self._scatter(t, flat, U, S0) for t in (q, k, v))  # (U, h, S0, D)
            self.k[i][:, :, :S0], self.v[i][:, :, :S0] = kp, vp
            if P:
                kp = torch.cat([self.k_pre[i].expand(U, -1, -1, -1), kp], dim=2)
                vp = torch.cat([self.v_pre[i].expand(U, -1, -1, -1), vp], dim=2)
            o = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask, scale=self.scale,
                                               enable_gqa=self.Hq != Hkv)  # (U, Hq, S0, D)
            o = o.transpose(1, 2).reshape(U * S0, -1)[flat]  # (N, Hq*D)
            x = x + F.linear(o, L.w_o)
            x = x + self._mlp(L, x)
        last = (lens.cumsum(0) - 1)  # last packed token of each suffix
        logits = self._logits(x[last])  # (U, V)
        rows = torch.tensor(layout.row_to_suffix, device=dev)
        if len(rows) != U or not torch.equal(rows, torch.arange(U, device=dev)):
            self.k = [k.index_select(0, rows) for k in self.k]
            self.v = [v.index_select(0, rows) for v in self.v]
            valid, logits = valid[rows], logits[rows]
        self.bias = torch.zeros(len(rows), 1, 1, cap, dtype=self.dtype, device=dev)
        self.bias[:, 0, 0, :S0].masked_fill_(~valid, float("-inf"))  # (B, 1, 1, cap)
        self.bias[:, 0, 0, S0:] = float("-inf")  # columns not written yet
        self.cur = S0  # next column to write (same for all rows)
        self.next_pos = P + lens[rows]  # (B,)
        return logits

    def _scatter(self, t: torch.Tensor, flat: torch.Tensor, U: int, S0: int) -> torch.Tensor:
        """Packed (N, h, D) -> left-padded (U, h, S0, D)."""
        out = t.new_zeros(U * S0, t.shape[1], t.shape[2])
        out[flat] = t
        return out.view(U, S0, t.shape[1], t.shape[2]).transpose(1, 2)

    def _prefill_prefix(self, ids: torch.Tensor) -> None:
        P = ids.shape[0]
        pos = torch.arange(P, device=self.device)
        x = self.embed[ids]
        self._set_positions(pos)
        for L in self.layers:
            q, k, v = self._qkv(L, x)
            q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))  # (1, h, P, D)
            self.k_pre.append(k[0].contiguous())
            self.v_pre.append(v[0].contiguous())
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale,
                                               enable_gqa=self.Hq != self.Hkv)
            x = x + F.linear(o[0].transpose(0, 1).reshape(P, -1), L.w_o)
            x = x + self._mlp(L, x)

    # -- decode --
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        b, Hq, Hkv, D, P, c = len(tokens), self.Hq, self.Hkv, self.D, self.P, self.cur
        G = Hq // Hkv
        x = self.embed[tokens]  # (b, H)
        self._set_positions(self.next_pos)
        if c == self.k[0].shape[2]:
            self._grow()
        self.bias[:, 0, 0, c] = 0.0
        n, L = b * Hkv, self.k[0].shape[2]
        bias = self.bias[:, :, :, :L]  # (b, 1, 1, L)
        for i, lw in enumerate(self.layers):
            q, k, v = self._qkv(lw, x)
            K, V = self.k[i], self.v[i]  # (b, Hkv, L, D)
            K[:, :, c], V[:, :, c] = k, v
            # attend over the whole (contiguous) buffer; unwritten columns are masked. On CPU
            # this is faster than a strided [:c+1] view, which bmm would copy.
            Kr, Vr = K.view(n, L, D), V.view(n, L, D)
            q = (q * self.scale).view(n, G, D)
            s = torch.bmm(q, Kr.transpose(1, 2)).view(b, Hkv, G, L) + bias
            if P:  # the shared prefix: one matmul per kv-head for all rows
                qh = q.view(b, Hkv, G, D).transpose(0, 1).reshape(Hkv, b * G, D)
                sp = torch.bmm(qh, self.k_pre[i].transpose(1, 2))  # (Hkv, b*G, P)
                s = torch.cat([sp.view(Hkv, b, G, P).transpose(0, 1), s], dim=-1)
            p = torch.softmax(s.float(), dim=-1).to(self.dtype)  # (b, Hkv, G, P+L)
            o = torch.bmm(p[..., P:].reshape(n, G, L), Vr).view(b, Hkv, G, D)
            if P:
                pp = p[..., :P].transpose(0, 1).reshape(Hkv, b * G, P)
                o = o + torch.bmm(pp, self.v_pre[i]).view(Hkv, b, G, D).transpose(0, 1)
            x = x + F.linear(o.reshape(b, Hq * D), lw.w_o)
            x = x + self._mlp(lw, x)
        self.cur += 1
        self.next_pos = self.next_pos + 1
        return self._logits(x)

    def _grow(self) -> None:
        """Double the cache's columns (at most to prompt + max_new_tokens): log T copies."""
        old = self.k[0].shape[2]
        new = min(self.max_cap, 2 * old)
        for buf in (self.k, self.v):
            for i, t in enumerate(buf):
                buf[i] = F.pad(t, (0, 0, 0, new - old))

    def select(self, rows: torch.Tensor) -> None:
        self.k = [k.index_select(0, rows) for k in self.k]
        self.v = [v.index_select(0, rows) for v in self.v]
        self.bias, self.next_pos = self.bias[rows], self.next_pos[rows]


# ---- CLI: `spkit sample` ---------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    from spkit.config import add_common_arguments

    add_common_arguments(p)
    p.add_argument("--prompt", action="append", default=None,
                   help="a prompt (repeatable; default: a Kuhn Poker style question)")
    p.add_argument("--n", type=int, default=1, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf")


def main(args: argparse.Namespace) -> int:
    from spkit.models import load_model

    model, tok = load_model(args.model)
    prompts = args.prompt or ["You are player 0 in Kuhn Poker. Your card: K."]
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
        top_k=args.top_k, stop=tuple(args.stop),
    )
    if args.n < 1:
        raise SpkitError(f"--n must be >= 1, got {args.n}")
    batch = [p for p in prompts for _ in range(args.n)]
    outs = Sampler(model, tok, backend=args.backend).generate(batch, params, seed=args.seed)
    for i, c in enumerate(outs):
        print(f"--- [{i}] prompt: {c.prompt!r}  ({len(c.token_ids)} tokens, {c.finish_reason}, "
              f"sum logprob {sum(c.logprobs):.2f})")
        print(c.text)
    return 0
