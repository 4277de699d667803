"""`Sampler`: batched sampling with a KV cache, the rollout engine of every self-play algorithm
in spkit.

    from spkit.generation import Sampler
    from spkit.sampling import SamplingParams

    sampler = Sampler(model, tokenizer)
    outs = sampler.generate(prompts, SamplingParams(max_new_tokens=64, stop=("}",)), seed=0)
    outs[0].text, outs[0].token_ids, outs[0].logprobs, outs[0].finish_reason

What a `Completion` holds (EOS kept in `token_ids`, untempered `logprobs`, stop strings cut
from `text`, finish reasons) is documented on `spkit.sampling.Completion`; the sampling math
(per-row seeds, the inverse-CDF draw, the prompt layout) lives in `spkit.sampling` too.

Design. `Sampler.generate` encodes the prompts, plans their layout (`plan_layout`: the longest
token prefix common to all prompts, then the distinct suffixes) and runs one loop:

    logits = engine.prefill(layout, max_new_tokens)   # (B, V): one row per prompt
    repeat: draw a token per row -> record it, its log-prob, eos / stop / length
            drop finished rows now and then (engine.select)
            logits = engine.decode(tokens)

An `Engine` owns the model's forward and its KV cache; the loop above never looks inside.
Two engines implement it:

* `HFEngine` (below): the model's own forward with a `DynamicCache`; exact for any causal LM
  (and peft-wrapped models). `Sampler(fast=False)` forces it.
* `spkit.engines.fused_llama.FusedLlamaEngine`: a hand-fused forward for plain
  Llama/Qwen2/Qwen3/Mistral models, chosen automatically when it applies (its docstring says
  why it is faster).

Determinism: a call with the same model, prompts, params and `seed` returns the same
completions (same machine, same torch thread count). Every row has its own random stream
(`spkit.sampling.row_uniforms`), so row i's sample does not depend on the rest of the batch
except through floating-point rounding; the two engines agree in the same way.
`seed=None` draws the seed from torch's global RNG, so `seed_everything` makes such calls
reproducible.

Speed (CPU, tiny models): at rollout batch sizes a decode step costs the weight matmuls plus
reading every row's keys/values (memory-bound attention); `model.generate` adds prefill of
padding, a copy of the whole cache per step (`DynamicCache` grows by concatenation) and
per-op overhead. The gains come from work not done:

1. Prompt deduplication and prefix sharing (both engines): the shared prefix is run once
   (batch 1); identical prompts (n samples of one prompt) are prefilled once. The fused
   engine also stores the prefix's keys/values once and reads them once per step for all
   rows; `HFEngine` copies them into every row.
2. Finished rows leave the batch (both engines): the cache is compacted once a quarter of the
   rows are done.
3. The fused engine does no compute on padding, fuses matmuls and grows its cache in place
   (see `spkit.engines.fused_llama`).

Run `python benchmarks/sampler.py` for the speed against `model.generate`.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from spkit import parallel
from spkit.engines.fused_llama import FusedLlamaEngine
from spkit.errors import SpkitError
from spkit.models import inference_model
from spkit.sampling import (
    Completion,
    Layout,
    SamplingParams,
    box_end,
    plan_layout,
    row_seed,
    row_uniforms,
    sample_tokens,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


# ---- Engine: what the decode loop needs from a model ------------------------------------------
@runtime_checkable
class Engine(Protocol):
    """A model's forward plus its KV cache, for one `Sampler.generate` call.

    Rows are the prompts of the batch, in order; after `select` the kept rows are renumbered
    0..b-1 (`Sampler` calls these positions slots).
    """

    def prefill(self, layout: Layout, max_new_tokens: int) -> torch.Tensor:
        """Run the prompts, fill the cache; return each row's next-token logits (B, V)."""
        ...

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per live row (b,); return the next logits (b, V)."""
        ...

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these rows (indices into the current rows), in this order."""
        ...


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
        """Run the prompts; return last-position logits per row (B, V).

        Three steps: the shared prefix once (batch 1), copied into each of the U unique
        suffixes' cache rows; the suffixes, left-padded to the longest (S tokens); then the
        suffix rows are repeated/reordered into the B prompt rows (`layout.row_to_suffix`).
        """
        dev, P = self.device, len(layout.prefix)
        self.cache = self._new_cache()
        U = len(layout.suffixes)
        if P:  # 1. the shared prefix
            ids = torch.tensor([layout.prefix], device=dev)
            self._forward(ids, torch.ones_like(ids), torch.arange(P, device=dev)[None])
            self.cache.batch_repeat_interleave(U)
        # 2. the suffixes, left-padded; pads are masked out and skipped by the positions
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
        # 3. one row per prompt
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
_DEFAULT_BACKEND = ["hf"]  # what Sampler(backend=None) uses; a run's --backend sets it


def set_default_backend(name: str) -> str:
    """Make `name` ("hf" or "vllm") the engine of every `Sampler` built without an explicit
    backend; returns the previous default (`spkit.run.Run` sets it for a run and restores it)."""
    if name not in ("hf", "vllm"):
        raise SpkitError(f"unknown sampler backend {name!r}; use 'hf' or 'vllm'")
    previous, _DEFAULT_BACKEND[0] = _DEFAULT_BACKEND[0], name
    return previous


class Sampler:
    """Batched sampling from a causal LM; see the module docstring for the guarantees.

    backend: "hf" (pure torch) or "vllm" (`spkit.vllm_backend`: `model` may then be the torch
    model being trained, which the engine follows, a model name/path or a `vllm.LLM`); None =
    the process default, "hf" unless a run's `--backend vllm` set it (`set_default_backend`), so
    every trainer's samplers switch engines without a line of their own. fast: use the fused
    Llama-family forward when the architecture allows (None = auto). share_prefix: run a common
    prompt prefix once.
    """

    def __init__(
        self,
        model,
        tokenizer: PreTrainedTokenizerBase,
        backend: str | None = None,
        fast: bool | None = None,
        share_prefix: bool = True,
    ) -> None:
        backend = backend or _DEFAULT_BACKEND[0]
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

            self._vllm = VLLMBackend.for_model(model, tokenizer)

    # -- helpers --
    def encode(self, prompt: str) -> list[int]:
        """Prompt ids as the tokenizer makes them; an empty prompt becomes [BOS] (or [EOS])."""
        ids = self.tokenizer(prompt)["input_ids"]
        if not ids:
            tok = self.tokenizer
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            ids = [start]
        return list(ids)

    def context_limit(self) -> int | None:
        """The model's positions (prompt + completion), or None where unknown (a vLLM model name).
        Rollouts check prompts against it, so an over-long prompt is a counted overflow rather
        than the over-length `SpkitError` of `generate`."""
        limit = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        return int(limit) if limit else None

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

    def _engine(self) -> Engine:
        """The fused engine when the model allows (and `fast` is not False), else HFEngine; on
        the model's inference copy when it is sharded (`spkit.models.inference_model`)."""
        model = inference_model(self.model)
        if self.fast is not False:
            eng = FusedLlamaEngine.maybe(model)
            if eng is not None:
                return eng
            if self.fast:
                raise SpkitError(
                    f"fast=True but {type(model).__name__} is not a plain Llama/Qwen/"
                    "Mistral-style model; use fast=None (auto) or fast=False"
                )
        return HFEngine(model)

    # -- main entry --
    def generate(
        self,
        prompts: list[str],
        params: SamplingParams | None = None,
        seed: int | None = None,
        progress: bool = False,
        row_seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """Sample one completion per prompt (repeat a prompt to get several samples).

        ``row_seeds`` (one per prompt, e.g. from `spkit.sampling.row_seed`) replaces the
        ``(seed, row index)`` streams, so a row draws the same random numbers whatever batch it
        is in. Its logits still move in the last bits with the batch (a different matmul
        blocking), which flips a sampled token where two candidates are that close: rare, but
        seen (1 row of 16 in a preference-game batch of 8 vs 16), so tests that compare runs
        batched differently sample in the same batches.
        """
        params = params or SamplingParams()
        prompts = list(prompts)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        bad = [type(p).__name__ for p in prompts if not isinstance(p, str)]
        if bad:
            raise SpkitError(f"prompts must be strings, got {bad[0]}")
        if parallel.rollouts_split():
            return self._generate_split(prompts, params, seed, progress, row_seeds)
        if self._vllm is not None:
            outs = self._vllm.generate(prompts, params, seed, row_seeds)
            return self._rescore(outs, params) if self._vllm.learner is not None else outs
        prompt_ids = [self.encode(p) for p in prompts]
        limit = self.context_limit()
        longest = max((len(ids) for ids in prompt_ids), default=0)
        if limit and longest >= limit:
            raise SpkitError(f"a prompt of {longest} tokens leaves no room in the model's "
                             f"{limit} positions; shorten it")
        if not prompts or params.max_new_tokens == 0:
            return [Completion(p, "", ids, [], [], "length", []) for p, ids in
                    zip(prompts, prompt_ids, strict=True)]
        with torch.inference_mode():
            toks, lps, slps, reasons = self._run(prompt_ids, params, seed, progress, row_seeds)
        return [self._finish(p, ids, t, lp, slp, r, params) for p, ids, t, lp, slp, r in
                zip(prompts, prompt_ids, toks, lps, slps, reasons, strict=True)]

    def _generate_split(self, prompts: list[str], params: SamplingParams, seed: int, progress: bool,
                        row_seeds: Sequence[int] | None) -> list[Completion]:
        """Inside a training step under torchrun (`spkit.parallel.split_rollouts`): this rank
        samples its shard of the rows, each with the random stream it has in the whole batch
        (rank 0's seed), and every rank returns the whole batch."""
        if row_seeds is not None and len(row_seeds) != len(prompts):
            raise SpkitError(f"{len(row_seeds)} row seeds for {len(prompts)} prompts")
        seed = parallel.agree(parallel.fingerprint(prompts, params, row_seeds), seed)
        seeds = list(row_seeds) if row_seeds is not None else [row_seed(seed, i) for i in range(len(prompts))]

        def mine(rows: slice) -> list[Completion]:
            with parallel.split_rollouts(False):
                return self.generate(prompts[rows], params, seed, progress, seeds[rows])

        return parallel.split_rows(len(prompts), mine)

    def _run(self, prompt_ids, params: SamplingParams, seed: int, progress: bool,
             row_seeds: Sequence[int] | None = None):
        """The decode loop. Rows live at 'slots' of the engine; finished rows are dropped."""
        B, T = len(prompt_ids), params.max_new_tokens
        limit = getattr(self.model.config, "max_position_embeddings", None) or 1 << 62
        cap = [min(T, limit - len(p)) for p in prompt_ids]  # a row ends at the last position
        T = max(cap)
        engine = self._engine()
        layout = plan_layout(prompt_ids, self.share_prefix)
        logits = engine.prefill(layout, T)  # (B, V)
        dev = logits.device
        uniforms = row_uniforms(seed, B, T, dev, row_seeds)  # (B, T): one random number per row and step
        eos = torch.tensor(sorted(self.eos_ids()) or [-1], device=dev)
        stops = (*params.stop, "}") if params.stop_after_box else params.stop
        cand = self._stop_candidates(stops, logits.shape[-1], dev) if stops else None
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
            tok, slp = sample_tokens(logits, params, uniforms[slot_rows, t])  # (slots,)
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
                elif check_l is not None and check_l[s] and self._has_stop(toks[r], params):
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

    def _rescore(self, outs: list[Completion], params: SamplingParams) -> list[Completion]:
        """The learner's own log-probs of completions another engine (vLLM) sampled: untempered
        `logprobs`, and `sampling_logprobs` under softmax(logits / T) (0 for greedy decoding;
        left empty under top-k/top-p, whose truncated distribution this pass does not rebuild).
        One teacher-forced forward, so PPO's old policy is the learner's forward (see
        `spkit.vllm_backend`)."""
        from spkit.logprobs import token_logprobs

        rows = [i for i, o in enumerate(outs) if o.token_ids]
        if not rows:
            return outs
        P, C = [outs[i].prompt_ids for i in rows], [outs[i].token_ids for i in rows]
        with torch.inference_mode():
            raw = token_logprobs(self.model, P, C)
            tempered = None
            if not params.greedy and params.top_k == 0 and params.top_p >= 1.0:
                tempered = raw if params.temperature == 1.0 else token_logprobs(
                    self.model, P, C, temperature=params.temperature)
        for j, i in enumerate(rows):
            o = outs[i]
            o.logprobs = raw[j].tolist()
            o.sampling_logprobs = ([0.0] * len(o.token_ids) if params.greedy else
                                   tempered[j].tolist() if tempered is not None else [])
        return outs

    def _has_stop(self, ids: list[int], params: SamplingParams) -> bool:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return any(s in text for s in params.stop) or (params.stop_after_box and box_end(text) is not None)

    def _finish(self, prompt, prompt_ids, toks, lps, slps, reason, params) -> Completion:
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        if reason == "stop":  # (start of the cut, its end when the stop text is kept)
            cuts = [(text.find(s), text.find(s) + len(s)) for s in params.stop if s in text]
            end = box_end(text) if params.stop_after_box else None
            cuts += [(end, end)] if end is not None else []
            start, stop_end = min(cuts)
            text = text[:stop_end] if params.include_stop else text[:start]
        return Completion(prompt, text, list(prompt_ids), toks, lps, reason, slps)


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
    from spkit.text import terminal_safe

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
        print(f"--- [{i}] prompt: {terminal_safe(repr(c.prompt))}  ({len(c.token_ids)} tokens, "
              f"{c.finish_reason}, sum logprob {sum(c.logprobs):.2f})")
        print(terminal_safe(c.text))
    return 0
