"""An lm-eval model backed by spkit's Sampler: ``lm_eval --model spkit`` or ``--backend spkit``.

    from spkit.evals.lm import SpkitLM
    lm = SpkitLM(pretrained="spkit-tiny", batch_size=64)        # or SpkitLM(model=m, tokenizer=t)
    lm_eval.simple_evaluate(model=lm, tasks=["spkit_arith"], task_manager=tm)

Why it is faster than lm-eval's stock ``hf`` backend on small models: generation goes through
``spkit.generation.Sampler`` (one KV cache for the batch, the common prompt prefix prefilled
once, finished rows dropped, a fused Llama forward), and requests are grouped by generation
settings and sorted by length so every batch is dense. ``loglikelihood`` uses
``spkit.logprobs.token_logprobs``.

Conventions kept identical to the ``hf`` backend so greedy metrics agree: no special tokens are
added to prompts, prompts longer than ``max_length - max_gen_toks`` are cut from the left,
the text is cut at the first ``until`` string, and greedy decoding is used unless the task
asks for ``do_sample``. Sampled requests are seeded one by one (``_request_seeds``), so a
sample does not depend on the batch size or on the rank that draws it. One deliberate
difference: when ``max_gen_toks`` exceeds what the context can hold (long-generation tasks on a
small-context model), generation is shortened so the longest prompt keeps up to half of the
context, rather than cutting every prompt.

Data parallel: under ``torchrun --nproc_per_node N -m spkit eval ...`` every rank loads the
model, lm-eval gives each rank its share of the requests (``rank``/``world_size``), and the
scored samples are gathered on rank 0, which alone writes and prints (``torch.distributed``:
NCCL on GPUs, gloo on the CPU). Greedy metrics equal a one-process run's, and so do sampled
ones (per-request seeds).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

import lm_eval.models  # noqa: F401 - registers the built-in backends before we add ours
import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from spkit.errors import SpkitError
from spkit.generation import Sampler
from spkit.run.distributed import init_distributed
from spkit.run.metrics import progress
from spkit.sampling import SamplingParams


def _bar(disable_tqdm: bool, iterable: Any = None, **kw: Any) -> Any:
    """spkit's progress bar: off when lm-eval asks (``disable_tqdm``) or ``SPKIT_NO_PROGRESS=1``."""
    return progress(iterable, **kw, **({"disable": True} if disable_tqdm else {}))


@register_model("spkit")
class SpkitLM(LM):
    """lm-eval ``LM`` whose generation and scoring run through spkit."""

    def __init__(
        self,
        pretrained: str = "spkit-tiny",
        model: Any = None,
        tokenizer: Any = None,
        batch_size: int | str = 64,
        device: str | None = None,
        dtype: str | None = None,
        max_length: int | None = None,
        seed: int = 0,
        **_: Any,  # lm-eval passes extra model_args (e.g. trust_remote_code); ignored
    ) -> None:
        super().__init__()
        try:
            bs = 64 if str(batch_size).startswith("auto") else int(batch_size)
        except ValueError:
            bs = 0
        if bs < 1:
            raise SpkitError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            # lm-eval's CLI passes --device (default "cuda") to every backend
            warnings.warn(f"device {device!r} unavailable; using the default device",
                          stacklevel=2)
            device = None
        if model is None:
            from spkit.models import load_model

            model, tokenizer = load_model(pretrained, device=device, dtype=dtype)
        self.model, self.tok = model.eval(), tokenizer
        self.sampler = Sampler(model, tokenizer)
        self.batch_size = bs
        cfg = model.config
        self.max_length = int(max_length or getattr(cfg, "max_position_embeddings", 2048))
        self.seed = seed
        self.name = pretrained if isinstance(pretrained, str) else "model"
        self._rank, self._world_size = init_distributed()  # (0, 1) without torchrun

    # ---- data parallel: what lm-eval's evaluator calls when world_size > 1

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's `tensor`, concatenated in rank order (a 0-d tensor counts as one item)."""
        if self._world_size == 1:
            return tensor
        import torch.distributed as dist

        flat = tensor.reshape(-1)
        parts = [torch.empty_like(flat) for _ in range(self._world_size)]
        dist.all_gather(parts, flat)
        return torch.cat(parts)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        if self._world_size == 1:
            return [obj]
        import torch.distributed as dist

        gathered = [None] * self._world_size if self._rank == dst else None
        dist.gather_object(obj, gathered, dst=dst)
        return gathered

    def barrier(self) -> None:
        if self._world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    # ---- lm-eval API

    @property
    def tokenizer_name(self) -> str:
        return getattr(self.tok, "name_or_path", "spkit").replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True):
        return self.tok.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled) continuations, batched per generation setting."""
        out: list[str | None] = [None] * len(requests)
        seeds = self._request_seeds(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups[self._params_key(req.args[1])].append(i)
        bar = _bar(disable_tqdm, total=len(requests), desc="spkit generate_until")
        for key, idx in groups.items():
            params = self._params(key)
            ids = {i: self.sampler.encode(requests[i].args[0]) for i in idx}
            # A task may ask for more new tokens than the context holds (IFEval's 1280 on a
            # 1024-token model): generate at most what leaves the longest prompt (up to half
            # the context) intact, instead of cutting prompts to nothing.
            longest = min(max(len(v) for v in ids.values()), self.max_length // 2)
            params.max_new_tokens = max(1, min(params.max_new_tokens, self.max_length - longest))
            prompts = {i: self._fit(requests[i].args[0], ids[i], params.max_new_tokens)
                       for i in idx}
            idx.sort(key=lambda i: -len(prompts[i][1]))  # longest first: dense batches
            for b in range(0, len(idx), self.batch_size):
                chunk = idx[b : b + self.batch_size]
                comps = self.sampler.generate([prompts[i][0] for i in chunk], params,
                                              seed=self.seed + b,
                                              row_seeds=[seeds[i] for i in chunk])
                for i, c in zip(chunk, comps, strict=True):
                    text = _cut(c.text, params.stop)
                    out[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(chunk))
        bar.close()
        return [o if o is not None else "" for o in out]

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(sum log p(continuation | context), continuation is the greedy continuation)."""
        pairs = [self._encode_pair(*req.args) for req in requests]
        results: list[tuple[float, bool]] = []
        for b in _bar(disable_tqdm, range(0, len(pairs), self.batch_size),
                      desc="spkit loglikelihood"):
            chunk = pairs[b : b + self.batch_size]
            ctx, cont = [c for c, _ in chunk], [x for _, x in chunk]
            with torch.inference_mode():
                from spkit.logprobs import token_logprobs

                lps = token_logprobs(self.model, ctx, cont)
                greedy = self._greedy_flags(ctx, cont)
            for req, lp, g in zip(requests[b : b + self.batch_size], lps, greedy, strict=True):
                res = (float(lp.sum()), bool(g))
                results.append(res)
                self.cache_hook.add_partial("loglikelihood", req.args, res)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Whole-document log-likelihood in windows of ``max_length`` tokens."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        from spkit.logprobs import token_logprobs

        prefix = self.tok.bos_token_id if self.tok.bos_token_id is not None else \
            self.tok.eos_token_id
        out = []
        for req in _bar(disable_tqdm, requests, desc="spkit loglikelihood_rolling"):
            ids = self.tok(req.args[0], add_special_tokens=False)["input_ids"]
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=ids, prefix_token=prefix, max_seq_len=self.max_length, context_len=1)]
            total = 0.0
            with torch.inference_mode():
                for b in range(0, len(windows), self.batch_size):
                    ws = windows[b : b + self.batch_size]
                    lps = token_logprobs(self.model, [list(c) for c, _ in ws],
                                         [list(x) for _, x in ws])
                    total += sum(float(lp.sum()) for lp in lps)
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return out

    # ---- helpers

    def _request_seeds(self, requests) -> list[int]:
        """One sampling seed per request, named by (task, document, request index, repeat).

        lm-eval asks for a task's ``repeats`` samples by passing the same request that many
        times in a row (then, on a short data-parallel rank, whole copies of the last one as
        padding, whose responses the vote filters drop). Counting the copies gives the repeat
        number, so sample k of a document draws the same random numbers whatever batch or rank
        it lands in: a sampled run (ProcessBench's 8-sample vote) scores the same on one process
        as under torchrun up to float rounding of the logits, which can flip a near-tie token
        (`Sampler.generate`). Requests without lm-eval's metadata are named by their prompt.
        """
        from spkit.sampling import row_seed

        seen: dict[tuple, int] = defaultdict(int)
        seeds = []
        for req in requests:
            key = ((req.task_name, req.doc_id, req.idx) if req.doc_id is not None
                   else (None, None, req.args[0]))
            seeds.append(row_seed(self.seed, f"{key[0]}|{key[1]}|{key[2]}|{seen[key]}"))
            seen[key] += 1
        return seeds

    @staticmethod
    def _params_key(gen_kwargs: dict) -> tuple:
        kw = dict(gen_kwargs or {})
        until = kw.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        do_sample = bool(kw.get("do_sample", False))
        temperature = float(kw.get("temperature", 0.0) or 0.0)
        if not do_sample:
            temperature = 0.0
        elif temperature == 0.0:
            temperature = 1.0
        return (tuple(until), int(kw.get("max_gen_toks", 256)), temperature,
                float(kw.get("top_p", 1.0) or 1.0), int(kw.get("top_k", 0) or 0))

    @staticmethod
    def _params(key: tuple) -> SamplingParams:
        until, max_new, temperature, top_p, top_k = key
        return SamplingParams(max_new_tokens=max_new, temperature=temperature, top_p=top_p,
                              top_k=top_k, stop=until)

    def _fit(self, prompt: str, ids: list[int], max_new: int) -> tuple[str, list[int]]:
        """Cut the prompt from the left so prompt + generation fits in ``max_length``."""
        room = max(1, self.max_length - max_new)
        if len(ids) > room:
            ids = ids[-room:]
            prompt = self.tok.decode(ids)
        return prompt, ids

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: trailing context spaces move to the continuation."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
        whole = self.tok(context + continuation, add_special_tokens=False)["input_ids"]
        ctx = self.tok(context, add_special_tokens=False)["input_ids"] if context else []
        cont = whole[len(ctx):]
        if not ctx:  # score from a start token, as the hf backend does
            start = self.tok.bos_token_id if self.tok.bos_token_id is not None else \
                self.tok.eos_token_id
            ctx = [start]
        keep = self.max_length - len(cont)
        return (ctx[-keep:] if keep > 0 else ctx[-1:]), cont[-self.max_length:]

    def _greedy_flags(self, ctx: list[list[int]], cont: list[list[int]]) -> list[bool]:
        """Whether each continuation equals the argmax continuation (one padded forward)."""
        seqs = [c + x for c, x in zip(ctx, cont, strict=True)]
        width = max(map(len, seqs))
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        dev = next(self.model.parameters()).device
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=dev)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=dev)
        argmax = self.model(input_ids=ids, attention_mask=mask).logits.argmax(-1)  # (B, T)
        flags = []
        for row, (c, x) in enumerate(zip(ctx, cont, strict=True)):
            pred = argmax[row, len(c) - 1 : len(c) - 1 + len(x)].tolist()
            flags.append(pred == x)
        return flags


def _cut(text: str, stops: tuple[str, ...]) -> str:
    """Cut at the first stop string (the Sampler already does; kept for other engines)."""
    for s in stops:
        if s and s in text:
            text = text.split(s, 1)[0]
    return text


if __name__ == "__main__":
    # `python -m spkit.evals.lm run --model spkit --model_args pretrained=spkit-tiny ...`:
    # lm-eval's own command line, with the `spkit` backend registered.
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
